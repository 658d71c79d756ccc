#!/usr/bin/python3
"""Writes the neighbour flood of the soak test (gateway/tests/soak.rs) to one pcap: ARP and
Neighbor Solicitations from COUNT distinct addresses on the pods segment.

- COUNT/4 ARP requests for the gateway's address (172.18.0.1), each from another sender;
- COUNT/4 gratuitous ARP replies, each announcing another address (never the flow's next
  hop, 172.18.0.2: ARP has no authentication, and a forged reply racing a refresh could win);
- COUNT/2 Neighbor Solicitations for the gateway's address (fd00:b::1), each from another
  source, with a source link-layer address option.

scapy builds one frame of each kind; the rest are copies with the addresses stepped (and the
ICMPv6 checksum recomputed), checked against scapy's own build for the first frames, because
building every frame with scapy would take half a minute.

Usage: soak_neighbors.py OUT.pcap COUNT
"""
import ipaddress
import struct
import sys

from scapy.all import ARP, Ether, IPv6, raw
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr

out, count = sys.argv[1], int(sys.argv[2])
GW4, GW6 = "172.18.0.1", "fd00:b::1"
ATTACKER = "02:66:00:00:00:01"


def arp_request(i):
    # 172.18.1.0 upward: clear of the gateway (.0.1) and the pod host (.0.2); the soak
    # test's absent hosts are 172.18.99.0 and up, gratuitous replies from 172.18.140.0.
    src = str(ipaddress.IPv4Address("172.18.1.0") + i)
    return raw(Ether(src=ATTACKER, dst="ff:ff:ff:ff:ff:ff")
               / ARP(op=1, hwsrc=ATTACKER, psrc=src, pdst=GW4))


def arp_reply(i):
    src = str(ipaddress.IPv4Address("172.18.140.0") + i)
    return raw(Ether(src=ATTACKER, dst="ff:ff:ff:ff:ff:ff")
               / ARP(op=2, hwsrc=ATTACKER, psrc=src, hwdst="ff:ff:ff:ff:ff:ff", pdst=src))


def ns(i):
    src = str(ipaddress.IPv6Address("fd00:b::1:0") + i)
    return raw(Ether(src=ATTACKER, dst="33:33:ff:00:00:01")
               / IPv6(src=src, dst="ff02::1:ff00:1", hlim=255)
               / ICMPv6ND_NS(tgt=GW6) / ICMPv6NDOptSrcLLAddr(lladdr=ATTACKER))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def stepped_arp(template, base, i, offsets):
    f = bytearray(template)
    addr = struct.pack("!I", int(ipaddress.IPv4Address(base)) + i)
    for o in offsets:
        f[o:o + 4] = addr
    return bytes(f)


def stepped_ns(template, i):
    f = bytearray(template)
    src = ipaddress.IPv6Address("fd00:b::1:0") + i
    f[22:38] = src.packed
    icmp = 54
    f[icmp + 2:icmp + 4] = b"\0\0"
    body = bytes(f[icmp:])
    pseudo = f[22:38] + f[38:54] + struct.pack("!I", len(body)) + b"\0\0\0\x3a"
    f[icmp + 2:icmp + 4] = struct.pack("!H", checksum(bytes(pseudo) + body))
    return bytes(f)


t_req, t_rep, t_ns = arp_request(0), arp_reply(0), ns(0)
# ARP sender address at 28; a gratuitous reply repeats it as the target at 38.
frames = []
for i in range(count // 4):
    frames.append(stepped_arp(t_req, "172.18.1.0", i, [28]))
    frames.append(stepped_arp(t_rep, "172.18.140.0", i, [28, 38]))
    frames.append(stepped_ns(t_ns, 2 * i))
    frames.append(stepped_ns(t_ns, 2 * i + 1))
for i in (0, 1, 7, 300):
    assert stepped_arp(t_req, "172.18.1.0", i, [28]) == arp_request(i), i
    assert stepped_arp(t_rep, "172.18.140.0", i, [28, 38]) == arp_reply(i), i
    assert stepped_ns(t_ns, i) == ns(i), i

with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for n, frame in enumerate(frames):
        f.write(struct.pack("<IIII", n // 1000000, n % 1000000, len(frame), len(frame)))
        f.write(frame)
print(len(frames))
