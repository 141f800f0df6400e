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
use drivers::udev::{DeviceWatcher, WatchOptions};
use station::api::{self, ApiState};
use station::config::{Config, DEFAULT_CONFIG_PATH};
use station::keys::StationKey;
use station::orchestrator::Station;
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
        store: store.clone(),
        rules: config.manifest_rules(),
        targets: Arc::new(targets),
        station_name: config.station_name.clone(),
    });
    let console =
        station::console::server::bind(&config.console.socket, config.console.group.as_deref())?;
    // No export runs yet: whatever a killed daemon left mounted for one comes down now.
    for undone in drivers::export_fs::clean_up(&config.data_dir.join("export")) {
        tracing::warn!("left by an interrupted export: {undone}");
    }
    let station = Station::new(config.clone(), store, endpoint_url);

    // udev events (and the devices present at start) reach the orchestrator in order.
    let (events_tx, events_rx) = std::sync::mpsc::channel();
    let watcher = DeviceWatcher::start(events_tx, WatchOptions::default())
        .context("cannot watch udev for devices (is systemd-udevd running?)")?;
    let (bridge_tx, mut bridge_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("udev-bridge".into())
        .spawn(move || {
            while let Ok(event) = events_rx.recv() {
                if bridge_tx.send(event).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the udev bridge thread")?;
    let events = {
        let station = Arc::clone(&station);
        tokio::spawn(async move {
            while let Some(event) = bridge_rx.recv().await {
                station.handle_event(event);
            }
        })
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let console_task = tokio::spawn(station::console::server::serve(
        console,
        Arc::clone(&station),
        stopped(stop_rx.clone()),
    ));
    // E-mail goes out only with a server; without one it stays queued in the database.
    let outbox = match station::notify::mail::transport(&config.notifications)? {
        Some(transport) => Some(tokio::spawn(station::notify::mail::run_outbox(
            station.store().clone(),
            transport,
            config.notifications.retry_max_secs,
            Arc::clone(&station.notifier().wake),
        ))),
        None => {
            tracing::info!("notifications.smtp_server is not set: e-mail stays queued");
            None
        }
    };
    let metrics_task = match config.metrics.listen {
        Some(listen) => Some(tokio::spawn(station::notify::metrics::serve(
            station::notify::metrics::bind(listen).await?,
            Arc::clone(&station),
            stopped(stop_rx.clone()),
        ))),
        None => None,
    };
    let api_listen = config.api.listen;
    let api_task = tokio::spawn(api::serve(api_listen, state, stopped(stop_rx.clone())));
    tracing::info!(
        station = %config.station_name,
        data_dir = %config.data_dir.display(),
        console = %config.console.socket.display(),
        "stationd started"
    );
    station::systemd::notify("READY=1");
    let watchdog = tokio::spawn(station::systemd::watchdog());

    shutdown_signal().await;
    station::systemd::notify("STOPPING=1");
    let _ = stop_tx.send(true);
    watchdog.abort();
    events.abort();
    if let Some(task) = &outbox {
        task.abort();
    }
    if let Some(task) = metrics_task {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "metrics endpoint"),
            Err(e) => tracing::error!(error = %e, "metrics endpoint task"),
            Ok(Ok(())) => {}
        }
    }
    if let Err(e) = watcher.stop() {
        tracing::warn!(error = %e, "udev watcher");
    }
    let _ = console_task.await;
    let _ = std::fs::remove_file(&config.console.socket);
    api_task
        .await
        .context("control-plane API task")?
        .with_context(|| format!("control-plane API on {api_listen}"))
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
