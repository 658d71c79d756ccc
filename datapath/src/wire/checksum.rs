//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `data` folded into 16 bits, added to `initial` (not complemented).
///
/// Sums 32-bit big-endian words into a 64-bit accumulator: since 2^16 ≡ 1 (mod 2^16 - 1), the
/// folded result equals the RFC 1071 sum of 16-bit words, at half the additions.
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

/// Folds a wide one's-complement accumulator into 16 bits.
#[inline]
pub fn fold(mut acc: u64) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
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

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data, 0), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
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
