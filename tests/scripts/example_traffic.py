#!/usr/bin/python3
"""Traffic for each file of config/examples/, crafted with scapy, and the check of where it went.

  example_traffic.py craft EXAMPLE DIR   writes DIR/<port>-in.pcap for each port that receives,
                                         DIR/neighbors.json (the next hops' MACs, which the test
                                         adds as static entries: a pcap port cannot answer ARP)
                                         and DIR/cases.json
  example_traffic.py check EXAMPLE DIR   reads DIR/<port>-out.pcap and checks that each case's
                                         packet left where the example says, as it says
                                         (next hop MAC, tunnel, TEID/VNI, peer); exits 1 if not

Each case's packet carries a marker ("case-N") in its payload. A case names either the output
port and what the frame must look like there, or the drop reason it must be counted under
(checked by tests/tests/examples.rs against the gateway's counters).
Run by tests/tests/examples.rs with Debian's python3-scapy.
"""
import json
import sys

from scapy.all import IP, UDP, Ether, IPv6, Raw, rdpcap, wrpcap
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.layers.vxlan import VXLAN

GW_EXT, GW_PODS = "02:00:00:00:00:01", "02:00:00:00:01:01"
OUTSIDE = "02:00:00:00:00:99"


def mac_of(address):
    """A next hop's MAC, derived from its address so that the check knows it."""
    digits = sum(ord(c) * (i + 1) for i, c in enumerate(address)) & 0xFFFFFF
    return "02:aa:00:%02x:%02x:%02x" % (digits >> 16, (digits >> 8) & 0xFF, digits & 0xFF)


def udp(src, dst, n):
    return IP(src=src, dst=dst) / UDP(sport=40000 + n, dport=5000) / Raw(b"case-%d" % n)


def udp6(src, dst, n):
    return IPv6(src=src, dst=dst) / UDP(sport=40000 + n, dport=5000) / Raw(b"case-%d" % n)


def from_vtep(peer, port, vni, inner_src_mac, inner):
    """A VXLAN frame from the VTEP `peer` to the gateway's ext address."""
    return (Ether(dst=GW_EXT, src=OUTSIDE) / IP(src=peer, dst="192.0.2.1")
            / UDP(sport=51000, dport=port) / VXLAN(vni=vni)
            / Ether(dst="66:1e:02:00:00:01", src=inner_src_mac) / inner)


def calico():
    n4, n5 = "10.10.0.11", "10.10.0.12"
    vtep, ipip_peer = "192.0.2.20", "192.0.2.30"
    return {
        "neighbors": [(n4, "pods"), (n5, "pods"), (vtep, "ext"), (ipip_peer, "ext")],
        "cases": [
            ("ext", lambda n: from_vtep(vtep, 4789, 4096, "66:1e:02:00:00:14",
                                        udp("172.30.0.5", "172.18.3.4", n)),
             {"out": "pods", "via": n4}),
            ("ext", lambda n: Ether(dst=GW_EXT, src=OUTSIDE) / IP(src=ipip_peer, dst="192.0.2.1", proto=4)
             / udp("172.31.0.9", "172.19.1.2", n),
             {"out": "pods", "via": n5}),
            ("ext", lambda n: Ether(dst=GW_EXT, src=OUTSIDE) / udp("192.0.2.77", "10.96.0.10", n),
             {"out": "pods", "via": n4}),
            ("ext", lambda n: Ether(dst=GW_EXT, src=OUTSIDE) / udp("192.0.2.77", "8.8.8.8", n),
             {"drop": "no_route"}),
            ("pods", lambda n: Ether(dst=GW_PODS, src=mac_of(n4)) / udp("172.18.3.4", "172.30.0.5", n),
             {"out": "ext", "via": vtep, "tunnel": "vxlan", "vni": 4096, "udp_port": 4789,
              "peer": vtep, "inner_mac": "66:1e:02:00:00:14"}),
            ("pods", lambda n: Ether(dst=GW_PODS, src=mac_of(n5)) / udp("172.19.1.2", "172.31.0.9", n),
             {"out": "ext", "via": ipip_peer, "tunnel": "ipip", "peer": ipip_peer}),
        ],
    }


def flannel():
    n1, n2 = "10.10.0.11", "10.10.0.12"
    a, b = "192.0.2.40", "192.0.2.41"
    return {
        "neighbors": [(n1, "pods"), (n2, "pods"), (a, "ext"), (b, "ext")],
        "cases": [
            ("ext", lambda n: from_vtep(a, 8472, 1, "0a:58:0a:f5:00:00",
                                        udp("10.245.0.3", "10.244.1.7", n)),
             {"out": "pods", "via": n2}),
            # Calico's port is not Flannel's: not a tunnel here, so a UDP datagram for the
            # gateway itself, which no socket listens on.
            ("ext", lambda n: from_vtep(a, 4789, 1, "0a:58:0a:f5:00:00",
                                        udp("10.245.0.3", "10.244.1.7", n)),
             {"local": True}),
            ("pods", lambda n: Ether(dst=GW_PODS, src=mac_of(n1)) / udp("10.244.0.5", "10.245.1.3", n),
             {"out": "ext", "via": b, "tunnel": "vxlan", "vni": 1, "udp_port": 8472, "peer": b,
              "inner_mac": "0a:58:0a:f5:01:00"}),
        ],
    }


def gtpu():
    node, cnf, peer = "10.10.0.11", "10.10.0.50", "172.16.135.60"
    n3 = "02:00:00:00:00:01"

    def gpdu(inner):
        return (Ether(dst=n3, src=OUTSIDE) / IP(src=peer, dst="172.16.135.1")
                / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=0x1001, gtp_type=255) / inner)

    return {
        "neighbors": [(node, "pods"), (cnf, "pods"), (peer, "n3")],
        "cases": [
            ("n3", lambda n: gpdu(udp("10.46.0.7", "10.244.2.2", n)), {"out": "pods", "via": node}),
            ("n3", lambda n: gpdu(udp("10.99.0.7", "10.244.2.2", n)),
             {"drop": "gtpu_inner_source_not_ue"}),
            ("pods", lambda n: Ether(dst=GW_PODS, src=mac_of(node)) / udp("10.244.2.2", "10.46.0.7", n),
             {"out": "n3", "via": peer, "tunnel": "gtpu", "teid": 0x2001, "qfi": 9, "peer": peer}),
            # A UE's packet to the public prefix behind the CNF pod.
            ("n3", lambda n: gpdu(udp("10.46.0.9", "198.51.100.7", n)), {"out": "pods", "via": cnf}),
        ],
    }


def kube_router_ipv6():
    node1, node2 = "fd00:0:0:1000::11", "fd00:0:0:1001::11"
    return {
        "neighbors": [(node1, "pods"), (node2, "pods")],
        "cases": [
            ("ext", lambda n: Ether(dst=GW_EXT, src=OUTSIDE) / udp6("fd00:a::10", "fd00:0:0:10c1::5", n),
             {"out": "pods", "via": node2}),
            ("ext", lambda n: Ether(dst=GW_EXT, src=OUTSIDE) / udp6("fd00:a::10", "fd00:0:0:10c0::8", n),
             {"out": "pods", "via": node1}),
            ("ext", lambda n: Ether(dst=GW_EXT, src=OUTSIDE) / udp6("fd00:a::10", "fd00:0:0:1040::1", n),
             {"out": "pods", "via": node1}),
            ("ext", lambda n: Ether(dst=GW_EXT, src=OUTSIDE) / udp6("fd00:a::10", "fd00:0:0:2000::1", n),
             {"drop": "no_route"}),
        ],
    }


EXAMPLES = {"calico": calico, "flannel": flannel, "gtpu": gtpu, "kube-router-ipv6": kube_router_ipv6}


def craft(example, out):
    spec = EXAMPLES[example]()
    frames = {}
    cases = []
    for n, (port, make, expect) in enumerate(spec["cases"]):
        frames.setdefault(port, []).append(make(n))
        cases.append(dict(expect, case=n, port_in=port))
    for port, fs in frames.items():
        wrpcap("%s/%s-in.pcap" % (out, port), fs)
    with open(out + "/neighbors.json", "w") as f:
        json.dump([{"address": a, "mac": mac_of(a), "port": p} for a, p in spec["neighbors"]], f)
    with open(out + "/cases.json", "w") as f:
        json.dump(cases, f)


def marker_of(pkt):
    raw = bytes(pkt)
    i = raw.find(b"case-")
    if i < 0:
        return None
    digits = raw[i + 5:i + 8].split(b"\x00")[0]
    num = b""
    for c in digits:
        if 48 <= c <= 57:
            num += bytes([c])
        else:
            break
    return int(num) if num else None


def check(example, out):
    cases = json.load(open(out + "/cases.json"))
    mine = {"ext": GW_EXT, "n3": GW_EXT, "pods": GW_PODS}
    seen = {}
    for port in {c["out"] for c in cases if "out" in c} | {"ext", "pods", "n3"}:
        try:
            pkts = rdpcap("%s/%s-out.pcap" % (out, port))
        except FileNotFoundError:
            continue
        for p in pkts:
            m = marker_of(p)
            if m is not None:
                seen.setdefault(m, []).append((port, p))
    bad = []
    for c in cases:
        n, got = c["case"], seen.get(c["case"], [])
        if "local" in c:
            continue  # for the gateway itself: counted as local; an ICMP error may quote it
        if "out" not in c:
            if got:
                bad.append("case %d: expected no output, got %d frame(s) on %s" % (n, len(got), got[0][0]))
            continue
        if len(got) != 1:
            bad.append("case %d: expected one frame on %s, got %d" % (n, c["out"], len(got)))
            continue
        port, p = got[0]
        why = []
        if port != c["out"]:
            why.append("left on %s" % port)
        if p[Ether].dst != mac_of(c["via"]):
            why.append("to MAC %s, not %s's %s" % (p[Ether].dst, c["via"], mac_of(c["via"])))
        if p[Ether].src != mine[port]:
            why.append("from MAC %s" % p[Ether].src)
        kind = c.get("tunnel")
        if kind == "vxlan":
            if VXLAN not in p or p[VXLAN].vni != c["vni"] or p[UDP].dport != c["udp_port"]:
                why.append("not VXLAN VNI %d on port %d: %r" % (c["vni"], c["udp_port"], p))
            elif p[IP].dst != c["peer"] or p[VXLAN][Ether].dst != c["inner_mac"]:
                why.append("VXLAN to %s / inner MAC %s" % (p[IP].dst, p[VXLAN][Ether].dst))
        elif kind == "ipip":
            if p[IP].proto != 4 or p[IP].dst != c["peer"] or IP not in p[IP].payload:
                why.append("not IPIP to %s: %r" % (c["peer"], p))
        elif kind == "gtpu":
            if GTP_U_Header not in p or p[GTP_U_Header].teid != c["teid"] or p[IP].dst != c["peer"]:
                why.append("not a G-PDU with TEID %#x to %s: %r" % (c["teid"], c["peer"], p))
            elif GTPPDUSessionContainer not in p or p[GTPPDUSessionContainer].QFI != c["qfi"]:
                why.append("no PDU Session Container with QFI %d" % c["qfi"])
        else:
            outer = p[Ether].payload
            if isinstance(outer, IP) and (outer.proto == 4 or UDP in outer and outer[UDP].dport in (2152, 4789, 8472)):
                why.append("encapsulated, expected plain: %r" % p)
        if why:
            bad.append("case %d: %s" % (n, "; ".join(why)))
        else:
            print("case %d: %s -> %s via %s%s" % (n, c["port_in"], port, c["via"],
                                                 " in " + kind if kind else ""))
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    mode, example, out = sys.argv[1:4]
    if mode == "craft":
        craft(example, out)
    else:
        sys.exit(check(example, out))
