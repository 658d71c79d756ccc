//! VXLAN encapsulation (RFC 7348): the inner packet in an Ethernet frame addressed to the
//! peer's VXLAN device, behind a VXLAN header with the VNI, over UDP. The UDP source port
//! carries entropy from the inner flow (section 5), so that ECMP on the path spreads the
//! flows of one tunnel.

use crate::wire::{
    ethernet, udp, vxlan, EtherType, EthernetFrame, UdpPacket, VxlanPacket, VxlanRepr,
};

/// Bytes after the outer IP header: UDP, VXLAN, and the inner Ethernet header.
pub const AFTER_IP_LEN: usize = udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN;

fn inner_ethertype(inner_ipv6: bool) -> u16 {
    if inner_ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    }
}

/// Writes the VXLAN header and the inner Ethernet header (`macs`: destination, source) at
/// the start of `f` (just after the UDP header); returns the UDP ports.
pub fn write(
    f: &mut [u8],
    (vni, udp_port): (u32, u16),
    [inner_dst, inner_src]: [[u8; 6]; 2],
    inner_ipv6: bool,
    entropy_port: u16,
) -> (u16, u16) {
    VxlanRepr { vni }.emit(&mut VxlanPacket::new_unchecked(&mut f[..]));
    let mut inner = EthernetFrame::new_unchecked(&mut f[vxlan::HEADER_LEN..]);
    inner.set_dst(inner_dst);
    inner.set_src(inner_src);
    inner.set_ethertype(inner_ethertype(inner_ipv6));
    (entropy_port, udp_port)
}

/// Patches headers written for an empty IPv4 packet for this one: the UDP length, the entropy
/// source port `sport` and the inner EtherType; `f` starts at the UDP header. Returns the
/// UDP length.
pub fn patch(f: &mut [u8], grow: u16, inner_ipv6: bool, sport: u16) -> u16 {
    let udp_len = super::grow_udp(f, grow);
    UdpPacket::new_unchecked(&mut f[..]).set_src_port(sport);
    let mut inner = EthernetFrame::new_unchecked(&mut f[udp::HEADER_LEN + vxlan::HEADER_LEN..]);
    inner.set_ethertype(inner_ethertype(inner_ipv6));
    udp_len
}
