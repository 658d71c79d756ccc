//! VXLAN (RFC 7348).
//!
//! - Decapsulation: a configured UDP port and VNI, from a configured peer; the inner Ethernet
//!   header and up to two VLAN tags are stripped; inner non-IP is counted and dropped.
//! - Encapsulation: the inner packet in an Ethernet frame addressed to the peer's VXLAN
//!   device, behind a VXLAN header with the VNI, over UDP. The UDP source port carries entropy
//!   from the inner flow (section 5), so that ECMP on the path spreads the flows of one
//!   tunnel.

use super::{Decapped, Kind, LastTunnel, Outer, Tunnels};
use crate::pipeline::drop::DropReason;
use crate::wire::{ethernet, udp, vxlan, EthernetFrame, UdpPacket, VxlanPacket, VxlanRepr};

/// Decapsulates the VXLAN packet at `off..end` (the payload of UDP port `port`).
///
/// # Errors
/// The drop reason.
#[inline]
pub fn decap(
    frame: &[u8],
    tunnels: &Tunnels,
    o: &Outer,
    port: u16,
    (off, end): (usize, usize),
    last: &mut LastTunnel,
) -> Result<Decapped, DropReason> {
    let v = VxlanPacket::new_checked(frame.get(off..end).unwrap_or_default())?;
    let vni = v.vni();
    let id = (u64::from(port) << 32) | u64::from(vni);
    last.accept((o.local, o.src), Kind::Vxlan, id, || {
        let tunnel = tunnels
            .by_vni(o.local, port, vni)
            .ok_or(DropReason::VxlanUnknownVni)?;
        tunnels.peer_check(tunnel, o.src, o.in_port)?;
        Ok(None)
    })?;
    super::inner_ethernet(
        frame,
        (off + vxlan::HEADER_LEN, end),
        DropReason::VxlanInnerTooShort,
        DropReason::VxlanInnerNotIp,
    )
}

/// Bytes after the outer IP header: UDP, VXLAN, and the inner Ethernet header.
pub const AFTER_IP_LEN: usize = udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN;

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
    inner.set_ethertype(super::ip_ethertype(inner_ipv6));
    (entropy_port, udp_port)
}

/// Patches headers written for an empty IPv4 packet for this one: the UDP length, the entropy
/// source port `sport` and the inner EtherType; `f` starts at the UDP header. Returns the
/// UDP length.
pub fn patch(f: &mut [u8], grow: u16, inner_ipv6: bool, sport: u16) -> u16 {
    let udp_len = super::grow_udp(f, grow);
    UdpPacket::new_unchecked(&mut f[..]).set_src_port(sport);
    let mut inner = EthernetFrame::new_unchecked(&mut f[udp::HEADER_LEN + vxlan::HEADER_LEN..]);
    inner.set_ethertype(super::ip_ethertype(inner_ipv6));
    udp_len
}
