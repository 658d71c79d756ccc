//! The bulk lookups on AVX-512: sixteen addresses a step, each level of the trie read with one
//! gather, as DPDK's `rte_fib` and `rte_fib6` do on the same CPUs (their AVX-512 lookups were
//! 1.1–1.4 times our portable bulk lookup for IPv4 and 1.5 times for IPv6's hot set,
//! BENCHMARKS.md). Chosen at run time; machines without AVX-512F, or with [`SWITCH`] set to
//! `off`, take the portable paths in [`super::table`].
//!
//! The gathers are written in inline assembly rather than with the gather intrinsics: the
//! writer stores entries atomically while workers read them, and an intrinsic is a plain
//! (non-atomic) read to the compiler, where an `asm!` block is opaque code that the hardware
//! executes as sixteen aligned 32-bit loads, each atomic on x86 and each ordered after the
//! loads before it (x86 loads are acquire loads), which is what [`super::table`]'s readers
//! rely on.

// Gathers and vector loads of caller memory: each block says which bound keeps it inside.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use super::table::{EXT, GROUP_LEN, INDEX_MASK, TBL24_LEN, VALID};
#[cfg(target_arch = "x86_64")]
use super::NO_ROUTE;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// The environment variable that turns the vector path off (`GATEWAY_LPM_VECTOR=off`): on
/// Intel CPUs whose microcode mitigates Gather Data Sampling a gather is several times
/// slower, and the portable path may then be faster; benches also use it to alternate the
/// two paths in one run.
pub const SWITCH: &str = "GATEWAY_LPM_VECTOR";

/// 0: not yet decided; 1: the vector path runs; 2: it does not.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether the vector paths run: the CPU has AVX-512F and [`SWITCH`] is not `off`. Decided
/// once per process.
#[inline]
pub fn available() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var_os(SWITCH).is_none_or(|v| v != "off") && cpu_has_it();
            STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

fn cpu_has_it() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Looks up the longest whole multiple of 16 addresses of `addrs` into `out` on AVX-512 and
/// returns how many it did: 0 on a CPU without it, where the caller's portable path does all.
/// `level0` must be the trie's first level and `groups` its groups.
#[inline]
pub fn lookup4(
    level0: &[AtomicU32],
    groups: &[AtomicU32],
    addrs: &[u32],
    out: &mut [u32],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if available() && level0.len() == TBL24_LEN {
        // SAFETY: the CPU has AVX-512F (checked just above), and `level0` holds the 2^24
        // entries that a 24-bit index needs.
        return unsafe { lookup4_avx512(level0, groups, addrs, out) };
    }
    let _ = (level0, groups, addrs, out);
    0
}

/// [`lookup4`] for IPv6: whole sixteens of `addrs`, walked level by level with one gather a
/// level for every lane still on an extended entry; returns how many it did (0 without
/// AVX-512F).
#[inline]
pub fn lookup6(
    level0: &[AtomicU32],
    groups: &[AtomicU32],
    addrs: &[u128],
    out: &mut [u32],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if available() && level0.len() == TBL24_LEN {
        // SAFETY: the CPU has AVX-512F (checked just above), and `level0` holds the 2^24
        // entries that a 24-bit index needs.
        return unsafe { lookup6_avx512(level0, groups, addrs, out) };
    }
    let _ = (level0, groups, addrs, out);
    0
}

/// Gathers `base[idx[k]]` into the lanes `k` set in `mask`; the other lanes keep `src`.
///
/// # Safety
/// The CPU has AVX-512F, and every index of a lane set in `mask` is within the allocation at
/// `base`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn gather(
    base: *const u32,
    idx: std::arch::x86_64::__m512i,
    mask: u16,
    src: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    let mut dst = src;
    // SAFETY: the caller keeps every selected index inside `base`'s allocation (see above);
    // the instruction only reads, at 4-byte aligned addresses (u32 and `AtomicU32`
    // elements), and clears the mask register it is given, which is a discarded copy.
    unsafe {
        std::arch::asm!(
            "vpgatherdd {dst}{{{k}}}, dword ptr [{base} + {idx}*4]",
            base = in(reg) base,
            idx = in(zmm_reg) idx,
            k = inout(kreg) mask => _,
            dst = inout(zmm_reg) dst,
            options(nostack, preserves_flags, readonly),
        );
    }
    dst
}

/// [`lookup4`]'s vector path.
///
/// # Safety
/// The CPU has AVX-512F, and `level0` has [`TBL24_LEN`] entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lookup4_avx512(
    level0: &[AtomicU32],
    groups: &[AtomicU32],
    addrs: &[u32],
    out: &mut [u32],
) -> usize {
    use std::arch::x86_64::*;
    let n = addrs.len().min(out.len()) / 16 * 16;
    let ext = _mm512_set1_epi32(EXT as i32);
    let valid = _mm512_set1_epi32(VALID as i32);
    let index = _mm512_set1_epi32(INDEX_MASK as i32);
    let low = _mm512_set1_epi32(0xff);
    let miss = _mm512_set1_epi32(NO_ROUTE as i32);
    let zero = _mm512_setzero_si512();
    // Groups whose every entry lies inside `groups`: an extended entry naming another reads
    // as 0 (no route), as the portable path's bounds-checked read does.
    let whole = _mm512_set1_epi32((groups.len() / GROUP_LEN).min(INDEX_MASK as usize + 1) as i32);
    let mut i = 0;
    while i < n {
        // SAFETY: `i + 16 <= n <= addrs.len()`: sixteen u32 inside `addrs`, read unaligned.
        let a = unsafe { _mm512_loadu_si512(addrs.as_ptr().add(i).cast()) };
        // SAFETY: an address shifted right by 8 is below 2^24 = `level0.len()`.
        let e = unsafe {
            gather(
                level0.as_ptr().cast(),
                _mm512_srli_epi32::<8>(a),
                0xffff,
                zero,
            )
        };
        let x = _mm512_test_epi32_mask(e, ext);
        let e = if x == 0 {
            e
        } else {
            let g = _mm512_and_si512(e, index);
            let inside = x & _mm512_cmplt_epu32_mask(g, whole);
            let at = _mm512_or_si512(_mm512_slli_epi32::<8>(g), _mm512_and_si512(a, low));
            // SAFETY: the selected lanes name a group below `whole`, and a group's 256
            // entries then lie inside `groups`; `g << 8` cannot wrap, as `g` < 2^21.
            unsafe {
                gather(
                    groups.as_ptr().cast(),
                    at,
                    inside,
                    _mm512_mask_mov_epi32(e, x, zero),
                )
            }
        };
        let found = _mm512_test_epi32_mask(e, valid);
        let r = _mm512_mask_mov_epi32(miss, found, _mm512_and_si512(e, index));
        // SAFETY: `i + 16 <= n <= out.len()`: sixteen u32 inside `out`, written unaligned.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), r) };
        i += 16;
    }
    n
}

/// [`lookup6`]'s vector path.
///
/// # Safety
/// The CPU has AVX-512F, and `level0` has [`TBL24_LEN`] entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lookup6_avx512(
    level0: &[AtomicU32],
    groups: &[AtomicU32],
    addrs: &[u128],
    out: &mut [u32],
) -> usize {
    use super::table::MAX_LEVELS;
    use std::arch::x86_64::*;
    let n = addrs.len().min(out.len()) / 16 * 16;
    let ext = _mm512_set1_epi32(EXT as i32);
    let valid = _mm512_set1_epi32(VALID as i32);
    let index = _mm512_set1_epi32(INDEX_MASK as i32);
    let low = _mm512_set1_epi32(0xff);
    let miss = _mm512_set1_epi32(NO_ROUTE as i32);
    let zero = _mm512_setzero_si512();
    let whole = _mm512_set1_epi32((groups.len() / GROUP_LEN).min(INDEX_MASK as usize + 1) as i32);
    // Lane k's 32-bit word w of a u128 (little-endian: word 3 holds the top bits) is u32
    // number 4k + w from the sixteen's start.
    let lanes = _mm512_set_epi32(60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
    let mut i = 0;
    while i < n {
        let base = addrs[i..].as_ptr().cast::<u32>();
        // words[w]: word w of every lane's address.
        let mut words = [zero; 4];
        for (w, v) in words.iter_mut().enumerate() {
            let idx = _mm512_add_epi32(lanes, _mm512_set1_epi32(w as i32));
            // SAFETY: `i + 16 <= n <= addrs.len()`, so the sixteen u128 from `base` (64 u32)
            // are inside `addrs`, and every index is below 64.
            *v = unsafe { gather(base, idx, 0xffff, zero) };
        }
        // SAFETY: the top 32 bits shifted right by 8 are below 2^24 = `level0.len()`.
        let mut e = unsafe {
            gather(
                level0.as_ptr().cast(),
                _mm512_srli_epi32::<8>(words[3]),
                0xffff,
                zero,
            )
        };
        let mut x = _mm512_test_epi32_mask(e, ext);
        // Level k (1-based) indexes its group with the address byte at bit 128 - 8 (k + 3).
        let mut level = 1;
        while x != 0 && level <= MAX_LEVELS {
            let shift = 128 - 8 * (level as u32 + 3);
            let byte = _mm512_and_si512(
                _mm512_srlv_epi32(
                    words[(shift / 32) as usize],
                    _mm512_set1_epi32((shift % 32) as i32),
                ),
                low,
            );
            let g = _mm512_and_si512(e, index);
            let inside = x & _mm512_cmplt_epu32_mask(g, whole);
            let at = _mm512_or_si512(_mm512_slli_epi32::<8>(g), byte);
            // SAFETY: the selected lanes name a group below `whole`, whose 256 entries lie
            // inside `groups`; `g << 8` cannot wrap, as `g` < 2^21.
            e = unsafe {
                gather(
                    groups.as_ptr().cast(),
                    at,
                    inside,
                    _mm512_mask_mov_epi32(e, x, zero),
                )
            };
            x = _mm512_test_epi32_mask(e, ext);
            level += 1;
        }
        let found = _mm512_test_epi32_mask(e, valid);
        let r = _mm512_mask_mov_epi32(miss, found, _mm512_and_si512(e, index));
        // SAFETY: `i + 16 <= n <= out.len()`: sixteen u32 inside `out`, written unaligned.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), r) };
        i += 16;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::super::table::{ext, Trie};
    use super::super::{Lpm4Table, Lpm6Table, NO_ROUTE};
    use std::sync::Arc;

    /// An extended entry naming a group past the table reads as no route on both paths,
    /// whatever its lane, instead of gathering outside the mapping.
    #[test]
    fn a_group_past_the_table_reads_as_no_route() {
        let trie = Trie::new(4).unwrap();
        trie.store_top(0x0a_00_00, ext(4));
        trie.store_top(0x0a_00_01, ext((1 << 21) - 1));
        let t = Lpm4Table(Arc::new(trie));
        let addrs: Vec<u32> = (0..32u32).map(|i| 0x0a00_0000 | (i << 4)).collect();
        let (mut v, mut p) = ([7u32; 32], [7u32; 32]);
        t.lookup_bulk(&addrs, &mut v);
        t.lookup_bulk_portable(&addrs, &mut p);
        assert_eq!(v, [NO_ROUTE; 32]);
        assert_eq!(p, [NO_ROUTE; 32]);
    }

    #[test]
    fn an_ipv6_group_past_the_table_reads_as_no_route() {
        let trie = Trie::new(4).unwrap();
        trie.store_top(0x20_01_0d, ext(4));
        trie.store_top(0x20_01_0e, ext((1 << 21) - 1));
        let t = Lpm6Table(Arc::new(trie));
        let addrs: Vec<u128> = (0..32u128)
            .map(|i| (0x2001_0d00u128 << 96) + (i << 100) + i)
            .collect();
        let (mut v, mut p) = ([7u32; 32], [7u32; 32]);
        t.lookup_bulk(&addrs, &mut v);
        t.lookup_bulk_portable(&addrs, &mut p);
        assert_eq!(v, [NO_ROUTE; 32]);
        assert_eq!(p, [NO_ROUTE; 32]);
    }
}
