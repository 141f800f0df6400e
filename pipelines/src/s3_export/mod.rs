//! The S3 export pipeline: the objects an export manifest names, written as files under a
//! directory (the root of the filesystem `station` formatted and mounted on the customer's
//! device), in the guide's strict order, re-read and compared with the store, with the guide's
//! CSV log.
//!
//! Order: operations in manifest order, keys in alphabetical (byte) order within each. Objects
//! download in parallel (ranged GETs of `CHUNK` bytes within the memory cap), but the device
//! ends up holding a prefix of that order: when it fills, files after the first one that did
//! not fit are removed again and that one is retried alone; if it still does not fit it gets
//! 499 DiskFull and the export stops there. The log's closing lines name the last key
//! exported, the `beginMarker` of the next job.

pub mod names;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use drivers::block::AlignedBuf;
use drivers::export_fs::ExportFile;
use drivers::md5_lanes::Md5Lane;
use drivers::source::ReadAt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::job_log::{self as log, LogRow, Remap, RowStatus};
use crate::manifest::{JobManifest, Manifest, S3Export};
use crate::object_store::{ListedObject, ObjectStore, ObjectStoreError};
use crate::s3_import::Progress;
use names::{PathPlanner, Placement};

const MIB: u64 = 1024 * 1024;
/// The bytes of one ranged GET (and one positional write).
const CHUNK: u64 = 8 * MIB;
/// What of the memory cap is left to the rest of the process (connections' buffers, the
/// in-order hashes, the program): chunks get the remainder. Measured: about 120 MiB above the
/// chunks at 64 GETs in flight.
const PROCESS_RESERVE: u64 = 128 * MIB;
/// The unit the memory cap is counted in.
const PERMIT_BYTES: u64 = 64 * 1024;
/// The largest single write to a file through the page cache (a filesystem that refuses
/// direct writes): writes of 64 KiB into ext4 on a loop device took 1.9-3.3 s for 2 GiB
/// here, of 256 KiB 4.4-5.9 s, of 8 MiB 4.6 s (`dd`, page cache dropped first).
const WRITE_PIECE: usize = 64 * 1024;
/// The most chunks of one object downloading at once.
const RANGES_PER_OBJECT: usize = 16;
/// Multipart files re-read while the downloads go on, at most.
const EARLY_CHECKS: usize = 1;
/// What the re-read of a multipart file holds at once: a chunk of every part hashed side by
/// side.
const REREAD_BUFFER_BYTES: u64 = crate::lanes::LANES as u64 * crate::lanes::LANE_CHUNK;
/// The bytes the in-order hash of a multipart object reads back at once.
const READ_BACK: usize = 4 * 1024 * 1024;

/// Limits of one export.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most bytes of object data held in memory at once.
    pub memory_cap: u64,
    /// The most GET requests in flight at once.
    pub concurrency: usize,
    /// The largest file the target filesystem holds (larger objects get 413 FileTooLarge).
    pub max_file_size: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            memory_cap: 512 * MIB,
            concurrency: 16,
            max_file_size: 16 * 1024 * 1024 * MIB - 4096,
        }
    }
}

/// The result of an export that ran to its end.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One row per object, in export order.
    pub rows: Vec<LogRow>,
    /// Rows that are errors (everything but 200 OK).
    pub errors: u64,
    /// The device filled up: objects after the 499 row were not exported.
    pub disk_full: bool,
    /// `bucket/key` of the last object written to the device, in export order.
    pub last_exported: Option<String>,
    /// Where the log went.
    pub log_bucket: String,
    /// Its key.
    pub log_key: String,
}

/// An export that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The manifest is not an S3 export's.
    #[error("the manifest describes a {0} job, not an S3 export")]
    WrongKind(&'static str),
    /// A bucket could not be listed (after retries).
    #[error("cannot list the objects of operations[{operation}]: {source}")]
    List {
        /// The operation's index in the manifest.
        operation: usize,
        /// The store's error.
        source: ObjectStoreError,
    },
    /// The directory the files go to cannot be used.
    #[error("{path}: the export's root directory cannot be used: {source}")]
    Root {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The log could not be stored.
    #[error("the log could not be uploaded: {0}")]
    Log(ObjectStoreError),
}

/// One object to export, and what became of it.
#[derive(Debug, Clone)]
struct Item {
    bucket: String,
    object: ListedObject,
    placement: Placement,
    row: LogRow,
    /// Its file was re-read and checked as soon as it was written.
    verified: bool,
}

/// What writing one object gave.
#[derive(Debug)]
enum Written {
    /// The file holds the object: its Content-Type and ETag (from the GETs) and, for a
    /// multipart object (whose ETag is not its MD5), the MD5 of the bytes downloaded; whether
    /// the file was already re-read and checked against the ETag.
    Done {
        content_type: String,
        etag: String,
        md5: Option<String>,
        verified: bool,
    },
    /// The filesystem refused the path: the object goes to the recovery directory.
    Refused(Remap),
    /// The device is full.
    NoSpace,
    /// A row status that ends this object (403, 413, 508, a store error).
    Failed(RowStatus),
}

/// Runs the export of `manifest` for `job_id` into `root`: lists, plans, downloads, verifies
/// and stores the log.
///
/// # Errors
///
/// The manifest is not an S3 export's, a bucket cannot be listed, the root is unusable, or
/// the log cannot be stored. Object-level problems are log rows, not errors.
pub async fn run(
    root: &Path,
    manifest: &Manifest,
    job_id: &str,
    store: Arc<dyn ObjectStore>,
    progress: &dyn Progress,
    options: Options,
) -> Result<Outcome, ExportError> {
    let JobManifest::S3Export(export) = &manifest.job else {
        return Err(ExportError::WrongKind(manifest.kind().as_str()));
    };
    fs::metadata(root).map_err(|source| ExportError::Root {
        path: root.to_owned(),
        source,
    })?;
    let planner = Mutex::new(PathPlanner::new(
        export.file_system,
        &export.recovery_directory,
    ));
    let mut items = plan(export, store.as_ref(), &planner, &options).await?;
    progress.planned(
        items.len() as u64,
        items.iter().map(|i| i.object.size).sum(),
    );

    // The cap bounds the whole job: chunks get what the rest of the process and the early
    // re-reads' buffers leave. Under a small cap files are only re-read after the downloads.
    let early_bytes = EARLY_CHECKS as u64 * REREAD_BUFFER_BYTES;
    let check_early = options.memory_cap >= PROCESS_RESERVE + early_bytes + 8 * CHUNK;
    let chunk_budget = options
        .memory_cap
        .saturating_sub(PROCESS_RESERVE + if check_early { early_bytes } else { 0 })
        .max(CHUNK);
    let ctx = Arc::new(Context {
        root: root.to_owned(),
        store,
        memory: Arc::new(Semaphore::new(permits(chunk_budget))),
        buffers: BufferPool::new(chunk_budget / CHUNK),
        requests: Arc::new(Semaphore::new(options.concurrency.max(1))),
        written: AtomicU64::new(0),
        activity: AtomicU64::new(0),
        early_checks: check_early.then(|| Semaphore::new(EARLY_CHECKS)),
    });
    let mut reporter = Reporter::new(progress);
    let mut disk_full = false;
    let mut start = 0;
    let mut width = options.concurrency.max(1);
    while start < items.len() {
        let (done, no_space) =
            write_window(&ctx, &mut items[start..], width, &planner, &mut reporter).await;
        match no_space {
            None => break,
            Some(at) if width == 1 => {
                let at = start + at;
                items[at].row.status = RowStatus::DiskFull;
                items[at].row.file.clear();
                items.truncate(at + 1);
                disk_full = true;
                break;
            }
            Some(at) => {
                // Undo what was written after the first object that did not fit, and go on
                // one object at a time from there: nothing later may take its place.
                for item in &mut items[start + at..start + done] {
                    remove_written(root, item);
                }
                start += at;
                width = 1;
            }
        }
    }

    tracing::info!("downloads finished; syncing and re-reading the files to verify them");
    // The chunk buffers are done with: the re-read's buffers take their place.
    ctx.buffers.clear();
    verify(&ctx, &mut items, &mut reporter).await;
    tracing::info!("verified");

    let rows: Vec<LogRow> = items.into_iter().map(|i| i.row).collect();
    let errors = rows.iter().filter(|r| r.status != RowStatus::Ok).count() as u64;
    let last_exported = rows
        .iter()
        .rev()
        .find(|r| matches!(r.status, RowStatus::Ok | RowStatus::Remapped(_)))
        .map(|r| r.key.clone());
    let mut trailer = Vec::new();
    if let Some(last) = &last_exported {
        trailer.push(format!("last-exported={last}"));
    }
    if disk_full {
        trailer.push(
            match last_exported.as_deref().and_then(|l| l.split_once('/')) {
                Some((bucket, key)) => format!(
                    "DiskFull: the device is full; export the rest with a new job whose operation \
                 on {bucket} has beginMarker: {key}"
                ),
                None => "DiskFull: the device is full; nothing was exported".to_owned(),
            },
        );
    }
    let log_bucket = manifest.log_bucket().to_owned();
    let log_key = manifest.log_key(job_id);
    log::upload(
        ctx.store.as_ref(),
        &log_bucket,
        &log_key,
        log::render_with(&rows, &trailer),
    )
    .await
    .map_err(ExportError::Log)?;
    Ok(Outcome {
        rows,
        errors,
        disk_full,
        last_exported,
        log_bucket,
        log_key,
    })
}

/// Lists every operation and places each object, in export order.
async fn plan(
    export: &S3Export,
    store: &dyn ObjectStore,
    planner: &Mutex<PathPlanner>,
    options: &Options,
) -> Result<Vec<Item>, ExportError> {
    let mut items = Vec::new();
    for (i, op) in export.operations.iter().enumerate() {
        let prefix = op.prefix.as_deref().unwrap_or("");
        // The listing is the operation's range: prefix, after beginMarker, up to endMarker.
        let listed = store
            .list_range(
                &op.export_bucket,
                prefix,
                op.begin_marker.as_deref(),
                op.end_marker.as_deref(),
            )
            .await
            .map_err(|source| ExportError::List {
                operation: i,
                source,
            })?;
        for object in listed {
            let placement =
                lock(planner).place(&op.target_directory, &object.key, &export.substitutions);
            let mut row = LogRow {
                time: log::now(),
                file: String::new(),
                status: RowStatus::Ok,
                key: format!("{}/{}", op.export_bucket, object.key),
                md5: String::new(),
                bytes: object.size,
                content_type: String::new(),
                etag: object.etag.clone(),
            };
            match &placement {
                Placement::File(path) | Placement::Directory(path) => row.file = path.clone(),
                Placement::Remapped(path, why) => {
                    row.file = path.clone();
                    row.status = RowStatus::Remapped(*why);
                }
                Placement::InvalidSubstitution => row.status = RowStatus::InvalidSubstitution,
                Placement::RecoveryFull => row.status = RowStatus::DiskFull,
            }
            if object.size > options.max_file_size && row.status.is_writable() {
                row.status = RowStatus::FileTooLarge;
                row.file.clear();
            }
            items.push(Item {
                bucket: op.export_bucket.clone(),
                object,
                placement,
                row,
                verified: false,
            });
        }
    }
    Ok(items)
}

impl RowStatus {
    /// Whether a planned row still leads to a file on the device.
    fn is_writable(&self) -> bool {
        matches!(self, Self::Ok | Self::Remapped(_))
    }
}

fn lock(planner: &Mutex<PathPlanner>) -> std::sync::MutexGuard<'_, PathPlanner> {
    planner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Context {
    root: PathBuf,
    store: Arc<dyn ObjectStore>,
    memory: Arc<Semaphore>,
    buffers: BufferPool,
    requests: Arc<Semaphore>,
    /// Object bytes written to the device so far.
    written: AtomicU64,
    /// Chunks written or re-read so far: a sign of life while one large file takes long.
    activity: AtomicU64,
    /// Files re-read while the downloads go on ([`check_now`]), at most this many at once;
    /// `None` when the memory cap leaves no room for their buffers.
    early_checks: Option<Semaphore>,
}

/// Chunk buffers, reused: a GET's body goes into a buffer of `CHUNK` bytes that goes back here
/// once written, so the memory held is the buffers the cap allows, not what an allocator
/// keeps of ever new 8 MiB allocations (which held 40% over the cap). Buffers start on a page,
/// so a chunk is written to the device straight from its buffer.
struct BufferPool {
    free: Mutex<Vec<AlignedBuf>>,
    /// The most buffers kept.
    keep: u64,
}

impl BufferPool {
    fn new(keep: u64) -> Self {
        Self {
            free: Mutex::default(),
            keep,
        }
    }

    /// A buffer for `len` bytes (at least): a pooled one for a large chunk, a new one of its
    /// size for a small object.
    fn take(&self, len: u64) -> AlignedBuf {
        if len < CHUNK / 2 {
            return AlignedBuf::new(usize::try_from(len).unwrap_or(0));
        }
        let pooled = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        pooled.unwrap_or_else(|| AlignedBuf::new(usize::try_from(CHUNK).unwrap_or(0)))
    }

    /// Frees every buffer kept.
    fn clear(&self) {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Returns a buffer (kept when it is a chunk buffer and the pool is not full).
    fn give(&self, buf: AlignedBuf) {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buf.len() as u64 >= CHUNK && (free.len() as u64) < self.keep {
            free.push(buf);
        }
    }
}

/// Hands what the tasks counted to `progress` (which the tasks cannot hold: it is borrowed).
struct Reporter<'a> {
    progress: &'a dyn Progress,
    written: u64,
    activity: u64,
}

impl<'a> Reporter<'a> {
    fn new(progress: &'a dyn Progress) -> Self {
        Self {
            progress,
            written: 0,
            activity: 0,
        }
    }

    fn report(&mut self, ctx: &Context) {
        let written = ctx.written.load(Ordering::Relaxed);
        let activity = ctx.activity.load(Ordering::Relaxed);
        if written != self.written || activity != self.activity {
            self.progress.bytes(written.saturating_sub(self.written));
            self.written = written;
            self.activity = activity;
        }
    }
}

/// How often counted progress is handed on.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

fn permits(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(PERMIT_BYTES)).unwrap_or(usize::MAX >> 4)
}

/// The absolute path of `relative` (`/`-separated, planned by [`PathPlanner`]).
fn absolute(root: &Path, relative: &str) -> PathBuf {
    let mut path = root.to_owned();
    path.extend(relative.split('/'));
    path
}

/// Writes `items` in order, `width` objects at a time. Returns how many were started and,
/// when the device filled, the index of the first object that found no space (objects
/// after it are not started; those already running finish).
async fn write_window(
    ctx: &Arc<Context>,
    items: &mut [Item],
    width: usize,
    planner: &Mutex<PathPlanner>,
    reporter: &mut Reporter<'_>,
) -> (usize, Option<usize>) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    let mut running: JoinSet<(usize, Written)> = JoinSet::new();
    let mut next = 0;
    let mut no_space: Option<usize> = None;
    loop {
        while no_space.is_none() && running.len() < width && next < items.len() {
            let item = &items[next];
            if item.row.status.is_writable() {
                let target = item.row.file.clone();
                reporter.progress.file(&target);
                let ctx = Arc::clone(ctx);
                let (bucket, key, size) = (
                    item.bucket.clone(),
                    item.object.key.clone(),
                    item.object.size,
                );
                let directory = matches!(item.placement, Placement::Directory(_));
                let index = next;
                running.spawn(async move {
                    let written = if directory {
                        make_directory(&ctx.root, &target)
                    } else {
                        write_object(&ctx, &bucket, &key, size, &target).await
                    };
                    (index, written)
                });
            }
            next += 1;
        }
        let joined = tokio::select! {
            joined = running.join_next() => joined,
            _ = tick.tick() => {
                reporter.report(ctx);
                continue;
            }
        };
        let Some(joined) = joined else {
            break;
        };
        let (index, written) = match joined {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "an export task failed");
                continue;
            }
        };
        let item = &mut items[index];
        item.row.time = log::now();
        match written {
            Written::Done {
                content_type,
                etag,
                md5,
                verified,
            } => {
                item.verified = verified;
                item.row.content_type = content_type;
                item.row.etag = etag;
                item.row.md5 = md5.unwrap_or_default();
            }
            Written::Refused(why) => {
                // The filesystem refused the planned path: the recovery directory, once.
                let placement = lock(planner).remap(why);
                match &placement {
                    Placement::Remapped(path, _) => {
                        item.row.file = path.clone();
                        item.row.status = RowStatus::Remapped(why);
                        let ctx = Arc::clone(ctx);
                        let (bucket, key, size, target) = (
                            item.bucket.clone(),
                            item.object.key.clone(),
                            item.object.size,
                            path.clone(),
                        );
                        running.spawn(async move {
                            let written = match write_object(&ctx, &bucket, &key, size, &target)
                                .await
                            {
                                Written::Refused(_) => Written::Failed(RowStatus::UnableToWrite),
                                other => other,
                            };
                            (index, written)
                        });
                    }
                    _ => item.row.status = RowStatus::DiskFull,
                }
                item.placement = placement;
            }
            Written::NoSpace => {
                no_space = Some(no_space.map_or(index, |n| n.min(index)));
            }
            Written::Failed(status) => {
                item.row.status = status;
                item.row.file.clear();
            }
        }
    }
    reporter.report(ctx);
    (next, no_space)
}

/// Removes the file (or leaves the directory) an item wrote, so a later retry starts clean.
fn remove_written(root: &Path, item: &mut Item) {
    item.verified = false;
    if !item.row.file.is_empty() && !matches!(item.placement, Placement::Directory(_)) {
        let _ = fs::remove_file(absolute(root, &item.row.file));
    }
}

fn make_directory(root: &Path, target: &str) -> Written {
    match fs::create_dir_all(absolute(root, target)) {
        Ok(()) => Written::Done {
            content_type: String::new(),
            etag: String::new(),
            md5: None,
            verified: false,
        },
        Err(e) => write_failure(root, &e, true),
    }
}

/// What a failed create or write means for the object.
fn write_failure(root: &Path, e: &io::Error, creating: bool) -> Written {
    use rustix::io::Errno;
    let errno = e.raw_os_error().map(Errno::from_raw_os_error);
    match errno {
        Some(Errno::NOSPC | Errno::DQUOT) => {
            // A directory can be full while the filesystem is not (ext4's hashed directories
            // have a limit); then only that directory is full.
            if creating && has_space(root) {
                Written::Refused(Remap::DirectoryFull)
            } else {
                Written::NoSpace
            }
        }
        Some(Errno::MLINK) => Written::Refused(Remap::DirectoryFull),
        Some(Errno::NAMETOOLONG) => Written::Refused(Remap::FilenameTooLong),
        Some(Errno::INVAL | Errno::ILSEQ) if creating => Written::Refused(Remap::InvalidFilename),
        Some(Errno::EXIST | Errno::NOTDIR | Errno::ISDIR) if creating => {
            Written::Refused(Remap::MovedPermanently)
        }
        Some(Errno::FBIG) => Written::Failed(RowStatus::FileTooLarge),
        _ => {
            tracing::warn!(error = %e, "cannot write to the export device");
            Written::Failed(RowStatus::UnableToWrite)
        }
    }
}

/// Whether the filesystem under `root` still has free blocks and inodes.
fn has_space(root: &Path) -> bool {
    rustix::fs::statvfs(root).is_ok_and(|s| s.f_bavail > 0 && s.f_favail > 0)
}

/// Downloads one object into `target` (relative to the root): the first chunk alone (it
/// brings the ETag every later range must match), then the other chunks side by side.
async fn write_object(
    ctx: &Arc<Context>,
    bucket: &str,
    key: &str,
    size: u64,
    target: &str,
) -> Written {
    let path = absolute(&ctx.root, target);
    // Objects of more than one chunk are written straight to the device (see ExportFile).
    let file = match create_file(&path, size > CHUNK) {
        Ok(file) => Arc::new(file),
        Err(e) => return write_failure(&ctx.root, &e, true),
    };
    // No fsync per small file: the filesystem reserves space at write time (so a full device
    // shows here), and one syncfs before the re-read makes everything durable at once, where a
    // journal commit per small file would cost more than writing it. A multipart object
    // written direct is synced and checked at once instead (check_now).
    let mut written = download(ctx, bucket, key, size, &file).await;
    if file.is_direct() {
        written = check_now(ctx, bucket, key, &file, &path, written).await;
    }
    if !matches!(written, Written::Done { .. }) {
        let _ = fs::remove_file(&path);
    }
    written
}

/// Re-reads a multipart object's file written direct as soon as its download is done, while
/// other objects download: its data is on the device already, and once `fdatasync` has made
/// its allocation durable too the check is the one [`verify`] would make after the syncfs.
/// What it finds is final: a difference fails the object (508 UnableToWrite).
async fn check_now(
    ctx: &Arc<Context>,
    bucket: &str,
    key: &str,
    file: &Arc<ExportFile>,
    path: &Path,
    written: Written,
) -> Written {
    let (
        Some(checks),
        Written::Done {
            etag, md5: Some(_), ..
        },
    ) = (&ctx.early_checks, &written)
    else {
        return written;
    };
    if !etag.contains('-') {
        return written;
    }
    // A few at a time (their buffers are set aside from the memory cap): the downloads go on
    // meanwhile.
    let Ok(_slot) = checks.acquire().await else {
        return Written::Failed(RowStatus::UnableToWrite);
    };
    let Written::Done {
        content_type,
        etag,
        md5: Some(md5),
        ..
    } = written
    else {
        return written;
    };
    let synced = {
        let file = Arc::clone(file);
        tokio::task::spawn_blocking(move || file.file().sync_data())
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    };
    let checked = match synced {
        Ok(()) => check_parts(ctx, bucket, key, &etag, path.to_owned(), md5).await,
        Err(e) => Err(format!("cannot sync the file: {e}")),
    };
    match checked {
        Ok(md5) => Written::Done {
            content_type,
            etag,
            md5: Some(md5),
            verified: true,
        },
        Err(why) => {
            tracing::warn!(bucket, key, why, "export verification failed");
            Written::Failed(RowStatus::UnableToWrite)
        }
    }
}

fn create_file(path: &Path, direct: bool) -> io::Result<ExportFile> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    // Readable too: a multipart object is hashed from what was written.
    ExportFile::create_new(path, direct)
}

async fn download(
    ctx: &Arc<Context>,
    bucket: &str,
    key: &str,
    size: u64,
    file: &Arc<ExportFile>,
) -> Written {
    let first_len = size.min(CHUNK);
    let first = match fetch(ctx, bucket, key, 0, first_len, None).await {
        Ok(chunk) => chunk,
        Err(status) => return Written::Failed(status),
    };
    let etag = first.etag.clone();
    let content_type = first.content_type.clone().unwrap_or_default();
    // The listing's size can be older than the object the GET found.
    let size = first.size;
    // The whole object's space first: a device without room for it says so now.
    if size > first_len {
        if let Err(e) = file.allocate(size) {
            return write_failure(&ctx.root, &e, false);
        }
    }
    // A multipart object's ETag is not its MD5: its bytes are hashed in order as they are
    // written (the re-read then compares the parts, which hash side by side).
    let in_order = etag
        .contains('-')
        .then(|| InOrderMd5::start(Arc::clone(ctx), Arc::clone(file), size));
    let OwnedChunk {
        body, len, _memory, ..
    } = first;
    let body = match write_at(ctx, file, 0, body, len).await {
        Ok(body) => body,
        Err(e) => return write_failure(&ctx.root, &e, false),
    };
    let first = WrittenChunk {
        offset: 0,
        body,
        len,
        _memory,
    };
    hand_over(ctx, in_order.as_ref().map(|h| &h.written), first);
    // At most RANGES_PER_OBJECT chunks of one object in flight: a large object does not take
    // every GET and the whole memory cap while the small objects beside it wait.
    let mut ranges = JoinSet::new();
    let mut failure = None;
    let mut offset = first_len;
    loop {
        if failure.is_none() && offset < size && ranges.len() < RANGES_PER_OBJECT {
            let len = CHUNK.min(size - offset);
            let ctx = Arc::clone(ctx);
            let (bucket, key, etag, file) = (
                bucket.to_owned(),
                key.to_owned(),
                etag.clone(),
                Arc::clone(file),
            );
            let hasher = in_order.as_ref().map(InOrderMd5::feeder);
            ranges.spawn(async move {
                let chunk = fetch(&ctx, &bucket, &key, offset, len, Some(&etag))
                    .await
                    .map_err(Written::Failed)?;
                let body = write_at(&ctx, &file, offset, chunk.body, chunk.len)
                    .await
                    .map_err(|e| write_failure(&ctx.root, &e, false))?;
                let written = WrittenChunk {
                    offset,
                    body,
                    len: chunk.len,
                    _memory: chunk._memory,
                };
                hand_over(&ctx, hasher.as_ref(), written);
                Ok(())
            });
            offset += len;
            continue;
        }
        let Some(joined) = ranges.join_next().await else {
            break;
        };
        let result = joined.unwrap_or(Err(Written::Failed(RowStatus::UnableToWrite)));
        if let Err(w) = result {
            // No space outranks any other failure: the export must stop here.
            if failure.is_none() || matches!(w, Written::NoSpace) {
                failure = Some(w);
            }
            ranges.abort_all();
        }
    }
    if let Some(failure) = failure {
        return failure;
    }
    let md5 = match in_order {
        Some(hasher) => match hasher.finish().await {
            Some(md5) => Some(md5),
            None => return Written::Failed(RowStatus::UnableToWrite),
        },
        None => None,
    };
    Written::Done {
        content_type,
        etag,
        md5,
        verified: false,
    }
}

/// A chunk just written to a file, with its buffer and the memory it holds.
struct WrittenChunk {
    offset: u64,
    body: AlignedBuf,
    len: usize,
    /// Held until the chunk is hashed: a held chunk counts against the memory cap.
    _memory: tokio::sync::OwnedSemaphorePermit,
}

/// Hands a chunk just written to its object's in-order hash, or its buffer back to the pool.
fn hand_over(
    ctx: &Context,
    hasher: Option<&std::sync::mpsc::Sender<WrittenChunk>>,
    chunk: WrittenChunk,
) {
    match hasher {
        Some(hasher) => {
            let _ = hasher.send(chunk);
        }
        None => ctx.buffers.give(chunk.body),
    }
}

/// The most chunks of one object held in memory, written ahead of the next one to hash.
const HELD_PER_OBJECT: usize = 8;
/// Chunks held for the in-order hash only while the memory cap has at least this many left
/// for GETs: held chunks never starve the one they wait for.
const HOLD_MARGIN: u64 = 8;

/// The MD5 of a file whose chunks are written in any order, on a thread of its own. The chunk
/// that comes next is hashed from its buffer; one that arrives early is held (a few per object,
/// while the memory cap has room) or, when it cannot be, read back from the file once all
/// before it have been hashed. Buffers go back to the pool as soon as they are hashed.
struct InOrderMd5 {
    written: std::sync::mpsc::Sender<WrittenChunk>,
    hashed: tokio::task::JoinHandle<Option<String>>,
}

impl InOrderMd5 {
    /// A hasher of `file`'s `size` bytes, from offset 0.
    fn start(ctx: Arc<Context>, file: Arc<ExportFile>, size: u64) -> Self {
        let (written, arrived) = std::sync::mpsc::channel::<WrittenChunk>();
        let hashed = tokio::task::spawn_blocking(move || {
            let mut md5 = Md5Lane::new();
            let mut next = 0u64;
            // Chunks not yet hashed, by offset: their length, and their bytes while held
            // (`held` of them; between arrivals only early ones wait).
            let mut waiting = std::collections::BTreeMap::<u64, (u64, Option<WrittenChunk>)>::new();
            let mut held = 0usize;
            // Aligned, so what was written direct is read back direct (the page cache does
            // not hold it).
            let mut read_back: Option<AlignedBuf> = None;
            let room = permits(HOLD_MARGIN * CHUNK);
            for chunk in arrived {
                let len = chunk.len as u64;
                let offset = chunk.offset;
                let hold = offset == next
                    || (held < HELD_PER_OBJECT && ctx.memory.available_permits() >= room);
                if hold {
                    held += 1;
                    waiting.insert(offset, (len, Some(chunk)));
                } else {
                    ctx.buffers.give(chunk.body);
                    waiting.insert(offset, (len, None));
                }
                while let Some((len, chunk)) = waiting.remove(&next) {
                    match chunk {
                        Some(chunk) => {
                            held -= 1;
                            md5.update(&chunk.body[..chunk.len]);
                            ctx.buffers.give(chunk.body);
                        }
                        None => {
                            let buf = read_back.get_or_insert_with(|| AlignedBuf::new(READ_BACK));
                            let end = next + len;
                            let mut at = next;
                            while at < end {
                                let n = usize::try_from(end - at)
                                    .unwrap_or(buf.len())
                                    .min(buf.len());
                                file.read_exact_at(&mut buf[..n], at).ok()?;
                                md5.update(&buf[..n]);
                                at += n as u64;
                            }
                        }
                    }
                    next += len;
                }
            }
            (next == size && waiting.is_empty()).then(|| hex::encode(md5.finalize()))
        });
        Self { written, hashed }
    }

    /// A sender for a task.
    fn feeder(&self) -> std::sync::mpsc::Sender<WrittenChunk> {
        self.written.clone()
    }

    /// The MD5 (hex), or `None` when a chunk is missing or could not be read back.
    async fn finish(self) -> Option<String> {
        drop(self.written);
        self.hashed.await.ok().flatten()
    }
}

/// One GET, within the memory cap and the request limit.
async fn fetch(
    ctx: &Context,
    bucket: &str,
    key: &str,
    offset: u64,
    len: u64,
    if_match: Option<&str>,
) -> Result<OwnedChunk, RowStatus> {
    let want = u32::try_from(permits(len.max(1))).unwrap_or(u32::MAX);
    let _memory = Arc::clone(&ctx.memory)
        .acquire_many_owned(want)
        .await
        .map_err(|_| RowStatus::UnableToWrite)?;
    let _request = ctx
        .requests
        .acquire()
        .await
        .map_err(|_| RowStatus::UnableToWrite)?;
    let range = (len > 0).then_some((offset, len));
    let mut body = ctx.buffers.take(len);
    let n = usize::try_from(len).unwrap_or(0);
    let chunk = match ctx
        .store
        .get_object_into(bucket, key, range, if_match, &mut body[..n])
        .await
    {
        Ok(chunk) => chunk,
        Err(e) => {
            ctx.buffers.give(body);
            return Err(RowStatus::from_store_error(&e));
        }
    };
    Ok(OwnedChunk {
        body,
        len: n,
        etag: chunk.etag,
        content_type: chunk.content_type,
        size: chunk.size,
        _memory,
    })
}

/// A chunk (the first `len` bytes of `body`) and the memory permits it holds until it is
/// written.
struct OwnedChunk {
    body: AlignedBuf,
    len: usize,
    etag: String,
    content_type: Option<String>,
    size: u64,
    _memory: tokio::sync::OwnedSemaphorePermit,
}

/// Writes the first `len` bytes of `body` (one GET's) at `offset` and returns the buffer (on
/// failure it goes back to the pool): in one write when it goes straight to the device, else
/// in pieces (the page cache takes many small writes faster than one of 8 MiB, and concurrent
/// writers of one file hold its lock for less time).
async fn write_at(
    ctx: &Context,
    file: &Arc<ExportFile>,
    offset: u64,
    body: AlignedBuf,
    len: usize,
) -> io::Result<AlignedBuf> {
    let file = Arc::clone(file);
    let (written, body) = tokio::task::spawn_blocking(move || {
        let piece = if file.is_direct() {
            len.max(1)
        } else {
            WRITE_PIECE
        };
        let mut at = offset;
        for part in body[..len].chunks(piece) {
            if let Err(e) = file.write_all_at(part, at) {
                return (Err(e), Some(body));
            }
            at += part.len() as u64;
        }
        (Ok(()), Some(body))
    })
    .await
    .unwrap_or_else(|e| (Err(io::Error::other(e)), None));
    match (written, body) {
        (Ok(()), Some(body)) => {
            ctx.written.fetch_add(len as u64, Ordering::Relaxed);
            ctx.activity.fetch_add(1, Ordering::Relaxed);
            Ok(body)
        }
        (written, body) => {
            if let Some(body) = body {
                ctx.buffers.give(body);
            }
            // No buffer back means the write's thread panicked: `written` says so.
            Err(written
                .err()
                .unwrap_or_else(|| io::Error::other("the write's thread failed")))
        }
    }
}

/// Syncs the filesystem, then re-reads every written file from the device and compares it
/// with the object's ETag: a single-part ETag is the file's MD5 (files are re-read a batch at
/// a time and hashed side by side); a multipart one is the MD5 of the parts' MD5s, `-N` (the
/// parts hash side by side, and the file's MD5 for the log is the one computed as it
/// downloaded). A file that differs is removed and gets 508 UnableToWrite.
async fn verify(ctx: &Arc<Context>, items: &mut [Item], reporter: &mut Reporter<'_>) {
    let root = ctx.root.clone();
    let synced = tokio::task::spawn_blocking(move || {
        File::open(&root).and_then(|dir| rustix::fs::syncfs(&dir).map_err(io::Error::from))
    })
    .await;
    if let Ok(Err(e)) | Err(e) = synced.map_err(io::Error::other) {
        // What did not reach the device reads back wrong below, file by file.
        tracing::warn!(error = %e, "cannot sync the export's filesystem");
    }
    let mut tick = tokio::time::interval(REPORT_EVERY);
    let mut checks: JoinSet<Vec<(usize, Result<String, String>)>> = JoinSet::new();
    let threads = Arc::new(Semaphore::new(4));
    let mut batch: Vec<(usize, PathBuf, String)> = Vec::new();
    let mut batcher = crate::lanes::Batcher::default();
    let mut checked = vec![false; items.len()];
    let spawn_batch = |checks: &mut JoinSet<_>, batch: Vec<(usize, PathBuf, String)>| {
        let ctx = Arc::clone(ctx);
        let threads = Arc::clone(&threads);
        checks.spawn(async move {
            let _thread = threads.acquire_owned().await;
            tokio::task::spawn_blocking(move || check_files(&batch, &ctx.activity))
                .await
                .unwrap_or_default()
        });
    };
    for (index, item) in items.iter().enumerate() {
        if item.verified {
            checked[index] = true;
            continue;
        }
        if !item.row.status.is_writable() || matches!(item.placement, Placement::Directory(_)) {
            continue;
        }
        let file = absolute(&ctx.root, &item.row.file);
        let etag = item.row.etag.clone();
        if !etag.contains('-') {
            if batcher.starts_batch(item.object.size) && !batch.is_empty() {
                spawn_batch(&mut checks, std::mem::take(&mut batch));
            }
            batch.push((index, file, etag));
            continue;
        }
        let ctx = Arc::clone(ctx);
        let threads = Arc::clone(&threads);
        let (bucket, key, md5) = (
            item.bucket.clone(),
            item.object.key.clone(),
            item.row.md5.clone(),
        );
        checks.spawn(async move {
            let _thread = threads.acquire_owned().await;
            vec![(
                index,
                check_parts(&ctx, &bucket, &key, &etag, file, md5).await,
            )]
        });
    }
    if !batch.is_empty() {
        spawn_batch(&mut checks, batch);
    }
    loop {
        let joined = tokio::select! {
            joined = checks.join_next() => joined,
            _ = tick.tick() => {
                reporter.report(ctx);
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let Ok(results) = joined else {
            continue;
        };
        for (index, result) in results {
            checked[index] = true;
            let item = &mut items[index];
            match result {
                Ok(md5) => item.row.md5 = md5,
                Err(why) => {
                    tracing::warn!(key = %item.row.key, file = %item.row.file, why, "export verification failed");
                    let _ = fs::remove_file(absolute(&ctx.root, &item.row.file));
                    item.row.status = RowStatus::UnableToWrite;
                    item.row.file.clear();
                    item.row.md5.clear();
                }
            }
        }
    }
    // A file whose check did not run (its task failed) is not verified: it is not logged OK.
    for (item, checked) in items.iter_mut().zip(checked) {
        if item.row.status.is_writable()
            && !matches!(item.placement, Placement::Directory(_))
            && !checked
        {
            let _ = fs::remove_file(absolute(&ctx.root, &item.row.file));
            item.row.status = RowStatus::UnableToWrite;
            item.row.file.clear();
        }
    }
}

/// Opens `path` for re-reading, its cached pages dropped: written pages are clean after the
/// syncfs, and dropping them makes the read reach the device.
fn open_uncached(path: &Path) -> io::Result<File> {
    let file = File::open(path)?;
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    Ok(file)
}

/// Re-reads single-part files (index, path, ETag) and hashes them side by side: each file's
/// MD5 (hex) when it is the ETag.
fn check_files(
    files: &[(usize, PathBuf, String)],
    activity: &AtomicU64,
) -> Vec<(usize, Result<String, String>)> {
    let mut results = Vec::with_capacity(files.len());
    let mut read: Vec<(usize, &str, Vec<u8>)> = Vec::with_capacity(files.len());
    for (index, path, etag) in files {
        let mut content = Vec::new();
        match open_uncached(path).and_then(|mut f| f.read_to_end(&mut content)) {
            Ok(_) => read.push((*index, etag, content)),
            Err(e) => results.push((*index, Err(format!("cannot re-read the file: {e}")))),
        }
        activity.fetch_add(1, Ordering::Relaxed);
    }
    let messages: Vec<&[u8]> = read.iter().map(|(_, _, c)| c.as_slice()).collect();
    let md5s = drivers::md5_lanes::digest_many(&messages);
    for ((index, etag, _), md5) in read.iter().zip(md5s) {
        let md5 = hex::encode(md5);
        results.push((
            *index,
            if md5 == etag.to_ascii_lowercase() {
                Ok(md5)
            } else {
                Err(format!(
                    "the file's MD5 {md5} is not the object's ETag {etag}"
                ))
            },
        ));
    }
    results
}

/// Re-reads a multipart object's file and compares the MD5 of its parts' MD5s with the ETag;
/// returns `md5`, the file's MD5 computed as it downloaded, when they agree.
async fn check_parts(
    ctx: &Arc<Context>,
    bucket: &str,
    key: &str,
    etag: &str,
    file: PathBuf,
    md5: String,
) -> Result<String, String> {
    if md5.is_empty() {
        return Err("the object's bytes were not all hashed as they downloaded".into());
    }
    let parts = etag
        .split_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("the object's ETag {etag} is not an S3 ETag"))?;
    let size = fs::metadata(&file)
        .map_err(|e| format!("cannot re-read the file: {e}"))?
        .len();
    // Parts are most often all of one size but the last: try that first, then ask each.
    let (first, _) = ctx
        .store
        .head_part(bucket, key, 1)
        .await
        .map_err(|e| format!("cannot learn the object's part size: {e}"))?;
    let uniform: Vec<u64> = (1..parts).map(|_| first).collect();
    let composite = reread_parts(ctx, &file, size, uniform).await?;
    if composite.as_deref() == Some(etag) {
        return Ok(md5);
    }
    let mut sizes = Vec::new();
    for number in 1..parts {
        let n = i32::try_from(number).map_err(|_| "too many parts".to_owned())?;
        let (size, _) = ctx
            .store
            .head_part(bucket, key, n)
            .await
            .map_err(|e| format!("cannot learn the size of part {n}: {e}"))?;
        sizes.push(size);
    }
    match reread_parts(ctx, &file, size, sizes).await? {
        Some(c) if c == etag => Ok(md5),
        c => Err(format!(
            "the file's parts give the ETag {}, the object's is {etag}",
            c.unwrap_or_else(|| "(none: the part sizes do not fit the file)".into())
        )),
    }
}

/// Re-reads `file` (`size` bytes) as parts of `sizes` bytes, then one more with the rest,
/// and returns the multipart ETag they give, or `None` when the sizes do not fit the file.
async fn reread_parts(
    ctx: &Arc<Context>,
    file: &Path,
    size: u64,
    sizes: Vec<u64>,
) -> Result<Option<String>, String> {
    let mut ranges = Vec::with_capacity(sizes.len() + 1);
    let mut offset = 0u64;
    for len in sizes {
        ranges.push((offset, len));
        offset = offset.saturating_add(len);
    }
    if offset >= size || ranges.iter().any(|&(_, len)| len == 0) {
        return Ok(None);
    }
    ranges.push((offset, size - offset));
    let (ctx, file) = (Arc::clone(ctx), file.to_owned());
    tokio::task::spawn_blocking(move || {
        // Direct reads (where the filesystem allows them): after the syncfs, straight from the
        // device, with no page cache to fill on the way.
        let handle = drivers::block::BlockDevice::open(&file).map_err(io::Error::other)?;
        let md5s = crate::lanes::range_md5s(&ranges, &mut Vec::new(), |offset, buf| {
            ctx.activity.fetch_add(1, Ordering::Relaxed);
            handle
                .read_exact_at(offset, buf)
                .map_err(|e| io::Error::other(e.to_string()))
        })?;
        Ok::<_, io::Error>(Some(format!(
            "{}-{}",
            hex::encode(drivers::md5_lanes::digest(&md5s.concat())),
            md5s.len()
        )))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot re-read the file: {e}"))
}

#[cfg(test)]
mod tests;
