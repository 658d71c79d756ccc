//! Handoff between workers: software steering for traffic the NIC's hash cannot spread.
//!
//! All GTP-U from one gNB has the same outer addresses and ports, so RSS puts it on one queue
//! and one worker. With `steering = "inner"` on a port, the worker that receives a frame
//! hashes its inner flow (or GTP-U TEID, [`steer_key`]) and hands each frame another worker
//! owns to that worker, which runs the pipeline on it.
//!
//! Each ordered pair of workers has a lane of three bounded single-producer single-consumer
//! rings (`Ring`: no lock, no allocation per packet, and the indices published once a
//! burst rather than once a frame, so the cache lines the two cores share move once a burst):
//! - `frames`: the receiving worker queues each frame's descriptor for the owner;
//! - `returns`: the owner gives back the receiving worker's chunks it has finished with;
//! - `chunks`: the owner posts free chunks of its own frame memory, for frames that are in no
//!   chunk (below).
//!
//! A frame a port put in a chunk of the receiving worker's frame memory (AF_XDP) changes hands
//! by descriptor: the owner runs the pipeline on it where it is, in the receiving worker's
//! memory, and gives the chunk back on `returns` once the batch is sent. The receiving worker
//! lends at most [`LANE_CHUNKS`] chunks to a lane, so a slow owner cannot drain its memory.
//! The owner's port sends such a frame from memory that is not its own: an AF_XDP port
//! copies it into a chunk of its UMEM (the workers' UMEMs are separate), on the owner's core,
//! not on the receiving one that all of one gNB's traffic arrives at.
//!
//! A frame in no chunk (an AF_PACKET ring slot, a buffer's own memory) is copied at the handoff
//! into a chunk the owner posted on `chunks`, and the owner places it in its batch where it is.
//!
//! Frames leave a lane in the order they entered it, so a flow, which always hashes to the
//! same owner, keeps its order. A lane with nothing to lend or no posted chunk refuses the
//! frame: the worker counts it as `handoff_full` and never waits.
//!
//! This is port plumbing (a lane is a port between workers): `unsafe` is allowed here, each
//! block names what justifies it.

#![allow(unsafe_code)]

use crate::fib::Fib;
use crate::framemem::FrameMemory;
use crate::pipeline::batch::{Batch, Buf};
use crate::tunnel::Kind;
use crate::wire::{
    ethernet, geneve, gtpu, ip_proto, vlan, vxlan, EthernetFrame, GenevePacket, GtpuPacket,
    Ipv4Packet, Ipv6Packet, UdpPacket,
};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// An index on a cache line of its own, so the producer's and the consumer's do not share one.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// A bounded single-producer single-consumer ring of `T`. Each side keeps its own position and
/// a cached copy of the other's ([`End`]), reads the other's index only when the cache says
/// full or empty, and publishes its own once per burst.
struct Ring<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Next slot to read; written by the consumer.
    head: Padded,
    /// Next slot to write; written by the producer.
    tail: Padded,
}

// SAFETY: the producer writes only slots between its tail and the consumer's published head
// (free), the consumer reads only slots between its head and the producer's published tail
// (filled, made visible by the release store of the tail); one `End` per side exists (see
// `Handoff::end`), so no slot is touched by two threads at once.
unsafe impl<T: Send> Sync for Ring<T> {}

/// One side's view of a ring: its own position and what it last saw of the other side's.
#[derive(Default, Clone, Copy)]
struct End {
    mine: usize,
    seen: usize,
}

impl<T: Copy> Ring<T> {
    fn new(capacity: usize) -> Ring<T> {
        let cap = capacity.next_power_of_two();
        Ring {
            slots: (0..cap)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            mask: cap - 1,
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    /// Producer: writes `v` unless the ring is full (not yet visible: [`Ring::publish`]).
    #[inline]
    fn push(&self, p: &mut End, v: T) -> bool {
        if p.mine.wrapping_sub(p.seen) > self.mask {
            p.seen = self.head.0.load(Ordering::Acquire);
            if p.mine.wrapping_sub(p.seen) > self.mask {
                return false;
            }
        }
        // SAFETY: the slot lies between the consumer's head and our tail plus capacity: the
        // consumer has finished with it (its head passed it, read with acquire) and will not
        // read it before our release store of the tail; we are the one producer.
        unsafe { (*self.slots[p.mine & self.mask].get()).write(v) };
        p.mine = p.mine.wrapping_add(1);
        true
    }

    /// Producer: makes what was pushed visible to the consumer.
    #[inline]
    fn publish(&self, p: &End) {
        self.tail.0.store(p.mine, Ordering::Release);
    }

    /// Consumer: takes the next value, if one is visible (the slot is free for the producer
    /// only after [`Ring::release`]).
    #[inline]
    fn pop(&self, c: &mut End) -> Option<T> {
        if c.mine == c.seen {
            c.seen = self.tail.0.load(Ordering::Acquire);
            if c.mine == c.seen {
                return None;
            }
        }
        // SAFETY: the slot lies before the producer's published tail (acquired above or
        // earlier), so it was written and the write is visible; the producer will not write it
        // again before our release store of the head; we are the one consumer.
        let v = unsafe { (*self.slots[c.mine & self.mask].get()).assume_init() };
        c.mine = c.mine.wrapping_add(1);
        Some(v)
    }

    /// Consumer: gives the slots read so far back to the producer.
    #[inline]
    fn release(&self, c: &End) {
        self.head.0.store(c.mine, Ordering::Release);
    }

    /// Values in the ring, as either side may see it (a hint: the other side moves).
    fn len_hint(&self) -> usize {
        self.tail
            .0
            .load(Ordering::Acquire)
            .wrapping_sub(self.head.0.load(Ordering::Acquire))
    }
}

/// Chunks a worker posts on each lane toward it (and the frames a lane holds in flight at
/// most, about as many): a few bursts of every other worker.
pub const LANE_CHUNKS: usize = 512;
/// Where a handed-off frame starts in its chunk: the same room for encapsulation as AF_XDP
/// leaves.
const HEADROOM: usize = super::af_xdp::XDP_PACKET_HEADROOM;

/// A frame in a lane: its chunk and where in it, and what the receiving port said.
#[derive(Clone, Copy, Debug)]
struct Desc {
    chunk: u64,
    off: u16,
    len: u16,
    in_port: u8,
    csum_trusted: bool,
    /// The chunk is the receiving worker's, lent until it comes back on `returns`; otherwise
    /// it is one the owner posted, and the frame was copied into it.
    lent: bool,
}

struct Lane {
    /// Free chunks of the owner's memory, posted by the owner.
    chunks: Ring<u64>,
    /// Frames for the owner, in lent chunks or copied into posted ones.
    frames: Ring<Desc>,
    /// Lent chunks the owner has finished with, back to the receiving worker.
    returns: Ring<u64>,
}

/// The lanes among `n` workers and each worker's frame memory.
pub struct Handoff {
    n: usize,
    /// Frames in the receiving worker's memory are lent, not copied.
    lend: bool,
    memories: Vec<Arc<FrameMemory>>,
    /// Lane `from * n + to`.
    lanes: Vec<Lane>,
    /// Which workers' ends were taken: one end per worker keeps each ring single-producer
    /// and single-consumer.
    taken: Vec<AtomicBool>,
}

/// Extra chunks a worker's frame memory needs for the handoff among `workers` workers: what it
/// posts on the lanes toward it and what it lends on the lanes away from it.
pub fn frames_for(workers: usize) -> usize {
    workers.saturating_sub(1) * 2 * LANE_CHUNKS
}

impl Handoff {
    /// Lanes among the workers whose frame memories are `memories` (worker `w`'s at `w`).
    pub fn new(memories: Vec<Arc<FrameMemory>>) -> Arc<Handoff> {
        Self::build(memories, true)
    }

    /// As [`Handoff::new`], but every frame is copied at the handoff, none lent: the
    /// benches' baseline for what lending saves.
    pub fn copying(memories: Vec<Arc<FrameMemory>>) -> Arc<Handoff> {
        Self::build(memories, false)
    }

    fn build(memories: Vec<Arc<FrameMemory>>, lend: bool) -> Arc<Handoff> {
        let n = memories.len();
        let lanes = (0..n * n)
            .map(|_| Lane {
                chunks: Ring::new(LANE_CHUNKS),
                // Twice the chunks: the owner tops its chunk ring up while frames wait, so
                // both can be full at once, and a push after a pop must not fail.
                // Lent chunks are bounded by LANE_CHUNKS too: both kinds fit.
                frames: Ring::new(2 * LANE_CHUNKS),
                // No more than LANE_CHUNKS are lent at once, so a give-back never fails.
                returns: Ring::new(LANE_CHUNKS),
            })
            .collect();
        Arc::new(Handoff {
            n,
            lend,
            memories,
            lanes,
            taken: (0..n).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// Worker `me`'s end; `None` when it was taken already (or there is no such worker).
    pub fn end(self: &Arc<Self>, me: usize) -> Option<Steer> {
        if self.taken.get(me)?.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Steer {
            me,
            handoff: Arc::clone(self),
            held: vec![None; self.n],
            next_source: 0,
            send_frames: vec![End::default(); self.n],
            take_chunks: vec![End::default(); self.n],
            post_chunks: vec![End::default(); self.n],
            take_frames: vec![End::default(); self.n],
            give_returns: vec![End::default(); self.n],
            take_returns: vec![End::default(); self.n],
            lent: vec![0; self.n],
            borrowed: Vec::with_capacity(crate::pipeline::batch::BATCH),
            sent: vec![false; self.n],
            returned: vec![false; self.n],
        })
    }
}

/// Why a frame was not handed off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The owner has posted no free chunk on the lane (it is behind).
    Full,
    /// The frame does not fit a chunk.
    Oversize,
}

/// One worker's end of the handoff.
pub struct Steer {
    me: usize,
    handoff: Arc<Handoff>,
    /// Per source worker, a frame taken off its lane that belongs to the next batch (its
    /// input port differs from the batch's).
    held: Vec<Option<Desc>>,
    next_source: usize,
    /// This worker's side of each ring, by the other worker: the frames it sends (producer)
    /// and the chunks it takes for them (consumer), toward that worker; the chunks it posts
    /// (producer) and the frames it takes (consumer), from that worker.
    send_frames: Vec<End>,
    take_chunks: Vec<End>,
    post_chunks: Vec<End>,
    take_frames: Vec<End>,
    /// The returns this worker gives (producer, by the worker that lent) and takes
    /// (consumer, by the worker it lent to).
    give_returns: Vec<End>,
    take_returns: Vec<End>,
    /// Chunks lent to each worker and not yet back.
    lent: Vec<usize>,
    /// The lending worker and chunk of each frame of the current batch that sits in another
    /// worker's memory, to give back once the batch is sent.
    borrowed: Vec<(usize, u64)>,
    /// Lanes sent on since the last [`Steer::flush`].
    sent: Vec<bool>,
    /// Lenders given chunks back to during the current [`Steer::give_back`].
    returned: Vec<bool>,
}

impl Steer {
    /// Workers sharing the handoff.
    pub fn workers(&self) -> usize {
        self.handoff.n
    }

    /// This worker's number.
    pub fn me(&self) -> usize {
        self.me
    }

    /// This worker's frame memory, which its batch must use.
    pub fn memory(&self) -> Option<&Arc<FrameMemory>> {
        self.handoff.memories.get(self.me)
    }

    /// The worker that owns flow key `key` (a multiplicative hash scaled to the workers).
    #[inline]
    pub fn owner(&self, key: u32) -> usize {
        let mixed = u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        ((mixed * self.handoff.n as u64) >> 32) as usize
    }

    /// Queues `buf`'s frame for worker `to` (visible to `to` after [`Steer::flush`]). A frame
    /// in a chunk of this worker's frame memory is lent by descriptor and the buffer lets go
    /// of its chunk; any other is copied into a chunk `to` posted.
    #[inline]
    pub fn send(&mut self, to: usize, buf: &mut Buf, in_port: u8) -> Result<(), Refused> {
        let h = &*self.handoff;
        let (Some(lane), Some(mine), Some(theirs)) = (
            h.lanes.get(self.me * h.n + to),
            h.memories.get(self.me),
            h.memories.get(to),
        ) else {
            return Err(Refused::Full);
        };
        let len = buf.len() as u16;
        let csum_trusted = buf.csum_trusted;
        let lend = if h.lend { buf.address_in(mine) } else { None };
        let d = if let Some(addr) = lend {
            if self.lent[to] >= LANE_CHUNKS {
                return Err(Refused::Full);
            }
            let chunk = mine.chunk_of(addr).ok_or(Refused::Full)?;
            buf.give_chunk();
            self.lent[to] += 1;
            Desc {
                chunk,
                off: (addr - chunk) as u16,
                len,
                in_port,
                csum_trusted,
                lent: true,
            }
        } else {
            let frame = buf.frame();
            if frame.len() + HEADROOM > theirs.chunk_size() {
                return Err(Refused::Oversize);
            }
            let chunk = lane
                .chunks
                .pop(&mut self.take_chunks[to])
                .ok_or(Refused::Full)?;
            // SAFETY: the chunk came off the lane's chunk ring: its owner gave it up for this
            // lane, and no one else touches it until it comes back through the frame ring.
            if let Some(mut r) = unsafe { theirs.region(chunk) } {
                r.bytes_mut(HEADROOM, frame.len()).copy_from_slice(frame);
            }
            Desc {
                chunk,
                off: HEADROOM as u16,
                len,
                in_port,
                csum_trusted,
                lent: false,
            }
        };
        // Cannot fail (see `Handoff::new`); were it to, the chunk would be lost to the lane,
        // not to memory safety.
        let _ = lane.frames.push(&mut self.send_frames[to], d);
        self.sent[to] = true;
        Ok(())
    }

    /// Takes back the chunks other workers have finished with onto `batch`'s free list (the
    /// batch uses this worker's frame memory).
    pub fn take_returns(&mut self, batch: &mut Batch) {
        let h = &*self.handoff;
        for to in (0..h.n).filter(|&t| t != self.me) {
            if self.lent[to] == 0 {
                continue;
            }
            let lane = &h.lanes[self.me * h.n + to];
            let end = &mut self.take_returns[to];
            let mut any = false;
            while let Some(c) = lane.returns.pop(end) {
                batch.put_free(c);
                self.lent[to] -= 1;
                any = true;
            }
            if any {
                lane.returns.release(end);
            }
        }
    }

    /// Gives the chunks of the batch just sent that other workers lent back to them.
    pub fn give_back(&mut self) {
        if self.borrowed.is_empty() {
            return;
        }
        let h = &*self.handoff;
        for (from, chunk) in self.borrowed.drain(..) {
            let lane = &h.lanes[from * h.n + self.me];
            // Cannot fail: a lender has at most the ring's size out (`Steer::send`).
            let _ = lane.returns.push(&mut self.give_returns[from], chunk);
            self.returned[from] = true;
        }
        for from in 0..h.n {
            if std::mem::take(&mut self.returned[from]) {
                h.lanes[from * h.n + self.me]
                    .returns
                    .publish(&self.give_returns[from]);
            }
        }
    }

    /// Makes the frames sent since the last flush visible to their owners, and gives the
    /// chunks taken back to the rings they came from: one release store per lane used.
    pub fn flush(&mut self) {
        let h = &*self.handoff;
        for to in 0..h.n {
            if std::mem::take(&mut self.sent[to]) {
                let lane = &h.lanes[self.me * h.n + to];
                lane.frames.publish(&self.send_frames[to]);
                lane.chunks.release(&self.take_chunks[to]);
            }
        }
    }

    /// Posts free chunks from `batch` (which uses this worker's frame memory) on every lane
    /// toward this worker, up to what a lane holds.
    pub fn post_chunks(&mut self, batch: &mut Batch) {
        let h = &*self.handoff;
        for from in (0..h.n).filter(|&f| f != self.me) {
            let lane = &h.lanes[from * h.n + self.me];
            // Chunks posted plus frames waiting stay within the chunk ring's size.
            let mut room = LANE_CHUNKS
                .saturating_sub(lane.chunks.len_hint())
                .saturating_sub(lane.frames.len_hint());
            // In bulk: a lane is topped up once a burst's worth is missing.
            if room < 32 {
                continue;
            }
            let end = &mut self.post_chunks[from];
            while room > 0 {
                let Some(c) = batch.take_free() else {
                    break;
                };
                if !lane.chunks.push(end, c) {
                    batch.put_free(c);
                    break;
                }
                room -= 1;
            }
            lane.chunks.publish(end);
        }
    }

    /// Takes up to `max` frames handed to this worker, all from one input port, into
    /// `batch` where they are (this worker's frame memory), sets `batch.in_port` and
    /// `batch.len`, and returns how many. Sources take turns.
    pub fn receive(&mut self, batch: &mut Batch, max: usize) -> usize {
        batch.release();
        // The batch let go of every frame: borrowed chunks may go home.
        self.give_back();
        let h = &*self.handoff;
        let Some(memory) = h.memories.get(self.me) else {
            batch.len = 0;
            return 0;
        };
        let max = max.min(batch.bufs.len());
        let mut n = 0;
        let mut port = None;
        for k in 0..h.n {
            let from = (self.next_source + k) % h.n;
            if from == self.me {
                continue;
            }
            let lane = &h.lanes[from * h.n + self.me];
            let end = &mut self.take_frames[from];
            while n < max {
                let Some(d) = self.held[from].take().or_else(|| lane.frames.pop(end)) else {
                    break;
                };
                if *port.get_or_insert(d.in_port) != d.in_port {
                    self.held[from] = Some(d);
                    break;
                }
                // A lent chunk is the lender's, not the batch's: the batch must neither free
                // it nor send it as its own memory's.
                let (home, batch_chunk) = if d.lent {
                    (h.memories.get(from), None)
                } else {
                    (Some(memory), Some(d.chunk))
                };
                // SAFETY: a lent chunk was given up by its lender with the frame, which touches
                // it again only after `give_back` returns it, once the batch is sent; a posted
                // one is this worker's own, handed back with the frame, and the batch holds it
                // until it is sent or released.
                let region = home.and_then(|m| unsafe { m.region(d.chunk) });
                let (off, len) = (usize::from(d.off), usize::from(d.len));
                let placed = region.is_some_and(|r| batch.place(n, r, off, len, batch_chunk));
                if placed {
                    batch.bufs[n].csum_trusted = d.csum_trusted;
                    n += 1;
                }
                if d.lent {
                    self.borrowed.push((from, d.chunk));
                } else if !placed {
                    batch.put_free(d.chunk);
                }
            }
            lane.frames.release(end);
            if n == max {
                break;
            }
        }
        self.next_source = (self.next_source + 1) % h.n.max(1);
        batch.in_port = port.unwrap_or(0);
        batch.len = n;
        n
    }
}

/// The key that decides which worker processes `frame`: the GTP-U TEID for GTP-U to the
/// gateway's endpoint, the inner flow for VXLAN, Geneve and IP-in-IP, the flow itself for
/// plain traffic. Flows hash the same both ways (addresses and ports are combined without
/// order), so the encapsulating direction of a VXLAN, Geneve or IPIP flow lands on the
/// worker that decapsulates the other. `None` for a frame too short or strange to read: it
/// stays where it was received, and the pipeline counts why.
#[inline]
pub fn steer_key(frame: &[u8], fib: &Fib) -> Option<u32> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (ethertype, l3) = vlan::skip_tags(frame, eth.ethertype(), ethernet::HEADER_LEN).ok()?;
    let (proto, l4, key) = ip_flow(frame.get(l3..)?, ethertype)?;
    let l4 = l3 + l4;
    match proto {
        ip_proto::UDP => {
            let u = UdpPacket::new_checked(frame.get(l4..)?).ok()?;
            let at = l4 + crate::wire::udp::HEADER_LEN;
            let port = u.dst_port();
            let kind = if port == gtpu::UDP_PORT {
                Some(Kind::Gtpu)
            } else {
                fib.tunnels().udp_kind(port)
            };
            match kind {
                Some(Kind::Gtpu) => {
                    // Only the TEID decides the owner: the owner's decapsulation checks the
                    // rest of the header and counts what is wrong with it.
                    let g = GtpuPacket::new_unchecked(frame.get(at..at + gtpu::HEADER_LEN)?);
                    Some(mix(u64::from(g.teid())))
                }
                Some(Kind::Vxlan) => inner_ethernet(frame.get(at + vxlan::HEADER_LEN..)?),
                Some(Kind::Geneve) => {
                    let g = GenevePacket::new_checked(frame.get(at..)?).ok()?;
                    let inner = frame.get(at + g.header_len()..)?;
                    if g.protocol() == geneve::PROTOCOL_ETHERNET {
                        inner_ethernet(inner)
                    } else {
                        inner_ip(inner, g.protocol())
                    }
                }
                _ => Some(mix(key ^ ports(frame.get(l4..)?))),
            }
        }
        ip_proto::IPIP => inner_ip(frame.get(l4..)?, ethernet::EtherType::IPV4),
        ip_proto::IPV6 => inner_ip(frame.get(l4..)?, ethernet::EtherType::IPV6),
        ip_proto::TCP | ip_proto::SCTP => Some(mix(key ^ ports(frame.get(l4..)?))),
        _ => Some(mix(key)),
    }
}

/// The protocol, the offset of the transport header and the unordered address key of the
/// IP packet at the start of `p`.
#[inline]
fn ip_flow(p: &[u8], ethertype: u16) -> Option<(u8, usize, u64)> {
    match ethertype {
        ethernet::EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(p).ok()?;
            let key = u64::from(ip.src() ^ ip.dst()) | (u64::from(ip.protocol()) << 32);
            Some((ip.protocol(), ip.header_len(), key))
        }
        ethernet::EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(p).ok()?;
            let x = ip.src() ^ ip.dst();
            let key = (x as u64) ^ ((x >> 64) as u64) ^ (u64::from(ip.next_header()) << 56);
            Some((ip.next_header(), crate::wire::ipv6::HEADER_LEN, key))
        }
        _ => None,
    }
}

/// The two ports of a TCP, UDP or SCTP header, combined without order.
#[inline]
fn ports(l4: &[u8]) -> u64 {
    match l4 {
        [a, b, c, d, ..] => {
            u64::from(u16::from_be_bytes([*a, *b]) ^ u16::from_be_bytes([*c, *d])) << 40
        }
        _ => 0,
    }
}

#[inline]
fn inner_ethernet(f: &[u8]) -> Option<u32> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    let (ethertype, l3) = vlan::skip_tags(f, eth.ethertype(), ethernet::HEADER_LEN).ok()?;
    inner_ip(f.get(l3..)?, ethertype)
}

#[inline]
fn inner_ip(p: &[u8], ethertype: u16) -> Option<u32> {
    let (proto, l4, key) = ip_flow(p, ethertype)?;
    let ports = match proto {
        ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP => ports(p.get(l4..)?),
        _ => 0,
    };
    Some(mix(key ^ ports))
}

#[inline]
fn mix(k: u64) -> u32 {
    (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}
