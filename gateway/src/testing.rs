//! Test support shared by the unit tests of this crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Two in-memory ports (external and pods), a static neighbour on the pod network and one
/// route to the pods through a next hop that is not that neighbour.
pub const TWO_PORTS: &str = r#"
[gateway]
name = "t"

[[port]]
name = "ext"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24", "fd00:a::1/64"]

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
via = "172.18.0.3"
"#;

/// `src` validated for a two-core machine; panics on a problem.
pub fn parse(src: &str) -> config::Config {
    config::parse_and_validate(
        src,
        "t.toml",
        std::path::Path::new("."),
        config::Machine { cores: 2 },
    )
    .unwrap()
}
