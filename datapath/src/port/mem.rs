//! In-memory port for tests and benches: receives from a list of frames, and either keeps what
//! it transmits or only counts it.

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
    keep_tx: bool,
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
            keep_tx: true,
        }
    }

    /// A port that receives `frames` and only counts what it transmits.
    pub fn counting(frames: impl IntoIterator<Item = Vec<u8>>) -> Self {
        MemPort {
            keep_tx: false,
            ..Self::new(frames)
        }
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
            if batch.bufs[n].load(&frame, 0) {
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
