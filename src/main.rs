//! The seqd binary: `seqd --config FILE` runs the appliance,
//! `seqd --check-config FILE` validates a config and exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use seqd::control::config::Config;
use seqd::runtime::{self, RunOptions};

/// Exit code for a config that does not validate (nothing was started).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure to start or run (EAL, ports, workers).
const EXIT_RUNTIME: u8 = 1;

#[derive(Parser, Debug)]
#[command(name = "seqd", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SEQD_BUILD_INFO"), ")"), about = "seqd packet sequencing engine")]
struct Cli {
    /// Run with this TOML config.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "check_config",
        required_unless_present = "check_config"
    )]
    config: Option<PathBuf>,

    /// Validate this TOML config and exit (0 if valid, 2 if not).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,

    /// Stop once no packet has arrived for this many milliseconds (for
    /// replayed pcaps in tests and benchmarks).
    #[arg(long, value_name = "MS")]
    exit_when_idle: Option<u64>,

    /// Stop after this many seconds (benchmarks).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,

    /// Write the final counters as JSON to this file on exit.
    #[arg(long, value_name = "FILE")]
    stats_file: Option<PathBuf>,

    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "seqd=debug".
    #[arg(long, default_value = "info", env = "SEQD_LOG")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if let Some(path) = &cli.check_config {
        return match Config::from_file(path) {
            Ok(c) => {
                println!(
                    "{}: OK ({} interfaces, {} workers on lcores {:?})",
                    path.display(),
                    c.interfaces.len(),
                    c.workers.lcores.len(),
                    c.workers.lcores
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("seqd: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }

    let path = cli.config.expect("clap requires --config");
    let config = match Config::from_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("seqd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let opts = RunOptions {
        exit_when_idle: cli.exit_when_idle.map(Duration::from_millis),
        duration: cli.duration.map(Duration::from_secs_f64),
        stats_file: cli.stats_file,
        config_path: Some(path.clone()),
    };
    let signals = runtime::Signals::default();
    if let Err(e) = runtime::install_signal_flag(signals.clone()) {
        eprintln!("seqd: cannot set up signal handling: {e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    match runtime::run(&config, &opts, signals) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seqd: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
