//! Classify: Ethernet (with up to two VLAN tags) → IPv4/IPv6 validation, as RFC 1812 section
//! 5.2.2 asks of a router: version, header length, total length, checksum; link padding is
//! trimmed. Martian sources and destinations that are never forwarded are dropped here.

use super::{Meta, Next};
use crate::fib::{Fib, PortInfo};
use crate::pipeline::drop::DropReason;
use crate::wire::{
    ethernet, ip_proto, vlan, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, VlanPacket,
};

/// IPv4 link-local 169.254.0.0/16: a router never forwards it, from or to (RFC 3927
/// section 2.7).
#[inline]
fn link_local4(a: u32) -> bool {
    a >> 16 == 0xa9fe
}

/// First octets of IPv4 addresses never forwarded, from or to, one bit each: 0/8 "this network"
/// (RFC 1812 5.3.7), 127/8 loopback, 224/4 multicast, 240/4 reserved and limited broadcast
/// (RFC 6890).
const MARTIAN_TOP: [u64; 4] = [1, 1 << 63, 0, u64::MAX << 32];

/// An IPv4 address a router never forwards, as source or destination: [`MARTIAN_TOP`] and
/// 169.254/16 link-local (RFC 3927). A table of first octets, without a branch: the chain of
/// compares it replaced cost twice the instructions (callgrind, BENCHMARKS.md).
#[inline]
fn martian4(a: u32) -> bool {
    let top = (a >> 24) as usize;
    ((MARTIAN_TOP[top >> 6] >> (top & 63)) & 1 != 0) | link_local4(a)
}

/// Classifies one frame received on port `in_port` with `port` settings, filling `meta`.
#[inline]
pub fn classify_one(
    frame: &[u8],
    in_port: u8,
    port: &PortInfo,
    fib: &Fib,
    meta: &mut Meta,
) -> Next {
    match classify_inner(frame, in_port, port, fib, meta) {
        Ok(next) => next,
        Err(reason) => Next::Drop(reason),
    }
}

#[inline]
fn classify_inner(
    frame: &[u8],
    in_port: u8,
    port: &PortInfo,
    fib: &Fib,
    meta: &mut Meta,
) -> Result<Next, DropReason> {
    let eth = EthernetFrame::new_checked(frame)?;
    let dst = eth.dst();
    let group = dst[0] & 1 != 0;
    if !group && dst != port.mac && !port.promiscuous {
        return Err(DropReason::L2OtherHost);
    }
    let outer = eth.ethertype();
    if outer == EtherType::VLAN || outer == EtherType::QINQ {
        // Only the VLANs the port lists: a tag is a segment the operator chose to serve.
        let tag = VlanPacket::new_checked(frame.get(ethernet::HEADER_LEN..).unwrap_or_default())?;
        if !fib.vlan_allowed(in_port, tag.vid()) {
            return Err(DropReason::VlanNotAllowed);
        }
    }
    let (ethertype, off) = vlan::skip_tags(frame, outer, ethernet::HEADER_LEN)?;
    if ethertype == EtherType::ARP {
        return Ok(Next::Local);
    }
    meta.decap = false;
    let next = classify_ip(frame, off, frame.len(), ethertype, Some(fib), meta)?;
    // RFC 1122 3.3.6 / RFC 1812 5.3.4: a link-layer broadcast or multicast carrying a unicast
    // IP destination is not forwarded (it would reach every router on the segment). A
    // promiscuous port (replaying foreign captures) takes such frames too.
    if group && next == Next::Route && !port.promiscuous {
        return Err(DropReason::L2GroupUnicastIp);
    }
    Ok(next)
}

/// Validates the IP header at `off` (bounded by `end`) as RFC 1812 asks, fills `meta`, and
/// returns [`Next::Route`] or the local or drop verdict. With `fib`, a packet addressed to a
/// local tunnel endpoint is marked for the decap stage; inner packets are validated without it,
/// so a tunnel inside a tunnel is routed, not decapsulated twice.
#[inline(always)]
pub fn classify_ip(
    frame: &[u8],
    off: usize,
    end: usize,
    ethertype: u16,
    fib: Option<&Fib>,
    meta: &mut Meta,
) -> Result<Next, DropReason> {
    let l3 = frame.get(off..end).unwrap_or_default();
    meta.l3_off = off as u16;
    match ethertype {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(l3)?;
            if !ip.verify_checksum() {
                return Err(DropReason::Ipv4BadChecksum);
            }
            if martian4(ip.src()) {
                return Err(DropReason::MartianSource);
            }
            if martian4(ip.dst()) {
                return Err(DropReason::MartianDestination);
            }
            meta.ipv6 = false;
            meta.dst4 = ip.dst();
            meta.l3_len = ip.total_len();
            meta.proto = ip.protocol();
            meta.fragment = ip.is_fragment();
            meta.segments_left = false;
            meta.l4_off = if ip.is_fragment() && ip.frag_offset() != 0 {
                0
            } else {
                (off + ip.header_len()) as u16
            };
            meta.decap = fib.is_some_and(|f| f.tunnels().is_local(crate::fib::v4_key(ip.dst())));
            Ok(Next::Route)
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3)?;
            let src = ip.src();
            if src >> 120 == 0xff || src == 1 {
                return Err(DropReason::MartianSource);
            }
            let d = ip.dst();
            let ul = ip.upper_layer()?;
            if d >> 120 == 0xff {
                // Link-scope multicast (ff02::/16: all-nodes, solicited-node for NDP) belongs
                // to the local stack; wider scopes are not routed by this gateway.
                return if d >> 112 == 0xff02 {
                    Ok(Next::Local)
                } else {
                    Err(DropReason::MartianDestination)
                };
            }
            if d >> 118 == 0x3fa {
                // fe80::/10 link-local: never forwarded, only for the local stack.
                return Ok(Next::Local);
            }
            if d <= 1 {
                return Err(DropReason::MartianDestination);
            }
            meta.ipv6 = true;
            meta.dst6 = d;
            meta.l3_len = ip.total_len() as u16;
            meta.proto = ul.protocol;
            meta.fragment = ul.fragment;
            meta.segments_left = ul.segments_left != 0;
            meta.l4_off = if ul.later_fragment {
                0
            } else {
                (off + ul.offset) as u16
            };
            meta.decap = fib.is_some_and(|f| f.tunnels().is_local(d));
            Ok(Next::Route)
        }
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// The source of the IP packet `meta` describes (outer, or inner once decapsulated), as a
/// [`crate::fib::v4_key`] or IPv6 address.
#[inline]
pub fn source_key(frame: &[u8], meta: &Meta) -> Option<u128> {
    let l3 = usize::from(meta.l3_off);
    if meta.ipv6 {
        let r = crate::wire::ipv6::field::SRC;
        let b = frame.get(l3 + r.start..l3 + r.end)?.try_into().ok()?;
        Some(u128::from_be_bytes(b))
    } else {
        let r = crate::wire::ipv4::field::SRC;
        let b = frame.get(l3 + r.start..l3 + r.end)?.try_into().ok()?;
        Some(crate::fib::v4_key(u32::from_be_bytes(b)))
    }
}

/// The flow hash of a classified packet: addresses, protocol and, for TCP/UDP/SCTP first
/// fragments, ports. Used to pick an ECMP member so a flow keeps one path.
#[inline]
pub fn flow_hash(frame: &[u8], meta: &Meta) -> u32 {
    let l3 = usize::from(meta.l3_off);
    let mut h: u64 = u64::from(meta.proto);
    if meta.ipv6 {
        if let Ok(ip) = Ipv6Packet::new_checked(frame.get(l3..).unwrap_or_default()) {
            let s = ip.src() ^ ip.dst();
            h ^= (s as u64) ^ ((s >> 64) as u64);
        }
    } else if let Ok(ip) = Ipv4Packet::new_checked(frame.get(l3..).unwrap_or_default()) {
        h ^= (u64::from(ip.src()) << 32) | u64::from(ip.dst());
    }
    let l4 = usize::from(meta.l4_off);
    if l4 != 0 && matches!(meta.proto, ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP) {
        if let Some(p) = frame.get(l4..l4 + 4) {
            h ^= u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]])) << 16;
        }
    }
    // A 64-bit multiplicative mix (Fibonacci hashing) folds every input bit into the top.
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::super::batch::Batch;
    use super::super::Pipeline;
    use super::*;
    use crate::craft::{udp_frame, UdpSpec};
    use crate::fib::{FibBuilder, RouteAction, Rpf};
    use std::net::IpAddr;

    #[test]
    fn martian_first_octets_are_exactly_rfc_1812s_and_6890s() {
        for top in 0..=255u32 {
            let a = (top << 24) | 0x0001_0203;
            let want = top == 0 || top == 127 || top >= 224;
            assert_eq!(martian4(a), want, "{top}.1.2.3");
        }
        assert!(martian4(u32::from_be_bytes([169, 254, 7, 7])));
        assert!(!martian4(u32::from_be_bytes([169, 253, 7, 7])));
        assert!(!martian4(u32::from_be_bytes([169, 255, 7, 7])));
    }

    const GW: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const HOST: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fib(rpf: Rpf, vlans: &[u16]) -> Fib {
        let mut b = FibBuilder::new();
        for mac in [GW, [2, 0, 0, 0, 1, 1]] {
            b.add_port(PortInfo {
                mac,
                mtu: 1500,
                promiscuous: false,
            })
            .unwrap();
        }
        b.add_address(0, ip("192.0.2.1"), 24);
        b.add_address(1, ip("172.18.0.1"), 16);
        b.add_neighbor(ip("172.18.0.2"), [2, 0, 0, 0, 2, 1]);
        b.add_neighbor(ip("192.0.2.10"), HOST);
        let pods = RouteAction::Via(vec![(ip("172.18.0.2"), 1)]);
        b.add_route(ip("10.244.0.0"), 16, &pods, false).unwrap();
        let ext = RouteAction::Via(vec![(ip("192.0.2.10"), 0)]);
        b.add_route(ip("198.51.100.0"), 24, &ext, false).unwrap();
        b.set_rpf(0, rpf);
        b.set_vlans(0, vlans);
        b.build().unwrap()
    }

    fn frame(dst_mac: [u8; 6], src: &str) -> Vec<u8> {
        udp_frame(&UdpSpec {
            src_mac: HOST,
            dst_mac,
            src: ip(src),
            dst: ip("10.244.1.5"),
            src_port: 1000,
            dst_port: 53,
            ttl: 64,
            payload_len: 18,
        })
    }

    fn tagged(vid: u16) -> Vec<u8> {
        let f = frame(GW, "198.51.100.7");
        let mut t = f[..12].to_vec();
        t.extend([0x81, 0x00]);
        t.extend(vid.to_be_bytes());
        t.extend(&f[12..]);
        t
    }

    fn verdicts(fib: &Fib, frames: &[Vec<u8>]) -> Vec<Next> {
        let mut batch = Batch::new();
        for (buf, f) in batch.bufs.iter_mut().zip(frames) {
            assert!(buf.load(f, 0));
        }
        batch.len = frames.len();
        Pipeline::new().process(&mut batch, fib).to_vec()
    }

    #[test]
    fn a_broadcast_frame_with_a_unicast_ip_destination_is_not_routed() {
        let fib = fib(Rpf::Off, &[]);
        let got = verdicts(
            &fib,
            &[
                frame([0xff; 6], "198.51.100.7"),
                frame([0x01, 0, 0x5e, 0, 0, 1], "198.51.100.7"),
            ],
        );
        assert_eq!(got, [Next::Drop(DropReason::L2GroupUnicastIp); 2]);
    }

    #[test]
    fn tagged_frames_pass_only_on_the_vlans_a_port_lists() {
        let got = verdicts(&fib(Rpf::Off, &[]), &[tagged(100)]);
        assert_eq!(got, [Next::Drop(DropReason::VlanNotAllowed)]);
        let got = verdicts(&fib(Rpf::Off, &[100]), &[tagged(100), tagged(101)]);
        assert_eq!(got, [Next::Tx(1), Next::Drop(DropReason::VlanNotAllowed)]);
    }

    #[test]
    fn this_network_and_link_local_sources_are_martians() {
        let fib = fib(Rpf::Off, &[]);
        let got = verdicts(
            &fib,
            &[
                frame(GW, "0.1.2.3"),
                frame(GW, "169.254.7.7"),
                frame(GW, "198.51.100.7"),
            ],
        );
        assert_eq!(
            got,
            [
                Next::Drop(DropReason::MartianSource),
                Next::Drop(DropReason::MartianSource),
                Next::Tx(1)
            ]
        );
    }

    #[test]
    fn reverse_path_filtering_checks_where_the_source_is_routed() {
        // From a source routed back through ext, one routed through pods, one with no route.
        let frames = [
            frame(GW, "198.51.100.7"),
            frame(GW, "172.18.5.5"),
            frame(GW, "203.0.113.9"),
        ];
        assert_eq!(verdicts(&fib(Rpf::Off, &[]), &frames), [Next::Tx(1); 3]);
        assert_eq!(
            verdicts(&fib(Rpf::Loose, &[]), &frames),
            [Next::Tx(1), Next::Tx(1), Next::Drop(DropReason::RpfFailed)]
        );
        assert_eq!(
            verdicts(&fib(Rpf::Strict, &[]), &frames),
            [
                Next::Tx(1),
                Next::Drop(DropReason::RpfFailed),
                Next::Drop(DropReason::RpfFailed)
            ]
        );
    }

    #[test]
    fn icmp_errors_are_rate_limited_per_worker() {
        // 400 packets too big for the pods port (MTU 1500, DF set), in batches of 32: the
        // default limit (1000/s, burst 50) sends the burst and little more, and counts the
        // errors it did not send. Every packet is still counted as mtu_exceeded.
        let fib = fib(Rpf::Off, &[]);
        let big = udp_frame(&UdpSpec {
            src_mac: HOST,
            dst_mac: GW,
            src: ip("198.51.100.7"),
            dst: ip("10.244.1.5"),
            src_port: 1000,
            dst_port: 53,
            ttl: 64,
            payload_len: 1600,
        });
        let mut pipe = Pipeline::new();
        let (mut sent, mut limited) = (0, 0);
        for _ in 0..400 / 25 {
            let mut batch = Batch::new();
            for buf in batch.bufs.iter_mut().take(25) {
                assert!(buf.load(&big, 0));
            }
            batch.len = 25;
            pipe.process(&mut batch, &fib);
            sent += pipe.errors_sent()[0].1;
            limited += pipe.replies_limited();
        }
        assert_eq!(sent + limited, 400);
        assert!((50..=100).contains(&sent), "sent {sent}");
    }
}
