//! The daemon apart from its tools: no module of the daemon (everything in `gateway/src` but
//! `tools/` and the CLI in `main.rs`) refers to the tools tree, and no forwarding code in
//! `datapath/src` refers to pktgen's live-frames sender (`port/live_frames.rs`). Read from the
//! sources, so a new `use` that breaks the rule fails here rather than in review.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Files under `root` (except `allowed`) whose code names `needle`, with the line.
fn offenders(root: &Path, allowed: &[&str], needle: &str) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(files.len() > 5, "no sources under {}", root.display());
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        for (i, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && code.contains(needle) {
                out.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_daemon_never_imports_its_tools() {
    let src = root().join("gateway/src");
    assert!(src.join("tools/pktgen/mod.rs").exists());
    let found = offenders(&src, &["tools/", "main.rs"], "tools::");
    assert!(
        found.is_empty(),
        "daemon code uses the tools:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_forwarding_code_never_imports_the_live_frames_sender() {
    let src = root().join("datapath/src");
    let found = offenders(&src, &["port/live_frames.rs"], "live_frames");
    // Its declaration in port/mod.rs is the only mention allowed.
    let declaration =
        |l: &String| l.starts_with("port/mod.rs:") && l.ends_with(" pub mod live_frames;");
    assert!(
        found.len() == 1 && found.iter().all(declaration),
        "forwarding code names the sender:\n{}",
        found.join("\n")
    );
    let bpf = std::fs::read_to_string(src.join("port/bpf.rs")).unwrap();
    for name in ["LiveSender", "sender_program", "LIVE_FRAMES"] {
        assert!(!bpf.contains(name), "port/bpf.rs still holds {name}");
    }
}
