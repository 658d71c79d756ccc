#!/usr/bin/env bash
# Instructions per packet of the plain routing pipeline, counted by callgrind: the difference
# between 2000 and 1000 iterations of a 32-packet batch, divided by 32000 packets. Stable across
# runs on a noisy machine, unlike wall-clock time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p gateway-benches --example pipeline_loop --example worker_loop
count() {
  local out; out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out"; rm -f "$out"
}
for kind in ${KINDS:-ipv4 ipv6 gtpu vxlan ipip geneve gtpu-encap geneve-encap}; do
  a=$(count target/release/examples/pipeline_loop "$kind" 1000)
  b=$(count target/release/examples/pipeline_loop "$kind" 2000)
  echo "$kind: $(( (b - a) / 32000 )) instructions/packet (pipeline incl. refill of a 64-byte frame)"
done
# A worker's whole poll over in-memory ports: the pipeline plus the worker's per-batch work.
a=$(count target/release/examples/worker_loop 1000); b=$(count target/release/examples/worker_loop 2000)
echo "worker ipv4: $(( (b - a) / 32000 )) instructions/packet (poll of in-memory ports, counters, TX)"
