//! Helpers shared by the end-to-end tests: scratch directories, pcap files written and read
//! back with the project's own pcap port code, where the shared captures live, a
//! configuration run offline, and tshark.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// `../shared/testdata/pcap`, beside the project root.
pub fn shared_pcap_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/pcap")
}

/// A fresh scratch directory under the target directory, removed first if it exists.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/e2e")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Writes frames to a classic pcap file, timestamps 1 µs apart.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = datapath::port::pcap::PcapWriter::create(path).expect("create pcap");
    for (i, f) in frames.iter().enumerate() {
        w.write(f, i as u64 * 1000).expect("write pcap");
    }
    w.flush().expect("flush pcap");
}

/// Reads every frame of a pcap or pcapng file.
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    use datapath::port::pcap::{PcapReader, Record};
    let mut r = PcapReader::open(path, [0; 6]).expect("open pcap");
    let mut buf = datapath::pipeline::batch::Buf::new();
    let mut out = Vec::new();
    loop {
        match r.next_into(&mut buf).expect("read pcap") {
            Record::Frame => out.push(buf.frame().to_vec()),
            Record::Oversize => {}
            Record::End => return out,
        }
    }
}

/// A small IPv4/UDP frame from the external host 192.0.2.10 to `dst`, sent to the MAC
/// `dst_mac` (a gateway port's).
pub fn udp_to(dst_mac: [u8; 6], dst: [u8; 4]) -> Vec<u8> {
    datapath::craft::udp_frame(&datapath::craft::UdpSpec {
        src_mac: [2, 0, 0, 0, 0, 0x99],
        dst_mac,
        src: std::net::IpAddr::from([192, 0, 2, 10]),
        dst: std::net::IpAddr::from(dst),
        src_port: 1,
        dst_port: 2,
        ttl: 64,
        payload_len: 10,
    })
}

/// A worker's in-memory port `port`.
pub fn mem_port(
    w: &mut datapath::worker::Worker,
    port: usize,
) -> &mut datapath::port::mem::MemPort {
    w.port_mut(port)
        .and_then(|p| {
            p.as_any_mut()
                .downcast_mut::<datapath::port::mem::MemPort>()
        })
        .expect("an in-memory port")
}

/// Runs the configuration `cfg` offline (`{d}` in it replaced by `dir`), written to
/// `dir/name`, and returns its counters as `gateway run --stats-json` writes them. A warning
/// fails the test.
pub fn run_offline(cfg: &str, dir: &Path, name: &str) -> serde_json::Value {
    let path = dir.join(name);
    std::fs::write(&path, cfg.replace("{d}", &dir.display().to_string())).unwrap();
    let cfg =
        config::load_file(&path, config::Machine { cores: 1 }).unwrap_or_else(|e| panic!("{e}"));
    let outcome = gateway::tables::run_offline(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    gateway::report::json(&cfg, &outcome.stats)
}

/// tshark's output on `file` with `args`, or `None` (listed as skipped, which fails under
/// `CI=true`) when tshark cannot run.
pub fn tshark(file: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        _ => {
            gateway::skipped("tshark not installed, emitted frames not dissected");
            None
        }
    }
}
