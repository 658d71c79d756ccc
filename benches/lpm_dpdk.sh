#!/usr/bin/env bash
# Route lookup against DPDK's own tables (issue 21): benches/examples/lpm_dpdk.rs on 2 MiB
# hugepages, which this script reserves (as root) and gives back afterwards. MEMORY=ordinary
# runs DPDK on ordinary pages instead (--no-huge, no root needed). Needs libdpdk-dev and
# pkg-config (tests/install-deps.sh). Extra arguments go to the example (e.g. --no-lpm4: rte_lpm
# takes minutes to build the DFZ).
set -euo pipefail
cd "$(dirname "$0")/.."
memory=${MEMORY:-huge}
cargo build -q --release -p gateway-benches --features dpdk --example lpm_dpdk
if [ "$memory" = huge ]; then
  before=$(cat /proc/sys/vm/nr_hugepages)
  trap 'echo "$before" > /proc/sys/vm/nr_hugepages' EXIT
  # The EAL is given 3 GiB (-m 3072): rte_fib6's and rte_lpm6's second-level groups.
  echo $((before + 1600)) > /proc/sys/vm/nr_hugepages
  got=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
  if [ "$got" -lt 1536 ]; then
    echo "benches/lpm_dpdk.sh: only $got free hugepages (1536 needed); MEMORY=ordinary runs without" >&2
    exit 1
  fi
fi
echo "$(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
target/release/examples/lpm_dpdk --memory "$memory" "$@"
