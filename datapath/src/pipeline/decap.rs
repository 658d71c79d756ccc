//! Decap: a packet addressed to a local tunnel endpoint loses its outer headers. Nothing is
//! copied: the stage moves the packet's L3 offset to the inner IP header and validates that
//! header like any routed packet (version, lengths, checksum, martians), so the route stage
//! then routes the inner packet and the rewrite stage writes a fresh Ethernet header in front
//! of it. What each kind accepts is its module's in [`crate::tunnel`]: GTP-U, VXLAN and
//! Geneve by UDP port, IPIP by protocol.
//!
//! An IPv6 outer packet whose Routing header still has segments left is not for this endpoint
//! yet (RFC 8200 section 4.4) and is dropped as `ipv6_segments_left`, whatever it carries.
//!
//! Outer fragments are counted (`outer_fragment`), not reassembled. The UDP checksum is
//! verified unless the port vouches for it (AF_PACKET: the kernel marked it not yet computed,
//! as veth leaves locally generated packets, or already verified); a zero checksum is accepted
//! over IPv4 (RFC 768) and refused over IPv6 (RFC 8200 section 8.1; the RFC 6935 tunnel
//! exemption is not taken). Inner packets are decapsulated
//! once: a tunnel inside a tunnel is routed as ordinary traffic.

use super::classify::classify_ip;
use super::{Meta, Next};
use crate::fib::{v4_key, Fib};
use crate::pipeline::drop::DropReason;
use crate::tunnel::{self, Decapped, Kind, LastTunnel, Outer};
use crate::wire::{gtpu, ip_proto, ipv4, ipv6, udp, UdpPacket};

/// Decapsulates one packet classify marked, updating `meta` to describe the inner packet.
/// Returns [`Next::Route`] for a decapsulated packet, or the local or drop verdict. `last` is
/// the batch's [`LastTunnel`].
#[inline]
pub fn decap_one(
    frame: &[u8],
    fib: &Fib,
    meta: &mut Meta,
    last: &mut LastTunnel,
    in_port: u8,
) -> Next {
    match decap_inner(frame, fib, meta, last, in_port) {
        Ok(next) => next,
        Err(reason) => Next::Drop(reason),
    }
}

/// The outer source and destination as tunnel keys. Classify validated the outer header
/// (version, lengths, checksum) and kept its destination, so only the source is read, from its
/// field, without parsing the header again.
#[inline]
fn outer(frame: &[u8], meta: &Meta) -> Option<(u128, u128)> {
    let l3 = usize::from(meta.l3_off);
    if meta.ipv6 {
        let r = ipv6::field::SRC;
        let src = frame.get(l3 + r.start..l3 + r.end)?.try_into().ok()?;
        Some((u128::from_be_bytes(src), meta.dst6))
    } else {
        let r = ipv4::field::SRC;
        let src = frame.get(l3 + r.start..l3 + r.end)?.try_into().ok()?;
        Some((v4_key(u32::from_be_bytes(src)), v4_key(meta.dst4)))
    }
}

/// The UDP pseudo-header sum of the outer packet, for a datagram of `l4_len` bytes.
#[inline(always)]
fn pseudo_header(meta: &Meta, src: u128, l4_len: usize) -> u32 {
    if meta.ipv6 {
        udp::pseudo_header_v6(src, meta.dst6, ip_proto::UDP, l4_len as u32)
    } else {
        udp::pseudo_header_v4(src as u32, meta.dst4, ip_proto::UDP, l4_len as u16)
    }
}

fn decap_inner(
    frame: &[u8],
    fib: &Fib,
    meta: &mut Meta,
    last: &mut LastTunnel,
    in_port: u8,
) -> Result<Next, DropReason> {
    if meta.fragment {
        return Err(DropReason::OuterFragment);
    }
    if meta.segments_left {
        // RFC 8200 section 4.4: the packet is on its way to further segments; taking it as
        // the endpoint would skip them, and the gateway implements no routing type.
        return Err(DropReason::Ipv6SegmentsLeft);
    }
    let end = usize::from(meta.l3_off) + usize::from(meta.l3_len);
    let l4 = usize::from(meta.l4_off);
    let Some((src, local)) = outer(frame, meta) else {
        return Ok(Next::Local);
    };
    let o = Outer {
        local,
        src,
        in_port,
    };
    let tunnels = fib.tunnels();
    let decapped = match meta.proto {
        ip_proto::UDP => {
            let seg = frame.get(l4..end).unwrap_or_default();
            let u = UdpPacket::new_checked(seg)?;
            let port = u.dst_port();
            let kind = if port == gtpu::UDP_PORT && tunnels.is_gtpu_local(local) {
                Kind::Gtpu
            } else {
                match tunnels.udp_kind(port) {
                    Some(k) => k,
                    None => return Ok(Next::Local),
                }
            };
            if u.checksum() == 0 && meta.ipv6 {
                return Err(DropReason::UdpZeroChecksumV6);
            }
            if !meta.csum_trusted && !u.verify_checksum(pseudo_header(meta, src, seg.len())) {
                return Err(DropReason::UdpBadChecksum);
            }
            let payload = (l4 + udp::HEADER_LEN, l4 + usize::from(u.len()));
            meta.tunnel = kind as u8;
            match kind {
                Kind::Gtpu => tunnel::gtpu::decap(frame, tunnels, &o, payload, last)?,
                Kind::Vxlan => tunnel::vxlan::decap(frame, tunnels, &o, port, payload, last)?,
                Kind::Geneve => tunnel::geneve::decap(frame, tunnels, &o, port, payload, last)?,
                Kind::Ipip => return Ok(Next::Local),
            }
        }
        ip_proto::IPIP | ip_proto::IPV6 => {
            meta.tunnel = Kind::Ipip as u8;
            tunnel::ipip::decap(tunnels, &o, meta.proto, (l4, end), last)?
        }
        _ => return Ok(Next::Local),
    };
    match decapped {
        Decapped::Inner {
            off,
            end,
            ethertype,
        } => {
            let next = classify_ip(frame, off, end, ethertype, None, meta)?;
            last.check_inner_source(frame, usize::from(meta.l3_off), meta.ipv6)?;
            Ok(next)
        }
        // Answered in place after the other stages (see `reply`).
        Decapped::EchoRequest => {
            meta.echo_request = true;
            Ok(Next::Local)
        }
        Decapped::NotTunnel => Ok(Next::Local),
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::Batch;
    use super::super::Pipeline;
    use super::*;
    use crate::craft::{gtpu_payload, ipv4_udp_frame, udp_frame, vxlan_payload, UdpSpec};
    use crate::fib::{FibBuilder, PortInfo, RouteAction};
    use std::net::IpAddr;

    const GW: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn fib() -> Fib {
        let mut b = FibBuilder::new();
        for mac in [GW, [2, 0, 0, 0, 1, 1]] {
            b.add_port(PortInfo {
                mac,
                mtu: 1500,
                promiscuous: false,
            })
            .unwrap();
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        b.add_address(0, ip("192.0.2.1"), 24);
        b.add_address(1, ip("172.18.0.1"), 16);
        b.add_neighbor(ip("172.18.0.2"), [2, 0, 0, 0, 2, 1]);
        let via = RouteAction::Via(vec![(ip("172.18.0.2"), 1)]);
        b.add_route(ip("10.244.0.0"), 16, &via, false).unwrap();
        b.add_gtpu_tunnel(
            "ran",
            ip("192.0.2.1"),
            ip("192.0.2.10"),
            &[(0x1001, ip("10.46.0.0"), 16), (0x1002, ip("10.46.0.0"), 16)],
        );
        b.add_vxlan_tunnel("calico", ip("192.0.2.1"), 4789, 4096, &[ip("192.0.2.20")]);
        b.add_ipip_tunnel("tunl", ip("192.0.2.1"), &[ip("192.0.2.30")]);
        b.add_geneve_tunnel("gen", ip("192.0.2.1"), 6081, 2, &[ip("192.0.2.40")]);
        b.build().unwrap()
    }

    fn ipip(src: [u8; 4]) -> Vec<u8> {
        crate::craft::ipv4_frame(
            PEER,
            GW,
            u32::from_be_bytes(src),
            0xc000_0201,
            crate::wire::ip_proto::IPIP,
            &inner(),
        )
    }

    fn inner() -> Vec<u8> {
        // An IPv4/UDP packet to a pod, without its Ethernet header.
        udp_frame(&UdpSpec {
            src_mac: PEER,
            dst_mac: GW,
            src: "10.46.0.7".parse().unwrap(),
            dst: "10.244.1.5".parse().unwrap(),
            src_port: 1000,
            dst_port: 53,
            ttl: 64,
            payload_len: 18,
        })[14..]
            .to_vec()
    }

    fn gtpu(src: [u8; 4], teid: u32) -> Vec<u8> {
        let p = gtpu_payload(teid, None, &inner());
        ipv4_udp_frame(
            PEER,
            GW,
            (u32::from_be_bytes(src), 2152),
            (0xc000_0201, 2152),
            &p,
        )
    }

    fn geneve(src: [u8; 4], vni: u32) -> Vec<u8> {
        let mut eth = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x98, 0x08, 0];
        eth.extend_from_slice(&inner());
        let p = crate::craft::geneve_payload(vni, crate::wire::geneve::PROTOCOL_ETHERNET, &eth);
        ipv4_udp_frame(
            PEER,
            GW,
            (u32::from_be_bytes(src), 40000),
            (0xc000_0201, 6081),
            &p,
        )
    }

    fn vxlan(src: [u8; 4], vni: u32) -> Vec<u8> {
        let mut eth = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x98, 0x08, 0];
        eth.extend_from_slice(&inner());
        let p = vxlan_payload(vni, &eth);
        ipv4_udp_frame(
            PEER,
            GW,
            (u32::from_be_bytes(src), 40000),
            (0xc000_0201, 4789),
            &p,
        )
    }

    #[test]
    fn the_last_tunnel_cache_never_lets_a_packet_through_that_a_lookup_would_drop() {
        // Each packet follows one that was accepted and differs from it in one key field.
        let frames = [
            gtpu([192, 0, 2, 10], 0x1001),
            gtpu([192, 0, 2, 10], 0x1001),
            gtpu([192, 0, 2, 77], 0x1001),
            gtpu([192, 0, 2, 10], 0x1001),
            gtpu([192, 0, 2, 10], 0x1003),
            gtpu([192, 0, 2, 10], 0x1002),
            vxlan([192, 0, 2, 20], 4096),
            vxlan([192, 0, 2, 10], 4096),
            vxlan([192, 0, 2, 20], 4097),
            vxlan([192, 0, 2, 20], 4096),
            ipip([192, 0, 2, 30]),
            ipip([192, 0, 2, 30]),
            ipip([192, 0, 2, 31]),
            ipip([192, 0, 2, 30]),
            geneve([192, 0, 2, 40], 2),
            geneve([192, 0, 2, 41], 2),
            geneve([192, 0, 2, 40], 3),
            geneve([192, 0, 2, 40], 2),
        ];
        let want = [
            Next::Tx(1),
            Next::Tx(1),
            Next::Drop(DropReason::TunnelUnknownPeer),
            Next::Tx(1),
            Next::Drop(DropReason::GtpuUnknownTeid),
            Next::Tx(1),
            Next::Tx(1),
            Next::Drop(DropReason::TunnelUnknownPeer),
            Next::Drop(DropReason::VxlanUnknownVni),
            Next::Tx(1),
            Next::Tx(1),
            Next::Tx(1),
            Next::Drop(DropReason::TunnelUnknownPeer),
            Next::Tx(1),
            Next::Tx(1),
            Next::Drop(DropReason::TunnelUnknownPeer),
            Next::Drop(DropReason::GeneveUnknownVni),
            Next::Tx(1),
        ];
        let fib = fib();
        let mut batch = Batch::new();
        for (buf, f) in batch.bufs.iter_mut().zip(&frames) {
            assert!(buf.load(f, 0));
        }
        batch.len = frames.len();
        let mut pipe = Pipeline::new();
        assert_eq!(pipe.process(&mut batch, &fib), &want[..]);
        // Across batches too: the cache is emptied, nothing changes.
        for (buf, f) in batch.bufs.iter_mut().zip(&frames) {
            assert!(buf.load(f, 0));
        }
        assert_eq!(pipe.process(&mut batch, &fib), &want[..]);
    }

    /// `frame` as received on the pods port (port 1): addressed to that port's MAC.
    fn on_pods(mut frame: Vec<u8>) -> Vec<u8> {
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 1, 1]);
        frame
    }

    fn verdicts(fib: &Fib, in_port: u8, frames: &[Vec<u8>]) -> Vec<Next> {
        let mut batch = Batch::new();
        for (buf, f) in batch.bufs.iter_mut().zip(frames) {
            assert!(buf.load(f, 0));
        }
        batch.len = frames.len();
        batch.in_port = in_port;
        Pipeline::new().process(&mut batch, fib).to_vec()
    }

    #[test]
    fn a_batch_with_fewer_buffers_than_its_length_runs_over_the_buffers_it_has() {
        let fib = fib();
        let mut batch = Batch::of(1);
        assert!(batch.bufs[0].load(&gtpu([192, 0, 2, 10], 0x1001), 0));
        batch.len = 5;
        assert_eq!(Pipeline::new().process(&mut batch, &fib), [Next::Tx(1)]);
    }

    #[test]
    fn a_batch_from_a_port_the_snapshot_lacks_is_dropped_under_its_own_name() {
        let fib = fib();
        let frame = ipv4_udp_frame(PEER, GW, (0xc000_0209, 1000), (0x0af4_0105, 53), b"x");
        let v = verdicts(&fib, 5, &[frame.clone(), frame]);
        assert_eq!(v, vec![Next::Drop(DropReason::UnknownInputPort); 2]);
    }

    #[test]
    fn tunnel_packets_forged_on_another_port_are_refused() {
        let fib = fib();
        // The gNB's and the VTEP's addresses, but arriving on the pods port.
        let got = verdicts(
            &fib,
            1,
            &[
                on_pods(gtpu([192, 0, 2, 10], 0x1001)),
                on_pods(vxlan([192, 0, 2, 20], 4096)),
            ],
        );
        assert_eq!(got, [Next::Drop(DropReason::TunnelWrongPort); 2]);
        // The same on the port the peers are reached through: decapsulated.
        let got = verdicts(
            &fib,
            0,
            &[gtpu([192, 0, 2, 10], 0x1001), vxlan([192, 0, 2, 20], 4096)],
        );
        assert_eq!(got, [Next::Tx(1); 2]);
    }

    #[test]
    fn a_g_pdu_whose_inner_source_is_outside_the_session_ue_range_is_refused() {
        let fib = fib();
        let mut spoofed_inner = inner();
        spoofed_inner[12..16].copy_from_slice(&[10, 99, 0, 7]);
        // The IPv4 header checksum must still verify: fix it up.
        spoofed_inner[10..12].fill(0);
        let c = !crate::wire::checksum::sum(&spoofed_inner[..20], 0) as u16;
        spoofed_inner[10..12].copy_from_slice(&c.to_be_bytes());
        let p = gtpu_payload(0x1001, None, &spoofed_inner);
        let frame = ipv4_udp_frame(PEER, GW, (0xc000_020a, 2152), (0xc000_0201, 2152), &p);
        let got = verdicts(&fib, 0, &[gtpu([192, 0, 2, 10], 0x1001), frame]);
        assert_eq!(
            got,
            [Next::Tx(1), Next::Drop(DropReason::GtpuInnerSourceNotUe)]
        );
    }

    #[test]
    fn gtpu_echo_requests_are_answered_only_for_configured_peers() {
        let fib = fib();
        let echo = |src: u32| {
            let mut g = vec![0x32, 1, 0, 4, 0, 0, 0, 0, 0, 7, 0, 0];
            g.truncate(12);
            ipv4_udp_frame(PEER, GW, (src, 2152), (0xc000_0201, 2152), &g)
        };
        let got = verdicts(&fib, 0, &[echo(0xc000_020a), echo(0xc000_0263)]);
        assert_eq!(
            got,
            [Next::Tx(0), Next::Drop(DropReason::TunnelUnknownPeer)]
        );
    }

    #[test]
    fn tracing_a_batch_changes_no_verdict_or_byte_and_records_each_stage() {
        use super::super::trace::Record;
        let fib = fib();
        let plain = ipv4_udp_frame(PEER, GW, (0xc000_0209, 1000), (0x0af4_0105, 53), b"x");
        let unrouted = ipv4_udp_frame(PEER, GW, (0xc000_0209, 1000), (0x0808_0808, 53), b"x");
        let frames = [
            gtpu([192, 0, 2, 10], 0x1001),
            vxlan([192, 0, 2, 20], 4096),
            ipip([192, 0, 2, 30]),
            gtpu([192, 0, 2, 10], 0x1003),
            plain,
            unrouted,
        ];
        let run = |traced: bool| {
            let mut batch = Batch::new();
            for (buf, f) in batch.bufs.iter_mut().zip(&frames) {
                assert!(buf.load(f, 0));
            }
            batch.len = frames.len();
            let mut records = vec![Record::default(); frames.len()];
            let mut pipe = Pipeline::new();
            let v = if traced {
                pipe.process_traced(&mut batch, &fib, &mut records).to_vec()
            } else {
                pipe.process(&mut batch, &fib).to_vec()
            };
            let out: Vec<Vec<u8>> = batch.bufs[..frames.len()]
                .iter()
                .map(|b| b.frame().to_vec())
                .collect();
            (v, out, records)
        };
        let (v, out, _) = run(false);
        let (tv, tout, r) = run(true);
        assert_eq!((&v, &out), (&tv, &tout));
        let gtpu_drop = Next::Drop(DropReason::GtpuUnknownTeid);
        let no_route = Next::Drop(DropReason::NoRoute);
        assert_eq!(
            r.iter().map(|r| r.verdict).collect::<Vec<_>>(),
            [
                Next::Tx(1),
                Next::Tx(1),
                Next::Tx(1),
                gtpu_drop,
                Next::Tx(1),
                no_route
            ]
        );
        // Classify marked the tunnels for decap; decap moved to the inner header of each kind.
        for (k, r) in r[..3].iter().enumerate() {
            assert!(r.tunnel_endpoint && usize::from(r.tunnel) == k, "{r:?}");
            assert_eq!((r.outer_l3, r.decapped, r.proto), (14, Next::Route, 17));
            assert!(r.l3 > r.outer_l3 && r.nh != crate::lpm::NO_ROUTE);
            assert_eq!(usize::from(r.len), frames[k].len());
            assert_eq!(r.head[..frames[k].len()], frames[k][..]);
            assert_eq!(usize::from(r.out_len), out[k].len());
        }
        assert_eq!(
            (r[3].decapped, r[3].routed, r[3].nh),
            (gtpu_drop, Next::Route, crate::lpm::NO_ROUTE)
        );
        assert!(!r[4].tunnel_endpoint && r[4].l3 == 14 && r[4].nh != crate::lpm::NO_ROUTE);
        assert_eq!((r[5].routed, r[5].nh), (no_route, crate::lpm::NO_ROUTE));
    }
}
