//! Reply: answers a GTP-U Echo Request (TS 29.281 section 7.2.1) in place with an Echo
//! Response (7.2.2): same sequence number, TEID 0, and the mandatory Recovery IE with restart
//! counter 0 (TS 29.281 section 8.2: the counter is not used by GTP-U and is sent as 0). The
//! addresses, ports and MACs are swapped; the response leaves through the input port.

use super::Meta;
use crate::pipeline::batch::Buf;
use crate::wire::{
    gtpu, ip_proto, udp, EtherType, EthernetFrame, GtpuPacket, Ipv4Packet, Ipv4Repr, Ipv6Packet,
    Ipv6Repr, UdpPacket, UdpRepr,
};

/// Recovery IE: type 14, one octet of restart counter.
const RECOVERY_IE: [u8; 2] = [14, 0];

/// Rewrites an Echo Request that decap marked into the Echo Response, in `buf`. Returns false
/// (leaving the packet to be counted as local) when it cannot.
pub fn gtpu_echo_response(buf: &mut Buf, meta: &Meta, port_mac: [u8; 6]) -> bool {
    let l3 = usize::from(meta.l3_off);
    let l4 = usize::from(meta.l4_off);
    let f = buf.frame();
    let Ok(eth) = EthernetFrame::new_checked(f) else {
        return false;
    };
    let peer_mac = eth.src();
    let Some(u) = f.get(l4..).and_then(|s| UdpPacket::new_checked(s).ok()) else {
        return false;
    };
    let peer_port = u.src_port();
    let g_off = l4 + udp::HEADER_LEN;
    let Some(g) = f.get(g_off..).and_then(|s| GtpuPacket::new_checked(s).ok()) else {
        return false;
    };
    let seq = g.seq();
    let (src, dst) = if meta.ipv6 {
        let Ok(ip) = Ipv6Packet::new_checked(&f[l3..]) else {
            return false;
        };
        (ip.dst(), ip.src())
    } else {
        let Ok(ip) = Ipv4Packet::new_checked(&f[l3..]) else {
            return false;
        };
        (u128::from(ip.dst()), u128::from(ip.src()))
    };
    // GTP-U header with the optional octets (S set), then the Recovery IE.
    let gtpu_len = gtpu::HEADER_LEN + 4 + RECOVERY_IE.len();
    let udp_len = udp::HEADER_LEN + gtpu_len;
    let ip_hdr = if meta.ipv6 { 40 } else { 20 };
    let total = l3 + ip_hdr + udp_len;
    // The reply may be a little longer than a bare request: the buffer has room after it.
    if !buf.reframe(0, total) {
        return false;
    }
    let f = buf.frame_mut();
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    e.set_dst(peer_mac);
    e.set_src(port_mac);
    e.set_ethertype(if meta.ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    });
    // Any VLAN tags between the Ethernet header and l3 are kept as they were.
    if meta.ipv6 {
        Ipv6Repr {
            src,
            dst,
            next_header: ip_proto::UDP,
            payload_len: udp_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut f[l3..]));
    } else {
        Ipv4Repr {
            src: src as u32,
            dst: dst as u32,
            protocol: ip_proto::UDP,
            payload_len: udp_len,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut f[l3..]));
    }
    let l4 = l3 + ip_hdr;
    UdpRepr {
        src_port: gtpu::UDP_PORT,
        dst_port: peer_port,
        payload_len: gtpu_len,
    }
    .emit(&mut UdpPacket::new_unchecked(&mut f[l4..]));
    let g = l4 + udp::HEADER_LEN;
    let mut p = GtpuPacket::new_unchecked(&mut f[g..]);
    p.set_flags(0x32);
    p.set_msg_type(gtpu::msg::ECHO_RESPONSE);
    p.set_length((4 + RECOVERY_IE.len()) as u16);
    p.set_teid(0);
    p.set_optional(seq, 0, 0);
    f[g + gtpu::field::OPTIONAL_END..g + gtpu::field::OPTIONAL_END + 2]
        .copy_from_slice(&RECOVERY_IE);
    if meta.ipv6 {
        let sum = udp::pseudo_header_v6(src, dst, ip_proto::UDP, udp_len as u32);
        UdpPacket::new_unchecked(&mut f[l4..l4 + udp_len]).fill_checksum(sum);
    }
    true
}
