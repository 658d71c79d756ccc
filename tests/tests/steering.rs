//! Software steering in memory, deterministic: several workers polled in turn on one thread,
//! every frame arriving on worker 0's external port (as RSS puts one GTP-U peer on one queue),
//! `steering = "inner"` on that port. Every packet comes out exactly once, each flow from one
//! worker and in order, and the flows are spread over the workers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::craft::{gtpu_payload, ipv4_frame, ipv4_udp_frame, vxlan_payload};
use datapath::framemem::FrameMemory;
use datapath::port::handoff::{self, Handoff};
use datapath::port::mem::MemPort;
use datapath::port::Port;
use datapath::stats::{Stats, MAX_PORTS};
use datapath::worker::Worker;
use gateway_tests::mem_port;
use std::collections::HashMap;
use std::sync::Arc;

const EXT: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
const FLOWS: usize = 64;
const PER_FLOW: usize = 40;

/// Two memory ports, the pods behind the second, 64 GTP-U sessions, a VXLAN tunnel and an
/// IPIP tunnel from 192.0.2.10.
fn config() -> config::Config {
    let mut s = String::from(
        r#"
[gateway]
name = "steer"
workers = [0]

[[port]]
name = "ext"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
steering = "inner"

[[port]]
name = "pods"
driver = "memory"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16"]

[[neighbor]]
address = "172.18.0.2"
mac = "02:00:00:00:02:01"
port = "pods"

[[neighbor]]
address = "192.0.2.10"
mac = "02:00:00:00:00:99"
port = "ext"

[[route]]
prefix = "10.244.0.0/16"
via = "172.18.0.2"

[[tunnel]]
name = "calico"
kind = "vxlan"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.10"]
peer_mac = "02:00:00:00:09:09"

[[tunnel]]
name = "kr"
kind = "ipip"
local = "192.0.2.1"
peers = ["192.0.2.10"]

[[tunnel]]
name = "ran"
kind = "gtpu"
local = "192.0.2.1"
peer = "192.0.2.10"
"#,
    );
    for k in 0..FLOWS {
        s.push_str(&format!(
            "[[tunnel.session]]\nue = \"10.46.{k}.0/24\"\nteid_in = {}\nteid_out = {}\n",
            0x1000 + k,
            0x2000 + k
        ));
    }
    config::parse_and_validate(
        &s,
        "steering.toml",
        std::path::Path::new("."),
        config::Machine { cores: 4 },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Clone, Copy, Debug)]
enum Tunnel {
    Gtpu,
    Vxlan,
    Ipip,
}

/// Frame `seq` of flow `flow`: the inner packet carries both in its UDP payload.
fn frame(t: Tunnel, flow: usize, seq: usize) -> Vec<u8> {
    let peer = u32::from_be_bytes([192, 0, 2, 10]);
    let gw = u32::from_be_bytes([192, 0, 2, 1]);
    let pod = u32::from_be_bytes([10, 244, 1, 5]);
    let payload = format!("f{flow:03}s{seq:05}");
    match t {
        Tunnel::Gtpu => {
            // Every session's UE sends the same flow: only the TEID tells them apart.
            let ue = u32::from_be_bytes([10, 46, flow as u8, 7]);
            let inner = ipv4_udp_frame([0; 6], [0; 6], (ue, 1000), (pod, 53), payload.as_bytes());
            let g = gtpu_payload(0x1000 + flow as u32, None, &inner[14..]);
            ipv4_udp_frame(PEER, EXT, (peer, 2152), (gw, 2152), &g)
        }
        Tunnel::Vxlan => {
            // A VTEP that does not vary the outer source port.
            let src = u32::from_be_bytes([10, 99, 0, 1]);
            let inner = ipv4_udp_frame(
                [2, 0, 0, 0, 9, 9],
                [2, 0, 0, 0, 9, 8],
                (src, 2000 + flow as u16),
                (pod, 53),
                payload.as_bytes(),
            );
            ipv4_udp_frame(
                PEER,
                EXT,
                (peer, 4789),
                (gw, 4789),
                &vxlan_payload(4096, &inner),
            )
        }
        Tunnel::Ipip => {
            let src = u32::from_be_bytes([10, 99, 1, flow as u8]);
            let inner = ipv4_udp_frame([0; 6], [0; 6], (src, 3000), (pod, 53), payload.as_bytes());
            ipv4_frame(PEER, EXT, peer, gw, 4, &inner[14..])
        }
    }
}

/// The (flow, seq) an output frame carries.
fn tag(f: &[u8]) -> (usize, usize) {
    let p = &f[f.len() - 10..];
    let s = std::str::from_utf8(p).unwrap();
    (s[1..4].parse().unwrap(), s[5..10].parse().unwrap())
}

/// With `in_chunks`, worker 0's port receives into its frame memory as AF_XDP does, so the
/// frames it hands off are lent by descriptor, and every frame must find a chunk: the lent
/// ones come back. Otherwise they are copied into chunks the owners post.
fn steer(t: Tunnel, workers: usize, in_chunks: bool) {
    let cfg = config();
    let fib = gateway::tables::build_fib(&cfg).unwrap();
    let memories: Vec<Arc<FrameMemory>> = (0..workers)
        .map(|_| FrameMemory::new(128 + handoff::frames_for(workers), 2048).unwrap())
        .collect();
    let h = Handoff::new(memories);
    let mut inner = [false; MAX_PORTS];
    inner[0] = true;
    let mut input = Vec::new();
    for seq in 0..PER_FLOW {
        for flow in 0..FLOWS {
            input.push(frame(t, flow, seq));
        }
    }
    let total = input.len();
    let mut ws: Vec<Worker> = (0..workers)
        .map(|w| {
            let ext = if w == 0 {
                MemPort::new(input.clone())
            } else {
                MemPort::new([])
            };
            let ext = if in_chunks {
                ext.in_frame_memory()
            } else {
                ext
            };
            let ports: Vec<Box<dyn Port>> = vec![Box::new(ext), Box::new(MemPort::new([]))];
            Worker::new(ports, 32, Arc::new(Stats::default()))
                .with_steering(h.end(w).unwrap(), inner)
        })
        .collect();
    // Until every frame is out, with a bound that a lost frame would hit.
    for _ in 0..10_000 {
        for w in &mut ws {
            w.poll(&fib);
        }
        let out: usize = ws.iter_mut().map(|w| mem_port(w, 1).tx.len()).sum();
        if out >= total {
            break;
        }
    }
    let mut owner_of = HashMap::new();
    let mut seen = vec![vec![false; PER_FLOW]; FLOWS];
    let mut per_worker = Vec::new();
    for (wi, w) in ws.iter_mut().enumerate() {
        let drops: u64 = w
            .stats()
            .ports
            .iter()
            .flat_map(|p| p.drops.iter())
            .map(|c| c.get())
            .sum();
        assert_eq!(drops, 0, "{t:?}: worker {wi} dropped");
        let mut last: HashMap<usize, usize> = HashMap::new();
        let out = &mem_port(w, 1).tx;
        per_worker.push(out.len());
        for f in out {
            let (flow, seq) = tag(f);
            assert!(
                !seen[flow][seq],
                "{t:?}: flow {flow} packet {seq} came out twice"
            );
            seen[flow][seq] = true;
            assert_eq!(
                *owner_of.entry(flow).or_insert(wi),
                wi,
                "{t:?}: flow {flow} came out of two workers"
            );
            if let Some(&prev) = last.get(&flow) {
                assert!(seq > prev, "{t:?}: flow {flow}: {seq} after {prev}");
            }
            last.insert(flow, seq);
        }
    }
    let missing = seen.iter().flatten().filter(|s| !**s).count();
    assert_eq!(
        missing, 0,
        "{t:?}: {missing} of {total} packets never came out"
    );
    // Spread: with 64 flows every worker owns some, and none owns nearly all.
    for (wi, &n) in per_worker.iter().enumerate() {
        assert!(
            n >= total / workers / 3,
            "{t:?}: worker {wi} forwarded {n} of {total}: {per_worker:?}"
        );
    }
    if in_chunks {
        assert_eq!(
            mem_port(&mut ws[0], 0).rx_in_chunks as usize,
            total,
            "{t:?}: every frame received into a chunk, more than the memory has"
        );
    }
    let handed: u64 = ws[0].stats().ports[0].handed_off.get();
    assert_eq!(
        handed as usize,
        total - per_worker[0],
        "{t:?}: worker 0 handed off what the others forwarded"
    );
}

#[test]
fn gtpu_from_one_peer_with_64_teids_is_spread_over_2_and_4_workers_in_order() {
    for in_chunks in [false, true] {
        steer(Tunnel::Gtpu, 2, in_chunks);
        steer(Tunnel::Gtpu, 4, in_chunks);
    }
}

#[test]
fn vxlan_with_a_fixed_outer_source_port_is_spread_by_inner_flow() {
    for in_chunks in [false, true] {
        steer(Tunnel::Vxlan, 2, in_chunks);
        steer(Tunnel::Vxlan, 4, in_chunks);
    }
}

#[test]
fn ipip_is_spread_by_inner_addresses() {
    for in_chunks in [false, true] {
        steer(Tunnel::Ipip, 2, in_chunks);
        steer(Tunnel::Ipip, 4, in_chunks);
    }
}

/// The encapsulating direction of a flow lands on the worker that decapsulates it: the key
/// of a VXLAN packet's inner flow equals the key of the reply that will be encapsulated.
#[test]
fn a_flow_and_its_reply_have_one_key() {
    let fib = gateway::tables::build_fib(&config()).unwrap();
    let src = u32::from_be_bytes([10, 99, 0, 1]);
    let pod = u32::from_be_bytes([10, 244, 1, 5]);
    let inner = ipv4_udp_frame(
        [2, 0, 0, 0, 9, 9],
        [2, 0, 0, 0, 9, 8],
        (src, 2000),
        (pod, 53),
        b"q",
    );
    let outer = ipv4_udp_frame(
        PEER,
        EXT,
        (u32::from_be_bytes([192, 0, 2, 10]), 4789),
        (u32::from_be_bytes([192, 0, 2, 1]), 4789),
        &vxlan_payload(4096, &inner),
    );
    let reply = ipv4_udp_frame(
        [2, 0, 0, 0, 2, 1],
        [2, 0, 0, 0, 1, 1],
        (pod, 53),
        (src, 2000),
        b"r",
    );
    let a = handoff::steer_key(&outer, &fib).unwrap();
    let b = handoff::steer_key(&reply, &fib).unwrap();
    assert_eq!(a, b);
    let other = ipv4_udp_frame(
        [2, 0, 0, 0, 2, 1],
        [2, 0, 0, 0, 1, 1],
        (pod, 53),
        (src, 2001),
        b"r",
    );
    assert_ne!(handoff::steer_key(&other, &fib).unwrap(), a);
    // Frames too short to read stay where they are.
    assert_eq!(handoff::steer_key(&outer[..20], &fib), None);
}

/// A lane with no room refuses and counts: the owner's frame memory has a single chunk to
/// post, so of the frames it owns one is handed off and the rest are dropped as
/// `handoff_full` on the receiving worker, never queued without bound.
#[test]
fn a_full_lane_drops_and_counts_handoff_full() {
    use datapath::pipeline::drop::DropReason;
    let fib = gateway::tables::build_fib(&config()).unwrap();
    let memories = vec![
        FrameMemory::new(256, 2048).unwrap(),
        FrameMemory::new(1, 2048).unwrap(),
    ];
    let h = Handoff::new(memories);
    let mut inner = [false; MAX_PORTS];
    inner[0] = true;
    let input: Vec<Vec<u8>> = (0..FLOWS).map(|f| frame(Tunnel::Gtpu, f, 0)).collect();
    let mut ws: Vec<Worker> = (0..2)
        .map(|w| {
            let ext = MemPort::new(if w == 0 { input.clone() } else { Vec::new() });
            let ports: Vec<Box<dyn Port>> = vec![Box::new(ext), Box::new(MemPort::new([]))];
            Worker::new(ports, 64, Arc::new(Stats::default()))
                .with_steering(h.end(w).unwrap(), inner)
        })
        .collect();
    ws[0].poll(&fib);
    let st = &ws[0].stats().ports[0];
    let (handed, full) = (
        st.handed_off.get(),
        st.drops[DropReason::HandoffFull as usize].get(),
    );
    let kept = mem_port(&mut ws[0], 1).tx.len() as u64;
    assert_eq!(handed, 1, "one chunk posted, one frame handed off");
    assert!(full > 0, "the rest of worker 1's frames are refused");
    assert_eq!(
        kept + handed + full,
        FLOWS as u64,
        "every frame accounted for"
    );
}

/// A worker lends the owner of a flow at most a lane's worth of its frame memory
/// (`LANE_CHUNKS`): while the owner does not poll, the frames past that are refused and
/// counted as `handoff_full`, the lender's memory is not drained, and once the owner has sent
/// what it holds the chunks come back and handing off resumes.
#[test]
fn a_lender_lends_at_most_a_lane_and_gets_the_chunks_back() {
    use datapath::pipeline::drop::DropReason;
    let fib = gateway::tables::build_fib(&config()).unwrap();
    let memories = vec![
        FrameMemory::new(4 * handoff::LANE_CHUNKS, 2048).unwrap(),
        FrameMemory::new(2 * handoff::LANE_CHUNKS, 2048).unwrap(),
    ];
    let h = Handoff::new(memories);
    let mut inner = [false; MAX_PORTS];
    inner[0] = true;
    let input: Vec<Vec<u8>> = (0..PER_FLOW)
        .flat_map(|seq| (0..FLOWS).map(move |f| frame(Tunnel::Gtpu, f, seq)))
        .collect();
    let total = input.len() as u64;
    let mut ws: Vec<Worker> = (0..2)
        .map(|w| {
            let ext = MemPort::new(if w == 0 { input.clone() } else { Vec::new() });
            let ports: Vec<Box<dyn Port>> =
                vec![Box::new(ext.in_frame_memory()), Box::new(MemPort::new([]))];
            Worker::new(ports, 64, Arc::new(Stats::default()))
                .with_steering(h.end(w).unwrap(), inner)
        })
        .collect();
    while !mem_port(&mut ws[0], 0).rx_exhausted() {
        ws[0].poll(&fib);
    }
    let counts = |w: &Worker| {
        let st = &w.stats().ports[0];
        (
            st.handed_off.get(),
            st.drops[DropReason::HandoffFull as usize].get(),
        )
    };
    let (handed, full) = counts(&ws[0]);
    let kept = mem_port(&mut ws[0], 1).tx.len() as u64;
    assert_eq!(handed, handoff::LANE_CHUNKS as u64, "one lane's worth lent");
    assert!(full > 0, "the rest of worker 1's frames are refused");
    assert_eq!(kept + handed + full, total, "every frame accounted for");
    assert_eq!(
        mem_port(&mut ws[0], 0).rx_in_chunks,
        total,
        "the lender's memory was never drained"
    );
    // The owner sends what it was lent and gives the chunks back; the lender lends again.
    while mem_port(&mut ws[1], 1).tx.len() < handoff::LANE_CHUNKS {
        ws[1].poll(&fib);
    }
    for f in &input[..2 * FLOWS] {
        mem_port(&mut ws[0], 0).push_rx(f.clone());
    }
    while !mem_port(&mut ws[0], 0).rx_exhausted() {
        ws[0].poll(&fib);
    }
    let (again, full_again) = counts(&ws[0]);
    assert!(
        again > handed,
        "handing off resumed once the chunks came back"
    );
    assert_eq!(full_again, full, "nothing more refused");
}
