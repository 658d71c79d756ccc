#!/usr/bin/python3
"""Crafts the tunnel cases no public capture contains, one pcap per case, and a cases.json
naming what the gateway must do with each: "forward" (decapsulated and routed), "local", or
the drop reason. Run by tests/tests/tunnel_crafted.rs with Debian's python3-scapy.

Usage: crafted_tunnels.py OUTDIR
"""
import json
import sys

from scapy.all import IP, UDP, Ether, IPv6, Raw, Dot1Q, wrpcap, ARP
from scapy.layers.inet6 import IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting, ICMPv6EchoRequest
from scapy.layers.vxlan import VXLAN
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer, GTPEchoRequest, IE_Recovery
from scapy.contrib.geneve import GENEVE, GeneveOptions

out = sys.argv[1]
GW_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:99"
L4, L6 = "192.0.2.1", "fd00:a::1"


def eth():
    return Ether(dst=GW_MAC, src=PEER_MAC)


def inner(ttl=64, src="10.46.0.7"):
    return IP(src=src, dst="10.244.1.5", ttl=ttl, id=0x4242) / UDP(sport=1000, dport=53) / Raw(b"query")


def gtp(teid=0x1001, **kw):
    return eth() / IP(src="192.0.2.10", dst=L4) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=teid, **kw)


def vx(flags=0x08, vni=4096, src="192.0.2.20"):
    return eth() / IP(src=src, dst=L4) / UDP(sport=40000, dport=4789) / VXLAN(flags=flags, vni=vni)


def gen(src="192.0.2.40", **kw):
    kw.setdefault("vni", 2)
    kw.setdefault("proto", 0x6558)
    return eth() / IP(src=src, dst=L4) / UDP(sport=40001, dport=6081) / GENEVE(**kw)


def gen_eth():
    return Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:40")


def raw_gen(header_bytes):
    """A Geneve header given as bytes (for cases scapy would fix up), then an inner frame."""
    return eth() / IP(src="192.0.2.40", dst=L4) / UDP(sport=40001, dport=6081) / Raw(bytes(header_bytes) + bytes(gen_eth() / inner()))


def opt(type, data=b"abcd", classid=0x0102):
    return GeneveOptions(classid=classid, type=type, data=data)


def raw_gtp(header_bytes):
    """A GTP-U header given as bytes (for cases scapy would fix up), then the inner packet."""
    payload = bytes(header_bytes) + bytes(inner())
    return eth() / IP(src="192.0.2.10", dst=L4) / UDP(sport=2152, dport=2152) / Raw(payload)


inner_len = len(bytes(inner()))
cases = {
    "gtpu_plain": (gtp(gtp_type=255) / inner(), "forward"),
    "gtpu_sequence": (gtp(gtp_type=255, S=1, seq=7) / inner(), "forward"),
    "gtpu_psc_qfi": (gtp(gtp_type=255, E=1, next_ex=0x85) / GTPPDUSessionContainer(type=1, QFI=9) / inner(), "forward"),
    "gtpu_over_ipv6": (eth() / IPv6(src="fd00:a::10", dst=L6) / UDP(sport=2152, dport=2152)
                       / GTP_U_Header(teid=0x3001, gtp_type=255) / inner(src="10.47.0.7"), "forward"),
    # A UE address outside the session's range: another UE's, or one the core never assigned.
    "gtpu_inner_source_outside_ue": (gtp(gtp_type=255) / inner(src="10.99.0.7"), "gtpu_inner_source_not_ue"),
    "gtpu_inner_ttl_1": (gtp(gtp_type=255) / inner(ttl=1), "ttl_expired"),
    "gtpu_echo_request": (gtp(teid=0, gtp_type=1, S=1, seq=9) / GTPEchoRequest(), "echo_response"),
    "gtpu_echo_request_ipv6": (eth() / IPv6(src="fd00:a::10", dst=L6) / UDP(sport=2152, dport=2152)
                               / GTP_U_Header(teid=0, gtp_type=1, S=1, seq=10) / GTPEchoRequest(), "echo_response"),
    "gtpu_echo_response": (gtp(teid=0, gtp_type=2, S=1, seq=9) / IE_Recovery(restart_counter=0), "gtpu_echo_response"),
    "gtpu_error_indication": (gtp(teid=0, gtp_type=26, S=1) / Raw(b"\x10\x00\x00\x10\x01"), "gtpu_error_indication"),
    "gtpu_end_marker": (gtp(gtp_type=254), "gtpu_end_marker"),
    "gtpu_supported_ext_headers": (gtp(teid=0, gtp_type=31) / Raw(b"\x01\x85"), "gtpu_supported_ext_headers"),
    "gtpu_unknown_message": (gtp(gtp_type=77), "gtpu_unknown_message"),
    "gtpu_teid_zero": (gtp(teid=0, gtp_type=255) / inner(), "gtpu_teid_zero"),
    "gtpu_unknown_teid": (gtp(teid=0x9999, gtp_type=255) / inner(), "gtpu_unknown_teid"),
    "gtpu_unknown_peer": (eth() / IP(src="192.0.2.77", dst=L4) / UDP(sport=2152, dport=2152)
                          / GTP_U_Header(teid=0x1001, gtp_type=255) / inner(), "tunnel_unknown_peer"),
    # Flags E, type 255, Length, TEID, seq, N-PDU, next ext; then one extension.
    "gtpu_unknown_optional_ext": (raw_gtp(b"\x34\xff" + (inner_len + 8).to_bytes(2, "big") + b"\x00\x00\x10\x01"
                                          + b"\x00\x00\x00\x17" + b"\x01\xaa\xbb\x00"), "forward"),
    "gtpu_unknown_required_ext": (raw_gtp(b"\x34\xff" + (inner_len + 8).to_bytes(2, "big") + b"\x00\x00\x10\x01"
                                          + b"\x00\x00\x00\xd7" + b"\x01\xaa\xbb\x00"), "gtpu_unknown_required_ext"),
    "gtpu_zero_ext_length": (raw_gtp(b"\x34\xff" + (inner_len + 8).to_bytes(2, "big") + b"\x00\x00\x10\x01"
                                     + b"\x00\x00\x00\x85" + b"\x00\x10\x09\x00"), "gtpu_zero_ext_length"),
    "gtpu_length_overrun": (raw_gtp(b"\x30\xff" + (inner_len + 9).to_bytes(2, "big") + b"\x00\x00\x10\x01"), "gtpu_bad_length"),
    "gtpu_trailing_bytes_trimmed": (raw_gtp(b"\x30\xff" + inner_len.to_bytes(2, "big") + b"\x00\x00\x10\x01") / Raw(b"\xee" * 7), "forward"),
    "gtpu_version_2": (raw_gtp(b"\x50\xff" + inner_len.to_bytes(2, "big") + b"\x00\x00\x10\x01"), "gtpu_bad_version"),
    "gtpu_inner_not_ip": (gtp(gtp_type=255) / Raw(b"\x00" * 24), "gtpu_inner_not_ip"),
    "udp_bad_checksum": (eth() / IP(src="192.0.2.10", dst=L4) / UDP(sport=2152, dport=2152, chksum=0x1234)
                         / GTP_U_Header(teid=0x1001, gtp_type=255) / inner(), "udp_bad_checksum"),
    "udp_zero_checksum_ipv4_accepted": (eth() / IP(src="192.0.2.10", dst=L4) / UDP(sport=2152, dport=2152, chksum=0)
                                        / GTP_U_Header(teid=0x1001, gtp_type=255) / inner(), "forward"),
    "udp_zero_checksum_ipv6_refused": (eth() / IPv6(src="fd00:a::10", dst=L6) / UDP(sport=2152, dport=2152, chksum=0)
                                       / GTP_U_Header(teid=0x3001, gtp_type=255) / inner(), "udp_zero_checksum_ipv6"),
    "outer_fragment": (eth() / IP(src="192.0.2.10", dst=L4, flags="MF") / UDP(sport=2152, dport=2152)
                       / GTP_U_Header(teid=0x1001, gtp_type=255) / inner(), "outer_fragment"),
    "vxlan_plain": (vx() / Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:98") / inner(), "forward"),
    "vxlan_inner_vlan": (vx() / Ether(dst="02:00:00:00:00:01") / Dot1Q(vlan=10) / inner(), "forward"),
    "vxlan_inner_qinq": (vx() / Ether(dst="02:00:00:00:00:01", type=0x88a8) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / inner(), "forward"),
    "vxlan_i_flag_unset": (vx(flags=0x00) / Ether() / inner(), "vxlan_no_vni"),
    "vxlan_unknown_vni": (vx(vni=7) / Ether() / inner(), "vxlan_unknown_vni"),
    "vxlan_unknown_peer": (vx(src="192.0.2.77") / Ether() / inner(), "tunnel_unknown_peer"),
    "vxlan_inner_arp": (vx() / Ether() / ARP(), "vxlan_inner_not_ip"),
    "vxlan_truncated_inner": (vx() / Raw(b"\x02\x00\x00"), "vxlan_inner_too_short"),
    "ipip_4in4": (eth() / IP(src="192.0.2.30", dst=L4, proto=4) / inner(), "forward"),
    "ipip_bad_inner_ihl": (eth() / IP(src="192.0.2.30", dst=L4, proto=4) / Raw(b"\x44" + bytes(inner())[1:]), "ipv4_bad_ihl"),
    "ipip_inner_ttl_1": (eth() / IP(src="192.0.2.30", dst=L4, proto=4) / inner(ttl=1), "ttl_expired"),
    "ipip_unknown_peer": (eth() / IP(src="192.0.2.77", dst=L4, proto=4) / inner(), "tunnel_unknown_peer"),
    "ipip_4in6_after_hbh_and_dstopt": (eth() / IPv6(src="fd00:a::30", dst=L6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(nh=4)
                                       / inner(), "forward"),
    "ipip_4in6_after_routing_sl0": (eth() / IPv6(src="fd00:a::30", dst=L6) / IPv6ExtHdrRouting(segleft=0, nh=4) / inner(), "forward"),
    # Segments left: the gateway is only a waypoint (RFC 8200 4.4), never the tunnel endpoint.
    "ipip_4in6_routing_segments_left": (eth() / IPv6(src="fd00:a::30", dst=L6)
                                        / IPv6ExtHdrRouting(segleft=1, addresses=["fd00:b::9"], nh=4) / inner(),
                                        "ipv6_segments_left"),
    "gtpu6_routing_segments_left": (eth() / IPv6(src="fd00:a::10", dst=L6)
                                    / IPv6ExtHdrRouting(segleft=1, addresses=["fd00:b::9"]) / UDP(sport=2152, dport=2152)
                                    / GTP_U_Header(teid=0x3001, gtp_type=255) / inner(),
                                    "ipv6_segments_left"),
    # Geneve (RFC 8926) from Cilium-like peers: Ethernet inside (0x6558) or bare IP.
    "geneve_ethernet": (gen() / gen_eth() / inner(), "forward"),
    "geneve_inner_vlan": (gen() / gen_eth() / Dot1Q(vlan=10) / inner(), "forward"),
    "geneve_ip_inside": (gen(proto=0x0800) / inner(), "forward"),
    "geneve_over_ipv6_on_its_own_port": (eth() / IPv6(src="fd00:a::40", dst=L6) / UDP(sport=40001, dport=6082)
                                         / GENEVE(vni=5, proto=0x6558) / gen_eth() / inner(), "forward"),
    "geneve_non_critical_options_skipped": (gen(options=opt(0x01) / opt(0x7f, b"") / opt(0x02, b"12345678"))
                                            / gen_eth() / inner(), "forward"),
    "geneve_critical_option": (gen(critical=1, options=opt(0x01) / opt(0x80)) / gen_eth() / inner(), "geneve_critical_option"),
    # The C bit is a hint; the option's own critical bit decides.
    "geneve_critical_option_c_bit_clear": (gen(options=opt(0x85)) / gen_eth() / inner(), "geneve_critical_option"),
    # Opt Len 2 words; the option announces 2 words of data after its header: past the area.
    "geneve_option_overrun": (raw_gen(b"\x02\x00\x65\x58\x00\x00\x02\x00" + b"\x01\x02\x01\x02abcd"), "geneve_option_overrun"),
    "geneve_opt_len_past_datagram": (raw_gen(b"\x3f\x00\x65\x58\x00\x00\x02\x00"), "geneve_too_short"),
    "geneve_truncated_header": (eth() / IP(src="192.0.2.40", dst=L4) / UDP(sport=40001, dport=6081) / Raw(b"\x00\x00\x65"),
                                "geneve_too_short"),
    "geneve_version_1": (raw_gen(b"\x40\x00\x65\x58\x00\x00\x02\x00"), "geneve_bad_version"),
    "geneve_oam": (gen(oam=1) / gen_eth() / inner(), "geneve_oam"),
    "geneve_unknown_vni": (gen(vni=3) / gen_eth() / inner(), "geneve_unknown_vni"),
    "geneve_unknown_peer": (gen(src="192.0.2.77") / gen_eth() / inner(), "tunnel_unknown_peer"),
    "geneve_inner_arp": (gen() / gen_eth() / ARP(), "geneve_inner_not_ip"),
    "geneve_unknown_protocol": (gen(proto=0x88cc) / Raw(b"\x00" * 40), "geneve_inner_not_ip"),
    "geneve_truncated_inner_ethernet": (gen() / Raw(b"\x02\x00\x00"), "geneve_inner_too_short"),
    # No stack runs inside tunnels: inner packets for the gateway or link scope stop, counted.
    "ipip_inner_to_gateway": (eth() / IP(src="192.0.2.30", dst=L4, proto=4)
                              / IP(src="10.46.0.7", dst="172.18.0.1") / UDP() / Raw(b"x"), "tunnel_inner_local"),
    "vxlan_inner_ipv6_multicast": (vx() / Ether(dst="33:33:00:00:00:16") / IPv6(src="fe80::1", dst="ff02::16")
                                   / ICMPv6EchoRequest(), "tunnel_inner_local"),
}

manifest = []
for name, (pkt, expect) in cases.items():
    wrpcap(f"{out}/{name}.pcap", [pkt])
    manifest.append({"name": name, "expect": expect})
with open(f"{out}/cases.json", "w") as f:
    json.dump(manifest, f, indent=1)
print(f"{len(manifest)} cases")
