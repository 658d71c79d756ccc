//! Decap: a packet addressed to a local tunnel endpoint loses its outer headers. Nothing is
//! copied: the stage moves the packet's L3 offset to the inner IP header and validates that
//! header like any routed packet (version, lengths, checksum, martians), so the route stage
//! then routes the inner packet and the rewrite stage writes a fresh Ethernet header in front
//! of it.
//!
//! - GTP-U (TS 29.281): UDP 2152 to a local GTP-U endpoint; G-PDUs with a known uplink TEID
//!   from the tunnel's peer are decapsulated; Echo Request is answered ([`super::reply`]); Echo
//!   Response, Error Indication, End Marker and Supported Extension Headers Notification are
//!   counted under their own reasons and never forwarded as user data.
//! - VXLAN (RFC 7348): a configured UDP port and VNI, from a configured peer; the inner
//!   Ethernet header and up to two VLAN tags are stripped; inner non-IP is counted and dropped.
//! - IPIP: IPv4 outer with protocol 4 or 41, IPv6 outer with next header 4 or 41 after the
//!   extension headers classify walked; from a configured peer.
//!
//! An IPv6 outer packet whose Routing header still has segments left is not for this endpoint
//! yet (RFC 8200 section 4.4) and is dropped as `ipv6_segments_left`, whatever it carries.
//!
//! Outer fragments are counted (`outer_fragment`), not reassembled. The UDP checksum is
//! verified unless the port vouches for it (AF_PACKET: the kernel marked it not yet computed,
//! as veth leaves locally generated packets, or already verified); a zero checksum is accepted
//! over IPv4 (RFC 768) and refused over IPv6 (RFC 8200 section 8.1; the RFC 6935 tunnel
//! exemption is not taken). Inner packets are decapsulated
//! once: a tunnel inside a tunnel is routed as ordinary traffic.

use super::classify::{classify_ip, skip_vlan_tags};
use super::drop::DropReason;
use super::{Meta, Next};
use crate::fib::{v4_key, Fib};
use crate::wire::{
    ethernet, gtpu, ip_proto, udp, vxlan, EtherType, EthernetFrame, GtpuPacket, Ipv4Packet,
    Ipv6Packet, UdpPacket, VxlanPacket,
};

/// Decapsulates one packet classify marked, updating `meta` to describe the inner packet.
/// Returns [`Next::Route`] for a decapsulated packet, or the local or drop verdict.
#[inline]
pub fn decap_one(frame: &[u8], fib: &Fib, meta: &mut Meta) -> Next {
    match decap_inner(frame, fib, meta) {
        Ok(next) => next,
        Err(reason) => Next::Drop(reason),
    }
}

/// Outer source and destination as tunnel keys, and the UDP pseudo-header sum.
fn outer(frame: &[u8], meta: &Meta) -> Option<(u128, u128, u32)> {
    let l3 = frame.get(usize::from(meta.l3_off)..)?;
    let l4_len = usize::from(meta.l3_len).checked_sub(usize::from(meta.l4_off - meta.l3_off))?;
    let l4_len = u16::try_from(l4_len).ok()?;
    if meta.ipv6 {
        let ip = Ipv6Packet::new_checked(l3).ok()?;
        let pseudo = udp::pseudo_header_v6(ip.src(), ip.dst(), ip_proto::UDP, u32::from(l4_len));
        Some((ip.src(), ip.dst(), pseudo))
    } else {
        let ip = Ipv4Packet::new_checked(l3).ok()?;
        let pseudo = udp::pseudo_header_v4(ip.src(), ip.dst(), ip_proto::UDP, l4_len);
        Some((v4_key(ip.src()), v4_key(ip.dst()), pseudo))
    }
}

fn decap_inner(frame: &[u8], fib: &Fib, meta: &mut Meta) -> Result<Next, DropReason> {
    if meta.fragment {
        return Err(DropReason::OuterFragment);
    }
    if meta.segments_left {
        // RFC 8200 section 4.4: the packet is on its way to further segments; taking it as
        // the endpoint would skip them, and the gateway implements no routing type.
        return Err(DropReason::Ipv6SegmentsLeft);
    }
    let end = usize::from(meta.l3_off) + usize::from(meta.l3_len);
    let l4 = usize::from(meta.l4_off);
    let Some((src, dst, pseudo)) = outer(frame, meta) else {
        return Ok(Next::Local);
    };
    match meta.proto {
        ip_proto::UDP => {
            let seg = frame.get(l4..end).unwrap_or_default();
            let u = UdpPacket::new_checked(seg)?;
            let port = u.dst_port();
            let is_gtpu = port == gtpu::UDP_PORT && fib.is_gtpu_local(dst);
            let is_vxlan = !is_gtpu && fib.is_vxlan_port(port);
            if !is_gtpu && !is_vxlan {
                return Ok(Next::Local);
            }
            if u.checksum() == 0 && meta.ipv6 {
                return Err(DropReason::UdpZeroChecksumV6);
            }
            if !meta.csum_trusted && !u.verify_checksum(pseudo) {
                return Err(DropReason::UdpBadChecksum);
            }
            let payload = l4 + udp::HEADER_LEN;
            let payload_end = l4 + usize::from(u.len());
            if is_gtpu {
                decap_gtpu(frame, fib, meta, dst, src, payload, payload_end)
            } else {
                decap_vxlan(frame, fib, meta, (dst, port, src), payload, payload_end)
            }
        }
        ip_proto::IPIP | ip_proto::IPV6 => {
            if fib.ipip_tunnel(dst, src).is_none() {
                return if fib.is_ipip_local(dst) {
                    Err(DropReason::TunnelUnknownPeer)
                } else {
                    Ok(Next::Local)
                };
            }
            let ethertype = if meta.proto == ip_proto::IPIP {
                EtherType::IPV4
            } else {
                EtherType::IPV6
            };
            classify_ip(frame, l4, end, ethertype, None, meta)
        }
        _ => Ok(Next::Local),
    }
}

fn decap_gtpu(
    frame: &[u8],
    fib: &Fib,
    meta: &mut Meta,
    local: u128,
    src: u128,
    off: usize,
    end: usize,
) -> Result<Next, DropReason> {
    let g = GtpuPacket::new_checked(frame.get(off..end).unwrap_or_default())?;
    match g.msg_type() {
        gtpu::msg::G_PDU => {}
        gtpu::msg::ECHO_REQUEST => {
            // Answered in place after the other stages (see `reply`).
            meta.echo_request = true;
            return Ok(Next::Local);
        }
        gtpu::msg::ECHO_RESPONSE => return Err(DropReason::GtpuEchoResponse),
        gtpu::msg::ERROR_INDICATION => return Err(DropReason::GtpuErrorIndication),
        gtpu::msg::END_MARKER => return Err(DropReason::GtpuEndMarker),
        gtpu::msg::SUPPORTED_EXT_HEADERS => return Err(DropReason::GtpuSupportedExtHeaders),
        _ => return Err(DropReason::GtpuUnknownMessage),
    }
    let teid = g.teid();
    if teid == 0 {
        return Err(DropReason::GtpuTeidZero);
    }
    let tunnel = fib
        .gtpu_tunnel(local, teid)
        .ok_or(DropReason::GtpuUnknownTeid)?;
    if !fib.is_tunnel_peer(tunnel, src) {
        return Err(DropReason::TunnelUnknownPeer);
    }
    let w = g.walk()?;
    let inner = off + w.payload_off;
    let inner_end = off + w.payload_end;
    let ethertype = match frame.get(inner).map(|b| b >> 4) {
        Some(4) if inner < inner_end => EtherType::IPV4,
        Some(6) if inner < inner_end => EtherType::IPV6,
        _ => return Err(DropReason::GtpuInnerNotIp),
    };
    classify_ip(frame, inner, inner_end, ethertype, None, meta)
}

fn decap_vxlan(
    frame: &[u8],
    fib: &Fib,
    meta: &mut Meta,
    (local, port, src): (u128, u16, u128),
    off: usize,
    end: usize,
) -> Result<Next, DropReason> {
    let v = VxlanPacket::new_checked(frame.get(off..end).unwrap_or_default())?;
    let tunnel = fib
        .vxlan_tunnel(local, port, v.vni())
        .ok_or(DropReason::VxlanUnknownVni)?;
    if !fib.is_tunnel_peer(tunnel, src) {
        return Err(DropReason::TunnelUnknownPeer);
    }
    let eth_off = off + vxlan::HEADER_LEN;
    let inner_frame = frame.get(eth_off..end).unwrap_or_default();
    let eth =
        EthernetFrame::new_checked(inner_frame).map_err(|_| DropReason::VxlanInnerTooShort)?;
    let (ethertype, l3) = skip_vlan_tags(frame, eth.ethertype(), eth_off + ethernet::HEADER_LEN)?;
    if ethertype != EtherType::IPV4 && ethertype != EtherType::IPV6 {
        return Err(DropReason::VxlanInnerNotIp);
    }
    classify_ip(frame, l3, end, ethertype, None, meta)
}
