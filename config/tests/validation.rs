//! Each validation rule: a bad file, and the error must name the TOML path and the line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use config::{parse_and_validate, Config, ConfigError, Machine};
use std::path::Path;

const MACHINE: Machine = Machine { cores: 2 };

const HEAD: &str = r#"
[gateway]
name = "t"
workers = [0]

[[port]]
name = "ext"
driver = "memory"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24", "fd00:a::1/64"]

[[port]]
name = "pods"
driver = "memory"
mac = "02:00:00:00:01:01"
addresses = ["172.18.0.1/16", "fd00:0:0:10c0::1/64"]
"#;

fn check(src: &str) -> Result<Config, ConfigError> {
    parse_and_validate(src, "t.toml", Path::new("."), MACHINE)
}

/// Asserts that `src` fails with a problem at `path` on `line` whose message contains `needle`.
fn assert_problem(src: &str, path: &str, line: usize, needle: &str) {
    let err = check(src).expect_err("config should be rejected");
    let found = err.problems().iter().any(|p| {
        p.path.to_string() == path
            && p.location.map(|l| l.0) == Some(line)
            && p.message.contains(needle)
    });
    assert!(
        found,
        "no problem at {path} line {line} containing {needle:?} in:\n{err}"
    );
}

/// 1-based line of the first occurrence of `needle` in `src`.
fn line_of(src: &str, needle: &str) -> usize {
    let at = src.find(needle).expect("needle in source");
    src[..at].matches('\n').count() + 1
}

fn line_of_nth(src: &str, needle: &str, nth: usize) -> usize {
    let mut at = 0;
    for n in 0..=nth {
        at += src[at..].find(needle).expect("needle") + usize::from(n < nth);
    }
    src[..at].matches('\n').count() + 1
}

#[test]
fn example_configs_pass_validation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            config::load_file(&path, MACHINE).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n > 0);
}

#[test]
fn head_fixture_is_valid() {
    let c = check(HEAD).unwrap();
    assert_eq!(c.ports.len(), 2);
    assert_eq!(c.burst, 32, "default burst");
}

#[test]
fn unknown_key_is_rejected_with_path_and_line() {
    let src = format!("{HEAD}\n[[route]]\nprefix = \"10.0.0.0/8\"\nnexthop = \"172.18.0.2\"\n");
    assert_problem(
        &src,
        "route[0].nexthop",
        line_of(&src, "nexthop"),
        "unknown field",
    );
}

#[test]
fn unknown_key_in_gateway_table_is_rejected() {
    let src = HEAD.replace("workers = [0]", "workers = [0]\ncores = 3");
    assert_problem(
        &src,
        "gateway.cores",
        line_of(&src, "cores"),
        "unknown field",
    );
}

#[test]
fn unknown_keys_are_reported_with_every_other_problem() {
    let src = format!(
        "{}\n[[route]]\nprefix = \"10.0.0.0/33\"\nvia = [\"172.18.0.2\"]\ncolour = \"red\"\n",
        HEAD.replace("workers = [0]", "workers = [0]\ncores = 3")
    );
    let err = check(&src).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    assert_problem(
        &src,
        "gateway.cores",
        line_of(&src, "cores"),
        "unknown field `cores`",
    );
    assert_problem(
        &src,
        "route[0].colour",
        line_of(&src, "colour"),
        "unknown field `colour`",
    );
    assert_problem(&src, "route[0].prefix", line_of(&src, "10.0.0.0/33"), "");
    assert_eq!(err.problems().len(), 3, "{err}");
}

#[test]
fn unknown_key_before_a_schema_error_is_reported_with_it() {
    let src = format!(
        "{}\n[[route]]\nprefix = \"10.0.0.0/8\"\nvia = 7\n",
        HEAD.replace("workers = [0]", "workers = [0]\ncores = 3")
    );
    let err = check(&src).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert_problem(
        &src,
        "gateway.cores",
        line_of(&src, "cores"),
        "unknown field",
    );
    assert_problem(&src, "route[0].via", line_of(&src, "via = 7"), "");
}

#[test]
fn metrics_listen_must_be_an_address_and_port() {
    let ok = format!("{HEAD}\n[metrics]\nlisten = \"127.0.0.1:9108\"\n");
    assert_eq!(
        check(&ok).unwrap().metrics,
        Some("127.0.0.1:9108".parse().unwrap())
    );
    assert_eq!(check(HEAD).unwrap().metrics, None, "off by default");
    let src = format!("{HEAD}\n[metrics]\nlisten = \"localhost\"\n");
    assert_problem(
        &src,
        "metrics.listen",
        line_of(&src, "localhost"),
        "not ADDRESS:PORT",
    );
}

#[test]
fn control_group_must_be_a_group_name_or_id() {
    let ok = HEAD.replace(
        "workers = [0]",
        "workers = [0]\ncontrol_group = \"gw-admin\"",
    );
    assert_eq!(
        check(&ok).unwrap().control_group.as_deref(),
        Some("gw-admin")
    );
    let ok = HEAD.replace("workers = [0]", "workers = [0]\ncontrol_group = \"4242\"");
    assert!(check(&ok).is_ok());
    let src = HEAD.replace(
        "workers = [0]",
        "workers = [0]\ncontrol_group = \"admins; rm\"",
    );
    assert_problem(
        &src,
        "gateway.control_group",
        line_of(&src, "control_group"),
        "not a group name",
    );
}

#[test]
fn wrong_type_is_rejected_with_path() {
    let src = HEAD.replace("workers = [0]", "workers = \"zero\"");
    assert_problem(&src, "gateway.workers", line_of(&src, "workers"), "");
}

#[test]
fn toml_syntax_error_has_a_line() {
    let src = format!("{HEAD}\n[[route]\n");
    let err = check(&src).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert_eq!(
        err.problems()[0].location.map(|l| l.0),
        Some(line_of(&src, "[[route]"))
    );
}

#[test]
fn bad_prefix_is_rejected() {
    let src = format!("{HEAD}\n[[route]]\nprefix = \"10.0.0.0/33\"\nvia = \"172.18.0.2\"\n");
    assert_problem(
        &src,
        "route[0].prefix",
        line_of(&src, "10.0.0.0/33"),
        "not a prefix",
    );
}

#[test]
fn prefix_with_host_bits_suggests_the_network() {
    let src = format!("{HEAD}\n[[route]]\nprefix = \"10.1.2.3/8\"\nvia = \"172.18.0.2\"\n");
    assert_problem(
        &src,
        "route[0].prefix",
        line_of(&src, "10.1.2.3/8"),
        "did you mean 10.0.0.0/8",
    );
}

#[test]
fn bad_interface_address_is_rejected() {
    let src = HEAD.replace("\"192.0.2.1/24\"", "\"192.0.2.1\"");
    assert_problem(
        &src,
        "port[0].addresses[0]",
        line_of(&src, "192.0.2.1\""),
        "prefix length",
    );
}

#[test]
fn bad_mac_is_rejected() {
    let src = HEAD.replace("02:00:00:00:00:01", "02:00:00:00:01");
    assert_problem(
        &src,
        "port[0].mac",
        line_of(&src, "02:00:00:00:01\""),
        "not a MAC",
    );
}

#[test]
fn multicast_mac_is_rejected() {
    let src = HEAD.replace("02:00:00:00:00:01", "01:00:5e:00:00:01");
    assert_problem(&src, "port[0].mac", line_of(&src, "01:00:5e"), "multicast");
}

#[test]
fn duplicate_port_name_is_rejected() {
    let src = HEAD.replace("name = \"pods\"", "name = \"ext\"");
    assert_problem(
        &src,
        "port[1].name",
        line_of_nth(&src, "name = \"ext\"", 1),
        "duplicate port",
    );
}

#[test]
fn duplicate_route_is_rejected() {
    let r = "\n[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"172.18.0.2\"\n";
    let src = format!("{HEAD}{r}{r}");
    assert_problem(
        &src,
        "route[1].prefix",
        line_of_nth(&src, "10.0.0.0/8", 1),
        "duplicate route",
    );
}

#[test]
fn ipv6_next_hop_outside_the_slash_64_is_rejected_naming_route_and_ports() {
    // The common IPv6 mistake: a /64 interface address with a next hop elsewhere in the /59.
    let src = format!(
        "{HEAD}\n[[route]]\nprefix = \"fd00:0:0:1040::/108\"\nvia = \"fd00:0:0:10c1::2\"\n"
    );
    assert_problem(
        &src,
        "route[0].via",
        line_of(&src, "10c1::2"),
        "no connected subnet",
    );
    let err = check(&src).unwrap_err().to_string();
    assert!(err.contains("fd00:0:0:1040::/108"), "{err}");
    assert!(err.contains("pods fd00:0:0:10c0::/64"), "{err}");
}

#[test]
fn ecmp_mixing_families_is_rejected() {
    let src = format!(
        "{HEAD}\n[[route]]\nprefix = \"10.96.0.0/12\"\nvia = [\"172.18.0.2\", \"fd00:0:0:10c0::2\"]\n"
    );
    assert_problem(
        &src,
        "route[0].via[1]",
        line_of(&src, "via ="),
        "mix families",
    );
}

#[test]
fn next_hop_of_other_family_than_prefix_is_rejected() {
    let src = format!("{HEAD}\n[[route]]\nprefix = \"10.96.0.0/12\"\nvia = \"fd00:0:0:10c0::2\"\n");
    assert_problem(&src, "route[0].via", line_of(&src, "via ="), "same family");
}

#[test]
fn worker_core_that_does_not_exist_is_rejected() {
    let src = HEAD.replace("workers = [0]", "workers = [0, 7]");
    assert_problem(
        &src,
        "gateway.workers[1]",
        line_of(&src, "workers"),
        "core 7 does not exist",
    );
}

#[test]
fn duplicate_worker_core_is_rejected() {
    let src = HEAD.replace("workers = [0]", "workers = [1, 1]");
    assert_problem(
        &src,
        "gateway.workers[1]",
        line_of(&src, "workers"),
        "listed twice",
    );
}

#[test]
fn overlapping_port_subnets_are_rejected() {
    let src = HEAD.replace("\"172.18.0.1/16\"", "\"192.0.2.129/25\"");
    assert_problem(
        &src,
        "port[1].addresses[0]",
        line_of(&src, "192.0.2.129"),
        "overlaps",
    );
}

#[test]
fn pcap_port_without_rx_or_tx_is_rejected() {
    let src = HEAD.replacen("driver = \"memory\"", "driver = \"pcap\"", 1);
    assert_problem(
        &src,
        "port[0].driver",
        line_of(&src, "\"pcap\""),
        "needs `rx`, `tx`",
    );
}

#[test]
fn pcap_paths_are_resolved_against_the_config_directory() {
    let src = HEAD.replacen(
        "driver = \"memory\"",
        "driver = \"pcap\"\nrx = \"in.pcap\"",
        1,
    );
    let c = parse_and_validate(&src, "t.toml", Path::new("/etc/gw"), MACHINE).unwrap();
    assert_eq!(
        c.ports[0].driver,
        config::Driver::Pcap {
            rx: Some("/etc/gw/in.pcap".into()),
            tx: None
        }
    );
}

#[test]
fn neighbor_on_unknown_port_is_rejected() {
    let src = format!("{HEAD}\n[[neighbor]]\naddress = \"172.18.0.2\"\nmac = \"02:00:00:00:02:01\"\nport = \"nope\"\n");
    assert_problem(
        &src,
        "neighbor[0].port",
        line_of(&src, "\"nope\""),
        "no port is named",
    );
}

#[test]
fn neighbor_outside_its_port_subnet_is_rejected() {
    let src = format!("{HEAD}\n[[neighbor]]\naddress = \"192.0.2.7\"\nmac = \"02:00:00:00:02:01\"\nport = \"pods\"\n");
    assert_problem(
        &src,
        "neighbor[0].address",
        line_of(&src, "192.0.2.7"),
        "not inside",
    );
}

#[test]
fn forwarding_route_without_via_is_rejected() {
    let src = format!("{HEAD}\n[[route]]\nprefix = \"10.0.0.0/8\"\n");
    assert_problem(&src, "route[0]", line_of(&src, "[[route]]"), "needs `via`");
}

#[test]
fn drop_route_with_via_is_rejected() {
    let src = format!(
        "{HEAD}\n[[route]]\nprefix = \"10.0.0.0/8\"\naction = \"drop\"\nvia = \"172.18.0.2\"\n"
    );
    assert_problem(
        &src,
        "route[0].via",
        line_of(&src, "via ="),
        "takes no `via`",
    );
}

#[test]
fn next_hop_that_is_our_own_address_is_rejected() {
    let src = format!("{HEAD}\n[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"172.18.0.1\"\n");
    assert_problem(
        &src,
        "route[0].via",
        line_of(&src, "via ="),
        "own addresses",
    );
}

const GTPU: &str = r#"
[[tunnel]]
name = "ran"
kind = "gtpu"
local = "192.0.2.1"
peer = "192.0.2.10"
[[tunnel.session]]
ue = "10.46.0.0/16"
teid_in = 0x1001
teid_out = 0x2001
qfi = 9
"#;

#[test]
fn tunnels_of_every_kind_validate() {
    let src = format!(
        "{HEAD}{GTPU}\n[[tunnel]]\nname = \"calico\"\nkind = \"vxlan\"\nlocal = \"192.0.2.1\"\nvni = 4096\npeers = [\"192.0.2.20\"]\n\n[[tunnel]]\nname = \"kr\"\nkind = \"ipip\"\nlocal = \"192.0.2.1\"\npeers = [\"192.0.2.30\", \"fd00:a::30\"]\n\n[[route]]\nprefix = \"10.46.0.0/16\"\ntunnel = \"ran\"\n"
    );
    let c = check(&src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.tunnels.len(), 3);
    assert_eq!(
        c.routes[0].target,
        config::RouteTarget::Tunnel {
            tunnel: 0,
            via: vec![]
        }
    );
    match &c.tunnels[1].kind {
        config::TunnelKind::Vxlan { udp_port, vni, .. } => {
            assert_eq!((*udp_port, *vni), (4789, 4096))
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn tunnel_local_must_be_one_of_our_addresses() {
    let src = format!(
        "{HEAD}{}",
        GTPU.replace("local = \"192.0.2.1\"", "local = \"192.0.2.99\"")
    );
    assert_problem(
        &src,
        "tunnel[0].local",
        line_of(&src, "192.0.2.99"),
        "not one of the gateway's",
    );
}

#[test]
fn duplicate_teid_on_one_endpoint_is_rejected() {
    let src = format!(
        "{HEAD}{GTPU}[[tunnel.session]]\nue = \"10.47.0.0/16\"\nteid_in = 4097\nteid_out = 1\n"
    );
    assert_problem(
        &src,
        "tunnel[0].session[1].teid_in",
        line_of(&src, "teid_in = 4097"),
        "already used",
    );
}

#[test]
fn teid_zero_is_rejected() {
    let src = format!("{HEAD}{}", GTPU.replace("teid_in = 0x1001", "teid_in = 0"));
    assert_problem(
        &src,
        "tunnel[0].session[0].teid_in",
        line_of(&src, "teid_in = 0"),
        "reserved",
    );
}

#[test]
fn overlapping_ue_ranges_are_rejected() {
    let src = format!(
        "{HEAD}{GTPU}[[tunnel.session]]\nue = \"10.46.128.0/17\"\nteid_in = 7\nteid_out = 8\n"
    );
    assert_problem(
        &src,
        "tunnel[0].session[1].ue",
        line_of(&src, "10.46.128.0/17"),
        "overlaps",
    );
}

#[test]
fn vni_beyond_24_bits_is_rejected() {
    let src = format!("{HEAD}\n[[tunnel]]\nname = \"v\"\nkind = \"vxlan\"\nlocal = \"192.0.2.1\"\nvni = 16777216\npeers = [\"192.0.2.20\"]\n");
    assert_problem(&src, "tunnel[0].vni", line_of(&src, "vni ="), "24 bits");
}

#[test]
fn key_of_another_tunnel_kind_is_rejected() {
    let src = format!("{HEAD}\n[[tunnel]]\nname = \"k\"\nkind = \"ipip\"\nlocal = \"192.0.2.1\"\nvni = 1\npeers = [\"192.0.2.30\"]\n");
    assert_problem(
        &src,
        "tunnel[0].vni",
        line_of(&src, "vni ="),
        "does not apply",
    );
}

#[test]
fn route_into_a_vxlan_tunnel_without_peer_mac_is_rejected() {
    let src = format!("{HEAD}\n[[tunnel]]\nname = \"v\"\nkind = \"vxlan\"\nlocal = \"192.0.2.1\"\nvni = 1\npeers = [\"192.0.2.20\"]\n\n[[route]]\nprefix = \"10.51.0.0/16\"\ntunnel = \"v\"\n");
    assert_problem(
        &src,
        "route[0].tunnel",
        line_of(&src, "tunnel = \"v\""),
        "peer_mac",
    );
}

const IPIP2: &str = "\n[[tunnel]]\nname = \"kr\"\nkind = \"ipip\"\nlocal = \"192.0.2.1\"\npeers = [\"192.0.2.30\", \"192.0.2.31\"]\n";

#[test]
fn route_into_an_ipip_tunnel_may_pick_its_peers_with_via() {
    let src = format!(
        "{HEAD}{IPIP2}\n[[route]]\nprefix = \"10.50.0.0/16\"\ntunnel = \"kr\"\nvia = \"192.0.2.31\"\n\n[[route]]\nprefix = \"10.51.0.0/16\"\ntunnel = \"kr\"\n"
    );
    let c = check(&src).unwrap_or_else(|e| panic!("{e}"));
    let via = |i: usize| match &c.routes[i].target {
        config::RouteTarget::Tunnel { via, .. } => via.clone(),
        t => panic!("{t:?}"),
    };
    assert_eq!(
        via(0),
        vec!["192.0.2.31".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(via(1).is_empty(), "no via: every peer");
}

#[test]
fn route_into_a_tunnel_via_an_address_that_is_not_a_peer_is_rejected() {
    let src = format!(
        "{HEAD}{IPIP2}\n[[route]]\nprefix = \"10.50.0.0/16\"\ntunnel = \"kr\"\nvia = [\"192.0.2.30\", \"192.0.2.99\", \"192.0.2.30\"]\n"
    );
    let line = line_of(&src, "192.0.2.99\", ");
    assert_problem(
        &src,
        "route[0].via[1]",
        line,
        "not one of the `peers` of tunnel `kr`",
    );
    assert_problem(&src, "route[0].via[2]", line, "listed twice");
}

#[test]
fn route_into_a_gtpu_tunnel_takes_no_via() {
    let src = format!(
        "{HEAD}{GTPU}\n[[route]]\nprefix = \"10.46.0.0/16\"\ntunnel = \"ran\"\nvia = \"192.0.2.10\"\naction = \"drop\"\n"
    );
    assert_problem(
        &src,
        "route[0].via",
        line_of(&src, "via = "),
        "takes no `via`",
    );
    assert_problem(
        &src,
        "route[0].action",
        line_of(&src, "action = "),
        "no `action`",
    );
}

#[test]
fn vxlan_peer_macs_are_one_for_all_or_one_per_peer() {
    let tunnel = |macs: &str| {
        format!("{HEAD}\n[[tunnel]]\nname = \"v\"\nkind = \"vxlan\"\nlocal = \"192.0.2.1\"\nvni = 1\npeers = [\"192.0.2.20\", \"192.0.2.21\"]\npeer_mac = {macs}\n")
    };
    let c = check(&tunnel(r#"["02:00:00:00:00:20", "02:00:00:00:00:21"]"#))
        .unwrap_or_else(|e| panic!("{e}"));
    let config::TunnelKind::Vxlan { peer_macs, .. } = &c.tunnels[0].kind else {
        panic!("{:?}", c.tunnels[0].kind)
    };
    assert_eq!(peer_macs[1].0, [2, 0, 0, 0, 0, 0x21]);
    let c = check(&tunnel(r#""02:00:00:00:00:20""#)).unwrap_or_else(|e| panic!("{e}"));
    let config::TunnelKind::Vxlan { peer_macs, .. } = &c.tunnels[0].kind else {
        panic!("{:?}", c.tunnels[0].kind)
    };
    assert_eq!(peer_macs.len(), 2, "one MAC serves every peer");
    let src = tunnel(r#"["02:00:00:00:00:20"]"#);
    assert_problem(
        &src,
        "tunnel[0].peer_mac",
        line_of(&src, "peer_mac ="),
        "1 MACs for 2 peers",
    );
    let src = tunnel(r#"["02:00:00:00:00:20", "01:00:5e:00:00:01"]"#);
    assert_problem(
        &src,
        "tunnel[0].peer_mac[1]",
        line_of(&src, "peer_mac ="),
        "multicast",
    );
}

#[test]
fn route_into_an_unknown_tunnel_is_rejected() {
    let src = format!("{HEAD}\n[[route]]\nprefix = \"10.46.0.0/16\"\ntunnel = \"nope\"\n");
    assert_problem(
        &src,
        "route[0].tunnel",
        line_of(&src, "\"nope\""),
        "no tunnel is named",
    );
}

#[test]
fn ipv6_port_with_small_mtu_is_rejected() {
    let src = HEAD.replacen("driver = \"memory\"", "driver = \"memory\"\nmtu = 1000", 1);
    assert_problem(&src, "port[0].mtu", line_of(&src, "mtu = 1000"), "1280");
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let src = format!(
        "{}\n[[route]]\nprefix = \"10.0.0.0/33\"\nvia = \"172.18.0.2\"\n[[route]]\nprefix = \"10.1.0.0/16\"\nvia = \"9.9.9.9\"\n",
        HEAD.replace("workers = [0]", "workers = [5]").replace("02:00:00:00:00:01", "zz")
    );
    let err = check(&src).unwrap_err();
    let paths: Vec<String> = err.problems().iter().map(|p| p.path.to_string()).collect();
    for want in [
        "gateway.workers[0]",
        "port[0].mac",
        "route[0].prefix",
        "route[1].via",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{want} missing from {paths:?}"
        );
    }
    // Every problem carries a location, and the rendering names the file.
    assert!(err.problems().iter().all(|p| p.location.is_some()));
    assert!(
        err.to_string().lines().all(|l| l.starts_with("t.toml:")),
        "{err}"
    );
}

#[test]
fn defaults_have_their_documented_values() {
    assert_eq!(config::schema::default_burst(), 32);
    assert_eq!(config::schema::default_mtu(), 1500);
    assert_eq!(config::schema::default_workers(), vec![0]);
    assert_eq!(config::schema::default_name(), "gateway");
}

#[test]
fn pass_to_kernel_is_refused_on_ports_that_do_not_take_frames_from_the_kernel() {
    let src = HEAD.replacen(
        "driver = \"memory\"\n",
        "driver = \"memory\"\npass_to_kernel = true\n",
        1,
    );
    assert_problem(
        &src,
        "port[0].pass_to_kernel",
        line_of(&src, "pass_to_kernel"),
        "only af_xdp ports",
    );
    // On an af_xdp port it is accepted and reaches the model.
    let src = HEAD.replacen(
        "driver = \"memory\"\n",
        "driver = \"af_xdp\"\ninterface = \"ext-g\"\npass_to_kernel = true\n",
        1,
    );
    let c = check(&src).unwrap();
    assert!(c.ports[0].pass_to_kernel && !c.ports[1].pass_to_kernel);
}

#[test]
fn an_af_xdp_mtu_larger_than_its_frames_and_bad_vlan_ids_are_refused() {
    let src = r#"
[gateway]
name = "t"

[[port]]
name = "ext"
driver = "af_xdp"
interface = "veth0"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
mtu = 9000
vlans = [100, 0, 100, 4095]
"#;
    assert_problem(
        src,
        "port[0].mtu",
        line_of(src, "mtu ="),
        "does not fit an af_xdp frame",
    );
    let vl = line_of(src, "vlans =");
    assert_problem(src, "port[0].vlans[1]", vl, "VLAN ID 0 is outside");
    assert_problem(src, "port[0].vlans[2]", vl, "listed twice");
    assert_problem(src, "port[0].vlans[3]", vl, "VLAN ID 4095 is outside");
    let over = src.replace("mtu = 9000", "mtu = 1771");
    assert_problem(
        &over,
        "port[0].mtu",
        line_of(&over, "mtu ="),
        "at most 1770",
    );
    let ok = src
        .replace("mtu = 9000", "mtu = 1770")
        .replace("[100, 0, 100, 4095]", "[100]");
    let c = check(&ok).unwrap();
    assert_eq!(c.ports[0].vlans, [100]);
}

#[test]
fn icmp_limits_default_to_linuxs_and_a_zero_burst_is_refused() {
    let c = check(HEAD).unwrap();
    assert_eq!((c.reply_limit.rate, c.reply_limit.burst), (1000, 50));
    let src = format!("{HEAD}\n[icmp]\nrate = 10\nburst = 0\n");
    assert_problem(&src, "icmp.burst", line_of(&src, "burst = 0"), "burst 0");
}

#[test]
fn geneve_tunnels_default_to_6081_and_need_no_peer_mac() {
    let src = format!("{HEAD}\n[[tunnel]]\nname = \"g\"\nkind = \"geneve\"\nlocal = \"192.0.2.1\"\nvni = 2\npeers = [\"192.0.2.40\"]\n\n[[route]]\nprefix = \"10.60.0.0/16\"\ntunnel = \"g\"\n");
    let c = check(&src).unwrap_or_else(|e| panic!("{e}"));
    match &c.tunnels[0].kind {
        config::TunnelKind::Geneve {
            udp_port,
            vni,
            peer_macs,
            ..
        } => assert_eq!((*udp_port, *vni, peer_macs.len()), (6081, 2, 0)),
        k => panic!("{k:?}"),
    }
}

#[test]
fn bad_geneve_tunnels_get_every_problem_at_once() {
    // No VNI; a VNI past 24 bits; a peer of the other family; a GTP-U key; the UDP port of
    // a VXLAN tunnel (a port carries one kind).
    let src = format!(
        "{HEAD}\n[[tunnel]]\nname = \"v\"\nkind = \"vxlan\"\nlocal = \"192.0.2.1\"\nvni = 1\nudp_port = 8472\npeers = [\"192.0.2.20\"]\n\n[[tunnel]]\nname = \"g1\"\nkind = \"geneve\"\nlocal = \"192.0.2.1\"\npeers = [\"192.0.2.40\"]\n\n[[tunnel]]\nname = \"g2\"\nkind = \"geneve\"\nlocal = \"192.0.2.1\"\nvni = 16777216\npeers = [\"fd00:a::40\"]\npeer = \"192.0.2.41\"\n\n[[tunnel]]\nname = \"g3\"\nkind = \"geneve\"\nlocal = \"192.0.2.1\"\nvni = 3\nudp_port = 8472\npeers = [\"192.0.2.40\"]\n"
    );
    let err = check(&src).expect_err("rejected");
    assert_eq!(err.problems().len(), 5, "{err}");
    assert_problem(
        &src,
        "tunnel[1]",
        line_of(&src, "name = \"g1\"") - 1,
        "needs `vni`",
    );
    assert_problem(
        &src,
        "tunnel[2].vni",
        line_of(&src, "vni = 16777216"),
        "24 bits",
    );
    assert_problem(
        &src,
        "tunnel[2].peers[0]",
        line_of(&src, "peers = [\"fd00:a::40\"]"),
        "family",
    );
    assert_problem(
        &src,
        "tunnel[2].peer",
        line_of(&src, "peer = \"192.0.2.41\""),
        "does not apply",
    );
    assert_problem(
        &src,
        "tunnel[3].udp_port",
        line_of(&src, "vni = 3") + 1,
        "already carries vxlan",
    );
}

#[test]
fn values_of_the_wrong_type_in_several_entries_are_all_reported() {
    // Serde stops at the first; each entry is then read on its own.
    let src = format!(
        "{HEAD}\n[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"172.18.0.2\"\nhairpin = \"yes\"\n\n[[route]]\nprefix = \"10.1.0.0/16\"\nvia = \"172.18.0.2\"\n\n[[tunnel]]\nkind = \"ipip\"\nlocal = \"192.0.2.1\"\npeers = [\"192.0.2.30\"]\n\n[icmp]\nrate = -5\n"
    );
    let err = check(&src).expect_err("rejected");
    assert_eq!(err.problems().len(), 3, "{err}");
    assert_problem(
        &src,
        "route[0].hairpin",
        line_of(&src, "hairpin ="),
        "invalid type",
    );
    assert_problem(
        &src,
        "tunnel[0]",
        line_of(&src, "kind = \"ipip\"") - 1,
        "missing field `name`",
    );
    assert_problem(
        &src,
        "icmp.rate",
        line_of(&src, "rate = -5"),
        "invalid value",
    );
}

#[test]
fn route_sources_and_export_read_with_their_defaults() {
    let src = format!(
        "{HEAD}\n[[route_source]]\nkind = \"kernel\"\ntable = 100\nprotocols = [\"bird\", 4]\n\n[[route_source]]\nkind = \"kernel\"\ntable = 1000\nfamily = \"ipv6\"\nprefer = \"source\"\n\n[route_export]\ntable = 101\nannounce = [\"10.245.0.0/16\"]\n"
    );
    let c = check(&src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.route_sources,
        vec![
            config::RouteSource {
                table: 100,
                v4: true,
                v6: true,
                protocols: vec![12, 4],
                prefer_file: true,
            },
            config::RouteSource {
                table: 1000,
                v4: false,
                v6: true,
                protocols: vec![],
                prefer_file: false,
            },
        ]
    );
    let e = c.route_export.unwrap();
    assert_eq!(
        (e.table, e.sessions, e.device.as_str()),
        (101, true, "gw-announce")
    );
    assert_eq!(
        e.announce,
        vec!["10.245.0.0/16".parse::<ipnet::IpNet>().unwrap()]
    );
}

#[test]
fn bad_route_sources_and_export_get_every_problem_at_once() {
    // Table 0; table 255 (local); the same table twice; an unknown protocol name and one past
    // 255; an unknown key; an export into a mirrored table; a prefix with host bits and one
    // that is no prefix; a device name too long.
    let src = format!(
        "{HEAD}\n[[route_source]]\nkind = \"kernel\"\ntable = 0\n\n[[route_source]]\nkind = \"kernel\"\ntable = 255\n\n[[route_source]]\nkind = \"kernel\"\ntable = 100\nprotocols = [\"birdd\", 300]\nfamilly = \"ipv4\"\n\n[[route_source]]\nkind = \"kernel\"\ntable = 100\n\n[route_export]\ntable = 100\nannounce = [\"10.245.0.1/16\", \"nope\"]\ndevice = \"a-very-long-device-name\"\n"
    );
    let err = check(&src).expect_err("rejected");
    assert_eq!(err.problems().len(), 10, "{err}");
    assert_problem(
        &src,
        "route_source[0].table",
        line_of(&src, "table = 0"),
        "not a kernel routing table",
    );
    assert_problem(
        &src,
        "route_source[1].table",
        line_of(&src, "table = 255"),
        "`local` table",
    );
    assert_problem(
        &src,
        "route_source[2].protocols[0]",
        line_of(&src, "protocols = "),
        "`birdd` is not a routing protocol",
    );
    assert_problem(
        &src,
        "route_source[2].protocols[1]",
        line_of(&src, "protocols = "),
        "300 is not a routing protocol",
    );
    assert_problem(
        &src,
        "route_source[2].familly",
        line_of(&src, "familly"),
        "unknown field",
    );
    assert_problem(
        &src,
        "route_source[3].table",
        line_of(&src, "familly") + 4,
        "mirrored twice",
    );
    assert_problem(
        &src,
        "route_export.table",
        line_of(&src, "[route_export]") + 1,
        "also a route source",
    );
    assert_problem(
        &src,
        "route_export.announce[0]",
        line_of(&src, "announce = "),
        "host bits",
    );
    assert_problem(
        &src,
        "route_export.announce[1]",
        line_of(&src, "announce = "),
        "not a prefix",
    );
    assert_problem(
        &src,
        "route_export.device",
        line_of(&src, "device = "),
        "not an interface name",
    );
}

#[test]
fn a_route_source_of_the_wrong_kind_or_type_is_reported_with_its_line() {
    let src = format!(
        "{HEAD}\n[[route_source]]\nkind = \"bgp\"\ntable = 100\n\n[[route_source]]\nkind = \"kernel\"\ntable = \"main\"\n"
    );
    let err = check(&src).expect_err("rejected");
    assert_eq!(err.problems().len(), 2, "{err}");
    assert_problem(
        &src,
        "route_source[0].kind",
        line_of(&src, "kind = \"bgp\""),
        "unknown variant",
    );
    assert_problem(
        &src,
        "route_source[1].table",
        line_of(&src, "table = \"main\""),
        "invalid type",
    );
}

#[test]
fn the_exported_prefixes_are_the_announced_ones_then_each_sessions_ue_range_once() {
    let src = format!(
        "{HEAD}\n[[tunnel]]\nname = \"n3\"\nkind = \"gtpu\"\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.50\"\n\n[[tunnel.session]]\nue = \"10.45.0.0/24\"\nteid_in = 1\nteid_out = 2\n\n[[tunnel.session]]\nue = \"10.245.0.0/16\"\nteid_in = 3\nteid_out = 4\n\n[route_export]\ntable = 101\nannounce = [\"10.245.0.0/16\"]\n"
    );
    let c = check(&src).unwrap_or_else(|e| panic!("{e}"));
    let e = c.route_export.clone().unwrap();
    let want: Vec<ipnet::IpNet> = ["10.245.0.0/16", "10.45.0.0/24"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(e.prefixes(&c.tunnels), want);
    let without = config::RouteExport {
        sessions: false,
        ..e
    };
    assert_eq!(without.prefixes(&c.tunnels), want[..1].to_vec());
}
