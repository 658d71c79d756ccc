//! Route tables and traffic for the LPM benches: the real IPv4 default-free-zone table from
//! `../shared/testdata/rib/dfz-ipv4.csv.gz`, a deterministic IPv6 table shaped like real
//! allocations, and three traffic sets (uniform random, inside the table, 10k hot addresses).

use flate2::read::GzDecoder;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Where the shared DFZ table lives.
pub fn dfz_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/rib/dfz-ipv4.csv.gz")
}

/// The DFZ table as `(prefix, length, next hop)`; the next hop is the origin AS folded into 16
/// bits so the tables carry realistic value diversity. Host bits are masked; duplicate
/// prefixes are kept (every table keeps the last).
pub fn load_dfz() -> std::io::Result<Vec<(u32, u8, u32)>> {
    let f = std::fs::File::open(dfz_path())?;
    let mut out = Vec::with_capacity(900_000);
    for line in BufReader::new(GzDecoder::new(f)).lines() {
        let line = line?;
        let line = line.trim_start_matches('\u{feff}');
        let mut it = line.split(',');
        let (Some(net), Some(len), Some(asn)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let (Ok(net), Ok(len), Ok(asn)) = (
            net.parse::<std::net::Ipv4Addr>(),
            len.parse::<u8>(),
            asn.trim().parse::<u32>(),
        ) else {
            continue; // the header line
        };
        if len > 32 {
            continue;
        }
        let a = u32::from(net);
        let a = if len == 0 {
            0
        } else {
            a & (u32::MAX << (32 - u32::from(len)))
        };
        out.push((a, len, asn & 0xffff));
    }
    Ok(out)
}

/// A xorshift64* generator: deterministic inputs without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// About 200k IPv6 prefixes nested like real allocations: ~2,000 RIR-style /29–/32 blocks in
/// 2000::/3, ~20,000 /33–/44 assignments inside them, ~170,000 /48 sites inside those, and
/// ~8,000 /64s inside the sites.
pub fn gen_ipv6(seed: u64) -> Vec<(u128, u8, u32)> {
    let mut r = Rng(seed);
    let mask = |a: u128, l: u8| {
        if l == 0 {
            0
        } else {
            a & (u128::MAX << (128 - u32::from(l)))
        }
    };
    let mut out = Vec::with_capacity(200_000);
    let mut blocks = Vec::new();
    for _ in 0..2_000 {
        let len = 29 + r.below(4) as u8;
        let a = (0x2u128 << 124) | (u128::from(r.next_u64()) << 64 >> 3);
        let p = mask(a, len);
        blocks.push((p, len));
        out.push((p, len, r.below(4096) as u32));
    }
    let mut assigns = Vec::new();
    for _ in 0..20_000 {
        let (bp, bl) = blocks[r.below(blocks.len() as u64) as usize];
        let len = 33 + r.below(12) as u8;
        let p = mask(bp | (u128::from(r.next_u64()) << 64 >> bl), len);
        assigns.push((p, len));
        out.push((p, len, r.below(4096) as u32));
    }
    let mut sites = Vec::new();
    for _ in 0..170_000 {
        let (ap, al) = assigns[r.below(assigns.len() as u64) as usize];
        let p = mask(ap | (u128::from(r.next_u64()) << 64 >> al), 48);
        sites.push(p);
        out.push((p, 48, r.below(4096) as u32));
    }
    for _ in 0..8_000 {
        let sp = sites[r.below(sites.len() as u64) as usize];
        let p = mask(sp | (u128::from(r.next_u64()) << 64 >> 48), 64);
        out.push((p, 64, r.below(4096) as u32));
    }
    out
}

/// Traffic for one family: uniform random, inside the table, and a hot set.
pub struct Traffic<A> {
    /// Uniformly random addresses.
    pub random: Vec<A>,
    /// Addresses inside random prefixes of the table (random host bits).
    pub in_table: Vec<A>,
    /// Draws from 10,000 distinct in-table addresses.
    pub hot: Vec<A>,
}

/// Addresses per traffic set.
pub const TRAFFIC_LEN: usize = 1 << 20;

/// IPv4 traffic over `routes`.
pub fn traffic_v4(routes: &[(u32, u8, u32)], seed: u64) -> Traffic<u32> {
    let mut r = Rng(seed);
    let random = (0..TRAFFIC_LEN).map(|_| r.next_u64() as u32).collect();
    let inside = |r: &mut Rng| {
        let (p, l, _) = routes[r.below(routes.len() as u64) as usize];
        let host = if l == 32 {
            0
        } else {
            (r.next_u64() as u32) >> l
        };
        p | host
    };
    let in_table = (0..TRAFFIC_LEN).map(|_| inside(&mut r)).collect();
    let hot_set: Vec<u32> = (0..10_000).map(|_| inside(&mut r)).collect();
    let hot = (0..TRAFFIC_LEN)
        .map(|_| hot_set[r.below(10_000) as usize])
        .collect();
    Traffic {
        random,
        in_table,
        hot,
    }
}

/// IPv6 traffic over `routes`. "Random" addresses are drawn in 2000::/3, where the table is.
pub fn traffic_v6(routes: &[(u128, u8, u32)], seed: u64) -> Traffic<u128> {
    let mut r = Rng(seed);
    let random = (0..TRAFFIC_LEN)
        .map(|_| {
            (0x2u128 << 124) | ((u128::from(r.next_u64()) << 64 | u128::from(r.next_u64())) >> 3)
        })
        .collect();
    let inside = |r: &mut Rng| {
        let (p, l, _) = routes[r.below(routes.len() as u64) as usize];
        let bits = u128::from(r.next_u64()) << 64 | u128::from(r.next_u64());
        if l == 128 {
            p
        } else {
            p | (bits >> l)
        }
    };
    let in_table = (0..TRAFFIC_LEN).map(|_| inside(&mut r)).collect();
    let hot_set: Vec<u128> = (0..10_000).map(|_| inside(&mut r)).collect();
    let hot = (0..TRAFFIC_LEN)
        .map(|_| hot_set[r.below(10_000) as usize])
        .collect();
    Traffic {
        random,
        in_table,
        hot,
    }
}
