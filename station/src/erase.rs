//! The erase after every import: the zero-overwrite of `pipelines::erase` on the bay's device,
//! resumed from the run's last checkpoint, then the erase record and its certificate signed
//! with the station key.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pipelines::erase::{
    self, Checkpoint, EraseOutcome, ErasePhase, ErasePlan, EraseResult, Verify,
};

use crate::config::{Config, EraseVerify};
use crate::orchestrator::BayProgress;
use crate::store::{EraseRecordRow, Store};

/// Directory (in the data directory) the certificates are written to, one file each.
pub const CERTIFICATE_DIR: &str = "erase-certificates";

/// Where an interrupted erase stopped, as the run stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// When the erase first started.
    pub started: u64,
    /// Bytes zeroed.
    pub written: u64,
    /// Bytes the verify pass has passed.
    pub verified: u64,
    /// Bytes read back as zero.
    pub checked: u64,
}

/// One erase to do.
#[derive(Debug, Clone)]
pub struct EraseJob {
    /// The run it belongs to.
    pub run: i64,
    /// The job, if one was authenticated.
    pub job_id: Option<String>,
    /// The device node.
    pub devnode: PathBuf,
    /// The device's identity, as the device row keeps it.
    pub device: serde_json::Value,
    /// Where an interrupted erase of this run stopped.
    pub resume: Option<Resume>,
}

/// How an erase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erased {
    /// Zeroed and verified; the erase record's id.
    Verified {
        /// The erase record.
        record: i64,
    },
    /// The device could not be erased: it must be destroyed.
    Failed {
        /// The erase record.
        record: i64,
        /// What failed.
        reason: String,
    },
    /// The device went away; the checkpoint is stored and a reinsertion resumes.
    Stopped,
}

struct Progress(Arc<BayProgress>, u64);

impl erase::EraseProgress for Progress {
    fn progress(&self, phase: ErasePhase, done: u64, _total: u64) {
        // One bar for both passes: writing is the first half, reading back the second.
        let done = match phase {
            ErasePhase::Write => done,
            ErasePhase::Verify => self.1 + done,
        };
        self.0.set_bytes(done);
    }
}

/// Erases `job.devnode` as the configuration says, records the result and writes the signed
/// certificate. Progress goes to `progress`; `stop` (the device was pulled) stops it at the
/// next chunk with its checkpoint stored.
pub async fn erase_device(
    config: &Config,
    store: &Store,
    job: EraseJob,
    progress: Arc<BayProgress>,
    stop: Arc<AtomicBool>,
) -> Erased {
    let plan = ErasePlan {
        resume: job.resume.map(|r| Checkpoint {
            started: r.started,
            written_up_to: r.written,
            verified_up_to: r.verified,
            bytes_verified: r.checked,
        }),
        verify: match config.erase.verify {
            EraseVerify::Full => Verify::All,
            EraseVerify::Sampled => Verify::Sampled { every_n: 64 },
        },
        ..ErasePlan::default()
    };
    let (run, devnode, store2) = (job.run, job.devnode.clone(), store.clone());
    let worked = tokio::task::spawn_blocking(move || {
        let device = drivers::block_write::WritableDevice::open(&devnode)
            .map_err(|e| format!("cannot open the device for writing: {e}"))?;
        let size = drivers::source::ReadAt::size(&device);
        progress.reset(size.saturating_mul(2));
        let mut save = |cp: Checkpoint| {
            if let Err(e) = store2.set_erase_progress(
                run,
                cp.started,
                cp.written_up_to,
                cp.verified_up_to,
                cp.bytes_verified,
            ) {
                tracing::error!(run, error = %e, "cannot store the erase checkpoint");
            }
        };
        Ok::<EraseOutcome, String>(erase::erase(
            &device,
            &plan,
            &Progress(progress, size),
            &stop,
            &mut save,
        ))
    })
    .await;
    let outcome = match worked {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(reason)) => return record_failure(config, store, &job, &reason),
        Err(e) => return record_failure(config, store, &job, &format!("the erase panicked: {e}")),
    };
    if outcome.result == EraseResult::Cancelled {
        return Erased::Stopped;
    }
    record(config, store, &job, &outcome)
}

/// The identity block of the certificate, from the device row's JSON.
fn certificate_identity(device: &serde_json::Value) -> erase::DeviceIdentity {
    let text = |k: &str| {
        device
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let number = |k: &str| {
        device
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    erase::DeviceIdentity {
        path: text("devnode"),
        serial: text("serial"),
        model: text("model"),
        vendor: text("vendor"),
        bus: text("bus"),
        capacity: number("capacity_bytes"),
        logical_sector_size: u32::try_from(number("logical_sector_size")).unwrap_or(0),
        physical_sector_size: u32::try_from(number("physical_sector_size")).unwrap_or(0),
    }
}

fn record_failure(config: &Config, store: &Store, job: &EraseJob, reason: &str) -> Erased {
    let now = u64::try_from(crate::store::now()).unwrap_or(0);
    let outcome = EraseOutcome {
        device: job.devnode.display().to_string(),
        size: 0,
        bytes_written: 0,
        bytes_verified: 0,
        method: ErasePlan::default().method(),
        started: now,
        ended: now,
        result: EraseResult::Failed {
            offset: 0,
            reason: reason.to_owned(),
        },
        checkpoint: Checkpoint::default(),
    };
    record(config, store, job, &outcome)
}

/// Stores the erase record and writes its signed certificate.
fn record(config: &Config, store: &Store, job: &EraseJob, outcome: &EraseOutcome) -> Erased {
    let identity = certificate_identity(&job.device);
    let body = erase::certificate_body(job.job_id.as_deref().unwrap_or(""), &identity, outcome);
    let certificate = erase::sign_certificate(&store.key().signing_key()[..], &body);
    let (result, failure) = match &outcome.result {
        EraseResult::Verified => ("verified".to_owned(), None),
        EraseResult::Failed { offset, reason } => (
            format!("failed at byte {offset}: {reason}"),
            Some(format!("at byte {offset}: {reason}")),
        ),
        EraseResult::Cancelled => ("cancelled".to_owned(), None),
    };
    let row = EraseRecordRow {
        id: 0,
        run_id: job.run,
        job_id: job.job_id.clone(),
        device: job.device.to_string(),
        bytes_written: outcome.bytes_written,
        bytes_verified: outcome.bytes_verified,
        method: outcome.method.clone(),
        started_at: i64::try_from(outcome.started).unwrap_or(0),
        ended_at: i64::try_from(outcome.ended).unwrap_or(0),
        result,
        certificate: certificate.clone(),
    };
    let record = match store.insert_erase_record(&row) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(run = job.run, error = %e, "cannot store the erase record");
            0
        }
    };
    let dir = config.data_dir.join(CERTIFICATE_DIR);
    let file = dir.join(format!("erase-{record}.json"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &certificate))
    {
        tracing::error!(path = %file.display(), error = %e, "cannot write the erase certificate (it is in the database)");
    }
    match failure {
        None => Erased::Verified { record },
        Some(reason) => Erased::Failed { record, reason },
    }
}
