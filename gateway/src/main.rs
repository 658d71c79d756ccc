//! The edge packet gateway: command-line entry point.
//!
//! Sub-commands: `check` validates a configuration; `run` runs the datapath over the configured
//! ports (AF_XDP, AF_PACKET, pcap, memory); `route`, `routes`, `trace`, `reload` and `stats`
//! talk to a running gateway; `explain` runs the pipeline on one frame, offline or on a running
//! gateway's snapshot; `pktgen` generates traffic; `demo` shows the gateway at work.

use gateway::tools::demo;
use gateway::{report, tables};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "gateway", version, about = "Userspace edge packet gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and print a summary, or every problem found.
    Check {
        /// The TOML configuration.
        file: PathBuf,
    },
    /// Run the gateway. With pcap ports it replays every rx file, writes every tx file, prints
    /// the counters and exits at the end of input.
    Run {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// Also write the counters as JSON to this file.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// With live (af_xdp, af_packet) ports: stop after this many seconds (otherwise on
        /// Ctrl-C or SIGTERM), then print the counters.
        #[arg(long)]
        duration: Option<f64>,
        /// With live ports: print packets per second per port and drops by reason every second.
        #[arg(long)]
        watch: bool,
        /// With live ports: serve the counters as JSON on this Unix socket
        /// (read them with `gateway stats --socket PATH`).
        #[arg(long)]
        control_socket: Option<PathBuf>,
        /// With live ports: serve Prometheus metrics on `GET /metrics` at ADDRESS:PORT
        /// (overrides `[metrics] listen`).
        #[arg(long, value_name = "ADDRESS:PORT")]
        metrics: Option<std::net::SocketAddr>,
        /// With live ports: reload the configuration when its file changes (checked every
        /// second; follows symlinks, so a Kubernetes ConfigMap update is seen), as SIGHUP does.
        #[arg(long)]
        reload_on_change: bool,
        /// Events on stderr (start, ports opened, reloads, route and neighbour changes, link
        /// faults, stop): `text` (`ts=... event=... key=value`) or `json` (one object a line).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Generate plain or tunnelled traffic: on an interface through BPF live frames (as root),
    /// or into a pcap file.
    Pktgen(Box<gateway::tools::pktgen::Args>),
    /// The benchmark's ceiling: a minimal AF_XDP forwarder (rx, rewrite MACs, tx) with no
    /// pipeline, until Ctrl-C or SIGTERM.
    #[command(hide = true)]
    XdpForward {
        /// Receive on this interface.
        #[arg(long)]
        from: String,
        /// Transmit on this interface.
        #[arg(long)]
        to: String,
        /// Source MAC written into each frame.
        #[arg(long)]
        src_mac: String,
        /// Destination MAC written into each frame.
        #[arg(long)]
        dst_mac: String,
        /// Core to pin to.
        #[arg(long, default_value_t = 0)]
        core: usize,
    },
    /// Add or remove a route on a running gateway, through its control socket: applied by the
    /// route tables' single writer while the workers forward. Next hops are gateways in a
    /// connected subnet of a port, or drop.
    Route {
        /// The gateway's --control-socket.
        #[arg(long)]
        socket: PathBuf,
        #[command(subcommand)]
        change: RouteChange,
    },
    /// Look up routes in a running gateway, through its control socket: `get ADDRESS` gives
    /// the longest match, its next hop(s) with their MAC state, and where it came from;
    /// `show` lists the table.
    Routes {
        /// The gateway's --control-socket.
        #[arg(long)]
        socket: PathBuf,
        /// What to look up.
        #[command(subcommand)]
        query: RoutesQuery,
    },
    /// Trace the next packets a running gateway's workers see, through its control socket, and
    /// print each one's path through the stages (as VPP's `trace add`): input port and worker,
    /// classify, tunnel decapsulated, inner header, route matched, rewrite, and the output port
    /// or the drop reason.
    Trace {
        /// The gateway's --control-socket.
        #[arg(long)]
        socket: PathBuf,
        /// Packets to trace.
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Only packets received on this port.
        #[arg(long)]
        port: Option<String>,
        /// Only packets whose outer or inner header matches, for example
        /// `dst 10.244.0.0/16 and proto udp and tunnel gtpu` (words: src, dst, proto
        /// udp|tcp|icmp|icmpv6|N, tunnel gtpu|vxlan|geneve|ipip|none).
        #[arg(long, default_value = "")]
        filter: String,
        /// Stop waiting after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// One JSON object a packet instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Explain what the gateway does with a frame: the same pipeline code the workers run, on a
    /// snapshot built from --config, or on a running gateway's current one through --socket
    /// (routes added or reloaded at run time included). Nothing is sent. The frame is --hex,
    /// each frame of --pcap (or its --index'th), or built from pktgen's flags
    /// (`--kind gtpu --teid 0x1001 --inner-dst 10.244.1.5`), then addressed to the input
    /// port's MAC.
    Explain(Box<gateway::tools::explain::ExplainArgs>),
    /// Reload a running gateway's configuration file, through its control socket: routes,
    /// tunnels and neighbours change while the workers forward; a file with problems changes
    /// nothing (they are listed) and port or worker changes need a restart. SIGHUP does the
    /// same, with the outcome on the gateway's stderr.
    Reload {
        /// The gateway's --control-socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Print the counters of a running gateway as JSON, from its control socket.
    Stats {
        /// The gateway's --control-socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Show the gateway at work. As root: build three network namespaces (external host,
    /// gateway, pods), run the gateway on AF_XDP, send plain, VXLAN (kernel device), GTP-U
    /// and IPIP traffic toward the pods, show what it did, and remove everything. Otherwise
    /// (or with --in-memory): the same pipeline on generated traffic in memory.
    Demo {
        /// Run the in-memory demo even as root.
        #[arg(long)]
        in_memory: bool,
        /// In-memory demo: packets to generate.
        #[arg(long, default_value_t = 4096)]
        packets: usize,
        /// Namespace demo: seconds the gateway runs.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Send every frame of a pcap file out of an interface through an AF_PACKET socket (used by
    /// the namespace demo as the external host's GTP-U and IPIP sender).
    #[command(hide = true)]
    Replay {
        /// Interface to send on.
        #[arg(long)]
        interface: String,
        /// Frames to send.
        #[arg(long)]
        pcap: PathBuf,
    },
}

/// How `gateway run` writes its events.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// `ts=... event=... key=value ...`
    Text,
    /// One JSON object a line.
    Json,
}

/// A look-up sent by `gateway routes`.
#[derive(Subcommand)]
enum RoutesQuery {
    /// The route an address takes: `get 10.244.1.5`.
    Get {
        /// The address.
        address: String,
    },
    /// The routes, by prefix.
    Show {
        /// Only the routes inside this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// A route change sent by `gateway route`.
#[derive(Subcommand)]
enum RouteChange {
    /// Add or replace a route: `add 10.9.0.0/16 via 172.18.0.2` or `add 10.9.0.0/16 drop`.
    Add {
        /// Destination prefix.
        prefix: String,
        /// `via ADDRESS` or `drop`.
        #[arg(num_args = 1..=2, required = true)]
        target: Vec<String>,
    },
    /// Remove a route.
    Del {
        /// Destination prefix.
        prefix: String,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => match config::load_file(&file, config::Machine::this()) {
            Ok(c) => {
                print!("{}", report::summary(&c));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                let n = e.problems().len();
                if n > 0 {
                    eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
                }
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Run {
            config,
            stats_json,
            duration,
            watch,
            control_socket,
            metrics,
            reload_on_change,
            log_format,
        } => {
            datapath::log::set_format(match log_format {
                LogFormat::Text => datapath::log::Format::Text,
                LogFormat::Json => datapath::log::Format::Json,
            });
            let cfg = config::load_file(&config, config::Machine::this())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let duration = match duration {
                Some(d) if d.is_finite() && d > 0.0 => Some(std::time::Duration::from_secs_f64(d)),
                Some(d) => bail!("--duration must be a positive number of seconds, not {d}"),
                None => None,
            };
            let group = cfg
                .control_group
                .as_deref()
                .map(gateway::control_socket::resolve_group)
                .transpose()?;
            let live = gateway::control::LiveOptions {
                duration,
                watch,
                control_socket,
                config_file: Some(config.clone()),
                control_access: gateway::control_socket::Access { group },
                metrics: metrics.or(cfg.metrics),
                port_modes: Vec::new(),
                reload_on_change,
            };
            let outcome = tables::run(&cfg, &live)?;
            print!("{}", report::table(&cfg, &outcome.stats));
            for w in &outcome.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(path) = stats_json {
                let json = report::json(&cfg, &outcome.stats);
                std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            in_memory,
            packets,
            seconds,
        } => {
            if packets == 0 {
                bail!("--packets must be at least 1");
            }
            if !(seconds.is_finite() && seconds >= 2.0) {
                bail!("--seconds must be at least 2");
            }
            if in_memory || !gateway::tools::lab::is_root() {
                if !in_memory {
                    println!("(not root: running the in-memory demo; run as root for the namespace demo)\n");
                }
                demo::in_memory(packets)?;
            } else {
                demo::namespaces(seconds)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pktgen(args) => {
            gateway::tools::pktgen::main(*args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::XdpForward {
            from,
            to,
            src_mac,
            dst_mac,
            core,
        } => {
            let mac = gateway::tools::pktgen::mac;
            let n = gateway::tools::baseline::forward(
                &from,
                &to,
                mac(&src_mac)?,
                mac(&dst_mac)?,
                core,
            )?;
            println!("forwarded {n} frames");
            Ok(ExitCode::SUCCESS)
        }
        Command::Route { socket, change } => {
            let line = match change {
                RouteChange::Add { prefix, target } => {
                    format!("route add {prefix} {}", target.join(" "))
                }
                RouteChange::Del { prefix } => format!("route del {prefix}"),
            };
            let answer = gateway::control::request(&socket, &line)?;
            print!("{answer}");
            Ok(if answer.starts_with("ok") {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Routes { socket, query } => {
            let line = match query {
                RoutesQuery::Get { address } => format!("routes get {address}"),
                RoutesQuery::Show { prefix, limit } => {
                    format!("routes show {} {limit}", prefix.as_deref().unwrap_or("-"))
                }
            };
            let answer = gateway::control::request(&socket, &line)?;
            print!("{answer}");
            Ok(if answer.starts_with("error") {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Trace {
            socket,
            count,
            port,
            filter,
            timeout,
            json,
        } => {
            if !(timeout.is_finite() && timeout > 0.0) {
                bail!("--timeout must be a positive number of seconds");
            }
            let filter = match port {
                Some(p) => format!("port {p} {filter}"),
                None => filter,
            };
            gateway::trace::follow(
                &socket,
                count,
                &filter,
                std::time::Duration::from_secs_f64(timeout),
                json,
                &mut std::io::stdout().lock(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain(a) => {
            let explained = gateway::tools::explain::explain_cli(&a)?;
            for v in &explained {
                if a.json {
                    println!("{v}");
                } else {
                    print!("{}", gateway::trace::text(v));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload { socket } => {
            let answer = gateway::control::request(&socket, "reload")?;
            print!("{answer}");
            Ok(if answer.starts_with("ok") {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Stats { socket } => {
            print!("{}", gateway::control::query(&socket)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { interface, pcap } => {
            let sent = demo::replay(&interface, &pcap)?;
            println!("sent {sent} frames on {interface}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
