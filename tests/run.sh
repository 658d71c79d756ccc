#!/usr/bin/env bash
# Runs every test of the project: unit, property and end-to-end tests of all crates, doc tests,
# each criterion bench once in test mode (so benches keep compiling and running; their figures
# go in BENCHMARKS.md, never into a pass/fail threshold), and a short run of each fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
cargo bench -p gateway-benches -- --test

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    cargo install cargo-fuzz --locked
  else
    echo "skipped: fuzz targets (cargo-fuzz not installed: cargo install cargo-fuzz --locked)"
    exit 0
  fi
fi
log=$(mktemp)
for target in frame gtpu lpm_ops; do
  rc=0
  mkdir -p "datapath/fuzz/corpus/$target"
  (cd datapath/fuzz && cargo fuzz run "$target" "corpus/$target" "seeds/$target" -s none -- \
     -max_total_time=30 -rss_limit_mb=4096) >"$log" 2>&1 || rc=$?
  grep -E "^Done" "$log" | sed "s/^/fuzz $target: /" || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$log"; echo "fuzz target $target failed (exit $rc)"; exit 1
  fi
done
rm -f "$log"
