//! Packet buffers and the fixed-capacity batch a worker owns and reuses.

/// Bytes reserved in front of each frame, so encapsulation can prepend headers in place.
pub const HEADROOM: usize = 128;
/// The largest frame a buffer holds (jumbo frames and GSO super-frames seen in captures fit).
pub const MAX_FRAME: usize = 16 * 1024 - HEADROOM;
/// Packets per batch (the largest configurable burst).
pub const BATCH: usize = 64;

/// One packet buffer: the frame is `data[off..off + len]`.
pub struct Buf {
    data: Box<[u8]>,
    off: usize,
    len: usize,
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
    /// An empty buffer of `HEADROOM + MAX_FRAME` bytes.
    pub fn new() -> Self {
        Buf {
            data: vec![0u8; HEADROOM + MAX_FRAME].into_boxed_slice(),
            off: HEADROOM,
            len: 0,
            ts_ns: 0,
            csum_trusted: false,
        }
    }

    /// The frame.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        &self.data[self.off..self.off + self.len]
    }

    /// The frame, writable.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.off..self.off + self.len]
    }

    /// Frame length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the frame is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the frame in the buffer.
    #[inline]
    pub fn offset(&self) -> usize {
        self.off
    }

    /// Moves the frame start by `delta` bytes (negative grows into the headroom) and sets the
    /// length. Returns false, changing nothing, when the result would leave the buffer.
    #[inline]
    pub fn reframe(&mut self, delta: isize, len: usize) -> bool {
        match self.off.checked_add_signed(delta) {
            Some(off) if off.checked_add(len).is_some_and(|e| e <= self.data.len()) => {
                self.off = off;
                self.len = len;
                true
            }
            _ => false,
        }
    }

    /// Shortens the frame to `len` bytes (link padding past the IP datagram).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Replaces the frame with `bytes` after the standard headroom. Returns false when it does
    /// not fit.
    pub fn load(&mut self, bytes: &[u8], ts_ns: u64) -> bool {
        let Some(dst) = self.data.get_mut(HEADROOM..HEADROOM + bytes.len()) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        self.off = HEADROOM;
        self.len = bytes.len();
        self.ts_ns = ts_ns;
        self.csum_trusted = false;
        true
    }

    /// The whole writable area after the standard headroom, for a port to receive into; follow
    /// with [`Buf::set_received`].
    pub fn rx_area(&mut self) -> &mut [u8] {
        &mut self.data[HEADROOM..]
    }

    /// Marks `len` bytes written into [`Buf::rx_area`] as the frame.
    pub fn set_received(&mut self, len: usize, ts_ns: u64) {
        self.off = HEADROOM;
        self.len = len.min(MAX_FRAME);
        self.ts_ns = ts_ns;
        self.csum_trusted = false;
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
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// A batch of [`BATCH`] empty buffers, allocated once.
    pub fn new() -> Self {
        Batch {
            bufs: (0..BATCH).map(|_| Buf::new()).collect(),
            len: 0,
            in_port: 0,
        }
    }

    /// A batch of `n` buffers (at most [`BATCH`]), for tools that look at a frame or two at a
    /// time and need not hold a worker's burst.
    pub fn of(n: usize) -> Self {
        Batch {
            bufs: (0..n.min(BATCH)).map(|_| Buf::new()).collect(),
            len: 0,
            in_port: 0,
        }
    }

    /// The packets in the batch.
    pub fn packets(&self) -> &[Buf] {
        &self.bufs[..self.len.min(self.bufs.len())]
    }
}
