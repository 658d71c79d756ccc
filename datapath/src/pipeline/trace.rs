//! Packet trace, in the shape of VPP's `trace add`: while a [`Tap`] is armed, a worker runs the
//! traced instantiation of the pipeline ([`super::Pipeline::process_traced`]), which records what
//! each stage decided for each packet into a [`Record`]. The same code forwards the packet, so a
//! record cannot diverge from what the workers do; `gateway explain` runs it on a frame of its
//! own. Unarmed, a worker pays one relaxed load and one predictable branch per batch.

use super::Next;
use crate::fib::NextHop;
use crate::lpm::NO_ROUTE;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// [`Record::tunnel`] when decap found no tunnel (a packet for the gateway's own address).
pub const NO_TUNNEL: u8 = u8::MAX;

/// Bytes of a frame kept in a record, before and after the pipeline: every header of a VXLAN or
/// GTP-U packet over IPv6 (with VLAN tags and a PDU Session Container) and the inner transport
/// header fit.
pub const HEAD: usize = 192;

/// What the stages decided for one packet.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// The worker that processed it (set by the worker; 0 for `explain`).
    pub worker: u16,
    /// Input port.
    pub in_port: u8,
    /// Frame length as received.
    pub len: u16,
    /// The frame as received, its first [`HEAD`] bytes.
    pub head: [u8; HEAD],
    /// Classify's verdict (with reverse-path filtering): [`Next::Route`] to go on.
    pub classified: Next,
    /// Classify's findings, meaningful when it said [`Next::Route`]: the IP header's offset,
    /// the upper-layer header's (0 for a later fragment), the family, and whether the packet is
    /// addressed to a local tunnel endpoint.
    pub outer_l3: u16,
    /// See [`Record::outer_l3`].
    pub outer_l4: u16,
    /// See [`Record::outer_l3`].
    pub outer_ipv6: bool,
    /// See [`Record::outer_l3`].
    pub tunnel_endpoint: bool,
    /// The tunnel kind decap found ([`crate::stats::TUNNEL_KINDS`] index), when
    /// [`Record::tunnel_endpoint`]; [`NO_TUNNEL`] when it found none.
    pub tunnel: u8,
    /// Decap's verdict (the classify verdict when there was nothing to decapsulate).
    pub decapped: Next,
    /// The header routed: the inner packet's once decapsulated.
    pub l3: u16,
    /// See [`Record::l3`].
    pub l4: u16,
    /// See [`Record::l3`].
    pub ipv6: bool,
    /// The routed header's upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// The longest-prefix match's next-hop index ([`NO_ROUTE`] when nothing matched or the
    /// packet never reached the route stage).
    pub nh: u32,
    /// The ECMP member the flow hash chose, when the route is ECMP.
    pub member: Option<NextHop>,
    /// The route stage's verdict.
    pub routed: Next,
    /// Encapsulation used ([`super::NO_ENCAP`] for none).
    pub encap: u32,
    /// The final verdict: transmitted on a port (rewritten, or an ICMP error or Echo Response
    /// sent in its place), handed to the local stack, or dropped.
    pub verdict: Next,
    /// Frame length after the pipeline.
    pub out_len: u16,
    /// The frame after the pipeline, its first [`HEAD`] bytes, when transmitted.
    pub out_head: [u8; HEAD],
}

impl Default for Record {
    fn default() -> Self {
        Record {
            worker: 0,
            in_port: 0,
            len: 0,
            head: [0; HEAD],
            classified: Next::Route,
            outer_l3: 0,
            outer_l4: 0,
            outer_ipv6: false,
            tunnel_endpoint: false,
            tunnel: NO_TUNNEL,
            decapped: Next::Route,
            l3: 0,
            l4: 0,
            ipv6: false,
            proto: 0,
            nh: NO_ROUTE,
            member: None,
            routed: Next::Route,
            encap: super::NO_ENCAP,
            verdict: Next::Route,
            out_len: 0,
            out_head: [0; HEAD],
        }
    }
}

/// Copies the first [`HEAD`] bytes of `frame` into `to`, zeroing the rest; returns the length.
pub(super) fn keep_head(frame: &[u8], to: &mut [u8; HEAD]) -> u16 {
    let n = frame.len().min(HEAD);
    to[..n].copy_from_slice(&frame[..n]);
    to[n..].fill(0);
    frame.len().min(usize::from(u16::MAX)) as u16
}

/// The addresses and protocol of the IP header at `off` of a record's head: (source, destination,
/// protocol) as [`crate::fib::ip_key`]s, or `None` when the header does not fit the head.
pub fn addresses(head: &[u8], off: u16, ipv6: bool) -> Option<(u128, u128, u8)> {
    let off = usize::from(off);
    if ipv6 {
        let h = head.get(off..off + crate::wire::ipv6::HEADER_LEN)?;
        let p = crate::wire::Ipv6Packet::new_unchecked(h);
        Some((p.src(), p.dst(), p.next_header()))
    } else {
        let h = head.get(off..off + crate::wire::ipv4::HEADER_LEN)?;
        let p = crate::wire::Ipv4Packet::new_unchecked(h);
        Some((
            crate::fib::v4_key(p.src()),
            crate::fib::v4_key(p.dst()),
            p.protocol(),
        ))
    }
}

impl Record {
    /// The outer IP header's offset and family: where classify found it, or, for a packet it
    /// dropped, where the Ethernet header and its VLAN tags say it starts.
    pub fn outer_ip(&self) -> Option<(u16, bool)> {
        if self.classified == Next::Route {
            return Some((self.outer_l3, self.outer_ipv6));
        }
        let head = &self.head[..usize::from(self.len).min(HEAD)];
        let eth = crate::wire::EthernetFrame::new_checked(head).ok()?;
        let (t, off) =
            crate::wire::vlan::skip_tags(head, eth.ethertype(), crate::wire::ethernet::HEADER_LEN)
                .ok()?;
        let ipv6 = match t {
            crate::wire::EtherType::IPV4 => false,
            crate::wire::EtherType::IPV6 => true,
            _ => return None,
        };
        Some((off as u16, ipv6))
    }

    /// The tunnel decap found, if any ([`crate::stats::TUNNEL_KINDS`] index).
    pub fn tunnel_kind(&self) -> Option<u8> {
        (self.classified == Next::Route && self.tunnel_endpoint && self.tunnel != NO_TUNNEL)
            .then_some(self.tunnel)
    }

    /// The inner IP header decap reached, its offset and family (a VXLAN frame may carry ARP
    /// instead, and a packet decap refused early has none); the family is read from the
    /// header, since decap may stop before it records one.
    pub fn inner_ip(&self) -> Option<(u16, bool)> {
        if self.l3 == self.outer_l3 {
            return None;
        }
        let kind = self.tunnel_kind()?;
        let at = usize::from(self.l3);
        if kind == 1 {
            // The inner Ethernet header's (or last VLAN tag's) EtherType ends where the IP
            // header starts.
            let t = self.head.get(at.checked_sub(2)?..at)?;
            let t = u16::from_be_bytes([t[0], t[1]]);
            if t != crate::wire::EtherType::IPV4 && t != crate::wire::EtherType::IPV6 {
                return None;
            }
        }
        match self.head.get(at)? >> 4 {
            4 => Some((self.l3, false)),
            6 => Some((self.l3, true)),
            _ => None,
        }
    }
}

/// Which packets a trace keeps. Each condition set must hold; addresses and protocol hold when
/// the outer or the inner header satisfies all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Input port.
    pub port: Option<u8>,
    /// Source prefix ([`crate::fib::ip_key`] space: an IPv4 /n is /96+n).
    pub src: Option<(u128, u8)>,
    /// Destination prefix, as `src`.
    pub dst: Option<(u128, u8)>,
    /// IP protocol (the upper layer's, after IPv6 extension headers for the routed header).
    pub proto: Option<u8>,
    /// Tunnel kind ([`crate::stats::TUNNEL_KINDS`] index); `Some(None)` for plain traffic.
    pub tunnel: Option<Option<u8>>,
}

fn within(a: u128, (p, len): (u128, u8)) -> bool {
    let len = u32::from(len.min(128));
    len == 0 || (a ^ p) >> (128 - len) == 0
}

impl Filter {
    /// Whether `r` passes.
    pub fn matches(&self, r: &Record) -> bool {
        if self.port.is_some_and(|p| p != r.in_port) {
            return false;
        }
        if self.tunnel.is_some_and(|t| t != r.tunnel_kind()) {
            return false;
        }
        if self.src.is_none() && self.dst.is_none() && self.proto.is_none() {
            return true;
        }
        let header = |off, l4_proto: Option<u8>, ipv6| {
            addresses(&r.head, off, ipv6).is_some_and(|(s, d, p)| {
                self.src.is_none_or(|f| within(s, f))
                    && self.dst.is_none_or(|f| within(d, f))
                    && self.proto.is_none_or(|f| f == l4_proto.unwrap_or(p))
            })
        };
        // Classify found the upper layer (past IPv6 extension headers) only if it said Route.
        let known = r.classified == Next::Route;
        let outer = r.outer_ip().is_some_and(|(off, ipv6)| {
            header(off, (known && r.l3 == r.outer_l3).then_some(r.proto), ipv6)
        });
        outer
            || r.inner_ip().is_some_and(|(off, ipv6)| {
                header(off, (r.decapped == Next::Route).then_some(r.proto), ipv6)
            })
    }
}

/// A trace shared by the workers and the control thread: how many more packets to keep, which,
/// and the records kept, bounded.
pub struct Tap {
    remaining: AtomicU32,
    filter: Mutex<Filter>,
    records: ArrayQueue<Record>,
    lost: AtomicU64,
}

impl Tap {
    /// An unarmed tap keeping at most `capacity` records unread.
    pub fn new(capacity: usize) -> Self {
        Tap {
            remaining: AtomicU32::new(0),
            filter: Mutex::new(Filter::default()),
            records: ArrayQueue::new(capacity.max(1)),
            lost: AtomicU64::new(0),
        }
    }

    /// Keeps the next `count` packets that pass `filter`, discarding any unread record.
    pub fn arm(&self, count: u32, filter: Filter) {
        self.remaining.store(0, Ordering::Relaxed);
        while self.records.pop().is_some() {}
        if let Ok(mut f) = self.filter.lock() {
            *f = filter;
        }
        self.remaining.store(count, Ordering::Release);
    }

    /// Stops keeping packets.
    pub fn disarm(&self) {
        self.remaining.store(0, Ordering::Relaxed);
    }

    /// Whether packets are still wanted: the workers' one check per batch.
    #[inline]
    pub fn armed(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) != 0
    }

    /// Packets still wanted.
    pub fn remaining(&self) -> u32 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// The filter in force, unless the control thread is changing it.
    pub fn filter(&self) -> Option<Filter> {
        self.filter.try_lock().ok().map(|f| *f)
    }

    /// Keeps `r` if packets are still wanted; false once none are.
    pub fn offer(&self, r: &Record) -> bool {
        let took = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        if took.is_err() {
            return false;
        }
        if self.records.push(*r).is_err() {
            // The reader fell behind: the packet was seen, its record is not kept.
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// The oldest record not yet read.
    pub fn take(&self) -> Option<Record> {
        self.records.pop()
    }

    /// Records the reader was too slow to receive.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::drop::DropReason;

    fn record(src: [u8; 4], dst: [u8; 4], proto: u8) -> Record {
        let mut r = Record {
            outer_l3: 14,
            l3: 14,
            proto,
            ..Record::default()
        };
        let ip = crate::wire::ipv4::Repr {
            src: u32::from_be_bytes(src),
            dst: u32::from_be_bytes(dst),
            protocol: proto,
            ttl: 64,
            payload_len: 8,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: false,
        };
        let mut h = [0u8; 20];
        ip.emit(&mut crate::wire::Ipv4Packet::new_unchecked(&mut h[..]));
        r.head[14..34].copy_from_slice(&h);
        r
    }

    #[test]
    fn a_filter_keeps_the_packets_whose_header_matches_each_condition() {
        let r = record([192, 0, 2, 1], [10, 244, 1, 5], 17);
        let net = |a: [u8; 4], len: u8| Some((crate::fib::v4_key(u32::from_be_bytes(a)), 96 + len));
        assert!(Filter::default().matches(&r));
        let dst = Filter {
            dst: net([10, 244, 0, 0], 16),
            ..Filter::default()
        };
        assert!(dst.matches(&r));
        assert!(!Filter {
            dst: net([10, 245, 0, 0], 16),
            ..dst
        }
        .matches(&r));
        assert!(Filter {
            src: net([192, 0, 2, 0], 24),
            proto: Some(17),
            ..dst
        }
        .matches(&r));
        assert!(!Filter {
            proto: Some(6),
            ..dst
        }
        .matches(&r));
        assert!(Filter {
            tunnel: Some(None),
            ..dst
        }
        .matches(&r));
        assert!(!Filter {
            tunnel: Some(Some(0)),
            ..dst
        }
        .matches(&r));
        assert!(!Filter {
            port: Some(1),
            ..dst
        }
        .matches(&r));
    }

    #[test]
    fn a_packet_classify_dropped_is_filtered_on_the_header_its_ethertype_announces() {
        let mut r = record([192, 0, 2, 1], [10, 244, 1, 5], 17);
        r.head[12..14].copy_from_slice(&crate::wire::EtherType::IPV4.to_be_bytes());
        r.len = 60;
        r.classified = Next::Drop(DropReason::Ipv4BadChecksum);
        (r.outer_l3, r.l3, r.proto) = (0, 0, 0);
        let f = Filter {
            proto: Some(17),
            dst: Some((crate::fib::v4_key(0x0af4_0000), 112)),
            ..Filter::default()
        };
        assert!(f.matches(&r));
        assert!(!Filter {
            proto: Some(6),
            ..f
        }
        .matches(&r));
    }

    #[test]
    fn a_tap_keeps_as_many_records_as_asked_and_counts_those_it_had_no_room_for() {
        let tap = Tap::new(2);
        assert!(!tap.armed());
        let mut r = Record {
            verdict: Next::Drop(DropReason::NoRoute),
            ..Record::default()
        };
        assert!(!tap.offer(&r), "an unarmed tap keeps nothing");
        tap.arm(3, Filter::default());
        for worker in 0..4 {
            r.worker = worker;
            assert_eq!(tap.offer(&r), worker < 3);
        }
        assert!(!tap.armed());
        assert_eq!(tap.lost(), 1, "the third had no room");
        assert_eq!(tap.take().map(|r| r.worker), Some(0));
        assert_eq!(tap.take().map(|r| r.worker), Some(1));
        assert!(tap.take().is_none());
        tap.arm(1, Filter::default());
        tap.disarm();
        assert!(!tap.offer(&r));
    }
}
