//! Routes changed while the gateway runs. `gateway route add|del` sends one line on the
//! control socket; the control thread applies it through the route tables' single writer
//! ([`datapath::fib::RouteWriters`]), and each worker's next lookup sees the table before or
//! after the change, never between. Nothing is rebuilt and no worker waits.
//!
//! A route added at run time uses a next hop the gateway was started with: the address of a
//! `[[neighbor]]` or of a configured route's `via` (the next-hop table is part of the
//! forwarding snapshot), or `drop`. The connected subnets and the interface addresses are not
//! routes to change: adding or removing exactly those prefixes is refused.
//!
//! Requests (one line each):
//!
//! ```text
//! route add 10.9.0.0/16 via 172.18.0.2
//! route add 10.9.0.0/16 drop
//! route del 10.9.0.0/16
//! ```
//!
//! The answer is one line: `ok: ...` or `error: ...`.

use datapath::fib::RouteWriters;
use datapath::lpm;
use ipnet::IpNet;
use std::net::IpAddr;

/// A parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Add or replace the route of a prefix.
    Add(IpNet, Target),
    /// Remove the route of a prefix.
    Del(IpNet),
}

/// Where an added route sends its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A next hop the gateway was started with.
    Via(IpAddr),
    /// Dropped and counted as `blackhole`.
    Drop,
}

const USAGE: &str =
    "expected `route add PREFIX via ADDRESS`, `route add PREFIX drop` or `route del PREFIX`";

/// Parses one request line.
///
/// # Errors
/// A message naming what is wrong.
pub fn parse(line: &str) -> Result<Request, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["route", "add", p, "via", a] => {
            let a = a.parse().map_err(|_| format!("{a}: not an IP address"))?;
            Ok(Request::Add(prefix(p)?, Target::Via(a)))
        }
        ["route", "add", p, "drop"] => Ok(Request::Add(prefix(p)?, Target::Drop)),
        ["route", "del", p] => Ok(Request::Del(prefix(p)?)),
        _ => Err(format!("unknown request {:?}: {USAGE}", line.trim())),
    }
}

fn prefix(s: &str) -> Result<IpNet, String> {
    let n: IpNet = s
        .parse()
        .map_err(|_| format!("{s}: not a prefix (for example 10.9.0.0/16)"))?;
    if n.trunc() != n {
        return Err(format!(
            "{n} has host bits set; did you mean {}?",
            n.trunc()
        ));
    }
    Ok(n)
}

/// The control thread's side: the single writers and the next hops routes may use.
pub struct RouteControl {
    writers: RouteWriters,
    vias: Vec<(IpAddr, u32)>,
    blackhole: u32,
    fixed: Vec<IpNet>,
}

impl RouteControl {
    /// Wraps the writers of a FIB. `vias` maps next-hop addresses to their next-hop indices,
    /// `blackhole` is the drop next hop, `fixed` the prefixes no request may touch.
    pub fn new(
        writers: RouteWriters,
        vias: Vec<(IpAddr, u32)>,
        blackhole: u32,
        fixed: Vec<IpNet>,
    ) -> Self {
        RouteControl {
            writers,
            vias,
            blackhole,
            fixed,
        }
    }

    /// The IPv4 and IPv6 prefixes in the route tables.
    pub fn sizes(&self) -> (usize, usize) {
        (self.writers.v4.len(), self.writers.v6.len())
    }

    /// Handles one request line; the answer line ends with a newline.
    pub fn handle(&mut self, line: &str) -> String {
        match parse(line).and_then(|r| self.apply(r)) {
            Ok(m) => format!("ok: {m}\n"),
            Err(e) => format!("error: {e}\n"),
        }
    }

    /// Applies a request.
    ///
    /// # Errors
    /// A message naming why nothing changed.
    pub fn apply(&mut self, r: Request) -> Result<String, String> {
        let p = match r {
            Request::Add(p, _) | Request::Del(p) => p,
        };
        if self.fixed.contains(&p) {
            return Err(format!(
                "{p} belongs to an interface (a connected subnet or a local address)"
            ));
        }
        match r {
            Request::Add(p, t) => {
                let nh = match t {
                    Target::Drop => self.blackhole,
                    Target::Via(a) => {
                        if a.is_ipv4() != matches!(p, IpNet::V4(_)) {
                            return Err(format!(
                                "{p} and its next hop {a} are of different families"
                            ));
                        }
                        self.vias
                            .iter()
                            .find(|(v, _)| *v == a)
                            .map(|&(_, i)| i)
                            .ok_or_else(|| {
                                format!("{a} is not a next hop this gateway was started with (a [[neighbor]] or a route's via)")
                            })?
                    }
                };
                let old = match p {
                    IpNet::V4(n) => {
                        self.writers
                            .v4
                            .insert(u32::from(n.network()), n.prefix_len(), nh)
                    }
                    IpNet::V6(n) => {
                        self.writers
                            .v6
                            .insert(u128::from(n.network()), n.prefix_len(), nh)
                    }
                }
                .map_err(|e| table_error(p, e))?;
                Ok(if old.is_some() {
                    format!("replaced {p}")
                } else {
                    format!("added {p}")
                })
            }
            Request::Del(p) => {
                let old = match p {
                    IpNet::V4(n) => self
                        .writers
                        .v4
                        .remove(u32::from(n.network()), n.prefix_len()),
                    IpNet::V6(n) => self
                        .writers
                        .v6
                        .remove(u128::from(n.network()), n.prefix_len()),
                };
                match old {
                    Some(_) => Ok(format!("removed {p}")),
                    None => Err(format!("no route {p}")),
                }
            }
        }
    }
}

fn table_error(p: IpNet, e: lpm::Error) -> String {
    match e {
        lpm::Error::OutOfGroups => format!("{p}: the route table is full"),
        lpm::Error::OutOfMemory => format!("{p}: out of memory"),
        other => format!("{p}: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::fib::NextHop;

    #[test]
    fn route_changes_reach_the_workers_view_and_bad_ones_change_nothing() {
        let c = crate::testing::parse(crate::testing::TWO_PORTS);
        let (fib, mut routes) = crate::tables::build_fib_with_routes(&c, None).unwrap();
        let a = u32::from(std::net::Ipv4Addr::new(10, 9, 1, 1));
        assert_eq!(fib.v4.lookup(a), None);
        assert_eq!(
            routes.handle("route add 10.9.0.0/16 via 172.18.0.2"),
            "ok: added 10.9.0.0/16\n"
        );
        let nh = fib.v4.lookup(a).and_then(|i| fib.nexthop(i)).copied();
        assert!(
            matches!(
                nh,
                Some(NextHop::Forward {
                    port: 1,
                    mac: [2, 0, 0, 0, 2, 1],
                    ..
                })
            ),
            "{nh:?}"
        );
        // A configured route's via is a next hop too (unresolved until ARP answers).
        assert_eq!(
            routes.handle("route add 10.9.0.0/16 via 172.18.0.3"),
            "ok: replaced 10.9.0.0/16\n"
        );
        let nh = fib.v4.lookup(a).and_then(|i| fib.nexthop(i)).copied();
        assert!(
            matches!(nh, Some(NextHop::Unresolved { port: 1, .. })),
            "{nh:?}"
        );
        assert_eq!(
            routes.handle("route add 10.9.1.0/24 drop"),
            "ok: added 10.9.1.0/24\n"
        );
        let nh = fib.v4.lookup(a).and_then(|i| fib.nexthop(i)).copied();
        assert_eq!(nh, Some(NextHop::Blackhole));
        assert_eq!(
            routes.handle("route del 10.9.1.0/24"),
            "ok: removed 10.9.1.0/24\n"
        );
        assert_eq!(
            routes.handle("route del 10.9.0.0/16"),
            "ok: removed 10.9.0.0/16\n"
        );
        assert_eq!(fib.v4.lookup(a), None);
        assert_eq!(
            routes.handle("route add fd00:9::/64 drop"),
            "ok: added fd00:9::/64\n"
        );
        let a6 = u128::from("fd00:9::5".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(
            fib.v6.lookup(a6).and_then(|i| fib.nexthop(i)).copied(),
            Some(NextHop::Blackhole)
        );

        let local = fib
            .v4
            .lookup(u32::from(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        for (req, why) in [
            ("route del 10.9.0.0/16", "no route 10.9.0.0/16"),
            (
                "route add 10.9.0.0/16 via 172.18.0.9",
                "172.18.0.9 is not a next hop this gateway was started with",
            ),
            (
                "route add fd00:9::/64 via 172.18.0.2",
                "of different families",
            ),
            ("route del 192.0.2.0/24", "belongs to an interface"),
            ("route add 192.0.2.1/32 drop", "belongs to an interface"),
            ("route add 172.18.0.0/16 drop", "belongs to an interface"),
        ] {
            let got = routes.handle(req);
            assert!(
                got.starts_with("error: ") && got.contains(why),
                "{req}: {got}"
            );
        }
        assert_eq!(fib.v4.lookup(a), None, "refused requests changed nothing");
        assert_eq!(
            fib.v4
                .lookup(u32::from(std::net::Ipv4Addr::new(192, 0, 2, 1))),
            local
        );
    }

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        let p: IpNet = "10.9.0.0/16".parse().unwrap();
        assert_eq!(
            parse("route add 10.9.0.0/16 via 172.18.0.2\n"),
            Ok(Request::Add(p, Target::Via("172.18.0.2".parse().unwrap())))
        );
        assert_eq!(
            parse("route add 10.9.0.0/16 drop"),
            Ok(Request::Add(p, Target::Drop))
        );
        assert_eq!(parse("  route  del 10.9.0.0/16 "), Ok(Request::Del(p)));
        let err = |l: &str| parse(l).unwrap_err();
        assert!(
            err("route add 10.9.0.1/16 drop").contains("host bits set; did you mean 10.9.0.0/16?")
        );
        assert!(err("route add 10.9.0.0/33 drop").contains("not a prefix"));
        assert!(err("route add 10.9.0.0/16 via pods").contains("pods: not an IP address"));
        assert!(err("route flush").contains("expected `route add"));
        assert!(err("").contains("unknown request"));
    }
}
