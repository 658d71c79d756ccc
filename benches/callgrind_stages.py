#!/usr/bin/python3
"""Instructions a packet by pipeline stage, from two callgrind runs of one binary.

Usage: callgrind_stages.py BINARY SHORT.out LONG.out PACKETS [detail]

SHORT and LONG are `valgrind --tool=callgrind --dump-instr=yes --compress-pos=no` runs that
differ only in how many packets they process (PACKETS more in LONG), so their difference is
the per-packet cost without start-up. Each instruction's cost goes to the stage it was
inlined into: the function that `Pipeline::run` (or a worker's poll) calls, read from the
binary's inline debug information with addr2line. Code that is not inlined (the wide
checksum sum, a tunnel kind's decap, memcpy) is listed under its own name.
"""
import collections
import subprocess
import sys


def self_costs(path, binary):
    """Self cost per instruction address of `binary` (callgrind gives addresses relative to
    the object; the inclusive costs of calls are skipped)."""
    costs = collections.Counter()
    names, ours, skip_next, cost_at = {}, False, False, 1
    with open(path) as f:
        for line in f:
            if line.startswith("positions:"):
                cost_at = len(line.split()) - 1
            elif line.startswith(("ob=", "cob=")):
                # An object is named once, on whichever line mentions it first.
                ident, _, name = line.split("=", 1)[1].strip().partition(" ")
                if name:
                    names[ident] = name
                if line.startswith("ob="):
                    ours = names.get(ident, "").endswith("/" + binary.split("/")[-1])
            elif line.startswith("calls="):
                skip_next = True
            elif line.startswith("0x"):
                if skip_next:
                    skip_next = False
                    continue
                fields = line.split()
                if ours and len(fields) > cost_at:
                    costs[int(fields[0], 16)] += int(fields[cost_at])
    return costs


# Inline frames under `run` that name a stage, in the words BENCHMARKS.md uses.
STAGES = [
    ("classify::classify_one", "classify (outer, or the plain packet)"),
    ("classify::classify_ip", "classify an IP header"),
    ("decap::decap_one", "decap: outer and UDP checks, kind, peer, inner source"),
    ("route::resolve_one", "route: next hop and rewrite"),
    ("lookup_bulk", "route: LPM lookup"),
    ("rewrite::", "rewrite"),
    ("classify::source_key", "reverse-path key"),
]


def short(name):
    """A function's name without its crate, generics and closure marks."""
    name = name.split("::<")[0].replace("datapath::", "").replace("::{{closure}}", "")
    return name.replace("pipeline::", "")


# Functions inside a stage worth naming in its breakdown.
PARTS = [
    "classify_ip", "martian4", "verify_checksum", "sum_header", "pseudo_header", "skip_tags",
    "is_gtpu_local", "udp_kind", "new_checked", "decrement_ttl", "reframe", "nexthop",
]


def stage(frames, detail):
    """The stage for an inline chain (innermost first); with `detail`, also the named parts
    (PARTS) it inlined on the way to the instruction."""
    names = [f for f in frames if f and f != "??"]
    outer = names[-1] if names else "?"
    if "Pipeline::run" not in outer:
        # Not inlined into the pipeline: its own function.
        return "call " + short(outer)
    # The frames `run` inlined, outermost first.
    inner = list(reversed(names[:-1]))
    for k, name in enumerate(inner):
        for key, label in STAGES:
            if key in name:
                parts = []
                for f in inner[k + 1 :]:
                    part = next((p for p in PARTS if "::" + p in f), None)
                    if detail and part and part not in parts:
                        parts.append(part)
                return " > ".join([label] + parts)
    return "pipeline loop (batch bookkeeping, verdicts, counters)"


def main():
    binary, short_run, long_run, packets = sys.argv[1:5]
    packets = int(packets)
    detail = sys.argv[5:] == ["detail"]
    a, b = self_costs(short_run, binary), self_costs(long_run, binary)
    diff = {addr: b[addr] - a.get(addr, 0) for addr in b}
    addrs = sorted(addr for addr, c in diff.items() if c != 0)
    out = subprocess.run(
        ["addr2line", "-i", "-f", "-C", "-a", "-e", binary] + [hex(x) for x in addrs],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    # Output: an address line, then (function, file:line) pairs, innermost first.
    chains, cur = {}, None
    i = 0
    while i < len(out):
        line = out[i]
        if line.startswith("0x") and (i + 1 >= len(out) or not out[i + 1].startswith("/")):
            cur = int(line, 16)
            chains[cur] = []
            i += 1
            continue
        if cur is not None:
            chains[cur].append(line)
        i += 2
    by_stage = collections.Counter()
    for addr in addrs:
        by_stage[stage(chains.get(addr, ["?"]), detail)] += diff[addr]
    total = sum(by_stage.values())
    for name, c in by_stage.most_common():
        if abs(c) / packets >= 1.5:
            print(f"{c / packets:8.1f}  {name}")
    print(f"{total / packets:8.1f}  total")


if __name__ == "__main__":
    main()
