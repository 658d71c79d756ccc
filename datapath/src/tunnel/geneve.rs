//! Geneve (RFC 8926).
//!
//! - Decapsulation: a configured UDP port (6081 by default) and VNI, from a configured peer.
//!   The options are walked, bounded by Opt Len; an option with the critical bit is refused
//!   (`geneve_critical_option`: the gateway understands no option, and section 3.5.1 forbids
//!   decapsulating past one it does not understand). Control messages (the O bit) are counted
//!   and never forwarded. The Protocol Type decides the payload: an Ethernet frame (0x6558,
//!   as Cilium and OVS send; up to two VLAN tags stripped) or an IP packet (0x0800, 0x86DD).
//! - Encapsulation: toward the tunnel's peers, with no options, the UDP source port from the
//!   inner flow hash (section 3.3), and the inner packet either in an Ethernet frame addressed
//!   to the peer's device (when the tunnel names the peers' MAC) or bare, its family in the
//!   Protocol Type.

use super::{Decapped, Kind, LastTunnel, Outer, Tunnels};
use crate::pipeline::drop::DropReason;
use crate::wire::{
    ethernet, geneve, udp, EtherType, EthernetFrame, GenevePacket, GeneveRepr, UdpPacket,
};

/// Decapsulates the Geneve packet at `off..end` (the payload of UDP port `port`).
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
    let g = GenevePacket::new_checked(frame.get(off..end).unwrap_or_default())?;
    if g.oam() {
        return Err(DropReason::GeneveOam);
    }
    let vni = g.vni();
    let id = (u64::from(port) << 32) | u64::from(vni);
    last.accept((o.local, o.src), Kind::Geneve, id, || {
        let tunnel = tunnels
            .by_vni(o.local, port, vni)
            .ok_or(DropReason::GeneveUnknownVni)?;
        tunnels.peer_check(tunnel, o.src, o.in_port)?;
        Ok(None)
    })?;
    if g.options_len() != 0 {
        g.check_options()?;
    }
    let payload = off + g.header_len();
    match g.protocol() {
        geneve::PROTOCOL_ETHERNET => super::inner_ethernet(
            frame,
            (payload, end),
            DropReason::GeneveInnerTooShort,
            DropReason::GeneveInnerNotIp,
        ),
        ethertype @ (EtherType::IPV4 | EtherType::IPV6) => Ok(Decapped::Inner {
            off: payload,
            end,
            ethertype,
        }),
        _ => Err(DropReason::GeneveInnerNotIp),
    }
}

/// Bytes after the outer IP header: UDP, Geneve, and the inner Ethernet header when there is
/// one.
pub const fn after_ip_len(ethernet: bool) -> usize {
    udp::HEADER_LEN + geneve::HEADER_LEN + if ethernet { ethernet::HEADER_LEN } else { 0 }
}

/// Writes the Geneve header, and the inner Ethernet header when `macs` (destination, source)
/// are given, at the start of `f` (just after the UDP header); returns the UDP ports.
pub fn write(
    f: &mut [u8],
    (vni, udp_port): (u32, u16),
    macs: Option<[[u8; 6]; 2]>,
    inner_ipv6: bool,
    entropy_port: u16,
) -> (u16, u16) {
    let protocol = match macs {
        Some(_) => geneve::PROTOCOL_ETHERNET,
        None => super::ip_ethertype(inner_ipv6),
    };
    GeneveRepr { vni, protocol }.emit(&mut GenevePacket::new_unchecked(&mut f[..]));
    if let Some([dst, src]) = macs {
        let mut inner = EthernetFrame::new_unchecked(&mut f[geneve::HEADER_LEN..]);
        inner.set_dst(dst);
        inner.set_src(src);
        inner.set_ethertype(super::ip_ethertype(inner_ipv6));
    }
    (entropy_port, udp_port)
}

/// Patches headers written for an empty IPv4 packet for this one: the UDP length, the entropy
/// source port `sport`, and the inner family (in the inner EtherType, or the Protocol Type);
/// `f` starts at the UDP header. Returns the UDP length.
pub fn patch(f: &mut [u8], grow: u16, ethernet: bool, inner_ipv6: bool, sport: u16) -> u16 {
    let udp_len = super::grow_udp(f, grow);
    UdpPacket::new_unchecked(&mut f[..]).set_src_port(sport);
    let g = &mut f[udp::HEADER_LEN..];
    if ethernet {
        EthernetFrame::new_unchecked(&mut g[geneve::HEADER_LEN..])
            .set_ethertype(super::ip_ethertype(inner_ipv6));
    } else {
        GenevePacket::new_unchecked(g).set_protocol(super::ip_ethertype(inner_ipv6));
    }
    udp_len
}
