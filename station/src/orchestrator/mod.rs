//! The orchestrator: one worker per bay takes a device from udev's report through
//! identification and policy, authentication (SIGNATURE file or scanned barcode), its job's
//! pipeline, and the erase, persisting every transition so a restarted daemon resumes where
//! the last one stopped.
//!
//! `worker` carries out one device's run; `auth` reads its SIGNATURE.
//!
//! A device stays in its bay, finished or not, until udev says it went away: events about a
//! device that is already in a bay (our own writes make udev report `change`) start nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drivers::identity::DeviceIdentity;
use drivers::policy::{PolicyLimits, Refusal, SizeLimit};
use drivers::udev::{DevType, DeviceAction, DeviceEvent};
use pipelines::manifest::{self, JobKind, JobManifest, JobType, Manifest};
use pipelines::s3_import::Progress;
use pipelines::signature::{self, Presented};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::config::{Bus, Config};
use crate::job::{LocationCode, ProgressCode};
use crate::load::{load_job, LoadResult};
use crate::notify::{Loaded, Notifier};
use crate::store::{JobJournal, JobRecord, RunRecord, RunState, Store};

mod auth;
mod worker;

use auth::Auth;
use worker::Worker;

/// What the operator sees of one bay.
#[derive(Debug, Clone, Serialize)]
pub struct BayView {
    /// The bay's name (the kernel's name of its disk: `sdb`, `loop3`).
    pub bay: String,
    /// The device node.
    pub devnode: String,
    /// How the operator recognises the device.
    pub device: String,
    /// The run's id.
    pub run_id: Option<i64>,
    /// The job, once authenticated.
    pub job_id: Option<String>,
    /// Where the device is in its run.
    pub state: RunState,
    /// What the operator should know or do.
    pub message: String,
    /// Files the transfer found.
    pub planned_files: u64,
    /// Files started.
    pub files: u64,
    /// Bytes the transfer (or the erase) has to move.
    pub planned_bytes: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Throughput since the phase began, MB/s.
    pub rate_mb_s: f64,
    /// Seconds left at that rate.
    pub eta_secs: Option<u64>,
}

impl BayView {
    /// A bay in `state` with no run and no progress yet.
    fn new(bay: &str, devnode: String, device: String, state: RunState, message: String) -> Self {
        Self {
            bay: bay.to_owned(),
            devnode,
            device,
            run_id: None,
            job_id: None,
            state,
            message,
            planned_files: 0,
            files: 0,
            planned_bytes: 0,
            bytes: 0,
            rate_mb_s: 0.0,
            eta_secs: None,
        }
    }
}

/// Live progress of one bay: the pipeline's [`Progress`] and the watchdog's clock.
pub struct BayProgress {
    start: Mutex<Instant>,
    planned_files: AtomicU64,
    files: AtomicU64,
    planned_bytes: AtomicU64,
    bytes: AtomicU64,
    /// Milliseconds after `start` of the last progress.
    last_ms: AtomicU64,
    changed: watch::Sender<u64>,
}

impl BayProgress {
    fn new(changed: watch::Sender<u64>) -> Self {
        Self {
            start: Mutex::new(Instant::now()),
            planned_files: AtomicU64::new(0),
            files: AtomicU64::new(0),
            planned_bytes: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            changed,
        }
    }

    fn started(&self) -> Instant {
        *self.start.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new phase (transfer, erase) of `bytes` bytes.
    pub fn reset(&self, bytes: u64) {
        *self.start.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.planned_files.store(0, Ordering::Relaxed);
        self.files.store(0, Ordering::Relaxed);
        self.planned_bytes.store(bytes, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.last_ms.store(0, Ordering::Relaxed);
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started().elapsed().as_millis()).unwrap_or(u64::MAX);
        let before = self.last_ms.swap(ms, Ordering::Relaxed);
        // Console watchers hear of progress at most twice a second.
        if ms / 500 != before / 500 {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Sets the bytes done so far (the erase reports totals, not increments).
    pub fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        self.touch();
    }

    /// How long since the last progress.
    fn idle(&self) -> Duration {
        let now = self.started().elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    fn fill(&self, view: &mut BayView) {
        view.planned_files = self.planned_files.load(Ordering::Relaxed);
        view.files = self.files.load(Ordering::Relaxed);
        view.planned_bytes = self.planned_bytes.load(Ordering::Relaxed);
        view.bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.started().elapsed().as_secs_f64().max(0.001);
        view.rate_mb_s = view.bytes as f64 / secs / 1e6;
        let rate = view.bytes as f64 / secs;
        view.eta_secs = (rate > 0.0 && view.planned_bytes > view.bytes)
            .then(|| ((view.planned_bytes - view.bytes) as f64 / rate) as u64);
    }
}

impl Progress for BayProgress {
    fn planned(&self, files: u64, bytes: u64) {
        self.planned_files.store(files, Ordering::Relaxed);
        self.planned_bytes.store(bytes, Ordering::Relaxed);
        self.touch();
    }
    fn file(&self, _path: &str) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }
    fn bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.touch();
    }
}

/// One bay's device and its worker.
struct Bay {
    view: BayView,
    progress: Arc<BayProgress>,
    /// Set when udev says the device went away; the worker stops at its next step.
    pulled: Arc<AtomicBool>,
    pulled_tx: watch::Sender<bool>,
}

/// The station: bays, their workers, and what the console asks of them.
pub struct Station {
    config: Config,
    store: Store,
    endpoint_override: Option<String>,
    bays: Mutex<BTreeMap<String, Bay>>,
    /// Bumped on every change, for `stationctl watch`.
    changed: watch::Sender<u64>,
    /// Bays waiting for a barcode, with where to send it.
    scans: Mutex<HashMap<String, oneshot::Sender<String>>>,
    /// Bays the operator said a job's device goes into (`receive JOBID --bay BAY`).
    expected: Mutex<HashMap<String, String>>,
    /// Bays waiting for the operator to unlock a PIN-pad device.
    unlocks: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// What the console shows for a bay whose PIN-pad device is not unlocked yet (it shows no
    /// disk to udev until it is).
    locked: Mutex<BTreeMap<String, BayView>>,
    /// Events, e-mail and metrics.
    notifier: Notifier,
}

/// Why a worker stopped before its run was final.
enum Stop {
    /// The device went away; reinserting it resumes.
    Pulled,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Station {
    /// A station with no devices yet.
    pub fn new(config: Config, store: Store, endpoint_override: Option<String>) -> Arc<Self> {
        let (changed, _) = watch::channel(0);
        let notifier = Notifier::new(config.clone(), store.clone());
        Arc::new(Self {
            notifier,
            config,
            store,
            endpoint_override,
            bays: Mutex::new(BTreeMap::new()),
            changed,
            scans: Mutex::new(HashMap::new()),
            expected: Mutex::new(HashMap::new()),
            unlocks: Mutex::new(HashMap::new()),
            locked: Mutex::new(BTreeMap::new()),
        })
    }

    /// The job store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Events, e-mail and metrics.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A receiver that changes whenever a bay does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every bay, by name.
    pub fn bays(&self) -> Vec<BayView> {
        let mut views: BTreeMap<String, BayView> = lock(&self.locked).clone();
        for (name, b) in lock(&self.bays).iter() {
            let mut view = b.view.clone();
            if matches!(view.state, RunState::Transferring | RunState::Erasing) {
                b.progress.fill(&mut view);
            }
            views.insert(name.clone(), view);
        }
        views.into_values().collect()
    }

    fn update(&self, bay: &str, f: impl FnOnce(&mut BayView)) {
        if let Some(b) = lock(&self.bays).get_mut(bay) {
            f(&mut b.view);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Moves `run` to `state` in the database and on the console.
    fn transition(&self, bay: &str, run: i64, state: RunState, message: &str) {
        if let Err(e) = self.store.set_run_state(run, state, message) {
            tracing::error!(run, error = %e, "cannot record a transition");
        }
        tracing::info!(bay, run, state = state.as_str(), "{message}");
        self.update(bay, |v| {
            v.state = state;
            v.message = message.to_owned();
        });
        let job = lock(&self.bays)
            .get(bay)
            .and_then(|b| b.view.job_id.clone());
        self.notifier
            .run_state(bay, run, job.as_deref(), state, message);
    }

    /// Handles one udev event: a new disk gets a worker, a disk that went away stops its own.
    pub fn handle_event(self: &Arc<Self>, event: DeviceEvent) {
        if event.devtype != DevType::Disk {
            return;
        }
        let bay = event.sysname.clone();
        // A loop device without a backing file (detached) reports `change` with size 0.
        let gone = event.action == DeviceAction::Remove
            || (event.action == DeviceAction::Change && disk_size(&event.syspath) == Some(0));
        if gone {
            let removed = lock(&self.bays).remove(&bay);
            if let Some(b) = removed {
                b.pulled.store(true, Ordering::SeqCst);
                let _ = b.pulled_tx.send(true);
                tracing::info!(bay, devnode = %event.devnode.display(), "device removed");
                self.notifier
                    .device(&bay, &event.devnode.display().to_string(), false);
                lock(&self.scans).remove(&bay);
                self.changed.send_modify(|n| *n += 1);
            }
            return;
        }
        if disk_size(&event.syspath).unwrap_or(0) == 0 {
            return; // An empty reader or an unattached loop device: nothing to load.
        }
        let is_loop = event.sysname.starts_with("loop");
        if is_loop && !self.config.devices.allow_loop_devices {
            return; // Loop devices are never bays unless the configuration says so.
        }
        if is_loop && self.own_loop_device(&event.syspath) {
            return; // An export's own plumbing (its container's plaintext), not a bay.
        }
        let (pulled_tx, _) = watch::channel(false);
        {
            let mut bays = lock(&self.bays);
            if bays.contains_key(&bay) {
                return;
            }
            bays.insert(
                bay.clone(),
                Bay {
                    view: BayView::new(
                        &bay,
                        event.devnode.display().to_string(),
                        event.devnode.display().to_string(),
                        RunState::Detected,
                        "identifying".into(),
                    ),
                    progress: Arc::new(BayProgress::new(self.changed.clone())),
                    pulled: Arc::new(AtomicBool::new(false)),
                    pulled_tx,
                },
            );
        }
        self.changed.send_modify(|n| *n += 1);
        let station = Arc::clone(self);
        let devnode = event.devnode.clone();
        tokio::spawn(async move {
            station.work(&bay, &devnode).await;
        });
    }

    /// Whether the loop device at `syspath` is backed by a file in the station's data
    /// directory: a TrueCrypt container's plaintext that an export set up.
    fn own_loop_device(&self, syspath: &Path) -> bool {
        drivers::identity::loop_backing_file(syspath)
            .is_some_and(|file| file.starts_with(&self.config.data_dir))
    }

    fn bay_handles(
        &self,
        bay: &str,
    ) -> Option<(Arc<BayProgress>, Arc<AtomicBool>, watch::Receiver<bool>)> {
        lock(&self.bays).get(bay).map(|b| {
            (
                Arc::clone(&b.progress),
                Arc::clone(&b.pulled),
                b.pulled_tx.subscribe(),
            )
        })
    }

    /// The worker of one bay: identify, check policy, authenticate (or resume), load, erase.
    async fn work(self: &Arc<Self>, bay: &str, devnode: &Path) {
        let Some((progress, pulled, pulled_rx)) = self.bay_handles(bay) else {
            return;
        };
        let path = devnode.to_owned();
        let identity = match tokio::task::spawn_blocking(move || drivers::identity::identify(&path))
            .await
        {
            Ok(Ok(identity)) => identity,
            Ok(Err(e)) => {
                self.update(bay, |v| {
                    v.state = RunState::Refused;
                    v.message =
                        format!("cannot identify the device: {e}; check it and plug it in again");
                });
                tracing::warn!(bay, error = %e, "cannot identify");
                return;
            }
            Err(e) => {
                tracing::error!(bay, error = %e, "identification panicked");
                return;
            }
        };
        // The station's own disks and things that are not disks are not bays: nothing to show.
        if let Err(refusal @ (Refusal::SystemDisk { .. } | Refusal::NotStorage { .. })) =
            drivers::policy::check(&identity, &self.limits(None))
        {
            tracing::info!(bay, "not a bay: {refusal}");
            lock(&self.bays).remove(bay);
            self.changed.send_modify(|n| *n += 1);
            return;
        }
        let key = identity_key(&identity);
        let details = identity_json(&identity);
        let described = identity.describe();
        self.update(bay, |v| v.device = described.clone());
        self.notifier
            .device(bay, &devnode.display().to_string(), true);
        let device_id = match self.store.record_device(
            &key,
            &devnode.display().to_string(),
            bay,
            &details.to_string(),
        ) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(bay, error = %e, "cannot record the device");
                return;
            }
        };
        let resumed = match self.store.unfinished_run(&key) {
            Ok(run) => run,
            Err(e) => {
                tracing::error!(bay, error = %e, "cannot look up interrupted runs");
                None
            }
        };
        let run = match &resumed {
            Some(run) => {
                if let Err(e) = self.store.set_run_device(run.id, device_id, bay, None) {
                    tracing::error!(run = run.id, error = %e, "cannot move the run to its bay");
                }
                run.id
            }
            None => match self.store.start_run(device_id, &key, bay) {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!(bay, error = %e, "cannot start a run");
                    return;
                }
            },
        };
        self.update(bay, |v| {
            v.run_id = Some(run);
            v.job_id = resumed.as_ref().and_then(|r| r.job_id.clone());
        });

        // Policy before anything else reads further: a refused device is never written.
        if let Err(refusal) = drivers::policy::check(&identity, &self.limits(None)) {
            self.transition(
                bay,
                run,
                RunState::Refused,
                &format!("{refusal}; the device goes back as it came"),
            );
            return;
        }
        self.transition(bay, run, RunState::Identified, &described);
        if lock(&self.locked).remove(bay).is_some() {
            self.transition(
                bay,
                run,
                RunState::Unlocked,
                "the operator unlocked the PIN-pad device",
            );
        }

        let ctx = Worker {
            station: Arc::clone(self),
            bay: bay.to_owned(),
            devnode: devnode.to_owned(),
            run,
            identity,
            details,
            progress,
            pulled,
            pulled_rx,
        };
        let (job, resume_at) = match resumed.and_then(|r| Some((r.job_id.clone()?, r))) {
            Some((job_id, r)) if !matches!(r.state, RunState::Detected | RunState::Identified) => {
                match self.store.job(&job_id) {
                    Ok(Some(job)) => {
                        tracing::info!(bay, run, job = %job_id, state = r.state.as_str(), "resuming an interrupted run");
                        (job, Some(r))
                    }
                    _ => {
                        ctx.refuse(&format!(
                            "the interrupted run's job {job_id} is not in the station database"
                        ));
                        return;
                    }
                }
            }
            _ => match ctx.authenticate().await {
                Some(Auth {
                    job,
                    unusable: None,
                }) => (job, None),
                Some(Auth {
                    job,
                    unusable: Some(why),
                }) => {
                    ctx.set_progress(&job.job_id, ProgressCode::UnsupportedFileFormat);
                    ctx.transition(
                        RunState::Failed,
                        &format!("UnsupportedFileFormat: {why}; no import: the device will be erased and returned"),
                    );
                    if let Err(Stop::Pulled) = ctx.erase(&job, None).await {
                        tracing::warn!(bay, run, "device pulled during the erase");
                    }
                    return;
                }
                None => return,
            },
        };
        if let Err(Stop::Pulled) = ctx.carry_out(job, resume_at).await {
            let state = self
                .store
                .run(run)
                .ok()
                .flatten()
                .map_or(RunState::Transferring, |r| r.state);
            // The run keeps its state, so reinserting the device resumes that phase.
            if let Err(e) = self.store.set_run_state(
                run,
                state,
                "the device was pulled; plug it in again to resume",
            ) {
                tracing::error!(run, error = %e, "cannot record the interruption");
            }
            tracing::warn!(bay, run, "device pulled mid-run");
        }
    }

    /// The policy for a device before its job is known (the largest limit of any job kind),
    /// or for `kind`.
    fn limits(&self, kind: Option<JobKind>) -> PolicyLimits {
        let d = &self.config.devices;
        let size_limit = match kind {
            Some(JobKind::GlacierImport) => SizeLimit {
                max_bytes: d.max_bytes_glacier,
                applies_to: "Glacier jobs".into(),
            },
            Some(JobKind::EbsImport) => SizeLimit {
                max_bytes: d.max_bytes_ebs,
                applies_to: "EBS jobs".into(),
            },
            Some(JobKind::S3Import | JobKind::S3Export) => SizeLimit {
                max_bytes: d.max_bytes_s3,
                applies_to: "S3 jobs".into(),
            },
            None => SizeLimit {
                max_bytes: d.max_bytes_s3.max(d.max_bytes_ebs).max(d.max_bytes_glacier),
                applies_to: "any job".into(),
            },
        };
        PolicyLimits {
            allowed_buses: d
                .allowed_buses
                .iter()
                .map(|b| match b {
                    Bus::Usb => drivers::identity::Bus::Usb,
                    Bus::Ata => drivers::identity::Bus::Sata,
                    Bus::Scsi => drivers::identity::Bus::Scsi,
                    Bus::Nvme => drivers::identity::Bus::Nvme,
                })
                .collect(),
            allow_loop: d.allow_loop_devices,
            size_limit: Some(size_limit),
        }
    }

    /// A barcode scanned for `bay`.
    ///
    /// # Errors
    ///
    /// No device in that bay is waiting for a barcode.
    pub fn scan(&self, bay: &str, text: &str) -> Result<(), String> {
        match lock(&self.scans).remove(bay) {
            Some(tx) => tx
                .send(text.to_owned())
                .map_err(|_| format!("bay {bay} stopped waiting for a barcode")),
            None => Err(format!(
                "no device in bay {bay} is waiting for a barcode (stationctl status shows the bays)"
            )),
        }
    }

    /// The operator unlocked the PIN-pad device in `bay`.
    ///
    /// # Errors
    ///
    /// No device in that bay is waiting to be unlocked.
    pub fn unlock(&self, bay: &str) -> Result<(), String> {
        match lock(&self.unlocks).remove(bay) {
            Some(tx) => tx
                .send(())
                .map_err(|_| format!("bay {bay} stopped waiting to be unlocked")),
            None => Err(format!("no device in bay {bay} is waiting to be unlocked")),
        }
    }

    /// The operator says job `job_id`'s device goes into `bay`. A job with a `pinCode` has a
    /// PIN-pad device: the console shows the PIN for that bay and waits for `stationctl unlock
    /// BAY`, then for the unlocked device to appear; either not happening in
    /// `bays.unlock_timeout_secs` is a DeviceError.
    pub fn expect(self: &Arc<Self>, bay: &str, job: &JobRecord) {
        lock(&self.expected).insert(bay.to_owned(), job.job_id.clone());
        let rules = self.config.manifest_rules();
        let job_type = if job.job_type == "Export" {
            JobType::Export
        } else {
            JobType::Import
        };
        let Ok(manifest) = manifest::parse(job.manifest.as_bytes(), job_type, &rules) else {
            return;
        };
        let Some(pin) = manifest.pin_code() else {
            return;
        };
        if lock(&self.bays).contains_key(bay) {
            return; // Already unlocked and in the bay.
        }
        let timeout = Duration::from_secs(self.config.bays.unlock_timeout_secs);
        let mut view = BayView::new(
            bay,
            String::new(),
            "PIN-pad device (locked)".to_owned(),
            RunState::Detected,
            format!(
                "PIN-pad device of job {}: type PIN {} on its keypad, then run stationctl unlock {bay} (within {} s)",
                job.job_id,
                pin.expose(),
                timeout.as_secs()
            ),
        );
        view.job_id = Some(job.job_id.clone());
        lock(&self.locked).insert(bay.to_owned(), view);
        let (tx, rx) = oneshot::channel();
        lock(&self.unlocks).insert(bay.to_owned(), tx);
        self.changed.send_modify(|n| *n += 1);
        let (station, bay, job_id) = (Arc::clone(self), bay.to_owned(), job.job_id.clone());
        tokio::spawn(async move { station.await_unlock(&bay, &job_id, rx, timeout).await });
    }

    /// Waits for the operator's unlock, then for the device to appear in `bay`.
    async fn await_unlock(
        &self,
        bay: &str,
        job_id: &str,
        unlocked: oneshot::Receiver<()>,
        timeout: Duration,
    ) {
        let set_message = |message: String, state: RunState| {
            if let Some(v) = lock(&self.locked).get_mut(bay) {
                v.message = message;
                v.state = state;
            }
            self.changed.send_modify(|n| *n += 1);
        };
        let fail = |why: &str| {
            if let Err(e) = self.store.set_progress(job_id, ProgressCode::DeviceError) {
                tracing::error!(job = job_id, error = %e, "cannot set the job's progress");
            }
            tracing::warn!(bay, job = job_id, "{why}");
            set_message(
                format!("DeviceError: {why}; return the device (stationctl ship {job_id} ...)"),
                RunState::Failed,
            );
        };
        if tokio::time::timeout(timeout, unlocked).await.is_err() {
            lock(&self.unlocks).remove(bay);
            fail(&format!(
                "the PIN-pad device was not unlocked within {} s",
                timeout.as_secs()
            ));
            return;
        }
        set_message(
            "unlocked by the operator: waiting for the device to appear".into(),
            RunState::Unlocked,
        );
        let start = Instant::now();
        while start.elapsed() < timeout {
            if lock(&self.bays).contains_key(bay) {
                lock(&self.locked).remove(bay);
                self.changed.send_modify(|n| *n += 1);
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        fail(&format!(
            "no device appeared in bay {bay} within {} s of the unlock",
            timeout.as_secs()
        ));
    }
}

/// The stable identity the station recognises a device by across bays and restarts.
fn identity_key(identity: &DeviceIdentity) -> String {
    if let Some(file) = &identity.loop_backing_file {
        return format!("loop:{}:{}", file.display(), identity.capacity_bytes);
    }
    match &identity.serial {
        Some(serial) => format!(
            "{}:{}:{}:{}",
            identity.bus.as_str(),
            identity.model.as_deref().unwrap_or(""),
            serial,
            identity.capacity_bytes
        ),
        // No serial: only the node and size tell it apart; a restart still finds it in place.
        None => format!(
            "{}:{}:{}",
            identity.bus.as_str(),
            identity.devnode.display(),
            identity.capacity_bytes
        ),
    }
}

/// The device facts kept in the device row and the erase certificate.
fn identity_json(identity: &DeviceIdentity) -> serde_json::Value {
    serde_json::json!({
        "devnode": identity.devnode.display().to_string(),
        "bus": identity.bus.as_str(),
        "vendor": identity.vendor,
        "model": identity.model,
        "serial": identity.serial,
        "usb_speed_mbit": identity.usb_speed_mbit,
        "capacity_bytes": identity.capacity_bytes,
        "logical_sector_size": identity.logical_sector_size,
        "physical_sector_size": identity.physical_sector_size,
        "removable": identity.removable,
        "loop_backing_file": identity.loop_backing_file.as_ref().map(|p| p.display().to_string()),
    })
}

/// A disk's size in bytes from sysfs, `None` when it cannot be read.
fn disk_size(syspath: &Path) -> Option<u64> {
    let sectors: u64 = std::fs::read_to_string(syspath.join("size"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(sectors * 512)
}
