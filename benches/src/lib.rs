//! Inputs shared by the criterion benches and the callgrind driver: a forwarding snapshot of a
//! mid-size cluster and a burst of frames toward it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod rib;

use datapath::craft::{udp_frame, UdpSpec};
use datapath::fib::{Fib, FibBuilder, PortInfo, RouteAction};
use std::net::IpAddr;

/// Packets per burst.
pub const BURST: usize = 32;
/// MAC of the input port.
pub const EXT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Two ports, 256 pod /24s, the service range (IPv4 and IPv6), static neighbours.
pub fn bench_fib() -> Fib {
    let mut b = FibBuilder::new();
    b.add_port(PortInfo {
        mac: EXT_MAC,
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_port(PortInfo {
        mac: [0x02, 0, 0, 0, 1, 1],
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_address(0, "192.0.2.1".parse().unwrap(), 24);
    b.add_address(1, "172.18.0.1".parse().unwrap(), 16);
    b.add_address(1, "fd00:0:0:10c0::1".parse().unwrap(), 64);
    for (i, n) in ["172.18.0.2", "172.18.0.3", "fd00:0:0:10c0::2"]
        .iter()
        .enumerate()
    {
        b.add_neighbor(n.parse().unwrap(), [0x02, 0, 0, 0, 2, i as u8]);
    }
    let via = |a: &str| RouteAction::Via(vec![(a.parse().unwrap(), 1)]);
    for i in 0..=255u8 {
        b.add_route(IpAddr::from([10, 244, i, 0]), 24, &via("172.18.0.2"), false)
            .unwrap();
    }
    b.add_route("10.96.0.0".parse().unwrap(), 12, &via("172.18.0.3"), false)
        .unwrap();
    b.add_route(
        "fd00:0:0:1040::".parse().unwrap(),
        108,
        &via("fd00:0:0:10c0::2"),
        false,
    )
    .unwrap();
    b.build().unwrap()
}

/// A burst of 64-byte-class UDP frames (18 bytes of data) to distinct pod or service addresses.
pub fn bench_frames(ipv6: bool) -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let (src, dst): (IpAddr, IpAddr) = if ipv6 {
                (
                    "fd00:a::10".parse().unwrap(),
                    IpAddr::from([0xfd00, 0, 0, 0x1040, 0, 0, 0, i as u16 + 1]),
                )
            } else {
                (
                    IpAddr::from([192, 0, 2, 10]),
                    IpAddr::from([10, 244, (i * 7) as u8, 9]),
                )
            };
            udp_frame(&UdpSpec {
                src_mac: [0x02, 0, 0, 0, 0, 0x99],
                dst_mac: EXT_MAC,
                src,
                dst,
                src_port: 1000 + i as u16,
                dst_port: 53,
                ttl: 64,
                payload_len: 18,
            })
        })
        .collect()
}
