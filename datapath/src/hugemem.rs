//! Large zeroed arrays mapped straight from the kernel and advised for transparent huge pages.
//!
//! Port backends need kernel-mapped memory (the AF_XDP UMEM), and the route tables need large
//! arrays read at random by every packet: on 4 KiB pages a 64 MiB first level costs a TLB miss
//! per lookup. THP is `madvise`-only on these machines, so the mapping is 2 MiB aligned and
//! advised `MADV_HUGEPAGE`; where the kernel declines, ordinary pages are used and nothing
//! else changes. Pages come zeroed and are touched lazily, so creating a table costs no memset.
//!
//! It sits below the route tables and the ports, which both use it, so that neither imports
//! the other. It is the one place outside the port backends where `unsafe` is allowed; every
//! block names what justifies it.

#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

const HUGE_PAGE: usize = 2 << 20;

/// A zero-initialised array of `AtomicU32` in its own anonymous mapping.
pub struct HugeAtomics {
    ptr: NonNull<AtomicU32>,
    len: usize,
    map: NonNull<libc::c_void>,
    map_len: usize,
}

// SAFETY: the mapping is owned by this value alone and only reached through `&[AtomicU32]`,
// whose elements are `Sync`; moving the owner to another thread moves nothing shared.
unsafe impl Send for HugeAtomics {}
// SAFETY: shared access only ever yields `&[AtomicU32]`, which is safe to share between threads.
unsafe impl Sync for HugeAtomics {}

impl HugeAtomics {
    /// Maps `len` zeroed atomics; `None` when the kernel refuses the mapping (out of memory).
    pub fn zeroed(len: usize) -> Option<Self> {
        let bytes = len.checked_mul(4)?.max(4);
        let map_len = bytes.checked_add(HUGE_PAGE)?;
        // SAFETY: an anonymous private mapping with no address hint and no file; the result
        // is checked against MAP_FAILED before use.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let map = NonNull::new(map)?;
        let offset = (HUGE_PAGE - (map.as_ptr() as usize % HUGE_PAGE)) % HUGE_PAGE;
        // SAFETY: `offset < HUGE_PAGE` and the mapping is `bytes + HUGE_PAGE` long, so the
        // aligned start and the `bytes` after it lie inside the mapping.
        let start = unsafe { map.as_ptr().cast::<u8>().add(offset) };
        // SAFETY: advice on a range inside our own mapping; failure only means no huge pages.
        unsafe {
            libc::madvise(start.cast(), bytes, libc::MADV_HUGEPAGE);
        }
        Some(HugeAtomics {
            ptr: NonNull::new(start.cast::<AtomicU32>())?,
            len,
            map,
            map_len,
        })
    }

    /// The array.
    #[inline]
    pub fn as_slice(&self) -> &[AtomicU32] {
        // SAFETY: `ptr` is 2 MiB aligned (so aligned for `AtomicU32`), points at `len * 4`
        // bytes inside a live read-write mapping owned by `self`, zero-filled by the kernel,
        // and all-zero bytes are a valid `AtomicU32`. The slice borrows `self`, so it cannot
        // outlive the mapping, and it is only ever accessed atomically.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Hints the CPU to bring the cache line of element `i` into all cache levels. A hint only:
    /// it reads nothing, cannot fault, and an index past the end is ignored. Bulk route
    /// lookups issue these for a whole batch first, so the batch's cache misses overlap
    /// without each waiting load holding a slot in the reorder window.
    #[inline(always)]
    pub fn prefetch(&self, i: usize) {
        if i < self.len {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: PREFETCHT0 is a hint that never faults and touches no architectural
            // state; the intrinsic is unsafe only because it is declared with the `sse`
            // target feature, which every x86_64 target has. The address is inside the
            // mapping (`i < len`), though that is not even required for a prefetch.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    self.ptr.as_ptr().wrapping_add(i).cast::<i8>(),
                );
            }
        }
    }

    /// Bytes mapped.
    pub fn mapped_bytes(&self) -> usize {
        self.map_len
    }
}

impl Drop for HugeAtomics {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `zeroed`; no borrow of it can be alive
        // because `as_slice` borrows `self`.
        unsafe {
            libc::munmap(self.map.as_ptr(), self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn mapping_is_zeroed_writable_and_aligned() {
        let a = HugeAtomics::zeroed(1 << 20).unwrap();
        let s = a.as_slice();
        assert_eq!(s.len(), 1 << 20);
        assert_eq!(s.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(s
            .iter()
            .step_by(4096)
            .all(|x| x.load(Ordering::Relaxed) == 0));
        s[12345].store(7, Ordering::Relaxed);
        assert_eq!(s[12345].load(Ordering::Relaxed), 7);
    }
}
