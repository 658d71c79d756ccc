//! The packet path of the edge gateway.
//!
//! Layers, bottom up:
//! - [`wire`]: zero-copy views and validated representations of each header format.
//! - [`lpm`]: lock-free longest-prefix-match tables (DIR-24-8 for IPv4 and IPv6), one writer.
//! - [`fib`]: the forwarding snapshot: route tables, next hops, neighbours, local addresses;
//!   [`slot`]: the snapshot in force, replaced whole on a configuration reload.
//! - [`pipeline`]: the stages a worker runs over a fixed batch, run to completion:
//!   classify → decap → route → rewrite (and encap), then TX grouped by port.
//! - [`craft`]: frame builders for tests, benches and the demo (never on the packet path).
//! - [`port`]: the `Port` trait and its backends (in-memory, pcap, AF_PACKET, AF_XDP with its BPF
//!   program), and pktgen's live-frames sender (`port::live_frames`, which the forwarding code
//!   never uses).
//! - [`hugemem`]: kernel-mapped huge-page memory for the route tables, below both;
//!   [`framemem`]: frame memory, where a batch's frames live (a port's ring, the worker's
//!   shared AF_XDP UMEM, a buffer's own allocation). The two places outside port backends
//!   where `unsafe` lives.
//! - [`tunnel`]: one file per tunnel kind (decapsulation, encapsulation template and patch)
//!   and the tunnel table the snapshot holds.
//! - [`worker`]: the per-core loop; [`stats`]: its counters.
//!
//! Invariants: no packet can make this crate panic (`check_len` guards every accessor and the
//! fuzz targets enforce it); nothing on the per-packet path allocates, locks or makes a syscall;
//! every dropped packet is counted under a [`pipeline::drop::DropReason`]. No logging and no
//! configuration parsing happen here.
//!
//! Not supported yet: IPv4 fragmentation, outer reassembly of fragmented
//! tunnel packets, several queues per port. Frames for the gateway's own addresses go to the
//! control thread through [`local`]; next hops are resolved there into [`neigh`].

pub mod craft;
pub mod fib;
pub mod framemem;
pub mod hugemem;
pub mod local;
pub mod log;
pub mod lpm;
pub mod neigh;
pub mod pipeline;
pub mod port;
pub mod ratelimit;
pub mod slot;
pub mod stats;
pub mod tunnel;
pub mod wire;
pub mod worker;
