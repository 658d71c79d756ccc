//! Inputs shared by the criterion benches and the callgrind driver: a forwarding snapshot of a
//! mid-size cluster and a burst of frames toward it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod rib;

use datapath::craft::{udp_frame, UdpSpec};
use datapath::fib::{Fib, FibBuilder, PortInfo, RouteAction};
use std::net::IpAddr;

/// Packets per burst.
pub const BURST: usize = 32;
/// MAC of the input port.
pub const EXT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Two ports, 256 pod /24s, the service range (IPv4 and IPv6), static neighbours, and one
/// tunnel of each kind terminating on 192.0.2.1.
pub fn bench_fib() -> Fib {
    fib_with(&[])
}

/// [`bench_fib`] plus `extra` IPv4 routes (for example the whole DFZ table), all toward the pod
/// network.
pub fn fib_with(extra: &[(u32, u8, u32)]) -> Fib {
    fib_with_sessions(extra, 1)
}

/// [`fib_with`] with `sessions` GTP-U sessions from the one gNB: TEID `0x1001 + k` for the
/// UEs of 10.46.k.0/24 (one session covers all of 10.46.0.0/16).
pub fn fib_with_sessions(extra: &[(u32, u8, u32)], sessions: u32) -> Fib {
    let mut b = FibBuilder::new();
    b.add_port(PortInfo {
        mac: EXT_MAC,
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_port(PortInfo {
        mac: [0x02, 0, 0, 0, 1, 1],
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_address(0, "192.0.2.1".parse().unwrap(), 24);
    b.add_address(1, "172.18.0.1".parse().unwrap(), 16);
    b.add_address(1, "fd00:0:0:10c0::1".parse().unwrap(), 64);
    for (i, n) in ["172.18.0.2", "172.18.0.3", "fd00:0:0:10c0::2"]
        .iter()
        .enumerate()
    {
        b.add_neighbor(n.parse().unwrap(), [0x02, 0, 0, 0, 2, i as u8]);
    }
    let via = |a: &str| RouteAction::Via(vec![(a.parse().unwrap(), 1)]);
    for i in 0..=255u8 {
        b.add_route(IpAddr::from([10, 244, i, 0]), 24, &via("172.18.0.2"), false)
            .unwrap();
    }
    b.add_route("10.96.0.0".parse().unwrap(), 12, &via("172.18.0.3"), false)
        .unwrap();
    // A Service range behind two nodes: ECMP by flow hash.
    let both = RouteAction::Via(vec![
        ("172.18.0.2".parse().unwrap(), 1),
        ("172.18.0.3".parse().unwrap(), 1),
    ]);
    b.add_route("10.97.0.0".parse().unwrap(), 16, &both, false)
        .unwrap();
    b.add_route(
        "fd00:0:0:1040::".parse().unwrap(),
        108,
        &via("fd00:0:0:10c0::2"),
        false,
    )
    .unwrap();
    for &(a, l, _) in extra {
        b.add_route(IpAddr::from(a.to_be_bytes()), l, &via("172.18.0.3"), false)
            .unwrap();
    }
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    let sessions: Vec<(u32, IpAddr, u8)> = if sessions <= 1 {
        vec![(0x1001, "10.46.0.0".parse().unwrap(), 16)]
    } else {
        (0..sessions.min(256))
            .map(|k| (0x1001 + k, IpAddr::from([10, 46, k as u8, 0]), 24))
            .collect()
    };
    b.add_gtpu_tunnel("ran", gw, "192.0.2.10".parse().unwrap(), &sessions);
    b.add_vxlan_tunnel("calico", gw, 4789, 4096, &["192.0.2.20".parse().unwrap()]);
    b.add_ipip_tunnel("kr", gw, &["192.0.2.30".parse().unwrap()]);
    b.add_geneve_tunnel("cilium", gw, 6081, 2, &["192.0.2.40".parse().unwrap()]);
    // Pod traffic toward the other cluster: Geneve with an inner Ethernet header, as Cilium's.
    b.add_neighbor("192.0.2.40".parse().unwrap(), [0x02, 0, 0, 0, 0, 0x28]);
    let geneve = datapath::fib::EncapKind::Geneve {
        vni: 2,
        udp_port: 6081,
        inner_macs: Some([[0x02, 0, 0, 0, 0, 0x29], EXT_MAC]),
    };
    b.add_encap_route(
        "10.60.0.0".parse().unwrap(),
        16,
        geneve,
        gw,
        "192.0.2.40".parse().unwrap(),
    )
    .unwrap();
    // Downlink to the UE range: GTP-U toward the gNB with a PDU Session Container.
    b.add_neighbor("192.0.2.10".parse().unwrap(), [0x02, 0, 0, 0, 0, 0x0a]);
    let kind = datapath::fib::EncapKind::Gtpu {
        teid: 0x2001,
        qfi: Some(9),
    };
    b.add_encap_route(
        "10.46.0.0".parse().unwrap(),
        16,
        kind,
        gw,
        "192.0.2.10".parse().unwrap(),
    )
    .unwrap();
    b.build().unwrap()
}

/// A burst of 64-byte-class UDP frames (18 bytes of data) to distinct pod or service addresses.
pub fn bench_frames(ipv6: bool) -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let (src, dst): (IpAddr, IpAddr) = if ipv6 {
                (
                    "fd00:a::10".parse().unwrap(),
                    IpAddr::from([0xfd00, 0, 0, 0x1040, 0, 0, 0, i as u16 + 1]),
                )
            } else {
                (
                    IpAddr::from([192, 0, 2, 10]),
                    IpAddr::from([10, 244, (i * 7) as u8, 9]),
                )
            };
            udp_frame(&UdpSpec {
                src_mac: [0x02, 0, 0, 0, 0, 0x99],
                dst_mac: EXT_MAC,
                src,
                dst,
                src_port: 1000 + i as u16,
                dst_port: 53,
                ttl: 64,
                payload_len: 18,
            })
        })
        .collect()
}

/// What the frames of a bench burst carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Plain IPv4/UDP.
    Plain4,
    /// Plain IPv6/UDP.
    Plain6,
    /// IPv4/UDP inside GTP-U (TEID 0x1001, with a PDU Session Container).
    Gtpu,
    /// IPv4/UDP inside VXLAN (VNI 4096).
    Vxlan,
    /// IPv4 inside IPv4.
    Ipip,
    /// Plain IPv4 to the UE range, encapsulated into GTP-U (TEID 0x2001, QFI 9).
    GtpuEncap,
    /// IPv4/UDP in Ethernet inside Geneve (VNI 2, no options), as Cilium sends it.
    Geneve,
    /// Plain IPv4 to 10.60.0.0/16, encapsulated into Geneve with an inner Ethernet header.
    GeneveEncap,
}

/// Ethernet + IPv4 from `src` to the gateway (192.0.2.1): UDP to `dport` around `payload`,
/// or, when `dport` is 0, IP protocol `proto` directly.
fn outer(src: [u8; 4], proto: u8, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (u32::from_be_bytes(src), 0xc000_0201);
    let peer_mac = [2, 0, 0, 0, 0, 0x99];
    if dport == 0 {
        datapath::craft::ipv4_frame(peer_mac, EXT_MAC, src, dst, proto, payload)
    } else {
        datapath::craft::ipv4_udp_frame(peer_mac, EXT_MAC, (src, 2152), (dst, dport), payload)
    }
}

/// A burst of [`BURST`] frames of `kind` whose inner destinations are `dsts` (cycled).
pub fn burst(kind: Kind, dsts: &[u32]) -> Vec<Vec<u8>> {
    use datapath::craft::{geneve_payload, gtpu_payload, vxlan_payload};
    (0..BURST)
        .map(|i| {
            let dst = IpAddr::from(dsts[i % dsts.len()].to_be_bytes());
            let inner = |src_mac, dst_mac| {
                udp_frame(&UdpSpec {
                    src_mac,
                    dst_mac,
                    src: IpAddr::from([10, 46, 0, 7]),
                    dst,
                    src_port: 1000 + i as u16,
                    dst_port: 53,
                    ttl: 64,
                    payload_len: 18,
                })
            };
            match kind {
                Kind::Plain4 => inner([2, 0, 0, 0, 0, 0x99], EXT_MAC),
                Kind::Plain6 => bench_frames(true).swap_remove(i),
                Kind::Gtpu => {
                    let g = gtpu_payload(0x1001, Some(9), &inner([0; 6], [0; 6])[14..]);
                    outer([192, 0, 2, 10], 17, 2152, &g)
                }
                Kind::Vxlan => {
                    let eth = inner([2, 0, 0, 0, 0, 0x98], [2, 0, 0, 0, 0, 0x97]);
                    outer([192, 0, 2, 20], 17, 4789, &vxlan_payload(4096, &eth))
                }
                Kind::Ipip => outer([192, 0, 2, 30], 4, 0, &inner([0; 6], [0; 6])[14..]),
                Kind::Geneve => {
                    let eth = inner([2, 0, 0, 0, 0, 0x98], [2, 0, 0, 0, 0, 0x97]);
                    let p = geneve_payload(2, datapath::wire::geneve::PROTOCOL_ETHERNET, &eth);
                    outer([192, 0, 2, 40], 17, 6081, &p)
                }
                Kind::GeneveEncap => {
                    let mut f = inner([2, 0, 0, 0, 0, 0x99], EXT_MAC);
                    let mut ip = datapath::wire::Ipv4Packet::new_unchecked(&mut f[14..]);
                    ip.set_dst(u32::from_be_bytes([
                        10,
                        60,
                        (i / 250) as u8,
                        (i % 250) as u8 + 1,
                    ]));
                    ip.fill_checksum();
                    f
                }
                Kind::GtpuEncap => {
                    let mut f = inner([2, 0, 0, 0, 0, 0x99], EXT_MAC);
                    // Toward a UE instead: rewrite the destination and the IPv4 checksum.
                    let mut ip = datapath::wire::Ipv4Packet::new_unchecked(&mut f[14..]);
                    ip.set_dst(u32::from_be_bytes([
                        10,
                        46,
                        (i / 250) as u8,
                        (i % 250) as u8 + 1,
                    ]));
                    ip.fill_checksum();
                    f
                }
            }
        })
        .collect()
}

/// CPU time this thread has used, in seconds: what the route-lookup benches time, so that
/// another process on the machine does not count against a table.
#[allow(unsafe_code)]
pub fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// This thread's CPU time so far, split into user and kernel seconds: a table build's kernel
/// time is the first touch of its memory (page faults and the zeroing of the pages).
#[allow(unsafe_code)]
pub fn thread_user_kernel_seconds() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct, for the call to fill.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid rusage for the call to fill; RUSAGE_THREAD is a constant.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (s(u.ru_utime), s(u.ru_stime))
}

/// Runs `write` in a loop on this thread for `seconds` while `read` runs on another thread
/// until it is told to stop (the flag it is given). `write` returns the updates each call
/// made and `read` the lookups it made in all. Returns (updates a second, lookups a second),
/// each over its own thread's running time.
pub fn write_while_reading<R>(seconds: f64, read: R, mut write: impl FnMut() -> u64) -> (f64, f64)
where
    R: FnOnce(&std::sync::atomic::AtomicBool) -> u64 + Send,
{
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let stop = &stop;
        let reader = s.spawn(move || {
            let start = std::time::Instant::now();
            let n = read(stop);
            n as f64 / start.elapsed().as_secs_f64()
        });
        let start = std::time::Instant::now();
        let mut updates = 0;
        while start.elapsed().as_secs_f64() < seconds {
            updates += write();
        }
        let rate = updates as f64 / start.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (rate, reader.join().unwrap_or(0.0))
    })
}

/// Looks up `addrs` in batches of 32, round and round, with `look` (which also reports
/// whatever a reader reports after a batch) until `stop`; returns the lookups made.
pub fn look_until(
    addrs: &[u32],
    stop: &std::sync::atomic::AtomicBool,
    mut look: impl FnMut(&[u32], &mut [u32]),
) -> u64 {
    let (mut out, mut n) = ([0u32; 32], 0u64);
    let mut batches = addrs.chunks_exact(32).cycle();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // The flag is read once every 128 batches, off the lookups' path.
        for batch in batches.by_ref().take(128) {
            look(batch, &mut out);
            n += 32;
        }
    }
    std::hint::black_box(out);
    n
}
