#!/usr/bin/env bash
# Runs every test of the project: unit, property and end-to-end tests of all crates, doc tests,
# and each criterion bench once in test mode (so benches keep compiling and running; their
# figures go in BENCHMARKS.md, never into a pass/fail threshold).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
cargo bench -p gateway-benches -- --test
