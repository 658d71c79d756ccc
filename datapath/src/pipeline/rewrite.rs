//! Rewrite: decrement TTL / hop limit (IPv4 checksum updated incrementally, RFC 1624) and
//! write a fresh Ethernet header in front of the IP header: the neighbour's MAC, the egress
//! port's MAC. Any VLAN tags of the input are thereby removed.

use super::batch::Buf;
use super::Meta;
use crate::wire::{ethernet, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet};

/// Rewrites one packet routed out of a port with MAC `src_mac`. Returns false when the frame
/// cannot be rewritten (it was validated by classify, so this does not happen in practice).
#[inline]
pub fn rewrite_one(buf: &mut Buf, meta: &Meta, src_mac: [u8; 6]) -> bool {
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
