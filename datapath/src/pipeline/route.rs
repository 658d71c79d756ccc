//! Route: longest-prefix match on the destination, then next-hop resolution. IPv4 keys of the
//! whole batch go through one bulk lookup. Forwarding checks (RFC 1812 5.3.1 TTL, egress MTU,
//! no reflection out of the input port) are applied once the egress is known.

use super::classify::flow_hash;
use super::{Meta, Next};
use crate::fib::{Fib, NextHop};
use crate::lpm::NO_ROUTE;
use crate::pipeline::drop::DropReason;

/// The member of an ECMP next hop `nh` that [`resolve_one`] chooses for this packet, for the
/// trace; `None` when `nh` is not ECMP.
pub fn ecmp_choice(fib: &Fib, nh: u32, frame: &[u8], meta: &Meta) -> Option<NextHop> {
    match fib.nexthop(nh) {
        Some(&NextHop::Ecmp { start, len }) => {
            fib.ecmp_member(start, len, flow_hash(frame, meta)).copied()
        }
        _ => None,
    }
}

/// Resolves the next hop `nh` for a packet that arrived on `in_port`; on success writes the
/// neighbour MAC into `meta.dst_mac` and returns the egress.
#[inline(always)]
pub fn resolve_one(fib: &Fib, nh: u32, frame: &[u8], in_port: u8, meta: &mut Meta) -> Next {
    if nh == NO_ROUTE {
        return Next::Drop(DropReason::NoRoute);
    }
    let mut hop = fib.nexthop(nh);
    if let Some(&NextHop::Ecmp { start, len }) = hop {
        hop = fib.ecmp_member(start, len, flow_hash(frame, meta));
    }
    meta.encap = super::NO_ENCAP;
    meta.resolve = (0, 0);
    let neigh = fib.neighbors();
    let (port, mac, hairpin) = match hop {
        None => return Next::Drop(DropReason::UnknownNextHop),
        Some(NextHop::NoSession) => return Next::Drop(DropReason::GtpuNoSession),
        Some(&NextHop::Encap { index }) => {
            let Some(e) = fib.encap(index) else {
                return Next::Drop(DropReason::UnknownNextHop);
            };
            // The outer packet must fit the egress MTU. The drop is counted, and the reply stage
            // sends ICMP "fragmentation needed" / "packet too big" toward the source with
            // the MTU left for the inner packet.
            let outer_ip_len = usize::from(meta.l3_len) + e.overhead() - 14;
            let mtu = fib.port(e.port).map_or(0, |p| p.mtu);
            if outer_ip_len > usize::from(mtu) {
                // What the inner packet may be, so that the source can fit the tunnel.
                meta.mtu = mtu.saturating_sub((e.overhead() - 14) as u16);
                return Next::Drop(DropReason::MtuExceeded);
            }
            meta.encap = index;
            // Tunnels commonly leave through the port their traffic came in on.
            let mac = e.mac.or_else(|| neigh.lookup(e.peer));
            if mac.is_none() {
                meta.resolve = (e.peer, e.port);
            }
            (e.port, mac, true)
        }
        Some(NextHop::Local) => return Next::Local,
        Some(NextHop::Blackhole) => return Next::Drop(DropReason::Blackhole),
        Some(NextHop::Ecmp { .. }) => return Next::Drop(DropReason::EcmpNested),
        Some(&NextHop::Unresolved {
            port,
            addr,
            hairpin,
        }) => {
            let mac = neigh.lookup(addr);
            if mac.is_none() {
                meta.resolve = (addr, port);
            }
            (port, mac, hairpin)
        }
        Some(&NextHop::Forward { port, mac, hairpin }) => (port, Some(mac), hairpin),
        Some(&NextHop::Connected { port }) => {
            let key = if meta.ipv6 {
                meta.dst6
            } else {
                crate::fib::v4_key(meta.dst4)
            };
            let mac = if meta.ipv6 {
                fib.neighbor6(meta.dst6)
            } else {
                fib.neighbor4(meta.dst4)
            }
            .or_else(|| neigh.lookup(key));
            if mac.is_none() {
                meta.resolve = (key, port);
            }
            (port, mac, false)
        }
    };
    // TTL / hop limit: the byte at offset 8 (IPv4) or 7 (IPv6) of the IP header.
    let ttl_at = usize::from(meta.l3_off) + if meta.ipv6 { 7 } else { 8 };
    if frame.get(ttl_at).is_none_or(|&t| t <= 1) {
        return Next::Drop(DropReason::TtlExpired);
    }
    if port == in_port && !hairpin {
        return Next::Drop(DropReason::Hairpin);
    }
    let mtu = fib.port(port).map_or(0, |p| p.mtu);
    if meta.encap == super::NO_ENCAP && meta.l3_len > mtu {
        meta.mtu = mtu;
        return Next::Drop(DropReason::MtuExceeded);
    }
    let Some(mac) = mac else {
        return Next::Drop(DropReason::NeighborUnresolved);
    };
    meta.dst_mac = mac;
    Next::Tx(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::{FibBuilder, PortInfo};

    #[test]
    fn a_next_hop_index_the_snapshot_lacks_is_its_own_drop_not_no_route() {
        let mut b = FibBuilder::new();
        b.add_port(PortInfo {
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            promiscuous: false,
        })
        .unwrap();
        let fib = b.build().unwrap();
        let mut meta = Meta::default();
        assert_eq!(
            resolve_one(&fib, 9999, &[0; 64], 0, &mut meta),
            Next::Drop(DropReason::UnknownNextHop)
        );
        assert_eq!(
            resolve_one(&fib, NO_ROUTE, &[0; 64], 0, &mut meta),
            Next::Drop(DropReason::NoRoute)
        );
    }
}
