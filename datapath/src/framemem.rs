//! Frame memory: where a batch's frames live while the worker processes them.
//!
//! A frame is processed where the port put it. A [`Region`] names a span of memory that one
//! holder may read and write: a buffer's own allocation ([`Home`]), a chunk of a worker's
//! [`FrameMemory`] (the AF_XDP UMEM its sockets share), or a slot of a port's mapped ring.
//! Creating a region is `unsafe` (the creator vouches for the span and for who holds it);
//! reading and writing through one is safe and bounds-checked against its capacity.
//!
//! This module sits below both the pipeline and the port backends, like [`crate::hugemem`]:
//! it is the other place outside port backends where `unsafe` lives, each block with the
//! check that justifies it.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// A span of frame memory one holder may read and write: `cap` bytes at `ptr`.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: a region is an address and a length; who may touch the bytes is the holder's
// contract (see `Region::new`), not the thread's.
unsafe impl Send for Region {}

impl Region {
    /// A region of `cap` bytes at `ptr`.
    ///
    /// # Safety
    /// The span must be valid for reads and writes, must stay so while any holder of the
    /// region (or a copy of it) may use it, and nothing else may read or write it meanwhile.
    pub unsafe fn new(ptr: NonNull<u8>, cap: usize) -> Region {
        Region { ptr, cap }
    }

    /// The region's capacity in bytes.
    #[inline]
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The region's start address (to compare regions, never to dereference).
    #[inline]
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Bytes `off..off + len`; empty when the range leaves the region.
    #[inline]
    pub fn bytes(&self, off: usize, len: usize) -> &[u8] {
        if off.checked_add(len).is_none_or(|e| e > self.cap) {
            return &[];
        }
        // SAFETY: the range lies inside the region (checked), which `Region::new`'s contract
        // makes valid and ours while the region is held.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) }
    }

    /// Bytes `off..off + len`, writable; empty when the range leaves the region.
    #[inline]
    pub fn bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        if off.checked_add(len).is_none_or(|e| e > self.cap) {
            return &mut [];
        }
        // SAFETY: as in `bytes`, and `&mut self` keeps this the only view made through it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(off), len) }
    }
}

/// A frame inside a region: `len` bytes at offset `off`, with `off + len` never past the
/// region's capacity (every constructor and setter keeps that), so reading the frame needs no
/// bounds check.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    at: Region,
    off: usize,
    len: usize,
}

impl Span {
    /// `len` bytes at `off` of `at`, or `None` when they leave it.
    #[inline]
    pub fn new(at: Region, off: usize, len: usize) -> Option<Span> {
        off.checked_add(len)
            .is_some_and(|e| e <= at.cap)
            .then_some(Span { at, off, len })
    }

    /// The region the frame is in.
    #[inline]
    pub fn region(&self) -> Region {
        self.at
    }

    /// The frame's offset in its region.
    #[inline]
    pub fn off(&self) -> usize {
        self.off
    }

    /// The frame's length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the frame is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `off + len <= cap` (the type's invariant), inside a region that
        // `Region::new`'s contract makes valid and ours while it is held.
        unsafe { std::slice::from_raw_parts(self.at.ptr.as_ptr().add(self.off), self.len) }
    }

    /// The frame's bytes, writable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` keeps this the only view made through it.
        unsafe { std::slice::from_raw_parts_mut(self.at.ptr.as_ptr().add(self.off), self.len) }
    }

    /// Moves the start by `delta` bytes and sets the length; false, changing nothing, when
    /// the result would leave the region.
    #[inline]
    pub fn reframe(&mut self, delta: isize, len: usize) -> bool {
        match self.off.checked_add_signed(delta) {
            Some(off) if off.checked_add(len).is_some_and(|e| e <= self.at.cap) => {
                self.off = off;
                self.len = len;
                true
            }
            _ => false,
        }
    }

    /// Shortens the frame to at most `len` bytes.
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// A buffer's own allocation, freed when dropped.
pub struct Home {
    region: Region,
}

impl Home {
    /// `cap` zeroed bytes on the heap.
    pub fn new(cap: usize) -> Home {
        let raw = Box::into_raw(vec![0u8; cap.max(1)].into_boxed_slice());
        // SAFETY: `Box::into_raw` never returns null.
        let ptr = unsafe { NonNull::new_unchecked(raw.cast::<u8>()) };
        // SAFETY: the allocation is ours alone until `drop` frees it.
        Home {
            region: unsafe { Region::new(ptr, cap.max(1)) },
        }
    }

    /// The allocation as a region (valid while this `Home` lives).
    pub fn region(&self) -> Region {
        self.region
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.region.ptr.as_ptr(), self.region.cap);
        // SAFETY: rebuilds the box `Home::new` leaked, exactly once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

// SAFETY: the allocation is owned; moving a `Home` moves the ownership.
unsafe impl Send for Home {}

/// A worker's frame memory: `frames` chunks of `chunk` bytes in one anonymous mapping, which
/// its AF_XDP sockets register as their shared UMEM. Chunks are named by their offset.
pub struct FrameMemory {
    ptr: NonNull<u8>,
    len: usize,
    chunk: usize,
    /// Chunks not yet handed out: ports take their fill-ring share when they open; the
    /// worker's batch takes the rest.
    unclaimed: Mutex<Vec<u64>>,
    /// The socket that registered the memory, which the others name to share it.
    registered: Mutex<Option<Arc<OwnedFd>>>,
}

// SAFETY: the mapping lives until drop. Each chunk has one holder at a time (a ring, a batch
// buffer or a free list), and only the holder touches its bytes; the bookkeeping is behind
// mutexes used at setup only.
unsafe impl Send for FrameMemory {}
// SAFETY: as above.
unsafe impl Sync for FrameMemory {}

impl FrameMemory {
    /// Maps `frames` chunks of `chunk` bytes (a power of two), populated now.
    ///
    /// # Errors
    /// The mapping failed.
    pub fn new(frames: usize, chunk: usize) -> io::Result<Arc<FrameMemory>> {
        if !chunk.is_power_of_two() || frames == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let len = frames
            .checked_mul(chunk)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: anonymous private mapping; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap"))?;
        let unclaimed = (0..frames as u64).rev().map(|i| i * chunk as u64).collect();
        Ok(Arc::new(FrameMemory {
            ptr,
            len,
            chunk,
            unclaimed: Mutex::new(unclaimed),
            registered: Mutex::new(None),
        }))
    }

    /// The mapping's start address and length (for the UMEM registration).
    pub fn span(&self) -> (u64, usize) {
        (self.ptr.as_ptr() as u64, self.len)
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// Total chunks.
    pub fn frames(&self) -> usize {
        self.len / self.chunk
    }

    /// The chunk at `addr` rounded down to its chunk, or `None` outside the mapping.
    #[inline]
    pub fn chunk_of(&self, addr: u64) -> Option<u64> {
        (addr < self.len as u64).then(|| addr & !(self.chunk as u64 - 1))
    }

    /// The chunk `chunk` as a region.
    ///
    /// # Safety
    /// The caller holds the chunk: the kernel handed it over through a ring, or it came off
    /// a free list, and no one else uses it until the caller gives it back.
    #[inline]
    pub unsafe fn region(&self, chunk: u64) -> Option<Region> {
        if !chunk.is_multiple_of(self.chunk as u64) || chunk >= self.len as u64 {
            return None;
        }
        // SAFETY: the chunk lies inside the mapping (checked); the caller holds it.
        Some(unsafe {
            Region::new(
                NonNull::new_unchecked(self.ptr.as_ptr().add(chunk as usize)),
                self.chunk,
            )
        })
    }

    /// Whether `r` is exactly the region of chunk `chunk` (a frame still where the port put
    /// it, not moved to a buffer's own memory).
    #[inline]
    pub fn is_chunk(&self, r: &Region, chunk: u64) -> bool {
        r.addr() == self.ptr.as_ptr() as usize + chunk as usize && r.cap == self.chunk
    }

    /// Takes up to `n` chunks not yet handed out.
    pub fn claim(&self, n: usize) -> Vec<u64> {
        let mut u = self.unclaimed.lock().unwrap_or_else(|e| e.into_inner());
        let at = u.len().saturating_sub(n);
        u.split_off(at)
    }

    /// The socket that registered the memory, if one has.
    pub fn registered(&self) -> Option<Arc<OwnedFd>> {
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records `fd` as the registering socket, unless one is already recorded.
    pub fn set_registered(&self, fd: &Arc<OwnedFd>) {
        let mut r = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(Arc::clone(fd));
        }
    }
}

impl Drop for FrameMemory {
    fn drop(&mut self) {
        // The registering socket closes first; the kernel keeps its own pin on the pages
        // until the last socket sharing them is gone.
        drop(self.registered.get_mut().map(Option::take));
        // SAFETY: unmaps exactly the mapping `FrameMemory::new` made; no region of it is
        // used after the memory is dropped (holders keep an `Arc` to it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn regions_are_bounded() {
        let h = Home::new(64);
        let mut r = h.region();
        r.bytes_mut(0, 4).copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(r.bytes(1, 2), &[2, 3]);
        assert!(r.bytes(60, 5).is_empty());
        assert!(r.bytes_mut(usize::MAX, 2).is_empty());
    }

    #[test]
    fn chunks_are_claimed_once() {
        let m = FrameMemory::new(8, 2048).unwrap();
        let a = m.claim(5);
        let b = m.claim(5);
        assert_eq!((a.len(), b.len()), (5, 3));
        let mut all: Vec<u64> = a.into_iter().chain(b).collect();
        all.sort();
        assert_eq!(all, (0..8).map(|i| i * 2048).collect::<Vec<_>>());
        assert_eq!(m.chunk_of(2048 + 300), Some(2048));
        assert_eq!(m.chunk_of(8 * 2048), None);
        // SAFETY: a test holding every chunk.
        let r = unsafe { m.region(4096) }.unwrap();
        assert!(m.is_chunk(&r, 4096));
        assert!(!m.is_chunk(&r, 2048));
        // SAFETY: as above.
        assert!(unsafe { m.region(100) }.is_none());
    }
}
