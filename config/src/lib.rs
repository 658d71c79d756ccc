//! Configuration of the edge packet gateway: the TOML schema, its validation, and the validated
//! model that the rest of the program consumes.
//!
//! Layers:
//! - [`schema`]: the raw serde types, one per TOML table. Unknown keys are collected (through
//!   `serde_ignored`) and reported with every other problem.
//!   Addresses, prefixes and MACs are kept as strings there so that *every* bad value in a file
//!   can be reported in one run, not only the first one serde trips over.
//! - [`validate`]: turns the raw types into the [`Config`] model, collecting every problem with
//!   its TOML path (`route[2].via[1]`) and, through [`locate`], its line and column.
//! - [`model`]: the validated types. Nothing outside this crate sees an unvalidated value.
//!
//! This crate does not depend on `datapath`; the gateway binary translates the model into tables.
//!
//! Validation is complete for every table, `[[tunnel]]` included; what the gateway can run of
//! a valid file (for example routes into VXLAN tunnels) is the gateway's to refuse.

pub mod locate;
pub mod mac;
pub mod model;
pub mod schema;
pub mod validate;

pub use mac::MacAddr;
pub use model::*;
pub use validate::{load_file, parse_and_validate, ConfigError, Machine, Problem};
