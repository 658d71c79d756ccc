//! Software steering, in memory: GTP-U from one gNB (64 TEIDs, one session each) decapsulated
//! and routed on the full DFZ table, all of it arriving at worker 0 as RSS would deliver it.
//! Frames arrive in chunks of the worker's frame memory, as AF_XDP puts them, and a frame
//! another worker's memory holds is copied before it is "sent", as an AF_XDP port does.
//!
//! - `steering_scale time [rounds] [seconds]`: forwarded packets per second with one worker
//!   (no steering), with two workers on two threads, each pinned to a core of its own
//!   (`steering = "inner"` on the input port), the handed-off frames lent by descriptor or
//!   copied at the handoff, and with the traffic split at the input; modes rotated round by
//!   round; prints each round and the ratios of the medians.
//! - `steering_scale count <workers> <iterations> [copy]`: a deterministic run for callgrind:
//!   the workers polled in turn, each on a thread of its own, `iterations` bursts of 32
//!   frames offered to worker 0. The difference of two iteration counts divided by the
//!   packets is the cost a packet, per worker's thread (`benches/steering.sh`). `copy` copies
//!   the frames at the handoff instead of lending them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::fib::Fib;
use datapath::framemem::FrameMemory;
use datapath::pipeline::batch::Batch;
use datapath::port::handoff::{self, Handoff};
use datapath::port::mem::receive_into_chunk;
use datapath::port::Port;
use datapath::stats::{PortStats, Stats, MAX_PORTS};
use datapath::worker::Worker;
use gateway_benches::rib::{load_dfz, traffic_v4};
use gateway_benches::{fib_with_sessions, BURST, EXT_MAC};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEIDS: usize = 64;

/// A port that "receives" the same frames again on every poll, as a NIC would DMA them: into
/// chunks of the worker's frame memory, as AF_XDP puts them; `bursts` of them when it is set. It
/// "sends" as an AF_XDP port on a UMEM of its own would: a frame in another worker's memory
/// (lent by the handoff) is copied into a chunk first.
struct LoopPort {
    frames: Vec<Vec<u8>>,
    next: usize,
    bursts: Option<usize>,
    memory: Arc<FrameMemory>,
    tx_chunk: Vec<u8>,
}

impl Port for LoopPort {
    fn rx(&mut self, batch: &mut Batch, max: usize, _stats: &PortStats) -> usize {
        batch.release();
        if self.frames.is_empty() || self.bursts == Some(0) {
            batch.len = 0;
            return 0;
        }
        if let Some(b) = &mut self.bursts {
            *b -= 1;
        }
        let n = max.min(batch.bufs.len());
        for i in 0..n {
            let f = &self.frames[self.next];
            if !receive_into_chunk(batch, i, f) {
                batch.bufs[i].load(f, 0);
            }
            self.next = (self.next + 1) % self.frames.len();
        }
        batch.len = n;
        n
    }
    fn tx(&mut self, batch: &mut Batch, idx: &[u8]) -> usize {
        for &i in idx {
            let b = &batch.bufs[usize::from(i)];
            if b.address_in(&self.memory).is_none() {
                let f = b.frame();
                self.tx_chunk[..f.len()].copy_from_slice(f);
                std::hint::black_box(&self.tx_chunk);
            }
        }
        idx.len()
    }
    fn frame_memory(&self) -> Option<Arc<FrameMemory>> {
        Some(Arc::clone(&self.memory))
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// GTP-U G-PDUs from 192.0.2.10: TEID `0x1001 + k` from UE 10.46.k.7, to addresses inside
/// the DFZ table.
fn frames(dsts: &[u32]) -> Vec<Vec<u8>> {
    (0..dsts.len())
        .map(|i| {
            let k = i % TEIDS;
            let ue = u32::from_be_bytes([10, 46, k as u8, 7]);
            let inner = datapath::craft::ipv4_udp_frame(
                [0; 6],
                [0; 6],
                (ue, 1000 + (i % 1000) as u16),
                (dsts[i], 53),
                &[0u8; 18],
            );
            let g = datapath::craft::gtpu_payload(0x1001 + k as u32, Some(9), &inner[14..]);
            datapath::craft::ipv4_udp_frame(
                [2, 0, 0, 0, 0, 0x0a],
                EXT_MAC,
                (u32::from_be_bytes([192, 0, 2, 10]), 2152),
                (u32::from_be_bytes([192, 0, 2, 1]), 2152),
                &g,
            )
        })
        .collect()
}

/// `n` workers; worker 0 receives `input`, the others nothing; steering when `n > 1`. With
/// `split`, no steering: worker `w` receives the frames of every `n`-th TEID itself, as RSS
/// would deliver tunnels whose outer header varies (the ceiling steering aims at). With
/// `lend`, the frames handed off are lent by descriptor; without, they are copied at the
/// handoff ([`Handoff::copying`]).
fn workers(
    n: usize,
    input: &[Vec<u8>],
    counted: Option<usize>,
    split: bool,
    lend: bool,
) -> Vec<Worker> {
    let memories: Vec<Arc<FrameMemory>> = (0..n)
        .map(|_| FrameMemory::new(256 + handoff::frames_for(n), 2048).unwrap())
        .collect();
    let h = if lend {
        Handoff::new(memories.clone())
    } else {
        Handoff::copying(memories.clone())
    };
    let mut inner = [false; MAX_PORTS];
    inner[0] = true;
    (0..n)
        .map(|w| {
            let frames = if split {
                input.iter().skip(w).step_by(n).cloned().collect()
            } else if w == 0 {
                input.to_vec()
            } else {
                Vec::new()
            };
            let ext: Box<dyn Port> = Box::new(LoopPort {
                frames,
                next: 0,
                bursts: counted,
                memory: Arc::clone(&memories[w]),
                tx_chunk: vec![0; 2048],
            });
            let pods: Box<dyn Port> = Box::new(LoopPort {
                frames: Vec::new(),
                next: 0,
                bursts: None,
                memory: Arc::clone(&memories[w]),
                tx_chunk: vec![0; 2048],
            });
            let worker = Worker::new(vec![ext, pods], BURST, Arc::new(Stats::default()));
            if n > 1 && !split {
                worker.with_steering(h.end(w).unwrap(), inner)
            } else {
                worker
            }
        })
        .collect()
}

fn forwarded(ws: &[Worker]) -> u64 {
    ws.iter().map(|w| w.stats().ports[1].tx_packets.get()).sum()
}

fn drops(ws: &[Worker]) -> u64 {
    ws.iter()
        .flat_map(|w| w.stats().ports.iter())
        .flat_map(|p| p.drops.iter())
        .map(|c| c.get())
        .sum()
}

/// Forwarded packets per second of `n` workers, each on a thread pinned to core `w`.
fn rate(n: usize, split: bool, lend: bool, fib: &Fib, input: &[Vec<u8>], seconds: f64) -> f64 {
    let ws = workers(n, input, None, split, lend);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let ws = std::thread::scope(|s| {
        let handles: Vec<_> = ws
            .into_iter()
            .enumerate()
            .map(|(i, mut w)| {
                let stop = &stop;
                s.spawn(move || {
                    core_affinity::set_for_current(core_affinity::CoreId { id: i });
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            w.poll(fib);
                        }
                    }
                    w
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let secs = start.elapsed().as_secs_f64();
    let shares: Vec<u64> = ws
        .iter()
        .map(|w| w.stats().ports[1].tx_packets.get())
        .collect();
    let full: u64 = ws
        .iter()
        .flat_map(|w| w.stats().ports.iter())
        .map(|p| p.drops[datapath::pipeline::drop::DropReason::HandoffFull as usize].get())
        .sum();
    eprintln!(
        "  {n} worker(s){}{}: forwarded per worker {shares:?}, handoff_full {full}",
        if split { " split by RSS" } else { "" },
        if lend {
            ""
        } else {
            ", frames copied at the handoff"
        }
    );
    assert_eq!(drops(&ws) - full, 0, "drops other than handoff_full");
    forwarded(&ws) as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let routes = load_dfz().expect("../shared/testdata/rib/dfz-ipv4.csv.gz");
    let fib = fib_with_sessions(&routes, TEIDS as u32);
    let dsts: Vec<u32> = traffic_v4(&routes, 7).in_table[..4096].to_vec();
    let input = frames(&dsts);
    match args.get(1).map(String::as_str) {
        Some("count") => {
            let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            let iterations: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let lend = args.get(4).map(String::as_str) != Some("copy");
            let ws = workers(n, &input, Some(iterations), false, lend);
            // Each worker on a thread of its own, so that callgrind's per-thread counts
            // (`--separate-threads=yes`) split the cost between the receiving worker and the
            // owner; the threads take turns in a fixed order, so the run stays deterministic.
            let turn = std::sync::Barrier::new(ws.len());
            let ws: Vec<Worker> = std::thread::scope(|s| {
                let handles: Vec<_> = ws
                    .into_iter()
                    .enumerate()
                    .map(|(me, mut w)| {
                        let (turn, fib) = (&turn, &fib);
                        s.spawn(move || {
                            for _ in 0..iterations + 16 {
                                for t in 0..n {
                                    if t == me {
                                        w.poll(fib);
                                    }
                                    turn.wait();
                                }
                            }
                            w
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(drops(&ws), 0, "drops");
            assert_eq!(
                forwarded(&ws) as usize,
                iterations * BURST,
                "every packet forwarded"
            );
            println!("{}", forwarded(&ws));
        }
        _ => {
            let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
            let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3.0);
            // (label, workers, split at the input, frames in chunks)
            let modes = [
                ("1 worker", 1, false, true),
                ("2 workers steered, frames lent", 2, false, true),
                ("2 workers steered, frames copied", 2, false, false),
                ("2 workers split at the input, no steering", 2, true, true),
            ];
            let mut got = vec![Vec::new(); modes.len()];
            for r in 0..rounds {
                // Each round starts at another mode, so none always runs first.
                let mut line = format!("round {r}:");
                for k in 0..modes.len() {
                    let m = (r + k) % modes.len();
                    let (label, n, split, lend) = modes[m];
                    let v = rate(n, split, lend, &fib, &input, seconds);
                    line.push_str(&format!(" {label} {:.3} Mpps;", v / 1e6));
                    got[m].push(v);
                }
                println!("{line}");
            }
            let medians: Vec<f64> = got.into_iter().map(median).collect();
            for (m, (label, ..)) in modes.iter().enumerate() {
                println!(
                    "median: {label} {:.3} Mpps ({:.2}x one worker)",
                    medians[m] / 1e6,
                    medians[m] / medians[0]
                );
            }
        }
    }
}
