//! The tools around the daemon: the traffic generator and receiver (`pktgen`), the namespace
//! lab, the demo, `explain` from the command line and the benchmark's ceiling forwarder
//! (`baseline`). The daemon's modules (the control thread, tables, reload, metrics, trace) never
//! import this tree; `gateway/tests/layout.rs` holds them to it.

pub mod baseline;
pub mod demo;
pub mod explain;
pub mod lab;
pub mod pktgen;
