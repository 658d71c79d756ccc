//! The `Port` trait and its backends. A port fills a caller-owned batch on receive and takes a
//! list of batch indices on transmit; dispatch through the trait happens once per batch, never
//! per packet. Anything backend-specific stays in its backend.

pub mod af_packet;
pub mod af_xdp;
pub mod bpf;
pub mod ethtool;
pub mod live_frames;
pub mod mem;
pub mod pcap;

use crate::pipeline::batch::Batch;
use crate::stats::PortStats;
use std::any::Any;

/// A port's link, as the port last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Sending.
    Up,
    /// The interface is down or has no carrier: nothing is sent until it comes back.
    Down,
    /// The interface was removed: the port never sends again.
    Gone,
}

/// A packet port.
pub trait Port: Send {
    /// Receives up to `max` frames into `batch.bufs[..]`, sets `batch.len` and returns it.
    /// Frames the port must discard (too large for a buffer) are counted in `stats`.
    fn rx(&mut self, batch: &mut Batch, max: usize, stats: &PortStats) -> usize;

    /// Transmits the frames `batch.bufs[i]` for each `i` in `idx`, in order; returns how many
    /// were taken (a prefix of `idx`).
    fn tx(&mut self, batch: &Batch, idx: &[u8]) -> usize;

    /// Pushes out anything buffered.
    ///
    /// # Errors
    /// The backend's I/O error.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    /// Frames the kernel dropped for this port before the gateway could see them (a full
    /// receive ring, no fill buffer), as a running total. A syscall: call it rarely.
    fn kernel_drops(&mut self) -> u64 {
        0
    }

    /// The link as last seen (no syscall): frames a port does not take while it is not
    /// [`Link::Up`] are counted as `link_down`, not `tx_full`.
    fn link(&self) -> Link {
        Link::Up
    }

    /// Looks at the interface again (a file read or syscall: call it rarely) and returns the
    /// link; a port reports a change on stderr itself, once per change.
    fn check_link(&mut self) -> Link {
        self.link()
    }

    /// True when the port will never receive again (end of a pcap file, an empty memory port).
    fn rx_exhausted(&self) -> bool {
        false
    }

    /// For tests and tools that need the concrete backend back.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}
