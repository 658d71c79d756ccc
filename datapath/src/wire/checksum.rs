//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `data` folded into 16 bits, added to `initial` (not complemented).
///
/// Sums 32-bit big-endian words into a 64-bit accumulator: since 2^16 ≡ 1 (mod 2^16 - 1), the
/// folded result equals the RFC 1071 sum of 16-bit words, at half the additions. For IP
/// headers; whole UDP datagrams go through [`sum_wide`].
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    match *words.remainder() {
        [a, b, c] => acc += u64::from(u16::from_be_bytes([a, b])) + (u64::from(c) << 8),
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])),
        [a] => acc += u64::from(a) << 8,
        _ => {}
    }
    fold(acc)
}

/// [`sum`] over 64-bit words in the machine's byte order, a quarter of the additions of 16-bit
/// words and no byte swaps: the one's-complement sum does not depend on byte order (RFC 1071
/// section 2(B)), so the native-order sum, folded to 16 bits, is the big-endian sum with its
/// two bytes swapped. The words are added into a `u128`, whose high half collects the carries
/// (an add and an add-with-carry a word), folded back in at the end.
#[inline]
pub fn sum_wide(data: &[u8], initial: u32) -> u32 {
    let (words, mut rest) = data.as_chunks::<8>();
    let mut acc = 0u128;
    for w in words {
        acc += u128::from(u64::from_ne_bytes(*w));
    }
    if let [a, b, c, d, tail @ ..] = rest {
        acc += u128::from(u32::from_ne_bytes([*a, *b, *c, *d]));
        rest = tail;
    }
    if let [a, b, tail @ ..] = rest {
        acc += u128::from(u16::from_ne_bytes([*a, *b]));
        rest = tail;
    }
    if let [a] = rest {
        // A last odd byte is the high byte of its big-endian 16-bit word.
        acc += u128::from(u16::from_ne_bytes([*a, 0]));
    }
    // End-around carry of the two halves, then to 16 bits (all congruent mod 2^16 - 1).
    let (lo, carry) = (acc as u64).overflowing_add((acc >> 64) as u64);
    let native = fold(lo + u64::from(carry));
    let big_endian = u32::from((native as u16).to_be());
    fold(u64::from(big_endian) + u64::from(initial))
}

/// [`sum`] of an option-less 20-byte IPv4 header, unrolled: five 32-bit words in the machine's
/// byte order (no byte swaps: the one's-complement sum of swapped words is the swapped sum,
/// RFC 1071 section 2(B)), [`fold`], and one swap of the result.
#[inline(always)]
pub fn sum_header(h: &[u8; 20]) -> u32 {
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let native = fold(w(0) + w(4) + w(8) + w(12) + w(16)) as u16;
    u32::from(u16::from_be(native))
}

/// Folds a wide one's-complement accumulator into 16 bits: two end-around-carry additions of
/// halves, with no loop. Neither second addition overflows: the first sum of two halves is at
/// most twice the half's maximum, so the half it leaves is at most that maximum less one. A
/// non-zero accumulator folds to 1..=0xffff, zero to zero.
#[inline]
pub fn fold(acc: u64) -> u32 {
    let (s, c) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let x = s + u32::from(c);
    let (s, c) = (x as u16).overflowing_add((x >> 16) as u16);
    u32::from(s + u16::from(c))
}

/// The IPv4 header checksum after the TTL dropped by one, as Linux's `ip_decrease_ttl`: the
/// TTL is the high byte of its 16-bit word, so the header's sum falls by 0x0100 and the
/// checksum (its complement) rises by as much, with the end-around carry. The result is what
/// [`update`] gives (RFC 1624 eqn. 3), never 0xffff, in a third of the instructions.
#[inline(always)]
pub fn add_ttl_step(check: u16) -> u16 {
    let c = u32::from(check) + 0x0100;
    (c + u32::from(c >= 0xffff)) as u16
}

/// The checksum field value for `data`: the complement of its sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !(sum(data, 0) as u16)
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data changed from
/// `old` to `new`: HC' = ~(~HC + ~m + m').
#[inline]
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!check) + u64::from(!old) + u64::from(new);
    !(fold(acc) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fold as RFC 1071 describes it, for [`fold`] to agree with.
    fn fold_by_loop(mut acc: u64) -> u32 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u32
    }

    #[test]
    fn the_fold_agrees_with_the_loop_on_edges_and_a_spread_of_values() {
        let mut edges = vec![0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0xffff_ffff, 0x1_0000_0000];
        edges.extend([
            u64::MAX,
            u64::MAX - 1,
            0xffff_0000_ffff_0000,
            0x0001_0000_0000_ffff,
        ]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            edges.push(x);
            edges.push(x >> (x % 64));
        }
        for acc in edges {
            assert_eq!(fold(acc), fold_by_loop(acc), "{acc:#x}");
        }
    }

    #[test]
    fn the_ttl_step_agrees_with_rfc1624_for_every_checksum_and_ttl() {
        for check in 0..=u16::MAX {
            for ttl in 1..=255u16 {
                let old = (ttl << 8) | 17;
                let new = old - 0x0100;
                assert_eq!(
                    add_ttl_step(check),
                    update(check, old, new),
                    "{check:#x} ttl {ttl}"
                );
            }
        }
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data, 0), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn the_unrolled_header_sum_agrees_with_the_general_one() {
        let mut h = [0u8; 20];
        for seed in 0..2000u32 {
            for (i, b) in h.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32 * 3) >> 5) as u8;
            }
            if seed % 7 == 0 {
                h.fill(0xff);
            }
            assert_eq!(sum_header(&h), sum(&h, 0), "{h:02x?}");
        }
    }

    #[test]
    fn odd_lengths_sum_like_sixteen_bit_words() {
        let data: Vec<u8> = (0..=255u8).rev().cycle().take(1001).collect();
        for len in 0..data.len() {
            let mut acc = 0u64;
            for c in data[..len].chunks(2) {
                acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
            assert_eq!(sum(&data[..len], 0), fold(acc), "len {len}");
        }
    }

    #[test]
    fn the_wide_sum_agrees_with_the_narrow_one_where_they_meet_and_on_carries() {
        let data: Vec<u8> = (0..=255u8).cycle().take(200).collect();
        for len in 0..data.len() {
            for initial in [0, 1, 0xfffe, 0xffff, 0x1_fffe] {
                let narrow = {
                    let mut acc = u64::from(initial);
                    for c in data[..len].chunks(2) {
                        acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
                    }
                    fold(acc)
                };
                assert_eq!(
                    sum_wide(&data[..len], initial),
                    narrow,
                    "len {len}, initial {initial:#x}"
                );
            }
        }
        // Enough all-ones words to carry out of the low 64 bits many times.
        assert_eq!(sum_wide(&[0xff; 4096], 0), 0xffff);
        assert_eq!(
            sum_wide(&[0; 64], 0),
            0,
            "zero data sums to zero, as the narrow sum does"
        );
    }

    proptest::proptest! {
        #[test]
        fn sum_equals_the_rfc1071_sum_of_sixteen_bit_words(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            initial in 0u32..0x1_0000,
        ) {
            let mut acc = u64::from(initial);
            for c in data.chunks(2) {
                acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
            proptest::prop_assert_eq!(sum(&data, initial), fold(acc));
        }
    }

    #[test]
    fn all_ones_words_carry_out_of_every_position() {
        // All-ones words carry at every add; their folded sum is 0xffff, never 0.
        for len in [8usize, 16, 24, 64, 1024] {
            let data = vec![0xffu8; len];
            assert_eq!(sum(&data, 0), 0xffff, "len {len}");
        }
    }

    #[test]
    fn incremental_update_matches_full_recompute() {
        let mut hdr = [
            0x45u8, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 0x01, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&hdr);
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        assert_eq!(update(c, old, new), checksum(&hdr));
    }
}
