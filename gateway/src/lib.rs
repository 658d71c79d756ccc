//! The edge packet gateway as a library: turning a validated configuration into route tables
//! and ports, running the datapath offline, and rendering counters. The `gateway` binary is a
//! thin CLI over this; the end-to-end tests call it directly.

pub mod control;
pub mod control_socket;
pub mod kernel_routes;
pub mod local_stack;
pub mod metrics;
pub mod neighbors;
pub mod reload;
pub mod report;
pub mod routes;
pub mod skip;
pub mod tables;
pub mod tools;
pub mod trace;

pub use skip::skipped;
#[cfg(test)]
mod testing;
