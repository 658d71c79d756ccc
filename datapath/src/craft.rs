//! Builds well-formed frames through the wire `Repr`s: for the demo, the benches, the tests and
//! the traffic generator. Not used on the packet path.

use crate::wire::{
    ethernet, ip_proto, ipv4, ipv6, udp, EtherType, EthernetFrame, EthernetRepr, Ipv4Packet,
    Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};
use std::net::IpAddr;

/// A UDP datagram to build.
#[derive(Debug, Clone, Copy)]
pub struct UdpSpec {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IP source (same family as `dst`).
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Bytes of UDP data (filled with a counting pattern).
    pub payload_len: usize,
}

/// Builds an Ethernet/IPv4-or-IPv6/UDP frame with correct lengths and checksums. Mixed
/// families take the destination's and use the unspecified source.
pub fn udp_frame(s: &UdpSpec) -> Vec<u8> {
    let ip_len = if s.dst.is_ipv4() {
        ipv4::HEADER_LEN
    } else {
        ipv6::HEADER_LEN
    };
    let udp_len = udp::HEADER_LEN + s.payload_len;
    let mut f = vec![0u8; ethernet::HEADER_LEN + ip_len + udp_len];
    EthernetRepr {
        dst: s.dst_mac,
        src: s.src_mac,
        ethertype: if s.dst.is_ipv4() {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        },
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    let l4 = ethernet::HEADER_LEN + ip_len;
    for (i, b) in f[l4 + udp::HEADER_LEN..].iter_mut().enumerate() {
        *b = i as u8;
    }
    UdpRepr {
        src_port: s.src_port,
        dst_port: s.dst_port,
        payload_len: s.payload_len,
    }
    .emit(&mut UdpPacket::new_unchecked(&mut f[l4..]));
    let pseudo = match (s.src, s.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let (a, b) = (u32::from(a), u32::from(b));
            Ipv4Repr {
                src: a,
                dst: b,
                protocol: ip_proto::UDP,
                payload_len: udp_len,
                ttl: s.ttl,
                dscp_ecn: 0,
                ident: 0,
                dont_frag: true,
            }
            .emit(&mut Ipv4Packet::new_unchecked(
                &mut f[ethernet::HEADER_LEN..],
            ));
            udp::pseudo_header_v4(a, b, ip_proto::UDP, udp_len as u16)
        }
        (src, dst) => {
            let a = match src {
                IpAddr::V6(a) => u128::from(a),
                IpAddr::V4(_) => 0,
            };
            let b = match dst {
                IpAddr::V6(b) => u128::from(b),
                IpAddr::V4(b) => u128::from(b.to_ipv6_mapped()),
            };
            Ipv6Repr {
                src: a,
                dst: b,
                next_header: ip_proto::UDP,
                payload_len: udp_len,
                hop_limit: s.ttl,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut Ipv6Packet::new_unchecked(
                &mut f[ethernet::HEADER_LEN..],
            ));
            udp::pseudo_header_v6(a, b, ip_proto::UDP, udp_len as u32)
        }
    };
    UdpPacket::new_unchecked(&mut f[l4..]).fill_checksum(pseudo);
    f
}

/// Wraps `payload` in Ethernet + IPv4 from `src` to `dst` carrying IP protocol `proto`.
pub fn ipv4_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: u32,
    dst: u32,
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN];
    EthernetRepr {
        dst: dst_mac,
        src: src_mac,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    f.extend_from_slice(payload);
    Ipv4Repr {
        src,
        dst,
        protocol: proto,
        payload_len: payload.len(),
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
    }
    .emit(&mut Ipv4Packet::new_unchecked(
        &mut f[ethernet::HEADER_LEN..],
    ));
    f
}

/// Wraps `payload` in Ethernet + IPv4 + UDP (checksum filled).
pub fn ipv4_udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, src_port): (u32, u16),
    (dst, dst_port): (u32, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = vec![0u8; udp::HEADER_LEN];
    seg.extend_from_slice(payload);
    UdpRepr {
        src_port,
        dst_port,
        payload_len: payload.len(),
    }
    .emit(&mut UdpPacket::new_unchecked(&mut seg[..]));
    let pseudo = udp::pseudo_header_v4(src, dst, ip_proto::UDP, seg.len() as u16);
    UdpPacket::new_unchecked(&mut seg[..]).fill_checksum(pseudo);
    ipv4_frame(src_mac, dst_mac, src, dst, ip_proto::UDP, &seg)
}

/// A GTP-U G-PDU carrying `inner` (an IP packet) with `teid`, and a UL PDU Session Container
/// when `qfi` is given.
pub fn gtpu_payload(teid: u32, qfi: Option<u8>, inner: &[u8]) -> Vec<u8> {
    let repr = crate::wire::GtpuRepr {
        msg_type: crate::wire::gtpu::msg::G_PDU,
        teid,
        seq: None,
        psc: qfi.map(|q| (1, q)),
        payload_len: inner.len(),
    };
    let mut g = vec![0u8; repr.buffer_len()];
    repr.emit(&mut g);
    g.extend_from_slice(inner);
    g
}

/// A Geneve header with `vni`, no options and `protocol` (an EtherType, or
/// [`crate::wire::geneve::PROTOCOL_ETHERNET`]) followed by `inner`.
pub fn geneve_payload(vni: u32, protocol: u16, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; crate::wire::geneve::HEADER_LEN];
    crate::wire::GeneveRepr { vni, protocol }
        .emit(&mut crate::wire::GenevePacket::new_unchecked(&mut v[..]));
    v.extend_from_slice(inner);
    v
}

/// A VXLAN header with `vni` followed by `inner` (an Ethernet frame).
pub fn vxlan_payload(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; crate::wire::vxlan::HEADER_LEN];
    crate::wire::VxlanRepr { vni }.emit(&mut crate::wire::VxlanPacket::new_unchecked(&mut v[..]));
    v.extend_from_slice(inner);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ipv4_frame_matches_the_scapy_fixture() {
        let s = UdpSpec {
            src_mac: [0x02, 0, 0, 0, 0, 0x99],
            dst_mac: [0x02, 0, 0, 0, 0, 0x01],
            src: "192.0.2.10".parse().unwrap(),
            dst: "172.18.0.2".parse().unwrap(),
            src_port: 40000,
            dst_port: 5000,
            ttl: 64,
            payload_len: 4,
        };
        let mut f = udp_frame(&s);
        // The fixture carries "ping" and ident 0x1234; patch ours to match and re-checksum.
        f[42..46].copy_from_slice(b"ping");
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_ident(0x1234);
        ip.fill_checksum();
        UdpPacket::new_unchecked(&mut f[34..]).fill_checksum(udp::pseudo_header_v4(
            0xc000_020a,
            0xac12_0002,
            17,
            12,
        ));
        assert_eq!(&f[..], &crate::wire::fixtures::ETH_IPV4_UDP[..]);
    }
}
