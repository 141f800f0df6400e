//! Notifications and observability: every state change becomes a numbered event (kept in the
//! database, broadcast to `stationctl events --follow`, written to the journal with structured
//! fields); job results and destruction cases become e-mail, queued in the outbox and sent by
//! [`mail::run_outbox`]; counters feed the Prometheus endpoint in [`metrics`].

pub mod mail;
pub mod metrics;

use std::sync::Arc;

use pipelines::manifest::{self, JobType, Manifest, REDACTED};
use tokio::sync::{broadcast, Notify};

use crate::config::Config;
use crate::job::ProgressCode;
use crate::store::{RunState, Store, StoredEvent};

/// The station's notifier: events, e-mail, metrics.
pub struct Notifier {
    config: Config,
    store: Store,
    events: broadcast::Sender<StoredEvent>,
    /// Wakes the outbox sender when a message is queued.
    pub wake: Arc<Notify>,
    /// The counters behind `/metrics`.
    pub metrics: metrics::Metrics,
}

/// What a job's device did in its bay, for the result's message.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The bay.
    pub bay: String,
    /// Files loaded.
    pub files: u64,
    /// Bytes loaded.
    pub bytes: u64,
    /// Why the job failed, for the operator (the customer sees the guide's message).
    pub reason: Option<String>,
}

impl Notifier {
    /// A notifier writing to `store`.
    pub fn new(config: Config, store: Store) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            config,
            store,
            events,
            wake: Arc::new(Notify::new()),
            metrics: metrics::Metrics::default(),
        }
    }

    /// Live events (those appended after this call).
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvent> {
        self.events.subscribe()
    }

    /// Records an event: database, journal, live subscribers.
    pub fn event(&self, kind: &str, body: serde_json::Value) {
        let field = |k: &str| {
            body.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let (job, bay, state) = (field("job_id"), field("bay"), field("state"));
        match self.store.append_event(kind, &body) {
            Ok(stored) => {
                tracing::info!(
                    target: "station::event",
                    seq = stored.seq,
                    event = kind,
                    job = %job,
                    bay = %bay,
                    state = %state,
                    "{}",
                    body.get("message").and_then(|v| v.as_str()).unwrap_or(kind)
                );
                let _ = self.events.send(stored);
            }
            Err(e) => tracing::error!(event = kind, error = %e, "cannot record an event"),
        }
    }

    /// A run moved to `state` (the hook in `Station::transition`).
    pub fn run_state(
        &self,
        bay: &str,
        run: i64,
        job_id: Option<&str>,
        state: RunState,
        message: &str,
    ) {
        self.event(
            "run",
            serde_json::json!({"bay": bay, "run": run, "job_id": job_id, "state": state.as_str(), "message": message}),
        );
    }

    /// A device arrived in or left `bay`.
    pub fn device(&self, bay: &str, devnode: &str, arrived: bool) {
        let state = if arrived { "arrived" } else { "removed" };
        self.event(
            "device",
            serde_json::json!({"bay": bay, "devnode": devnode, "state": state, "message": format!("device {state}: {devnode}")}),
        );
    }

    /// A job's progress code changed (the hook where job results are recorded): the event,
    /// the metrics, and for a final code the customer's e-mail.
    pub fn job_progress(&self, job_id: &str, code: ProgressCode, errors: u64, loaded: &Loaded) {
        let job = match self.store.job(job_id) {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(job = job_id, error = %e, "cannot read the job for its notification");
                return;
            }
        };
        self.event(
            "job",
            serde_json::json!({
                "job_id": job_id, "bay": loaded.bay, "state": code.as_str(), "job_kind": job.kind,
                "errors": errors, "files": loaded.files, "bytes": loaded.bytes,
                "message": code.message(Some((&job.log_bucket, &job.log_key)), errors),
            }),
        );
        if !code.is_final() {
            return;
        }
        self.metrics
            .job_result(&job.kind, code, errors, loaded.files, loaded.bytes);
        let Some(manifest) = self.manifest(&job) else {
            return;
        };
        let log = format!("s3://{}/{}", job.log_bucket, job.log_key);
        let (subject, body) = match code {
            ProgressCode::Complete | ProgressCode::SuccessWithErrors => (
                format!("Job {job_id} {}", code.as_str()),
                format!(
                    "Your {} job {job_id} is finished: {}.\n\n\
                     Status: {}\n{}\n\nFiles loaded: {}\nBytes loaded: {}\nErrors: {errors}\nLog: {log}\n\n\
                     As your manifest acknowledged (eraseDevice), the device is now erased and then returned to you.\n",
                    job.kind,
                    code.as_str(),
                    code.as_str(),
                    code.message(Some((&job.log_bucket, &job.log_key)), errors),
                    loaded.files,
                    loaded.bytes,
                ),
            ),
            _ => (
                format!("Job {job_id} failed: {}", code.as_str()),
                format!(
                    "Your {} job {job_id} failed.\n\nStatus: {}\n{}\n\nWhat to do: {}\n\n\
                     Data that was already loaded stays where it is; the job's log, if any, is at {log}.\n",
                    job.kind,
                    code.as_str(),
                    code.message(Some((&job.log_bucket, &job.log_key)), errors),
                    advice(code),
                ),
            ),
        };
        for to in &manifest.common.notification_email {
            self.queue(
                &format!("job:{job_id}:{}:{to}", code.as_str()),
                to,
                &subject,
                &body,
                &manifest,
            );
        }
    }

    /// An erase finished: verified, or failed (the device is scheduled for destruction: the
    /// customer and the operator are told).
    pub fn erase_result(
        &self,
        bay: &str,
        run: i64,
        job_id: Option<&str>,
        verified: bool,
        record: i64,
        reason: &str,
    ) {
        let outcome = if verified { "verified" } else { "failed" };
        self.metrics.erase(outcome);
        self.event(
            "erase",
            serde_json::json!({"bay": bay, "run": run, "job_id": job_id, "state": outcome, "record": record, "message": reason}),
        );
        if verified {
            return;
        }
        let job = job_id.and_then(|id| self.store.job(id).ok().flatten());
        let manifest = job.as_ref().and_then(|j| self.manifest(j));
        let id = job_id.unwrap_or("-");
        let subject =
            format!("Job {id}: the device could not be erased and is scheduled for destruction");
        let customer = format!(
            "The device of your job {id} could not be erased after the import.\n\n\
             As the AWS Import/Export guide says, a device whose data cannot be erased is scheduled for \
             destruction instead of being returned, so that your data cannot leave the facility.\n\
             Reply to this message if you have questions; it will not be shipped back.\n"
        );
        if let Some(m) = &manifest {
            for to in &m.common.notification_email {
                self.queue(&format!("destroy:{run}:{to}"), to, &subject, &customer, m);
            }
        }
        if let Some(operator) = self.config.notifications.operator_email.clone() {
            let body = format!(
                "Station {}: ERASE FAILED in bay {bay} (run {run}, job {id}, erase record {record}).\n\
                 Reason: {reason}\n\nDo not return this device: it is flagged for destruction; the customer was told.\n",
                self.config.station_name
            );
            self.queue_operator(
                &format!("destroy-op:{run}"),
                &operator,
                &subject,
                &body,
                manifest.as_ref(),
            );
        }
    }

    /// A bay's transfer made no progress for `secs` seconds (the watchdog's DeviceError).
    pub fn stuck_bay(&self, bay: &str, run: i64, job_id: &str, secs: u64) {
        self.event(
            "bay",
            serde_json::json!({"bay": bay, "run": run, "job_id": job_id, "state": "stuck", "message": format!("no progress for {secs} s")}),
        );
        if let Some(operator) = self.config.notifications.operator_email.clone() {
            let job = self.store.job(job_id).ok().flatten();
            let manifest = job.as_ref().and_then(|j| self.manifest(j));
            let body = format!(
                "Station {}: bay {bay} (run {run}, job {job_id}) made no progress for {secs} s; the job failed with DeviceError and the device will be erased.\n\
                 Check the device, its cable and the bay.\n",
                self.config.station_name
            );
            self.queue_operator(
                &format!("stuck:{run}"),
                &operator,
                &format!("Bay {bay} stuck: job {job_id} failed (DeviceError)"),
                &body,
                manifest.as_ref(),
            );
        }
    }

    fn manifest(&self, job: &crate::store::JobRecord) -> Option<Manifest> {
        let job_type = if job.job_type == "Export" {
            JobType::Export
        } else {
            JobType::Import
        };
        match manifest::parse(
            job.manifest.as_bytes(),
            job_type,
            &self.config.manifest_rules(),
        ) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(job = %job.job_id, error = %e, "stored manifest does not parse: no customer e-mail");
                None
            }
        }
    }

    fn queue_operator(
        &self,
        dedup: &str,
        to: &str,
        subject: &str,
        body: &str,
        manifest: Option<&Manifest>,
    ) {
        match manifest {
            Some(m) => self.queue(dedup, to, subject, body, m),
            None => self.queue_text(dedup, to, subject, body),
        }
    }

    /// Queues a message; the manifest's secrets are scrubbed from it first.
    fn queue(&self, dedup: &str, to: &str, subject: &str, body: &str, manifest: &Manifest) {
        let subject = scrub(subject, manifest);
        let body = scrub(body, manifest);
        self.queue_text(dedup, to, &subject, &body);
    }

    fn queue_text(&self, dedup: &str, to: &str, subject: &str, body: &str) {
        let n = &self.config.notifications;
        let text = mail::compose(&n.sender, to, subject, body, &self.config.station_name);
        match self
            .store
            .enqueue_mail(dedup, &n.sender, to, subject, &text)
        {
            Ok(true) => {
                tracing::info!(to, subject, "e-mail queued");
                self.wake.notify_one();
            }
            Ok(false) => tracing::debug!(dedup, "e-mail already queued"),
            Err(e) => tracing::error!(to, error = %e, "cannot queue an e-mail"),
        }
    }
}

/// What the customer should do after a failed job (the guide's Failed Jobs: the device is
/// erased and returned; fix the cause and send a new job).
pub fn advice(code: ProgressCode) -> &'static str {
    match code {
        ProgressCode::InvalidSignature | ProgressCode::MissingSignature => {
            "the device is returned without being loaded. Create a new job, copy its SIGNATURE file to the root of the device's file system (or, for EBS and Glacier jobs, attach the job's barcode), and ship it again."
        }
        ProgressCode::DeviceError => {
            "the device did not work reliably in our station; it is erased and returned. Check it (or use another device), create a new job and ship it again."
        }
        ProgressCode::UnsupportedDeviceType | ProgressCode::UnsupportedPowerSupply | ProgressCode::MissingDevice => {
            "the device is returned. Ship a supported device with its power supply and connectors under a new job."
        }
        ProgressCode::UnsupportedFileFormat => {
            "the device is erased and returned. Use a supported file system, create a new job and ship it again."
        }
        _ => "contact the station's operator.",
    }
}

/// `text` with every secret value of `manifest` (pinCode, trueCryptPassword) replaced by
/// `********`, and any manifest text in it redacted.
pub fn scrub(text: &str, manifest: &Manifest) -> String {
    let mut out = manifest::redact(text);
    for secret in [manifest.pin_code(), manifest.true_crypt_password()]
        .into_iter()
        .flatten()
    {
        let value = secret.expose();
        if !value.is_empty() {
            out = out.replace(value, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use base64::Engine;

    use super::*;
    use crate::job::LocationCode;
    use crate::keys::StationKey;
    use crate::store::{now, JobRecord};

    const PASSWORD: &str = "Tr0ub4dor-s3cret";

    fn notifier() -> (tempfile::TempDir, Notifier, Store) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key =
            StationKey::load_or_create(&dir.path().join("key")).unwrap_or_else(|e| panic!("{e}"));
        let store =
            Store::open(&dir.path().join("data"), Arc::new(key)).unwrap_or_else(|e| panic!("{e}"));
        let mut config = Config::default();
        config.notifications.operator_email = Some("ops@example.net".into());
        config.notifications.sender = "station@example.net".into();
        let manifest = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../pipelines/testdata/manifests/guide/tstd1.yaml"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
            + &format!("trueCryptPassword: {PASSWORD}\n");
        store
            .create_account("acme")
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .insert_job(|id| JobRecord {
                job_id: id.to_owned(),
                account_id: 1,
                job_type: "Import".into(),
                kind: "s3-import".into(),
                manifest: manifest.clone(),
                manifest_addendum: None,
                location: LocationCode::AtAWS,
                progress: ProgressCode::InProgress,
                error_count: 0,
                log_bucket: "myawsbucket".into(),
                log_key: format!("import-log-{id}"),
                signature: "s".into(),
                carrier: None,
                tracking_number: None,
                created_at: now(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        (dir, Notifier::new(config, store.clone()), store)
    }

    /// (recipient, subject, decoded body) of every queued message.
    fn queued(store: &Store) -> Vec<(String, String, String)> {
        store
            .due_mail(now() + 1, 100)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|m| {
                let encoded = m
                    .message
                    .split("\r\n\r\n")
                    .nth(1)
                    .unwrap_or("")
                    .replace("\r\n", "");
                let body = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap_or_else(|e| panic!("{e}"));
                for secret in ["4321", PASSWORD] {
                    assert!(!m.message.contains(secret), "{}", m.message);
                    assert!(!m.subject.contains(secret));
                }
                (
                    m.recipient,
                    m.subject,
                    String::from_utf8_lossy(&body).into_owned(),
                )
            })
            .collect()
    }

    fn job_id(store: &Store) -> String {
        store.recent_jobs(1).unwrap_or_else(|e| panic!("{e}"))[0]
            .job_id
            .clone()
    }

    #[test]
    fn results_and_destruction_are_queued_once_without_secrets() {
        let (_dir, n, store) = notifier();
        let job = job_id(&store);
        let loaded = Loaded {
            bay: "sdb".into(),
            files: 6,
            bytes: 35331,
            reason: None,
        };
        n.job_progress(&job, ProgressCode::InProgress, 0, &loaded);
        assert!(queued(&store).is_empty(), "no mail for InProgress");
        n.job_progress(&job, ProgressCode::Complete, 0, &loaded);
        n.job_progress(&job, ProgressCode::Complete, 0, &loaded);
        let mails = queued(&store);
        assert_eq!(
            mails.len(),
            2,
            "one per notificationEmail address, once: {mails:?}"
        );
        assert_eq!(mails[0].0, "john.doe@example.com");
        assert_eq!(mails[1].0, "jane.roe@example.com");
        assert!(mails[0]
            .2
            .contains(&format!("s3://myawsbucket/import-log-{job}")));
        assert!(mails[0].2.contains("Bytes loaded: 35331"), "{}", mails[0].2);

        // A reason that carries a secret (an error message quoting the manifest) is scrubbed.
        n.erase_result(
            "sdb",
            7,
            Some(&job),
            false,
            3,
            &format!("write failed; trueCryptPassword: {PASSWORD}"),
        );
        let mails = queued(&store);
        assert_eq!(mails.len(), 5, "{mails:?}");
        let ops: Vec<_> = mails.iter().filter(|m| m.0 == "ops@example.net").collect();
        assert_eq!(ops.len(), 1);
        assert!(ops[0].1.contains("scheduled for destruction"));
        assert!(
            ops[0].2.contains("ERASE FAILED in bay sdb (run 7"),
            "{}",
            ops[0].2
        );
        assert!(ops[0].2.contains(REDACTED), "{}", ops[0].2);
        assert_eq!(
            mails.iter().filter(|m| m.1.contains("destruction")).count(),
            3
        );
        assert_eq!(n.metrics.with(|c| c.erases.get("failed").copied()), Some(1));
    }

    #[test]
    fn a_failure_says_what_to_do() {
        let (_dir, n, store) = notifier();
        let job = job_id(&store);
        n.job_progress(&job, ProgressCode::MissingSignature, 0, &Loaded::default());
        let mails = queued(&store);
        assert_eq!(mails.len(), 2);
        assert_eq!(mails[0].1, format!("Job {job} failed: MissingSignature"));
        assert!(
            mails[0].2.contains("The SIGNATURE file was missing."),
            "{}",
            mails[0].2
        );
        assert!(
            mails[0]
                .2
                .contains("What to do: the device is returned without being loaded"),
            "{}",
            mails[0].2
        );
    }

    #[test]
    fn scrub_removes_pin_and_password_values_and_manifest_lines() {
        let (_dir, n, store) = notifier();
        let job = store.recent_jobs(1).unwrap_or_else(|e| panic!("{e}"))[0].clone();
        let manifest = n.manifest(&job).unwrap_or_else(|| panic!("manifest"));
        let text = format!("pin 4321, password {PASSWORD}\npinCode: 4321\n");
        let clean = scrub(&text, &manifest);
        assert!(
            !clean.contains("4321") && !clean.contains(PASSWORD),
            "{clean}"
        );
    }

    #[test]
    fn events_are_numbered_stored_and_broadcast() {
        let (_dir, n, store) = notifier();
        let mut live = n.subscribe();
        n.device("sdb", "/dev/sdb", true);
        n.run_state(
            "sdb",
            1,
            Some("ABCDE"),
            RunState::Transferring,
            "loading job ABCDE",
        );
        let stored = store.events_since(0, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored.len(), 2);
        assert!(stored[0].seq < stored[1].seq);
        assert_eq!(stored[1].body["state"], "transferring");
        assert_eq!(stored[1].body["job_id"], "ABCDE");
        assert_eq!(live.try_recv().map(|e| e.seq).ok(), Some(stored[0].seq));
        assert_eq!(
            store.events_since(stored[0].seq, 10).map(|e| e.len()).ok(),
            Some(1)
        );
    }

    #[test]
    fn the_outbox_retries_later_and_marks_sent() {
        let (_dir, n, store) = notifier();
        n.stuck_bay("sdb", 4, &job_id(&store), 600);
        let due = store.due_mail(now(), 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(due.len(), 1);
        store
            .mail_failed(due[0].id, "connection refused", now() + 100)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(store
            .due_mail(now(), 10)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty());
        assert_eq!(store.pending_mail().ok(), Some(1));
        store.retry_mail_now().unwrap_or_else(|e| panic!("{e}"));
        let again = store.due_mail(now(), 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again[0].attempts, 1);
        store
            .mail_sent(again[0].id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.pending_mail().ok(), Some(0));
    }
}
