//! In-memory port for tests and benches: receives from a list of frames, and either keeps what
//! it transmits or only counts it. By default it copies each frame into a buffer's own memory;
//! [`MemPort::in_frame_memory`] puts it in a chunk of the worker's frame memory instead, where
//! an AF_XDP port's frames are ([`receive_into_chunk`]).
//!
//! `unsafe` is allowed here as in every port backend: the one block names what justifies it.

#![allow(unsafe_code)]

use super::Port;
use crate::pipeline::batch::Batch;
use crate::pipeline::drop::DropReason;
use crate::stats::PortStats;
use std::collections::VecDeque;

/// An in-memory port.
#[derive(Default)]
pub struct MemPort {
    rx: VecDeque<Vec<u8>>,
    /// Frames transmitted, when `keep_tx` is set.
    pub tx: Vec<Vec<u8>>,
    /// Count of frames transmitted.
    pub tx_count: u64,
    /// Frames received into chunks of the frame memory ([`MemPort::in_frame_memory`]).
    pub rx_in_chunks: u64,
    keep_tx: bool,
    /// Receive into chunks of the batch's frame memory.
    in_chunks: bool,
    /// The largest frame queued so far.
    max_frame: usize,
}

impl MemPort {
    /// A port that will receive `frames`, in order, and keeps what it transmits.
    pub fn new(frames: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let rx: VecDeque<Vec<u8>> = frames.into_iter().collect();
        MemPort {
            max_frame: rx.iter().map(Vec::len).max().unwrap_or(0),
            rx,
            tx: Vec::new(),
            tx_count: 0,
            rx_in_chunks: 0,
            keep_tx: true,
            in_chunks: false,
        }
    }

    /// A port that receives `frames` and only counts what it transmits.
    pub fn counting(frames: impl IntoIterator<Item = Vec<u8>>) -> Self {
        MemPort {
            keep_tx: false,
            ..Self::new(frames)
        }
    }

    /// Receives into chunks of the worker's frame memory, as AF_XDP does, when the batch has
    /// frame memory and a free chunk (otherwise into a buffer's own memory, as before).
    pub fn in_frame_memory(mut self) -> Self {
        self.in_chunks = true;
        self
    }

    /// Queues more frames to receive.
    ///
    /// A worker sizes its buffers by the frames queued when it is built
    /// ([`Port::max_frame`]): later frames larger than those are dropped as `rx_oversize`.
    pub fn push_rx(&mut self, frame: Vec<u8>) {
        self.max_frame = self.max_frame.max(frame.len());
        self.rx.push_back(frame);
    }
}

impl Port for MemPort {
    fn rx(&mut self, batch: &mut Batch, max: usize, stats: &PortStats) -> usize {
        batch.release();
        let mut n = 0;
        let max = max.min(batch.bufs.len());
        while n < max {
            let Some(frame) = self.rx.pop_front() else {
                break;
            };
            if self.in_chunks && receive_into_chunk(batch, n, &frame) {
                self.rx_in_chunks += 1;
                n += 1;
            } else if batch.bufs[n].load(&frame, 0) {
                n += 1;
            } else {
                stats.drop(DropReason::RxOversize);
            }
        }
        batch.len = n;
        n
    }

    fn tx(&mut self, batch: &mut Batch, idx: &[u8]) -> usize {
        if self.keep_tx {
            for &i in idx {
                if let Some(b) = batch.bufs.get(usize::from(i)) {
                    self.tx.push(b.frame().to_vec());
                }
            }
        }
        self.tx_count += idx.len() as u64;
        idx.len()
    }

    fn rx_exhausted(&self) -> bool {
        self.rx.is_empty()
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Where a frame starts in its chunk: the headroom the kernel leaves an AF_XDP frame.
const CHUNK_HEADROOM: usize = super::af_xdp::XDP_PACKET_HEADROOM;

/// Receives `bytes` into buffer `i` of `batch` as a NIC would DMA them: into a free chunk of the
/// batch's frame memory, after the headroom AF_XDP leaves. False, taking nothing, when the
/// batch has no frame memory or no free chunk, or the frame does not fit a chunk.
pub fn receive_into_chunk(batch: &mut Batch, i: usize, bytes: &[u8]) -> bool {
    let Some(chunk) = batch.take_free() else {
        return false;
    };
    // SAFETY: the chunk came off the batch's free list, so nothing else holds it; the batch
    // holds it from `place` on, until it is sent or released.
    let region = batch.memory().and_then(|m| unsafe { m.region(chunk) });
    let Some(mut r) = region.filter(|r| CHUNK_HEADROOM + bytes.len() <= r.cap()) else {
        batch.put_free(chunk);
        return false;
    };
    r.bytes_mut(CHUNK_HEADROOM, bytes.len())
        .copy_from_slice(bytes);
    if batch.place(i, r, CHUNK_HEADROOM, bytes.len(), Some(chunk)) {
        true
    } else {
        batch.put_free(chunk);
        false
    }
}
