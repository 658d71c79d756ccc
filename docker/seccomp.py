#!/usr/bin/python3
"""Prints a seccomp profile for the gateway's container: the container runtime's default
profile (podman's containers-common one unless a path is given) with bpf(2) also allowed to
a process that holds CAP_BPF.

The default of podman 4 allows bpf(2) only with CAP_SYS_ADMIN. So a gateway given exactly
NET_ADMIN, NET_RAW, BPF and IPC_LOCK cannot load its XDP program, and opening an AF_XDP port
fails with EPERM. This keeps the rest of the default and grants no SYS_ADMIN.

Usage: docker/seccomp.py [DEFAULT_PROFILE] > gateway-seccomp.json
"""
import json
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/containers/seccomp.json"
profile = json.load(open(src))
granted = {"bpf"}
# The default denies it with EPERM to anything without CAP_SYS_ADMIN, in a rule that would
# win over the grant below: take it out of that rule (anything still unallowed gets the profile's
# default action).
for rule in profile["syscalls"]:
    if rule["action"] != "SCMP_ACT_ALLOW" and granted & set(rule["names"]):
        rule["names"] = [n for n in rule["names"] if n not in granted]
profile["syscalls"].append({
    "names": ["bpf"],
    "action": "SCMP_ACT_ALLOW",
    "includes": {"caps": ["CAP_BPF"]},
})
json.dump(profile, sys.stdout, indent=1)
print()
