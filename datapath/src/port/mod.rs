//! The `Port` trait and its backends. A port places received frames in a caller-owned batch
//! where they already are (its ring, or the worker's shared frame memory) and takes a list of
//! batch indices on transmit; dispatch through the trait happens once per batch, never per
//! packet. Anything backend-specific stays in its backend.
//!
//! The frames of one receive stay valid until the batch is released ([`Batch::release`],
//! which every `rx` does first) and the port's [`Port::release`] is called, or its next `rx`.

pub mod af_packet;
pub mod af_xdp;
pub mod bpf;
pub mod ethtool;
pub mod handoff;
pub mod live_frames;
pub mod mem;
pub mod pcap;
pub mod tun;

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

/// An interface's state from sysfs: removed (its index gone, or now another interface's),
/// down (not administratively up, or no carrier), or up. Unreadable files say up: the transmit
/// path's own errors still catch a fault. A file read: call it rarely.
pub(crate) fn read_link(interface: &str, ifindex: u32) -> Link {
    let dir = format!("/sys/class/net/{interface}");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}"));
    match read("ifindex").map(|s| s.trim().parse::<u32>()) {
        Ok(Ok(i)) if i != ifindex => return Link::Gone,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Link::Gone,
        _ => {}
    }
    let up = read("flags")
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_none_or(|f| f & libc::IFF_UP as u32 != 0);
    // Reading `carrier` fails (EINVAL) while the interface is down.
    let carrier = read("carrier").map_or(up, |c| c.trim() != "0");
    if up && carrier {
        Link::Up
    } else {
        Link::Down
    }
}

/// Says once, as an event, that the link of `interface` (queue `queue`) went from `old` to
/// `new`, and why; returns whether the port should take `new` (a removed interface stays
/// removed).
pub(crate) fn note_link(interface: &str, queue: u32, old: Link, new: Link, why: &str) -> bool {
    if old == new || old == Link::Gone {
        return false;
    }
    match new {
        Link::Up => crate::log::event(
            "link_up",
            &[
                ("port", &interface),
                ("queue", &queue),
                ("note", &"transmitting again"),
            ],
        ),
        Link::Down => crate::log::event(
            "link_down",
            &[
                ("port", &interface),
                ("queue", &queue),
                ("why", &why),
                (
                    "note",
                    &"frames for it are counted as link_down until it comes back",
                ),
            ],
        ),
        Link::Gone => crate::log::event(
            "link_removed",
            &[
                ("port", &interface),
                ("queue", &queue),
                ("why", &why),
                (
                    "note",
                    &"the port will not send or receive again (counted as link_down); \
                      the gateway goes on with its other ports",
                ),
            ],
        ),
    }
    true
}

/// A packet port.
pub trait Port: Send {
    /// Receives up to `max` frames into `batch.bufs[..]`, sets `batch.len` and returns it.
    /// Frames the port must discard (too large for a buffer) are counted in `stats`.
    fn rx(&mut self, batch: &mut Batch, max: usize, stats: &PortStats) -> usize;

    /// Transmits the frames `batch.bufs[i]` for each `i` in `idx`, in order; returns how many
    /// were taken (a prefix of `idx`). A port that sends a frame from where it is takes its
    /// chunk out of the batch ([`crate::pipeline::batch::Buf::give_chunk`]).
    fn tx(&mut self, batch: &mut Batch, idx: &[u8]) -> usize;

    /// The frames of the last receive are done with (processed, and sent or dropped): a port
    /// whose frames sit in its own ring gives those slots back to the kernel.
    fn release(&mut self) {}

    /// The largest frame this port delivers, for sizing the buffers' own memory.
    fn max_frame(&self) -> usize {
        crate::pipeline::batch::MAX_FRAME
    }

    /// The frame memory this port receives into, when it shares one with the worker's other
    /// ports (AF_XDP's UMEM); the worker's batch must use it.
    fn frame_memory(&self) -> Option<std::sync::Arc<crate::framemem::FrameMemory>> {
        None
    }

    /// Frames this port sent from where they were received, and frames it had to copy in
    /// first (from another port's ring or a buffer's own memory), as running totals.
    fn tx_placement(&self) -> (u64, u64) {
        (0, 0)
    }

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
