//! Classify: Ethernet (with up to two VLAN tags) → IPv4/IPv6 validation, as RFC 1812 section
//! 5.2.2 asks of a router: version, header length, total length, checksum; link padding is
//! trimmed. Martian sources and destinations that are never forwarded are dropped here.

use super::drop::DropReason;
use super::{Meta, Next};
use crate::fib::{Fib, PortInfo};
use crate::wire::{
    ethernet, ip_proto, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, VlanPacket,
};

/// IPv4 destinations a router never forwards (RFC 1812 5.3.7, RFC 6890): 0/8, 127/8,
/// 224/4 multicast, 240/4 reserved and limited broadcast.
#[inline]
fn martian_dst4(a: u32) -> bool {
    let top = a >> 24;
    top == 0 || top == 127 || top >= 224
}

/// IPv4 sources never valid on the wire: loopback, multicast, reserved and broadcast.
#[inline]
fn martian_src4(a: u32) -> bool {
    let top = a >> 24;
    top == 127 || top >= 224
}

/// Classifies one frame received on a port with `port` settings, filling `meta`.
#[inline]
pub fn classify_one(frame: &[u8], port: &PortInfo, fib: &Fib, meta: &mut Meta) -> Next {
    match classify_inner(frame, port, fib, meta) {
        Ok(next) => next,
        Err(reason) => Next::Drop(reason),
    }
}

#[inline]
fn classify_inner(
    frame: &[u8],
    port: &PortInfo,
    fib: &Fib,
    meta: &mut Meta,
) -> Result<Next, DropReason> {
    let eth = EthernetFrame::new_checked(frame)?;
    let dst = eth.dst();
    if dst[0] & 1 == 0 && dst != port.mac && !port.promiscuous {
        return Err(DropReason::L2OtherHost);
    }
    let (ethertype, off) = skip_vlan_tags(frame, eth.ethertype(), ethernet::HEADER_LEN)?;
    if ethertype == EtherType::ARP {
        return Ok(Next::Local);
    }
    meta.decap = false;
    classify_ip(frame, off, frame.len(), ethertype, Some(fib), meta)
}

/// Skips up to two 802.1Q / 802.1ad tags starting at `off`; returns the EtherType after them
/// and the offset of what follows.
///
/// # Errors
/// [`DropReason::VlanTooShort`], [`DropReason::VlanTooDeep`].
#[inline]
pub fn skip_vlan_tags(
    frame: &[u8],
    mut ethertype: u16,
    mut off: usize,
) -> Result<(u16, usize), DropReason> {
    for _ in 0..2 {
        if ethertype != EtherType::VLAN && ethertype != EtherType::QINQ {
            return Ok((ethertype, off));
        }
        let tag = VlanPacket::new_checked(frame.get(off..).unwrap_or_default())?;
        ethertype = tag.ethertype();
        off += crate::wire::vlan::HEADER_LEN;
    }
    if ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
        return Err(DropReason::VlanTooDeep);
    }
    Ok((ethertype, off))
}

/// Validates the IP header at `off` (bounded by `end`) as RFC 1812 asks, fills `meta`, and
/// returns [`Next::Route`] or the local or drop verdict. With `fib`, a packet addressed to a
/// local tunnel endpoint is marked for the decap stage; inner packets are validated without it,
/// so a tunnel inside a tunnel is routed, not decapsulated twice.
#[inline(always)]
pub fn classify_ip(
    frame: &[u8],
    off: usize,
    end: usize,
    ethertype: u16,
    fib: Option<&Fib>,
    meta: &mut Meta,
) -> Result<Next, DropReason> {
    let l3 = frame.get(off..end).unwrap_or_default();
    meta.l3_off = off as u16;
    match ethertype {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(l3)?;
            if !ip.verify_checksum() {
                return Err(DropReason::Ipv4BadChecksum);
            }
            if martian_src4(ip.src()) {
                return Err(DropReason::MartianSource);
            }
            if martian_dst4(ip.dst()) {
                return Err(DropReason::MartianDestination);
            }
            meta.ipv6 = false;
            meta.dst4 = ip.dst();
            meta.l3_len = ip.total_len();
            meta.proto = ip.protocol();
            meta.fragment = ip.is_fragment();
            meta.segments_left = false;
            meta.l4_off = if ip.is_fragment() && ip.frag_offset() != 0 {
                0
            } else {
                (off + ip.header_len()) as u16
            };
            meta.decap = fib.is_some_and(|f| f.is_tunnel_local(crate::fib::v4_key(ip.dst())));
            Ok(Next::Route)
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3)?;
            let src = ip.src();
            if src >> 120 == 0xff || src == 1 {
                return Err(DropReason::MartianSource);
            }
            let d = ip.dst();
            let ul = ip.upper_layer()?;
            if d >> 120 == 0xff {
                // Link-scope multicast (ff02::/16: all-nodes, solicited-node for NDP) belongs
                // to the local stack; wider scopes are not routed by this gateway.
                return if d >> 112 == 0xff02 {
                    Ok(Next::Local)
                } else {
                    Err(DropReason::MartianDestination)
                };
            }
            if d >> 118 == 0x3fa {
                // fe80::/10 link-local: never forwarded, only for the local stack.
                return Ok(Next::Local);
            }
            if d <= 1 {
                return Err(DropReason::MartianDestination);
            }
            meta.ipv6 = true;
            meta.dst6 = d;
            meta.l3_len = ip.total_len() as u16;
            meta.proto = ul.protocol;
            meta.fragment = ul.fragment;
            meta.segments_left = ul.segments_left != 0;
            meta.l4_off = if ul.later_fragment {
                0
            } else {
                (off + ul.offset) as u16
            };
            meta.decap = fib.is_some_and(|f| f.is_tunnel_local(d));
            Ok(Next::Route)
        }
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// The flow hash of a classified packet: addresses, protocol and, for TCP/UDP/SCTP first
/// fragments, ports. Used to pick an ECMP member so a flow keeps one path.
#[inline]
pub fn flow_hash(frame: &[u8], meta: &Meta) -> u32 {
    let l3 = usize::from(meta.l3_off);
    let mut h: u64 = u64::from(meta.proto);
    if meta.ipv6 {
        if let Ok(ip) = Ipv6Packet::new_checked(frame.get(l3..).unwrap_or_default()) {
            let s = ip.src() ^ ip.dst();
            h ^= (s as u64) ^ ((s >> 64) as u64);
        }
    } else if let Ok(ip) = Ipv4Packet::new_checked(frame.get(l3..).unwrap_or_default()) {
        h ^= (u64::from(ip.src()) << 32) | u64::from(ip.dst());
    }
    let l4 = usize::from(meta.l4_off);
    if l4 != 0 && matches!(meta.proto, ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP) {
        if let Some(p) = frame.get(l4..l4 + 4) {
            h ^= u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]])) << 16;
        }
    }
    // A 64-bit multiplicative mix (Fibonacci hashing) folds every input bit into the top.
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}
