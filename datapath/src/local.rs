//! The path between a worker and the control thread: frames addressed to the gateway itself
//! (ARP, NDP, ping, anything the pipeline calls `Local`) go up; frames the control thread
//! wants sent (ARP and NDP replies and requests, echo replies) come down and leave through the
//! worker's ports.
//!
//! Three bounded lock-free queues (crossbeam `ArrayQueue`) and a pool of frame buffers made
//! once: a worker never allocates or blocks here. When the pool is empty a frame going up is
//! dropped and counted (`local_queue_full`); the control thread is slow by design and must not
//! be able to stall forwarding.

use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// Largest frame carried either way.
pub const FRAME_CAP: usize = 2048;

/// One frame in flight between a worker and the control thread.
pub struct Frame {
    /// The port it came in on or must leave through.
    pub port: u8,
    /// Not a frame: a request to resolve the neighbour whose address ([`crate::fib::ip_key`])
    /// is [`Frame::resolve_addr`], on `port`.
    pub resolve: bool,
    len: u16,
    data: [u8; FRAME_CAP],
}

impl Frame {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }

    /// The address of a resolve request.
    pub fn resolve_addr(&self) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.data[..16]);
        u128::from_be_bytes(b)
    }
}

/// The queues between one worker and the control thread.
pub struct LocalPath {
    free: ArrayQueue<Box<Frame>>,
    up: ArrayQueue<Box<Frame>>,
    down: ArrayQueue<Box<Frame>>,
}

impl LocalPath {
    /// A path with `capacity` frame buffers, allocated now.
    pub fn new(capacity: usize) -> Arc<Self> {
        let capacity = capacity.max(1);
        let path = LocalPath {
            free: ArrayQueue::new(capacity),
            up: ArrayQueue::new(capacity),
            down: ArrayQueue::new(capacity),
        };
        for _ in 0..capacity {
            let _ = path.free.push(Box::new(Frame {
                port: 0,
                resolve: false,
                len: 0,
                data: [0; FRAME_CAP],
            }));
        }
        Arc::new(path)
    }

    /// Takes a free buffer, fills its first `len` bytes with `fill`, and queues it on `q`.
    /// False when no buffer is free or `q` is full (the buffer goes back to the pool).
    fn queue(
        &self,
        q: &ArrayQueue<Box<Frame>>,
        port: u8,
        resolve: bool,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> bool {
        if len > FRAME_CAP {
            return false;
        }
        let Some(mut f) = self.free.pop() else {
            return false;
        };
        f.port = port;
        f.resolve = resolve;
        f.len = len as u16;
        fill(&mut f.data[..len]);
        match q.push(f) {
            Ok(()) => true,
            Err(f) => {
                let _ = self.free.push(f);
                false
            }
        }
    }

    /// Worker side: hands `bytes`, received on `port`, to the control thread. False when no
    /// buffer is free or the frame is too large (the caller counts the drop).
    pub fn hand_up(&self, port: u8, bytes: &[u8]) -> bool {
        self.queue(&self.up, port, false, bytes.len(), |d| {
            d.copy_from_slice(bytes)
        })
    }

    /// Worker side: asks the control thread to resolve `addr` on `port` (a packet toward it
    /// was just dropped as unresolved). False when no buffer is free; the next packet asks
    /// again.
    pub fn request_resolve(&self, port: u8, addr: u128) -> bool {
        self.queue(&self.up, port, true, 16, |d| {
            d.copy_from_slice(&addr.to_be_bytes())
        })
    }

    /// Control side: the next frame handed up.
    pub fn take_up(&self) -> Option<Box<Frame>> {
        self.up.pop()
    }

    /// Control side: queues a frame of `len` bytes, written by `fill`, to leave through
    /// `port`. False when no buffer is free (the frame is not sent).
    pub fn send_down(&self, port: u8, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        self.queue(&self.down, port, false, len, fill)
    }

    /// Worker side: true when frames wait to be sent (one atomic load).
    pub fn has_down(&self) -> bool {
        !self.down.is_empty()
    }

    /// Worker side: the next frame to send.
    pub fn take_down(&self) -> Option<Box<Frame>> {
        self.down.pop()
    }

    /// Either side: returns a frame's buffer to the pool.
    pub fn recycle(&self, f: Box<Frame>) {
        let _ = self.free.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_up_and_down_and_the_pool_bounds_them() {
        let p = LocalPath::new(2);
        assert!(p.hand_up(1, b"abc"));
        assert!(p.hand_up(0, b"de"));
        // The pool is empty: the third frame is refused, not queued without bound.
        assert!(!p.hand_up(0, b"f"));
        let f = p.take_up().unwrap();
        assert_eq!((f.port, f.bytes()), (1, &b"abc"[..]));
        p.recycle(f);
        assert!(p.send_down(3, 4, |b| b.copy_from_slice(b"wxyz")));
        assert!(p.has_down());
        let d = p.take_down().unwrap();
        assert_eq!((d.port, d.bytes()), (3, &b"wxyz"[..]));
        assert!(!p.has_down());
        assert!(!p.hand_up(0, &[0; FRAME_CAP + 1]));
    }
}
