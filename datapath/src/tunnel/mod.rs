//! Tunnels: one file per kind, each owning what the kind adds to the packet path: its
//! decapsulation (from the outer packet's payload to the inner packet), its encapsulation
//! template, its overhead and its per-packet patch, built on the [`crate::wire`] views.
//!
//! - [`gtpu`]: GTP-U over UDP (TS 29.281), with a PDU Session Container when the session has a
//!   QFI;
//! - [`vxlan`]: Ethernet in VXLAN over UDP (RFC 7348);
//! - [`geneve`]: Ethernet or IP in Geneve over UDP (RFC 8926);
//! - [`ipip`]: IP in IP (RFC 2003, RFC 2473).
//!
//! The decap stage calls each kind's `decap`, which answers a [`Decapped`] (or the drop
//! reason), and then validates the inner header itself; the rewrite stage copies an
//! [`Encap`]'s template and calls [`patch_outer`]. The forwarding snapshot holds the data:
//! the [`Tunnels`] table and the [`Encap`]s. Nothing here imports the stages or the snapshot.

pub mod geneve;
pub mod gtpu;
pub mod ipip;
mod table;
pub mod vxlan;

pub use table::{GtpuSession, LastTunnel, Tunnels};

use crate::pipeline::drop::DropReason;
use crate::wire::{
    ethernet, ip_proto, ipv4, ipv6, udp, vlan, write_ip_header, EtherType, EthernetFrame,
    Ipv4Packet, Ipv6Packet, UdpPacket, UdpRepr,
};

/// A tunnel kind; its value is its index in the per-kind counters and [`KINDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// GTP-U.
    Gtpu = 0,
    /// VXLAN.
    Vxlan = 1,
    /// IPIP.
    Ipip = 2,
    /// Geneve.
    Geneve = 3,
}

/// The kinds' names, by [`Kind`] value (metric labels, trace filters, reports).
pub const KINDS: [&str; 4] = ["gtpu", "vxlan", "ipip", "geneve"];

/// The outer packet as the decap stage saw it.
#[derive(Debug, Clone, Copy)]
pub struct Outer {
    /// The local endpoint it was sent to (a `crate::fib::v4_key` or IPv6 address).
    pub local: u128,
    /// Its source.
    pub src: u128,
    /// The port it arrived on.
    pub in_port: u8,
}

/// What decapsulation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decapped {
    /// The inner packet: its IP header at `off`, its end, and its EtherType (IPv4 or IPv6);
    /// not yet validated.
    Inner {
        /// Offset of the inner IP header.
        off: usize,
        /// End of the inner packet.
        end: usize,
        /// [`EtherType::IPV4`] or [`EtherType::IPV6`].
        ethertype: u16,
    },
    /// A GTP-U Echo Request from a configured peer, to be answered.
    EchoRequest,
    /// Not a tunnel packet after all (for the local stack).
    NotTunnel,
}

/// The EtherType of an IP packet of the family `ipv6`, for the kinds that name the inner
/// family in an Ethernet header or a Protocol Type.
fn ip_ethertype(ipv6: bool) -> u16 {
    if ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    }
}

/// The IP packet in the Ethernet frame at `off..end` (up to two VLAN tags skipped), for the
/// kinds that carry Ethernet; `too_short` and `not_ip` are the kind's reasons.
#[inline]
fn inner_ethernet(
    frame: &[u8],
    (off, end): (usize, usize),
    too_short: DropReason,
    not_ip: DropReason,
) -> Result<Decapped, DropReason> {
    let eth = EthernetFrame::new_checked(frame.get(off..end).unwrap_or_default())
        .map_err(|_| too_short)?;
    let (ethertype, l3) = vlan::skip_tags(frame, eth.ethertype(), off + ethernet::HEADER_LEN)?;
    if ethertype != EtherType::IPV4 && ethertype != EtherType::IPV6 {
        return Err(not_ip);
    }
    Ok(Decapped::Inner {
        off: l3,
        end,
        ethertype,
    })
}

/// How to encapsulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapKind {
    /// GTP-U G-PDU with the session's downlink TEID, and a PDU Session Container (DL) when
    /// the session has a QFI.
    Gtpu {
        /// Downlink TEID.
        teid: u32,
        /// QFI.
        qfi: Option<u8>,
    },
    /// IP in IP (protocol 4 or 41 by the inner family).
    Ipip,
    /// VXLAN toward a peer VTEP: the inner Ethernet header is addressed to `inner_dst` (the
    /// peer's VXLAN device) from `inner_src`.
    Vxlan {
        /// VNI.
        vni: u32,
        /// Destination UDP port.
        udp_port: u16,
        /// Inner destination MAC.
        inner_dst: [u8; 6],
        /// Inner source MAC.
        inner_src: [u8; 6],
    },
    /// Geneve toward a peer: the inner packet in an Ethernet frame with these MACs
    /// (destination, source) when given, else bare.
    Geneve {
        /// VNI.
        vni: u32,
        /// Destination UDP port.
        udp_port: u16,
        /// Inner Ethernet destination and source.
        inner_macs: Option<[[u8; 6]; 2]>,
    },
}

impl EncapKind {
    /// This kind.
    pub fn kind(&self) -> Kind {
        match self {
            EncapKind::Gtpu { .. } => Kind::Gtpu,
            EncapKind::Vxlan { .. } => Kind::Vxlan,
            EncapKind::Ipip => Kind::Ipip,
            EncapKind::Geneve { .. } => Kind::Geneve,
        }
    }

    /// This kind's index in the per-kind counters ([`KINDS`]).
    pub fn index(&self) -> usize {
        self.kind() as usize
    }

    /// Whether the outer UDP source port carries the inner flow's entropy.
    pub fn wants_entropy(&self) -> bool {
        matches!(self, EncapKind::Vxlan { .. } | EncapKind::Geneve { .. })
    }

    /// Bytes this kind writes after the outer IP header.
    pub fn after_ip_len(&self) -> usize {
        match *self {
            EncapKind::Gtpu { qfi, .. } => gtpu::after_ip_len(qfi),
            EncapKind::Vxlan { .. } => vxlan::AFTER_IP_LEN,
            EncapKind::Ipip => ipip::AFTER_IP_LEN,
            EncapKind::Geneve { inner_macs, .. } => geneve::after_ip_len(inner_macs.is_some()),
        }
    }
}

/// The longest outer header an encapsulation writes: Ethernet, IPv6 and the longest that any
/// kind adds after it (VXLAN's UDP, VXLAN and inner Ethernet headers, as long as Geneve's with
/// Ethernet and no options: 84 bytes in all).
pub const ENCAP_HEADER_MAX: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + vxlan::AFTER_IP_LEN;

/// An encapsulation: outer addresses, the outer next hop, and the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    /// Kind and parameters.
    pub kind: EncapKind,
    /// Outer source (a [`crate::fib::v4_key`] or IPv6 address).
    pub local: u128,
    /// Outer destination.
    pub peer: u128,
    /// Outer family is IPv6.
    pub ipv6: bool,
    /// Egress port toward the peer.
    pub port: u8,
    /// The peer's MAC, if known.
    pub mac: Option<[u8; 6]>,
    /// The outer headers as written for an empty IPv4 inner packet (the first
    /// [`Encap::overhead`] bytes; MACs zero): the rewrite stage copies them and patches only
    /// the MACs, lengths, checksums and what depends on the inner packet ([`patch_outer`]).
    pub template: [u8; ENCAP_HEADER_MAX],
}

impl Encap {
    /// An encapsulation with its header template written.
    pub fn new(
        kind: EncapKind,
        (local, peer): (u128, u128),
        ipv6: bool,
        port: u8,
        mac: Option<[u8; 6]>,
    ) -> Encap {
        let mut e = Encap {
            kind,
            local,
            peer,
            ipv6,
            port,
            mac,
            template: [0; ENCAP_HEADER_MAX],
        };
        let mut t = [0; ENCAP_HEADER_MAX];
        write_outer(&mut t, &e, [[0; 6]; 2], 0, false, 0);
        e.template = t;
        e
    }

    /// Bytes of the outer IP header.
    fn ip_len(&self) -> usize {
        if self.ipv6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        }
    }

    /// Bytes the outer headers add in front of the inner IP packet (Ethernet included).
    pub fn overhead(&self) -> usize {
        ethernet::HEADER_LEN + self.ip_len() + self.kind.after_ip_len()
    }
}

/// Grows the UDP length at the start of `f` by `grow`; returns the new length.
fn grow_udp(f: &mut [u8], grow: u16) -> u16 {
    let mut u = UdpPacket::new_unchecked(&mut f[..]);
    let len = u.len().wrapping_add(grow);
    u.set_len(len);
    len
}

/// Grows the length fields of outer headers written for an empty inner packet by `inner_len`
/// and sets what depends on the inner packet: the IPv4 header checksum, IPIP's protocol and
/// VXLAN's inner EtherType by the inner family, VXLAN's entropy source port `sport`, and the
/// UDP checksum over IPv6. `f` holds the outer headers (from the Ethernet header) and the inner
/// packet.
pub fn patch_outer(
    f: &mut [u8],
    e: &Encap,
    inner_len: usize,
    inner_ipv6: bool,
    sport: u16,
) -> bool {
    let l4 = ethernet::HEADER_LEN + e.ip_len();
    let Ok(grow) = u16::try_from(inner_len) else {
        return false;
    };
    // The template's protocol is UDP, or IPIP's for an IPv4 inner packet.
    let ipip = matches!(e.kind, EncapKind::Ipip);
    {
        let ip = &mut f[ethernet::HEADER_LEN..];
        if e.ipv6 {
            let mut p = Ipv6Packet::new_unchecked(ip);
            p.set_payload_len(p.payload_len().wrapping_add(grow));
            if ipip {
                p.set_next_header(ipip::protocol(inner_ipv6));
            }
        } else {
            let mut p = Ipv4Packet::new_unchecked(ip);
            p.set_total_len(p.total_len().wrapping_add(grow));
            if ipip {
                p.set_protocol(ipip::protocol(inner_ipv6));
            }
            p.fill_checksum();
        }
    }
    let udp_len = match e.kind {
        EncapKind::Ipip => return true,
        EncapKind::Gtpu { .. } => gtpu::patch(&mut f[l4..], grow),
        EncapKind::Vxlan { .. } => vxlan::patch(&mut f[l4..], grow, inner_ipv6, sport),
        EncapKind::Geneve { inner_macs, .. } => {
            geneve::patch(&mut f[l4..], grow, inner_macs.is_some(), inner_ipv6, sport)
        }
    };
    if e.ipv6 {
        let udp_len = usize::from(udp_len);
        let sum = udp::pseudo_header_v6(e.local, e.peer, ip_proto::UDP, udp_len as u32);
        let Some(seg) = f.get_mut(l4..l4 + udp_len) else {
            return false;
        };
        let mut u = UdpPacket::new_unchecked(seg);
        u.set_checksum(0);
        u.fill_checksum(sum);
    }
    true
}

/// Writes the whole outer header stack of `e` (`e.overhead()` bytes) at the start of `f`, from
/// `macs` (destination, source) to the last byte before an inner packet of `inner_len` bytes
/// of the family `inner_ipv6`, with every field computed: outer IPv4 with TTL 64, DF set (so
/// the path MTU stays discoverable) and a zero UDP checksum (RFC 768; RFC 7348 and TS 29.281
/// permit it); outer IPv6 with hop limit 64 and a computed UDP checksum (RFC 8200 section
/// 8.1). [`Encap::new`] writes the template with it; the tests check the patched template
/// against it.
pub fn write_outer(
    f: &mut [u8],
    e: &Encap,
    [dst_mac, src_mac]: [[u8; 6]; 2],
    inner_len: usize,
    inner_ipv6: bool,
    entropy_port: u16,
) {
    let after_ip = e.kind.after_ip_len();
    let proto = match e.kind {
        EncapKind::Ipip => ipip::protocol(inner_ipv6),
        _ => ip_proto::UDP,
    };
    let payload_len = after_ip + inner_len;
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst(dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(ip_ethertype(e.ipv6));
    write_ip_header(
        &mut f[ethernet::HEADER_LEN..],
        e.ipv6,
        (e.local, e.peer),
        proto,
        payload_len,
        true,
    );
    let l4 = ethernet::HEADER_LEN + e.ip_len();
    let after_udp = &mut f[l4 + udp::HEADER_LEN..];
    let (src_port, dst_port) = match e.kind {
        EncapKind::Ipip => return,
        EncapKind::Gtpu { teid, qfi } => gtpu::write(after_udp, teid, qfi, inner_len),
        EncapKind::Vxlan {
            vni,
            udp_port,
            inner_dst,
            inner_src,
        } => vxlan::write(
            after_udp,
            (vni, udp_port),
            [inner_dst, inner_src],
            inner_ipv6,
            entropy_port,
        ),
        EncapKind::Geneve {
            vni,
            udp_port,
            inner_macs,
        } => geneve::write(
            after_udp,
            (vni, udp_port),
            inner_macs,
            inner_ipv6,
            entropy_port,
        ),
    };
    UdpRepr {
        src_port,
        dst_port,
        payload_len: payload_len.saturating_sub(udp::HEADER_LEN),
    }
    .emit(&mut UdpPacket::new_unchecked(&mut f[l4..]));
    if e.ipv6 {
        let sum = udp::pseudo_header_v6(e.local, e.peer, ip_proto::UDP, payload_len as u32);
        if let Some(seg) = f.get_mut(l4..l4 + payload_len) {
            UdpPacket::new_unchecked(seg).fill_checksum(sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::v4_key;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = EncapKind> {
        prop_oneof![
            (any::<u32>(), proptest::option::of(0u8..64))
                .prop_map(|(teid, qfi)| EncapKind::Gtpu { teid, qfi }),
            Just(EncapKind::Ipip),
            (
                0u32..1 << 24,
                any::<u16>(),
                any::<[u8; 6]>(),
                any::<[u8; 6]>()
            )
                .prop_map(|(vni, udp_port, inner_dst, inner_src)| EncapKind::Vxlan {
                    vni,
                    udp_port,
                    inner_dst,
                    inner_src,
                }),
            (
                0u32..1 << 24,
                any::<u16>(),
                proptest::option::of(any::<[[u8; 6]; 2]>())
            )
                .prop_map(|(vni, udp_port, inner_macs)| EncapKind::Geneve {
                    vni,
                    udp_port,
                    inner_macs,
                }),
        ]
    }

    fn encap(kind: EncapKind, outer_v6: bool) -> Encap {
        let ends = if outer_v6 {
            ((0x2001_0db8u128 << 96) | 1, (0x2001_0db8u128 << 96) | 2)
        } else {
            (v4_key(0xc000_0201), v4_key(0xc000_0202))
        };
        Encap::new(kind, ends, outer_v6, 0, None)
    }

    #[test]
    fn overheads_are_the_headers_each_kind_writes() {
        let g = |qfi| EncapKind::Gtpu { teid: 1, qfi };
        let vx = EncapKind::Vxlan {
            vni: 1,
            udp_port: 4789,
            inner_dst: [0; 6],
            inner_src: [0; 6],
        };
        let gen = |inner_macs| EncapKind::Geneve {
            vni: 1,
            udp_port: 6081,
            inner_macs,
        };
        // Ethernet + IP + (UDP + GTP-U [+ PSC] | UDP + VXLAN + Ethernet | UDP + Geneve
        // [+ Ethernet] | nothing).
        for (k, v4, v6) in [
            (g(None), 50, 70),
            (g(Some(9)), 58, 78),
            (vx, 64, 84),
            (gen(Some([[0; 6]; 2])), 64, 84),
            (gen(None), 50, 70),
            (EncapKind::Ipip, 34, 54),
        ] {
            assert_eq!(encap(k, false).overhead(), v4, "{k:?}");
            assert_eq!(encap(k, true).overhead(), v6, "{k:?}");
            assert!(encap(k, true).overhead() <= ENCAP_HEADER_MAX);
        }
    }

    proptest! {
        /// The fast path (template copied, then patched) writes exactly what writing every
        /// outer header in full writes, for every kind, both outer and inner families and any
        /// inner packet.
        #[test]
        fn patched_template_equals_headers_written_in_full(
            kind in kind(),
            outer_v6: bool,
            inner_v6: bool,
            inner in proptest::collection::vec(any::<u8>(), 20..1500),
            sport: u16,
            macs: [[u8; 6]; 2],
        ) {
            let e = encap(kind, outer_v6);
            let hdr = e.overhead();
            let mut want = vec![0u8; hdr + inner.len()];
            want[hdr..].copy_from_slice(&inner);
            write_outer(&mut want, &e, macs, inner.len(), inner_v6, sport);
            let mut got = want.clone();
            got[..hdr].copy_from_slice(&e.template[..hdr]);
            let mut eth = EthernetFrame::new_unchecked(&mut got[..]);
            eth.set_dst(macs[0]);
            eth.set_src(macs[1]);
            prop_assert!(patch_outer(&mut got, &e, inner.len(), inner_v6, sport));
            prop_assert_eq!(got, want);
        }
    }
}
