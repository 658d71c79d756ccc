//! The packet path of the edge gateway.
//!
//! Layers, bottom up:
//! - [`wire`]: zero-copy views and validated representations of each header format.
//! - [`lpm`]: longest-prefix-match tables (DIR-24-8 for IPv4).
//! - [`fib`]: the forwarding snapshot: route tables, next hops, neighbours, local addresses.
//! - [`pipeline`]: the stages a worker runs over a fixed batch, run to completion:
//!   classify → (decap) → route → rewrite, then TX grouped by port.
//! - [`port`]: the `Port` trait and its backends (in-memory, pcap).
//! - [`worker`]: the per-core loop; [`stats`]: its counters.
//!
//! Invariants: no packet can make this crate panic (`check_len` guards every accessor and the
//! fuzz targets enforce it); nothing on the per-packet path allocates, locks or makes a syscall;
//! every dropped packet is counted under a [`pipeline::drop::DropReason`]. No logging and no
//! configuration parsing happen here.
//!
//! Not supported yet: tunnels (GTP-U, VXLAN, IPIP), ARP/NDP resolution and the local stack
//! (packets for the gateway's own addresses are counted as `local` and consumed), AF_XDP and
//! AF_PACKET ports, IP fragmentation and ICMP errors.

pub mod craft;
pub mod fib;
pub mod lpm;
pub mod pipeline;
pub mod port;
pub mod stats;
pub mod wire;
pub mod worker;
