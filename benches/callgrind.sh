#!/usr/bin/env bash
# Instructions per packet of the plain routing pipeline, counted by callgrind: the difference
# between 2000 and 1000 iterations of a 32-packet batch, divided by 32000 packets. Stable across
# runs on a noisy machine, unlike wall-clock time.
#
# Each kind's cost is also printed as a ratio to plain IPv4 (issue 15 asks decap + route to
# cost at most 1.5 times plain routing). STAGES=1 adds, per kind, where the instructions go:
# each one charged to the pipeline stage it was inlined into (benches/callgrind_stages.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p gateway-benches --example pipeline_loop --example worker_loop
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
count() {
  local out=$1; shift
  valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --callgrind-out-file="$out" \
    "$@" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out"
}
plain=
for kind in ${KINDS:-ipv4 ipv6 gtpu vxlan ipip geneve gtpu-encap geneve-encap}; do
  a=$(count "$work/a" target/release/examples/pipeline_loop "$kind" 1000)
  b=$(count "$work/b" target/release/examples/pipeline_loop "$kind" 2000)
  per=$(( (b - a) / 32000 ))
  [[ $kind == ipv4 ]] && plain=$per
  ratio=${plain:+, $(awk -v k="$per" -v p="$plain" 'BEGIN { printf "%.2f", k / p }') x plain IPv4}
  echo "$kind: $per instructions/packet (pipeline incl. refill of a 64-byte frame$ratio)"
  if [[ ${STAGES:-0} == 1 ]]; then
    /usr/bin/python3 benches/callgrind_stages.py target/release/examples/pipeline_loop \
      "$work/a" "$work/b" 32000 detail | sed 's/^/    /'
  fi
done
# A worker's whole poll over in-memory ports: the pipeline plus the worker's per-batch work.
a=$(count "$work/a" target/release/examples/worker_loop 1000)
b=$(count "$work/b" target/release/examples/worker_loop 2000)
echo "worker ipv4: $(( (b - a) / 32000 )) instructions/packet (poll of in-memory ports, counters, TX)"
