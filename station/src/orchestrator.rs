//! The orchestrator: one worker per bay takes a device from udev's report through
//! identification and policy, authentication (SIGNATURE file or scanned barcode), its job's
//! pipeline, and the erase, persisting every transition so a restarted daemon resumes where
//! the last one stopped.
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
                    view: BayView {
                        bay: bay.clone(),
                        devnode: event.devnode.display().to_string(),
                        device: event.devnode.display().to_string(),
                        run_id: None,
                        job_id: None,
                        state: RunState::Detected,
                        message: "identifying".into(),
                        planned_files: 0,
                        files: 0,
                        planned_bytes: 0,
                        bytes: 0,
                        rate_mb_s: 0.0,
                        eta_secs: None,
                    },
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
        std::fs::read_to_string(syspath.join("loop/backing_file"))
            .is_ok_and(|file| Path::new(file.trim()).starts_with(&self.config.data_dir))
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
        let view = BayView {
            bay: bay.to_owned(),
            devnode: String::new(),
            device: "PIN-pad device (locked)".to_owned(),
            run_id: None,
            job_id: Some(job.job_id.clone()),
            state: RunState::Detected,
            message: format!(
                "PIN-pad device of job {}: type PIN {} on its keypad, then run stationctl unlock {bay} (within {} s)",
                job.job_id,
                pin.expose(),
                timeout.as_secs()
            ),
            planned_files: 0,
            files: 0,
            planned_bytes: 0,
            bytes: 0,
            rate_mb_s: 0.0,
            eta_secs: None,
        };
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

/// One device's run, carried out by its bay's worker.
struct Worker {
    station: Arc<Station>,
    bay: String,
    devnode: PathBuf,
    run: i64,
    identity: DeviceIdentity,
    details: serde_json::Value,
    progress: Arc<BayProgress>,
    pulled: Arc<AtomicBool>,
    pulled_rx: watch::Receiver<bool>,
}

impl Worker {
    fn transition(&self, state: RunState, message: &str) {
        self.station.transition(&self.bay, self.run, state, message);
    }

    fn refuse(&self, message: &str) {
        self.transition(
            RunState::Refused,
            &format!("{message}; the device was not loaded and not erased: return it as it came"),
        );
    }

    fn store(&self) -> &Store {
        &self.station.store
    }

    fn set_progress(&self, job_id: &str, code: ProgressCode) {
        if let Err(e) = self.store().set_progress(job_id, code) {
            tracing::error!(job = job_id, error = %e, "cannot set the job's progress");
        }
        self.notify_result(job_id, code, 0);
    }

    /// Tells the notifier of a job's new progress code, with what the bay moved.
    fn notify_result(&self, job_id: &str, code: ProgressCode, errors: u64) {
        let loaded = Loaded {
            bay: self.bay.clone(),
            files: self.progress.files.load(Ordering::Relaxed),
            bytes: self.progress.bytes.load(Ordering::Relaxed),
            reason: None,
        };
        self.station
            .notifier
            .job_progress(job_id, code, errors, &loaded);
    }

    /// Finds the job this device belongs to: its SIGNATURE file, else a scanned barcode.
    /// A device that fails is refused (never loaded, never erased).
    async fn authenticate(&self) -> Option<Auth> {
        let path = self.devnode.clone();
        let read = tokio::task::spawn_blocking(move || read_signature(&path)).await;
        let presented = match read {
            Ok(SignatureRead::Found(text)) => match signature::parse_file(&text) {
                Ok(p) => Some((p, "SIGNATURE file")),
                Err(e) => {
                    self.refuse(&format!(
                        "InvalidSignature: the SIGNATURE file is not valid ({e})"
                    ));
                    return None;
                }
            },
            Ok(SignatureRead::Missing(why)) => {
                tracing::info!(bay = %self.bay, "no SIGNATURE file: {why}");
                // A device this station loaded and erased (its SIGNATURE went with the erase)
                // seen again, e.g. after a restart: it waits for shipping, not for a barcode.
                let key = identity_key(&self.identity);
                let path = self.devnode.clone();
                let blank = tokio::task::spawn_blocking(move || starts_blank(&path))
                    .await
                    .unwrap_or(false);
                let done = if blank {
                    self.store().last_finished_run(&key, self.run)
                } else {
                    Ok(None)
                };
                if let Ok(Some(done)) = done {
                    if let Some(job) = done.job_id.filter(|_| done.state == RunState::Done) {
                        self.transition(
                            RunState::Refused,
                            &format!(
                                "already loaded and erased for job {job} (run {}): ship it back: stationctl ship {job} --carrier NAME --tracking N",
                                done.id
                            ),
                        );
                        return None;
                    }
                }
                None
            }
            Err(e) => {
                tracing::error!(bay = %self.bay, error = %e, "signature read panicked");
                None
            }
        };
        let (presented, how) = match presented {
            Some(p) => p,
            None => match self.try_encrypted().await {
                Encrypted::Signature(text) => match signature::parse_file(&text) {
                    Ok(p) => (p, "SIGNATURE file in the TrueCrypt volume"),
                    Err(e) => {
                        self.refuse(&format!(
                            "InvalidSignature: the SIGNATURE file in the TrueCrypt volume is not valid ({e})"
                        ));
                        return None;
                    }
                },
                Encrypted::Unusable(job, why) => return self.unusable(*job, why),
                Encrypted::Refused => return None,
                Encrypted::Nothing => match self.wait_for_barcode().await {
                    Some(p) => (p, "barcode"),
                    None => return None,
                },
            },
        };
        let job = match self.store().job(&presented.job_id) {
            Ok(Some(job)) => job,
            Ok(None) => {
                self.refuse(&format!(
                    "InvalidSignature: the {how} names job {}, which this station does not know",
                    presented.job_id
                ));
                return None;
            }
            Err(e) => {
                self.refuse(&format!("the station database failed: {e}"));
                return None;
            }
        };
        let key = self.store().key().signing_key();
        if !signature::verify(&key[..], &job.job_id, &presented.signature) {
            self.set_progress(&job.job_id, ProgressCode::InvalidSignature);
            self.refuse(&format!(
                "InvalidSignature: the {how} of job {} does not carry the job's signature",
                job.job_id
            ));
            return None;
        }
        if matches!(job.progress, ProgressCode::Canceled | ProgressCode::Expired) {
            self.refuse(&format!("job {} is {}", job.job_id, job.progress.as_str()));
            return None;
        }
        if job.progress.is_final() {
            self.refuse(&format!(
                "job {} is already finished ({})",
                job.job_id,
                job.progress.as_str()
            ));
            return None;
        }
        let file_job = job.kind.starts_with("s3-");
        if how == "barcode" && file_job {
            // S3 jobs are authenticated by their SIGNATURE file only (the guide).
            self.set_progress(&job.job_id, ProgressCode::MissingSignature);
            self.refuse(&format!(
                "MissingSignature: job {} is an S3 job, whose device must carry the SIGNATURE file in its root",
                job.job_id
            ));
            return None;
        }
        if let Err(e) = self
            .store()
            .set_run_job(self.run, &job.job_id)
            .and_then(|()| self.store().set_location(&job.job_id, LocationCode::AtAWS))
        {
            tracing::error!(job = %job.job_id, error = %e, "cannot record the job's device");
        }
        self.station
            .update(&self.bay, |v| v.job_id = Some(job.job_id.clone()));
        self.transition(
            RunState::Authenticated,
            &format!("{how} verified for job {}", job.job_id),
        );
        Some(Auth {
            job,
            unusable: None,
        })
    }

    /// A device the guide says to erase without importing (its job is known, its encryption
    /// is not what the job said): the job ends UnsupportedFileFormat.
    fn unusable(&self, job: JobRecord, why: String) -> Option<Auth> {
        if let Err(e) = self
            .store()
            .set_run_job(self.run, &job.job_id)
            .and_then(|()| self.store().set_location(&job.job_id, LocationCode::AtAWS))
        {
            tracing::error!(job = %job.job_id, error = %e, "cannot record the job's device");
        }
        self.station
            .update(&self.bay, |v| v.job_id = Some(job.job_id.clone()));
        Some(Auth {
            job,
            unusable: Some(why),
        })
    }

    /// Looks for the SIGNATURE inside a TrueCrypt volume or `<JOBID>.tc` container, trying the
    /// password of each job the device may belong to: the job its container is named after,
    /// the job the operator said goes into this bay, else every open S3 import job that has a
    /// trueCryptPassword (at most [`MAX_TRUECRYPT_CANDIDATES`]).
    async fn try_encrypted(&self) -> Encrypted {
        let path = self.devnode.clone();
        let named = tokio::task::spawn_blocking(move || crate::unlock::container_jobs(&path))
            .await
            .unwrap_or_default();
        let expected = lock(&self.station.expected).get(&self.bay).cloned();
        // Jobs the device itself (its container's name) or the operator names: if their
        // password does not open it, the guide says erase and return.
        let mut claimed: Vec<String> = named;
        claimed.extend(expected);
        claimed.dedup();
        let mut candidates: Vec<(JobRecord, bool)> = Vec::new();
        for job_id in &claimed {
            if let Ok(Some(job)) = self.store().job(job_id) {
                candidates.push((job, true));
            }
        }
        if candidates.is_empty() {
            let jobs = self.store().recent_jobs(200).unwrap_or_default();
            candidates.extend(
                jobs.into_iter()
                    .filter(|j| j.kind == "s3-import" && !j.progress.is_final())
                    .filter(|j| j.manifest.contains("trueCryptPassword"))
                    .take(MAX_TRUECRYPT_CANDIDATES)
                    .map(|j| (j, false)),
            );
        }
        let rules = self.station.config.manifest_rules();
        for (job, claimed) in candidates {
            let Ok(manifest) = manifest::parse(job.manifest.as_bytes(), JobType::Import, &rules)
            else {
                continue;
            };
            let Some(password) = manifest.true_crypt_password() else {
                continue;
            };
            let password = zeroize::Zeroizing::new(password.expose().as_bytes().to_vec());
            self.station.update(&self.bay, |v| {
                v.message = format!("trying job {}'s TrueCrypt password", job.job_id);
            });
            let (path, job_id) = (self.devnode.clone(), job.job_id.clone());
            let opened = tokio::task::spawn_blocking(move || {
                let unlocked = crate::unlock::open_encrypted(&path, &job_id, &password)?;
                Ok::<_, crate::unlock::UnlockError>(read_signature_in(unlocked.source))
            })
            .await;
            match opened {
                Ok(Ok(SignatureRead::Found(text))) => return Encrypted::Signature(text),
                Ok(Ok(SignatureRead::Missing(why))) => {
                    self.set_progress(&job.job_id, ProgressCode::MissingSignature);
                    self.refuse(&format!(
                        "MissingSignature: job {}'s TrueCrypt volume opened, but {why}",
                        job.job_id
                    ));
                    return Encrypted::Refused;
                }
                Ok(Err(e)) if claimed => return Encrypted::Unusable(Box::new(job), e.to_string()),
                Ok(Err(e)) => tracing::debug!(job = %job.job_id, "not this job's device: {e}"),
                Err(e) => tracing::error!(error = %e, "TrueCrypt trial panicked"),
            }
        }
        Encrypted::Nothing
    }

    /// Asks the operator to scan the device's barcode; `None` (refused) when no valid scan
    /// comes in time or the device goes away.
    async fn wait_for_barcode(&self) -> Option<Presented> {
        let timeout = Duration::from_secs(self.station.config.bays.scan_timeout_secs);
        self.station.update(&self.bay, |v| {
            v.message = format!(
                "no SIGNATURE file: scan the job's barcode (stationctl scan {}) within {} s",
                self.bay,
                timeout.as_secs()
            );
        });
        loop {
            let (tx, rx) = oneshot::channel();
            lock(&self.station.scans).insert(self.bay.clone(), tx);
            let mut pulled = self.pulled_rx.clone();
            let text = tokio::select! {
                r = tokio::time::timeout(timeout, rx) => match r {
                    Ok(Ok(text)) => text,
                    _ if self.pulled.load(Ordering::SeqCst) => {
                        self.transition(RunState::Refused, "the device was removed before it was authenticated");
                        return None;
                    }
                    _ => {
                        lock(&self.station.scans).remove(&self.bay);
                        let expected = lock(&self.station.expected).remove(&self.bay);
                        if let Some(job_id) = &expected {
                            self.set_progress(job_id, ProgressCode::MissingSignature);
                        }
                        self.refuse(&format!(
                            "MissingSignature: no SIGNATURE file in the device's root and no barcode scanned{}",
                            expected.map(|j| format!(" (job {j})")).unwrap_or_default()
                        ));
                        return None;
                    }
                },
                _ = pulled.wait_for(|p| *p) => {
                    self.transition(RunState::Refused, "the device was removed before it was authenticated");
                    return None;
                }
            };
            match signature::parse_barcode(text.trim()) {
                Ok(p) => return Some(p),
                Err(e) => {
                    tracing::warn!(bay = %self.bay, "a scan that is not a job barcode: {e}");
                    self.station.update(&self.bay, |v| {
                        v.message = format!("that scan is not a job barcode ({e}); scan again");
                    });
                }
            }
        }
    }

    /// Loads (or resumes) the device's job, then erases the device.
    async fn carry_out(&self, job: JobRecord, resume: Option<RunRecord>) -> Result<(), Stop> {
        let rules = self.station.config.manifest_rules();
        let job_type = if job.job_type == "Export" {
            JobType::Export
        } else {
            JobType::Import
        };
        let manifest = match manifest::parse(job.manifest.as_bytes(), job_type, &rules) {
            Ok(m) => m,
            Err(e) => {
                self.refuse(&format!(
                    "job {}'s stored manifest no longer validates: {e}",
                    job.job_id
                ));
                return Ok(());
            }
        };
        if let Err(refusal) =
            drivers::policy::check(&self.identity, &self.station.limits(Some(manifest.kind())))
        {
            self.set_progress(&job.job_id, ProgressCode::UnsupportedDeviceType);
            self.refuse(&refusal.to_string());
            return Ok(());
        }
        if matches!(manifest.job, JobManifest::S3Export(_)) {
            // An export device is the delivery: never erased. An interrupted export starts
            // again from the formatting.
            if self.transfer(&job, &manifest).await? {
                self.transition(
                    RunState::Done,
                    &format!(
                        "export written; ship the device back: stationctl ship {} --carrier NAME --tracking N",
                        job.job_id
                    ),
                );
            }
            return Ok(());
        }
        let erase_from = resume.as_ref().filter(|r| r.state == RunState::Erasing);
        if erase_from.is_none() {
            self.transfer(&job, &manifest).await?;
        }
        self.erase(&job, erase_from).await
    }

    /// Runs the job's pipeline under the watchdog; records the job's result. True when the
    /// job's log was written (Complete or SuccessWithErrors).
    async fn transfer(&self, job: &JobRecord, manifest: &Manifest) -> Result<bool, Stop> {
        let after_failure = if matches!(manifest.job, JobManifest::S3Export(_)) {
            "the device will not be erased: return it"
        } else {
            "the device will be erased"
        };
        self.set_progress(&job.job_id, ProgressCode::InProgress);
        self.progress.reset(0);
        let doing = match &manifest.job {
            JobManifest::S3Export(e) => format!(
                "exporting job {}: formatting the device ({}{}), then writing the objects",
                job.job_id,
                match e.file_system {
                    pipelines::manifest::ExportFileSystem::Ext4 => "EXT4",
                    pipelines::manifest::ExportFileSystem::Ntfs => "NTFS",
                },
                if e.true_crypt_password.is_some() {
                    ", TrueCrypt container inside"
                } else {
                    ""
                }
            ),
            _ => format!("loading job {}", job.job_id),
        };
        self.transition(RunState::Transferring, &doing);
        let journal = Arc::new(JobJournal::new(self.store().clone(), &job.job_id));
        let config = &self.station.config;
        let load = load_job(
            config,
            &self.devnode,
            manifest,
            &job.job_id,
            self.station.endpoint_override.as_deref(),
            self.progress.as_ref(),
            journal,
        );
        let stall = Duration::from_secs(config.bays.stall_timeout_secs);
        let watchdog = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1).min(stall)).await;
                if self.progress.idle() >= stall {
                    return;
                }
            }
        };
        let mut pulled = self.pulled_rx.clone();
        let result = tokio::select! {
            r = load => Some(r),
            () = watchdog => None,
            _ = pulled.wait_for(|p| *p) => return Err(Stop::Pulled),
        };
        let logged = matches!(result, Some(Ok(_)));
        match result {
            Some(Ok(LoadResult::Complete { log })) => {
                self.record_result(&job.job_id, ProgressCode::Complete, 0);
                self.transition(
                    RunState::Logging,
                    &format!("job {} complete; log at {log}", job.job_id),
                );
            }
            Some(Ok(LoadResult::SuccessWithErrors {
                log,
                errors,
                by_status,
            })) => {
                self.station.notifier().metrics.log_rows(&by_status);
                self.record_result(&job.job_id, ProgressCode::SuccessWithErrors, errors);
                self.transition(
                    RunState::Logging,
                    &format!(
                        "job {} loaded with {errors} errors; log at {log}",
                        job.job_id
                    ),
                );
            }
            Some(Err(e)) if e.downcast_ref::<crate::unlock::UnlockError>().is_some() => {
                self.record_result(&job.job_id, ProgressCode::UnsupportedFileFormat, 0);
                self.transition(
                    RunState::Failed,
                    &format!("UnsupportedFileFormat: {e}; no import: the device will be erased and returned"),
                );
            }
            Some(Err(e)) => {
                if self.pulled.load(Ordering::SeqCst) {
                    return Err(Stop::Pulled);
                }
                self.record_result(&job.job_id, ProgressCode::DeviceError, 0);
                self.transition(
                    RunState::Failed,
                    &format!("job {} failed: {e:#}; {after_failure}", job.job_id),
                );
            }
            None => {
                self.station
                    .notifier
                    .stuck_bay(&self.bay, self.run, &job.job_id, stall.as_secs());
                self.record_result(&job.job_id, ProgressCode::DeviceError, 0);
                self.transition(
                    RunState::Failed,
                    &format!(
                        "job {} failed: no progress for {} s (DeviceError); {after_failure}",
                        job.job_id,
                        stall.as_secs()
                    ),
                );
            }
        }
        Ok(logged)
    }

    fn record_result(&self, job_id: &str, code: ProgressCode, errors: u64) {
        if let Err(e) = self.store().set_result(job_id, code, errors) {
            tracing::error!(job = job_id, error = %e, "cannot record the job's result");
        }
        self.notify_result(job_id, code, errors);
    }

    /// Zero-overwrites the device, verifies it, and records the erase with its certificate.
    async fn erase(&self, job: &JobRecord, resume: Option<&RunRecord>) -> Result<(), Stop> {
        let written = resume.map_or(0, |r| r.erase_written);
        self.progress.reset(self.identity.capacity_bytes);
        self.transition(
            RunState::Erasing,
            &if written > 0 {
                format!("erasing, resumed at byte {written}")
            } else {
                "erasing".to_owned()
            },
        );
        let outcome = crate::erase::erase_device(
            &self.station.config,
            self.store(),
            crate::erase::EraseJob {
                run: self.run,
                job_id: Some(job.job_id.clone()),
                devnode: self.devnode.clone(),
                device: self.details.clone(),
                resume: resume.map(|r| crate::erase::Resume {
                    started: r.erase_started,
                    written: r.erase_written,
                    verified: r.erase_verified,
                    checked: r.erase_checked,
                }),
            },
            Arc::clone(&self.progress),
            Arc::clone(&self.pulled),
        )
        .await;
        match outcome {
            crate::erase::Erased::Verified { record } => {
                self.station.notifier.erase_result(
                    &self.bay,
                    self.run,
                    Some(&job.job_id),
                    true,
                    record,
                    "erased and verified",
                );
                self.transition(
                    RunState::Done,
                    &format!(
                        "erased and verified (erase record {record}); ship the device back: stationctl ship {} --carrier NAME --tracking N",
                        job.job_id
                    ),
                );
            }
            crate::erase::Erased::Failed { record, reason } => {
                self.station.notifier.erase_result(
                    &self.bay,
                    self.run,
                    Some(&job.job_id),
                    false,
                    record,
                    &reason,
                );
                if let Err(e) = self.store().flag_destroy(self.run) {
                    tracing::error!(run = self.run, error = %e, "cannot flag the device for destruction");
                }
                self.transition(
                    RunState::Failed,
                    &format!(
                        "ERASE FAILED ({reason}; erase record {record}): do not return this device; it is flagged for destruction and the customer is contacted"
                    ),
                );
            }
            crate::erase::Erased::Stopped => return Err(Stop::Pulled),
        }
        Ok(())
    }
}

/// Jobs whose TrueCrypt password is tried on a device that names none.
const MAX_TRUECRYPT_CANDIDATES: usize = 8;

/// A device's job, found by its SIGNATURE or barcode.
struct Auth {
    job: JobRecord,
    /// Set when the job is known but the device is not what it promised (its TrueCrypt volume
    /// does not open): no import, erase and return.
    unusable: Option<String>,
}

/// What trying the candidate jobs' TrueCrypt passwords found.
enum Encrypted {
    /// The SIGNATURE file inside the opened volume.
    Signature(Vec<u8>),
    /// The device names a job, but cannot be opened as the guide requires.
    Unusable(Box<JobRecord>, String),
    /// Nothing opened.
    Nothing,
    /// The run was refused (the message says why).
    Refused,
}

/// What the root of a device's filesystem says about its SIGNATURE file.
enum SignatureRead {
    /// The file's bytes.
    Found(Vec<u8>),
    /// No file, or no filesystem (the reason).
    Missing(String),
}

/// Whether the device's first MiB reads as zeros (as this station's erase leaves it).
fn starts_blank(devnode: &Path) -> bool {
    let Ok(device) = drivers::block::BlockDevice::open(devnode) else {
        return false;
    };
    let len = drivers::source::ReadAt::size(&device).min(1 << 20);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    drivers::source::ReadAt::read_exact_at(&device, 0, &mut buf).is_ok()
        && pipelines::erase::first_nonzero(&buf).is_none()
}

/// Reads `SIGNATURE` from the root of the device's one filesystem.
fn read_signature(devnode: &Path) -> SignatureRead {
    let inspected = match crate::inspect::inspect(devnode) {
        Ok(i) => i,
        Err(e) => return SignatureRead::Missing(e.to_string()),
    };
    match inspected.select(None) {
        Ok(source) => read_signature_in(source),
        Err(e) => SignatureRead::Missing(e.to_string()),
    }
}

/// Reads `SIGNATURE` from the root of the filesystem on `source`.
fn read_signature_in(source: Arc<dyn drivers::source::ReadAt>) -> SignatureRead {
    let fs = match drivers::fs::open_filesystem(source) {
        Ok(fs) => fs,
        Err(e) => return SignatureRead::Missing(e.to_string()),
    };
    let entries = match fs.read_dir(fs.root()) {
        Ok(e) => e,
        Err(e) => return SignatureRead::Missing(e.to_string()),
    };
    let Some(entry) = entries
        .iter()
        .find(|e| e.name.to_utf8().as_deref() == Some("SIGNATURE"))
    else {
        return SignatureRead::Missing("no SIGNATURE in the root directory".into());
    };
    // A SIGNATURE file is under 200 bytes; parse_file refuses anything over 4 KiB.
    let mut buf = vec![0u8; usize::try_from(entry.size.min(8192)).unwrap_or(8192)];
    match fs.read(entry.id, 0, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            SignatureRead::Found(buf)
        }
        Err(e) => SignatureRead::Missing(format!("SIGNATURE cannot be read: {e}")),
    }
}
