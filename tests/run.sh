#!/usr/bin/env bash
# Runs every test of the project: unit, property and end-to-end tests of all crates, doc tests,
# each criterion bench once in test mode (so benches keep compiling and running; their figures
# go in BENCHMARKS.md, never into a pass/fail threshold), and a short run of each fuzz target.
#
# As root with apt-get, it first installs what the tests need (tests/install-deps.sh, the list
# .ci/run uses too) when something is missing; GATEWAY_NO_INSTALL=1 stops that. A check that
# cannot run says so (gateway::skipped), and the run ends with a summary of every skipped check.
set -euo pipefail
cd "$(dirname "$0")/.."

missing_tools() {
  local t
  for t in tshark promtool prometheus curl setpriv taskset ip ping sysctl podman runc systemd-analyze bird birdc; do
    command -v "$t" >/dev/null 2>&1 || return 0
  done
  /usr/bin/python3 -c 'import scapy, venv, ensurepip' >/dev/null 2>&1 || return 0
  pkg-config --exists libdpdk 2>/dev/null || return 0
  return 1
}
if [ -z "${GATEWAY_NO_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
   && missing_tools; then
  echo "installing the test tools (tests/install-deps.sh)"
  bash tests/install-deps.sh
fi

skips=$(mktemp)
results=$(mktemp)
trap 'rm -f "$skips" "$results"' EXIT
export GATEWAY_SKIP_LOG="$skips"

cargo test --workspace 2>&1 | tee "$results"
cargo bench -p gateway-benches -- --test 2>&1 | tee -a "$results"

# DPDK's route tables (the lookup baseline of BENCHMARKS.md) must give our tables' answer for
# every address of every traffic set, IPv4 on the DFZ and IPv6, scalar and AVX-512 paths.
if pkg-config --exists libdpdk 2>/dev/null; then
  cargo run --profile bench -p gateway-benches --features dpdk --example lpm_dpdk -- --check
elif [ "${CI:-}" = "true" ]; then
  echo "tests/run.sh: libdpdk-dev is missing under CI=true (tests/install-deps.sh installs it)"
  exit 1
else
  echo "tests/run.sh: DPDK route tables agree with ours (benches/examples/lpm_dpdk.rs --check; apt-get install libdpdk-dev pkg-config)" >>"$skips"
fi

fuzz=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    cargo install cargo-fuzz --locked
  else
    echo "tests/run.sh: fuzz targets frame, gtpu, lpm_ops (cargo-fuzz not installed: cargo install cargo-fuzz --locked)" >>"$skips"
    fuzz=0
  fi
fi
if [ "$fuzz" = 1 ]; then
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
fi

passed=$(grep -E '^test result: ok\.' "$results" | awk '{n += $4} END {print n + 0}')
echo
echo "== tests/run.sh: $passed tests passed =="
if [ -s "$skips" ]; then
  echo "== $(sort -u "$skips" | wc -l) checks NOT run (install what they name, run as root): =="
  sort -u "$skips" | sed 's/^/  skipped: /'
else
  echo "== every check ran =="
fi
