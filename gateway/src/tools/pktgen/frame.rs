//! Frames for `gateway pktgen`, built layer by layer from the inside out, with a record of
//! every byte that changes from frame to frame: the fields set from the flow number, the
//! stamp (sequence number and timestamp) at the start of the innermost payload, and the
//! checksums that cover them. The result is a [`LiveSender`]: the BPF sender program and
//! [`LiveSender::render`] both work from it.
//!
//! The stamp (16 bytes, big-endian): magic `0x5047` ("PG"), the number of flows (u16), the
//! sequence number (u32, counting every frame of the run) and the send time (u64
//! nanoseconds of CLOCK_TAI, zero when unknown). Frame `n` belongs to flow
//! `n % flows`, so the receiver can tell each flow's losses from the sequence numbers alone.

use datapath::port::live_frames::{LiveChecksum, LiveField, LiveSender};
use datapath::wire::{
    ethernet, geneve, ipv4, ipv6, udp, vxlan, EtherType, EthernetFrame, EthernetRepr, GenevePacket,
    GeneveRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr, VxlanPacket,
    VxlanRepr,
};
use std::net::IpAddr;

/// Bytes of the stamp.
pub const STAMP_LEN: usize = 16;
/// The stamp's first two bytes.
pub const STAMP_MAGIC: u16 = 0x5047;

/// A checksum being built: where it goes and the byte ranges it covers.
#[derive(Debug, Clone)]
struct Sum {
    at: usize,
    /// `(start, len)` ranges of the frame, each starting at an even offset.
    ranges: Vec<(usize, usize)>,
    /// Constant words outside the frame (the pseudo-header's protocol and length).
    extra: u32,
    zero_is_ffff: bool,
}

/// A part of a frame: bytes, and the per-frame fields and checksums inside it.
#[derive(Debug, Clone, Default)]
pub struct Part {
    bytes: Vec<u8>,
    fields: Vec<(&'static str, LiveField)>,
    seq_at: Option<usize>,
    ts_at: Option<usize>,
    sums: Vec<Sum>,
    /// The checksum (index into `sums`) still waiting for its IP pseudo-header.
    pseudo: Option<usize>,
}

impl Part {
    fn prepend(mut self, header: Vec<u8>) -> Part {
        let n = header.len();
        let mut bytes = header;
        bytes.append(&mut self.bytes);
        self.bytes = bytes;
        for (_, f) in &mut self.fields {
            f.at += n;
        }
        self.seq_at = self.seq_at.map(|a| a + n);
        self.ts_at = self.ts_at.map(|a| a + n);
        for s in &mut self.sums {
            s.at += n;
            for r in &mut s.ranges {
                r.0 += n;
            }
        }
        self
    }

    fn field(&mut self, name: &'static str, at: usize, width: u8, base: u32, shift: u8) {
        self.fields.push((
            name,
            LiveField {
                at,
                width,
                base,
                shift,
            },
        ));
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The innermost transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    /// UDP.
    Udp,
    /// TCP segments (ACK|PSH, no connection: for forwarding tests, not for a TCP peer).
    Tcp,
}

/// The innermost segment: ports, then the stamp and `pad` zero bytes.
pub fn transport(l4: L4, sport: u16, dport: u16, flows: u16, pad: usize) -> Part {
    let mut payload = vec![0u8; STAMP_LEN + pad];
    payload[..2].copy_from_slice(&STAMP_MAGIC.to_be_bytes());
    payload[2..4].copy_from_slice(&flows.to_be_bytes());
    // No TCP view exists in `wire` (the gateway never parses TCP beyond its ports), so the
    // segment header is written here.
    let hlen = match l4 {
        L4::Udp => udp::HEADER_LEN,
        L4::Tcp => 20,
    };
    let len = hlen + payload.len();
    let mut h = vec![0u8; hlen];
    let csum_at = match l4 {
        L4::Udp => {
            UdpRepr {
                src_port: sport,
                dst_port: dport,
                payload_len: payload.len(),
            }
            .emit(&mut UdpPacket::new_unchecked(&mut h[..]));
            udp::field::CHECKSUM.start
        }
        L4::Tcp => {
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..8].copy_from_slice(&1u32.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = 0x18;
            h[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
            16
        }
    };
    let mut p = Part {
        bytes: payload,
        seq_at: Some(4),
        ts_at: Some(8),
        ..Part::default()
    }
    .prepend(h);
    // TCP's ports sit where UDP's do.
    p.field("sport", udp::field::SRC_PORT.start, 2, u32::from(sport), 0);
    p.field("dport", udp::field::DST_PORT.start, 2, u32::from(dport), 0);
    p.sums.push(Sum {
        at: csum_at,
        ranges: vec![(0, len)],
        extra: len as u32,
        zero_is_ffff: l4 == L4::Udp,
    });
    p.pseudo = Some(0);
    p
}

/// A UDP header (for a tunnel) in front of `inner`; its checksum is zero (no checksum) over
/// IPv4, as VXLAN (RFC 7348 §5) and GTP-U senders commonly send it, and computed over IPv6.
pub fn udp(sport: u16, dport: u16, inner: Part) -> Part {
    let len = udp::HEADER_LEN + inner.len();
    let mut h = vec![0u8; udp::HEADER_LEN];
    UdpRepr {
        src_port: sport,
        dst_port: dport,
        payload_len: inner.len(),
    }
    .emit(&mut UdpPacket::new_unchecked(&mut h[..]));
    let mut p = inner.prepend(h);
    // The inner fields keep their names; the outer port is its own.
    p.field(
        "outer-sport",
        udp::field::SRC_PORT.start,
        2,
        u32::from(sport),
        0,
    );
    p.sums.push(Sum {
        at: udp::field::CHECKSUM.start,
        ranges: vec![(0, len)],
        extra: len as u32,
        zero_is_ffff: true,
    });
    p.pseudo = Some(p.sums.len() - 1);
    p
}

/// An IP header (the family of `src` and `dst`) carrying `inner` as protocol `proto`; it
/// completes the inner checksum's pseudo-header. The addresses are the `src`/`dst` flow
/// fields when `innermost` (their last 32 bits for IPv6).
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, inner: Part, innermost: bool) -> Part {
    let len = inner.len();
    let (h, addr_at, alen) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; ipv4::HEADER_LEN];
            let mut v = Ipv4Packet::new_unchecked(&mut h[..]);
            Ipv4Repr {
                src: u32::from(s),
                dst: u32::from(d),
                protocol: proto,
                payload_len: len,
                ttl: 64,
                dscp_ecn: 0,
                ident: 0,
                dont_frag: true,
            }
            .emit(&mut v);
            // The checksum is the sender's to compute, with the per-frame fields in place.
            v.set_checksum(0);
            (h, ipv4::field::SRC.start, 4)
        }
        (s, d) => {
            let six = |a: IpAddr| match a {
                IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
                IpAddr::V6(a) => u128::from(a),
            };
            let mut h = vec![0u8; ipv6::HEADER_LEN];
            Ipv6Repr {
                src: six(s),
                dst: six(d),
                next_header: proto,
                payload_len: len,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut h[..]));
            (h, ipv6::field::SRC.start, 16)
        }
    };
    let v4 = h.len() == ipv4::HEADER_LEN;
    let mut p = inner.prepend(h);
    if let Some(i) = p.pseudo.take() {
        let tunnel_udp_over_v4 = v4 && proto == datapath::wire::ip_proto::UDP && !innermost;
        if tunnel_udp_over_v4 {
            // No checksum: drop it (the field stays zero).
            p.sums.remove(i);
        } else if let Some(s) = p.sums.get_mut(i) {
            s.ranges.push((addr_at, 2 * alen));
            s.extra += u32::from(proto);
        }
    }
    if v4 {
        p.sums.push(Sum {
            at: ipv4::field::CHECKSUM.start,
            ranges: vec![(0, ipv4::HEADER_LEN)],
            extra: 0,
            zero_is_ffff: false,
        });
    }
    if innermost {
        let last = |a: IpAddr| match a {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => (u128::from(a) & 0xffff_ffff) as u32,
        };
        p.field("src", addr_at + alen - 4, 4, last(src), 0);
        p.field("dst", addr_at + 2 * alen - 4, 4, last(dst), 0);
    }
    p
}

/// The IP protocol number for carrying a packet of `a`'s family over IP (IPIP).
pub fn ip_in_ip(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        datapath::wire::ip_proto::IPIP
    } else {
        datapath::wire::ip_proto::IPV6
    }
}

/// The EtherType of `a`'s family.
pub fn ethertype(a: IpAddr) -> u16 {
    if a.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    }
}

/// An Ethernet header in front of `inner`.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, inner: Part) -> Part {
    let mut h = vec![0u8; ethernet::HEADER_LEN];
    EthernetRepr {
        dst,
        src,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut h[..]));
    inner.prepend(h)
}

/// A VXLAN header (I flag, `vni`) in front of `inner` (an Ethernet frame).
pub fn vxlan(vni: u32, inner: Part) -> Part {
    let mut h = vec![0u8; vxlan::HEADER_LEN];
    VxlanRepr { vni }.emit(&mut VxlanPacket::new_unchecked(&mut h[..]));
    let mut p = inner.prepend(h);
    // The VNI's 24 bits and the reserved byte after them vary as one 32-bit word.
    p.field("vni", vxlan::field::VNI.start, 4, vni << 8, 8);
    p
}

/// A Geneve header (version 0, no options, Protocol Type 0x6558, `vni`) in front of `inner`
/// (an Ethernet frame).
pub fn geneve(vni: u32, inner: Part) -> Part {
    let mut h = vec![0u8; geneve::HEADER_LEN];
    GeneveRepr {
        vni,
        protocol: geneve::PROTOCOL_ETHERNET,
    }
    .emit(&mut GenevePacket::new_unchecked(&mut h[..]));
    let mut p = inner.prepend(h);
    // As VXLAN's: the VNI and the reserved byte after it vary as one 32-bit word.
    p.field("vni", geneve::field::VNI.start, 4, vni << 8, 8);
    p
}

/// A GTP-U G-PDU header with `teid` in front of `inner`, with a UL PDU Session Container
/// carrying `qfi` when given (3GPP TS 29.281 §5, TS 38.415 §5.5.2).
pub fn gtpu(teid: u32, qfi: Option<u8>, inner: Part) -> Part {
    let g = datapath::craft::gtpu_payload(teid, qfi, &[]);
    let hlen = g.len();
    let mut g = g;
    // The Length field counts everything after the mandatory header, payload included.
    let len = (hlen - datapath::wire::gtpu::HEADER_LEN + inner.len()) as u16;
    datapath::wire::GtpuPacket::new_unchecked(&mut g[..]).set_length(len);
    let mut p = inner.prepend(g);
    p.field("teid", datapath::wire::gtpu::field::TEID.start, 4, teid, 0);
    p
}

/// The finished frame as a [`LiveSender`]: the fields named in `vary` set from the flow
/// number (the others fixed), checksums based on the frame with every per-frame byte zeroed.
///
/// # Errors
/// A name in `vary` the frame does not have, or a field whose last flow overflows it.
pub fn finish(p: Part, flows: u16, vary: &[String]) -> Result<LiveSender, String> {
    let flows = flows.max(1);
    let mut fields = Vec::new();
    for name in vary {
        let Some((_, f)) = p.fields.iter().find(|(n, _)| n == name) else {
            let have: Vec<&str> = p.fields.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "cannot vary {name} in this traffic (it has {})",
                have.join(", ")
            ));
        };
        let limit: u64 = match (name.as_str(), f.width) {
            ("vni", _) => 0xffff_ff00,
            (_, 2) => 0xffff,
            _ => 0xffff_ffff,
        };
        let last = u64::from(f.base) + (u64::from(flows - 1) << f.shift);
        if last > limit {
            return Err(format!(
                "{name}: {flows} flows from its first value overflow it"
            ));
        }
        if f.at % 2 != 0 {
            return Err(format!("{name} at an odd offset"));
        }
        fields.push(*f);
    }
    let mut zeroed = p.bytes.clone();
    let mut clear = |at: usize, n: usize| {
        if let Some(b) = zeroed.get_mut(at..at + n) {
            b.fill(0);
        }
    };
    for f in &fields {
        clear(f.at, usize::from(f.width));
    }
    if let Some(a) = p.seq_at {
        clear(a, 4);
    }
    if let Some(a) = p.ts_at {
        clear(a, 8);
    }
    for s in &p.sums {
        clear(s.at, 2);
    }
    let inside = |s: &Sum, at: usize| s.ranges.iter().any(|&(r, n)| at >= r && at < r + n);
    let mut checksums = Vec::new();
    // Inner checksums first: an outer one covers the inner one's field.
    for s in &p.sums {
        let mut sum = u64::from(s.extra >> 16) + u64::from(s.extra & 0xffff);
        for &(start, n) in &s.ranges {
            if start % 2 != 0 {
                return Err("a checksummed range at an odd offset".into());
            }
            for w in zeroed.get(start..start + n).unwrap_or(&[]).chunks(2) {
                sum += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let covers: Vec<usize> = (0..fields.len())
            .filter(|&i| inside(s, fields[i].at))
            .collect();
        let stamp = p.seq_at.is_some_and(|a| inside(s, a));
        // A checksum covering another checksum cannot be completed per frame: the only
        // case would be a tunnel UDP checksum over IPv6 (not varied: refuse it).
        if p.sums.iter().any(|o| o.at != s.at && inside(s, o.at)) && (!covers.is_empty() || stamp) {
            return Err(
                "varying fields inside a checksummed tunnel over IPv6 are not supported".into(),
            );
        }
        checksums.push(LiveChecksum {
            at: s.at,
            base: sum as u16,
            fields: covers,
            stamp,
            zero_is_ffff: s.zero_is_ffff,
        });
    }
    let sender = LiveSender {
        frame: p.bytes,
        flows,
        fields,
        seq_at: p.seq_at,
        ts_at: p.ts_at,
        checksums,
    };
    // The template is frame 0, checksums and all.
    let frame = sender.render(0, 0);
    Ok(LiveSender { frame, ..sender })
}

/// The stamp read from a payload: `(flows, seq, ts_ns)`.
pub fn read_stamp(payload: &[u8]) -> Option<(u16, u32, u64)> {
    let s = payload.get(..STAMP_LEN)?;
    if u16::from_be_bytes([s[0], s[1]]) != STAMP_MAGIC {
        return None;
    }
    let flows = u16::from_be_bytes([s[2], s[3]]);
    let seq = u32::from_be_bytes([s[4], s[5], s[6], s[7]]);
    let ts = u64::from_be_bytes([s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15]]);
    (flows > 0).then_some((flows, seq, ts))
}
