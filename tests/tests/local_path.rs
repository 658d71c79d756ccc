//! The worker's side of the control path: frames for the gateway go up to the control thread
//! while its pool has room and are counted `local_queue_full` beyond; frames queued down
//! leave through the port they name; drops the kernel reports are counted
//! `kernel_rx_dropped`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::fib::{Fib, FibBuilder, PortInfo};
use datapath::local::LocalPath;
use datapath::pipeline::batch::Batch;
use datapath::pipeline::drop::DropReason;
use datapath::port::mem::MemPort;
use datapath::port::Port;
use datapath::stats::{snapshot, PortStats, Stats};
use datapath::worker::Worker;
use std::sync::Arc;

const EXT: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn fib() -> Fib {
    let mut b = FibBuilder::new();
    b.add_port(PortInfo {
        mac: EXT,
        mtu: 1500,
        promiscuous: false,
    })
    .unwrap();
    b.add_address(0, "192.0.2.1".parse().unwrap(), 24);
    b.build().unwrap()
}

/// An ARP request for the gateway's address, from 192.0.2.10.
fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([2, 0, 0, 0, 0, 0x99, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend([
        2, 0, 0, 0, 0, 0x99, 192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1,
    ]);
    f.resize(60, 0);
    f
}

#[test]
fn frames_for_the_gateway_go_up_until_the_pool_is_empty_then_are_counted() {
    let fib = fib();
    let stats = Arc::new(Stats::default());
    let port = MemPort::new((0..3).map(|_| arp_request()));
    let path = LocalPath::new(2);
    let mut w = Worker::new(vec![Box::new(port)], 32, stats.clone()).with_local(path.clone());
    w.run_to_end(&fib).unwrap();
    let s = &snapshot([&*stats], 1)[0];
    assert_eq!(s.local, 2);
    assert_eq!(s.drops_of(DropReason::LocalQueueFull), 1);
    let up = path.take_up().unwrap();
    assert_eq!((up.port, up.bytes()), (0, &arp_request()[..]));
    // A reply queued down leaves through port 0 on the next poll.
    path.recycle(up);
    assert!(path.send_down(0, 60, |b| b.copy_from_slice(&arp_request())));
    w.poll(&fib);
    let s = &snapshot([&*stats], 1)[0];
    assert_eq!(s.tx_packets, 1);
    let mem = w
        .port_mut(0)
        .unwrap()
        .as_any_mut()
        .downcast_mut::<MemPort>()
        .unwrap();
    assert_eq!(mem.tx.len(), 1);
}

/// A datagram to the gateway's own address (not ARP or NDP), from 192.0.2.10.
fn ping() -> Vec<u8> {
    datapath::craft::udp_frame(&datapath::craft::UdpSpec {
        src_mac: [2, 0, 0, 0, 0, 0x99],
        dst_mac: EXT,
        src: "192.0.2.10".parse().unwrap(),
        dst: "192.0.2.1".parse().unwrap(),
        src_port: 1,
        dst_port: 7,
        ttl: 64,
        payload_len: 18,
    })
}

#[test]
fn a_ping_flood_is_rate_limited_and_never_takes_arps_buffers() {
    let fib = fib();
    let stats = Arc::new(Stats::default());
    // 2000 frames for the gateway, then an ARP request: the ARP must still go up.
    let frames = (0..2000)
        .map(|_| ping())
        .chain(std::iter::once(arp_request()));
    let port = MemPort::new(frames);
    let path = LocalPath::new(64);
    let mut w = Worker::new(vec![Box::new(port)], 32, stats.clone()).with_local(path.clone());
    w.run_to_end(&fib).unwrap();
    let s = &snapshot([&*stats], 1)[0];
    // The default reply limit passes its burst of 50 (plus what refills while the test runs)
    // and sheds the rest, counted; nothing waits without bound.
    let shed = s.drops_of(DropReason::LocalRateLimited);
    assert!(shed >= 1800, "shed {shed}");
    assert_eq!(
        s.local + shed + s.drops_of(DropReason::LocalQueueFull),
        2001
    );
    let up = path.take_up_neighbor().expect("the ARP request went up");
    assert_eq!(up.bytes(), &arp_request()[..]);
}

/// A port whose kernel reports drops: 7, then 10 in all.
struct Dropping(u64);

impl Port for Dropping {
    fn rx(&mut self, batch: &mut Batch, _: usize, _: &PortStats) -> usize {
        batch.len = 0;
        0
    }
    fn tx(&mut self, _: &mut Batch, idx: &[u8]) -> usize {
        idx.len()
    }
    fn kernel_drops(&mut self) -> u64 {
        self.0 += if self.0 == 0 { 7 } else { 3 };
        self.0
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[test]
fn kernel_drops_are_counted_once_each() {
    let stats = Arc::new(Stats::default());
    let mut w = Worker::new(vec![Box::new(Dropping(0))], 32, stats.clone());
    w.sync_kernel_drops();
    w.sync_kernel_drops();
    let s = &snapshot([&*stats], 1)[0];
    assert_eq!(s.drops_of(DropReason::KernelRxDropped), 10);
}
