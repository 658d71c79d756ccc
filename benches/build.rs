//! With `--features dpdk`: compiles `dpdk/shim.c` against Debian's DPDK (`libdpdk-dev`), with
//! the flags and libraries `pkg-config libdpdk` names. Without the feature it does nothing.

// A build script fails by panicking, with the reason for the person building.
#![allow(clippy::panic)]

#[cfg(feature = "dpdk")]
use std::process::Command;

#[cfg(feature = "dpdk")]
fn pkg_config(arg: &str) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args([arg, "libdpdk"])
        .output()
        .unwrap_or_else(|e| panic!("pkg-config: {e} (apt-get install pkg-config libdpdk-dev)"));
    assert!(
        out.status.success(),
        "pkg-config {arg} libdpdk: {} (apt-get install libdpdk-dev)",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    #[cfg(feature = "dpdk")]
    dpdk();
}

#[cfg(feature = "dpdk")]
fn dpdk() {
    println!("cargo:rerun-if-changed=dpdk/shim.c");
    let mut build = cc::Build::new();
    build.file("dpdk/shim.c").opt_level(3).warnings(false);
    // `-include rte_config.h` is two words; pass each flag as pkg-config printed it.
    for flag in pkg_config("--cflags") {
        build.flag(&flag);
    }
    build.compile("dpdk_shim");
    for flag in pkg_config("--libs") {
        if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        } else if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
    }
}
