//! The Prometheus endpoint: the text exposition format, written by hand (a few counters and
//! gauges do not need a library).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::job::ProgressCode;
use crate::orchestrator::Station;
use crate::store::RunState;

/// The counters since the daemon started.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Default)]
pub(crate) struct Counters {
    /// By job kind.
    bytes: BTreeMap<String, u64>,
    files: BTreeMap<String, u64>,
    /// By job progress code.
    results: BTreeMap<String, u64>,
    /// Errors in job logs, by job kind.
    log_errors: BTreeMap<String, u64>,
    /// Error rows in job logs, by the log's Status and Code (`508 ReadError`).
    log_rows: BTreeMap<String, u64>,
    /// By outcome.
    pub(crate) erases: BTreeMap<String, u64>,
}

impl Metrics {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A job finished with `code`, having loaded `files` files and `bytes` bytes.
    pub fn job_result(&self, kind: &str, code: ProgressCode, errors: u64, files: u64, bytes: u64) {
        self.with(|c| {
            *c.bytes.entry(kind.to_owned()).or_default() += bytes;
            *c.files.entry(kind.to_owned()).or_default() += files;
            *c.results.entry(code.as_str().to_owned()).or_default() += 1;
            *c.log_errors.entry(kind.to_owned()).or_default() += errors;
        });
    }

    /// A job's log had these error rows, by Status and Code.
    pub fn log_rows(&self, by_status: &BTreeMap<String, u64>) {
        self.with(|c| {
            for (status, n) in by_status {
                *c.log_rows.entry(status.clone()).or_default() += n;
            }
        });
    }

    /// An erase ended (`verified` or `failed`).
    pub fn erase(&self, outcome: &str) {
        self.with(|c| *c.erases.entry(outcome.to_owned()).or_default() += 1);
    }
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label_name: &str,
    values: &BTreeMap<String, u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{label_name}=\"{}\"}} {v}", label(k));
    }
}

/// The exposition text.
pub fn render(station: &Station) -> String {
    let mut out = String::new();
    station.notifier().metrics.with(|c| {
        family(
            &mut out,
            "station_loaded_bytes_total",
            "counter",
            "Bytes loaded by finished jobs.",
            "kind",
            &c.bytes,
        );
        family(
            &mut out,
            "station_loaded_files_total",
            "counter",
            "Files the loads of finished jobs worked through (as the pipeline reports them started).",
            "kind",
            &c.files,
        );
        family(
            &mut out,
            "station_job_results_total",
            "counter",
            "Finished jobs by progress status code.",
            "code",
            &c.results,
        );
        family(
            &mut out,
            "station_log_errors_total",
            "counter",
            "Errors written to job logs.",
            "kind",
            &c.log_errors,
        );
        family(
            &mut out,
            "station_log_error_rows_total",
            "counter",
            "Error rows written to job logs, by the log's Status and Code.",
            "status",
            &c.log_rows,
        );
        family(
            &mut out,
            "station_erases_total",
            "counter",
            "Erases by outcome.",
            "outcome",
            &c.erases,
        );
    });
    let bays = station.bays();
    let _ = writeln!(out, "# HELP station_bay_throughput_bytes_per_second The bay's transfer or erase rate.\n# TYPE station_bay_throughput_bytes_per_second gauge");
    for b in &bays {
        let rate = if matches!(b.state, RunState::Transferring | RunState::Erasing) {
            b.rate_mb_s * 1e6
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "station_bay_throughput_bytes_per_second{{bay=\"{}\"}} {rate}",
            label(&b.bay)
        );
    }
    let busy = bays.iter().filter(|b| !b.state.is_final()).count();
    let _ = writeln!(out, "# HELP station_bays_busy Bays whose device is still being worked on.\n# TYPE station_bays_busy gauge\nstation_bays_busy {busy}");
    let pending = station.store().pending_mail().unwrap_or(0);
    let _ = writeln!(out, "# HELP station_outbox_pending E-mail waiting to be sent.\n# TYPE station_outbox_pending gauge\nstation_outbox_pending {pending}");
    out
}

/// Binds the metrics endpoint's address (at start, so a taken port stops the daemon).
///
/// # Errors
///
/// The address cannot be bound.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics.listen {listen}: cannot listen (is the port taken?)"))
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
///
/// # Errors
///
/// The server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    station: Arc<Station>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let station = Arc::clone(&station);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(&station),
                )
            }
        }),
    );
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "metrics endpoint");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("metrics endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_error_rows_add_up_by_status() {
        let metrics = Metrics::default();
        let rows = BTreeMap::from([
            ("400 InvalidSubstitution".to_owned(), 2),
            ("508 ReadError".to_owned(), 1),
        ]);
        metrics.log_rows(&rows);
        metrics.log_rows(&BTreeMap::from([("508 ReadError".to_owned(), 4)]));
        let seen = metrics.with(|c| c.log_rows.clone());
        assert_eq!(seen.get("400 InvalidSubstitution"), Some(&2));
        assert_eq!(seen.get("508 ReadError"), Some(&5));
    }
}
