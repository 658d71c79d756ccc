//! The `gateway` binary as a user runs it: `check` on good and bad files, `run` over every
//! real capture in `../shared/testdata/pcap`, and `demo`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target/e2e-cli").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_accepts_every_example_and_prints_a_summary() {
    for entry in std::fs::read_dir(root().join("config/examples")).unwrap() {
        let path = entry.unwrap().path();
        let out = gateway().arg("check").arg(&path).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("configuration OK"), "{stdout}");
        assert!(stdout.contains("routes:"), "{stdout}");
    }
}

#[test]
fn check_reports_every_problem_with_file_line_and_path_and_exits_1() {
    let dir = scratch("check-bad");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[gateway]\nworkers = [0]\n\n[[port]]\nname = \"p\"\ndriver = \"memory\"\nmac = \"nope\"\naddresses = [\"10.0.0.1/24\"]\n\n[[route]]\nprefix = \"10.1.0.0/16\"\nvia = \"10.9.0.1\"\n",
    )
    .unwrap();
    let out = gateway().arg("check").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let f = file.display().to_string();
    assert!(
        stderr.contains(&format!("{f}:7:7: port[0].mac:")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{f}:12:7: route[0].via:")),
        "{stderr}"
    );
    assert!(stderr.contains("2 problems found"), "{stderr}");
}

#[test]
fn check_reports_an_unknown_key_with_its_location() {
    let dir = scratch("check-unknown");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[gateway]\nworkers = [0]\nspeed = 10\n").unwrap();
    let out = gateway().arg("check").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":3:1: gateway.speed: unknown field `speed`"),
        "{stderr}"
    );
    // The unknown key does not hide the file's other problem.
    assert!(stderr.contains("port: at least one [[port]]"), "{stderr}");
    assert!(stderr.contains("2 problems found"), "{stderr}");
}

/// Frames in a capture, counted by tshark (an independent reader). Under CI tshark must be
/// there; elsewhere its absence skips the cross-check visibly.
fn tshark_frames(path: &Path) -> Option<u64> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            Some(String::from_utf8_lossy(&o.stdout).lines().count() as u64)
        }
        _ => {
            gateway::skipped("tshark not installed, frame counts not cross-checked");
            None
        }
    }
}

#[test]
fn every_shared_capture_runs_through_gateway_run_without_a_panic() {
    let captures = root().join("../shared/testdata/pcap");
    let dir = scratch("captures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&captures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 39,
        "expected the 39 shared captures, found {}",
        files.len()
    );
    for f in files {
        let cfg = dir.join("c.toml");
        std::fs::write(
            &cfg,
            format!(
                "[gateway]\nworkers = [0]\n[[port]]\nname = \"ext\"\ndriver = \"pcap\"\nrx = \"{}\"\ntx = \"{}\"\nmac = \"02:00:00:00:00:01\"\naddresses = [\"192.0.2.1/24\"]\npromiscuous = true\n",
                f.display(),
                dir.join("out.pcap").display()
            ),
        )
        .unwrap();
        let json = dir.join("stats.json");
        let out = gateway()
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--stats-json")
            .arg(&json)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", f.display());
        assert!(!stderr.contains("warning"), "{}: {stderr}", f.display());
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let port = &stats["ports"]["ext"];
        let rx = port["rx_packets"].as_u64().unwrap();
        let oversize = port["drops"]["rx_oversize"].as_u64().unwrap_or(0);
        let dropped: u64 = port["drops"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        // Every received frame is accounted for: forwarded, local, or dropped by reason. No
        // tunnel is decapsulated yet and no route exists, so nothing is transmitted.
        assert_eq!(port["tx_packets"].as_u64(), Some(0));
        assert_eq!(
            rx + oversize,
            port["local"].as_u64().unwrap() + dropped,
            "{}",
            f.display()
        );
        if let Some(n) = tshark_frames(&f) {
            assert_eq!(rx + oversize, n, "{}: frames read vs tshark", f.display());
        }
    }
}

#[test]
fn demo_counters_add_up_to_the_traffic_it_generated() {
    let out = gateway()
        .args(["demo", "--in-memory", "--packets", "3000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let generated = |what: &str| -> u64 {
        stdout
            .lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no line for {what}:\n{stdout}"))
    };
    let row = |port: &str| -> Vec<u64> {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(port))
            .unwrap_or_else(|| panic!("no row for {port}:\n{stdout}"));
        line.split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect()
    };
    // Columns: rx_pkts rx_bytes tx_pkts tx_bytes decap local dropped.
    let (ext, pods) = (row("ext"), row("pods"));
    assert_eq!(ext.len(), 7, "{stdout}");
    let decap = generated("(decap)");
    let tunnelled = generated("GTP-U uplink")
        + generated("VXLAN from")
        + generated("IPIP from")
        + generated("Geneve from");
    assert_eq!(ext[4], tunnelled, "decap column:\n{stdout}");
    assert!(decap > 0);
    assert_eq!(
        ext[2],
        generated("GTP-U encap"),
        "downlink encapsulated out of ext:\n{stdout}"
    );
    assert_eq!(ext[5], generated("own address"), "local:\n{stdout}");
    let errors = generated("blackholed")
        + generated("no route")
        + generated("TTL 1")
        + generated("checksum");
    assert_eq!(ext[6], errors, "dropped:\n{stdout}");
    let forwarded =
        generated("IPv4 to a pod") + generated("ECMP") + generated("IPv6 to a service") + tunnelled;
    assert_eq!(pods[2], forwarded, "forwarded to the pods:\n{stdout}");
    for needle in ["ttl_expired", "no_route", "blackhole", "ipv4_bad_checksum"] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
}

/// `gateway explain` on frames built from pktgen's flags, from hex and from a capture: each
/// outcome as the example configuration decides it, and bad input refused with why.
#[test]
fn explain_names_the_stage_and_outcome_and_refuses_bad_frames_with_why() {
    let cfg = root().join("config/examples/gtpu.toml");
    let explain = |args: &[&str]| {
        let o = gateway()
            .arg("explain")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let gnb = [
        "--kind",
        "gtpu",
        "--src",
        "172.16.135.60",
        "--dst",
        "172.16.135.1",
    ];
    let (ok, out, err) =
        explain(&[&gnb[..], &["--inner-dst", "10.244.1.5", "--teid", "0x1001"]].concat());
    assert!(ok, "{err}");
    assert!(
        out.contains("decap     kind=gtpu peer=172.16.135.60 teid=0x1001"),
        "{out}"
    );
    assert!(
        out.contains("route     prefix=10.244.0.0/16 origin=file"),
        "{out}"
    );
    let (_, out, _) =
        explain(&[&gnb[..], &["--inner-dst", "10.244.1.5", "--teid", "4099"]].concat());
    assert!(
        out.contains("verdict=drop gtpu_unknown_teid") && !out.contains("route "),
        "{out}"
    );
    // A reply from a pod to a UE: re-encapsulated toward the gNB.
    let (_, out, _) = explain(&[
        "--port",
        "pods",
        "--src",
        "10.244.1.5",
        "--dst",
        "10.46.0.9",
    ]);
    assert!(
        out.contains("next_hop=tunnel gtpu teid 0x2001 qfi 9 to 172.16.135.60 dev n3"),
        "{out}"
    );
    // The same frame as hex, and from a capture, say the same.
    let dir = scratch("explain");
    let pcap = dir.join("one.pcap");
    let made = gateway()
        .args([
            "pktgen",
            "--kind",
            "gtpu",
            "--src",
            "172.16.135.60",
            "--dst",
            "172.16.135.1",
        ])
        .args(["--dst-mac", "02:00:00:00:00:01", "--count", "2", "--pcap"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (ok, from_pcap, err) = explain(&["--json", "--pcap", pcap.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(from_pcap.lines().count(), 2, "{from_pcap}");
    let (_, second, _) = explain(&["--json", "--pcap", pcap.to_str().unwrap(), "--index", "2"]);
    assert_eq!(second.trim(), from_pcap.lines().nth(1).unwrap());
    for (args, why) in [
        (&["--hex", "0x0a0b0"][..], "odd number of hex digits"),
        (&["--hex", "zz"][..], "not a hex byte"),
        (
            &["--pcap", pcap.to_str().unwrap(), "--index", "3"][..],
            "holds 2 frames, not 3",
        ),
        (&["--port", "wan"][..], "no port named \"wan\""),
    ] {
        let (ok, _, err) = explain(args);
        assert!(!ok && err.contains(why), "{args:?}: {err}");
    }
    // A frame too short for Ethernet is still explained: dropped, and why.
    let (ok, out, err) = explain(&["--hex", "02000000"]);
    assert!(ok, "{err}");
    assert!(out.contains("drop=eth_too_short"), "{out}");
}

/// `check` says per port whether steering is on, and that `steering = "inner"` does nothing
/// with a single worker (a configuration shared by hosts with different core counts is still
/// valid, so this is said, not refused).
#[test]
fn check_says_when_steering_has_no_effect() {
    let dir = scratch("check-steering");
    for (workers, want, not) in [
        ("[0]", "steering inner (no effect: one worker", ""),
        ("[0, 1]", "steering inner", "no effect"),
    ] {
        let file = dir.join("steer.toml");
        std::fs::write(
            &file,
            format!("[gateway]\nworkers = {workers}\n\n[[port]]\nname = \"ext\"\ndriver = \"memory\"\nmac = \"02:00:00:00:00:01\"\naddresses = [\"10.0.0.1/24\"]\nsteering = \"inner\"\n"),
        )
        .unwrap();
        let out = gateway().arg("check").arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{workers}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().find(|l| l.contains("ext")).unwrap_or("");
        assert!(line.contains(want), "{workers}: {stdout}");
        if !not.is_empty() {
            assert!(!line.contains(not), "{workers}: {stdout}");
        }
    }
}
