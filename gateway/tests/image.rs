//! The container image, built and run with podman as an operator would: `docker/build-image.sh`
//! builds it from this checkout (no registry), the image checks every example configuration,
//! and the gateway inside it, joined to the namespace lab's gateway namespace with only the
//! capabilities docker/README.md names and the seccomp profile docker/seccomp.py makes,
//! forwards the lab's plain and VXLAN traffic.
//!
//! Needs root and podman with runc (`apt-get install podman runc`, which tests/install-deps.sh
//! does); otherwise the test is skipped visibly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway::tools::lab::{config_for, is_root, Lab};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const TAG: &str = "localhost/edge-gateway:test";

/// What `podman run` needs on these machines: runc (crun refuses hybrid cgroups) and explicit
/// limits (podman's defaults fail setrlimit here).
fn podman_run(extra: &[&str], args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    c.args([
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:20000",
        "--ulimit",
        "nproc=1024:1024",
    ])
    .args(extra)
    .arg(TAG)
    .args(args);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_image_builds_offline_checks_the_examples_and_forwards_the_labs_traffic() {
    if !is_root() {
        gateway::skipped("the image test needs root");
        return;
    }
    let has = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has("podman") || !has("runc") {
        gateway::skipped("the image test needs podman and runc (apt-get install podman runc)");
        return;
    }
    let built = Command::new("bash")
        .arg(repo().join("docker/build-image.sh"))
        .arg(TAG)
        .output()
        .unwrap();
    assert!(built.status.success(), "image build:\n{}", text(&built));

    // Nothing but the binary and the examples: no shell, no libc, no package database.
    let listing = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Size}}", TAG])
        .output()
        .unwrap();
    let size: u64 = String::from_utf8_lossy(&listing.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(size < 40 << 20, "image of {size} bytes");

    let mut examples: Vec<_> = std::fs::read_dir(repo().join("config/examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 2, "{examples:?}");
    for name in &examples {
        let o = podman_run(
            &["--network", "none"],
            &["check", &format!("/etc/gateway/examples/{name}")],
        )
        .output()
        .unwrap();
        assert!(
            o.status.success(),
            "gateway check {name} in the image:\n{}",
            text(&o)
        );
    }

    // The lab, with the gateway's role played by the image.
    let id = format!("i{}", std::process::id());
    let lab = Lab::build(&id).unwrap();
    let dir = std::env::temp_dir().join(format!("gateway-image-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gw.toml"), config_for("af_xdp")).unwrap();
    let profile = dir.join("seccomp.json");
    let made = Command::new("/usr/bin/python3")
        .arg(repo().join("docker/seccomp.py"))
        .output()
        .unwrap();
    assert!(made.status.success(), "docker/seccomp.py: {}", text(&made));
    std::fs::write(&profile, &made.stdout).unwrap();
    let seccomp = format!("seccomp={}", profile.display());
    let netns = format!("ns:/run/netns/{}", lab.gw);
    let volume = format!("{}:/cfg", dir.display());
    let gateway = podman_run(
        &[
            "--network",
            &netns,
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_ADMIN,NET_RAW,BPF,IPC_LOCK",
            "--security-opt",
            &seccomp,
            "-v",
            &volume,
        ],
        &[
            "run",
            "--config",
            "/cfg/gw.toml",
            "--duration",
            "8",
            "--stats-json",
            "/cfg/stats.json",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // The container starts more slowly than a bare process: wait for the XDP program.
    let attached = || {
        lab.exec(&lab.gw, &["ip", "link", "show", "dev", "ext-g"])
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("xdp"))
    };
    let t0 = std::time::Instant::now();
    while !attached() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let ping = |args: &[&str]| {
        let mut v = vec!["ping", "-c", "3", "-i", "0.2", "-W", "1"];
        v.extend_from_slice(args);
        lab.exec(&lab.ext, &v)
            .map(|o| text(&o))
            .unwrap_or_else(|e| e.to_string())
    };
    let plain = ping(&["10.244.2.6"]);
    let vxlan = ping(&["-I", "10.99.0.1", "10.244.1.5"]);
    let out = gateway.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the gateway in the image:\n{}",
        text(&out)
    );
    let stats = std::fs::read_to_string(dir.join("stats.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(plain.contains("3 received"), "plain ping:\n{plain}\n{json}");
    assert!(vxlan.contains("3 received"), "VXLAN ping:\n{vxlan}\n{json}");
    assert_eq!(json["ports"]["ext"]["decap"], 3, "{json}");
    assert!(
        text(&out).contains("driver=af_xdp"),
        "the ports were not AF_XDP:\n{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(lab);
    let _ = Command::new("podman").args(["rmi", "-f", TAG]).output();
}
