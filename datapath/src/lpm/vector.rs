//! The bulk lookups on AVX-512: sixteen addresses a step, each level of the trie read with
//! one gather, as DPDK's `rte_fib` does on the same CPUs. Chosen at run time; machines without
//! AVX-512F, or with [`SWITCH`] set to `off`, take the portable paths in [`super::table`].
//!
//! IPv6 walks two sixteens together, so that each level's two gathers are in flight at once.
//! It wins where the table's lines are cached (a hot set) and loses to the portable
//! level-by-level walk where most loads miss, so [`super::table`] times both on live traffic
//! and runs the faster ([`measured`]).
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

/// The environment variable that chooses the vector paths: `off` turns them off (on Intel
/// CPUs whose microcode mitigates Gather Data Sampling a gather is several times slower, and
/// the portable paths may then be faster); `on` runs them always, without the IPv6 timing
/// ([`measured`]), for benches that alternate the paths or need a deterministic count.
/// Unset (or anything else), they run where the CPU has AVX-512F, IPv6 by measurement.
pub const SWITCH: &str = "GATEWAY_LPM_VECTOR";

/// 0: not yet decided; 1: the vector paths run, IPv6 by measurement; 2: they do not; 3: they
/// run always.
static STATE: AtomicU8 = AtomicU8::new(0);

#[inline]
fn state() -> u8 {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let v = std::env::var_os(SWITCH);
            let s = if v.as_ref().is_some_and(|v| v == "off") || !cpu_has_it() {
                2
            } else if v.is_some_and(|v| v == "on") {
                3
            } else {
                1
            };
            STATE.store(s, Ordering::Relaxed);
            s
        }
        s => s,
    }
}

/// Whether the vector paths run: the CPU has AVX-512F and [`SWITCH`] is not `off`. Decided
/// once per process.
#[inline]
pub fn available() -> bool {
    matches!(state(), 1 | 3)
}

/// Whether IPv6 chooses between the vector and the portable walk by timing both (the vector
/// path is available and [`SWITCH`] is not `on`).
#[inline]
pub fn measured() -> bool {
    state() == 1
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
    let zero = _mm512_setzero_si512();
    // Groups whose every entry lies inside `groups`.
    let whole = _mm512_set1_epi32((groups.len() / GROUP_LEN).min(INDEX_MASK as usize + 1) as i32);
    // Two sixteens a step where the batch has them: both first-level gathers are issued
    // before either second-level one, so their misses overlap.
    let mut i = 0;
    while i < n {
        let two = i + 32 <= n;
        // SAFETY: `i + 16 <= n <= addrs.len()` (and `i + 32` when `two`): sixteen u32 inside
        // `addrs` each, read unaligned.
        let a0 = unsafe { _mm512_loadu_si512(addrs.as_ptr().add(i).cast()) };
        let a1 = if two {
            // SAFETY: as above, with `i + 32 <= n`.
            unsafe { _mm512_loadu_si512(addrs.as_ptr().add(i + 16).cast()) }
        } else {
            zero
        };
        // SAFETY: an address shifted right by 8 is below 2^24 = `level0.len()`.
        let e0 = unsafe {
            gather(
                level0.as_ptr().cast(),
                _mm512_srli_epi32::<8>(a0),
                0xffff,
                zero,
            )
        };
        let e1 = if two {
            // SAFETY: as above.
            unsafe {
                gather(
                    level0.as_ptr().cast(),
                    _mm512_srli_epi32::<8>(a1),
                    0xffff,
                    zero,
                )
            }
        } else {
            zero
        };
        // SAFETY: `whole` counts only groups inside `groups` (see `second`).
        let r0 = unsafe { second(groups, whole, a0, e0) };
        // SAFETY: `i + 16 <= n <= out.len()`: sixteen u32 inside `out`, written unaligned.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), r0) };
        if two {
            // SAFETY: as for `r0`, with `i + 32 <= n`.
            unsafe {
                let r1 = second(groups, whole, a1, e1);
                _mm512_storeu_si512(out.as_mut_ptr().add(i + 16).cast(), r1);
            }
        }
        i += if two { 32 } else { 16 };
    }
    n
}

/// The second level and the answer for sixteen addresses `a` whose first-level entries are
/// `e`: extended lanes read their group's entry, and every lane becomes a next hop or
/// [`NO_ROUTE`].
///
/// # Safety
/// The CPU has AVX-512F, and `whole` is at most the number of whole groups in `groups`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn second(
    groups: &[AtomicU32],
    whole: std::arch::x86_64::__m512i,
    a: std::arch::x86_64::__m512i,
    e: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let x = _mm512_test_epi32_mask(e, _mm512_set1_epi32(EXT as i32));
    let e = if x == 0 {
        e
    } else {
        // SAFETY: the caller's promise on `whole`.
        unsafe {
            next_level(
                groups,
                whole,
                e,
                x,
                _mm512_and_si512(a, _mm512_set1_epi32(0xff)),
            )
        }
    };
    // SAFETY: the CPU has AVX-512F (the caller's promise).
    unsafe { resolve(e) }
}

/// One level down for the lanes of `e` set in `x` (extended entries): each reads entry `byte`
/// of the group its entry names; the other lanes keep their entry.
///
/// # Safety
/// The CPU has AVX-512F, and `whole` is at most the number of whole groups in `groups`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn next_level(
    groups: &[AtomicU32],
    whole: std::arch::x86_64::__m512i,
    e: std::arch::x86_64::__m512i,
    x: u16,
    byte: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let g = _mm512_and_si512(e, _mm512_set1_epi32(INDEX_MASK as i32));
    // An extended entry naming a group past `whole` reads as 0 (no route), as the portable
    // path's bounds-checked read does.
    let inside = x & _mm512_cmplt_epu32_mask(g, whole);
    let at = _mm512_or_si512(_mm512_slli_epi32::<8>(g), byte);
    // SAFETY: the selected lanes name a group below `whole`, whose 256 entries lie inside
    // `groups` (the caller's promise); `g << 8` cannot wrap, as `g` < 2^21.
    unsafe {
        gather(
            groups.as_ptr().cast(),
            at,
            inside,
            _mm512_mask_mov_epi32(e, x, _mm512_setzero_si512()),
        )
    }
}

/// Looks up the longest whole multiple of 16 addresses of `addrs` into `out` on AVX-512 and
/// returns how many it did: 0 on a CPU without it. `level0` must be the trie's first level and
/// `groups` its groups.
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

/// The four 32-bit words of sixteen `u128` addresses from `at`, transposed: word `w` of
/// every lane's address in vector `w` (the machine's order: word 3 holds the top 32 bits),
/// lanes in address order. Eight unpacks and four permutes, no gathers.
///
/// # Safety
/// The CPU has AVX-512F, and sixteen `u128` from `at` are readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn transpose16(at: *const u128) -> [std::arch::x86_64::__m512i; 4] {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promise: four vectors of four addresses each, read unaligned.
    let [t1, t2, t3, t4] =
        unsafe { [0, 4, 8, 12].map(|k| _mm512_loadu_si512(at.add(k).cast::<__m512i>())) };
    // Within each 128-bit lane (one address of each input): words 0 and 1, then 2 and 3, of
    // addresses k and k + 4, then of k + 8 and k + 12, and then one word of all four.
    let (lo12, hi12) = (_mm512_unpacklo_epi32(t1, t2), _mm512_unpackhi_epi32(t1, t2));
    let (lo34, hi34) = (_mm512_unpacklo_epi32(t3, t4), _mm512_unpackhi_epi32(t3, t4));
    let w0 = _mm512_unpacklo_epi32(lo12, lo34);
    let w1 = _mm512_unpackhi_epi32(lo12, lo34);
    let w2 = _mm512_unpacklo_epi32(hi12, hi34);
    let w3 = _mm512_unpackhi_epi32(hi12, hi34);
    // Each now holds its word of addresses 0, 4, 8, 12 | 1, 5, 9, 13 | ... by 128-bit lane,
    // with k + 8 and k + 4 swapped inside each; this puts lane j at position j.
    let order = _mm512_set_epi32(15, 11, 7, 3, 13, 9, 5, 1, 14, 10, 6, 2, 12, 8, 4, 0);
    [w0, w1, w2, w3].map(|w| _mm512_permutexvar_epi32(order, w))
}

/// [`lookup6`]'s vector path: two sixteens walk the levels together, so that each level's two
/// gathers are in flight at once (DPDK's `rte_fib6` trie walks its AVX-512 lookup the same
/// way). A sixteen's lanes on a final entry drop out of its gathers' masks.
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
    let zero = _mm512_setzero_si512();
    let ext = _mm512_set1_epi32(EXT as i32);
    let low = _mm512_set1_epi32(0xff);
    let whole = _mm512_set1_epi32((groups.len() / GROUP_LEN).min(INDEX_MASK as usize + 1) as i32);
    let mut i = 0;
    while i < n {
        let two = i + 32 <= n;
        // SAFETY: `i + 16 <= n <= addrs.len()` (and `i + 32` when `two`).
        let w0 = unsafe { transpose16(addrs.as_ptr().add(i)) };
        let w1 = if two {
            // SAFETY: as above, with `i + 32 <= n`.
            unsafe { transpose16(addrs.as_ptr().add(i + 16)) }
        } else {
            [zero; 4]
        };
        let first = if two { 0xffff } else { 0 };
        // SAFETY: the top 32 bits shifted right by 8 are below 2^24 = `level0.len()`; the
        // second sixteen's gather selects no lane when there is none.
        let (mut e0, mut e1) = unsafe {
            (
                gather(
                    level0.as_ptr().cast(),
                    _mm512_srli_epi32::<8>(w0[3]),
                    0xffff,
                    zero,
                ),
                gather(
                    level0.as_ptr().cast(),
                    _mm512_srli_epi32::<8>(w1[3]),
                    first,
                    zero,
                ),
            )
        };
        let (mut x0, mut x1) = (
            _mm512_test_epi32_mask(e0, ext),
            _mm512_test_epi32_mask(e1, ext),
        );
        // Level k (1-based) indexes its group with the address byte at bit 104 - 8k.
        let mut level = 1u32;
        while (x0 | x1) != 0 && level as usize <= MAX_LEVELS {
            let shift = 104 - 8 * level;
            let count = _mm_cvtsi32_si128((shift % 32) as i32);
            let word = (shift / 32) as usize;
            let byte = |w: &[__m512i; 4]| _mm512_and_si512(_mm512_srl_epi32(w[word], count), low);
            // SAFETY: `whole` counts only groups inside `groups`.
            unsafe {
                e0 = next_level(groups, whole, e0, x0, byte(&w0));
                e1 = next_level(groups, whole, e1, x1, byte(&w1));
            }
            x0 = _mm512_test_epi32_mask(e0, ext);
            x1 = _mm512_test_epi32_mask(e1, ext);
            level += 1;
        }
        // SAFETY: `i + 16 <= n <= out.len()` (and `i + 32` when `two`): sixteen u32 each,
        // written unaligned.
        unsafe {
            _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), resolve(e0));
            if two {
                _mm512_storeu_si512(out.as_mut_ptr().add(i + 16).cast(), resolve(e1));
            }
        }
        i += if two { 32 } else { 16 };
    }
    n
}

/// Sixteen final entries as next hops, or [`NO_ROUTE`] where an entry holds none, as the
/// portable path's `Trie::resolve`.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn resolve(e: std::arch::x86_64::__m512i) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let found = _mm512_test_epi32_mask(e, _mm512_set1_epi32(VALID as i32));
    _mm512_mask_mov_epi32(
        _mm512_set1_epi32(NO_ROUTE as i32),
        found,
        _mm512_and_si512(e, _mm512_set1_epi32(INDEX_MASK as i32)),
    )
}

#[cfg(test)]
mod tests {
    use super::super::table::{ext, Trie};
    use super::super::{Lpm4Table, NO_ROUTE};
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
}
