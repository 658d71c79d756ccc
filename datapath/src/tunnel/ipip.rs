//! IP in IP (RFC 2003 for IPv4 inside, RFC 2473 for IPv6 inside, over either family):
//! nothing between the outer IP header and the inner packet; the outer protocol names the
//! inner family. Decapsulated from a configured peer: IPv4 outer with protocol 4 or 41, IPv6
//! outer with next header 4 or 41 after the extension headers classify walked.

use super::{Decapped, Kind, LastTunnel, Outer, Tunnels};
use crate::pipeline::drop::DropReason;
use crate::wire::{ip_proto, EtherType};

/// Decapsulates the inner packet at `off..end`, announced by outer protocol `proto` (4 or
/// 41). A packet to an endpoint that terminates no IPIP is [`Decapped::NotTunnel`].
///
/// # Errors
/// The drop reason.
#[inline]
pub fn decap(
    tunnels: &Tunnels,
    o: &Outer,
    proto: u8,
    (off, end): (usize, usize),
    last: &mut LastTunnel,
) -> Result<Decapped, DropReason> {
    let accepted = last.accept((o.local, o.src), Kind::Ipip, 0, || {
        let tunnel = tunnels
            .ipip(o.local, o.src)
            .ok_or(DropReason::TunnelUnknownPeer)?;
        tunnels.peer_check(tunnel, o.src, o.in_port)?;
        Ok(None)
    });
    match accepted {
        // No tunnel from this source, and the endpoint terminates no IPIP: the packet is for
        // the local stack (another kind shares the address).
        Err(DropReason::TunnelUnknownPeer) if !tunnels.is_ipip_local(o.local) => {
            return Ok(Decapped::NotTunnel)
        }
        r => r?,
    }
    let ethertype = if proto == ip_proto::IPIP {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    Ok(Decapped::Inner {
        off,
        end,
        ethertype,
    })
}

/// Bytes after the outer IP header.
pub const AFTER_IP_LEN: usize = 0;

/// The outer IP protocol for an inner packet of the family `inner_ipv6`.
pub fn protocol(inner_ipv6: bool) -> u8 {
    if inner_ipv6 {
        ip_proto::IPV6
    } else {
        ip_proto::IPIP
    }
}
