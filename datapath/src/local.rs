//! The path between a worker and the control thread: frames addressed to the gateway itself
//! (ARP, NDP, ping, anything the pipeline calls `Local`) go up; frames the control thread
//! wants sent (ARP and NDP replies and requests, echo replies) come down and leave through the
//! worker's ports; workers ask for next hops to be resolved.
//!
//! Bounded lock-free queues (crossbeam `ArrayQueue`) and pools of frame buffers made once: a
//! worker never allocates or blocks here. What a flood at the gateway's addresses must not
//! starve has its own queue and buffers:
//! - ARP and NDP going up ([`LocalKind::Neighbor`]) have their own pool and queue, which the
//!   control thread serves before anything else;
//! - every other frame going up shares a second pool;
//! - frames coming down have a third, so the control thread can always answer and ask even
//!   while the up direction is full;
//! - resolve requests are addresses in a queue of their own, not frames.
//!
//! When a pool or queue is full a frame going up is dropped and counted (`local_queue_full`)
//! and a resolve request is shed and counted ([`LocalPath::resolve_shed`]); the worker also
//! rate-limits each kind before it gets here (`local_rate_limited`). The control thread is
//! slow by design and must not be able to stall forwarding.

use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest frame carried either way.
pub const FRAME_CAP: usize = 2048;

/// Which queue a frame for the gateway itself takes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    /// ARP, or ICMPv6 neighbour discovery (router and neighbour solicitations and
    /// advertisements, redirects): what keeps next hops resolved.
    Neighbor,
    /// Anything else (ping, ...).
    Other,
}

/// The kind of a frame going up, from its EtherType (after up to two VLAN tags) and, for
/// IPv6 without extension headers, the ICMPv6 type.
#[inline]
pub fn local_kind(frame: &[u8]) -> LocalKind {
    let mut off = 12;
    for _ in 0..3 {
        match frame.get(off..off + 2) {
            Some([0x81, 0x00] | [0x88, 0xa8]) => off += 4,
            Some([0x08, 0x06]) => return LocalKind::Neighbor,
            Some([0x86, 0xdd]) => {
                let ip = off + 2;
                let is_nd = frame.get(ip + 6) == Some(&58)
                    && frame.get(ip + 40).is_some_and(|t| (133..=137).contains(t));
                return if is_nd {
                    LocalKind::Neighbor
                } else {
                    LocalKind::Other
                };
            }
            _ => return LocalKind::Other,
        }
    }
    LocalKind::Other
}

const POOL_NEIGHBOR: u8 = 0;
const POOL_OTHER: u8 = 1;
const POOL_DOWN: u8 = 2;

/// One frame in flight between a worker and the control thread.
pub struct Frame {
    /// The port it came in on or must leave through.
    pub port: u8,
    pool: u8,
    len: u16,
    data: [u8; FRAME_CAP],
}

impl Frame {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

/// A pool of buffers and the queue they travel on.
struct Lane {
    free: ArrayQueue<Box<Frame>>,
    queue: ArrayQueue<Box<Frame>>,
}

impl Lane {
    fn new(capacity: usize, pool: u8) -> Lane {
        let lane = Lane {
            free: ArrayQueue::new(capacity),
            queue: ArrayQueue::new(capacity),
        };
        for _ in 0..capacity {
            let _ = lane.free.push(Box::new(Frame {
                port: 0,
                pool,
                len: 0,
                data: [0; FRAME_CAP],
            }));
        }
        lane
    }

    /// Takes a free buffer, fills its first `len` bytes with `fill`, and queues it. False
    /// when the frame is too large or no buffer is free.
    fn queue(&self, port: u8, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        if len > FRAME_CAP {
            return false;
        }
        let Some(mut f) = self.free.pop() else {
            return false;
        };
        f.port = port;
        f.len = len as u16;
        fill(&mut f.data[..len]);
        match self.queue.push(f) {
            Ok(()) => true,
            Err(f) => {
                let _ = self.free.push(f);
                false
            }
        }
    }
}

/// The queues between one worker and the control thread.
pub struct LocalPath {
    neighbor: Lane,
    other: Lane,
    down: Lane,
    resolve: ArrayQueue<(u128, u8)>,
    resolve_shed: AtomicU64,
}

impl LocalPath {
    /// A path with `capacity` frame buffers for each of its three lanes (neighbour discovery
    /// up, everything else up, down) and room for as many resolve requests, allocated now.
    pub fn new(capacity: usize) -> Arc<Self> {
        let capacity = capacity.max(1);
        Arc::new(LocalPath {
            neighbor: Lane::new(capacity, POOL_NEIGHBOR),
            other: Lane::new(capacity, POOL_OTHER),
            down: Lane::new(capacity, POOL_DOWN),
            resolve: ArrayQueue::new(capacity),
            resolve_shed: AtomicU64::new(0),
        })
    }

    /// Worker side: hands `bytes`, received on `port`, to the control thread, on the lane of
    /// its [`local_kind`]. False when that lane has no free buffer or the frame is too large
    /// (the caller counts the drop).
    pub fn hand_up(&self, port: u8, bytes: &[u8]) -> bool {
        self.hand_up_as(local_kind(bytes), port, bytes)
    }

    /// [`LocalPath::hand_up`] for a frame whose kind the caller already knows.
    pub fn hand_up_as(&self, kind: LocalKind, port: u8, bytes: &[u8]) -> bool {
        let lane = match kind {
            LocalKind::Neighbor => &self.neighbor,
            LocalKind::Other => &self.other,
        };
        lane.queue(port, bytes.len(), |d| d.copy_from_slice(bytes))
    }

    /// Worker side: asks the control thread to resolve `addr` ([`crate::fib::ip_key`]) on
    /// `port` (a packet toward it was just dropped as unresolved). False, and counted in
    /// [`LocalPath::resolve_shed`], when the queue is full; the next packet asks again.
    pub fn request_resolve(&self, port: u8, addr: u128) -> bool {
        let ok = self.resolve.push((addr, port)).is_ok();
        if !ok {
            self.shed_resolve();
        }
        ok
    }

    /// Counts a resolve request that was not queued (full queue, or the worker's rate limit).
    pub fn shed_resolve(&self) {
        self.resolve_shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Resolve requests shed so far.
    pub fn resolve_shed(&self) -> u64 {
        self.resolve_shed.load(Ordering::Relaxed)
    }

    /// Control side: the next ARP or NDP frame handed up.
    pub fn take_up_neighbor(&self) -> Option<Box<Frame>> {
        self.neighbor.queue.pop()
    }

    /// Control side: the next other frame handed up.
    pub fn take_up_other(&self) -> Option<Box<Frame>> {
        self.other.queue.pop()
    }

    /// Control side: the next frame handed up, neighbour discovery first.
    pub fn take_up(&self) -> Option<Box<Frame>> {
        self.take_up_neighbor().or_else(|| self.take_up_other())
    }

    /// Control side: the next resolve request: the address and the port to ask on.
    pub fn take_resolve(&self) -> Option<(u128, u8)> {
        self.resolve.pop()
    }

    /// Control side: queues a frame of `len` bytes, written by `fill`, to leave through
    /// `port`. False when no buffer is free (the frame is not sent).
    pub fn send_down(&self, port: u8, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        self.down.queue(port, len, fill)
    }

    /// Worker side: true when frames wait to be sent (one atomic load).
    pub fn has_down(&self) -> bool {
        !self.down.queue.is_empty()
    }

    /// Worker side: the next frame to send.
    pub fn take_down(&self) -> Option<Box<Frame>> {
        self.down.queue.pop()
    }

    /// Either side: returns a frame's buffer to its pool.
    pub fn recycle(&self, f: Box<Frame>) {
        let lane = match f.pool {
            POOL_NEIGHBOR => &self.neighbor,
            POOL_OTHER => &self.other,
            _ => &self.down,
        };
        let _ = lane.free.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: [u8; 14] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 9, 0x08, 0x06,
    ];

    fn ping() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x08, 0x00];
        f.extend([0x45; 20]);
        f
    }

    #[test]
    fn frames_go_up_and_down_and_the_pools_bound_them() {
        let p = LocalPath::new(2);
        assert!(p.hand_up(1, &ping()));
        assert!(p.hand_up(0, &ping()));
        // The pool is empty: the third frame is refused, not queued without bound.
        assert!(!p.hand_up(0, &ping()));
        let f = p.take_up().unwrap();
        assert_eq!((f.port, f.bytes()), (1, &ping()[..]));
        p.recycle(f);
        assert!(p.send_down(3, 4, |b| b.copy_from_slice(b"wxyz")));
        assert!(p.has_down());
        let d = p.take_down().unwrap();
        assert_eq!((d.port, d.bytes()), (3, &b"wxyz"[..]));
        assert!(!p.has_down());
        assert!(!p.hand_up(0, &[0; FRAME_CAP + 1]));
    }

    #[test]
    fn a_flood_of_other_frames_leaves_arp_and_the_down_lane_their_buffers() {
        let p = LocalPath::new(4);
        // Pings fill the up direction.
        while p.hand_up(0, &ping()) {}
        // ARP still goes up, and is served first; the control thread can still send.
        assert!(p.hand_up(0, &ARP));
        assert!(p.send_down(0, 60, |b| b.fill(0)));
        assert_eq!(p.take_up().unwrap().bytes(), &ARP[..]);
        assert!(p.request_resolve(1, 42));
        assert_eq!(p.take_resolve(), Some((42, 1)));
        for _ in 0..4 {
            p.request_resolve(1, 42);
        }
        assert!(!p.request_resolve(1, 43));
        assert_eq!(p.resolve_shed(), 1);
    }

    #[test]
    fn kinds_are_told_apart_through_vlan_tags_and_by_icmpv6_type() {
        assert_eq!(local_kind(&ARP), LocalKind::Neighbor);
        let mut tagged = ARP[..12].to_vec();
        tagged.extend([0x81, 0x00, 0, 5, 0x08, 0x06]);
        assert_eq!(local_kind(&tagged), LocalKind::Neighbor);
        let mut v6 = ARP[..12].to_vec();
        v6.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255]);
        v6.extend([0; 32]);
        v6.push(135);
        assert_eq!(local_kind(&v6), LocalKind::Neighbor);
        *v6.last_mut().unwrap() = 128; // echo request
        assert_eq!(local_kind(&v6), LocalKind::Other);
        assert_eq!(local_kind(&ping()), LocalKind::Other);
        for n in 0..ARP.len() {
            local_kind(&ARP[..n]);
        }
    }
}
