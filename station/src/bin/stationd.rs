//! `stationd`: the station daemon.
//!
//! `stationd [--config PATH] check-config` validates the configuration and prints
//! `OK <path>`. `stationd [--config PATH] [run]` loads the configuration, prepares the data
//! directory and runs the station's services until it is stopped.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use station::config::{Config, DEFAULT_CONFIG_PATH};

#[derive(Parser)]
#[command(name = "stationd", version, about = "The Station data-loading daemon")]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Check the configuration and exit: prints `OK <path>`, or the problem and exits 1.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    station::logging::init(cli.verbose.max(1));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stationd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("OK {}", cli.config.display());
            Ok(())
        }
        Command::Run => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    config.data_dir.display()
                )
            })?;
            tracing::info!(
                station = %config.station_name,
                data_dir = %config.data_dir.display(),
                "stationd started"
            );
            // The services (API, console, bays) are started here as they are built; until
            // then the daemon holds its configuration and waits to be stopped.
            loop {
                std::thread::park();
            }
        }
    }
}
