//! Rewrite: decrement TTL / hop limit (IPv4 checksum updated incrementally, RFC 1624) and
//! write a fresh Ethernet header in front of the IP header: the neighbour's MAC, the egress
//! port's MAC. Any VLAN tags of the input are thereby removed.

use super::batch::Buf;
use super::{Meta, NO_ENCAP};
use crate::fib::{Encap, EncapKind, Fib};
use crate::wire::{
    ethernet, gtpu, ip_proto, udp, vxlan, EtherType, EthernetFrame, GtpuPacket, GtpuRepr,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr,
};

/// What [`rewrite_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewritten {
    /// The frame could not be rewritten (it was validated by classify, so this does not
    /// happen in practice).
    Failed,
    /// A fresh Ethernet header.
    Plain,
    /// Encapsulated, in a tunnel of this kind ([`crate::stats::TUNNEL_KINDS`] index).
    Encap(usize),
}

/// Rewrites one packet routed out of a port with MAC `src_mac`, encapsulating it when the
/// route said so.
#[inline(always)]
pub fn rewrite_one(buf: &mut Buf, meta: &Meta, src_mac: [u8; 6], fib: &Fib) -> Rewritten {
    let l3 = usize::from(meta.l3_off);
    let l3_len = usize::from(meta.l3_len);
    {
        let Some(ip) = buf.frame_mut().get_mut(l3..l3 + l3_len) else {
            return Rewritten::Failed;
        };
        if meta.ipv6 {
            let mut p = Ipv6Packet::new_unchecked(ip);
            if p.check_len().is_err() {
                return Rewritten::Failed;
            }
            let h = p.hop_limit();
            p.set_hop_limit(h.saturating_sub(1));
        } else {
            let mut p = Ipv4Packet::new_unchecked(ip);
            if p.check_len().is_err() {
                return Rewritten::Failed;
            }
            p.decrement_ttl();
        }
    }
    if meta.encap != NO_ENCAP {
        return match fib.encap(meta.encap) {
            Some(e) if encap_one(buf, meta, e, src_mac) => Rewritten::Encap(e.kind.index()),
            _ => Rewritten::Failed,
        };
    }
    let eth_start = l3 as isize - ethernet::HEADER_LEN as isize;
    if !buf.reframe(eth_start, ethernet::HEADER_LEN + l3_len) {
        return Rewritten::Failed;
    }
    let mut eth = EthernetFrame::new_unchecked(buf.frame_mut());
    eth.set_dst(meta.dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(if meta.ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    });
    Rewritten::Plain
}

/// Writes a fresh IPv4 or IPv6 header (TTL or hop limit 64) at the start of `ip`, for packets
/// the gateway originates: tunnel outer headers and its own replies. `src` and `dst` are
/// tunnel keys (an IPv4 address in the low 32 bits); `dont_frag` applies to IPv4 only.
pub(crate) fn write_ip_header(
    ip: &mut [u8],
    ipv6: bool,
    (src, dst): (u128, u128),
    proto: u8,
    payload_len: usize,
    dont_frag: bool,
) {
    if ipv6 {
        Ipv6Repr {
            src,
            dst,
            next_header: proto,
            payload_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut Ipv6Packet::new_unchecked(ip));
    } else {
        Ipv4Repr {
            src: src as u32,
            dst: dst as u32,
            protocol: proto,
            payload_len,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            dont_frag,
        }
        .emit(&mut Ipv4Packet::new_unchecked(ip));
    }
}

/// Writes the outer headers of `e` in front of the (already TTL-decremented) inner packet, in
/// the buffer's headroom: nothing is copied but the header template. Outer IPv4 gets TTL 64,
/// DF set (so the path MTU stays discoverable) and a zero UDP checksum (RFC 768; RFC 7348 and
/// TS 29.281 permit it); outer IPv6 gets hop limit 64 and a computed UDP checksum (RFC 8200
/// section 8.1).
///
/// The headers come from [`Encap::template`], written once when the FIB was built by
/// [`write_outer`] for an empty IPv4 inner packet; here only what depends on the packet is
/// patched: the MACs (the neighbour the route stage chose), the length fields (each grows by
/// the inner length), the IPv4 header checksum, IPIP's protocol and VXLAN's inner EtherType
/// by the inner family, VXLAN's entropy source port, and the UDP checksum over IPv6.
///
/// Kept out of line so that the plain path of [`rewrite_one`] stays small enough to inline.
#[inline(never)]
fn encap_one(buf: &mut Buf, meta: &Meta, e: &Encap, src_mac: [u8; 6]) -> bool {
    let l3 = usize::from(meta.l3_off);
    let inner_len = usize::from(meta.l3_len);
    let hdr = e.overhead();
    // RFC 7348 section 5: the UDP source port carries entropy from the inner flow, in the
    // dynamic range, so that ECMP on the path spreads the flows of one tunnel. Only VXLAN
    // needs it; it is read before the outer headers overwrite anything.
    let entropy_port = match e.kind {
        EncapKind::Vxlan { .. } => {
            49152 | (super::classify::flow_hash(buf.frame(), meta) & 0x3fff) as u16
        }
        _ => 0,
    };
    let Some(template) = e.template.get(..hdr) else {
        return false;
    };
    if !buf.reframe(l3 as isize - hdr as isize, hdr + inner_len) {
        return false;
    }
    let f = buf.frame_mut();
    let Some(h) = f.get_mut(..hdr) else {
        return false;
    };
    h.copy_from_slice(template);
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst(meta.dst_mac);
    eth.set_src(src_mac);
    patch_outer(f, e, inner_len, meta.ipv6, entropy_port)
}

/// Grows the length fields of outer headers written for an empty inner packet by `inner_len`
/// and sets what depends on the inner packet (see [`encap_one`]). `f` holds the outer headers
/// and the inner packet.
fn patch_outer(f: &mut [u8], e: &Encap, inner_len: usize, inner_ipv6: bool, sport: u16) -> bool {
    let ip_len = if e.ipv6 { 40 } else { 20 };
    let l4 = ethernet::HEADER_LEN + ip_len;
    let Ok(grow) = u16::try_from(inner_len) else {
        return false;
    };
    let ipip_proto = if inner_ipv6 {
        ip_proto::IPV6
    } else {
        ip_proto::IPIP
    };
    {
        let ip = &mut f[ethernet::HEADER_LEN..];
        if e.ipv6 {
            let mut p = Ipv6Packet::new_unchecked(ip);
            p.set_payload_len(p.payload_len().wrapping_add(grow));
            if matches!(e.kind, EncapKind::Ipip) {
                p.set_next_header(ipip_proto);
            }
        } else {
            let mut p = Ipv4Packet::new_unchecked(ip);
            p.set_total_len(p.total_len().wrapping_add(grow));
            if matches!(e.kind, EncapKind::Ipip) {
                p.set_protocol(ipip_proto);
            }
            p.fill_checksum();
        }
    }
    if matches!(e.kind, EncapKind::Ipip) {
        return true;
    }
    let mut u = UdpPacket::new_unchecked(&mut f[l4..]);
    let udp_len = u.len().wrapping_add(grow);
    u.set_len(udp_len);
    let after_udp = l4 + udp::HEADER_LEN;
    match e.kind {
        EncapKind::Gtpu { .. } => {
            let mut g = GtpuPacket::new_unchecked(&mut f[after_udp..]);
            g.set_length(g.length().wrapping_add(grow));
        }
        EncapKind::Vxlan { .. } => {
            UdpPacket::new_unchecked(&mut f[l4..]).set_src_port(sport);
            let mut inner = EthernetFrame::new_unchecked(&mut f[after_udp + vxlan::HEADER_LEN..]);
            inner.set_ethertype(if inner_ipv6 {
                EtherType::IPV6
            } else {
                EtherType::IPV4
            });
        }
        EncapKind::Ipip => {}
    }
    if e.ipv6 {
        let udp_len = usize::from(udp_len);
        let sum = udp::pseudo_header_v6(e.local, e.peer, ip_proto::UDP, udp_len as u32);
        let Some(seg) = f.get_mut(l4..l4 + udp_len) else {
            return false;
        };
        let mut u = UdpPacket::new_unchecked(seg);
        u.set_checksum(0);
        u.fill_checksum(sum);
    }
    true
}

/// Writes the whole outer header stack of `e` (`e.overhead()` bytes) at the start of `f`, from
/// `macs` (destination, source) to the last byte before an inner packet of `inner_len` bytes
/// of the family `inner_ipv6`, with every field computed. [`Encap::new`] writes the template
/// with it; the tests check the patched template against it.
pub(crate) fn write_outer(
    f: &mut [u8],
    e: &Encap,
    [dst_mac, src_mac]: [[u8; 6]; 2],
    inner_len: usize,
    inner_ipv6: bool,
    entropy_port: u16,
) {
    let hdr = e.overhead();
    let ip_len = if e.ipv6 { 40 } else { 20 };
    let (proto, after_ip) = match e.kind {
        EncapKind::Gtpu { .. } | EncapKind::Vxlan { .. } => (ip_proto::UDP, hdr - 14 - ip_len),
        EncapKind::Ipip => (
            if inner_ipv6 {
                ip_proto::IPV6
            } else {
                ip_proto::IPIP
            },
            0,
        ),
    };
    let payload_len = after_ip + inner_len;
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst(dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(if e.ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    });
    let ip = &mut f[ethernet::HEADER_LEN..];
    write_ip_header(ip, e.ipv6, (e.local, e.peer), proto, payload_len, true);
    let l4 = ethernet::HEADER_LEN + ip_len;
    let udp_payload = payload_len.saturating_sub(udp::HEADER_LEN);
    let udp_ports = match e.kind {
        EncapKind::Gtpu { teid, qfi } => {
            let g = GtpuRepr {
                msg_type: gtpu::msg::G_PDU,
                teid,
                seq: None,
                // PDU type 0: downlink PDU Session Information (TS 38.415 5.5.2.1).
                psc: qfi.map(|q| (0, q)),
                payload_len: inner_len,
            };
            g.emit(&mut f[l4 + udp::HEADER_LEN..]);
            Some((gtpu::UDP_PORT, gtpu::UDP_PORT))
        }
        EncapKind::Vxlan {
            vni,
            udp_port,
            inner_dst,
            inner_src,
        } => {
            let v = l4 + udp::HEADER_LEN;
            VxlanRepr { vni }.emit(&mut VxlanPacket::new_unchecked(&mut f[v..]));
            let mut inner = EthernetFrame::new_unchecked(&mut f[v + vxlan::HEADER_LEN..]);
            inner.set_dst(inner_dst);
            inner.set_src(inner_src);
            inner.set_ethertype(if inner_ipv6 {
                EtherType::IPV6
            } else {
                EtherType::IPV4
            });
            Some((entropy_port, udp_port))
        }
        EncapKind::Ipip => None,
    };
    if let Some((src_port, dst_port)) = udp_ports {
        UdpRepr {
            src_port,
            dst_port,
            payload_len: udp_payload,
        }
        .emit(&mut UdpPacket::new_unchecked(&mut f[l4..]));
        if e.ipv6 {
            let sum = udp::pseudo_header_v6(e.local, e.peer, ip_proto::UDP, payload_len as u32);
            if let Some(seg) = f.get_mut(l4..l4 + payload_len) {
                UdpPacket::new_unchecked(seg).fill_checksum(sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::v4_key;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = EncapKind> {
        prop_oneof![
            (any::<u32>(), proptest::option::of(0u8..64))
                .prop_map(|(teid, qfi)| EncapKind::Gtpu { teid, qfi }),
            Just(EncapKind::Ipip),
            (
                0u32..1 << 24,
                any::<u16>(),
                any::<[u8; 6]>(),
                any::<[u8; 6]>()
            )
                .prop_map(|(vni, udp_port, inner_dst, inner_src)| EncapKind::Vxlan {
                    vni,
                    udp_port,
                    inner_dst,
                    inner_src,
                }),
        ]
    }

    fn encap(kind: EncapKind, outer_v6: bool) -> Encap {
        let ends = if outer_v6 {
            ((0x2001_0db8u128 << 96) | 1, (0x2001_0db8u128 << 96) | 2)
        } else {
            (v4_key(0xc000_0201), v4_key(0xc000_0202))
        };
        Encap::new(kind, ends, outer_v6, 0, None)
    }

    proptest! {
        /// The fast path (template copied, then patched) writes exactly what writing every
        /// outer header in full writes, for every kind, both outer and inner families and any
        /// inner packet.
        #[test]
        fn patched_template_equals_headers_written_in_full(
            kind in kind(),
            outer_v6: bool,
            inner_v6: bool,
            inner in proptest::collection::vec(any::<u8>(), 20..1500),
            sport: u16,
            macs: [[u8; 6]; 2],
        ) {
            let e = encap(kind, outer_v6);
            let hdr = e.overhead();
            let mut want = vec![0u8; hdr + inner.len()];
            want[hdr..].copy_from_slice(&inner);
            write_outer(&mut want, &e, macs, inner.len(), inner_v6, sport);
            let mut got = want.clone();
            got[..hdr].copy_from_slice(&e.template[..hdr]);
            let mut eth = EthernetFrame::new_unchecked(&mut got[..]);
            eth.set_dst(macs[0]);
            eth.set_src(macs[1]);
            prop_assert!(patch_outer(&mut got, &e, inner.len(), inner_v6, sport));
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn encapsulation_is_addressed_to_the_neighbour_the_route_stage_chose() {
        // No static MAC for the peer (it was learned by ARP): the frame still goes to it.
        let e = encap(EncapKind::Ipip, false);
        assert_eq!(e.mac, None);
        let inner: Vec<u8> = [
            &[0x45u8, 0, 0, 28, 0, 0, 0, 0, 63, 17, 0, 0][..],
            &[10, 46, 0, 7, 10, 244, 1, 5],
            &[0, 1, 0, 2, 0, 8, 0, 0],
        ]
        .concat();
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(&inner);
        let mut buf = Buf::new();
        assert!(buf.load(&frame, 0));
        let meta = Meta {
            l3_off: 14,
            l3_len: 28,
            dst_mac: [2, 0, 0, 0, 0, 0x30],
            ..Meta::default()
        };
        assert!(encap_one(&mut buf, &meta, &e, [2, 0, 0, 0, 0, 1]));
        let f = buf.frame();
        assert_eq!(f.len(), 14 + 20 + 28);
        assert_eq!(&f[..12], &[2, 0, 0, 0, 0, 0x30, 2, 0, 0, 0, 0, 1]);
        let outer = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!((outer.protocol(), outer.total_len()), (ip_proto::IPIP, 48));
        assert_eq!(&f[34..], &inner[..]);
    }
}
