//! Reloading the configuration of a running gateway: `gateway reload --socket PATH` or
//! SIGHUP. The control thread reads the file the gateway was started with again, validates it
//! and builds a complete new forwarding snapshot beside the running one, then publishes it
//! ([`datapath::slot`]); the workers take it at their next poll, without stopping and without
//! dropping a packet for the change.
//!
//! - A file that does not validate changes nothing: the answer lists every problem with its
//!   line and TOML path, and the gateway keeps forwarding with its last good configuration.
//! - Routes, tunnels and static neighbours are reloaded. The ports, the workers, the burst
//!   and the gateway's name are fixed at start: a file that changes them is refused, naming
//!   what changed, and needs a restart. So are the prefixes a `pass_to_kernel` port owns
//!   (its XDP program was given them at start): with such a port, a reload may change
//!   next hops, neighbours and tunnel sessions, not which prefixes exist.
//! - The file is the truth: routes added or removed at run time (`gateway route`) are
//!   replaced by the file's. MACs learned by ARP and NDP are kept.
//! - Reading and building run on a thread of their own (about 3.5 s for a file of 886k
//!   routes, BENCHMARKS.md); the control thread goes on serving ARP, NDP, ICMP and the control
//!   socket, and only publishes the result. Reloads asked for during a build are served by
//!   one more build when it ends.

use crate::routes::RouteControl;
use config::Config;
use datapath::fib::Fib;
use std::path::PathBuf;

/// The file a gateway reloads and the configuration in force (cloned into the thread that
/// builds a reload).
#[derive(Debug, Clone)]
pub struct Reloader {
    path: PathBuf,
    running: Config,
}

/// A validated, built successor configuration, not yet in force.
pub struct Reloaded {
    /// The configuration.
    pub config: Config,
    /// Its forwarding snapshot, the running one's successor.
    pub fib: Fib,
    /// Its route tables' writer, for `gateway route`.
    pub routes: RouteControl,
}

impl Reloader {
    /// Reloads `path`, whose configuration `running` is in force.
    pub fn new(path: PathBuf, running: Config) -> Self {
        Reloader { path, running }
    }

    /// Reads, validates and builds the file's configuration as the successor of `current`.
    ///
    /// # Errors
    /// Why nothing changed: every problem in the file, what changed that needs a restart, or
    /// why the tables could not be built.
    pub fn load(&self, current: &Fib) -> Result<Reloaded, String> {
        let config =
            config::load_file(&self.path, config::Machine::this()).map_err(|e| e.to_string())?;
        let fixed = restart_only_changes(&self.running, &config);
        if !fixed.is_empty() {
            return Err(format!(
                "{}: {} changed: restart the gateway to apply that",
                self.path.display(),
                fixed.join(", ")
            ));
        }
        let (fib, routes) = crate::tables::build_fib_with_routes(&config, Some(current))
            .map_err(|e| format!("{}: {e:#}", self.path.display()))?;
        Ok(Reloaded {
            config,
            fib,
            routes,
        })
    }

    /// Records `c` as the configuration in force; returns the answer line for the client.
    pub fn accept(&mut self, c: Config) -> String {
        let answer = format!(
            "ok: reloaded {}: {} routes, {} tunnels, {} neighbors\n",
            self.path.display(),
            c.routes.len(),
            c.tunnels.len(),
            c.neighbors.len()
        );
        self.running = c;
        answer
    }

    /// The configuration in force.
    pub fn running(&self) -> &Config {
        &self.running
    }
}

/// What differs between `old` and `new` among the settings fixed at start, by TOML name.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    if old.name != new.name {
        v.push("gateway.name".to_string());
    }
    if old.workers != new.workers {
        v.push("gateway.workers".to_string());
    }
    if old.burst != new.burst {
        v.push("gateway.burst".to_string());
    }
    if old.control_group != new.control_group {
        v.push("gateway.control_group".to_string());
    }
    if old.ports.len() != new.ports.len() {
        v.push("the number of [[port]]s".to_string());
    } else {
        for (i, (a, b)) in old.ports.iter().zip(&new.ports).enumerate() {
            if a != b {
                v.push(format!("port[{i}] ({})", a.name));
            }
        }
    }
    if old.route_sources != new.route_sources {
        v.push("[[route_source]]".to_string());
    }
    let export_where = |c: &Config| c.route_export.as_ref().map(|e| (e.table, e.device.clone()));
    if export_where(old) != export_where(new) {
        v.push("[route_export] table or device (its prefixes reload)".to_string());
    }
    // A pass_to_kernel port's XDP program was given the gateway's prefixes at start.
    if old.ports.iter().any(|p| p.pass_to_kernel)
        && crate::tables::owned_prefixes(old) != crate::tables::owned_prefixes(new)
    {
        v.push("the prefixes a pass_to_kernel port owns (routes and tunnel endpoints)".to_string());
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::path::Path;

    use crate::testing::{parse, TWO_PORTS as BASE};

    fn dir(name: &str) -> PathBuf {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/reload-unit")
            .join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn lookup(fib: &Fib, a: [u8; 4]) -> Option<u32> {
        fib.v4.lookup(u32::from_be_bytes(a))
    }

    #[test]
    fn a_reload_builds_the_new_routes_and_keeps_the_learned_neighbours() {
        let d = dir("good");
        let path = d.join("gw.toml");
        let running = parse(BASE);
        let (fib, _) = crate::tables::build_fib_with_routes(&running, None).unwrap();
        fib.neighbors()
            .set(datapath::fib::ip_key("172.18.0.9".parse().unwrap()), [2; 6]);
        let new = format!("{BASE}\n[[route]]\nprefix = \"10.77.0.0/16\"\nvia = \"172.18.0.2\"\n");
        std::fs::write(&path, &new).unwrap();
        let mut r = Reloader::new(path, running);
        let loaded = r.load(&fib).unwrap();
        assert!(lookup(&fib, [10, 77, 0, 5]).is_none());
        assert!(lookup(&loaded.fib, [10, 77, 0, 5]).is_some());
        assert!(std::sync::Arc::ptr_eq(
            fib.neighbors(),
            loaded.fib.neighbors()
        ));
        let answer = r.accept(loaded.config);
        assert!(answer.starts_with("ok: reloaded "), "{answer}");
        assert!(
            answer.ends_with(": 2 routes, 0 tunnels, 1 neighbors\n"),
            "{answer}"
        );
        assert_eq!(r.running().routes.len(), 2);
    }

    #[test]
    fn a_bad_file_is_refused_with_its_lines_and_nothing_changes() {
        let d = dir("bad");
        let path = d.join("gw.toml");
        let running = parse(BASE);
        let (fib, _) = crate::tables::build_fib_with_routes(&running, None).unwrap();
        let bad = format!("{BASE}\n[[route]]\nprefix = \"10.77.0.0/33\"\nvia = \"172.18.0.2\"\n");
        std::fs::write(&path, &bad).unwrap();
        let line = bad.lines().position(|l| l.contains("/33")).unwrap() + 1;
        let r = Reloader::new(path, running.clone());
        let err = r.load(&fib).err().expect("refused");
        assert!(
            err.contains(&format!("gw.toml:{line}:")) && err.contains("route[1].prefix"),
            "{err}"
        );
        assert_eq!(r.running(), &running);
    }

    #[test]
    fn changing_a_port_or_the_workers_needs_a_restart() {
        let d = dir("fixed");
        let path = d.join("gw.toml");
        let running = parse(BASE);
        let (fib, _) = crate::tables::build_fib_with_routes(&running, None).unwrap();
        let r = Reloader::new(path.clone(), running);
        std::fs::write(&path, BASE.replace("172.18.0.1/16", "172.18.0.1/24")).unwrap();
        let err = r.load(&fib).err().expect("refused");
        assert!(err.contains("port[1] (pods) changed: restart"), "{err}");
        std::fs::write(
            &path,
            BASE.replace("name = \"t\"", "name = \"t\"\nworkers = [1]"),
        )
        .unwrap();
        let err = r.load(&fib).err().expect("refused");
        assert!(err.contains("gateway.workers changed"), "{err}");
    }

    #[test]
    fn a_pass_to_kernel_port_keeps_its_owned_prefixes_until_a_restart() {
        let d = dir("owned");
        let path = d.join("gw.toml");
        let passing = BASE.replace(
            "driver = \"memory\"\nmac = \"02:00:00:00:00:01\"",
            "driver = \"af_xdp\"\ninterface = \"ext0\"\nmac = \"02:00:00:00:00:01\"\npass_to_kernel = true",
        );
        assert_ne!(passing, BASE);
        let running = parse(&passing);
        let (fib, _) = crate::tables::build_fib_with_routes(&running, None).unwrap();
        let r = Reloader::new(path.clone(), running);
        let route = "\n[[route]]\nprefix = \"10.77.0.0/16\"\nvia = \"172.18.0.2\"\n";
        std::fs::write(&path, format!("{passing}{route}")).unwrap();
        let err = r.load(&fib).err().expect("refused");
        assert!(err.contains("pass_to_kernel port owns"), "{err}");
        // The same prefixes through another next hop: reloaded.
        let moved = passing.replace("via = \"172.18.0.3\"", "via = \"172.18.0.2\"");
        assert_ne!(moved, passing);
        std::fs::write(&path, moved).unwrap();
        assert!(r.load(&fib).is_ok());
    }
}
