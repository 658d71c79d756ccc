//! Quiescent-state-based reclamation (QSBR) for route-table groups.
//!
//! Readers (workers) register once and report a quiescent point at the end of every burst, when
//! they hold no reference into a table. The writer, after unlinking a group, advances the global
//! epoch and retires the group at that epoch; the group may be reused once every registered,
//! online reader has reported a quiescent point at or after it. A reader that goes idle marks
//! itself offline and never holds reclamation back. This is always on: there is no unsafe
//! "reuse now" path. See DPDK's `doc/guides/prog_guide/lpm_lib.rst` (RCU integration).

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Most readers that can register at once.
pub const MAX_READERS: usize = 64;
const OFFLINE: u64 = u64::MAX;

/// One reader's slot, on its own cache line so readers never share one.
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    in_use: AtomicBool,
    seen: AtomicU64,
}

/// The epoch counter and the reader slots.
pub struct Qsbr {
    epoch: AtomicU64,
    slots: Box<[Slot]>,
}

impl Default for Qsbr {
    fn default() -> Self {
        Qsbr {
            epoch: AtomicU64::new(1),
            slots: (0..MAX_READERS).map(|_| Slot::default()).collect(),
        }
    }
}

/// A registered reader. Dropping it unregisters.
pub struct Reader {
    qsbr: Arc<Qsbr>,
    slot: usize,
}

impl Qsbr {
    /// A fresh domain.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a reader, online from now on; `None` when [`MAX_READERS`] are registered.
    pub fn register(self: &Arc<Self>) -> Option<Reader> {
        for (i, s) in self.slots.iter().enumerate() {
            if s.in_use
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                s.seen
                    .store(self.epoch.load(Ordering::SeqCst), Ordering::SeqCst);
                // Pairs with the writer's fence in `retire`: either the writer sees this slot,
                // or this reader sees every unlink made before the writer's scan.
                fence(Ordering::SeqCst);
                return Some(Reader {
                    qsbr: self.clone(),
                    slot: i,
                });
            }
        }
        None
    }

    /// Called by the writer after unlinking: returns the epoch the unlinked memory is retired at.
    pub fn retire(&self) -> u64 {
        fence(Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// True when every online reader has passed a quiescent point at or after `epoch`.
    pub fn is_safe(&self, epoch: u64) -> bool {
        fence(Ordering::SeqCst);
        self.slots.iter().all(|s| {
            !s.in_use.load(Ordering::SeqCst) || {
                let seen = s.seen.load(Ordering::Acquire);
                seen == OFFLINE || seen >= epoch
            }
        })
    }

    /// Current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
}

impl Reader {
    /// Reports a quiescent point: this reader holds no reference into any table. Two plain
    /// atomic operations, no read-modify-write; call it at the end of every burst.
    #[inline]
    pub fn quiescent(&self) {
        let e = self.qsbr.epoch.load(Ordering::Acquire);
        if let Some(s) = self.qsbr.slots.get(self.slot) {
            s.seen.store(e, Ordering::Release);
        }
    }

    /// Marks this reader idle: it will not read until [`Reader::online`].
    pub fn offline(&self) {
        if let Some(s) = self.qsbr.slots.get(self.slot) {
            s.seen.store(OFFLINE, Ordering::Release);
        }
    }

    /// Marks this reader active again.
    pub fn online(&self) {
        if let Some(s) = self.qsbr.slots.get(self.slot) {
            s.seen
                .store(self.qsbr.epoch.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(s) = self.qsbr.slots.get(self.slot) {
            s.seen.store(OFFLINE, Ordering::SeqCst);
            s.in_use.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_epoch_waits_for_every_online_reader() {
        let q = Qsbr::new();
        let a = q.register().unwrap();
        let b = q.register().unwrap();
        let e = q.retire();
        assert!(!q.is_safe(e));
        a.quiescent();
        assert!(!q.is_safe(e), "b has not passed a quiescent point");
        b.quiescent();
        assert!(q.is_safe(e));
    }

    #[test]
    fn offline_and_dropped_readers_do_not_block() {
        let q = Qsbr::new();
        let a = q.register().unwrap();
        let b = q.register().unwrap();
        let e = q.retire();
        a.offline();
        drop(b);
        assert!(q.is_safe(e));
        a.online();
        let e2 = q.retire();
        assert!(!q.is_safe(e2));
    }

    #[test]
    fn registration_is_bounded() {
        let q = Qsbr::new();
        let readers: Vec<Reader> = (0..MAX_READERS).map(|_| q.register().unwrap()).collect();
        assert!(q.register().is_none());
        drop(readers);
        assert!(q.register().is_some());
    }
}
