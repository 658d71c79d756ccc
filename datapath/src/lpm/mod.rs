//! Longest-prefix-match tables for IPv4 and IPv6, read lock-free by workers while one writer
//! updates them.
//!
//! - [`table`]: the DIR-24-8 trie readers walk ([`Lpm4Table`], [`Lpm6Table`]): at most two
//!   loads per IPv4 lookup, and a bulk lookup that issues all first-level loads of a batch
//!   before any second-level one.
//! - [`builder`]: the single writer ([`Lpm4`], [`Lpm6`]): insert and remove applied with single
//!   atomic stores, so each lookup sees the table before or after an update, never between.
//! - [`publish`]: quiescent-state-based reclamation of unlinked groups.
//! - [`vector`]: the IPv4 bulk lookup on AVX-512 gathers, where the CPU has them.
//!
//! Entries hold next-hop indices; next hops themselves live in [`crate::fib`], so a neighbour
//! change never touches these tables.

pub mod builder;
pub mod publish;
pub mod table;
pub mod vector;

pub use builder::{Lpm4, Lpm6};
pub use publish::{Qsbr, Reader};
pub use table::{Lpm4Table, Lpm6Table};

/// The value `lookup_bulk` writes for an address with no route.
pub const NO_ROUTE: u32 = u32::MAX;

/// The largest next-hop index an entry holds (21 bits: two million next hops).
pub const MAX_NEXT_HOP: u32 = table::INDEX_MASK;

/// Why a table operation failed; the table is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A prefix length above 32 (IPv4) or 128 (IPv6).
    BadPrefixLen {
        /// Length given.
        len: u8,
    },
    /// A next-hop index above [`MAX_NEXT_HOP`].
    NextHopTooLarge {
        /// Index given.
        next_hop: u32,
    },
    /// No group is free (retired ones wait for readers' quiescent points).
    OutOfGroups,
    /// The kernel could not map the table's memory.
    OutOfMemory,
}
