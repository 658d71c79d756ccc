//! Every file of `config/examples/` passes `gateway check`. Each deployment example (Calico,
//! Flannel, GTP-U, kube-router IPv6) runs through `gateway run` on traffic that scapy crafts for
//! it (`tests/scripts/example_traffic.py`), with the same ports turned into pcap ports. The
//! script checks where each packet went; the drops are checked against the gateway's
//! counters. The kube-router example's comment quotes what `gateway check` says about the
//! /64 mistake, and the test makes that mistake to hold the quote to the truth.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gateway-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples")
}

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_example_passes_gateway_check() {
    let mut n = 0;
    for e in std::fs::read_dir(examples_dir()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let o = gateway(&["check", path.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 6, "{n} examples");
}

#[test]
fn the_kube_router_example_quotes_what_check_says_about_a_64() {
    let path = examples_dir().join("kube-router-ipv6.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let wrong = text.replace(
        "addresses = [\"fd00:0:0:1000::1/59\"]",
        "addresses = [\"fd00:0:0:1000::1/64\"]",
    );
    assert_ne!(wrong, text);
    let dir = scratch("example-kr64");
    let file = dir.join("kube-router-ipv6.toml");
    std::fs::write(&file, &wrong).unwrap();
    let o = gateway(&["check", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    let first = said.lines().next().unwrap();
    let problem = first.rsplit('/').next().unwrap();
    // The comment wraps the message over `#` lines: compare word by word.
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let comment: String = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        words(&comment)
            .join(" ")
            .contains(&words(problem).join(" ")),
        "the comment does not quote what `gateway check` says:\n{problem}"
    );
}

/// `example` with its ports made pcap ports reading `<port>-in.pcap` and writing
/// `<port>-out.pcap` in `dir`, and the given static neighbours added.
fn as_pcap(example: &str, dir: &Path, neighbors: &[Value]) -> String {
    let text = std::fs::read_to_string(examples_dir().join(format!("{example}.toml"))).unwrap();
    let mut doc: toml::Table = text.parse().unwrap();
    for port in doc["port"].as_array_mut().unwrap() {
        let port = port.as_table_mut().unwrap();
        let name = port["name"].as_str().unwrap().to_string();
        port.remove("interface");
        port.insert("driver".into(), "pcap".into());
        let rx = dir.join(format!("{name}-in.pcap"));
        if rx.exists() {
            port.insert("rx".into(), rx.display().to_string().into());
        }
        let tx = dir.join(format!("{name}-out.pcap"));
        port.insert("tx".into(), tx.display().to_string().into());
    }
    let mut entries = doc
        .remove("neighbor")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    for n in neighbors {
        let mut t = toml::Table::new();
        for key in ["address", "mac", "port"] {
            t.insert(key.into(), n[key].as_str().unwrap().into());
        }
        entries.push(t.into());
    }
    doc.insert("neighbor".into(), entries.into());
    toml::to_string(&doc).unwrap()
}

fn run_example(example: &str) {
    let has_scapy = Command::new("/usr/bin/python3")
        .args(["-c", "import scapy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_scapy {
        gateway::skipped(&format!(
            "example {example}: needs /usr/bin/python3 with scapy (apt-get install python3-scapy)"
        ));
        return;
    }
    let dir = scratch(&format!("example-{example}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/example_traffic.py");
    let py = |mode: &str| {
        Command::new("/usr/bin/python3")
            .arg(&script)
            .args([mode, example])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let crafted = py("craft");
    assert!(
        crafted.status.success(),
        "crafting: {}",
        String::from_utf8_lossy(&crafted.stderr)
    );
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let neighbors: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("neighbors.json")).unwrap())
            .unwrap();
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, as_pcap(example, &dir, &neighbors)).unwrap();
    let stats = dir.join("stats.json");
    let o = gateway(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "{example}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let checked = py("check");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{example}:\n{said}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    let mut locals = std::collections::BTreeMap::<String, u64>::new();
    for c in &cases {
        if let Some(r) = c["drop"].as_str() {
            *want.entry(r.to_string()).or_default() += 1;
        }
        if c["local"].as_bool() == Some(true) {
            *locals
                .entry(c["port_in"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let got: std::collections::BTreeMap<String, u64> = json["drops"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(got, want, "{example}: drops by reason\n{json}");
    for (port, n) in locals {
        assert_eq!(json["ports"][&port]["local"], n, "{example}: local\n{json}");
    }
    let forwarded = cases.iter().filter(|c| c["out"].is_string()).count();
    assert_eq!(
        said.lines().filter(|l| l.contains(" -> ")).count(),
        forwarded,
        "{example}:\n{said}"
    );
}

#[test]
fn the_calico_example_decapsulates_vxlan_and_ipip_and_routes_services_with_no_default() {
    run_example("calico");
}

#[test]
fn the_flannel_example_takes_vxlan_on_8472_only() {
    run_example("flannel");
}

#[test]
fn the_gtpu_example_strips_uplink_reencapsulates_replies_and_routes_through_a_pod() {
    run_example("gtpu");
}

#[test]
fn the_kube_router_example_routes_ipv6_to_the_nodes_on_the_59() {
    run_example("kube-router-ipv6");
}
