//! The edge packet gateway: command-line entry point.
//!
//! Sub-commands: `check` validates a configuration, `run` runs the datapath over the configured
//! ports (pcap and memory ports today), `demo` shows the gateway at work on generated traffic.

use gateway::{demo, report, tables};

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
        /// With live (af_packet) ports: poll for this many seconds, then print the counters.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Generate mixed traffic in memory, run it through the pipeline with an example
    /// configuration and show what happened.
    Demo {
        /// Packets to generate.
        #[arg(long, default_value_t = 4096)]
        packets: usize,
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
        } => {
            let cfg = config::load_file(&config, config::Machine::this())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let duration = match duration {
                Some(d) if d.is_finite() && d > 0.0 => Some(std::time::Duration::from_secs_f64(d)),
                Some(d) => bail!("--duration must be a positive number of seconds, not {d}"),
                None => None,
            };
            let outcome = tables::run(&cfg, duration)?;
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
        Command::Demo { packets } => {
            if packets == 0 {
                bail!("--packets must be at least 1");
            }
            demo::in_memory(packets)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
