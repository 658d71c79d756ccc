//! Rewrite: decrement TTL / hop limit (IPv4 checksum updated incrementally, RFC 1624) and
//! write a fresh Ethernet header in front of the IP header: the neighbour's MAC, the egress
//! port's MAC. Any VLAN tags of the input are thereby removed.

use super::batch::Buf;
use super::{Meta, NO_ENCAP};
use crate::fib::{Encap, EncapKind, Fib};
use crate::wire::{
    ethernet, gtpu, ip_proto, udp, vxlan, EtherType, EthernetFrame, GtpuRepr, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr,
};

/// Rewrites one packet routed out of a port with MAC `src_mac`, encapsulating it when the
/// route said so. Returns false when the frame cannot be rewritten (it was validated by
/// classify, so this does not happen in practice).
#[inline]
pub fn rewrite_one(buf: &mut Buf, meta: &Meta, src_mac: [u8; 6], fib: &Fib) -> bool {
    let l3 = usize::from(meta.l3_off);
    let l3_len = usize::from(meta.l3_len);
    {
        let Some(ip) = buf.frame_mut().get_mut(l3..l3 + l3_len) else {
            return false;
        };
        if meta.ipv6 {
            let mut p = Ipv6Packet::new_unchecked(ip);
            if p.check_len().is_err() {
                return false;
            }
            let h = p.hop_limit();
            p.set_hop_limit(h.saturating_sub(1));
        } else {
            let mut p = Ipv4Packet::new_unchecked(ip);
            if p.check_len().is_err() {
                return false;
            }
            p.decrement_ttl();
        }
    }
    if meta.encap != NO_ENCAP {
        return match fib.encap(meta.encap) {
            Some(e) => encap_one(buf, meta, e, src_mac),
            None => false,
        };
    }
    let eth_start = l3 as isize - ethernet::HEADER_LEN as isize;
    if !buf.reframe(eth_start, ethernet::HEADER_LEN + l3_len) {
        return false;
    }
    let mut eth = EthernetFrame::new_unchecked(buf.frame_mut());
    eth.set_dst(meta.dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(if meta.ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    });
    true
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
/// the buffer's headroom: nothing is copied. Outer IPv4 gets TTL 64, DF set (so the path MTU
/// stays discoverable) and a zero UDP checksum (RFC 768; RFC 7348 and TS 29.281 permit it);
/// outer IPv6 gets hop limit 64 and a computed UDP checksum (RFC 8200 section 8.1).
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
    if !buf.reframe(l3 as isize - hdr as isize, hdr + inner_len) {
        return false;
    }
    let Some(mac) = e.mac else { return false };
    let ip_len = if e.ipv6 { 40 } else { 20 };
    let f = buf.frame_mut();
    let (proto, after_ip) = match e.kind {
        EncapKind::Gtpu { .. } | EncapKind::Vxlan { .. } => (ip_proto::UDP, hdr - 14 - ip_len),
        EncapKind::Ipip => (
            if meta.ipv6 {
                ip_proto::IPV6
            } else {
                ip_proto::IPIP
            },
            0,
        ),
    };
    let payload_len = after_ip + inner_len;
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst(mac);
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
            inner.set_ethertype(if meta.ipv6 {
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
            UdpPacket::new_unchecked(&mut f[l4..l4 + payload_len]).fill_checksum(sum);
        }
    }
    true
}
