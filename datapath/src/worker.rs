//! The per-core loop: poll each port for a burst, run the pipeline to completion, hand each
//! egress port its packets in one call, and count everything.

use crate::fib::Fib;
use crate::local::{local_kind, LocalKind, LocalPath};
use crate::lpm::Reader;
use crate::pipeline::batch::{Batch, BATCH};
use crate::pipeline::drop::DropReason;
use crate::pipeline::trace::{Record, Tap};
use crate::pipeline::{Next, Pipeline};
use crate::port::handoff::Steer;
use crate::port::Port;
use crate::ratelimit::{Limit, TokenBucket};
use crate::stats::{Stats, MAX_PORTS};

/// ARP and NDP handed up per second (and burst) per worker: far more than any neighbour
/// discovery needs, and far less than the control thread can serve.
pub const NEIGHBOR_UP_LIMIT: Limit = Limit {
    rate: 20_000,
    burst: 1024,
};
/// Resolve requests per second (and burst) per worker. With the resolver's bounded tracker
/// ([`crate::neigh`]) this sets how long a flood of absent addresses lets an unresolved
/// address wait its turn.
pub const RESOLVE_LIMIT: Limit = Limit {
    rate: 1000,
    burst: 256,
};

/// Bursts of handed-off frames a worker processes at most per poll.
const HANDOFF_BURSTS: usize = 4;

/// A worker's token buckets for the control path.
#[derive(Default)]
struct UpLimits {
    neighbor: TokenBucket,
    other: TokenBucket,
    resolve: TokenBucket,
}
use std::sync::Arc;

/// One worker: its ports, batch, pipeline state and counters.
pub struct Worker {
    ports: Vec<Box<dyn Port>>,
    batch: Batch,
    pipeline: Pipeline,
    stats: Arc<Stats>,
    burst: usize,
    /// This worker's registration as a route-table reader, made on its first poll.
    reader: Option<Reader>,
    /// Batch indices per egress port, reused every poll (only the first `tx_len[q]` of each
    /// row are meaningful, so nothing needs clearing).
    tx_idx: Box<[[u8; BATCH]; MAX_PORTS]>,
    /// The path to the control thread, when there is one; without it frames for the gateway
    /// itself are counted as `local` and consumed.
    local: Option<Arc<LocalPath>>,
    /// Kernel drop totals already counted, per port.
    kernel_drops: [u64; MAX_PORTS],
    /// Each port's sent-in-place and copied totals already counted.
    placement: [(u64, u64); MAX_PORTS],
    up_limits: UpLimits,
    /// The packet trace, when the gateway offers one, this worker's number in its records,
    /// and the records of the batch being traced.
    tap: Option<(Arc<Tap>, u16)>,
    records: Box<[Record]>,
    /// This worker's end of the handoff among workers, and the ports whose frames it
    /// steers by inner flow ([`crate::port::handoff`]).
    steer: Option<(Steer, [bool; MAX_PORTS])>,
}

impl Worker {
    /// A worker over `ports` (port id = index), receiving `burst` packets at a time. Its
    /// buffers' own memory holds the largest frame its ports deliver (and a frame from the
    /// control thread); when its AF_XDP ports share frame memory, the batch uses it.
    pub fn new(ports: Vec<Box<dyn Port>>, burst: usize, stats: Arc<Stats>) -> Self {
        let room = ports
            .iter()
            .map(|p| p.max_frame())
            .fold(crate::local::FRAME_CAP, usize::max);
        let mut batch = Batch::with_room(BATCH, room);
        if let Some(m) = ports.iter().find_map(|p| p.frame_memory()) {
            batch.use_memory(&m);
        }
        Worker {
            ports,
            batch,
            pipeline: Pipeline::new(),
            stats,
            burst: burst.clamp(1, BATCH),
            reader: None,
            tx_idx: Box::new([[0u8; BATCH]; MAX_PORTS]),
            local: None,
            kernel_drops: [0; MAX_PORTS],
            placement: [(0, 0); MAX_PORTS],
            up_limits: UpLimits::default(),
            tap: None,
            records: Box::new([]),
            steer: None,
        }
    }

    /// Steers the frames of the ports marked in `inner` by inner flow through `steer`
    /// (handing those another worker owns to it), and processes what other workers hand to
    /// this one. The batch must use the frame memory the handoff knows as this worker's.
    pub fn with_steering(mut self, mut steer: Steer, inner: [bool; MAX_PORTS]) -> Self {
        if self.batch.memory().is_none() {
            if let Some(m) = steer.memory() {
                self.batch.use_memory(m);
            }
        }
        // The lanes toward this worker get their chunks now, before any worker polls: the
        // first frames handed off must find room.
        steer.post_chunks(&mut self.batch);
        self.steer = Some((steer, inner));
        self
    }

    /// Offers the packets this worker sees to `tap` while it is armed, as worker `id`.
    pub fn with_tap(mut self, tap: Arc<Tap>, id: u16) -> Self {
        self.tap = Some((tap, id));
        self.records = vec![Record::default(); BATCH].into_boxed_slice();
        self
    }

    /// Hands frames for the gateway itself to the control thread through `path`, and sends
    /// what it queues there.
    pub fn with_local(mut self, path: Arc<LocalPath>) -> Self {
        self.local = Some(path);
        self
    }

    /// The worker's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// A port, for tests and tools.
    pub fn port_mut(&mut self, id: usize) -> Option<&mut (dyn Port + 'static)> {
        self.ports.get_mut(id).map(|p| &mut **p)
    }

    /// Polls every port once; returns the packets received. Ends with a quiescent point: the
    /// worker holds nothing from the route tables between polls.
    pub fn poll(&mut self, fib: &Fib) -> usize {
        if self.reader.is_none() {
            self.reader = fib.qsbr().register();
        }
        if self.local.as_ref().is_some_and(|l| l.has_down()) {
            self.send_local();
        }
        // Chunks lent to other workers and given back are free again before the ports
        // receive and the frames are handed off.
        if let Some((steer, _)) = &mut self.steer {
            steer.take_returns(&mut self.batch);
        }
        let mut total = 0;
        for p in 0..self.ports.len().min(MAX_PORTS) {
            total += self.poll_port(p, fib);
        }
        if self.steer.is_some() {
            total += self.poll_handoff(fib);
        }
        if let Some(r) = &self.reader {
            r.quiescent();
        }
        total
    }

    fn poll_port(&mut self, p: usize, fib: &Fib) -> usize {
        let stats = &self.stats.ports[p];
        self.batch.in_port = p as u8;
        let n = self.ports[p].rx(&mut self.batch, self.burst, stats);
        if n == 0 {
            return 0;
        }
        stats.rx_packets.add(n as u64);
        stats
            .rx_bytes
            .add(self.batch.packets().iter().map(|b| b.len() as u64).sum());
        if self.steer.as_ref().is_some_and(|(_, inner)| inner[p]) {
            self.hand_off(p, fib);
        }
        self.process_batch(p, fib);
        self.ports[p].release();
        n
    }

    /// Hands each frame of the batch that another worker owns to that worker, and keeps the
    /// rest, in order, at the front of the batch.
    fn hand_off(&mut self, p: usize, fib: &Fib) {
        let Some((steer, _)) = &mut self.steer else {
            return;
        };
        let stats = &self.stats.ports[p];
        let me = steer.me();
        let mut kept = 0;
        for i in 0..self.batch.len.min(self.batch.bufs.len()) {
            let b = &mut self.batch.bufs[i];
            let owner =
                crate::port::handoff::steer_key(b.frame(), fib).map_or(me, |k| steer.owner(k));
            if owner == me {
                self.batch.bufs.swap(kept, i);
                kept += 1;
                continue;
            }
            match steer.send(owner, b, p as u8) {
                Ok(()) => stats.handed_off.add(1),
                Err(crate::port::handoff::Refused::Full) => stats.drop(DropReason::HandoffFull),
                Err(crate::port::handoff::Refused::Oversize) => stats.drop(DropReason::RxOversize),
            }
        }
        steer.flush();
        self.batch.len = kept;
    }

    /// Processes frames other workers handed to this one, and posts free chunks for more.
    fn poll_handoff(&mut self, fib: &Fib) -> usize {
        let mut total = 0;
        // A few bursts a poll: the lanes fill from every other worker's receive.
        for _ in 0..HANDOFF_BURSTS {
            let Some((steer, _)) = &mut self.steer else {
                break;
            };
            let n = steer.receive(&mut self.batch, self.burst);
            if n == 0 {
                break;
            }
            total += n;
            let p = usize::from(self.batch.in_port);
            if p < self.ports.len().min(MAX_PORTS) {
                self.process_batch(p, fib);
            } else {
                self.batch.release();
            }
            if let Some((steer, _)) = &mut self.steer {
                steer.give_back();
            }
        }
        if let Some((steer, _)) = &mut self.steer {
            steer.post_chunks(&mut self.batch);
        }
        total
    }

    /// Runs the pipeline over the batch (received on port `p`), sends what it forwards,
    /// counts everything, and releases the batch.
    fn process_batch(&mut self, p: usize, fib: &Fib) {
        let n = self.batch.len;
        if n == 0 {
            self.batch.release();
            return;
        }
        let stats = &self.stats.ports[p];

        // The one check a batch pays for the trace.
        let traced = match &self.tap {
            Some((tap, _)) if tap.armed() => tap.filter(),
            _ => None,
        };
        let count = if traced.is_some() {
            let records = &mut self.records;
            self.pipeline
                .process_traced(&mut self.batch, fib, records)
                .len()
        } else {
            self.pipeline.process(&mut self.batch, fib).len()
        };
        let next = &self.pipeline.verdicts()[..count];
        let tx_idx = &mut self.tx_idx;
        let mut tx_len = [0usize; MAX_PORTS];
        for (i, v) in next.iter().enumerate() {
            match *v {
                Next::Tx(q) if usize::from(q) < self.ports.len() => {
                    let q = usize::from(q);
                    tx_idx[q][tx_len[q]] = i as u8;
                    tx_len[q] += 1;
                }
                Next::Local => match &self.local {
                    Some(l) => {
                        // Rate-limited per kind, so a flood at the gateway's addresses sheds
                        // here, counted, and never crowds out ARP and NDP.
                        let frame = self.batch.bufs[i].frame();
                        let kind = local_kind(frame);
                        let (bucket, limit) = match kind {
                            LocalKind::Neighbor => {
                                (&mut self.up_limits.neighbor, NEIGHBOR_UP_LIMIT)
                            }
                            LocalKind::Other => (&mut self.up_limits.other, fib.reply_limit()),
                        };
                        let shed = if !bucket.allow(limit) {
                            DropReason::LocalRateLimited
                        } else if l.hand_up_as(kind, p as u8, frame) {
                            stats.local.add(1);
                            continue;
                        } else {
                            DropReason::LocalQueueFull
                        };
                        stats.drop(shed);
                        if let Some(r) = self.records.get_mut(i).filter(|_| traced.is_some()) {
                            r.verdict = Next::Drop(shed);
                        }
                    }
                    None => stats.local.add(1),
                },
                Next::Drop(r) => {
                    stats.drop(r);
                    if r == DropReason::NeighborUnresolved {
                        if let (Some(l), Some((addr, port))) =
                            (&self.local, self.pipeline.resolve_request(i))
                        {
                            if self.up_limits.resolve.allow(RESOLVE_LIMIT) {
                                l.request_resolve(port, addr);
                            } else {
                                l.shed_resolve();
                            }
                        }
                    }
                }
                Next::Tx(_) => stats.drop(DropReason::UnknownOutputPort),
                Next::Route => stats.drop(DropReason::NoVerdict),
            }
        }
        if let (Some(filter), Some((tap, id))) = (traced, &self.tap) {
            for r in &mut self.records[..count] {
                r.worker = *id;
                if filter.matches(r) && !tap.offer(r) {
                    break;
                }
            }
        }
        self.transmit(&tx_len, p);
        self.batch.release();
        let stats = &self.stats.ports[p];
        stats.decap.add(self.pipeline.decapped());
        let (decapped, encapped) = self.pipeline.by_tunnel_kind();
        for k in 0..crate::tunnel::KINDS.len() {
            stats.decap_kind[k].add(decapped[k]);
            stats.encap_kind[k].add(encapped[k]);
        }
        stats.replies_limited.add(self.pipeline.replies_limited());
        for (reason, sent) in self.pipeline.errors_sent() {
            for _ in 0..sent {
                stats.drop(reason);
            }
        }
    }

    /// Housekeeping every so often (a syscall or file read per port, never per poll): counts
    /// the frames the kernel dropped, and looks at each port's link.
    pub fn housekeeping(&mut self) {
        self.sync_kernel_drops();
        for port in &mut self.ports {
            port.check_link();
        }
    }

    /// Counts the frames the kernel dropped on each port since the last call (one syscall per
    /// port: call it every so often, not per poll).
    pub fn sync_kernel_drops(&mut self) {
        for (p, port) in self.ports.iter_mut().enumerate().take(MAX_PORTS) {
            let total = port.kernel_drops();
            let new = total.saturating_sub(self.kernel_drops[p]);
            self.kernel_drops[p] = total;
            if new > 0 {
                self.stats.ports[p].drops[DropReason::KernelRxDropped as usize].add(new);
            }
        }
    }

    /// Sends the frames the control thread queued, through the ports they name.
    fn send_local(&mut self) {
        let Some(local) = &self.local else {
            return;
        };
        let mut tx_len = [0usize; MAX_PORTS];
        let mut n = 0;
        self.batch.release();
        while n < BATCH {
            let Some(f) = local.take_down() else {
                break;
            };
            let q = usize::from(f.port);
            if q < self.ports.len().min(MAX_PORTS) && self.batch.bufs[n].load(f.bytes(), 0) {
                self.tx_idx[q][tx_len[q]] = n as u8;
                tx_len[q] += 1;
                n += 1;
            }
            local.recycle(f);
        }
        self.batch.len = n;
        self.transmit(&tx_len, usize::MAX);
        self.batch.release();
    }

    /// Sends the first `tx_len[q]` batch indices of `tx_idx[q]` through each port `q`;
    /// frames a port does not take are counted as `tx_full` on port `charge` (where they came
    /// in), or on the egress port when `charge` is not a port.
    #[allow(clippy::needless_range_loop)] // `q` indexes ports, tx_idx and tx_len alike.
    fn transmit(&mut self, tx_len: &[usize; MAX_PORTS], charge: usize) {
        for q in 0..self.ports.len().min(MAX_PORTS) {
            let want = &self.tx_idx[q][..tx_len[q]];
            if want.is_empty() {
                continue;
            }
            let sent = self.ports[q].tx(&mut self.batch, want).min(want.len());
            let out = &self.stats.ports[q];
            let (in_place, copied) = self.ports[q].tx_placement();
            let (seen_in_place, seen_copied) = &mut self.placement[q];
            out.tx_in_place.add(in_place.saturating_sub(*seen_in_place));
            out.tx_copied.add(copied.saturating_sub(*seen_copied));
            (*seen_in_place, *seen_copied) = (in_place, copied);
            out.tx_packets.add(sent as u64);
            out.tx_bytes.add(
                want[..sent]
                    .iter()
                    .map(|&i| self.batch.bufs[usize::from(i)].len() as u64)
                    .sum(),
            );
            let lost = self.stats.ports.get(charge).unwrap_or(out);
            let reason = if self.ports[q].link() == crate::port::Link::Up {
                DropReason::TxFull
            } else {
                DropReason::LinkDown
            };
            for _ in sent..want.len() {
                lost.drop(reason);
            }
        }
    }

    /// True when no port will receive again.
    pub fn finished(&self) -> bool {
        self.ports.iter().all(|p| p.rx_exhausted())
    }

    /// Polls until every port is exhausted, then flushes.
    ///
    /// # Errors
    /// The first flush error.
    pub fn run_to_end(&mut self, fib: &Fib) -> std::io::Result<()> {
        while !self.finished() {
            self.poll(fib);
        }
        self.flush()
    }

    /// Flushes every port.
    ///
    /// # Errors
    /// The first flush error.
    pub fn flush(&mut self) -> std::io::Result<()> {
        for p in &mut self.ports {
            p.flush()?;
        }
        Ok(())
    }
}
