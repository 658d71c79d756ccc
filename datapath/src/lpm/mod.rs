//! Longest-prefix-match tables. Entries hold next-hop indices; next hops themselves live in
//! [`crate::fib`], so a neighbour change never touches these tables.
//!
//! - [`table::Lpm4`]: IPv4 DIR-24-8 (a 2^24-entry first level and 256-entry groups), at most
//!   two loads per lookup, with a bulk lookup that issues all first-level loads of a batch
//!   before any second-level one.
//! - [`v6::Lpm6`]: IPv6, exact match per prefix length from the longest length present.
//!
//! Both are built whole from a route list here; live updates with quiescent-state reclamation
//! are not implemented yet.

pub mod table;
pub mod v6;

pub use table::Lpm4;
pub use v6::Lpm6;

/// The value `lookup_bulk` writes for an address with no route.
pub const NO_ROUTE: u32 = u32::MAX;

/// The largest next-hop index an entry holds (24 bits).
pub const MAX_NEXT_HOP: u32 = (1 << 24) - 1;

/// Why a table could not be built.
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
    /// More than the supported number of second-level groups.
    OutOfGroups,
}
