//! A configuration reload while a worker forwards: the control side reloads the file again and
//! again (a route added, removed, and a bad file in between) while a worker thread keeps
//! receiving and polling. No packet to the routes both files share is lost or dropped, the
//! added route forwards once its file is in force, and the bad file changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use datapath::port::mem::MemPort;
use datapath::port::Port;
use datapath::slot::{retire, FibSlot, FibView};
use datapath::stats::Stats;
use datapath::worker::Worker;
use gateway::reload::Reloader;
use gateway_tests::{mem_port, scratch, udp_to};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const EXT: [u8; 6] = [2, 0, 0, 0, 0, 1];

const BASE: &str = r#"
[gateway]
workers = [0]

[[port]]
name = "ext"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]

[[port]]
name = "pods"
driver = "memory"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16"]

[[neighbor]]
address = "172.18.0.2"
mac = "02:00:00:00:02:01"
port = "pods"

[[route]]
prefix = "10.244.0.0/16"
via = "172.18.0.2"
"#;

const ADDED: &str = "\n[[route]]\nprefix = \"10.77.0.0/16\"\nvia = \"172.18.0.2\"\n";
const BAD: &str = "\n[[route]]\nprefix = \"10.77.0.0/16\"\nvia = \"172.18.0.299\"\n";

fn frame(dst: [u8; 4]) -> Vec<u8> {
    udp_to(EXT, dst)
}

#[test]
fn reloading_while_a_worker_forwards_loses_no_packet_and_a_bad_file_changes_nothing() {
    let dir = scratch("reload-in-process");
    let path = dir.join("gw.toml");
    std::fs::write(&path, BASE).unwrap();
    let running = config::load_file(&path, config::Machine { cores: 2 }).unwrap();
    let (fib, _) = gateway::tables::build_fib_with_routes(&running, None).unwrap();
    let slot = FibSlot::new(Arc::new(fib));
    let mut reloader = Reloader::new(path.clone(), running);

    let stop = AtomicBool::new(false);
    let stats = Arc::new(Stats::default());
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let ports: Vec<Box<dyn Port>> =
                vec![Box::new(MemPort::new([])), Box::new(MemPort::new([]))];
            let mut w = Worker::new(ports, 32, Arc::clone(&stats));
            let mut view = FibView::new(&slot);
            let (mut sent, mut polls) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) || polls < 1000 {
                for i in 0..8u8 {
                    mem_port(&mut w, 0).push_rx(frame([10, 244, i, 1]));
                }
                sent += 8;
                w.poll(view.get());
                mem_port(&mut w, 1).tx.clear();
                polls += 1;
            }
            sent
        });
        let mut retired = Vec::new();
        for round in 0..30 {
            let text = match round % 3 {
                0 => format!("{BASE}{ADDED}"),
                1 => format!("{BASE}{BAD}"),
                _ => BASE.to_string(),
            };
            std::fs::write(&path, &text).unwrap();
            match reloader.load(&slot.current()) {
                Ok(new) => {
                    assert_ne!(round % 3, 1, "the bad file must be refused");
                    retired.push(slot.replace(Arc::new(new.fib)));
                    reloader.accept(new.config);
                }
                Err(e) => {
                    assert_eq!(round % 3, 1, "refused: {e}");
                    assert!(e.contains("via[0]") || e.contains("route[1].via"), "{e}");
                }
            }
            retire(&mut retired);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // End on the file with the added route.
        std::fs::write(&path, format!("{BASE}{ADDED}")).unwrap();
        let new = reloader.load(&slot.current()).unwrap();
        retired.push(slot.replace(Arc::new(new.fib)));
        reloader.accept(new.config);
        stop.store(true, Ordering::Relaxed);
        let sent = worker.join().unwrap();

        let drops: u64 = stats.ports[0].drops.iter().map(|d| d.get()).sum();
        assert_eq!(drops, 0, "no packet dropped across the reloads");
        assert_eq!(
            stats.ports[1].tx_packets.get(),
            sent,
            "every packet forwarded across 31 reloads"
        );
        // Every replaced snapshot is freed once the worker has moved on.
        assert_eq!(retire(&mut retired), 0);
    });

    // The route of the last file forwards; the snapshot in force is the last one built.
    let ports: Vec<Box<dyn Port>> = vec![Box::new(MemPort::new([])), Box::new(MemPort::new([]))];
    let stats = Arc::new(Stats::default());
    let mut w = Worker::new(ports, 32, Arc::clone(&stats));
    let mut view = FibView::new(&slot);
    mem_port(&mut w, 0).push_rx(frame([10, 77, 0, 5]));
    w.poll(view.get());
    assert_eq!(
        stats.ports[1].tx_packets.get(),
        1,
        "the reloaded route forwards"
    );
    assert_eq!(reloader.running().routes.len(), 2);
}
