//! Rewrite: decrement TTL / hop limit (IPv4 checksum updated incrementally, RFC 1624) and
//! write a fresh Ethernet header in front of the IP header: the neighbour's MAC, the egress
//! port's MAC. Any VLAN tags of the input are thereby removed.

use super::batch::Buf;
use super::{Meta, NO_ENCAP};
use crate::fib::Fib;
use crate::tunnel::{patch_outer, Encap};
use crate::wire::{ethernet, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet};

/// What [`rewrite_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewritten {
    /// The frame could not be rewritten (it was validated by classify, so this does not
    /// happen in practice).
    Failed,
    /// A fresh Ethernet header.
    Plain,
    /// Encapsulated, in a tunnel of this kind ([`crate::stats::TUNNEL_KINDS`] index).
    Encap(usize),
}

/// Rewrites one packet routed out of a port with MAC `src_mac`, encapsulating it when the
/// route said so.
#[inline(always)]
pub fn rewrite_one(buf: &mut Buf, meta: &Meta, src_mac: [u8; 6], fib: &Fib) -> Rewritten {
    let l3 = usize::from(meta.l3_off);
    let l3_len = usize::from(meta.l3_len);
    {
        let Some(ip) = buf.frame_mut().get_mut(l3..l3 + l3_len) else {
            return Rewritten::Failed;
        };
        // Classify (or decap, for an inner packet) validated the header; the length check
        // is all that keeps the fixed-offset writes below inside the slice.
        if meta.ipv6 {
            if ip.len() < crate::wire::ipv6::HEADER_LEN {
                return Rewritten::Failed;
            }
            let mut p = Ipv6Packet::new_unchecked(ip);
            let h = p.hop_limit();
            p.set_hop_limit(h.saturating_sub(1));
        } else {
            if ip.len() < crate::wire::ipv4::HEADER_LEN {
                return Rewritten::Failed;
            }
            Ipv4Packet::new_unchecked(ip).decrement_ttl();
        }
    }
    if meta.encap != NO_ENCAP {
        return match fib.encap(meta.encap) {
            Some(e) if encap_one(buf, meta, e, src_mac) => Rewritten::Encap(e.kind.index()),
            _ => Rewritten::Failed,
        };
    }
    let eth_start = l3 as isize - ethernet::HEADER_LEN as isize;
    if !buf.reframe(eth_start, ethernet::HEADER_LEN + l3_len) {
        return Rewritten::Failed;
    }
    let mut eth = EthernetFrame::new_unchecked(buf.frame_mut());
    eth.set_dst(meta.dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(if meta.ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    });
    Rewritten::Plain
}

/// Writes the outer headers of `e` in front of the (already TTL-decremented) inner packet, in
/// the buffer's headroom: nothing is copied but the header template. Outer IPv4 gets TTL 64,
/// DF set (so the path MTU stays discoverable) and a zero UDP checksum (RFC 768; RFC 7348 and
/// TS 29.281 permit it); outer IPv6 gets hop limit 64 and a computed UDP checksum (RFC 8200
/// section 8.1).
///
/// The headers come from [`Encap::template`], written once when the FIB was built
/// ([`crate::tunnel::write_outer`]) for an empty IPv4 inner packet; here only the MACs (the
/// neighbour the route stage chose) are set, and the tunnel module patches what depends on the
/// packet ([`patch_outer`]).
///
/// Kept out of line so that the plain path of [`rewrite_one`] stays small enough to inline.
#[inline(never)]
fn encap_one(buf: &mut Buf, meta: &Meta, e: &Encap, src_mac: [u8; 6]) -> bool {
    let l3 = usize::from(meta.l3_off);
    let inner_len = usize::from(meta.l3_len);
    let hdr = e.overhead();
    // RFC 7348 section 5: the UDP source port carries entropy from the inner flow, in the
    // dynamic range, so that ECMP on the path spreads the flows of one tunnel (RFC 8926
    // section 3.3 asks the same of Geneve). It is read before the outer headers overwrite
    // anything.
    let entropy_port = if e.kind.wants_entropy() {
        49152 | (super::classify::flow_hash(buf.frame(), meta) & 0x3fff) as u16
    } else {
        0
    };
    let Some(template) = e.template.get(..hdr) else {
        return false;
    };
    if !buf.reframe(l3 as isize - hdr as isize, hdr + inner_len) {
        return false;
    }
    let f = buf.frame_mut();
    let Some(h) = f.get_mut(..hdr) else {
        return false;
    };
    h.copy_from_slice(template);
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst(meta.dst_mac);
    eth.set_src(src_mac);
    patch_outer(f, e, inner_len, meta.ipv6, entropy_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::v4_key;
    use crate::tunnel::EncapKind;

    fn encap(kind: EncapKind, outer_v6: bool) -> Encap {
        let ends = if outer_v6 {
            ((0x2001_0db8u128 << 96) | 1, (0x2001_0db8u128 << 96) | 2)
        } else {
            (v4_key(0xc000_0201), v4_key(0xc000_0202))
        };
        Encap::new(kind, ends, outer_v6, 0, None)
    }

    #[test]
    fn encapsulation_is_addressed_to_the_neighbour_the_route_stage_chose() {
        // No static MAC for the peer (it was learned by ARP): the frame still goes to it.
        let e = encap(EncapKind::Ipip, false);
        assert_eq!(e.mac, None);
        let inner: Vec<u8> = [
            &[0x45u8, 0, 0, 28, 0, 0, 0, 0, 63, 17, 0, 0][..],
            &[10, 46, 0, 7, 10, 244, 1, 5],
            &[0, 1, 0, 2, 0, 8, 0, 0],
        ]
        .concat();
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(&inner);
        let mut buf = Buf::new();
        assert!(buf.load(&frame, 0));
        let meta = Meta {
            l3_off: 14,
            l3_len: 28,
            dst_mac: [2, 0, 0, 0, 0, 0x30],
            ..Meta::default()
        };
        assert!(encap_one(&mut buf, &meta, &e, [2, 0, 0, 0, 0, 1]));
        let f = buf.frame();
        assert_eq!(f.len(), 14 + 20 + 28);
        assert_eq!(&f[..12], &[2, 0, 0, 0, 0, 0x30, 2, 0, 0, 0, 0, 1]);
        let outer = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!(
            (outer.protocol(), outer.total_len()),
            (crate::wire::ip_proto::IPIP, 48)
        );
        assert_eq!(&f[34..], &inner[..]);
    }
}
