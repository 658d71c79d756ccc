//! Arbitrary bytes as a received frame through classify, route and rewrite: must not panic,
//! and every packet gets a verdict. Checksums verify under `cfg(fuzzing)` so the fuzzer gets
//! past them.
#![no_main]

use datapath::fib::{Fib, FibBuilder, PortInfo, RouteAction};
use datapath::pipeline::batch::Batch;
use datapath::pipeline::{Next, Pipeline};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn fib() -> &'static Fib {
    static FIB: OnceLock<Fib> = OnceLock::new();
    FIB.get_or_init(|| {
        let mut b = FibBuilder::new();
        for mac in [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 1, 1]] {
            b.add_port(PortInfo {
                mac,
                mtu: 1500,
                promiscuous: true,
            })
            .expect("port");
        }
        b.add_address(0, "192.0.2.1".parse().expect("ip"), 24);
        b.add_address(1, "172.18.0.1".parse().expect("ip"), 16);
        b.add_address(1, "fd00::1".parse().expect("ip"), 64);
        b.add_neighbor("172.18.0.2".parse().expect("ip"), [2, 0, 0, 0, 2, 1]);
        let via = RouteAction::Via(vec![
            ("172.18.0.2".parse().expect("ip"), 1),
            ("172.18.0.3".parse().expect("ip"), 1),
        ]);
        b.add_route("0.0.0.0".parse().expect("ip"), 1, &via, false)
            .expect("route");
        b.add_route(
            "10.0.0.0".parse().expect("ip"),
            8,
            &RouteAction::Drop,
            false,
        )
        .expect("route");
        let v6 = RouteAction::Via(vec![("fd00::2".parse().expect("ip"), 1)]);
        b.add_route("::".parse().expect("ip"), 0, &v6, true)
            .expect("route");
        b.build().expect("fib")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut batch = Batch::new();
    let mut pipe = Pipeline::new();
    // Up to four frames per input, split on a marker byte, so batches mix packets.
    let mut n = 0;
    for frame in data.splitn(4, |&b| b == 0xfe) {
        if batch.bufs[n].load(frame, 0) {
            n += 1;
        }
    }
    batch.len = n;
    batch.in_port = 0;
    let next = pipe.process(&mut batch, fib());
    assert_eq!(next.len(), n);
    for (v, buf) in next.iter().zip(batch.packets()) {
        if let Next::Tx(_) = v {
            assert!(buf.len() >= 14);
        }
        assert_ne!(*v, Next::Route, "every packet gets a verdict");
    }
});
