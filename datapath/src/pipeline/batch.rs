//! The fixed-capacity batch a worker owns and reuses, and its packet buffers.
//!
//! A buffer does not own its frame's memory while the frame is in flight: a port places each
//! received frame where it already is (an AF_XDP chunk of the worker's shared frame memory,
//! a slot of an AF_PACKET ring) and the stages work on it there. Each buffer also has memory
//! of its own ([`crate::framemem::Home`]), sized to the largest frame the worker's ports
//! deliver plus [`HEADROOM`], for ports that copy (pcap, memory, frames from the control
//! thread) and for the rare edit that does not fit where the frame is (a reply longer than
//! the request it answers, in a ring slot with no room after it).

use crate::framemem::{FrameMemory, Home, Region, Span};
use std::sync::Arc;

/// Bytes reserved in front of each frame, so encapsulation can prepend headers in place.
pub const HEADROOM: usize = 128;
/// The largest frame a buffer's own memory can hold (jumbo frames and GSO super-frames seen
/// in captures fit).
pub const MAX_FRAME: usize = 16 * 1024 - HEADROOM;
/// Packets per batch (the largest configurable burst).
pub const BATCH: usize = 64;

/// One packet buffer: the frame, where it is, and the buffer's own memory.
pub struct Buf {
    span: Span,
    home: Home,
    /// The frame-memory chunk the frame sits in (or was moved out of), which goes back to
    /// the worker's free list when the batch is released, unless a port took it to send.
    chunk: Option<u64>,
    /// Capture or receive timestamp in nanoseconds of CLOCK_REALTIME (pcap replay keeps the
    /// original; AF_PACKET gives the kernel's; zero when unknown).
    pub ts_ns: u64,
    /// The receiving port vouches for the L4 checksum: the kernel marked it not yet computed
    /// (locally generated on veth, checksum offload) or already verified.
    pub csum_trusted: bool,
}

impl Default for Buf {
    fn default() -> Self {
        Self::new()
    }
}

impl Buf {
    /// An empty buffer whose own memory holds a frame of [`MAX_FRAME`] bytes.
    pub fn new() -> Self {
        Self::with_room(MAX_FRAME)
    }

    /// An empty buffer whose own memory holds a frame of `room` bytes after the headroom.
    pub fn with_room(room: usize) -> Self {
        let home = Home::new(HEADROOM + room.min(MAX_FRAME));
        Buf {
            span: Self::home_span(&home, 0),
            home,
            chunk: None,
            ts_ns: 0,
            csum_trusted: false,
        }
    }

    /// A frame of `len` bytes after the headroom of `home` (empty when it does not fit).
    fn home_span(home: &Home, len: usize) -> Span {
        let r = home.region();
        Span::new(r, HEADROOM, len)
            .or_else(|| Span::new(r, 0, 0))
            .unwrap_or_else(|| unreachable!("an empty span fits any region"))
    }

    /// The frame.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        self.span.bytes()
    }

    /// The frame, writable.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        self.span.bytes_mut()
    }

    /// Frame length.
    #[inline]
    pub fn len(&self) -> usize {
        self.span.len()
    }

    /// True when the frame is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.span.is_empty()
    }

    /// Offset of the frame in the memory it sits in.
    #[inline]
    pub fn offset(&self) -> usize {
        self.span.off()
    }

    /// How many bytes the buffer's own memory holds after the headroom.
    pub fn room(&self) -> usize {
        self.home.region().cap() - HEADROOM
    }

    /// True when the frame sits in the buffer's own memory, not where a port put it.
    pub fn at_home(&self) -> bool {
        self.span.region().addr() == self.home.region().addr()
    }

    /// Moves the frame start by `delta` bytes (negative grows into the headroom) and sets the
    /// length. When the frame's current memory has no room for that, the frame moves to the
    /// buffer's own memory first (one copy, for the rare edit that needs it). Returns false,
    /// changing nothing, when it fits in neither.
    #[inline]
    pub fn reframe(&mut self, delta: isize, len: usize) -> bool {
        self.span.reframe(delta, len) || self.reframe_at_home(delta, len)
    }

    #[cold]
    fn reframe_at_home(&mut self, delta: isize, len: usize) -> bool {
        if self.at_home() {
            return false;
        }
        let n = self.span.len();
        let Some(mut moved) = Span::new(self.home.region(), HEADROOM, n) else {
            return false;
        };
        if !moved.reframe(delta, len) {
            return false;
        }
        let mut home = self.home.region();
        home.bytes_mut(HEADROOM, n)
            .copy_from_slice(self.span.bytes());
        self.span = moved;
        true
    }

    /// Shortens the frame to `len` bytes (link padding past the IP datagram).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.span.truncate(len);
    }

    /// Replaces the frame with a copy of `bytes` in the buffer's own memory, after the
    /// headroom. Returns false when it does not fit. The buffer must hold no frame-memory
    /// chunk ([`Batch::release`] first).
    #[inline]
    pub fn load(&mut self, bytes: &[u8], ts_ns: u64) -> bool {
        let Some(mut span) = Span::new(self.home.region(), HEADROOM, bytes.len()) else {
            return false;
        };
        span.bytes_mut().copy_from_slice(bytes);
        self.span = span;
        self.ts_ns = ts_ns;
        self.csum_trusted = false;
        true
    }

    /// The buffer's own memory after the headroom, for a port to receive into; follow with
    /// [`Buf::set_received`].
    pub fn rx_area(&mut self) -> &mut [u8] {
        let room = self.room();
        self.span = Self::home_span(&self.home, room);
        self.span.bytes_mut()
    }

    /// Marks `len` bytes written into [`Buf::rx_area`] as the frame.
    pub fn set_received(&mut self, len: usize, ts_ns: u64) {
        self.span = Self::home_span(&self.home, len.min(self.room()));
        self.ts_ns = ts_ns;
        self.csum_trusted = false;
    }

    fn go_home(&mut self) {
        self.span = Self::home_span(&self.home, 0);
        self.csum_trusted = false;
    }

    /// Where the frame sits in `memory`: its address there, when the frame is still in the
    /// chunk the port put it in (so another port sharing the memory can send it as it is).
    #[inline]
    pub fn address_in(&self, memory: &FrameMemory) -> Option<u64> {
        let c = self.chunk?;
        memory
            .is_chunk(&self.span.region(), c)
            .then_some(c + self.span.off() as u64)
    }

    /// Hands the frame's chunk over (a port queued it for sending): the buffer no longer
    /// holds it or reads it (it points at its own memory again), and keeps only the length
    /// for the worker's byte count.
    #[inline]
    pub fn give_chunk(&mut self) -> Option<u64> {
        let c = self.chunk.take();
        let len = self.span.len();
        self.span = Self::home_span(&self.home, len);
        c
    }
}

/// A batch of received packets from one port.
pub struct Batch {
    /// Buffers; the first `len` hold packets.
    pub bufs: Box<[Buf]>,
    /// Packets in the batch.
    pub len: usize,
    /// The port they arrived on.
    pub in_port: u8,
    /// Buffers `..placed` may hold frames outside their own memory.
    placed: usize,
    /// The worker's frame memory, shared by its AF_XDP sockets, and its chunks that no ring
    /// and no buffer holds.
    memory: Option<Arc<FrameMemory>>,
    free: Vec<u64>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// A batch of [`BATCH`] buffers of [`MAX_FRAME`] bytes, allocated once.
    pub fn new() -> Self {
        Self::with_room(BATCH, MAX_FRAME)
    }

    /// A batch of `n` buffers (at most [`BATCH`]), for tools that look at a frame or two at a
    /// time and need not hold a worker's burst.
    pub fn of(n: usize) -> Self {
        Self::with_room(n, MAX_FRAME)
    }

    /// A batch of `n` buffers (at most [`BATCH`]) whose own memory holds frames of `room`
    /// bytes: the largest frame the worker's ports deliver, not more.
    pub fn with_room(n: usize, room: usize) -> Self {
        Batch {
            bufs: (0..n.min(BATCH)).map(|_| Buf::with_room(room)).collect(),
            len: 0,
            in_port: 0,
            placed: 0,
            memory: None,
            free: Vec::new(),
        }
    }

    /// Makes `memory` the batch's frame memory and takes its unclaimed chunks as free ones.
    /// Call it after the ports sharing the memory have opened (they claim their share).
    pub fn use_memory(&mut self, memory: &Arc<FrameMemory>) {
        self.release();
        self.free = memory.claim(memory.frames());
        self.free.reserve_exact(memory.frames() - self.free.len());
        self.memory = Some(Arc::clone(memory));
    }

    /// The batch's frame memory, if any.
    pub fn memory(&self) -> Option<&Arc<FrameMemory>> {
        self.memory.as_ref()
    }

    /// The packets in the batch.
    pub fn packets(&self) -> &[Buf] {
        &self.bufs[..self.len.min(self.bufs.len())]
    }

    /// Gives up every frame the batch holds: chunks of the frame memory go back to the free
    /// list, and every buffer points at its own memory again. Ports call it before they
    /// receive; the worker calls it once a batch is sent.
    pub fn release(&mut self) {
        for b in &mut self.bufs[..self.placed.min(BATCH)] {
            if let Some(c) = b.chunk.take() {
                self.free.push(c);
            }
            b.go_home();
        }
        self.placed = 0;
    }

    /// Places buffer `i`'s frame at `off..off + len` of `at`, where a port received it;
    /// `chunk` is the frame-memory chunk it sits in, if it does. False, placing nothing,
    /// when the range leaves the region or `i` the batch.
    pub fn place(
        &mut self,
        i: usize,
        at: Region,
        off: usize,
        len: usize,
        chunk: Option<u64>,
    ) -> bool {
        let (Some(b), Some(span)) = (self.bufs.get_mut(i), Span::new(at, off, len)) else {
            return false;
        };
        b.span = span;
        b.chunk = chunk;
        b.csum_trusted = false;
        b.ts_ns = 0;
        self.placed = self.placed.max(i + 1);
        true
    }

    /// Takes a free chunk of the frame memory.
    #[inline]
    pub fn take_free(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Returns a chunk to the free list (a port's completion ring gave it back).
    #[inline]
    pub fn put_free(&mut self, chunk: u64) {
        self.free.push(chunk);
    }

    /// Free chunks.
    #[inline]
    pub fn free_len(&self) -> usize {
        self.free.len()
    }
}
