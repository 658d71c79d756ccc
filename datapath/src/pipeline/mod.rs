//! The stages a worker runs over one batch, run to completion: classify → decap → route →
//! rewrite (encapsulating where the route says so). Each stage is a per-packet `#[inline]` function called from one loop over
//! the batch; the result is a [`Next`] per packet, parallel to the batch. Stage order is code.

pub mod batch;
pub mod classify;
pub mod decap;
pub mod drop;
pub mod reply;
pub mod rewrite;
pub mod route;
pub mod trace;

use crate::fib::Fib;
use crate::lpm::NO_ROUTE;

/// Tunnel kinds counted.
const KINDS: usize = crate::tunnel::KINDS.len();
use crate::pipeline::drop::DropReason;
use batch::{Batch, BATCH};

/// What happens to a packet after the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Classified, waiting for the route stage.
    Route,
    /// For the gateway itself: handed to the control thread's local stack (ARP, NDP, ICMP),
    /// counted as `local`.
    Local,
    /// Dropped, counted under the reason.
    Drop(DropReason),
    /// Transmit on this port.
    Tx(u8),
}

/// What classify learns about a packet and later stages use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    /// Offset of the IP header in the frame.
    pub l3_off: u16,
    /// IP datagram length (header included).
    pub l3_len: u16,
    /// Offset of the upper-layer header, 0 when there is none (a later fragment).
    pub l4_off: u16,
    /// Upper-layer protocol.
    pub proto: u8,
    /// IPv6 rather than IPv4.
    pub ipv6: bool,
    /// IPv4 destination.
    pub dst4: u32,
    /// IPv6 destination.
    pub dst6: u128,
    /// Neighbour MAC chosen by the route stage.
    pub dst_mac: [u8; 6],
    /// Any fragment (first or later) of the IP datagram.
    pub fragment: bool,
    /// IPv6: a Routing header with segments left, so the destination is only the current
    /// segment ([`crate::wire::ipv6::UpperLayer::segments_left`]).
    pub segments_left: bool,
    /// Addressed to a local tunnel endpoint: the decap stage looks at it.
    pub decap: bool,
    /// Encapsulate with this index of [`Fib::encap`] ([`NO_ENCAP`] for none).
    pub encap: u32,
    /// The port vouched for the L4 checksum ([`batch::Buf::csum_trusted`]).
    pub csum_trusted: bool,
    /// A GTP-U Echo Request to a local endpoint: answered by [`reply`].
    pub echo_request: bool,
    /// Decapsulated: the L3 offset points at the inner packet.
    pub inner: bool,
    /// The kind of tunnel decap looked at ([`crate::stats::TUNNEL_KINDS`] index).
    pub tunnel: u8,
    /// With [`DropReason::NeighborUnresolved`]: the neighbour to resolve ([`crate::fib::ip_key`])
    /// and the port to ask on.
    pub resolve: (u128, u8),
    /// The IP MTU the packet exceeded (set with [`DropReason::MtuExceeded`]).
    pub mtu: u16,
}

/// [`Meta::encap`] when the packet is sent as it is.
pub const NO_ENCAP: u32 = u32::MAX;

/// Per-worker pipeline state: the metadata and verdict arrays, reused every batch.
pub struct Pipeline {
    meta: [Meta; BATCH],
    next: [Next; BATCH],
    /// Bulk-lookup keys, their packet indices and results: kept here so no batch pays for
    /// zeroing them.
    keys: [u32; BATCH],
    keys6: [u128; BATCH],
    which: [u8; BATCH],
    found: [u32; BATCH],
    decapped: u64,
    /// Packets of the last batch decapsulated and encapsulated, by tunnel kind.
    decapped_kind: [u64; KINDS],
    encapped_kind: [u64; KINDS],
    /// ICMP errors sent in the last batch: too big, time exceeded.
    errors_sent: [u64; 2],
    replies_limited: u64,
    last_tunnel: crate::tunnel::LastTunnel,
    /// ICMP errors and GTP-U Echo Responses: what a stranger can make the gateway send.
    replies: crate::ratelimit::TokenBucket,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    /// Fresh state.
    pub fn new() -> Self {
        Pipeline {
            meta: [Meta::default(); BATCH],
            next: [Next::Route; BATCH],
            keys: [0; BATCH],
            keys6: [0; BATCH],
            which: [0; BATCH],
            found: [NO_ROUTE; BATCH],
            decapped: 0,
            decapped_kind: [0; KINDS],
            encapped_kind: [0; KINDS],
            errors_sent: [0; 2],
            replies_limited: 0,
            last_tunnel: crate::tunnel::LastTunnel::default(),
            replies: crate::ratelimit::TokenBucket::new(),
        }
    }

    /// The verdicts of the last batch (the first `n` of them, as [`Pipeline::process`]
    /// returned).
    pub fn verdicts(&self) -> &[Next] {
        &self.next
    }

    /// For packet `i` of the last batch dropped as `neighbor_unresolved`: the address to
    /// resolve and the port to ask on.
    pub fn resolve_request(&self, i: usize) -> Option<(u128, u8)> {
        self.meta.get(i).map(|m| m.resolve).filter(|r| r.0 != 0)
    }

    /// Packets of the last batch that were decapsulated.
    pub fn decapped(&self) -> u64 {
        self.decapped
    }

    /// Packets of the last batch decapsulated, and sent encapsulated, by tunnel kind
    /// ([`crate::stats::TUNNEL_KINDS`]).
    pub fn by_tunnel_kind(&self) -> ([u64; KINDS], [u64; KINDS]) {
        (self.decapped_kind, self.encapped_kind)
    }

    /// Packets of the last batch dropped, by reason, for which an ICMP error was sent instead
    /// (their verdict is the error's transmission; the drop still counts).
    pub fn errors_sent(&self) -> [(DropReason, u64); 2] {
        [
            (DropReason::MtuExceeded, self.errors_sent[0]),
            (DropReason::TtlExpired, self.errors_sent[1]),
        ]
    }

    /// Replies (ICMP errors, GTP-U Echo Responses) the last batch would have sent but for the
    /// reply rate limit ([`Fib::reply_limit`]).
    pub fn replies_limited(&self) -> u64 {
        self.replies_limited
    }

    /// Runs every stage over `batch` and returns the verdict of each packet. Packets with
    /// [`Next::Tx`] have been rewritten and are ready to send.
    pub fn process(&mut self, batch: &mut Batch, fib: &Fib) -> &[Next] {
        self.run(batch, fib, &mut [])
    }

    /// [`Pipeline::process`], also writing what each stage decided for packet `i` into
    /// `records[i]` ([`trace`]). The same code, the same instance of it: the recording runs
    /// between the stages' loops, so an untraced batch pays a few predictable branches and
    /// the stages are compiled (and inlined) once.
    pub fn process_traced(
        &mut self,
        batch: &mut Batch,
        fib: &Fib,
        records: &mut [trace::Record],
    ) -> &[Next] {
        self.run(batch, fib, records)
    }

    fn run(&mut self, batch: &mut Batch, fib: &Fib, records: &mut [trace::Record]) -> &[Next] {
        let traced = !records.is_empty();
        // A batch built with fewer buffers (`Batch::of`) is run over those it has.
        let n = batch.len.min(BATCH).min(batch.bufs.len());
        let in_port = batch.in_port;
        if traced {
            for (r, buf) in records.iter_mut().zip(&batch.bufs[..n]) {
                *r = trace::Record {
                    in_port,
                    ..trace::Record::default()
                };
                r.len = trace::keep_head(buf.frame(), &mut r.head);
            }
        }
        let Some(port) = fib.port(in_port) else {
            self.next[..n].fill(Next::Drop(DropReason::UnknownInputPort));
            if traced {
                self.finish_records(batch, n, records);
            }
            return &self.next[..n];
        };

        // Classify. Plain traffic on a port with reverse-path filtering must come from where
        // its source is routed (tunnel packets are checked against their peer in decap).
        let rpf = fib.rpf(in_port) != crate::fib::Rpf::Off;
        for ((buf, meta), next) in batch.bufs[..n]
            .iter_mut()
            .zip(&mut self.meta[..n])
            .zip(&mut self.next[..n])
        {
            *next = classify::classify_one(buf.frame(), in_port, port, fib, meta);
            if matches!(*next, Next::Route) {
                buf.truncate(usize::from(meta.l3_off) + usize::from(meta.l3_len));
                if rpf
                    && !meta.decap
                    && !classify::source_key(buf.frame(), meta)
                        .is_some_and(|s| fib.rpf_ok(in_port, s))
                {
                    *next = Next::Drop(DropReason::RpfFailed);
                }
            }
        }
        // The trace reads each stage's results after its loop, so the loops are the same
        // code traced or not.
        if traced {
            for ((r, meta), next) in records.iter_mut().zip(&self.meta[..n]).zip(&self.next[..n]) {
                r.classified = *next;
                if matches!(*next, Next::Route) {
                    r.outer_l3 = meta.l3_off;
                    r.outer_l4 = meta.l4_off;
                    r.outer_ipv6 = meta.ipv6;
                    r.tunnel_endpoint = meta.decap;
                    // Decap names the kind only when it finds a tunnel.
                    r.tunnel = trace::NO_TUNNEL;
                }
            }
            for (meta, next) in self.meta[..n].iter_mut().zip(&self.next[..n]) {
                if matches!(*next, Next::Route) && meta.decap {
                    meta.tunnel = trace::NO_TUNNEL;
                }
            }
        }

        // Decap: packets for a local tunnel endpoint lose their outer headers (by moving the
        // L3 offset; nothing is copied) and continue as their inner packet.
        self.decapped = 0;
        self.decapped_kind = [0; KINDS];
        self.encapped_kind = [0; KINDS];
        self.last_tunnel.clear();
        let mut echo_requests = false;
        for ((buf, meta), next) in batch.bufs[..n]
            .iter_mut()
            .zip(&mut self.meta[..n])
            .zip(&mut self.next[..n])
        {
            meta.echo_request = false;
            meta.inner = false;
            if matches!(*next, Next::Route) && meta.decap {
                meta.csum_trusted = buf.csum_trusted;
                let outer = meta.l3_off;
                *next = decap::decap_one(buf.frame(), fib, meta, &mut self.last_tunnel, in_port);
                meta.inner = meta.l3_off != outer;
                echo_requests |= meta.echo_request;
                if matches!(*next, Next::Route) {
                    self.decapped += 1;
                    self.decapped_kind[usize::from(meta.tunnel) % KINDS] += 1;
                    buf.truncate(usize::from(meta.l3_off) + usize::from(meta.l3_len));
                }
            }
        }
        if traced {
            for ((r, meta), next) in records.iter_mut().zip(&self.meta[..n]).zip(&self.next[..n]) {
                r.decapped = *next;
                if matches!(r.classified, Next::Route) {
                    r.tunnel = meta.tunnel;
                    r.l3 = meta.l3_off;
                    r.l4 = meta.l4_off;
                    r.ipv6 = meta.ipv6;
                    r.proto = meta.proto;
                }
            }
        }

        // Route: gather the keys of each family for one bulk lookup each, so the batch's
        // cache misses in the tables overlap.
        let mut errors = false;
        for ipv6 in [false, true] {
            let mut k = 0;
            for i in 0..n {
                if matches!(self.next[i], Next::Route) && self.meta[i].ipv6 == ipv6 {
                    if ipv6 {
                        self.keys6[k] = self.meta[i].dst6;
                    } else {
                        self.keys[k] = self.meta[i].dst4;
                    }
                    self.which[k] = i as u8;
                    k += 1;
                }
            }
            if k == 0 {
                continue;
            }
            if ipv6 {
                fib.v6.lookup_bulk(&self.keys6[..k], &mut self.found[..k]);
            } else {
                fib.v4.lookup_bulk(&self.keys[..k], &mut self.found[..k]);
            }
            for (&i, &nh) in self.which[..k].iter().zip(&self.found[..k]) {
                let i = usize::from(i);
                let v =
                    route::resolve_one(fib, nh, batch.bufs[i].frame(), in_port, &mut self.meta[i]);
                errors |= matches!(
                    v,
                    Next::Drop(DropReason::MtuExceeded | DropReason::TtlExpired)
                );
                self.next[i] = v;
            }
            if traced {
                for (&i, &nh) in self.which[..k].iter().zip(&self.found[..k]) {
                    let i = usize::from(i);
                    if let Some(r) = records.get_mut(i) {
                        r.nh = nh;
                        r.routed = self.next[i];
                        r.member =
                            route::ecmp_choice(fib, nh, batch.bufs[i].frame(), &self.meta[i]);
                    }
                }
            }
        }

        // Rewrite. Nothing inside a tunnel is for the gateway's own stack (it runs none
        // there): inner link-local, multicast or gateway-addressed packets stop here, counted.
        for ((buf, meta), next) in batch.bufs[..n]
            .iter_mut()
            .zip(&self.meta[..n])
            .zip(&mut self.next[..n])
        {
            match *next {
                Next::Tx(p) => {
                    let mac = fib.port(p).map(|p| p.mac).unwrap_or_default();
                    match rewrite::rewrite_one(buf, meta, mac, fib) {
                        rewrite::Rewritten::Failed => {
                            *next = Next::Drop(DropReason::RewriteFailed);
                        }
                        rewrite::Rewritten::Encap(k) => self.encapped_kind[k % KINDS] += 1,
                        rewrite::Rewritten::Plain => {}
                    }
                }
                Next::Local if meta.inner => *next = Next::Drop(DropReason::TunnelInnerLocal),
                _ => {}
            }
        }

        // Reply: GTP-U Echo Requests become Echo Responses in their own buffer, sent back out
        // of the port they came in on. (The next two passes run only for a batch that needs
        // them.)
        self.replies_limited = 0;
        let replies = if echo_requests { n } else { 0 };
        for ((buf, meta), next) in batch.bufs[..replies]
            .iter_mut()
            .zip(&self.meta[..replies])
            .zip(&mut self.next[..replies])
        {
            if meta.echo_request && *next == Next::Local {
                if !self.replies.allow(fib.reply_limit()) {
                    self.replies_limited += 1;
                    *next = Next::Drop(DropReason::ReplyRateLimited);
                } else if reply::gtpu_echo_response(buf, meta, port.mac) {
                    *next = Next::Tx(in_port);
                }
            }
        }

        // Packets too big for their egress, or out of TTL: an ICMP error goes back toward the
        // source, routed (and encapsulated, when the source is behind a tunnel) like any
        // packet. The drop is still counted ([`Pipeline::errors_sent`]).
        self.errors_sent = [0; 2];
        for i in 0..if errors { n } else { 0 } {
            let (kind, which) = match self.next[i] {
                Next::Drop(DropReason::MtuExceeded) => (reply::IcmpError::TooBig, 0),
                Next::Drop(DropReason::TtlExpired) => (reply::IcmpError::TimeExceeded, 1),
                _ => continue,
            };
            if !self.replies.allow(fib.reply_limit()) {
                self.replies_limited += 1;
                continue;
            }
            let (buf, meta) = (&mut batch.bufs[i], &mut self.meta[i]);
            if !reply::icmp_error(buf, meta, kind) {
                continue;
            }
            let nh = if meta.ipv6 {
                fib.v6.lookup(meta.dst6)
            } else {
                fib.v4.lookup(meta.dst4)
            };
            // No hairpin rule for errors: they usually go back where the packet came from.
            let v = route::resolve_one(fib, nh.unwrap_or(NO_ROUTE), buf.frame(), u8::MAX, meta);
            if let Next::Tx(p) = v {
                let mac = fib.port(p).map(|x| x.mac).unwrap_or_default();
                if reply::finish_icmp(buf, meta, fib.port_addrs(p))
                    && rewrite::rewrite_one(buf, meta, mac, fib) != rewrite::Rewritten::Failed
                {
                    self.next[i] = Next::Tx(p);
                    self.errors_sent[which] += 1;
                }
            }
        }
        if traced {
            self.finish_records(batch, n, records);
        }
        &self.next[..n]
    }

    /// The final verdict and the frame as it leaves, for each traced packet.
    fn finish_records(&self, batch: &Batch, n: usize, records: &mut [trace::Record]) {
        for ((r, buf), (meta, next)) in records
            .iter_mut()
            .zip(&batch.bufs[..n])
            .zip(self.meta[..n].iter().zip(&self.next[..n]))
        {
            r.verdict = *next;
            if matches!(r.classified, Next::Route) && matches!(r.decapped, Next::Route) {
                r.encap = meta.encap;
            }
            if let Next::Tx(_) = next {
                r.out_len = trace::keep_head(buf.frame(), &mut r.out_head);
            }
        }
    }
}
