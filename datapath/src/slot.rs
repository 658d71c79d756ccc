//! The forwarding snapshot in force, replaced whole when the configuration is reloaded.
//!
//! Route changes one at a time go through the route tables' single writer
//! ([`crate::fib::RouteWriters`]); a reload changes everything at once (routes, tunnels, next
//! hops, static neighbours), so the control thread builds a complete new [`Fib`] beside the
//! running one and publishes it here. Each worker keeps its own reference ([`FibView`]) and
//! checks the slot's generation once per poll, never per packet: one atomic load, and the
//! slot's lock only on the poll after a reload, to take the new reference. A burst is
//! forwarded entirely by the old snapshot or entirely by the new one; no packet waits and none
//! is dropped for the change.
//!
//! The old snapshot is freed by whoever drops its last reference. The publisher keeps one
//! ([`FibSlot::replace`] returns it) and drops it once it is the only holder left
//! ([`retire`]), so a worker never pays for freeing a large table.

use crate::fib::Fib;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The snapshot in force and its generation.
pub struct FibSlot {
    generation: AtomicU64,
    current: Mutex<Arc<Fib>>,
}

impl FibSlot {
    /// A slot holding `fib`, generation 0.
    pub fn new(fib: Arc<Fib>) -> Arc<Self> {
        Arc::new(FibSlot {
            generation: AtomicU64::new(0),
            current: Mutex::new(fib),
        })
    }

    /// Bumped by every [`FibSlot::replace`].
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The snapshot in force.
    pub fn current(&self) -> Arc<Fib> {
        Arc::clone(&self.lock())
    }

    /// Publishes `fib`; returns the snapshot it replaces, for [`retire`].
    pub fn replace(&self, fib: Arc<Fib>) -> Arc<Fib> {
        let mut cur = self.lock();
        let old = std::mem::replace(&mut *cur, fib);
        // Under the lock: a reader that sees the new generation takes the new snapshot.
        self.generation.fetch_add(1, Ordering::Release);
        old
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Fib>> {
        // The lock guards a pointer swap; a panic elsewhere cannot leave it half-done.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A worker's reference to the snapshot in force.
pub struct FibView {
    slot: Arc<FibSlot>,
    generation: u64,
    fib: Arc<Fib>,
}

impl FibView {
    /// A view of `slot`'s current snapshot.
    pub fn new(slot: &Arc<FibSlot>) -> Self {
        let generation = slot.generation();
        FibView {
            slot: Arc::clone(slot),
            generation,
            fib: slot.current(),
        }
    }

    /// The snapshot in force, taking the newer one when the slot changed since the last call.
    /// Call it once per poll; hold the reference for that poll only.
    #[inline]
    pub fn get(&mut self) -> &Fib {
        let g = self.slot.generation();
        if g != self.generation {
            self.generation = g;
            self.fib = self.slot.current();
        }
        &self.fib
    }
}

/// Drops the replaced snapshots no worker still holds; returns how many are left.
pub fn retire(retired: &mut Vec<Arc<Fib>>) -> usize {
    retired.retain(|f| Arc::strong_count(f) > 1);
    retired.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::{FibBuilder, PortInfo, RouteAction};
    use std::net::IpAddr;
    use std::sync::atomic::AtomicBool;

    /// A snapshot routing 10.9.0.0/16 via a neighbour on port `port`.
    fn fib_to(port: u8, after: Option<&Fib>) -> Arc<Fib> {
        let mut b = after.map_or_else(FibBuilder::new, FibBuilder::succeeding);
        for mac in [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]] {
            b.add_port(PortInfo {
                mac,
                mtu: 1500,
                promiscuous: false,
            })
            .unwrap();
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        b.add_address(1, ip("172.18.0.1"), 16);
        b.add_address(2, ip("172.19.0.1"), 16);
        b.add_neighbor(ip("172.18.0.2"), [2, 0, 0, 0, 3, 1]);
        b.add_neighbor(ip("172.19.0.2"), [2, 0, 0, 0, 3, 2]);
        let hop = if port == 1 {
            "172.18.0.2"
        } else {
            "172.19.0.2"
        };
        let via = RouteAction::Via(vec![(ip(hop), port)]);
        b.add_route(ip("10.9.0.0"), 16, &via, false).unwrap();
        Arc::new(b.build().unwrap())
    }

    fn port_of(fib: &Fib, addr: u32) -> Option<u8> {
        match fib.v4.lookup(addr).and_then(|nh| fib.nexthop(nh)) {
            Some(crate::fib::NextHop::Forward { port, .. }) => Some(*port),
            _ => None,
        }
    }

    #[test]
    fn a_successor_shares_the_neighbour_table_and_the_reclamation_domain() {
        let a = fib_to(1, None);
        let b = fib_to(2, Some(&a));
        assert!(Arc::ptr_eq(a.neighbors(), b.neighbors()));
        assert!(Arc::ptr_eq(a.qsbr(), b.qsbr()));
        let fresh = fib_to(2, None);
        assert!(!Arc::ptr_eq(a.neighbors(), fresh.neighbors()));
    }

    #[test]
    fn readers_see_one_snapshot_or_the_next_and_the_old_one_is_freed_once_they_moved() {
        let first = fib_to(1, None);
        let slot = FibSlot::new(Arc::clone(&first));
        let stop = AtomicBool::new(false);
        let addr = u32::from_be_bytes([10, 9, 1, 1]);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut view = FibView::new(&slot);
                        let (mut seen, mut last) = (Vec::new(), None);
                        while !stop.load(Ordering::Relaxed) {
                            let p = port_of(view.get(), addr);
                            if p != last {
                                seen.push(p);
                                last = p;
                            }
                        }
                        // The view still holds the last snapshot here.
                        (seen, view)
                    })
                })
                .collect();
            let mut retired = Vec::new();
            let mut fib = first;
            for i in 0..200u32 {
                let next = fib_to(if i % 2 == 0 { 2 } else { 1 }, Some(&fib));
                retired.push(slot.replace(Arc::clone(&next)));
                fib = next;
                retire(&mut retired);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            stop.store(true, Ordering::Relaxed);
            for r in readers {
                let (seen, mut view) = r.join().unwrap();
                // Every answer belongs to a snapshot: port 1 or 2, never a half-built table.
                assert!(seen.iter().all(|p| matches!(p, Some(1 | 2))), "{seen:?}");
                // After the last replace the reader is on the last snapshot.
                assert!(std::ptr::eq(view.get(), &*fib));
            }
            // With every reader on the last snapshot, nothing replaced is held any more.
            assert_eq!(retire(&mut retired), 0);
            assert_eq!(Arc::strong_count(&fib), 2, "the slot and this test");
        });
    }
}
