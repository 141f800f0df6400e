//! The daemon's side of the operator console: the Unix socket (mode 0660, the configured
//! group), one task per connection, every action audited with the peer's uid (SO_PEERCRED).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{UnixListener, UnixStream};

use super::{read_frame, write_frame, Reply, Request};
use crate::job::{LocationCode, ProgressCode};
use crate::orchestrator::{BayView, Station};
use crate::store::RunState;

/// Binds the console socket at `path`: a stale socket (no daemon answers on it) is replaced,
/// a live one is not.
///
/// # Errors
///
/// Another daemon answers on the socket, or the socket cannot be created.
pub fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{}: another stationd is answering on this console socket; stop it first",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| {
            format!("{}: cannot remove the stale console socket", path.display())
        })?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the socket's directory", dir.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("{}: cannot create the console socket", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("{}: cannot set mode 0660", path.display()))?;
    if let Some(group) = group {
        let gid = group_id(group).with_context(|| {
            format!("console.group `{group}` is not a group on this machine (see /etc/group)")
        })?;
        std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
            format!(
                "{}: cannot give the socket to group {group}",
                path.display()
            )
        })?;
    }
    Ok(listener)
}

/// The gid of `name` from /etc/group.
fn group_id(name: &str) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string("/etc/group").context("cannot read /etc/group")?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let gid = f.nth(1)?.parse().ok()?;
            (n == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| anyhow::anyhow!("no group `{name}`"))
}

/// Serves the console until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    station: Arc<Station>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let station = Arc::clone(&station);
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, station).await {
                            tracing::debug!(error = %e, "console connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "console accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

async fn connection(mut stream: UnixStream, station: Arc<Station>) -> anyhow::Result<()> {
    let uid = stream.peer_cred().context("SO_PEERCRED")?.uid();
    let request: Request = match read_frame(&mut stream).await {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(()),
        Err(e) => {
            write_frame(&mut stream, &Reply::error(format!("{e}"))).await?;
            return Ok(());
        }
    };
    if let Request::Watch = request {
        let mut changes = station.subscribe();
        loop {
            write_frame(&mut stream, &status(&station)).await?;
            // Redraw on change, and every second for live rates.
            let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
        }
    }
    if let Request::Events { since, follow } = request {
        return events(&mut stream, &station, since, follow).await;
    }
    let reply = handle(&station, &request);
    if request.is_action() {
        let detail = format!(
            "{} -> {}",
            serde_json::to_string(&request).unwrap_or_default(),
            if reply.ok { "ok" } else { "refused" }
        );
        if let Err(e) = station.store().audit(uid, request.name(), &detail) {
            tracing::error!(error = %e, "cannot write the audit trail");
        }
        tracing::info!(
            uid,
            action = request.name(),
            ok = reply.ok,
            "operator action"
        );
    }
    write_frame(&mut stream, &reply).await?;
    Ok(())
}

/// Streams the event log after `since`, then (with `follow`) live events.
async fn events(
    stream: &mut UnixStream,
    station: &Station,
    mut since: i64,
    follow: bool,
) -> anyhow::Result<()> {
    // Subscribe before reading the backlog, so nothing falls between the two.
    let mut live = station.notifier().subscribe();
    loop {
        let batch = station
            .store()
            .events_since(since, super::EVENT_BATCH)
            .context("station database")?;
        if let Some(last) = batch.last() {
            since = last.seq;
        }
        let full = batch.len() == super::EVENT_BATCH as usize;
        if !batch.is_empty() {
            write_frame(stream, &event_reply(&batch)).await?;
        }
        if full {
            continue;
        }
        if !follow {
            return Ok(());
        }
        break;
    }
    loop {
        match live.recv().await {
            Ok(event) if event.seq <= since => {}
            Ok(event) => {
                since = event.seq;
                write_frame(stream, &event_reply(std::slice::from_ref(&event))).await?;
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Too slow a reader: catch up from the database.
                let batch = station
                    .store()
                    .events_since(since, super::EVENT_BATCH)
                    .context("station database")?;
                if let Some(last) = batch.last() {
                    since = last.seq;
                    write_frame(stream, &event_reply(&batch)).await?;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

fn event_reply(batch: &[crate::store::StoredEvent]) -> Reply {
    let mut text = String::new();
    for e in batch {
        text.push_str(&event_line(e));
        text.push('\n');
    }
    Reply::ok(text, serde_json::json!({ "events": batch }))
}

/// One event as a JSON line: sequence number, time, kind, then the event's own fields.
fn event_line(e: &crate::store::StoredEvent) -> String {
    let mut line = serde_json::json!({"seq": e.seq, "at": e.at, "kind": e.kind});
    if let (Some(obj), Some(body)) = (line.as_object_mut(), e.body.as_object()) {
        for (k, v) in body {
            // The envelope's fields win over a body field of the same name.
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    line.to_string()
}

fn status(station: &Station) -> Reply {
    let bays = station.bays();
    let mut text = String::new();
    if bays.is_empty() {
        text.push_str("no devices in the bays\n");
    }
    for b in &bays {
        text.push_str(&bay_line(b));
    }
    Reply::ok(text, serde_json::json!({ "bays": bays }))
}

fn bay_line(b: &BayView) -> String {
    let mut line = format!(
        "{:<8} {:<13} {:<8} {}\n",
        b.bay,
        b.state.as_str(),
        b.job_id.as_deref().unwrap_or("-"),
        b.device
    );
    if matches!(b.state, RunState::Transferring | RunState::Erasing) && b.planned_bytes > 0 {
        let pct = b.bytes as f64 * 100.0 / b.planned_bytes as f64;
        line.push_str(&format!(
            "         {:.1}% of {:.1} MB, {}/{} files, {:.1} MB/s, ETA {}\n",
            pct,
            b.planned_bytes as f64 / 1e6,
            b.files,
            b.planned_files,
            b.rate_mb_s,
            b.eta_secs
                .map_or("-".to_owned(), |s| format!("{}m{:02}s", s / 60, s % 60))
        ));
    }
    if !b.message.is_empty() {
        line.push_str(&format!("         {}\n", b.message));
    }
    line
}

const OPERATOR_CODES: [ProgressCode; 3] = [
    ProgressCode::MissingDevice,
    ProgressCode::UnsupportedPowerSupply,
    ProgressCode::UnsupportedDeviceType,
];

fn handle(station: &Arc<Station>, request: &Request) -> Reply {
    let store = station.store();
    let db = |e: crate::store::StoreError| Reply::error(format!("station database: {e}"));
    match request {
        Request::Status | Request::Watch => status(station),
        Request::Events { .. } => Reply::error("events are streamed"),
        Request::Scan { bay, text } => match station.scan(bay, text) {
            Ok(()) => Reply::ok(
                format!("bay {bay}: barcode received\n"),
                serde_json::json!({"bay": bay}),
            ),
            Err(e) => Reply::error(e),
        },
        Request::Unlock { bay } => match station.unlock(bay) {
            Ok(()) => Reply::ok(
                format!("bay {bay}: unlocked\n"),
                serde_json::json!({"bay": bay}),
            ),
            Err(e) => Reply::error(e),
        },
        Request::Jobs => match store.recent_jobs(200) {
            Ok(jobs) => {
                let mut text = String::new();
                let mut data = Vec::new();
                for j in &jobs {
                    text.push_str(&format!(
                        "{:<6} {:<15} {:<12} {:<18} errors {}\n",
                        j.job_id,
                        j.kind,
                        j.location.as_str(),
                        j.progress.as_str(),
                        j.error_count
                    ));
                    data.push(job_json(j));
                }
                Reply::ok(text, serde_json::json!({ "jobs": data }))
            }
            Err(e) => db(e),
        },
        Request::JobShow { job_id } => {
            let job = match store.job(job_id) {
                Ok(Some(j)) => j,
                Ok(None) => {
                    return Reply::error(format!("no job {job_id} (stationctl jobs lists them)"))
                }
                Err(e) => return db(e),
            };
            let runs = match store.runs(Some(job_id), 50) {
                Ok(r) => r,
                Err(e) => return db(e),
            };
            let mut text = format!(
                "job {}  {}  {}  {}  errors {}\nlog s3://{}/{}\n",
                job.job_id,
                job.kind,
                job.location.as_str(),
                job.progress.as_str(),
                job.error_count,
                job.log_bucket,
                job.log_key
            );
            let mut runs_json = Vec::new();
            for r in &runs {
                text.push_str(&format!(
                    "run {} in bay {}: {} {}\n",
                    r.id,
                    r.bay,
                    r.state.as_str(),
                    r.message
                ));
                let transitions = store.transitions(r.id).unwrap_or_default();
                for (at, state, message) in &transitions {
                    text.push_str(&format!("    {at} {state} {message}\n"));
                }
                runs_json.push(serde_json::json!({
                    "run": r,
                    "transitions": transitions
                        .iter()
                        .map(|(at, state, message)| serde_json::json!({"at": at, "state": state, "message": message}))
                        .collect::<Vec<_>>(),
                }));
            }
            let mut data = job_json(&job);
            data["runs"] = serde_json::Value::Array(runs_json);
            Reply::ok(text, data)
        }
        Request::EraseRecords => match store.erase_records(200) {
            Ok(records) => {
                let mut text = String::new();
                for r in &records {
                    text.push_str(&format!(
                        "{:<5} job {:<6} {} written {} verified {} {}\n",
                        r.id,
                        r.job_id.as_deref().unwrap_or("-"),
                        r.result,
                        r.bytes_written,
                        r.bytes_verified,
                        r.method
                    ));
                }
                Reply::ok(text, serde_json::json!({ "erase_records": records }))
            }
            Err(e) => db(e),
        },
        Request::Receive { job_id, bay } => {
            let job = match store.job(job_id) {
                Ok(Some(j)) => j,
                Ok(None) => {
                    return Reply::error(format!("no job {job_id}: check the package's label"))
                }
                Err(e) => return db(e),
            };
            if matches!(job.progress, ProgressCode::Canceled | ProgressCode::Expired) {
                return Reply::error(format!(
                    "job {job_id} is {}: do not load this device; return it",
                    job.progress.as_str()
                ));
            }
            if let Err(e) = store.set_location(job_id, LocationCode::AtAWS) {
                return db(e);
            }
            if let Some(bay) = bay {
                station.expect(bay, &job);
            }
            Reply::ok(
                format!("job {job_id}: received (AtAWS)\n"),
                serde_json::json!({"job_id": job_id, "location": "AtAWS"}),
            )
        }
        Request::Fail { job_id, code } => {
            let Some(code) = OPERATOR_CODES.into_iter().find(|c| c.as_str() == code) else {
                return Reply::error(format!(
                    "--code {code}: use MissingDevice, UnsupportedPowerSupply or UnsupportedDeviceType"
                ));
            };
            match store.job(job_id) {
                Ok(Some(_)) => {}
                Ok(None) => return Reply::error(format!("no job {job_id}")),
                Err(e) => return db(e),
            }
            if let Err(e) = store.set_progress(job_id, code) {
                return db(e);
            }
            station
                .notifier()
                .job_progress(job_id, code, 0, &crate::notify::Loaded::default());
            Reply::ok(
                format!("job {job_id}: {}\n", code.as_str()),
                serde_json::json!({"job_id": job_id, "progress": code.as_str()}),
            )
        }
        Request::Ship {
            job_id,
            carrier,
            tracking,
        } => {
            let job = match store.job(job_id) {
                Ok(Some(j)) => j,
                Ok(None) => return Reply::error(format!("no job {job_id}")),
                Err(e) => return db(e),
            };
            if job.location == LocationCode::NotReceived {
                return Reply::error(format!(
                    "job {job_id}'s device was never received here (NotReceived): nothing to ship"
                ));
            }
            if carrier.trim().is_empty() || tracking.trim().is_empty() {
                return Reply::error("--carrier and --tracking must not be empty");
            }
            if let Err(e) = store.set_shipped(job_id, carrier, tracking) {
                return db(e);
            }
            Reply::ok(
                format!("job {job_id}: Returned via {carrier}, tracking {tracking}\n"),
                serde_json::json!({"job_id": job_id, "location": "Returned", "carrier": carrier, "tracking_number": tracking}),
            )
        }
    }
}

fn job_json(j: &crate::store::JobRecord) -> serde_json::Value {
    serde_json::json!({
        "job_id": j.job_id,
        "job_type": j.job_type,
        "kind": j.kind,
        "location": j.location.as_str(),
        "progress": j.progress.as_str(),
        "error_count": j.error_count,
        "log_bucket": j.log_bucket,
        "log_key": j.log_key,
        "carrier": j.carrier,
        "tracking_number": j.tracking_number,
    })
}
