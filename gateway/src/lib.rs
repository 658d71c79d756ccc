//! The edge packet gateway as a library: turning a validated configuration into route tables
//! and ports, running the datapath offline, and rendering counters. The `gateway` binary is a
//! thin CLI over this; the end-to-end tests call it directly.

pub mod baseline;
pub mod control;
pub mod control_socket;
pub mod demo;
pub mod lab;
pub mod local_stack;
pub mod metrics;
pub mod neighbors;
pub mod pktgen;
pub mod reload;
pub mod report;
pub mod routes;
pub mod skip;
pub mod tables;
pub mod trace;

pub use skip::skipped;
#[cfg(test)]
mod testing;
