//! `stationctl load`: one job in the foreground, without the daemon; and the pipelines a
//! job's device runs, for the daemon too.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pipelines::job_log::LogRow;
use pipelines::manifest::{self, JobManifest, JobType};
use pipelines::object_store::S3Store;
use pipelines::s3_import::{self, Journal, NoJournal, Options, Progress};

use crate::config::Config;
use crate::inspect::inspect;

/// How a load ended, as `stationctl load`'s exit code says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadResult {
    /// Every file loaded: exit 0.
    Complete {
        /// `bucket/key` of the log.
        log: String,
    },
    /// Loaded with errors in the log: exit 3.
    SuccessWithErrors {
        /// `bucket/key` of the log.
        log: String,
        /// Error rows.
        errors: u64,
        /// Error rows by their Status and Code columns (`400 InvalidSubstitution`).
        by_status: std::collections::BTreeMap<String, u64>,
    },
}

/// A progress line on stderr, redrawn at most five times a second.
pub struct TerminalProgress {
    start: Instant,
    files: AtomicU64,
    planned_files: AtomicU64,
    bytes: AtomicU64,
    planned_bytes: AtomicU64,
    last: Mutex<Instant>,
    enabled: bool,
}

impl TerminalProgress {
    /// A progress line; `enabled` false keeps stderr quiet (not a terminal).
    pub fn new(enabled: bool) -> Self {
        Self {
            start: Instant::now(),
            files: AtomicU64::new(0),
            planned_files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            planned_bytes: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
            enabled,
        }
    }

    fn draw(&self, force: bool) {
        if !self.enabled {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if !force && last.elapsed() < Duration::from_millis(200) {
            return;
        }
        *last = Instant::now();
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let _ = write!(
            std::io::stderr(),
            "\r{:>10.1} / {:.1} MiB  {} / {} files  {:.1} MB/s   ",
            mib(bytes),
            mib(self.planned_bytes.load(Ordering::Relaxed)),
            self.files.load(Ordering::Relaxed),
            self.planned_files.load(Ordering::Relaxed),
            bytes as f64 / secs / 1e6
        );
    }

    /// Draws the final state and ends the line.
    pub fn finish(&self) {
        if self.enabled {
            self.draw(true);
            let _ = writeln!(std::io::stderr());
        }
    }
}

impl Progress for TerminalProgress {
    fn planned(&self, files: u64, bytes: u64) {
        self.planned_files.store(files, Ordering::Relaxed);
        self.planned_bytes.store(bytes, Ordering::Relaxed);
        self.draw(true);
    }
    fn file(&self, _path: &str) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.draw(false);
    }
    fn bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.draw(false);
    }
}

/// Loads `device` for job `job_id` of `job_type` as `manifest_text` says.
///
/// # Errors
///
/// The manifest is invalid, the device or its filesystem cannot be read or written,
/// verification failed, or the log could not be stored.
pub async fn load(
    config: &Config,
    device: &Path,
    manifest_text: &[u8],
    job_type: JobType,
    job_id: &str,
    endpoint_override: Option<&str>,
    progress: &TerminalProgress,
) -> anyhow::Result<LoadResult> {
    let manifest = manifest::parse(manifest_text, job_type, &config.manifest_rules())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = load_job(
        config,
        device,
        &manifest,
        job_id,
        endpoint_override,
        progress,
        Arc::new(NoJournal),
    )
    .await;
    progress.finish();
    result
}

/// Loads `device` for job `job_id` as its validated `manifest` says, recording finished
/// objects in `journal` (the daemon's, so a restart sends nothing twice).
///
/// # Errors
///
/// As [`load`].
pub async fn load_job(
    config: &Config,
    device: &Path,
    manifest: &pipelines::manifest::Manifest,
    job_id: &str,
    endpoint_override: Option<&str>,
    progress: &dyn Progress,
    journal: Arc<dyn Journal>,
) -> anyhow::Result<LoadResult> {
    match &manifest.job {
        JobManifest::S3Import(_) => {}
        JobManifest::EbsImport(e) => {
            return load_ebs(
                config,
                device,
                manifest,
                e.operation.region,
                job_id,
                endpoint_override,
                progress,
            )
            .await;
        }
        JobManifest::GlacierImport(g) => {
            return load_glacier(
                config,
                device,
                manifest,
                g.operation.region,
                job_id,
                endpoint_override,
                progress,
            )
            .await;
        }
        JobManifest::S3Export(e) => {
            return load_export(
                config,
                device,
                manifest,
                e,
                job_id,
                endpoint_override,
                progress,
            )
            .await;
        }
    }
    let source = match manifest.true_crypt_password() {
        Some(password) => {
            let unlocked =
                crate::unlock::open_encrypted(device, job_id, password.expose().as_bytes())?;
            tracing::info!(job = job_id, "unlocked the {}", unlocked.what);
            unlocked.source
        }
        None => inspect(device)?.select(None)?,
    };
    let fs = drivers::fs::open_filesystem(source)?;
    for warning in fs.warnings() {
        tracing::warn!(device = %device.display(), "{warning}");
        eprintln!("warning: {warning}");
    }
    let store = Arc::new(S3Store::new(
        crate::targets::s3_client(config, endpoint_override).await,
    ));
    let options = Options {
        memory_cap: config.transfer.memory_cap_mib * 1024 * 1024,
        upload_concurrency: config.transfer.upload_concurrency,
        journal,
    };
    let outcome = s3_import::run(fs.as_ref(), manifest, job_id, store, progress, options).await?;
    Ok(result_of(
        &outcome.log_bucket,
        &outcome.log_key,
        &outcome.rows,
    ))
}

/// The job's result from its log's rows: Complete when none is an error.
fn result_of(log_bucket: &str, log_key: &str, rows: &[LogRow]) -> LoadResult {
    let log = format!("{log_bucket}/{log_key}");
    let mut by_status = std::collections::BTreeMap::new();
    for row in rows.iter().filter(|r| r.status.is_error()) {
        let (status, code) = row.status.columns();
        *by_status.entry(format!("{status} {code}")).or_insert(0) += 1;
    }
    let errors = by_status.values().sum();
    if errors == 0 {
        LoadResult::Complete { log }
    } else {
        LoadResult::SuccessWithErrors {
            log,
            errors,
            by_status,
        }
    }
}

/// Formats `device` as the export manifest says (a TrueCrypt container `<JOBID>.tc` inside
/// when it gives a password), writes the objects into it, and takes it down again. The
/// device is the delivery: it is never erased.
async fn load_export(
    config: &Config,
    device: &Path,
    manifest: &pipelines::manifest::Manifest,
    export: &pipelines::manifest::S3Export,
    job_id: &str,
    endpoint_override: Option<&str>,
    progress: &dyn Progress,
) -> anyhow::Result<LoadResult> {
    use drivers::export_fs::{ContainerSpec, ExportFsKind, ExportVolume};
    let kind = match export.file_system {
        pipelines::manifest::ExportFileSystem::Ext4 => ExportFsKind::Ext4,
        pipelines::manifest::ExportFileSystem::Ntfs => ExportFsKind::Ntfs,
    };
    let work_dir = config.data_dir.join("export").join(job_id);
    // A run of this job that was killed mid-export left its mounts behind: they go first
    // (they would hold the device), and the export starts again from the formatting.
    for undone in drivers::export_fs::clean_up(&work_dir) {
        tracing::warn!(job = job_id, "left by an interrupted export: {undone}");
    }
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create the export directory {}", work_dir.display()))?;
    let container_name = format!("{job_id}.tc");
    let password = export
        .true_crypt_password
        .as_ref()
        .map(|p| zeroize::Zeroizing::new(p.expose().as_bytes().to_vec()));
    let (device_path, label) = (device.to_owned(), job_id.to_owned());
    let volume = {
        let work_dir = work_dir.clone();
        tokio::task::spawn_blocking(move || {
            let container = password.as_ref().map(|p| ContainerSpec {
                file_name: &container_name,
                password: p,
            });
            ExportVolume::create(&device_path, kind, &label, container, &work_dir)
        })
        .await
        .context("the formatting task stopped")??
    };
    tracing::info!(job = job_id, device = %device.display(), root = %volume.root().display(), "export filesystem ready");
    let store = Arc::new(S3Store::new(
        crate::targets::s3_client(config, endpoint_override).await,
    ));
    let options = pipelines::s3_export::Options {
        memory_cap: config.transfer.memory_cap_mib * 1024 * 1024,
        concurrency: config.transfer.download_concurrency,
        max_file_size: volume.max_file_size(),
    };
    let root = volume.root().to_owned();
    let outcome =
        pipelines::s3_export::run(&root, manifest, job_id, store, progress, options).await;
    // The filesystem comes down whatever the export did, so the device is left consistent.
    let finished = tokio::task::spawn_blocking(move || volume.finish())
        .await
        .context("the unmounting task stopped")?;
    let outcome = outcome?;
    finished.context("the export was written but the device could not be closed cleanly")?;
    let _ = std::fs::remove_dir(&work_dir);
    if outcome.disk_full {
        tracing::warn!(job = job_id, last = ?outcome.last_exported, "the device is full");
    }
    Ok(result_of(
        &outcome.log_bucket,
        &outcome.log_key,
        &outcome.rows,
    ))
}

/// The upload ID of an interrupted Glacier load, kept in the data directory.
struct UploadFile(std::path::PathBuf);

impl pipelines::glacier_import::UploadState for UploadFile {
    fn load(&self) -> Option<String> {
        std::fs::read_to_string(&self.0)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }
    fn save(&self, upload_id: &str) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&self.0, upload_id) {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot store the upload ID; an interruption will restart the upload");
        }
    }
    fn clear(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The raw device to a Glacier archive; the filesystem is never read.
async fn load_glacier(
    config: &Config,
    device: &Path,
    manifest: &pipelines::manifest::Manifest,
    region: pipelines::manifest::Region,
    job_id: &str,
    endpoint_override: Option<&str>,
    progress: &dyn Progress,
) -> anyhow::Result<LoadResult> {
    let source: Arc<dyn drivers::source::ReadAt> =
        Arc::new(drivers::block::BlockDevice::open(device)?);
    let shared = crate::targets::region_config(
        config,
        region,
        crate::targets::Service::Glacier,
        endpoint_override,
    )
    .await;
    let vault = Arc::new(pipelines::vault_store::GlacierStore::new(
        aws_sdk_glacier::Client::new(&shared),
    ));
    let objects = S3Store::new(crate::targets::s3_client(config, endpoint_override).await);
    let state = UploadFile(
        config
            .data_dir
            .join("load-state")
            .join(format!("{job_id}.glacier-upload")),
    );
    let outcome = pipelines::glacier_import::run(
        source,
        manifest,
        job_id,
        vault,
        &objects,
        &state,
        progress,
        config.transfer.memory_cap_mib * 1024 * 1024,
        config.transfer.upload_concurrency,
    )
    .await;
    let outcome = outcome?;
    tracing::info!(archive = %outcome.archive.id, tree_hash = %outcome.tree_hash, parts = outcome.parts_uploaded, "archive complete");
    Ok(LoadResult::Complete {
        log: format!("{}/{}", outcome.log_bucket, outcome.log_key),
    })
}

/// The raw device to an EBS snapshot; the filesystem is never read.
async fn load_ebs(
    config: &Config,
    device: &Path,
    manifest: &pipelines::manifest::Manifest,
    region: pipelines::manifest::Region,
    job_id: &str,
    endpoint_override: Option<&str>,
    progress: &dyn Progress,
) -> anyhow::Result<LoadResult> {
    let source: Arc<dyn drivers::source::ReadAt> =
        Arc::new(drivers::block::BlockDevice::open(device)?);
    let shared = crate::targets::region_config(
        config,
        region,
        crate::targets::Service::Ebs,
        endpoint_override,
    )
    .await;
    let store = Arc::new(pipelines::snapshot_store::EbsStore::new(
        aws_sdk_ebs::Client::new(&shared),
    ));
    let objects = S3Store::new(crate::targets::s3_client(config, endpoint_override).await);
    let verify = match config.transfer.ebs_verify {
        crate::config::EbsVerify::All => pipelines::ebs_import::Verify::All,
        crate::config::EbsVerify::Sampled => pipelines::ebs_import::Verify::Sampled(64),
    };
    let outcome = pipelines::ebs_import::run(
        source,
        manifest,
        job_id,
        store,
        &objects,
        progress,
        config.transfer.memory_cap_mib * 1024 * 1024,
        config.transfer.ebs_concurrency,
        verify,
    )
    .await;
    let outcome = outcome?;
    tracing::info!(snapshot = %outcome.snapshot_id, blocks = outcome.changed_blocks, verified = outcome.verified_blocks, "snapshot complete");
    Ok(LoadResult::Complete {
        log: format!("{}/{}", outcome.log_bucket, outcome.log_key),
    })
}
