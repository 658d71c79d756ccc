#!/usr/bin/env bash
# Software steering in memory (issue 20): GTP-U from one gNB, 64 TEIDs, decapsulated and routed
# on the full DFZ table, all arriving at worker 0.
# 1. Instructions a packet, counted by callgrind (the difference between 2000 and 1000 bursts
#    of 32, over 32000 packets): one worker alone, then two workers polled in turn on one
#    thread with steering, the handed-off frames lent by descriptor or copied at the handoff;
#    the difference is what the handoff costs, spread over every packet.
# 2. Forwarded packets per second, one worker against two on two threads pinned to a core each,
#    modes alternated round by round (ROUNDS, SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p gateway-benches --example steering_scale
bin=target/release/examples/steering_scale
count() {
  local out; out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out"; rm -f "$out"
}
for mode in "1 lent" "2 lent" "2 copy"; do
  set -- $mode
  a=$(count "$bin" count "$1" 1000 "$2")
  b=$(count "$bin" count "$1" 2000 "$2")
  echo "$1 worker(s), handed-off frames $2: $(( (b - a) / 32000 )) instructions/packet (decap + route on the DFZ table, poll, handoff)"
done
"$bin" time "${ROUNDS:-5}" "${SECONDS_PER_ROUND:-3}"
