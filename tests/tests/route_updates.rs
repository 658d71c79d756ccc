//! Routes change while a worker forwards: through the FIB's single writer, between polls, the
//! worker starts and stops forwarding a prefix with no rebuild and no lost packets elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::fib::{FibBuilder, PortInfo, RouteAction};
use datapath::pipeline::drop::DropReason;
use datapath::port::mem::MemPort;
use datapath::port::Port;
use datapath::stats::Stats;
use datapath::worker::Worker;
use gateway_tests::{mem_port, udp_to};
use std::sync::Arc;

const EXT: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn frame(dst: [u8; 4]) -> Vec<u8> {
    udp_to(EXT, dst)
}

#[test]
fn a_route_added_and_removed_at_run_time_takes_effect_on_the_next_poll() {
    let mut b = FibBuilder::new();
    b.add_port(PortInfo {
        mac: EXT,
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_port(PortInfo {
        mac: [2, 0, 0, 0, 1, 1],
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_address(0, "192.0.2.1".parse().unwrap(), 24);
    b.add_address(1, "172.18.0.1".parse().unwrap(), 16);
    b.add_neighbor("172.18.0.2".parse().unwrap(), [2, 0, 0, 0, 2, 1]);
    b.add_route(
        "10.244.0.0".parse().unwrap(),
        16,
        &RouteAction::Via(vec![("172.18.0.2".parse().unwrap(), 1)]),
        false,
    )
    .unwrap();
    let nh = b.next_hop_index("172.18.0.2".parse().unwrap(), 1, false);
    let (fib, mut writers) = b.build_with_writers().unwrap();

    let stats = Arc::new(Stats::default());
    let ports: Vec<Box<dyn Port>> = vec![Box::new(MemPort::new([])), Box::new(MemPort::new([]))];
    let mut w = Worker::new(ports, 32, stats.clone());
    let send = |w: &mut Worker, dst: [u8; 4]| {
        mem_port(w, 0).push_rx(frame(dst));
        w.poll(&fib);
    };
    let drops = |r| stats.ports[0].drops[r as usize].get();

    send(&mut w, [10, 50, 0, 1]);
    assert_eq!(
        drops(DropReason::NoRoute),
        1,
        "no route for 10.50.0.0/16 yet"
    );

    writers
        .v4
        .insert(u32::from_be_bytes([10, 50, 0, 0]), 16, nh)
        .unwrap();
    send(&mut w, [10, 50, 0, 1]);
    send(&mut w, [10, 244, 0, 1]);
    assert_eq!(
        stats.ports[1].tx_packets.get(),
        2,
        "the new route forwards, the old one still does"
    );

    writers.v4.remove(u32::from_be_bytes([10, 50, 0, 0]), 16);
    send(&mut w, [10, 50, 0, 1]);
    assert_eq!(drops(DropReason::NoRoute), 2, "removed again");
    assert_eq!(mem_port(&mut w, 1).tx.len(), 2);
}
