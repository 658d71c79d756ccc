#!/usr/bin/env bash
# Software steering in memory (issue 20): GTP-U from one gNB, 64 TEIDs, decapsulated and routed
# on the full DFZ table, all arriving at worker 0.
# 1. Instructions a packet, counted by callgrind per worker thread (the difference between 2000
#    and 1000 bursts of 32, over 32000 packets): one worker alone, then two workers taking
#    turns with steering, the handed-off frames lent by descriptor or copied at the handoff.
#    Worker 0 receives everything; what it spends a packet is what bounds one gNB's rate.
# 2. Forwarded packets per second, one worker against two on two threads pinned to a core each,
#    modes alternated round by round (ROUNDS, SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p gateway-benches --example steering_scale
bin=target/release/examples/steering_scale
# Per-thread instruction counts: thread 1 is main (setup), threads 2.. are workers 0...
count() {
  local dir; dir=$(mktemp -d)
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/out" "$@" >/dev/null 2>&1
  for f in $(ls "$dir"/out-* | sort -t- -k2 -n | tail -n +2); do
    awk '/^summary:/ {print $2}' "$f"
  done | paste -sd' '
  rm -rf "$dir"
}
for mode in "1 lent" "2 lent" "2 copy"; do
  set -- $mode
  a=($(count "$bin" count "$1" 1000 "$2"))
  b=($(count "$bin" count "$1" 2000 "$2"))
  line="$1 worker(s), handed-off frames $2: instructions a packet offered:"
  total=0
  for w in "${!a[@]}"; do
    d=$(( (b[w] - a[w]) / 32000 )); total=$(( total + d ))
    line="$line worker $w $d;"
  done
  echo "$line total $total"
done
"$bin" time "${ROUNDS:-5}" "${SECONDS_PER_ROUND:-3}"
