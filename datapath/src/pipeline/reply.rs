//! Reply: answers what the gateway itself must answer on the fast path. A packet too big for
//! its egress gets ICMP "fragmentation needed" (RFC 792, RFC 1191) or ICMPv6 "packet too big"
//! (RFC 4443 section 3.2), and one whose TTL or hop limit runs out gets "time exceeded"
//! (RFC 792, RFC 1812 section 5.3.1; RFC 4443 section 3.3), toward its source, built in place
//! in front of the quoted original;
//! and a GTP-U Echo Request (TS 29.281 section 7.2.1) in place with an Echo
//! Response (7.2.2): same sequence number, TEID 0, and the mandatory Recovery IE with restart
//! counter 0 (TS 29.281 section 8.2: the counter is not used by GTP-U and is sent as 0). The
//! addresses, ports and MACs are swapped; the response leaves through the input port.

use super::Meta;
use crate::pipeline::batch::Buf;
use crate::wire::write_ip_header;
use crate::wire::{
    ethernet, gtpu, icmp, ip_proto, ipv4, ipv6, udp, EtherType, EthernetFrame, GtpuPacket,
    IcmpPacket, IcmpRepr, Ipv4Packet, Ipv6Packet, UdpPacket, UdpRepr,
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
    let gtpu_len = gtpu::field::OPTIONAL_END + RECOVERY_IE.len();
    let udp_len = udp::HEADER_LEN + gtpu_len;
    let ip_hdr = if meta.ipv6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
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
    write_ip_header(
        &mut f[l3..],
        meta.ipv6,
        (src, dst),
        ip_proto::UDP,
        udp_len,
        true,
    );
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
    // Length counts what follows the mandatory header.
    p.set_length((gtpu_len - gtpu::HEADER_LEN) as u16);
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

/// The ICMP errors the forwarding path sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// Fragmentation needed (IPv4, DF set) or packet too big (IPv6), with the egress MTU.
    TooBig,
    /// Time exceeded in transit: the TTL or hop limit would reach zero.
    TimeExceeded,
}

/// Turns a dropped packet into the ICMP error `kind` for its source, in place: the new IP
/// and ICMP headers go in front of the quoted original (IPv4: its header and 8 bytes; IPv6: as
/// much as keeps the error within 1280 bytes). The source address and the checksums that
/// depend on it are left to [`finish_icmp`], once the route back is known. `meta` then
/// describes the error, ready for the route stage. Returns false when no error may be sent:
/// about a later fragment, an ICMP error, or (too big, IPv4) a packet without DF.
pub fn icmp_error(buf: &mut Buf, meta: &mut Meta, kind: IcmpError) -> bool {
    let l3 = usize::from(meta.l3_off);
    let l3_len = usize::from(meta.l3_len);
    let f = buf.frame();
    let (quote_len, head, orig_src) = if meta.ipv6 {
        let Some(ip) = f
            .get(l3..l3 + l3_len)
            .and_then(|s| Ipv6Packet::new_checked(s).ok())
        else {
            return false;
        };
        if meta.l4_off == 0 {
            return false; // a later fragment
        }
        if meta.proto == ip_proto::ICMPV6
            && f.get(usize::from(meta.l4_off))
                .is_none_or(|&t| icmp::is_error(true, t))
        {
            return false;
        }
        // The whole error within the minimum IPv6 MTU.
        let room = ipv6::MIN_MTU - ipv6::HEADER_LEN - icmp::HEADER_LEN;
        let head = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp::HEADER_LEN;
        (l3_len.min(room), head, ip.src())
    } else {
        let Some(ip) = f
            .get(l3..l3 + l3_len)
            .and_then(|s| Ipv4Packet::new_checked(s).ok())
        else {
            return false;
        };
        // Too big without DF: the packet should be fragmented; that is not done, and no error
        // is due. Errors are sent only about a first fragment (RFC 1812 4.3.2.7).
        if (kind == IcmpError::TooBig && !ip.dont_frag()) || ip.frag_offset() != 0 || ip.src() == 0
        {
            return false;
        }
        if ip.protocol() == ip_proto::ICMP
            && f.get(l3 + ip.header_len())
                .is_none_or(|&t| icmp::is_error(false, t))
        {
            return false;
        }
        // RFC 792: the header and the first 64 bits of the data.
        (
            (ip.header_len() + 8).min(l3_len),
            ethernet::HEADER_LEN + ipv4::HEADER_LEN + icmp::HEADER_LEN,
            u128::from(ip.src()),
        )
    };
    if !buf.reframe(l3 as isize - head as isize, head + quote_len) {
        return false;
    }
    let mtu = meta.mtu;
    let f = buf.frame_mut();
    let at = head - icmp::HEADER_LEN;
    let proto = if meta.ipv6 {
        ip_proto::ICMPV6
    } else {
        ip_proto::ICMP
    };
    // Source 0 for now: finish_icmp sets the egress port's address once the route is known.
    write_ip_header(
        &mut f[ethernet::HEADER_LEN..],
        meta.ipv6,
        (0, orig_src),
        proto,
        icmp::HEADER_LEN + quote_len,
        false,
    );
    meta.proto = proto;
    let repr = match (kind, meta.ipv6) {
        (IcmpError::TooBig, true) => IcmpRepr::PacketTooBig {
            mtu: u32::from(mtu),
        },
        (IcmpError::TooBig, false) => IcmpRepr::FragNeeded { mtu },
        (IcmpError::TimeExceeded, ipv6) => IcmpRepr::TimeExceeded { ipv6 },
    };
    let mut p = IcmpPacket::new_unchecked(&mut f[at..]);
    repr.emit(&mut p);
    if meta.ipv6 {
        // The ICMPv6 checksum covers the source address too: finish_icmp fills it.
        meta.dst6 = orig_src;
    } else {
        p.fill_checksum(0);
        meta.dst4 = orig_src as u32;
    }
    meta.l3_off = ethernet::HEADER_LEN as u16;
    meta.l3_len = (head - ethernet::HEADER_LEN + quote_len) as u16;
    meta.l4_off = at as u16;
    meta.fragment = false;
    meta.echo_request = false;
    true
}

/// Sets the error's source to the gateway's address on the egress port and fills the
/// checksums that cover it. False when the port has no address of the family.
pub fn finish_icmp(buf: &mut Buf, meta: &Meta, addrs: crate::fib::PortAddrs) -> bool {
    let l3 = usize::from(meta.l3_off);
    let len = usize::from(meta.l3_len);
    let Some(f) = buf.frame_mut().get_mut(l3..l3 + len) else {
        return false;
    };
    if meta.ipv6 {
        let Some(src) = addrs.v6 else { return false };
        let mut ip = Ipv6Packet::new_unchecked(&mut f[..]);
        ip.set_src(src);
        let dst = ip.dst();
        let Some(msg) = f.get_mut(ipv6::HEADER_LEN..) else {
            return false;
        };
        let pseudo = udp::pseudo_header_v6(src, dst, ip_proto::ICMPV6, msg.len() as u32);
        IcmpPacket::new_unchecked(msg).fill_checksum(pseudo);
    } else {
        let Some(src) = addrs.v4 else { return false };
        let mut ip = Ipv4Packet::new_unchecked(&mut f[..]);
        ip.set_src(src);
        ip.fill_checksum();
    }
    true
}
