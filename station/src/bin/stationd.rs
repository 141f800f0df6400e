//! `stationd`: the station daemon.
//!
//! `stationd [--config PATH] check-config` validates the configuration and prints
//! `OK <path>`. `stationd [--config PATH] [run]` loads the configuration, opens the station key
//! and the job store in the data directory, and serves the control-plane API until SIGTERM or
//! SIGINT. `--data-dir`, `--api-listen` and `--endpoint-url` override the configuration (the
//! last replaces the endpoint of every target region, as the aws CLI's option does).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use station::api::{self, ApiState};
use station::config::{Config, DEFAULT_CONFIG_PATH};
use station::keys::StationKey;
use station::store::Store;
use station::targets::SdkTargets;

#[derive(Parser)]
#[command(name = "stationd", version, about = "The Station data-loading daemon")]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The data directory (overrides the configuration's data_dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The control-plane API's address (overrides api.listen).
    #[arg(long, global = true)]
    api_listen: Option<SocketAddr>,
    /// The endpoint of every target region (S3, Glacier, EBS), e.g. a local test server.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
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
    let mut config = Config::load(&cli.config)?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(addr) = cli.api_listen {
        config.api.listen = addr;
    }
    if let Some(url) = &cli.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--endpoint-url `{url}` must be an http:// or https:// URL");
        }
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("OK {}", cli.config.display());
            Ok(())
        }
        Command::Run => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(config, cli.endpoint_url))
        }
    }
}

async fn serve(config: Config, endpoint_url: Option<String>) -> anyhow::Result<()> {
    let key = StationKey::load_or_create(&config.key_file())?;
    let store = Store::open(&config.data_dir, Arc::new(key))?;
    let targets = SdkTargets::new(&config, endpoint_url.as_deref()).await;
    let state = Arc::new(ApiState {
        store,
        rules: config.manifest_rules(),
        targets: Arc::new(targets),
        station_name: config.station_name.clone(),
    });
    tracing::info!(
        station = %config.station_name,
        data_dir = %config.data_dir.display(),
        "stationd started"
    );
    api::serve(config.api.listen, state, shutdown_signal())
        .await
        .with_context(|| format!("control-plane API on {}", config.api.listen))
}

/// Completes on SIGTERM (systemd's stop) or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping");
}
