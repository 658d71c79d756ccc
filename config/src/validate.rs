//! Validation: raw schema → [`Config`], reporting every problem with its TOML path and location.

use crate::locate::{key_span_of, line_col, span_of, LineIndex, Seg, TomlPath};
use crate::model::*;
use crate::schema::*;
use crate::MacAddr;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Facts about the machine that validation checks against (injected so tests are deterministic).
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    /// Number of CPU cores; worker core ids must be below this.
    pub cores: usize,
}

impl Machine {
    /// The machine this process runs on.
    pub fn this() -> Self {
        // The CPUs online, not those this process may use now: the gateway is often started
        // under `taskset` with exactly its worker cores.
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| {
                s.trim()
                    .split([',', '-'])
                    .filter_map(|n| n.parse::<usize>().ok())
                    .max()
            })
            .map(|max| max + 1);
        Machine {
            cores: online
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `route[2].via[1]`.
    pub path: TomlPath,
    /// 1-based line and column of the offending item (or its nearest parent), when known.
    pub location: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((l, c)) = self.location {
            write!(f, "{l}:{c}: ")?;
        }
        if self.path.0.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not fit the schema (wrong type, missing key). Values
    /// cannot be checked past such an error, but every unknown key met before it is listed too.
    #[error("{}", render(.file, .problems))]
    Syntax {
        /// The file name used in messages.
        file: String,
        /// Unknown keys found, then the syntax or schema problem.
        problems: Vec<Problem>,
    },
    /// The file fits the schema but its values are wrong; every problem found is listed.
    #[error("{}", render(.file, .problems))]
    Invalid {
        /// The file name used in messages.
        file: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// All problems, whatever the kind of error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Syntax { problems, .. } | ConfigError::Invalid { problems, .. } => {
                problems
            }
        }
    }
}

fn render(file: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (n, p) in problems.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{file}:{p}"));
    }
    out
}

/// Reads, parses and validates a file. Relative pcap paths are resolved against the file's
/// directory.
///
/// # Errors
/// [`ConfigError`] with every problem found.
pub fn load_file(path: &Path, machine: Machine) -> Result<Config, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_and_validate(&src, &path.display().to_string(), &base, machine)
}

/// Parses and validates TOML source. `file` names the source in messages; `base` is the
/// directory relative pcap paths are resolved against.
///
/// # Errors
/// [`ConfigError::Syntax`] for the first syntax or schema error (with the unknown keys met
/// before it), [`ConfigError::Invalid`] with every unknown key and semantic problem.
pub fn parse_and_validate(
    src: &str,
    file: &str,
    base: &Path,
    machine: Machine,
) -> Result<Config, ConfigError> {
    // The span-keeping document is parsed only to locate problems: a large valid file is
    // parsed once.
    let doc = || toml_edit::Document::parse(src.to_string()).ok();
    let locate = |doc: &Option<toml_edit::Document<String>>, problems: Vec<(TomlPath, String)>| {
        // Built once: a file with many problems is not scanned from its start for each.
        let lines = LineIndex::new(src);
        problems
            .into_iter()
            .map(|(path, message)| Problem {
                location: doc
                    .as_ref()
                    .and_then(|d| {
                        // An unknown key is shown where it is written, not at its value.
                        if message.starts_with(UNKNOWN) {
                            key_span_of(d, &path)
                        } else {
                            span_of(d, &path)
                        }
                    })
                    .map(|s| lines.line_col(s.start)),
                path,
                message,
            })
            .collect::<Vec<_>>()
    };
    let de = toml::Deserializer::parse(src).map_err(|e| ConfigError::Syntax {
        file: file.to_string(),
        problems: vec![Problem {
            path: TomlPath::default(),
            location: e.span().map(|s| line_col(src, s.start)),
            message: e.message().to_string(),
        }],
    })?;
    // Unknown keys are not fatal to parsing: they are gathered here and reported with every
    // problem validation finds, so one run of `gateway check` shows them all.
    let mut unknown = Vec::new();
    let mut on_unknown = |p: serde_ignored::Path<'_>| {
        let path = path_from_ignored(&p);
        let key = match path.0.last() {
            Some(Seg::Key(k)) => k.clone(),
            _ => String::new(),
        };
        unknown.push((path, format!("{UNKNOWN} `{key}`")));
    };
    let parsed: Result<RawConfig, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut on_unknown));
    let raw = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            let path = path_from_serde(e.path());
            let doc = doc();
            // The first value of the wrong type stops serde; every entry is then read on its
            // own, so that one run reports each entry's first such problem, not only the
            // first of the file.
            let others: Vec<_> = entry_type_problems(src)
                .into_iter()
                .filter(|(p, _)| *p != path)
                .collect();
            let mut problems = locate(&doc, unknown);
            problems.push(Problem {
                location: e
                    .inner()
                    .span()
                    .or_else(|| doc.as_ref().and_then(|d| span_of(d, &path)))
                    .map(|s| line_col(src, s.start)),
                path,
                message: e.inner().message().to_string(),
            });
            // Serde's own problem is always there; another is only worth its line.
            problems.extend(
                locate(&doc, others)
                    .into_iter()
                    .filter(|p| p.location.is_some()),
            );
            return Err(ConfigError::Syntax {
                file: file.to_string(),
                problems,
            });
        }
    };
    let mut v = Validator {
        machine,
        base,
        problems: unknown,
    };
    let config = v.config(&raw);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            file: file.to_string(),
            problems: locate(&doc(), v.problems),
        })
    }
}

/// The type problems of `src`, one per top-level table or `[[array]]` entry that does not
/// deserialize (missing keys, values of the wrong type), each with its full path. Unknown keys
/// are not among them: they are gathered while the whole file is read.
fn entry_type_problems(src: &str) -> Vec<(TomlPath, String)> {
    use serde::de::DeserializeOwned;
    fn one<T: DeserializeOwned>(v: toml::Value, at: TomlPath, out: &mut Vec<(TomlPath, String)>) {
        if let Err(e) = serde_path_to_error::deserialize::<_, T>(v) {
            let mut path = at;
            path.0.extend(path_from_serde(e.path()).0);
            out.push((path, e.inner().message().to_string()));
        }
    }
    fn entries<T: DeserializeOwned>(name: &str, v: toml::Value, out: &mut Vec<(TomlPath, String)>) {
        match v {
            toml::Value::Array(list) => {
                for (i, e) in list.into_iter().enumerate() {
                    one::<T>(e, TomlPath::entry(name, i), out);
                }
            }
            v => one::<Vec<T>>(v, TomlPath::key(name), out),
        }
    }
    let Ok(table) = src.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, v) in table {
        match key.as_str() {
            "gateway" => one::<RawGateway>(v, TomlPath::key("gateway"), &mut out),
            "port" => entries::<RawPort>("port", v, &mut out),
            "neighbor" => entries::<RawNeighbor>("neighbor", v, &mut out),
            "route" => entries::<RawRoute>("route", v, &mut out),
            "tunnel" => entries::<RawTunnel>("tunnel", v, &mut out),
            "icmp" => one::<RawIcmp>(v, TomlPath::key("icmp"), &mut out),
            "metrics" => one::<RawMetrics>(v, TomlPath::key("metrics"), &mut out),
            "route_source" => entries::<RawRouteSource>("route_source", v, &mut out),
            "route_export" => one::<RawRouteExport>(v, TomlPath::key("route_export"), &mut out),
            _ => {}
        }
    }
    out
}

/// How an unknown key's problem starts (serde's own wording, which users and tests know).
const UNKNOWN: &str = "unknown field";

/// The TOML path of a key `serde_ignored` reports.
fn path_from_ignored(p: &serde_ignored::Path<'_>) -> TomlPath {
    use serde_ignored::Path as P;
    let mut segs = Vec::new();
    let mut at = p;
    loop {
        match at {
            P::Root => break,
            P::Seq { parent, index } => {
                segs.push(Seg::Index(*index));
                at = parent;
            }
            P::Map { parent, key } => {
                segs.push(Seg::Key(key.clone()));
                at = parent;
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                at = parent;
            }
        }
    }
    segs.reverse();
    TomlPath(segs)
}

fn path_from_serde(p: &serde_path_to_error::Path) -> TomlPath {
    use serde_path_to_error::Segment;
    TomlPath(
        p.iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } => Some(Seg::Key(key.clone())),
                Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                Segment::Unknown => None,
            })
            .collect(),
    )
}

struct Validator<'a> {
    machine: Machine,
    base: &'a Path,
    problems: Vec<(TomlPath, String)>,
}

impl Validator<'_> {
    fn err(&mut self, path: TomlPath, message: impl Into<String>) {
        self.problems.push((path, message.into()));
    }

    fn mac(&mut self, path: TomlPath, s: &str) -> MacAddr {
        match s.parse::<MacAddr>() {
            Ok(m) if m.is_multicast() => {
                self.err(
                    path,
                    format!("{m} is a group (multicast) MAC; a unicast MAC is required"),
                );
                m
            }
            Ok(m) if m.is_zero() => {
                self.err(path, "the all-zero MAC is not a valid station address");
                m
            }
            Ok(m) => m,
            Err(e) => {
                self.err(path, e.to_string());
                MacAddr::default()
            }
        }
    }

    fn ip(&mut self, path: TomlPath, s: &str) -> Option<IpAddr> {
        match s.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, format!("`{s}` is not an IPv4 or IPv6 address"));
                None
            }
        }
    }

    fn config(&mut self, raw: &RawConfig) -> Config {
        let g = &raw.gateway;
        let gp = TomlPath::key("gateway");
        if g.name.trim().is_empty() {
            self.err(gp.k("name"), "the gateway name must not be empty");
        }
        if g.workers.is_empty() {
            self.err(gp.k("workers"), "at least one worker core is required");
        }
        for (i, &core) in g.workers.iter().enumerate() {
            if core >= self.machine.cores {
                self.err(
                    gp.k("workers").i(i),
                    format!(
                        "core {core} does not exist on this machine (cores 0..={})",
                        self.machine.cores.saturating_sub(1)
                    ),
                );
            }
            if g.workers[..i].contains(&core) {
                self.err(gp.k("workers").i(i), format!("core {core} is listed twice"));
            }
        }
        if !(1..=MAX_BURST).contains(&g.burst) {
            self.err(
                gp.k("burst"),
                format!("burst {} is outside 1..={MAX_BURST}", g.burst),
            );
        }
        if let Some(group) = &g.control_group {
            // The POSIX portable user and group name characters; a number is a group ID.
            let portable = !group.is_empty()
                && !group.starts_with('-')
                && group
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
            if !portable {
                self.err(
                    gp.k("control_group"),
                    format!("`{group}` is not a group name or a numeric group ID"),
                );
            }
        }

        let metrics = raw.metrics.listen.as_deref().and_then(|l| {
            let parsed = l.parse::<std::net::SocketAddr>();
            if parsed.is_err() {
                self.err(
                    TomlPath::key("metrics").k("listen"),
                    format!("`{l}` is not ADDRESS:PORT (for example 127.0.0.1:9108 or [::]:9108)"),
                );
            }
            parsed.ok()
        });
        if raw.icmp.burst == 0 {
            self.err(
                TomlPath::key("icmp").k("burst"),
                "burst 0 would send no reply at all: set `rate = 0` for that, or a burst of 1 or more",
            );
        }
        let ports = self.ports(&raw.ports);
        let neighbors = self.neighbors(&raw.neighbors, &ports);
        let tunnels = self.tunnels(&raw.tunnels, &ports);
        let routes = self.routes(&raw.routes, &ports, &raw.tunnels);
        let route_sources = self.route_sources(&raw.route_sources);
        let route_export = raw
            .route_export
            .as_ref()
            .map(|e| self.route_export(e, &route_sources));
        Config {
            name: g.name.clone(),
            workers: g.workers.clone(),
            burst: g.burst,
            control_group: g.control_group.clone(),
            ports,
            neighbors,
            routes,
            tunnels,
            reply_limit: ReplyLimit {
                rate: raw.icmp.rate,
                burst: raw.icmp.burst.max(1),
            },
            metrics,
            route_sources,
            route_export,
        }
    }

    /// A kernel table number: 1..=2^32-1, and not 255 (the host's own addresses).
    fn kernel_table(&mut self, at: TomlPath, n: i64) -> u32 {
        match u32::try_from(n) {
            Ok(0) | Err(_) => {
                self.err(
                    at,
                    format!("table {n} is not a kernel routing table (1..=4294967295)"),
                );
                0
            }
            Ok(255) => {
                self.err(
                    at,
                    "table 255 is the host's `local` table (its own addresses), not routes to mirror or write",
                );
                255
            }
            Ok(t) => t,
        }
    }

    fn route_sources(&mut self, raw: &[RawRouteSource]) -> Vec<RouteSource> {
        let mut out: Vec<RouteSource> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let at = TomlPath::entry("route_source", i);
            if i >= MAX_ROUTE_SOURCES {
                self.err(
                    at.clone(),
                    format!("at most {MAX_ROUTE_SOURCES} route sources"),
                );
            }
            let table = self.kernel_table(at.k("table"), r.table);
            if table != 0 && out.iter().any(|o| o.table == table) {
                self.err(at.k("table"), format!("table {table} is mirrored twice"));
            }
            let mut protocols = Vec::new();
            for (j, p) in r.protocols.iter().enumerate() {
                let number = match p {
                    RawProtocol::Number(n) => u8::try_from(*n).ok(),
                    RawProtocol::Name(name) => ROUTE_PROTOCOLS
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|&(_, v)| v)
                        .or_else(|| name.parse().ok()),
                };
                match number {
                    Some(n) => protocols.push(n),
                    None => {
                        let names: Vec<&str> = ROUTE_PROTOCOLS.iter().map(|(n, _)| *n).collect();
                        let shown = match p {
                            RawProtocol::Number(n) => n.to_string(),
                            RawProtocol::Name(n) => format!("`{n}`"),
                        };
                        self.err(
                            at.k("protocols").i(j),
                            format!(
                                "{shown} is not a routing protocol: a number 0..=255 or one of {}",
                                names.join(", ")
                            ),
                        );
                    }
                }
            }
            out.push(RouteSource {
                table,
                v4: r.family != RawFamily::Ipv6,
                v6: r.family != RawFamily::Ipv4,
                protocols,
                prefer_file: r.prefer == RawPrefer::File,
            });
        }
        out
    }

    fn route_export(&mut self, e: &RawRouteExport, sources: &[RouteSource]) -> RouteExport {
        let at = TomlPath::key("route_export");
        let table = self.kernel_table(at.k("table"), e.table);
        if sources.iter().any(|s| s.table == table && table != 0) {
            self.err(
                at.k("table"),
                format!("table {table} is also a route source: the gateway would mirror its own announcements"),
            );
        }
        let mut announce = Vec::new();
        for (i, a) in e.announce.iter().enumerate() {
            match a.parse::<IpNet>() {
                Ok(p) if p != p.trunc() => self.err(
                    at.k("announce").i(i),
                    format!("{p} has host bits set; did you mean {}?", p.trunc()),
                ),
                Ok(p) => announce.push(p),
                Err(_) => self.err(
                    at.k("announce").i(i),
                    format!("`{a}` is not a prefix (10.96.0.0/12 or fd00::/64)"),
                ),
            }
        }
        // IFNAMSIZ less its NUL; the characters `ip link` accepts without quoting.
        let name_ok = !e.device.is_empty()
            && e.device.len() <= 15
            && e.device
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            self.err(
                at.k("device"),
                format!(
                    "`{}` is not an interface name (1 to 15 letters, digits, `-`, `_` or `.`)",
                    e.device
                ),
            );
        }
        RouteExport {
            table,
            announce,
            sessions: e.sessions,
            device: e.device.clone(),
        }
    }

    fn tunnels(&mut self, raw: &[RawTunnel], ports: &[Port]) -> Vec<Tunnel> {
        let mut out = Vec::new();
        // (local, teid_in) pairs, (udp_port, vni) pairs and UE ranges seen so far.
        let mut teids: Vec<(IpAddr, u32, TomlPath)> = Vec::new();
        let mut vnis: Vec<(Option<IpAddr>, u16, u32, usize)> = Vec::new();
        // The UDP port of each VXLAN or Geneve tunnel: a port carries one kind.
        let mut udp_kinds: Vec<(u16, RawTunnelKind, usize)> = Vec::new();
        let mut ues: Vec<(IpNet, TomlPath)> = Vec::new();
        for (ti, rt) in raw.iter().enumerate() {
            let tp = TomlPath::entry("tunnel", ti);
            if rt.name.trim().is_empty() {
                self.err(tp.k("name"), "the tunnel name must not be empty");
            } else if raw[..ti].iter().any(|o| o.name == rt.name) {
                self.err(tp.k("name"), format!("duplicate tunnel name `{}`", rt.name));
            }
            let local = self.ip(tp.k("local"), &rt.local);
            if let Some(l) = local {
                if !ports
                    .iter()
                    .any(|p| p.addresses.iter().any(|a| a.addr() == l))
                {
                    self.err(
                        tp.k("local"),
                        format!("{l} is not one of the gateway's interface addresses"),
                    );
                }
            }
            let family_ok = |a: IpAddr| local.is_none_or(|l| l.is_ipv4() == a.is_ipv4());
            let not_for = |this: &mut Self, key: &str, present: bool, kind: &str| {
                if present {
                    this.err(
                        tp.k(key),
                        format!("`{key}` does not apply to a {kind} tunnel"),
                    );
                }
            };
            let kind = match rt.kind {
                RawTunnelKind::Gtpu => {
                    not_for(self, "peers", rt.peers.is_some(), "gtpu");
                    not_for(self, "udp_port", rt.udp_port.is_some(), "gtpu");
                    not_for(self, "vni", rt.vni.is_some(), "gtpu");
                    not_for(self, "peer_mac", rt.peer_mac.is_some(), "gtpu");
                    let peer = match &rt.peer {
                        Some(p) => self.ip(tp.k("peer"), p),
                        None => {
                            self.err(tp.clone(), "a gtpu tunnel needs `peer`");
                            None
                        }
                    };
                    if let Some(p) = peer {
                        if !family_ok(p) {
                            self.err(
                                tp.k("peer"),
                                format!("peer {p} is not of the family of `local`"),
                            );
                        }
                    }
                    let mut sessions = Vec::new();
                    for (si, rs) in rt.sessions.iter().enumerate() {
                        let sp = tp.k("session").i(si);
                        let ue = match rs.ue.parse::<IpNet>() {
                            Ok(n) if n != n.trunc() => {
                                self.err(
                                    sp.k("ue"),
                                    format!("{n} has host bits set; did you mean {}?", n.trunc()),
                                );
                                None
                            }
                            Ok(n) => Some(n),
                            Err(_) => {
                                self.err(sp.k("ue"), format!("`{}` is not a prefix", rs.ue));
                                None
                            }
                        };
                        if rs.teid_in == 0 {
                            self.err(
                                sp.k("teid_in"),
                                "TEID 0 is reserved for signalling (TS 29.281 5.1)",
                            );
                        }
                        if let Some(l) = local {
                            if let Some((_, _, other)) =
                                teids.iter().find(|(a, t, _)| *a == l && *t == rs.teid_in)
                            {
                                self.err(
                                    sp.k("teid_in"),
                                    format!(
                                        "TEID {:#x} on {l} is already used by {other}",
                                        rs.teid_in
                                    ),
                                );
                            }
                            teids.push((l, rs.teid_in, sp.clone()));
                        }
                        if rs.qfi.is_some_and(|q| q > 63) {
                            self.err(sp.k("qfi"), "QFI is 6 bits (0..=63)");
                        }
                        if let Some(ue) = ue {
                            if let Some((other, op)) = ues.iter().find(|(o, _)| {
                                o.contains(&ue.network()) || ue.contains(&o.network())
                            }) {
                                self.err(
                                    sp.k("ue"),
                                    format!("UE range {ue} overlaps {other} of {op}"),
                                );
                            }
                            ues.push((ue, sp.clone()));
                            sessions.push(Session {
                                ue,
                                teid_in: rs.teid_in,
                                teid_out: rs.teid_out,
                                qfi: rs.qfi,
                            });
                        }
                    }
                    if rt.sessions.is_empty() {
                        self.err(
                            tp.clone(),
                            "a gtpu tunnel needs at least one [[tunnel.session]]",
                        );
                    }
                    TunnelKind::Gtpu {
                        peer: peer.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                        sessions,
                    }
                }
                RawTunnelKind::Vxlan | RawTunnelKind::Geneve | RawTunnelKind::Ipip => {
                    let name = match rt.kind {
                        RawTunnelKind::Vxlan => "vxlan",
                        RawTunnelKind::Geneve => "geneve",
                        _ => "ipip",
                    };
                    let by_vni = rt.kind != RawTunnelKind::Ipip;
                    not_for(self, "peer", rt.peer.is_some(), name);
                    not_for(self, "session", !rt.sessions.is_empty(), name);
                    let mut peers = Vec::new();
                    match &rt.peers {
                        Some(list) if !list.is_empty() => {
                            for (pi, p) in list.iter().enumerate() {
                                if let Some(a) = self.ip(tp.k("peers").i(pi), p) {
                                    if by_vni && !family_ok(a) {
                                        self.err(
                                            tp.k("peers").i(pi),
                                            format!("peer {a} is not of the family of `local`"),
                                        );
                                    }
                                    peers.push(a);
                                }
                            }
                        }
                        _ => self.err(
                            tp.clone(),
                            format!("a {name} tunnel needs a non-empty `peers` list"),
                        ),
                    }
                    if by_vni {
                        let udp_port = rt.udp_port.unwrap_or(if rt.kind == RawTunnelKind::Vxlan {
                            default_vxlan_port()
                        } else {
                            default_geneve_port()
                        });
                        let vni = rt.vni.unwrap_or(0);
                        match rt.vni {
                            None => self.err(tp.clone(), format!("a {name} tunnel needs `vni`")),
                            Some(v) if v >= 1 << 24 => {
                                self.err(tp.k("vni"), format!("VNI {v} does not fit 24 bits"))
                            }
                            _ => {}
                        }
                        if udp_port == 0 || udp_port == 2152 {
                            self.err(
                                tp.k("udp_port"),
                                format!("UDP port {udp_port} cannot carry {name} here"),
                            );
                        }
                        if let Some(&(_, k, other)) = udp_kinds
                            .iter()
                            .find(|&&(p, k, _)| p == udp_port && k != rt.kind)
                        {
                            let other_name = if k == RawTunnelKind::Vxlan {
                                "vxlan"
                            } else {
                                "geneve"
                            };
                            self.err(
                                tp.k("udp_port"),
                                format!("UDP port {udp_port} already carries {other_name} (tunnel[{other}]): a port carries one kind"),
                            );
                        }
                        udp_kinds.push((udp_port, rt.kind, ti));
                        if let Some(&(_, _, _, other)) = vnis
                            .iter()
                            .find(|(l, p, v, _)| *l == local && *p == udp_port && *v == vni)
                        {
                            self.err(tp.k("vni"), format!("VNI {vni} on UDP {udp_port} is already used by tunnel[{other}]"));
                        }
                        vnis.push((local, udp_port, vni, ti));
                        let peer_macs = match &rt.peer_mac {
                            None => Vec::new(),
                            Some(OneOrMany::One(m)) => {
                                vec![self.mac(tp.k("peer_mac"), m); peers.len()]
                            }
                            Some(OneOrMany::Many(list)) => {
                                let given = rt.peers.as_ref().map_or(0, Vec::len);
                                if list.len() != given {
                                    self.err(
                                        tp.k("peer_mac"),
                                        format!(
                                            "{} MACs for {given} peers: give one MAC for all, or one per peer in the order of `peers`",
                                            list.len()
                                        ),
                                    );
                                }
                                list.iter()
                                    .enumerate()
                                    .map(|(i, m)| self.mac(tp.k("peer_mac").i(i), m))
                                    .collect()
                            }
                        };
                        if rt.kind == RawTunnelKind::Vxlan {
                            TunnelKind::Vxlan {
                                udp_port,
                                vni,
                                peers,
                                peer_macs,
                            }
                        } else {
                            TunnelKind::Geneve {
                                udp_port,
                                vni,
                                peers,
                                peer_macs,
                            }
                        }
                    } else {
                        not_for(self, "udp_port", rt.udp_port.is_some(), name);
                        not_for(self, "vni", rt.vni.is_some(), name);
                        not_for(self, "peer_mac", rt.peer_mac.is_some(), name);
                        TunnelKind::Ipip { peers }
                    }
                }
            };
            out.push(Tunnel {
                name: rt.name.clone(),
                local: local.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                kind,
            });
        }
        out
    }

    fn ports(&mut self, raw: &[RawPort]) -> Vec<Port> {
        if raw.is_empty() {
            self.err(TomlPath::key("port"), "at least one [[port]] is required");
        }
        if raw.len() > MAX_PORTS {
            self.err(
                TomlPath::entry("port", MAX_PORTS),
                format!("at most {MAX_PORTS} ports are supported"),
            );
        }
        let mut ports: Vec<Port> = Vec::new();
        // (port index, address index, net) of every address seen, for the overlap check.
        let mut nets: Vec<(usize, usize, IpNet)> = Vec::new();
        for (pi, rp) in raw.iter().enumerate() {
            let pp = TomlPath::entry("port", pi);
            if rp.name.trim().is_empty() {
                self.err(pp.k("name"), "the port name must not be empty");
            } else if raw[..pi].iter().any(|o| o.name == rp.name) {
                self.err(pp.k("name"), format!("duplicate port name `{}`", rp.name));
            }
            let mac = self.mac(pp.k("mac"), &rp.mac);
            let driver = self.driver(&pp, rp);
            let mut addresses = Vec::new();
            for (ai, a) in rp.addresses.iter().enumerate() {
                let ap = pp.k("addresses").i(ai);
                let Ok(net) = a.parse::<IpNet>() else {
                    self.err(
                        ap,
                        format!(
                            "`{a}` is not an interface address with a prefix length (192.0.2.1/24)"
                        ),
                    );
                    continue;
                };
                for &(opi, oai, other) in &nets {
                    if other.addr() == net.addr() {
                        self.err(
                            ap.clone(),
                            format!(
                                "address {} is already used by port[{opi}].addresses[{oai}]",
                                net.addr()
                            ),
                        );
                    } else if other.contains(&net.network()) || net.contains(&other.network()) {
                        self.err(
                            ap.clone(),
                            format!(
                                "subnet {} overlaps {} of port[{opi}].addresses[{oai}]",
                                net.trunc(),
                                other.trunc()
                            ),
                        );
                    }
                }
                nets.push((pi, ai, net));
                addresses.push(net);
            }
            let min_mtu = if addresses.iter().any(|a| matches!(a, IpNet::V6(_))) {
                1280
            } else {
                68
            };
            if rp.mtu < min_mtu || rp.mtu > 9216 {
                self.err(
                    pp.k("mtu"),
                    format!("mtu {} is outside {min_mtu}..=9216", rp.mtu),
                );
            }
            if rp.driver == RawDriver::AfXdp && rp.mtu > AF_XDP_MAX_MTU {
                self.err(
                    pp.k("mtu"),
                    format!(
                        "mtu {} does not fit an af_xdp frame: at most {AF_XDP_MAX_MTU} (2048-byte UMEM frames less the kernel's 256-byte XDP headroom, Ethernet and two VLAN tags)",
                        rp.mtu
                    ),
                );
            }
            let mut vlans = Vec::new();
            for (vi, &v) in rp.vlans.iter().enumerate() {
                if !(1..=4094).contains(&v) {
                    self.err(
                        pp.k("vlans").i(vi),
                        format!("VLAN ID {v} is outside 1..=4094"),
                    );
                } else if rp.vlans[..vi].contains(&v) {
                    self.err(pp.k("vlans").i(vi), format!("VLAN ID {v} is listed twice"));
                } else {
                    vlans.push(v as u16);
                }
            }
            ports.push(Port {
                rpf: rp.rpf,
                steering: rp.steering,
                vlans,
                name: rp.name.clone(),
                driver,
                mac,
                addresses,
                mtu: u16::try_from(rp.mtu.min(9216)).unwrap_or(1500),
                promiscuous: rp.promiscuous,
                pass_to_kernel: rp.pass_to_kernel,
            });
        }
        ports
    }

    fn driver(&mut self, pp: &TomlPath, rp: &RawPort) -> Driver {
        let path = |s: &Option<String>| s.as_ref().map(|f| self.base.join(f));
        let kernel = matches!(rp.driver, RawDriver::AfXdp | RawDriver::AfPacket);
        if !kernel && rp.interface.is_some() {
            self.err(
                pp.k("interface"),
                "only af_xdp and af_packet ports take an interface",
            );
        }
        if rp.pass_to_kernel && rp.driver != RawDriver::AfXdp {
            self.err(
                pp.k("pass_to_kernel"),
                "only af_xdp ports take frames from the kernel (af_packet leaves it every frame)",
            );
        }
        if rp.driver != RawDriver::Pcap {
            for (key, v) in [("rx", &rp.rx), ("tx", &rp.tx)] {
                if v.is_some() {
                    self.err(
                        pp.k(key),
                        format!("`{key}` is a pcap file and only pcap ports take it"),
                    );
                }
            }
        }
        match rp.driver {
            RawDriver::Pcap => {
                if rp.rx.is_none() && rp.tx.is_none() {
                    self.err(pp.k("driver"), "a pcap port needs `rx`, `tx` or both");
                }
                Driver::Pcap {
                    rx: path(&rp.rx),
                    tx: path(&rp.tx),
                }
            }
            RawDriver::Memory => Driver::Memory,
            RawDriver::AfXdp | RawDriver::AfPacket => {
                let interface = rp.interface.clone().unwrap_or_default();
                if interface.is_empty() {
                    self.err(
                        pp.k("driver"),
                        "af_xdp and af_packet ports need `interface`",
                    );
                }
                if rp.driver == RawDriver::AfXdp {
                    Driver::AfXdp { interface }
                } else {
                    Driver::AfPacket { interface }
                }
            }
        }
    }

    fn neighbors(&mut self, raw: &[RawNeighbor], ports: &[Port]) -> Vec<Neighbor> {
        let mut out: Vec<Neighbor> = Vec::new();
        for (ni, rn) in raw.iter().enumerate() {
            let np = TomlPath::entry("neighbor", ni);
            let mac = self.mac(np.k("mac"), &rn.mac);
            let address = self.ip(np.k("address"), &rn.address);
            let port = ports.iter().position(|p| p.name == rn.port);
            if port.is_none() {
                self.err(np.k("port"), format!("no port is named `{}`", rn.port));
            }
            let (Some(address), Some(port)) = (address, port) else {
                continue;
            };
            if !ports[port].addresses.iter().any(|n| n.contains(&address)) {
                self.err(
                    np.k("address"),
                    format!(
                        "{address} is not inside a connected subnet of port `{}` ({})",
                        rn.port,
                        subnets(&ports[port], None)
                    ),
                );
            }
            if out.iter().any(|n| n.address == address) {
                self.err(np.k("address"), format!("duplicate neighbour {address}"));
            }
            out.push(Neighbor { address, mac, port });
        }
        out
    }

    fn routes(&mut self, raw: &[RawRoute], ports: &[Port], tunnels: &[RawTunnel]) -> Vec<Route> {
        let mut out: Vec<Route> = Vec::new();
        // Every prefix that parsed, for the duplicate check: a set, so a table of a million
        // routes validates in linear time.
        let mut seen: std::collections::HashSet<IpNet> = std::collections::HashSet::new();
        for (ri, rr) in raw.iter().enumerate() {
            let rp = TomlPath::entry("route", ri);
            let tunnel = rr.tunnel.as_ref().and_then(|t| {
                let i = tunnels.iter().position(|x| &x.name == t);
                match i.map(|i| &tunnels[i]) {
                    None => self.err(rp.k("tunnel"), format!("no tunnel is named `{t}`")),
                    Some(x) if x.kind == RawTunnelKind::Vxlan && x.peer_mac.is_none() => self.err(
                        rp.k("tunnel"),
                        format!("a route into vxlan tunnel `{t}` needs the tunnel's `peer_mac` (the inner destination MAC)"),
                    ),
                    Some(_) => {}
                }
                i
            });
            let parsed = rr.prefix.parse::<IpNet>();
            let duplicate = parsed.as_ref().is_ok_and(|p| !seen.insert(*p));
            let prefix = match parsed {
                Ok(p) if p != p.trunc() => {
                    self.err(
                        rp.k("prefix"),
                        format!("{p} has host bits set; did you mean {}?", p.trunc()),
                    );
                    None
                }
                Ok(p) => Some(p),
                Err(_) => {
                    self.err(
                        rp.k("prefix"),
                        format!(
                            "`{}` is not a prefix (10.96.0.0/12 or fd00::/64)",
                            rr.prefix
                        ),
                    );
                    None
                }
            };
            if let Some(p) = prefix.filter(|_| duplicate) {
                self.err(rp.k("prefix"), format!("duplicate route for {p}"));
            }
            let action = rr.action.unwrap_or(RawAction::Forward);
            let target = match (action, &rr.via) {
                _ if rr.tunnel.is_some() => {
                    if rr.action.is_some() {
                        self.err(rp.k("action"), "a route into a tunnel takes no `action`");
                    }
                    let via = match (&rr.via, tunnel.and_then(|i| tunnels.get(i))) {
                        (Some(via), Some(t)) => self.tunnel_vias(&rp, via, t),
                        _ => Vec::new(),
                    };
                    RouteTarget::Tunnel {
                        tunnel: tunnel.unwrap_or(0),
                        via,
                    }
                }
                (RawAction::Drop, Some(_)) => {
                    self.err(rp.k("via"), "a route with action = \"drop\" takes no `via`");
                    RouteTarget::Drop
                }
                (RawAction::Drop, None) => RouteTarget::Drop,
                (RawAction::Forward, None) => {
                    self.err(
                        rp.clone(),
                        "a forwarding route needs `via` (or action = \"drop\")",
                    );
                    RouteTarget::Drop
                }
                (RawAction::Forward, Some(via)) => {
                    RouteTarget::Via(self.next_hops(&rp, ri, via, prefix, ports))
                }
            };
            if let Some(prefix) = prefix {
                out.push(Route {
                    prefix,
                    target,
                    hairpin: rr.hairpin,
                });
            }
        }
        out
    }

    /// The addresses of a route's `via` (one, or a list), each with its TOML path. Reports an
    /// empty list, more than [`MAX_ECMP`] entries and entries that are no address; `what`
    /// names the entries in those messages.
    fn via_addresses(
        &mut self,
        rp: &TomlPath,
        via: &OneOrMany,
        what: &str,
    ) -> Vec<(TomlPath, IpAddr)> {
        let list = via.as_slice();
        if list.is_empty() {
            self.err(rp.k("via"), format!("`via` lists no {what}"));
        }
        if list.len() > MAX_ECMP {
            self.err(rp.k("via"), format!("at most {MAX_ECMP} {what} per route"));
        }
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let path = match via {
                OneOrMany::One(_) => rp.k("via"),
                OneOrMany::Many(_) => rp.k("via").i(i),
            };
            if let Some(addr) = self.ip(path.clone(), s) {
                out.push((path, addr));
            }
        }
        out
    }

    /// The `via` of a route into tunnel `t`: peers of an IPIP or VXLAN tunnel, each once.
    fn tunnel_vias(&mut self, rp: &TomlPath, via: &OneOrMany, t: &RawTunnel) -> Vec<IpAddr> {
        if t.kind == RawTunnelKind::Gtpu {
            self.err(
                rp.k("via"),
                format!(
                    "a route into gtpu tunnel `{}` takes no `via`: its sessions go to the tunnel's `peer`",
                    t.name
                ),
            );
            return Vec::new();
        }
        let peers: Vec<IpAddr> = t
            .peers
            .iter()
            .flatten()
            .filter_map(|p| p.parse().ok())
            .collect();
        let mut out: Vec<IpAddr> = Vec::new();
        for (path, addr) in self.via_addresses(rp, via, "peers") {
            if !peers.contains(&addr) {
                self.err(
                    path.clone(),
                    format!("{addr} is not one of the `peers` of tunnel `{}`", t.name),
                );
            } else if out.contains(&addr) {
                self.err(path.clone(), format!("{addr} is listed twice"));
            } else {
                out.push(addr);
            }
        }
        out
    }

    fn next_hops(
        &mut self,
        rp: &TomlPath,
        ri: usize,
        via: &OneOrMany,
        prefix: Option<IpNet>,
        ports: &[Port],
    ) -> Vec<NextHop> {
        let mut hops: Vec<NextHop> = Vec::new();
        for (path, addr) in self.via_addresses(rp, via, "next hops") {
            if let Some(first) = hops.first() {
                if first.address.is_ipv4() != addr.is_ipv4() {
                    self.err(
                        path.clone(),
                        format!("ECMP next hops mix families: {} and {addr}", first.address),
                    );
                    continue;
                }
            }
            if let Some(p) = prefix {
                if p.addr().is_ipv4() != addr.is_ipv4() {
                    self.err(
                        path.clone(),
                        format!("next hop {addr} is not of the same family as {p}"),
                    );
                    continue;
                }
            }
            if hops.iter().any(|h| h.address == addr) {
                self.err(path.clone(), format!("next hop {addr} is listed twice"));
                continue;
            }
            if ports
                .iter()
                .any(|p| p.addresses.iter().any(|a| a.addr() == addr))
            {
                self.err(
                    path.clone(),
                    format!("next hop {addr} is one of the gateway's own addresses"),
                );
                continue;
            }
            match ports
                .iter()
                .position(|p| p.addresses.iter().any(|n| n.contains(&addr)))
            {
                Some(port) => hops.push(NextHop {
                    address: addr,
                    port,
                }),
                None => {
                    let connected: Vec<String> = ports
                        .iter()
                        .map(|p| subnets(p, Some(addr.is_ipv4())))
                        .filter(|s| !s.is_empty())
                        .collect();
                    let pfx = prefix.map_or_else(|| "?".to_string(), |p| p.to_string());
                    self.err(
                        path.clone(),
                        format!(
                            "route[{ri}] ({pfx}): next hop {addr} lies in no connected subnet of any port (connected: {})",
                            if connected.is_empty() { "none".to_string() } else { connected.join(", ") }
                        ),
                    );
                }
            }
        }
        hops
    }
}

/// `name 10.0.0.0/24, 10.1.0.0/16` for messages; `v4` filters by family.
fn subnets(p: &Port, v4: Option<bool>) -> String {
    let nets: Vec<String> = p
        .addresses
        .iter()
        .filter(|a| v4.is_none_or(|v4| a.addr().is_ipv4() == v4))
        .map(|a| a.trunc().to_string())
        .collect();
    if nets.is_empty() {
        String::new()
    } else {
        format!("{} {}", p.name, nets.join(" "))
    }
}
