#!/usr/bin/env bash
# The Debian packages the tests need: the one list, used by .ci/run and by tests/run.sh (when it
# runs as root with apt-get and something is missing).
set -euo pipefail
PACKAGES=(
  tshark          # dissects what the gateway and pktgen emit
  python3-scapy   # crafts tunnel cases and the soak test's neighbour flood (/usr/bin/python3)
  tcpdump
  iproute2        # ip: namespaces, veths, routes
  ethtool         # benches/netns_forwarding.sh sets GRO and reads the sink's XDP counters
  libxdp-dev libbpf-dev gcc  # benches/netns_forwarding.sh builds the C reference forwarder
                             # (benches/xsk_fwd.c); libxdp's deny-all program is its sink
  iputils-ping
  procps          # sysctl, in the namespace lab
  util-linux      # setpriv (control socket peer checks), taskset (soak test)
  curl            # fetches /metrics for promtool
  prometheus      # a real Prometheus server, and promtool
  bird2           # BGP: the cluster's nodes and the gateway's host in gateway/tests/bgp.rs
  podman runc     # builds and runs the image (podman's default crun refuses these cgroups)
  python3-venv    # a venv for kubernetes-validate (PyPI), which checks docker/kubernetes/
  systemd         # systemd-analyze verify, for docker/systemd/gateway.service
  libdpdk-dev pkg-config  # DPDK's route tables: the lookup baseline and its agreement check
                          # (gateway-benches --features dpdk, benches/examples/lpm_dpdk.rs)
)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
