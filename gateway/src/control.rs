//! The control thread of a live gateway: a mio event loop that owns everything slow while the
//! worker busy-polls on its own core.
//!
//! - Frames for the gateway itself come up from the worker and go to the local stack
//!   ([`crate::local_stack`]); its replies go back down.
//! - Next hops are resolved by ARP and NDP ([`crate::neighbors`]) into the FIB's neighbour
//!   table, on the workers' request and ahead of time for configured next hops.
//! - SIGINT and SIGTERM stop the gateway cleanly: the worker finishes its poll, the ports are
//!   flushed and dropped (the AF_XDP program detaches), the control socket is removed.
//! - Counters are aggregated every second: printed as a line per second with `--watch`, and
//!   served as JSON on the control socket (`gateway stats --socket PATH`).
//! - Routes are added and removed on the control socket (`gateway route --socket PATH add|del`,
//!   [`crate::routes`]), through the route tables' single writer, while the workers forward.
//! - The configuration is reloaded on the control socket (`gateway reload --socket PATH`) or
//!   on SIGHUP ([`crate::reload`]): a new forwarding snapshot the workers take at their next
//!   poll, or the file's problems and the last good configuration kept.

use crate::control_socket::{Access, Answer, Server};
use crate::local_stack::LocalStack;
use crate::metrics::ControlFacts;
use crate::neighbors::Neighbors;
use crate::reload::{Reloaded, Reloader};
use crate::routes::RouteControl;
use anyhow::{Context, Result};
use config::Config;
use datapath::fib::Fib;
use datapath::local::LocalPath;
use datapath::pipeline::drop::DropReason;
use datapath::slot::{FibSlot, FibView};
use datapath::stats::{snapshot, PortSnapshot, Stats};
use datapath::worker::Worker;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a live run is watched and ended.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Stop after this long (else only on a signal).
    pub duration: Option<Duration>,
    /// Print a line of rates per second on stdout.
    pub watch: bool,
    /// Serve the counters as JSON on this Unix socket.
    pub control_socket: Option<PathBuf>,
    /// The configuration file, reloaded on `gateway reload` and SIGHUP (none: no reload).
    pub config_file: Option<PathBuf>,
    /// Who besides root and the gateway's user may use the control socket.
    pub control_access: Access,
    /// Serve Prometheus metrics here ([`crate::metrics`]).
    pub metrics: Option<std::net::SocketAddr>,
    /// What opening each port said about its mode (AF_XDP: XDP mode and copy or zero-copy),
    /// by port index, for the metrics.
    pub port_modes: Vec<String>,
    /// Reload when `config_file` changes, as SIGHUP does.
    pub reload_on_change: bool,
}

/// What tells a changed configuration file: the file the path leads to (through symlinks, as
/// a ConfigMap's atomic update swaps them), its size and modification time. `None`: unreadable.
fn file_stamp(path: &std::path::Path) -> Option<(u64, u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.modified().ok()?))
}

/// Frame buffers of each lane between a worker and the control thread.
const LOCAL_FRAMES: usize = 512;
/// Resolve requests, and frames other than ARP and NDP, taken from each worker per turn of
/// the event loop (a turn is at most a few milliseconds).
const PER_TURN: usize = 64;
const LISTENER: mio::Token = mio::Token(0);

/// What the control thread changes while the workers forward: the snapshot in force, the route
/// tables' writer of that snapshot, and the file to reload.
pub struct Changes {
    /// The snapshot the workers read.
    pub slot: Arc<FibSlot>,
    /// Route changes one at a time (`gateway route`).
    pub routes: Option<RouteControl>,
    /// Configuration reloads (`gateway reload`, SIGHUP).
    pub reload: Option<Reloader>,
    /// Kernel tables mirrored into the route tables (`[[route_source]]`).
    pub mirror: Option<crate::kernel_routes::Mirror>,
    /// The served prefixes written into a kernel table (`[route_export]`).
    pub export: Option<crate::kernel_routes::Export>,
    /// Replaced snapshots a worker may still hold, freed here once none does.
    retired: Vec<Arc<Fib>>,
    /// Reload generations: asked for, and the one being built. A build covers every request
    /// made before it started; requests during a build are served by the next one.
    wanted: u64,
    started: u64,
    /// Reloads that took effect and that were refused; route changes applied and refused.
    reloads: (u64, u64),
    route_updates: (u64, u64),
    building: Option<(u64, std::thread::JoinHandle<Result<Reloaded, String>>)>,
}

impl Changes {
    /// Changes to the snapshot in `slot`.
    pub fn new(slot: Arc<FibSlot>, routes: Option<RouteControl>, reload: Option<Reloader>) -> Self {
        Changes {
            slot,
            routes,
            reload,
            mirror: None,
            export: None,
            retired: Vec::new(),
            wanted: 0,
            started: 0,
            reloads: (0, 0),
            route_updates: (0, 0),
            building: None,
        }
    }

    /// Asks for a reload; the generation whose end answers it, or why there is none.
    fn want_reload(&mut self) -> Result<u64, String> {
        if self.reload.is_none() {
            return Err("error: this gateway has no configuration file to reload\n".to_string());
        }
        self.wanted += 1;
        Ok(self.wanted)
    }

    /// Starts the build a reload needs, and publishes a finished one: its generation and the
    /// answer for the clients that asked. Reading, validating and building a file run on a
    /// thread of their own (seconds for a full table), so the control thread keeps serving
    /// ARP, NDP, ICMP and the socket; it only publishes.
    fn poll_reload(&mut self, neighbors: &mut Neighbors) -> Option<(u64, String)> {
        let mut done = None;
        if self.building.as_ref().is_some_and(|(_, h)| h.is_finished()) {
            let (generation, h) = self.building.take()?;
            let outcome = h
                .join()
                .unwrap_or_else(|_| Err("the reload's build failed".to_string()));
            let answer = match (outcome, self.reload.as_mut()) {
                (Ok(new), Some(r)) => {
                    neighbors.reconfigure(&new.config);
                    self.retired.push(self.slot.replace(Arc::new(new.fib)));
                    let mut routes = new.routes;
                    // The new tables hold the file's routes: the mirrored ones go back in.
                    if let Some(m) = &mut self.mirror {
                        m.reapply(&mut routes);
                    }
                    self.routes = Some(routes);
                    if let (Some(x), Some(e)) = (&mut self.export, &new.config.route_export) {
                        x.update(&e.prefixes(&new.config.tunnels));
                    }
                    self.reloads.0 += 1;
                    r.accept(new.config)
                }
                (Ok(_), None) => String::new(),
                (Err(e), _) => {
                    self.reloads.1 += 1;
                    format!("error: {e}\nstill running the last good configuration\n")
                }
            };
            done = Some((generation, answer));
        }
        if self.building.is_none() && self.wanted > self.started {
            if let Some(r) = &self.reload {
                let job = r.clone();
                let current = self.slot.current();
                let generation = self.wanted;
                match std::thread::Builder::new()
                    .name("reload".to_string())
                    .spawn(move || job.load(&current))
                {
                    Ok(h) => {
                        self.started = generation;
                        self.building = Some((generation, h));
                    }
                    Err(e) => {
                        self.started = generation;
                        return Some((
                            generation,
                            format!("error: starting the reload: {e}\nstill running the last good configuration\n"),
                        ));
                    }
                }
            }
        }
        done
    }
}

/// Runs each worker on its core (the `[gateway] workers` in order) until a signal or the
/// duration ends; the calling thread is the control thread. Returns the final counters, summed
/// over the workers.
///
/// # Errors
/// Signal registration, the control socket, or a port's flush at the end.
pub fn run_live(
    c: &Config,
    workers: Vec<Worker>,
    opts: &LiveOptions,
    mut changes: Changes,
) -> Result<Vec<PortSnapshot>> {
    let paths: Vec<Arc<LocalPath>> = workers
        .iter()
        .map(|_| LocalPath::new(LOCAL_FRAMES))
        .collect();
    let stats: Vec<Arc<Stats>> = workers.iter().map(|w| Arc::clone(w.stats())).collect();
    let snap = || snapshot(stats.iter().map(|s| &**s), c.ports.len());
    let per_worker = || {
        stats
            .iter()
            .map(|s| snapshot([&**s], c.ports.len()))
            .collect::<Vec<_>>()
    };
    let tap = Arc::new(datapath::pipeline::trace::Tap::new(
        crate::trace::TAP_CAPACITY,
    ));
    let mut tracing = crate::trace::TraceControl::new(Arc::clone(&tap));
    let workers: Vec<Worker> = workers
        .into_iter()
        .zip(&paths)
        .enumerate()
        .map(|(i, (w, p))| {
            w.with_local(Arc::clone(p))
                .with_tap(Arc::clone(&tap), i as u16)
        })
        .collect();
    // Frames the control thread sends leave through the first worker's queues.
    let Some(down) = paths.first().cloned() else {
        anyhow::bail!("no worker");
    };
    let stop = Arc::new(AtomicBool::new(false));
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&signalled)).context("signal handler")?;
    }
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
        .context("signal handler")?;
    let mut poll = mio::Poll::new().context("mio")?;
    let mut server = match &opts.control_socket {
        Some(p) => {
            let mut server = Server::new(
                crate::control_socket::bind(p, opts.control_access)?,
                opts.control_access,
            );
            poll.registry()
                .register(server.listener(), LISTENER, mio::Interest::READABLE)?;
            Some(server)
        }
        None => None,
    };
    // The newest reload generation SIGHUP (or a changed file) asked for, and which of the two,
    // reported on stderr when done.
    let mut hangup_wants = 0;
    let mut hangup_trigger = "sighup";
    let watched = opts
        .config_file
        .as_deref()
        .filter(|_| opts.reload_on_change);
    let mut stamp = watched.and_then(file_stamp);
    let facts = Arc::new(std::sync::Mutex::new(ControlFacts::default()));
    let metrics = match opts.metrics {
        Some(addr) => {
            let m = crate::metrics::Server::start(
                addr,
                crate::metrics::Source {
                    name: c.name.clone(),
                    ports: crate::metrics::PortInfo::of(c, &opts.port_modes),
                    workers: stats.clone(),
                    facts: Arc::clone(&facts),
                },
            )?;
            datapath::log::event(
                "metrics_listen",
                &[("url", &format!("http://{addr}/metrics"))],
            );
            Some(m)
        }
        None => None,
    };
    let mut stack = LocalStack::new(c, &down);
    let mut neighbors = Neighbors::new(c, Arc::clone(changes.slot.current().neighbors()));
    let mut now_tick = Instant::now() - Duration::from_secs(1);
    let result = std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(i, mut worker)| {
                let core = c.workers.get(i).copied();
                let (stop, signalled) = (&stop, &signalled);
                let mut view = FibView::new(&changes.slot);
                s.spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: core });
                    }
                    // A worker watches the signal flag too: pinned with a real-time priority
                    // on the control thread's only core, it would otherwise starve the thread
                    // that stops it.
                    let mut last_sync = Instant::now();
                    while !stop.load(Ordering::Relaxed) && !signalled.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            // The snapshot in force, checked once a poll (one atomic load).
                            if worker.poll(view.get()) == 0 {
                                std::hint::spin_loop();
                            }
                        }
                        if last_sync.elapsed() >= Duration::from_millis(500) {
                            worker.housekeeping();
                            last_sync = Instant::now();
                        }
                    }
                    worker.sync_kernel_drops();
                    worker.flush()
                })
            })
            .collect();
        let start = Instant::now();
        datapath::log::event(
            "start",
            &[
                ("name", &c.name),
                ("version", &env!("CARGO_PKG_VERSION")),
                ("workers", &format!("{:?}", c.workers)),
                ("ports", &c.ports.len()),
                ("routes", &c.routes.len()),
            ],
        );
        let mut events = mio::Events::with_capacity(16);
        let mut last = snap();
        let mut next_tick = start + Duration::from_secs(1);
        if opts.watch {
            println!("{}", watch_header(c));
        }
        let outcome = loop {
            if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(2))) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    break Err(e.into());
                }
            }
            let now = Instant::now();
            if let Some(server) = &mut server {
                let shed: u64 = paths.iter().map(|p| p.resolve_shed()).sum();
                let counters = server.counters();
                server.turn(|request| {
                    answer(
                        request,
                        c,
                        &snap,
                        &per_worker,
                        &mut changes,
                        &neighbors,
                        &mut tracing,
                        shed,
                        counters,
                    )
                });
            }
            let mut trigger = hangup.swap(false, Ordering::Relaxed).then_some("sighup");
            if let Some(path) = watched.filter(|_| now >= next_tick) {
                let now_stamp = file_stamp(path);
                if now_stamp.is_some() && now_stamp != stamp {
                    trigger = trigger.or(Some("file_changed"));
                }
                stamp = now_stamp.or(stamp);
            }
            if let Some(why) = trigger {
                hangup_trigger = why;
                match changes.want_reload() {
                    Ok(g) => hangup_wants = g,
                    Err(e) => datapath::log::event(
                        "reload",
                        &[
                            ("trigger", &why),
                            ("result", &"error"),
                            ("message", &e.trim()),
                        ],
                    ),
                }
            }
            if let Some((generation, answer)) = changes.poll_reload(&mut neighbors) {
                let trigger = if hangup_wants != 0 && hangup_wants <= generation {
                    hangup_wants = 0;
                    hangup_trigger
                } else {
                    "socket"
                };
                let result = if answer.starts_with("ok") {
                    "ok"
                } else {
                    "error"
                };
                datapath::log::event(
                    "reload",
                    &[
                        ("trigger", &trigger),
                        ("result", &result),
                        ("message", &answer.trim().replace('\n', "; ")),
                    ],
                );
                if let Some(server) = &mut server {
                    server.finish_reload(generation, &answer);
                }
            }
            if let (Some(m), Some(r)) = (&mut changes.mirror, &mut changes.routes) {
                m.turn(r);
            }
            datapath::slot::retire(&mut changes.retired);
            for path in &paths {
                // ARP and NDP first, all of them (their lane is bounded): they keep next
                // hops resolved. Then a bounded share of the rest, so that a flood cannot
                // keep this loop from the control socket, signals and timers.
                while let Some(f) = path.take_up_neighbor() {
                    neighbors.learn(f.bytes(), f.port);
                    stack.deliver(&f);
                    path.recycle(f);
                }
                for _ in 0..PER_TURN {
                    let Some((addr, port)) = path.take_resolve() else {
                        break;
                    };
                    neighbors.wanted(addr, port, &down);
                }
                for _ in 0..PER_TURN {
                    let Some(f) = path.take_up_other() else {
                        break;
                    };
                    stack.deliver(&f);
                    path.recycle(f);
                }
            }
            stack.tick();
            if now_tick.elapsed() >= Duration::from_millis(100) {
                neighbors.tick(&down);
                tracing.tick();
                now_tick = Instant::now();
                if metrics.is_some() {
                    let f = ControlFacts {
                        routes: changes.routes.as_ref().map_or((0, 0), RouteControl::sizes),
                        route_updates: changes.route_updates,
                        reloads: changes.reloads,
                        generation: 1 + changes.reloads.0,
                        neighbor_table: neighbors.table_occupancy(),
                        neighbors_tracked: neighbors.tracked(),
                        neighbors: neighbors.counters(),
                        resolve_shed: paths.iter().map(|p| p.resolve_shed()).sum(),
                        control: server.as_ref().map(Server::counters).unwrap_or_default(),
                        mirror: changes.mirror.as_ref().map(|m| m.counters().clone()),
                    };
                    if let Ok(mut shared) = facts.lock() {
                        *shared = f;
                    }
                }
            }
            if now >= next_tick {
                let cur = snap();
                if opts.watch {
                    println!(
                        "{}",
                        watch_line(c, start.elapsed().as_secs_f64(), &last, &cur)
                    );
                }
                last = cur;
                next_tick += Duration::from_secs(1);
            }
            let why = if signalled.load(Ordering::Relaxed) {
                "signal"
            } else if opts.duration.is_some_and(|d| start.elapsed() >= d) {
                "duration"
            } else if handles.iter().any(|h| h.is_finished()) {
                "a worker ended"
            } else {
                continue;
            };
            datapath::log::event("stop", &[("reason", &why)]);
            break Ok(());
        };
        stop.store(true, Ordering::Relaxed);
        let mut flushed = Ok(());
        for h in handles {
            let r = h
                .join()
                .map_err(|_| anyhow::anyhow!("a worker thread failed"))?;
            flushed = flushed.and(r);
        }
        outcome.and(flushed.context("flushing ports"))
    });
    if let Some(p) = &opts.control_socket {
        let _ = std::fs::remove_file(p);
    }
    result?;
    Ok(snap())
}

/// The answer to one control-socket request: `stats` (or nothing) with the counters as one
/// JSON line, `route ...` with the outcome of the route change and `routes get|show` with the
/// routes in force ([`crate::routes`]), `reload` with the outcome of the reload
/// ([`crate::reload`]) once it is built, `trace ...` and `explain ...` with packet records
/// ([`crate::trace`]).
#[allow(clippy::too_many_arguments)]
fn answer(
    request: &str,
    c: &Config,
    snap: &dyn Fn() -> Vec<PortSnapshot>,
    per_worker: &dyn Fn() -> Vec<Vec<PortSnapshot>>,
    changes: &mut Changes,
    neighbors: &Neighbors,
    tracing: &mut crate::trace::TraceControl,
    resolve_shed: u64,
    control: crate::control_socket::Counters,
) -> Answer {
    if request.is_empty() || request == "stats" {
        let mut j = crate::report::json(c, &snap());
        j["workers"] = crate::report::workers_json(c, &per_worker());
        j["neighbors"] = crate::report::neighbors_json(neighbors, resolve_shed);
        j["control"] = serde_json::json!({
            "served": control.served,
            "refused": control.refused,
            "busy": control.busy,
            "dropped": control.dropped,
            "reload_building": changes.building.is_some(),
        });
        if let Some(m) = &changes.mirror {
            j["route_sources"] = m.counters().json();
        }
        Answer::Now(j.to_string() + "\n")
    } else if request.starts_with("routes ") {
        let ports: Vec<String> = c.ports.iter().map(|p| p.name.clone()).collect();
        match &changes.routes {
            Some(r) => Answer::Now(r.lookup(request, &changes.slot.current(), &ports)),
            None => Answer::Now("error: this gateway has no route tables to show\n".to_string()),
        }
    } else if request.starts_with("trace ") || request.starts_with("explain ") {
        let ports: Vec<String> = c.ports.iter().map(|p| p.name.clone()).collect();
        let fib = changes.slot.current();
        Answer::Now(tracing.answer(request, &fib, changes.routes.as_ref(), &ports))
    } else if request == "reload" {
        match changes.want_reload() {
            Ok(generation) => Answer::AfterReload(generation),
            Err(e) => Answer::Now(e),
        }
    } else if let Some(r) = changes
        .routes
        .as_mut()
        .filter(|_| request.starts_with("route"))
    {
        let answer = r.handle(request);
        let ok = answer.starts_with("ok");
        if ok {
            changes.route_updates.0 += 1;
        } else {
            changes.route_updates.1 += 1;
        }
        datapath::log::event(
            "route_change",
            &[
                ("request", &request),
                ("result", &if ok { "ok" } else { "refused" }),
                ("message", &answer.trim()),
            ],
        );
        Answer::Now(answer)
    } else if request.starts_with("route") {
        Answer::Now("error: this gateway takes no route changes\n".to_string())
    } else {
        Answer::Now(format!(
            "error: unknown request {request:?}: expected `stats`, `route ...`, `routes ...`, `trace ...`, `explain ...` or `reload`\n"
        ))
    }
}

fn watch_header(c: &Config) -> String {
    let mut s = format!("{:>6}", "t(s)");
    for p in &c.ports {
        let _ = write!(
            s,
            " {:>10} {:>10} {:>9}",
            format!("{}:rx/s", p.name),
            format!("{}:tx/s", p.name),
            "decap/s",
        );
    }
    s + "  drops/s by reason"
}

fn watch_line(c: &Config, t: f64, last: &[PortSnapshot], cur: &[PortSnapshot]) -> String {
    let mut s = format!("{t:>6.1}");
    for (a, b) in last.iter().zip(cur).take(c.ports.len()) {
        let _ = write!(
            s,
            " {:>10} {:>10} {:>9}",
            b.rx_packets.saturating_sub(a.rx_packets),
            b.tx_packets.saturating_sub(a.tx_packets),
            b.decap.saturating_sub(a.decap)
        );
    }
    let mut drops = Vec::new();
    for r in DropReason::ALL {
        let n: u64 = last
            .iter()
            .zip(cur)
            .map(|(a, b)| b.drops_of(*r).saturating_sub(a.drops_of(*r)))
            .sum();
        if n > 0 {
            drops.push(format!("{}={n}", r.name()));
        }
    }
    s + "  " + &drops.join(" ")
}

/// Reads the counters from a running gateway's control socket.
///
/// # Errors
/// Connecting or reading.
pub fn query(socket: &std::path::Path) -> Result<String> {
    request(socket, "stats")
}

/// Sends one request line to a running gateway's control socket and returns its answer.
///
/// # Errors
/// Connecting, writing or reading.
pub fn request(socket: &std::path::Path, line: &str) -> Result<String> {
    use std::io::Read;
    let mut conn = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    // A gateway that refuses this client answers and closes before reading the request:
    // its answer is still there to read.
    if let Err(e) = conn.write_all(format!("{line}\n").as_bytes()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    let mut out = String::new();
    conn.read_to_string(&mut out)?;
    Ok(out)
}
