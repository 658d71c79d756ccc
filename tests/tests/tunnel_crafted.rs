//! Tunnel cases no public capture contains, crafted with scapy (Debian's python3-scapy, run by
//! `tests/scripts/crafted_tunnels.py`) during the test run: each case is one packet with the
//! verdict the gateway must reach: forwarded after decapsulation, local, or a named drop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use etherparse::{NetSlice, SlicedPacket};
use gateway_tests::{read_pcap, scratch};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const CONFIG: &str = r#"
[gateway]
workers = [0]

[[port]]
name = "ext"
driver = "pcap"
rx = "{rx}"
tx = "{d}/ext-out.pcap"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24", "fd00:a::1/64"]

[[port]]
name = "pods"
driver = "pcap"
tx = "{d}/pods-out.pcap"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16"]

[[neighbor]]
address = "172.18.0.2"
mac = "02:00:00:00:02:01"
port = "pods"

[[route]]
prefix = "10.244.0.0/16"
via = "172.18.0.2"

[[tunnel]]
name = "ran"
kind = "gtpu"
local = "192.0.2.1"
peer = "192.0.2.10"
[[tunnel.session]]
ue = "10.46.0.0/16"
teid_in = 0x1001
teid_out = 0x2001

[[tunnel]]
name = "ran6"
kind = "gtpu"
local = "fd00:a::1"
peer = "fd00:a::10"
[[tunnel.session]]
ue = "10.47.0.0/16"
teid_in = 0x3001
teid_out = 0x4001

[[tunnel]]
name = "calico"
kind = "vxlan"
local = "192.0.2.1"
vni = 4096
peers = ["192.0.2.20"]

[[tunnel]]
name = "cilium"
kind = "geneve"
local = "192.0.2.1"
vni = 2
peers = ["192.0.2.40"]

[[tunnel]]
name = "cilium6"
kind = "geneve"
local = "fd00:a::1"
udp_port = 6082
vni = 5
peers = ["fd00:a::40"]

[[tunnel]]
name = "kr"
kind = "ipip"
local = "192.0.2.1"
peers = ["192.0.2.30"]

[[tunnel]]
name = "kr6"
kind = "ipip"
local = "fd00:a::1"
peers = ["fd00:a::30"]
"#;

fn craft(dir: &Path) -> Option<Vec<Value>> {
    let has_scapy = Command::new("/usr/bin/python3")
        .args(["-c", "import scapy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_scapy {
        gateway::skipped("needs /usr/bin/python3 with scapy (apt-get install python3-scapy)");
        return None;
    }
    // With scapy present, a failing script is a failing test, never a skip.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/crafted_tunnels.py");
    let o = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "crafting failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let manifest = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    Some(serde_json::from_str::<Vec<Value>>(&manifest).unwrap())
}

/// tshark's reading of the single frame in `file`: an Echo Response to the gNB's port 2152
/// with sequence 9 or 10 and a Recovery IE, and no expert warning with checksums checked.
fn echo_response_ok(file: &Path) -> bool {
    let fields = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "gtp.message",
            "-e",
            "gtp.seq_number",
        ])
        .args([
            "-e",
            "gtp.recovery",
            "-e",
            "udp.dstport",
            "-e",
            "_ws.expert.severity",
        ])
        .output();
    let Ok(out) = fields else {
        gateway::skipped("tshark not installed, the Echo Response not dissected");
        return true;
    };
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let f: Vec<&str> = line.split('|').collect();
    let ok = f.len() == 5
        && f[0] == "0x02"
        && (f[1] == "0x0009" || f[1] == "0x000a")
        && f[2] == "0"
        && f[3] == "2152";
    let quiet = f.get(4).is_none_or(|s| s.is_empty());
    if !(ok && quiet) {
        eprintln!("echo response as tshark reads it: {line}");
    }
    ok && quiet
}

/// Whether `explain`'s one record for a case says what the case expects: forwarded to the pods
/// after decapsulation, local, answered, or dropped under the reason, at the last stage shown.
fn explained_as(records: &[Value], expect: &str) -> Result<(), String> {
    let [r] = records else {
        return Err(format!("{} records, not 1", records.len()));
    };
    let action = r["result"]["action"].as_str().unwrap_or("");
    let stages = ["classify", "decap", "route"];
    let last = stages.iter().rev().find(|s| !r[**s].is_null()).copied();
    match expect {
        "forward" => {
            let ok = action == "tx"
                && r["result"]["port"] == "pods"
                && r["decap"]["verdict"] == "route"
                && r["route"]["prefix"] == "10.244.0.0/16";
            ok.then_some(())
                .ok_or_else(|| "not forwarded after decap".into())
        }
        "local" => (action == "local")
            .then_some(())
            .ok_or_else(|| "not local".into()),
        "echo_response" => (action == "reply" && r["decap"]["kind"] == "gtpu")
            .then_some(())
            .ok_or_else(|| "no Echo Response".into()),
        reason => {
            if r["result"]["drop"] != reason {
                return Err(format!("not dropped as {reason}"));
            }
            let at = last.map(|s| &r[s]["verdict"]);
            // ttl_expired is reached at the route stage and answered with an ICMP error;
            // tunnel_inner_local is what a decapsulated packet for a local address becomes
            // after the stage that found it local.
            let stage_says = |v: &Value| {
                *v == format!("drop {reason}") || (reason == "tunnel_inner_local" && v == "local")
            };
            let ok = at.is_some_and(stage_says)
                && (action == "drop" || (action == "icmp_error" && reason == "ttl_expired"));
            ok.then_some(())
                .ok_or_else(|| format!("the last stage ({last:?}) does not say drop {reason}"))
        }
    }
}

#[test]
fn crafted_tunnel_cases_reach_their_named_verdicts() {
    let dir = scratch("crafted");
    let Some(cases) = craft(&dir) else { return };
    assert!(
        cases.len() >= 60,
        "the generator lost cases: {}",
        cases.len()
    );
    let mut wrong = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        let run_dir = dir.join(name);
        std::fs::create_dir_all(&run_dir).unwrap();
        let cfg = CONFIG
            .replace(
                "{rx}",
                &dir.join(format!("{name}.pcap")).display().to_string(),
            )
            .replace("{d}", &run_dir.display().to_string());
        let path = run_dir.join("gateway.toml");
        std::fs::write(&path, cfg).unwrap();
        let cfg = config::load_file(&path, config::Machine { cores: 1 })
            .unwrap_or_else(|e| panic!("{e}"));
        let outcome = gateway::tables::run_offline(&cfg).unwrap();
        let json = gateway::report::json(&cfg, &outcome.stats);
        let ext = &json["ports"]["ext"];
        let drops = ext["drops"].as_object().unwrap();
        let tx = json["ports"]["pods"]["tx_packets"].as_u64().unwrap();
        let ok = match expect {
            "forward" => {
                let out = read_pcap(&run_dir.join("pods-out.pcap"));
                let inner_ok = out.len() == 1
                    && match SlicedPacket::from_ethernet(&out[0]).unwrap().net.unwrap() {
                        NetSlice::Ipv4(h) => {
                            let h = h.header();
                            h.destination() == [10, 244, 1, 5]
                                && h.ttl() == 63
                                && h.identification() == 0x4242
                        }
                        NetSlice::Ipv6(_) => false,
                    };
                ext["decap"] == 1 && tx == 1 && drops.is_empty() && inner_ok
            }
            "local" => ext["local"] == 1 && tx == 0 && drops.is_empty(),
            // Answered out of the port it came in on; tshark must read an Echo Response with
            // the request's sequence number and a Recovery IE, with valid checksums.
            "echo_response" => {
                ext["tx_packets"] == 1
                    && tx == 0
                    && drops.is_empty()
                    && echo_response_ok(&run_dir.join("ext-out.pcap"))
            }
            reason => {
                tx == 0 && drops.len() == 1 && drops.get(reason).and_then(Value::as_u64) == Some(1)
            }
        };
        if !ok {
            wrong.push(format!(
                "{name}: expected {expect}, got decap {} local {} tx {tx} drops {drops:?}",
                ext["decap"], ext["local"]
            ));
        }
        // `gateway explain` on the same frame names the same outcome, at the stage that
        // reached it, with no stage after it.
        let explained =
            gateway::tools::explain::explain_cli(&gateway::tools::explain::ExplainArgs {
                config: Some(path.clone()),
                socket: None,
                in_port: Some("ext".into()),
                hex: None,
                pcap: Some(dir.join(format!("{name}.pcap"))),
                index: None,
                json: true,
                spec: gateway::tools::pktgen::Spec::default(),
            })
            .unwrap();
        if let Err(why) = explained_as(&explained, expect) {
            wrong.push(format!("{name}: explain: {why}: {}", explained[0]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}
