//! The deployment files, checked offline. `docker/kubernetes/` is validated against the
//! Kubernetes schemas by kubernetes-validate (PyPI, installed into a venv under `target/`; it
//! ships the schemas, so no cluster is needed). Every configuration in its ConfigMaps passes
//! `gateway check`. `docker/systemd/gateway.service` passes `systemd-analyze verify` with no
//! complaint. systemd 252's verify exits 0 on unknown keys and bad values, so the test reads
//! what it says.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A venv holding kubernetes-validate (and PyYAML with it), made once per checkout.
fn kubernetes_validate() -> Option<PathBuf> {
    let venv = repo().join("target/kubernetes-validate-venv");
    let bin = venv.join("bin");
    if bin.join("kubernetes-validate").exists() {
        return Some(bin);
    }
    let made = Command::new("/usr/bin/python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        gateway::skipped(
            "the manifests are not validated: /usr/bin/python3 -m venv failed \
             (apt-get install python3-venv)",
        );
        return None;
    }
    let pip = Command::new(bin.join("pip"))
        .args(["install", "--quiet", "kubernetes-validate"])
        .output()
        .unwrap();
    if !pip.status.success() {
        gateway::skipped(&format!(
            "the manifests are not validated: pip install kubernetes-validate failed: {}",
            text(&pip)
        ));
        let _ = std::fs::remove_dir_all(&venv);
        return None;
    }
    Some(bin)
}

#[test]
fn the_kubernetes_manifests_match_the_schemas_and_carry_configurations_that_check() {
    let Some(bin) = kubernetes_validate() else {
        return;
    };
    let dir = repo().join("docker/kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    manifests.sort();
    assert!(!manifests.is_empty());
    for m in &manifests {
        let o = Command::new(bin.join("kubernetes-validate"))
            .args(["--strict", "--no-warn"])
            .arg(m)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}:\n{}", m.display(), text(&o));
        assert!(text(&o).contains("passed"), "{}", text(&o));
    }
    // The DaemonSet's properties that make it an edge gateway, not just a valid object.
    let facts = Command::new(bin.join("python"))
        .arg("-c")
        .arg(
            "import sys, yaml, json\n\
             docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]\n\
             ds = [d for d in docs if d['kind'] == 'DaemonSet'][0]['spec']['template']['spec']\n\
             c = ds['containers'][0]\n\
             print(json.dumps({'host': ds.get('hostNetwork'),\n\
               'privileged': c['securityContext'].get('privileged'),\n\
               'add': sorted(c['securityContext']['capabilities']['add']),\n\
               'drop': c['securityContext']['capabilities']['drop'],\n\
               'live': 'livenessProbe' in c, 'ready': 'readinessProbe' in c,\n\
               'reload': '--reload-on-change' in c['args'],\n\
               'cpu': c['resources']['requests']['cpu'] == c['resources']['limits']['cpu'],\n\
               'configs': {k: v for d in docs if d['kind'] == 'ConfigMap'\n\
                           for k, v in d['data'].items()}}))",
        )
        .args(&manifests)
        .output()
        .unwrap();
    assert!(facts.status.success(), "{}", text(&facts));
    let facts: serde_json::Value = serde_json::from_slice(&facts.stdout).unwrap();
    assert_eq!(facts["host"], true);
    assert_eq!(facts["privileged"], false);
    assert_eq!(
        facts["add"],
        serde_json::json!(["BPF", "IPC_LOCK", "NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(facts["drop"], serde_json::json!(["ALL"]));
    for k in ["live", "ready", "reload", "cpu"] {
        assert_eq!(facts[k], true, "{k}");
    }
    let configs = facts["configs"].as_object().unwrap();
    assert!(!configs.is_empty());
    let scratch = std::env::temp_dir().join(format!("gateway-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    for (name, body) in configs {
        let file = scratch.join(name);
        std::fs::write(&file, body.as_str().unwrap()).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("check")
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "ConfigMap key {name}:\n{}", text(&o));
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let has = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        gateway::skipped(
            "the systemd unit is not verified: no systemd-analyze (apt-get install systemd)",
        );
        return;
    }
    let unit = std::fs::read_to_string(repo().join("docker/systemd/gateway.service")).unwrap();
    // verify checks that the commands exist: point them at this build's binary.
    let unit = unit.replace("/usr/local/bin/gateway", env!("CARGO_BIN_EXE_gateway"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("Restart=on-failure"));
    let dir = std::env::temp_dir().join(format!("gateway-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.service");
    std::fs::write(&path, &unit).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = text(&o);
    assert!(o.status.success() && said.trim().is_empty(), "{said}");
    // The check can fail: an unknown key is reported.
    std::fs::write(&path, format!("{unit}\nNoSuchKey=1\n")).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(text(&o).contains("NoSuchKey"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The BIRD configurations in `docker/bird/` parse (`bird -p`), and the README shows the
/// gateway host's configuration as it is in the file.
#[test]
fn the_bird_configurations_parse_and_the_readme_shows_the_file() {
    let dir = repo().join("docker/bird");
    let conf = std::fs::read_to_string(dir.join("bird.conf")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```text\n{conf}```")),
        "README.md does not show docker/bird/bird.conf as it is"
    );
    if Command::new("bird").arg("--version").output().is_err() {
        gateway::skipped("needs `bird` (apt-get install bird2)");
        return;
    }
    for f in ["bird.conf", "upstream.conf"] {
        let o = Command::new("bird")
            .arg("-p")
            .arg("-c")
            .arg(dir.join(f))
            .output()
            .unwrap();
        assert!(o.status.success(), "{f}: {}", text(&o));
    }
}
