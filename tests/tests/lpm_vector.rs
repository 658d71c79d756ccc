//! The IPv4 bulk lookup's AVX-512 path against the single lookup and the portable bulk path,
//! on a table of 60,000 random routes of every length (a third longer than /24, so that most
//! batches take the second-level gather), looked up at 200,000 addresses drawn inside the
//! routes and at random, in batches of every length from 1 to 64 so that the vector steps and
//! the portable tail meet at every offset. Then routes are removed and the check repeats.
//! Skipped (and under CI=true failed) on a CPU without AVX-512F.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::lpm::{vector, Lpm4, Qsbr, NO_ROUTE};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn check(t: &Lpm4, addrs: &[u32]) -> usize {
    let r = t.reader();
    let (mut bulk, mut portable) = (vec![0u32; 64], vec![0u32; 64]);
    let (mut at, mut len, mut extended) = (0, 1, 0);
    while at + len <= addrs.len() {
        let batch = &addrs[at..at + len];
        r.lookup_bulk(batch, &mut bulk[..len]);
        r.lookup_bulk_portable(batch, &mut portable[..len]);
        for (k, &a) in batch.iter().enumerate() {
            let want = t.lookup(a).unwrap_or(NO_ROUTE);
            assert_eq!(bulk[k], want, "vector bulk, {a:#x} at {k} of {len}");
            assert_eq!(portable[k], want, "portable bulk, {a:#x} at {k} of {len}");
            if t.longest_match(a).is_some_and(|(_, l, _)| l > 24) {
                extended += 1;
            }
        }
        at += len;
        len = len % 64 + 1;
    }
    extended
}

#[test]
fn avx512_bulk_lookup_gives_the_single_lookups_answer_at_every_batch_offset() {
    if !vector::available() {
        gateway::skipped("the AVX-512 route lookup (this CPU lacks AVX-512F)");
        return;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut t = Lpm4::new(1 << 16, Qsbr::new()).unwrap();
    let mut routes = Vec::new();
    for _ in 0..60_000 {
        let r = rng.next();
        let len = match r % 3 {
            0 => 25 + (r >> 8) % 8,
            _ => 8 + (r >> 8) % 17,
        } as u8;
        let a = (r >> 32) as u32 & (u32::MAX << (32 - u32::from(len)));
        t.insert(a, len, (r >> 16) as u32 & 0xfffff).unwrap();
        routes.push((a, len));
    }
    let addrs: Vec<u32> = (0..200_000)
        .map(|i| {
            let r = rng.next();
            if i % 2 == 0 {
                let (a, len) = routes[(r % routes.len() as u64) as usize];
                a | ((r >> 32) as u32).checked_shr(u32::from(len)).unwrap_or(0)
            } else {
                (r >> 32) as u32
            }
        })
        .collect();
    let extended = check(&t, &addrs);
    assert!(
        extended > 10_000,
        "only {extended} lookups reached a second-level group"
    );
    for &(a, len) in routes.iter().step_by(2) {
        t.remove(a, len);
    }
    check(&t, &addrs);
}
