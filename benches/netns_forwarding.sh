#!/usr/bin/env bash
# Forwarding throughput through a middle namespace, the gateway against the kernel, on the
# same topology and the same traffic, in one run:
#
#   [ext] ext-a ==== ext-g [mid] pod-g ==== pod-b [pods]
#
# The sender (`gateway pktgen`, BPF live frames) runs in ext pinned to CPU 0; whatever
# forwards in mid (the gateway's worker, the reference forwarder, or the kernel's softirq)
# runs on CPU 1; frames are counted arriving on pod-b, where an XDP program drops them
# (libxdp's deny-all program, counted by veth's xdp_drops), so that the pods side costs
# nothing on either CPU. The sink is detached for the latency phase, whose receiver reads
# pod-b through AF_PACKET.
# The gateway and the minimal forwarder busy-poll, so they do not run real-time: the
# kernel throttles real-time tasks for 50 ms of every second (sched_rt_runtime_us), which
# showed as 30-40 ms latency tails and losses at 50 kpps when they did.
#
# Modes:
#   kernel-forward   ip_forward in mid, plain UDP
#   kernel-vxlan     a kernel VXLAN device in mid decapsulates, then ip_forward
#   gateway-plain    the gateway on AF_XDP, plain UDP
#   gateway-vxlan    the gateway decapsulating VXLAN
#   gateway-gtpu     the gateway decapsulating GTP-U (PDU Session Container, QFI 9)
#   gateway-plain-scraped     gateway-plain while a loop in mid fetches /metrics back to back
#                             (curl, on CPU 0 with the gateway's other threads): what a
#                             scrape costs the worker
#   gateway-af-packet-plain   the fallback port, plain UDP
#   gateway-geneve   the gateway decapsulating Geneve (Ethernet inside, no options)
#   xdp-forward-minimal       `gateway xdp-forward`: a minimal AF_XDP forwarder on the
#                             gateway's own ports (rx, rewrite MACs, tx; no pipeline)
#   c-xsk-fwd        the reference: benches/xsk_fwd.c, about 150 lines of C on libxdp's xsk
#                    API (copy mode, shared UMEM, MAC rewrite), built here; plain UDP
#   c-xsk-fwd-vxlan / -gtpu / -geneve   the reference fed the tunnel traffic (it forwards
#                    each frame whole): the ceiling for the same input
#
# Each run measures twice: throughput with the sender free-running (forwarded = frames
# counted on pod-b), then latency at a rate every mode forwards without loss (LAT_RATE,
# frames/s for 2 s): `gateway pktgen receive` on pod-b reads each frame's stamp and reports
# losses from sequence gaps and latency percentiles (sender's CLOCK_TAI stamp to the
# kernel's receive timestamp on pod-b).
#
# Usage (root): benches/netns_forwarding.sh [seconds per run] [runs] [--append]
# PERF=DIR also samples CPU 1 (the forwarder's, with the kernel work it causes) with
# `perf record -e cpu-clock` during each throughput run, and prints each mode's profile at the
# end (DIR keeps the data files): where the time goes in each forwarder.
# ONLY=REGEX runs only the modes whose names match. The modes are alternated: round 1 of every
# mode, then round 2, so that a machine slowing down during the run weighs on all of them.
# Prints medians of the runs; with --append also appends the table to BENCHMARKS.md.
# Needs: iproute2, ethtool, util-linux (taskset, chrt), gcc, libxdp-dev and libbpf-dev
# (tests/install-deps.sh installs them), and a release build of the gateway (built here if
# missing).
set -euo pipefail

SECS=${1:-5}
RUNS=${2:-3}
APPEND=${3:-}
ONLY=${ONLY:-.}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GW="$ROOT/target/release/gateway"
TAG="gwb$$"
EXT="$TAG-ext" MID="$TAG-mid" POD="$TAG-pods"
GW_EXT_MAC=02:00:00:00:00:01 GW_POD_MAC=02:00:00:00:01:01
EXT_MAC=02:00:00:00:00:99 POD_MAC=02:00:00:00:02:01 VX_MAC=02:00:00:00:0a:01
FLOWS=16
LAT_RATE=50000
WORK=$(mktemp -d)

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, BPF)"; exit 1; }
[ -x "$GW" ] || (cd "$ROOT" && cargo build --release -p gateway)
SINK=/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_dny_all.o
[ -f "$SINK" ] || { echo "needs libxdp's $SINK (apt-get install libxdp-dev)"; exit 1; }
XSK_FWD="$WORK/xsk_fwd"
cc -O2 -Wall -o "$XSK_FWD" "$ROOT/benches/xsk_fwd.c" -lxdp -lbpf

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

teardown() {
    if [ -s "$WORK/scraper" ]; then
        kill "$(cat "$WORK/scraper")" 2>/dev/null || true
        : >"$WORK/scraper"
    fi
    if [ -s "$WORK/pid" ]; then
        kill -TERM "$(cat "$WORK/pid")" 2>/dev/null || true
        # Wait for it: the next run must find the interfaces free.
        for _ in $(seq 50); do kill -0 "$(cat "$WORK/pid")" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$(cat "$WORK/pid")" 2>/dev/null && echo "forwarder ignored SIGTERM: killed" >&2
        rm -f "$WORK/pid"
        [ -z "${VERBOSE:-}" ] || cat "$WORK/gw.out" >&2 || true
        rm -f "$WORK/gw.out"
    fi
    for n in "$EXT" "$MID" "$POD"; do ip netns del "$n" 2>/dev/null || true; done
}
trap 'teardown; rm -rf "$WORK"' EXIT

topology() {
    teardown
    for n in "$EXT" "$MID" "$POD"; do ip netns add "$n"; done
    ip link add ext-a netns "$EXT" type veth peer name ext-g netns "$MID"
    ip link add pod-g netns "$MID" type veth peer name pod-b netns "$POD"
    nsx "$EXT" ip link set ext-a address $EXT_MAC up
    nsx "$EXT" ip addr add 192.0.2.10/24 dev ext-a
    nsx "$MID" ip link set ext-g address $GW_EXT_MAC up
    nsx "$MID" ip link set pod-g address $GW_POD_MAC up
    nsx "$MID" ip link set lo up
    # Frames XDP_TX'd by the sender reach ext-g by redirect: without an XDP program there
    # (the kernel modes) ext-g needs GRO on, or they vanish uncounted (IO-NOTES).
    nsx "$MID" ethtool -K ext-g gro on >/dev/null
    nsx "$POD" ip link set pod-b address $POD_MAC up
    nsx "$POD" ip addr add 172.18.0.2/16 dev pod-b
    sink on
}

# The XDP drop sink on pod-b: on for throughput, off for the latency receiver.
sink() {
    if [ "$1" = on ]; then
        nsx "$POD" ip link set dev pod-b xdpdrv obj "$SINK" sec xdp
    else
        nsx "$POD" ip link set dev pod-b xdpdrv off
    fi
}

kernel_mid() {
    nsx "$MID" ip addr add 192.0.2.1/24 dev ext-g
    nsx "$MID" ip addr add 172.18.0.1/16 dev pod-g
    nsx "$MID" sysctl -qw net.ipv4.ip_forward=1
    nsx "$MID" sysctl -qw net.ipv4.conf.all.rp_filter=0
    nsx "$MID" ip route add 10.244.0.0/16 via 172.18.0.2
    nsx "$MID" ip neigh add 172.18.0.2 lladdr $POD_MAC dev pod-g nud permanent
    nsx "$MID" ip neigh add 192.0.2.10 lladdr $EXT_MAC dev ext-g nud permanent
    # The kernel forwards in ext-g's NAPI poll: threaded, on CPU 1, at the sender's priority
    # (otherwise it would run in the sender's softirq on CPU 0).
    nsx "$MID" sh -c 'echo 1 > /sys/class/net/ext-g/threaded'
    local pid
    for pid in $(pgrep -f "napi/ext-g"); do
        taskset -p -c 1 "$pid" >/dev/null
        chrt -f -p 5 "$pid"
    done
    if [ "$1" = vxlan ]; then
        nsx "$MID" ip link add vxlan0 type vxlan id 4096 local 192.0.2.1 dstport 4789 nolearning dev ext-g
        nsx "$MID" ip link set vxlan0 address $VX_MAC up
        nsx "$MID" ip addr add 10.99.0.254/24 dev vxlan0
        nsx "$MID" sysctl -qw net.ipv4.conf.vxlan0.rp_filter=0
    fi
}

gateway_mid() {
    local driver=$1
    cat >"$WORK/gw.toml" <<EOF
[gateway]
workers = [1]
[[port]]
name = "ext"
driver = "$driver"
interface = "ext-g"
mac = "$GW_EXT_MAC"
addresses = ["192.0.2.1/24"]
[[port]]
name = "pods"
driver = "$driver"
interface = "pod-g"
mac = "$GW_POD_MAC"
addresses = ["172.18.0.1/16"]
[[neighbor]]
address = "172.18.0.2"
mac = "$POD_MAC"
port = "pods"
[[route]]
prefix = "10.244.0.0/16"
via = "172.18.0.2"
[[tunnel]]
name = "calico"
kind = "vxlan"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.10"]
[[tunnel]]
name = "cilium"
kind = "geneve"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.10"]
[[tunnel]]
name = "ran"
kind = "gtpu"
local = "192.0.2.1"
peer = "192.0.2.10"
[[tunnel.session]]
ue = "10.46.0.0/16"
teid_in = 0x1001
teid_out = 0x2001
qfi = 9
EOF
    if [ "${2:-}" = scrape ]; then
        # The worker pins itself to CPU 1; the other threads (metrics included) stay on 0.
        ip netns exec "$MID" taskset -c 0 "$GW" run --config "$WORK/gw.toml" \
            --metrics 127.0.0.1:9108 >"$WORK/gw.out" 2>&1 &
        echo $! >"$WORK/pid"
        sleep 1.5
        # Not through nsx: $! must be the loop itself (ip netns exec and taskset exec it).
        ip netns exec "$MID" taskset -c 0 sh -c 'while :; do curl -sf http://127.0.0.1:9108/metrics >/dev/null; done' &
        echo $! >"$WORK/scraper"
        return
    fi
    ip netns exec "$MID" "$GW" run --config "$WORK/gw.toml" >"$WORK/gw.out" 2>&1 &
    echo $! >"$WORK/pid"   # ip netns exec execs: this is the gateway's pid
    sleep 1.5
}

minimal_mid() {
    ip netns exec "$MID" "$GW" xdp-forward --from ext-g --to pod-g --src-mac $GW_POD_MAC \
        --dst-mac $POD_MAC --core 1 >"$WORK/gw.out" 2>&1 &
    echo $! >"$WORK/pid"   # ip netns exec execs: this is the forwarder's pid
    sleep 1.5
}

c_mid() {
    ip netns exec "$MID" taskset -c 1 "$XSK_FWD" ext-g pod-g $POD_MAC $GW_POD_MAC \
        >"$WORK/gw.out" 2>&1 &
    echo $! >"$WORK/pid"   # ip netns exec and taskset exec: this is the forwarder's pid
    sleep 1.5
}

# Frames the sink dropped on pod-b: every frame that arrived.
rx_on_pod_b() { nsx "$POD" ethtool -S pod-b | awk '/_xdp_drops:/ { s += $2 } END { print s + 0 }'; }

# One measurement: prints "offered_pps forwarded_pps", both over the sender's own time.
measure() {
    local kind=$1; shift
    local before after out
    before=$(rx_on_pod_b)
    local perf_pid=
    if [ -n "${PERF:-}" ]; then
        # The middle of the run: the sender's start and end stay out of the profile.
        perf record -q -e cpu-clock -F 1999 -C 1 -o "$PERF/$MODE.$ROUND.data" \
            -- sleep "$(( SECS > 2 ? SECS - 2 : 1 ))" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    out=$(nsx "$EXT" chrt -f 5 taskset -c 0 "$GW" pktgen --interface ext-a --kind "$kind" \
        --flows $FLOWS --seconds "$SECS" --json "$@")
    [ -z "$perf_pid" ] || wait "$perf_pid" || true
    sleep 0.5
    after=$(rx_on_pod_b)
    echo "$out" | sed 's/[{}"]//g; s/,/ /g' | awk -v n=$((after - before)) '{
        for (i = 1; i <= NF; i++) { split($i, kv, ":"); v[kv[1]] = kv[2] }
        printf "%.0f %.0f\n", v["frames"] / v["seconds"], n / v["seconds"] }'
}

# Latency at LAT_RATE: prints "sent received p50_ns p99_ns".
latency() {
    local kind=$1; shift
    sink off
    nsx "$POD" "$GW" pktgen receive --interface pod-b --idle 1 --seconds 30 --quiet --json \
        >"$WORK/recv.json" 2>/dev/null &
    local rpid=$!
    sleep 0.3
    nsx "$EXT" taskset -c 0 "$GW" pktgen --interface ext-a --kind "$kind" --flows $FLOWS \
        --seconds 2 --rate $LAT_RATE --output af-packet --json "$@" >"$WORK/send.json"
    wait "$rpid" || true
    local field
    field() { grep -o "\"$1\":[0-9]*" "$2" | head -1 | cut -d: -f2; }
    echo "$(field frames "$WORK/send.json") $(field stamped "$WORK/recv.json")" \
        "$(field p50 "$WORK/recv.json") $(field p99 "$WORK/recv.json")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# One round of one mode: appends its figures to $WORK/runs.
run_once() {
    local mode=$1 kind=$2; shift 2
    [[ $mode =~ $ONLY ]] || return 0
    MODE=$mode
    topology
    case $mode in
        kernel-forward) kernel_mid plain ;;
        kernel-vxlan) kernel_mid vxlan ;;
        gateway-af-packet-*) gateway_mid af_packet ;;
        gateway-plain-scraped) gateway_mid af_xdp scrape ;;
        xdp-forward-minimal*) minimal_mid ;;
        c-xsk-fwd*) c_mid ;;
        gateway-*) gateway_mid af_xdp ;;
    esac
    local o f sent got p50 p99
    read -r o f < <(measure "$kind" "$@")
    read -r sent got p50 p99 < <(latency "$kind" "$@")
    teardown
    echo "$mode $o $f ${p50:-0} ${p99:-0} $(( ${sent:-0} - ${got:-0} ))" >>"$WORK/runs"
}

# The medians of a mode's rounds, as a table row.
summarize() {
    local mode=$1
    grep -q "^$mode " "$WORK/runs" 2>/dev/null || return 0
    local col o f p50 p99 lost all
    col() { awk -v m="$mode" -v c="$1" '$1 == m { print $c }' "$WORK/runs" | median; }
    o=$(col 2) f=$(col 3) p50=$(col 4) p99=$(col 5)
    lost=$(awk -v m="$mode" '$1 == m { s += $6 } END { print s + 0 }' "$WORK/runs")
    all=$(awk -v m="$mode" '$1 == m { printf "%s ", $3 }' "$WORK/runs")
    awk -v m="$mode" -v o="$o" -v f="$f" -v all="$all" -v p50="$p50" -v p99="$p99" -v lost="$lost" \
        'BEGIN { printf "| %-24s | %8.3f | %9.3f | %6.1f%% | %7.1f | %7.1f | %d | %s|\n", m, o / 1e6, f / 1e6, 100 * (1 - f / o), p50 / 1e3, p99 / 1e3, lost, all }'
    echo "$mode $f" >>"$WORK/medians"
}

MODES=(
    "kernel-forward plain4 --dst-mac $GW_EXT_MAC --dst 10.244.9.9"
    "kernel-vxlan vxlan --inner-mac $VX_MAC --inner-src 10.99.0.1"
    "gateway-plain plain4 --dst 10.244.9.9"
    "gateway-vxlan vxlan --inner-src 10.99.0.1"
    "gateway-gtpu gtpu"
    "gateway-geneve geneve"
    "gateway-plain-scraped plain4 --dst 10.244.9.9"
    "gateway-af-packet-plain plain4 --dst 10.244.9.9"
    "xdp-forward-minimal plain4 --dst 10.244.9.9"
    "c-xsk-fwd plain4 --dst 10.244.9.9"
    "c-xsk-fwd-vxlan vxlan --inner-src 10.99.0.1"
    "c-xsk-fwd-gtpu gtpu"
    "c-xsk-fwd-geneve geneve"
)

HEADER="| mode | offered Mpps | forwarded Mpps | loss | latency p50 us | latency p99 us | lost at $LAT_RATE/s | forwarded pps per run |
|---|---|---|---|---|---|---|---|"
{
    echo "### Namespace forwarding, $(date -u +%Y-%m-%d), $(nproc) vCPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    echo
    echo "\`benches/netns_forwarding.sh $SECS $RUNS\`: 64-byte frames (tunnel kinds: the smallest"
    echo "that holds their headers), $FLOWS flows, sender on CPU 0 (\`chrt -f 5\`), forwarder on CPU 1,"
    echo "XDP-drop sink on pod-b, modes alternated round by round"
    echo "(kernel: threaded NAPI at \`chrt -f 5\`; gateway and minimal forwarder: pinned, not real-time,"
    echo "as a real-time busy poller is throttled 50 ms of every second); medians of $RUNS runs of $SECS s."
    echo "Latency: at $LAT_RATE frames/s for 2 s in each run (sent through AF_PACKET in 1 ms bursts),"
    echo "stamped by \`gateway pktgen\` and read by \`gateway pktgen receive\` on pod-b (medians of"
    echo "the runs' percentiles; lost: frames sent minus received over all runs)."
    echo
    echo "$HEADER"
    [ -z "${PERF:-}" ] || mkdir -p "$PERF"
    for ROUND in $(seq "$RUNS"); do
        for m in "${MODES[@]}"; do
            # shellcheck disable=SC2086 # the mode's words are its arguments
            run_once $m
        done
    done
    for m in "${MODES[@]}"; do summarize "${m%% *}"; done
    echo
    awk 'function r(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "n/a" }
    { m[$1] = $2 } END {
        printf "Ratios of forwarded medians, against the reference fed the same frames: gateway-plain / c-xsk-fwd = %s (target 0.95);", r(m["gateway-plain"], m["c-xsk-fwd"])
        printf " gateway-vxlan / c-xsk-fwd-vxlan = %s; gateway-gtpu / c-xsk-fwd-gtpu = %s;", r(m["gateway-vxlan"], m["c-xsk-fwd-vxlan"]), r(m["gateway-gtpu"], m["c-xsk-fwd-gtpu"])
        printf " gateway-geneve / c-xsk-fwd-geneve = %s (targets 0.9).", r(m["gateway-geneve"], m["c-xsk-fwd-geneve"])
        printf " For the record: xdp-forward-minimal / c-xsk-fwd = %s; gateway-plain / kernel-forward = %s;", r(m["xdp-forward-minimal"], m["c-xsk-fwd"]), r(m["gateway-plain"], m["kernel-forward"])
        printf " gateway-vxlan / kernel-vxlan = %s; gateway-plain-scraped / gateway-plain = %s;", r(m["gateway-vxlan"], m["kernel-vxlan"]), r(m["gateway-plain-scraped"], m["gateway-plain"])
        printf " gateway-af-packet-plain / gateway-plain = %s.\n", r(m["gateway-af-packet-plain"], m["gateway-plain"]) }' "$WORK/medians"
    if [ -n "${PERF:-}" ]; then
        echo
        echo "CPU 1 profiles (perf cpu-clock samples, every round of a mode; symbols above 1 %):"
        for m in "${MODES[@]}"; do
            m=${m%% *}
            ls "$PERF/$m".*.data >/dev/null 2>&1 || continue
            echo
            echo "$m:"
            for f in "$PERF/$m".*.data; do
                perf report -i "$f" --stdio --sort comm,dso,sym 2>/dev/null | grep -v '^#' | grep .
            done | awk '{ p = $1; sub(/%/, "", p); $1 = ""; s[$0] += p; n[$0]++ } END {
                for (k in s) if (s[k] / '"$RUNS"' >= 1) printf "  %5.1f%% %s\n", s[k] / '"$RUNS"', k }' | sort -rn
        done
    fi
} | tee "$WORK/table"

if [ "$APPEND" = --append ]; then
    { echo; cat "$WORK/table"; } >>"$ROOT/BENCHMARKS.md"
    echo "appended to BENCHMARKS.md"
fi
