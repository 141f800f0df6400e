//! The S3 import pipeline: every file of a device's filesystem to an object, with the
//! manifest's options, parallel multipart uploads within a memory cap, a re-read verification
//! and the guide's CSV log.

pub mod content_type;
pub mod key;

use std::sync::Arc;

use drivers::md5_lanes::Md5Lane;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use drivers::fs::walk::{walk, Limits, WalkEntry, WalkProblem};
use drivers::fs::{EntryId, EntryKind, FileSystem, FsError, RawName};

use crate::job_log::{self as log, LogRow, RowStatus};
use crate::manifest::{JobManifest, Manifest, S3Import};
use crate::object_store::{ObjectHeaders, ObjectInfo, ObjectStore, ObjectStoreError};
use key::{object_key, KeyRejection};

const MIB: u64 = 1024 * 1024;
/// S3's largest object (the guide's "5 TB").
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * MIB;
/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// The smallest part (and the largest single PutObject).
pub const MIN_PART_BYTES: u64 = 8 * MIB;
/// The size of each `FileSystem::read` call.
const READ_CHUNK: usize = 8 * 1024 * 1024;

/// The part size for a file of `size` bytes: 8 MiB, or the whole MiB that fits the file in
/// 10,000 parts.
pub fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    needed.max(MIN_PART_BYTES)
}

/// Limits of one import, and where it records what it finished.
#[derive(Clone)]
pub struct Options {
    /// The most bytes of file data held in memory at once (buffers being uploaded).
    pub memory_cap: u64,
    /// The most uploads (PutObject or UploadPart requests) in flight at once.
    pub upload_concurrency: usize,
    /// What an interrupted run of the same job finished, and where this run records its own.
    pub journal: Arc<dyn Journal>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            memory_cap: 512 * MIB,
            upload_concurrency: 16,
            journal: Arc::new(NoJournal),
        }
    }
}

/// A file whose object an earlier run of the job stored and completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedFile {
    /// The file's size.
    pub size: u64,
    /// The file's MD5, hex.
    pub md5: String,
    /// The object's ETag.
    pub etag: String,
    /// The Content-Type the object was stored with.
    pub content_type: String,
}

/// A job's persistent record of finished objects and open multipart uploads, so a run after a
/// crash sends nothing twice. Keys are object keys (without the bucket). Recording is best
/// effort: a journal that cannot write only costs a resend after a crash.
pub trait Journal: Send + Sync {
    /// The finished object for `key`, if an earlier run stored one.
    fn finished(&self, key: &str) -> Option<FinishedFile>;
    /// `key`'s object is stored and complete.
    fn file_finished(&self, key: &str, file: &FinishedFile);
    /// The multipart upload an earlier run opened for `key`.
    fn open_upload(&self, key: &str) -> Option<String>;
    /// A multipart upload for `key` was opened.
    fn upload_opened(&self, key: &str, upload_id: &str);
    /// Part `number` of `upload_id` is stored with `etag` (hex MD5) and `size` bytes.
    fn part_finished(&self, key: &str, upload_id: &str, number: i32, etag: &str, size: u64);
    /// The parts an earlier run stored for `upload_id`, by number: (ETag, size).
    fn parts(&self, key: &str, upload_id: &str) -> std::collections::BTreeMap<i32, (String, u64)>;
}

/// A journal that remembers nothing (`stationctl load`: the store's own listing of open
/// uploads still resumes multipart uploads).
pub struct NoJournal;

impl Journal for NoJournal {
    fn finished(&self, _: &str) -> Option<FinishedFile> {
        None
    }
    fn file_finished(&self, _: &str, _: &FinishedFile) {}
    fn open_upload(&self, _: &str) -> Option<String> {
        None
    }
    fn upload_opened(&self, _: &str, _: &str) {}
    fn part_finished(&self, _: &str, _: &str, _: i32, _: &str, _: u64) {}
    fn parts(&self, _: &str, _: &str) -> std::collections::BTreeMap<i32, (String, u64)> {
        Default::default()
    }
}

/// Where the pipeline reports progress; `station` decides where it goes.
pub trait Progress: Send + Sync {
    /// The walk found `files` files of `bytes` bytes in all.
    fn planned(&self, files: u64, bytes: u64);
    /// Started `path`.
    fn file(&self, path: &str);
    /// Read `bytes` more bytes.
    fn bytes(&self, bytes: u64);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn planned(&self, _: u64, _: u64) {}
    fn file(&self, _: &str) {}
    fn bytes(&self, _: u64) {}
}

/// The result of an import that ran to its end.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One row per file, in walk order.
    pub rows: Vec<LogRow>,
    /// Rows that are errors.
    pub errors: u64,
    /// Where the log went.
    pub log_bucket: String,
    /// Its key.
    pub log_key: String,
}

/// An import that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The manifest is not an S3 import's.
    #[error("the manifest describes a {0} job, not an S3 import")]
    WrongKind(&'static str),
    /// A re-read or the store disagrees with what was uploaded: the job fails.
    #[error("verification failed for {file}: {why}")]
    Verification {
        /// The file.
        file: String,
        /// What differs.
        why: String,
    },
    /// The log could not be stored.
    #[error("the log could not be uploaded: {0}")]
    Log(ObjectStoreError),
}

/// A path for the log's File column: UTF-8 as is, other bytes as `\xNN`.
pub fn display_path(path: &[u8]) -> String {
    let mut out = String::new();
    for chunk in path.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn path_bytes(path: &[RawName]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, name) in path.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(&name.to_bytes());
    }
    out
}

/// The headers every object of the job gets, before its type.
fn base_headers(s3: &S3Import, mtime: Option<i64>) -> ObjectHeaders {
    let mut metadata = s3.static_metadata.clone();
    if let (Some(name), Some(seconds)) = (&s3.disk_timestamp_metadata_key, mtime) {
        metadata.push((
            name.clone(),
            crate::manifest::HttpDate {
                unix_seconds: seconds,
            }
            .to_string(),
        ));
    }
    ObjectHeaders {
        content_type: None,
        content_encoding: None,
        cache_control: s3.cache_control.clone(),
        content_disposition: s3.content_disposition.clone(),
        content_language: s3.content_language.clone(),
        expires: s3.expires,
        acl: Some(s3.acl),
        storage_class: Some(s3.storage_class),
        metadata,
    }
}

/// Reads `buf.len()` bytes of file `id` from `offset` (short only at the end of the file),
/// with `block_in_place`, so the worker's other tasks (uploads in flight) move on meanwhile.
fn read_full(
    fs: &dyn FileSystem,
    id: EntryId,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, FsError> {
    tokio::task::block_in_place(|| read_exact(fs, id, offset, buf))
}

/// Reads `buf.len()` bytes of file `id` from `offset` (short only at the end of the file).
fn read_exact(
    fs: &dyn FileSystem,
    id: EntryId,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, FsError> {
    let mut done = 0;
    while done < buf.len() {
        let end = (done + READ_CHUNK).min(buf.len());
        let n = fs.read(id, offset + done as u64, &mut buf[done..end])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// The most bytes of small files read ahead at once.
const READ_AHEAD_BYTES: u64 = 8 * MIB;
/// The most small files read ahead at once.
const READ_AHEAD_FILES: usize = 128;
/// Threads that read ahead side by side (several reads in flight).
const READ_AHEAD_THREADS: usize = 4;
/// The most parts of one file read before their MD5s are computed side by side.
const PART_LANES: u32 = 16;

/// Reads the small files at the head of `files` (up to `READ_AHEAD_FILES` of them and
/// `READ_AHEAD_BYTES` in all) on several threads at once, so many small reads are in flight
/// instead of one, and their MD5s side by side. A file that cannot be read is left out (the
/// caller reads it again itself, and logs the error).
fn read_ahead(
    fs: &dyn FileSystem,
    files: &[&WalkEntry],
) -> std::collections::HashMap<EntryId, Ahead> {
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    for w in files {
        let e = &w.entry;
        if e.kind != EntryKind::File || e.size > MIN_PART_BYTES {
            continue;
        }
        if batch.len() == READ_AHEAD_FILES
            || (bytes + e.size > READ_AHEAD_BYTES && !batch.is_empty())
        {
            break;
        }
        bytes += e.size;
        batch.push((e.id, e.size));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let read = std::sync::Mutex::new(std::collections::HashMap::with_capacity(batch.len()));
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            for _ in 0..READ_AHEAD_THREADS.min(batch.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(id, size)) = batch.get(i) else {
                        return;
                    };
                    let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
                    if matches!(read_exact(fs, id, 0, &mut buf), Ok(n) if n == buf.len()) {
                        read.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id, buf);
                    }
                });
            }
        })
    });
    let read = read.into_inner().unwrap_or_else(|e| e.into_inner());
    let (ids, bufs): (Vec<EntryId>, Vec<Vec<u8>>) = read.into_iter().unzip();
    let md5s = tokio::task::block_in_place(|| {
        let messages: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        drivers::md5_lanes::digest_many(&messages)
    });
    ids.into_iter().zip(bufs.into_iter().zip(md5s)).collect()
}

/// A small file read ahead, and its MD5.
type Ahead = (Vec<u8>, [u8; 16]);

/// The MD5 of `buf`. A large buffer is hashed with `block_in_place`, so the other tasks of the
/// worker (uploads in flight) move on meanwhile.
fn md5_of(buf: &[u8]) -> [u8; 16] {
    const INLINE: usize = 256 * 1024;
    if buf.len() <= INLINE {
        drivers::md5_lanes::digest(buf)
    } else {
        tokio::task::block_in_place(|| drivers::md5_lanes::digest(buf))
    }
}

/// An upload running in the background; the row is finished when it completes.
struct Pending {
    row: usize,
    /// The file's MD5 (computed by the task, off the reader) and the upload's result.
    task: JoinHandle<([u8; 16], Result<String, ObjectStoreError>)>,
}

/// What the upload pass recorded for a file, to verify it afterwards.
struct Uploaded {
    row: usize,
    id: EntryId,
    size: u64,
    part_size: u64,
    multipart: bool,
    /// The MD5s of the parts as they were sent (each part's Content-MD5), concatenated; `None`
    /// when this run sent no parts (one PutObject, or an object an earlier run finished).
    part_md5s: Option<Vec<u8>>,
}

/// Runs the import of `fs` for `job_id`: uploads, verifies, writes the log.
///
/// # Errors
///
/// The manifest is not an S3 import's, verification found a difference, or the log could not
/// be stored. File-level problems are log rows, not errors.
pub async fn run(
    fs: &dyn FileSystem,
    manifest: &Manifest,
    job_id: &str,
    store: Arc<dyn ObjectStore>,
    progress: &dyn Progress,
    options: Options,
) -> Result<Outcome, ImportError> {
    let JobManifest::S3Import(s3) = &manifest.job else {
        return Err(ImportError::WrongKind(manifest.kind().as_str()));
    };
    let walked = walk(fs, Limits::default());
    let files: Vec<_> = walked
        .entries
        .iter()
        .filter(|w| w.entry.kind != EntryKind::Directory)
        .collect();
    progress.planned(files.len() as u64, files.iter().map(|w| w.entry.size).sum());

    // The read-ahead of small files comes out of the cap too.
    let cap_mib = u32::try_from(
        options
            .memory_cap
            .saturating_sub(READ_AHEAD_BYTES)
            .div_ceil(MIB)
            .max(1),
    )
    .unwrap_or(u32::MAX);
    let memory = Arc::new(Semaphore::new(cap_mib as usize));
    let permits_for = |bytes: u64| -> u32 {
        u32::try_from(bytes.div_ceil(MIB).max(1))
            .unwrap_or(u32::MAX)
            .min(cap_mib)
    };

    let requests = Arc::new(Semaphore::new(options.upload_concurrency.max(1)));

    let mut rows: Vec<LogRow> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut uploaded: Vec<Uploaded> = Vec::new();
    let bucket = s3.bucket.clone();

    for problem in &walked.problems {
        let (path, status) = match problem {
            WalkProblem::Unreadable { path, .. } => (path_bytes(path), RowStatus::ReadError),
            WalkProblem::Cycle { path, .. } | WalkProblem::TooDeep { path } => {
                (path_bytes(path), RowStatus::Ignored)
            }
            WalkProblem::NameTooLong { parent, .. } => {
                (path_bytes(parent), RowStatus::InvalidFileName)
            }
            WalkProblem::TooManyEntries { .. } => (Vec::new(), RowStatus::ReadError),
        };
        rows.push(LogRow {
            time: log::now(),
            file: display_path(&path),
            status,
            key: String::new(),
            md5: String::new(),
            bytes: 0,
            content_type: String::new(),
            etag: String::new(),
        });
    }

    let mut ahead: std::collections::HashMap<EntryId, Ahead> = Default::default();
    for (at, w) in files.iter().enumerate() {
        let entry = &w.entry;
        let path = w.path_bytes();
        let file = display_path(&path);
        progress.file(&file);
        let mut row = LogRow {
            time: log::now(),
            file: file.clone(),
            status: RowStatus::Ok,
            key: String::new(),
            md5: String::new(),
            bytes: entry.size,
            content_type: String::new(),
            etag: String::new(),
        };
        let at_root = w.path.len() == 1;
        let utf8 = std::str::from_utf8(&path).ok();
        if at_root && path == b"SIGNATURE" {
            row.status = RowStatus::Ignored;
            rows.push(row);
            continue;
        }
        if entry.kind != EntryKind::File {
            row.status = RowStatus::Ignored;
            row.bytes = 0;
            rows.push(row);
            continue;
        }
        // The unnamed stream is the file; alternate data streams (NTFS) are not imported, and
        // each gets a row so the customer knows what stayed on the disk.
        for stream in fs.streams(entry.id).unwrap_or_default() {
            rows.push(LogRow {
                time: log::now(),
                file: format!("{file}:{stream}"),
                status: RowStatus::Ignored,
                key: String::new(),
                md5: String::new(),
                bytes: 0,
                content_type: String::new(),
                etag: String::new(),
            });
        }
        if utf8.is_some_and(|p| s3.is_ignored(p)) {
            row.status = RowStatus::Ignored;
            rows.push(row);
            continue;
        }
        let key = match object_key(&s3.prefix, &path, &s3.substitutions) {
            Ok(key) => key,
            Err(rejection) => {
                row.status = match rejection {
                    KeyRejection::NotUtf8 => RowStatus::InvalidFileName,
                    KeyRejection::TooLong(_) => RowStatus::KeyTooLong,
                    KeyRejection::EmptiedBySubstitution => RowStatus::InvalidSubstitution,
                };
                rows.push(row);
                continue;
            }
        };
        row.key = format!("{bucket}/{key}");
        if entry.size > MAX_OBJECT_BYTES {
            row.status = RowStatus::FileTooLarge;
            rows.push(row);
            continue;
        }
        let name = w.path.last().and_then(RawName::to_utf8).unwrap_or_default();
        if let Some(done) = options
            .journal
            .finished(&key)
            .filter(|f| f.size == entry.size)
        {
            // An earlier run of this job stored it; verification below still re-reads it
            // and checks the object.
            progress.bytes(entry.size);
            row.md5 = done.md5;
            row.etag = done.etag;
            row.content_type = done.content_type;
            uploaded.push(Uploaded {
                row: rows.len(),
                id: entry.id,
                size: entry.size,
                part_size: part_size(entry.size),
                multipart: row.etag.contains('-'),
                part_md5s: None,
            });
            rows.push(row);
            continue;
        }
        let mut headers = base_headers(s3, entry.mtime.map(|t| t.seconds));
        let size = entry.size;
        let part = part_size(size);

        // The first buffer: the whole file when it is one part, else the first part.
        let first_len = size.min(part);
        let permit = match Arc::clone(&memory)
            .acquire_many_owned(permits_for(first_len))
            .await
        {
            Ok(p) => p,
            Err(_) => break, // The semaphore is never closed.
        };
        if size <= part && !ahead.contains_key(&entry.id) {
            ahead = read_ahead(fs, &files[at..]);
        }
        let (buf, read, hashed) = match ahead.remove(&entry.id) {
            Some((buf, md5)) => {
                let n = buf.len();
                (buf, Ok(n), Some(md5))
            }
            None => {
                let mut buf = vec![0u8; usize::try_from(first_len).unwrap_or(0)];
                let read = read_full(fs, entry.id, 0, &mut buf);
                (buf, read, None)
            }
        };
        let read = match read {
            Ok(n) if n as u64 == first_len => n,
            Ok(_) | Err(_) => {
                row.status = RowStatus::ReadError;
                rows.push(row);
                continue;
            }
        };
        progress.bytes(read as u64);
        let types = content_type::type_headers(s3, &name, &buf[..buf.len().min(16)]);
        headers.content_type = types.content_type.clone();
        headers.content_encoding = types.content_encoding.map(str::to_owned);
        row.content_type = types
            .content_type
            .unwrap_or_else(|| content_type::S3_DEFAULT_CONTENT_TYPE.to_owned());

        if size <= part {
            // One pass over the bytes: the MD5 is both Content-MD5 and the log's, and it is
            // computed by the upload task, so the reader goes on to the next file meanwhile.
            let store = Arc::clone(&store);
            let journal = Arc::clone(&options.journal);
            let (bucket, key) = (bucket.clone(), key.clone());
            let content_type = row.content_type.clone();
            let requests = Arc::clone(&requests);
            let task = tokio::spawn(async move {
                let md5 = hashed.unwrap_or_else(|| md5_of(&buf));
                // The semaphore is never closed.
                let request = requests.acquire_owned().await.ok();
                let result = store.put_object(&bucket, &key, buf, md5, &headers).await;
                drop(request);
                drop(permit);
                if let Ok(etag) = &result {
                    journal.file_finished(
                        &key,
                        &FinishedFile {
                            size,
                            md5: hex::encode(md5),
                            etag: etag.clone(),
                            content_type,
                        },
                    );
                }
                (md5, result)
            });
            pending.push(Pending {
                row: rows.len(),
                task,
            });
            uploaded.push(Uploaded {
                row: rows.len(),
                id: entry.id,
                size,
                part_size: part,
                multipart: false,
                part_md5s: None,
            });
            rows.push(row);
            continue;
        }

        // Multipart: parts upload in the background while the next ones are read.
        // An upload an interrupted run left for this key is resumed: its parts whose MD5
        // matches what the device holds now are not sent again. Any others are aborted.
        // The whole-file MD5 is computed here, in order; the parts' MD5s a group at a time.
        let mut whole = Md5Lane::new();
        whole.update(&buf);
        let (resumed, stored_parts) =
            resume_upload(store.as_ref(), options.journal.as_ref(), &bucket, &key).await;
        let upload_id = match resumed {
            Some(id) => id,
            None => match store.create_multipart(&bucket, &key, &headers).await {
                Ok(id) => {
                    options.journal.upload_opened(&key, &id);
                    id
                }
                Err(e) => {
                    row.status = RowStatus::from_store_error(&e);
                    rows.push(row);
                    continue;
                }
            },
        };
        type PartTask = JoinHandle<([u8; 16], Result<String, ObjectStoreError>)>;
        let mut parts: Vec<(i32, PartTask)> = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        let mut first = Some((buf, permit));
        let mut read_failed = false;
        // Parts are read a group at a time and the group's MD5s computed side by side.
        let mut group: Vec<(i32, u64, Vec<u8>, OwnedSemaphorePermit)> = Vec::new();
        let group_max = (cap_mib / permits_for(part) / 2).clamp(1, PART_LANES);
        while offset < size || !group.is_empty() {
            if offset < size && group.len() < group_max as usize {
                let len = part.min(size - offset);
                let (buf, permit) = match first.take() {
                    Some(b) => b,
                    None => {
                        let permit = match Arc::clone(&memory)
                            .acquire_many_owned(permits_for(len))
                            .await
                        {
                            Ok(p) => p,
                            Err(_) => break,
                        };
                        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
                        match read_full(fs, entry.id, offset, &mut buf) {
                            Ok(n) if n as u64 == len => {}
                            _ => {
                                read_failed = true;
                                break;
                            }
                        }
                        progress.bytes(len);
                        whole.update(&buf);
                        (buf, permit)
                    }
                };
                group.push((number, len, buf, permit));
                offset += len;
                number += 1;
                continue;
            }
            let md5s = tokio::task::block_in_place(|| {
                let bufs: Vec<&[u8]> = group.iter().map(|(_, _, b, _)| b.as_slice()).collect();
                drivers::md5_lanes::digest_many(&bufs)
            });
            for ((number, len, buf, permit), md5) in group.drain(..).zip(md5s) {
                // A part an interrupted run stored is not sent again.
                let already = stored_parts
                    .get(&number)
                    .filter(|(etag, size)| *size == len && *etag == hex::encode(md5))
                    .map(|(etag, _)| etag.clone());
                if let Some(etag) = already {
                    drop(permit);
                    parts.push((number, tokio::spawn(async move { (md5, Ok(etag)) })));
                    continue;
                }
                let store = Arc::clone(&store);
                let journal = Arc::clone(&options.journal);
                let (b, k, u) = (bucket.clone(), key.clone(), upload_id.clone());
                let requests = Arc::clone(&requests);
                parts.push((
                    number,
                    tokio::spawn(async move {
                        // The semaphore is never closed.
                        let request = requests.acquire_owned().await.ok();
                        let result = store.upload_part(&b, &k, &u, number, buf, md5).await;
                        drop(request);
                        drop(permit);
                        if let Ok(etag) = &result {
                            journal.part_finished(&k, &u, number, etag, len);
                        }
                        (md5, result)
                    }),
                ));
            }
        }
        let mut etags = Vec::new();
        let mut part_md5s = Vec::new();
        let mut failure = None;
        for (n, task) in parts {
            match task.await {
                Ok((md5, Ok(etag))) => {
                    etags.push((n, etag));
                    part_md5s.extend_from_slice(&md5);
                }
                Ok((_, Err(e))) => failure = failure.or(Some(RowStatus::from_store_error(&e))),
                Err(_) => {
                    failure = failure.or(Some(RowStatus::StoreFailed("InternalError".into())))
                }
            }
        }
        if read_failed {
            failure = Some(RowStatus::ReadError);
        }
        let result = match failure {
            None => {
                store
                    .complete_multipart(&bucket, &key, &upload_id, etags)
                    .await
            }
            Some(status) => {
                // Never leave parts behind.
                let _ = store.abort_multipart(&bucket, &key, &upload_id).await;
                row.status = status;
                rows.push(row);
                continue;
            }
        };
        match result {
            Ok(etag) => {
                row.md5 = hex::encode(whole.finalize());
                row.etag = etag;
                options.journal.file_finished(
                    &key,
                    &FinishedFile {
                        size,
                        md5: row.md5.clone(),
                        etag: row.etag.clone(),
                        content_type: row.content_type.clone(),
                    },
                );
                uploaded.push(Uploaded {
                    row: rows.len(),
                    id: entry.id,
                    size,
                    part_size: part,
                    multipart: true,
                    part_md5s: Some(part_md5s),
                });
            }
            Err(e) => {
                let _ = store.abort_multipart(&bucket, &key, &upload_id).await;
                row.status = RowStatus::from_store_error(&e);
            }
        }
        rows.push(row);
    }

    for p in pending {
        match p.task.await {
            Ok((md5, result)) => {
                rows[p.row].md5 = hex::encode(md5);
                match result {
                    Ok(etag) => rows[p.row].etag = etag,
                    Err(e) => rows[p.row].status = RowStatus::from_store_error(&e),
                }
            }
            Err(_) => rows[p.row].status = RowStatus::StoreFailed("InternalError".into()),
        }
    }

    tracing::info!(
        files = uploaded.len(),
        "uploads finished; re-reading the files to verify them"
    );
    verify(fs, &bucket, &rows, &uploaded, &store).await?;
    tracing::info!("verified");

    let errors = rows.iter().filter(|r| r.status.is_error()).count() as u64;
    let log_bucket = manifest.log_bucket().to_owned();
    let log_key = manifest.log_key(job_id);
    log::upload(store.as_ref(), &log_bucket, &log_key, log::render(&rows))
        .await
        .map_err(ImportError::Log)?;
    Ok(Outcome {
        rows,
        errors,
        log_bucket,
        log_key,
    })
}

/// The multipart upload an interrupted run left for `key`, with its parts by number (ETag,
/// size): the journal's, else the newest the store lists (older ones are aborted). Nothing is
/// resumed when neither knows one.
async fn resume_upload(
    store: &dyn ObjectStore,
    journal: &dyn Journal,
    bucket: &str,
    key: &str,
) -> (
    Option<String>,
    std::collections::BTreeMap<i32, (String, u64)>,
) {
    if let Some(id) = journal.open_upload(key) {
        // The store's list is the truth; the journal's own list stands in when the store
        // cannot list parts. An upload the store no longer knows is started afresh.
        match store.list_parts(bucket, key, &id).await {
            Ok(parts) => {
                tracing::info!(
                    key,
                    parts = parts.len(),
                    "resuming the journal's multipart upload"
                );
                let parts = parts
                    .into_iter()
                    .map(|p| (p.number, (p.etag, p.size)))
                    .collect();
                return (Some(id), parts);
            }
            Err(e) if e.code == "NoSuchUpload" => {}
            Err(_) => {
                let parts = journal.parts(key, &id);
                return (Some(id), parts);
            }
        }
    }
    let mut pending = match store.pending_uploads(bucket, key).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list multipart uploads; starting a new one");
            return (None, Default::default());
        }
    };
    let Some(newest) = pending.pop() else {
        return (None, Default::default());
    };
    for stale in pending {
        let _ = store.abort_multipart(bucket, key, &stale).await;
    }
    match store.list_parts(bucket, key, &newest).await {
        Ok(parts) => {
            tracing::info!(
                key,
                parts = parts.len(),
                "resuming an interrupted multipart upload"
            );
            let parts = parts
                .into_iter()
                .map(|p| (p.number, (p.etag, p.size)))
                .collect();
            (Some(newest), parts)
        }
        Err(_) => {
            let _ = store.abort_multipart(bucket, key, &newest).await;
            (None, Default::default())
        }
    }
}

/// What re-reading one file gave, or why it could not be re-read.
type Reread = Result<Sums, String>;

/// The sums a re-read computed.
#[derive(Debug, Clone)]
enum Sums {
    /// The whole file's MD5 and, when this run did not send its parts itself, the multipart
    /// ETag its parts give.
    Whole {
        md5: String,
        parts_etag: Option<String>,
    },
    /// The MD5 of each part, concatenated: for a file whose parts this run hashed as it sent
    /// them. Parts equal to those sent are the bytes the logged MD5 was computed over, so the
    /// whole file need not be hashed again; parts hash side by side, the whole file cannot.
    Parts(Vec<u8>),
}

/// Threads that re-read and hash side by side (more reads in flight, and every core hashing).
const REREAD_THREADS: usize = 4;
/// Parts hashed side by side.
const REREAD_LANES: u64 = crate::lanes::LANES as u64;
/// A piece of re-reading work for one thread.
#[derive(Debug, Clone)]
enum RereadWork {
    /// Consecutive files of one part each, hashed side by side.
    Files(std::ops::Range<usize>),
    /// Parts `parts` of a file whose parts this run sent, hashed side by side.
    Parts {
        file: usize,
        parts: std::ops::Range<u64>,
    },
    /// A file read in order and hashed whole (its parts too, when this run did not send them).
    Whole(usize),
}

impl RereadWork {
    fn first_file(&self) -> usize {
        match self {
            Self::Files(files) => files.start,
            Self::Parts { file, .. } | Self::Whole(file) => *file,
        }
    }
}

/// Splits re-reading `files` into pieces of work, in file order.
fn reread_plan(files: &[&Uploaded]) -> Vec<RereadWork> {
    let mut work = Vec::new();
    let mut batch: Option<std::ops::Range<usize>> = None;
    let mut batcher = crate::lanes::Batcher::default();
    for (i, u) in files.iter().enumerate() {
        if !u.multipart {
            let starts = batcher.starts_batch(u.size);
            match &mut batch {
                Some(range) if !starts => range.end = i + 1,
                _ => {
                    if let Some(range) = batch.replace(i..i + 1) {
                        work.push(RereadWork::Files(range));
                    }
                }
            }
            continue;
        }
        batcher.end();
        if let Some(range) = batch.take() {
            work.push(RereadWork::Files(range));
        }
        if u.part_md5s.is_some() {
            let parts = u.size.div_ceil(u.part_size);
            for start in (0..parts).step_by(REREAD_LANES as usize) {
                work.push(RereadWork::Parts {
                    file: i,
                    parts: start..(start + REREAD_LANES).min(parts),
                });
            }
        } else {
            work.push(RereadWork::Whole(i));
        }
    }
    if let Some(range) = batch {
        work.push(RereadWork::Files(range));
    }
    work
}

/// Re-reads `files` on `REREAD_THREADS` threads, a piece of work per thread at a time. After
/// a file that cannot be re-read, the files that come after it are not re-read (`None`).
fn reread_all(fs: &dyn FileSystem, files: &[&Uploaded]) -> Vec<Option<Reread>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let work = reread_plan(files);
    let next = AtomicUsize::new(0);
    let first_failure = AtomicUsize::new(usize::MAX);
    let results: std::sync::Mutex<Vec<Option<Reread>>> =
        std::sync::Mutex::new(vec![None; files.len()]);
    // Parts come back a group at a time, in any order: (first part, MD5s or why not).
    type Groups = Vec<(u64, Result<Vec<u8>, String>)>;
    let groups: std::sync::Mutex<std::collections::BTreeMap<usize, Groups>> =
        std::sync::Mutex::default();
    let fail = |i: usize, why: String| {
        first_failure.fetch_min(i, Ordering::Relaxed);
        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(Err(why));
    };
    std::thread::scope(|s| {
        for _ in 0..REREAD_THREADS.min(work.len()) {
            s.spawn(|| {
                let mut buffers: Vec<Vec<u8>> = Vec::new();
                loop {
                    let w = next.fetch_add(1, Ordering::Relaxed);
                    let Some(piece) = work.get(w) else { return };
                    if piece.first_file() > first_failure.load(Ordering::Relaxed) {
                        return;
                    }
                    match piece {
                        RereadWork::Files(range) => {
                            let sums = reread_files(fs, &files[range.clone()], &mut buffers);
                            for (k, sum) in sums.into_iter().enumerate() {
                                match sum {
                                    Ok(sum) => {
                                        results.lock().unwrap_or_else(|e| e.into_inner())
                                            [range.start + k] = Some(Ok(sum));
                                    }
                                    Err(why) => {
                                        fail(range.start + k, why);
                                        break;
                                    }
                                }
                            }
                        }
                        RereadWork::Parts { file, parts } => {
                            let md5s = reread_parts(fs, files[*file], parts.clone(), &mut buffers);
                            if let Err(why) = &md5s {
                                first_failure.fetch_min(*file, Ordering::Relaxed);
                                tracing::debug!(why, "re-reading parts failed");
                            }
                            groups
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(*file)
                                .or_default()
                                .push((parts.start, md5s));
                        }
                        RereadWork::Whole(i) => {
                            let result = reread(fs, files[*i]);
                            match result {
                                Ok(sum) => {
                                    results.lock().unwrap_or_else(|e| e.into_inner())[*i] =
                                        Some(Ok(sum));
                                }
                                Err(why) => fail(*i, why),
                            }
                        }
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    for (file, mut pieces) in groups.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let u = files[file];
        let expected = u.size.div_ceil(u.part_size).div_ceil(REREAD_LANES);
        if pieces.len() as u64 != expected {
            continue; // Stopped by an earlier file's failure: not re-read.
        }
        pieces.sort_unstable_by_key(|(start, _)| *start);
        let mut md5s = Vec::new();
        let mut sums = Ok(());
        for (_, piece) in pieces {
            match piece {
                Ok(m) => md5s.extend_from_slice(&m),
                Err(why) => {
                    sums = Err(why);
                    break;
                }
            }
        }
        results[file] = Some(sums.map(|()| Sums::Parts(md5s)));
    }
    results
}

/// Re-reads consecutive single-part `files` and hashes them side by side; stops after the
/// first that cannot be read.
fn reread_files(
    fs: &dyn FileSystem,
    files: &[&Uploaded],
    buffers: &mut Vec<Vec<u8>>,
) -> Vec<Result<Sums, String>> {
    if buffers.len() < files.len() {
        buffers.resize_with(files.len(), Vec::new);
    }
    let mut read = 0;
    let mut failure = None;
    for (u, buf) in files.iter().zip(buffers.iter_mut()) {
        let len = usize::try_from(u.size).unwrap_or(usize::MAX);
        buf.resize(len, 0);
        match read_exact(fs, u.id, 0, buf) {
            Ok(n) if n == len => read += 1,
            Ok(n) => {
                failure = Some(format!("the file ended at byte {n} on re-reading"));
                break;
            }
            Err(e) => {
                failure = Some(format!("re-reading failed: {e}"));
                break;
            }
        }
    }
    let messages: Vec<&[u8]> = buffers[..read].iter().map(Vec::as_slice).collect();
    let mut sums: Vec<Result<Sums, String>> = drivers::md5_lanes::digest_many(&messages)
        .into_iter()
        .map(|md5| {
            Ok(Sums::Whole {
                md5: hex::encode(md5),
                parts_etag: None,
            })
        })
        .collect();
    sums.extend(failure.map(Err));
    sums
}

/// Re-reads parts `parts` of `u` (numbered from 0) and returns their MD5s, concatenated.
fn reread_parts(
    fs: &dyn FileSystem,
    u: &Uploaded,
    parts: std::ops::Range<u64>,
    buffers: &mut Vec<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let ranges: Vec<(u64, u64)> = parts
        .map(|p| {
            let offset = p * u.part_size;
            (offset, u.part_size.min(u.size - offset))
        })
        .collect();
    let md5s = crate::lanes::range_md5s(&ranges, buffers, |offset, buf| {
        match read_exact(fs, u.id, offset, buf) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(n) => Err(format!(
                "the file ended at byte {} on re-reading",
                offset + n as u64
            )),
            Err(e) => Err(format!("re-reading failed: {e}")),
        }
    })?;
    Ok(md5s.concat())
}

/// Buffers of `READ_CHUNK` bytes between the thread that re-reads a large file and the one
/// that hashes it.
const REREAD_BUFFERS: usize = 2;

/// Re-reads file `u` in order: its MD5 and, when this run did not send its parts, its
/// multipart ETag. It is read on a second thread while this one hashes.
fn reread(fs: &dyn FileSystem, u: &Uploaded) -> Reread {
    let parts_too = u.multipart && u.part_md5s.is_none();
    let mut whole = Md5Lane::new();
    let (full_tx, full_rx) =
        std::sync::mpsc::sync_channel::<Result<(Vec<u8>, usize), String>>(REREAD_BUFFERS);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..=REREAD_BUFFERS {
        let _ = empty_tx.send(vec![0u8; READ_CHUNK]);
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut offset = 0u64;
            while offset < u.size {
                let Ok(mut buf) = empty_rx.recv() else { return };
                // Reads end at part boundaries, so parts can be hashed on their own.
                let want = (u.size - offset)
                    .min(READ_CHUNK as u64)
                    .min(u.part_size - offset % u.part_size);
                let want = usize::try_from(want).unwrap_or(READ_CHUNK);
                let piece = match read_exact(fs, u.id, offset, &mut buf[..want]) {
                    Ok(n) if n == want => Ok((buf, n)),
                    Ok(n) => Err(format!(
                        "the file ended at byte {} on re-reading",
                        offset + n as u64
                    )),
                    Err(e) => Err(format!("re-reading failed: {e}")),
                };
                let failed = piece.is_err();
                if full_tx.send(piece).is_err() || failed {
                    return;
                }
                offset += want as u64;
            }
        });
        // Dropped when hashing stops, so a reader waiting on either channel ends.
        let (full_rx, empty_tx) = (full_rx, empty_tx);
        let mut part = Md5Lane::new();
        let mut part_md5s: Vec<u8> = Vec::new();
        let mut in_part = 0u64;
        let mut offset = 0u64;
        while offset < u.size {
            // The reader only stops early after sending its error.
            let (buf, len) = match full_rx.recv() {
                Ok(Ok(piece)) => piece,
                Ok(Err(why)) => return Err(why),
                Err(_) => return Err("re-reading stopped".into()),
            };
            whole.update(&buf[..len]);
            offset += len as u64;
            if parts_too {
                part.update(&buf[..len]);
                in_part += len as u64;
                if in_part == u.part_size || offset == u.size {
                    part_md5s.extend_from_slice(&std::mem::take(&mut part).finalize());
                    in_part = 0;
                }
            }
            let _ = empty_tx.send(buf);
        }
        let md5 = hex::encode(whole.finalize());
        Ok(Sums::Whole {
            md5,
            parts_etag: parts_too.then(|| multipart_etag(&part_md5s)),
        })
    })
}

/// The ETag S3 gives a multipart object: the MD5 of its parts' MD5s, `-`, their number.
fn multipart_etag(part_md5s: &[u8]) -> String {
    format!(
        "{}-{}",
        hex::encode(drivers::md5_lanes::digest(part_md5s)),
        part_md5s.len() / 16
    )
}

/// HEAD requests verification keeps in flight.
const VERIFY_HEADS: usize = 32;
/// Objects to check from which one listing of their common prefix replaces a HEAD each.
const LIST_FROM: usize = 64;

/// The longest prefix all `keys` share, cut at a character boundary.
fn common_prefix(keys: &[String]) -> &str {
    let Some(first) = keys.first() else {
        return "";
    };
    let mut len = first.len();
    for k in &keys[1..] {
        len = first
            .bytes()
            .zip(k.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    &first[..len]
}

/// What the store says about each of `keys`: one listing of their common prefix when there are
/// many, and a HEAD for every key the listing did not show (or for all, when the store cannot
/// list).
async fn store_view(
    store: Arc<dyn ObjectStore>,
    bucket: String,
    keys: Vec<String>,
) -> Vec<Result<Option<ObjectInfo>, ObjectStoreError>> {
    type Head = (usize, Result<Option<ObjectInfo>, ObjectStoreError>);
    let mut found: Vec<Option<Result<Option<ObjectInfo>, ObjectStoreError>>> =
        vec![None; keys.len()];
    if keys.len() >= LIST_FROM {
        let prefix = common_prefix(&keys);
        // A prefix shared with many other objects is not listed to its end.
        let limit = keys.len().saturating_mul(4).saturating_add(1000);
        match store.list_objects(&bucket, prefix, limit).await {
            Ok(listed) => {
                let place: std::collections::HashMap<&str, usize> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (k.as_str(), i))
                    .collect();
                for o in listed {
                    if let Some(&i) = place.get(o.key.as_str()) {
                        found[i] = Some(Ok(Some(ObjectInfo {
                            size: o.size,
                            etag: o.etag,
                            content_type: None,
                        })));
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot list the bucket; one HEAD per object"),
        }
    }
    let joined = |done: Result<Head, tokio::task::JoinError>| match done {
        Ok(head) => Some(head),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: only when the runtime shuts down, and then nothing is waiting.
        Err(_) => None,
    };
    let mut heads: JoinSet<Head> = JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        if found[i].is_some() {
            continue;
        }
        while heads.len() >= VERIFY_HEADS {
            if let Some((k, head)) = heads.join_next().await.and_then(joined) {
                found[k] = Some(head);
            }
        }
        let (store, bucket, key) = (Arc::clone(&store), bucket.clone(), key.clone());
        heads.spawn(async move { (i, store.head_object(&bucket, &key).await) });
    }
    while let Some(done) = heads.join_next().await {
        if let Some((k, head)) = joined(done) {
            found[k] = Some(head);
        }
    }
    found
        .into_iter()
        .zip(&keys)
        .map(|(f, key)| {
            f.unwrap_or_else(|| {
                Err(ObjectStoreError {
                    operation: "HeadObject".into(),
                    bucket: bucket.clone(),
                    key: key.clone(),
                    code: "Cancelled".into(),
                    message: "the request did not finish".into(),
                })
            })
        })
        .collect()
}

/// Re-reads every uploaded file and compares its MD5 with the log, and compares the store's
/// ETag and size with what was uploaded. The store is asked (one listing, or HEADs) while the
/// files are re-read. The first file (in walk order) that differs fails the job.
async fn verify(
    fs: &dyn FileSystem,
    bucket: &str,
    rows: &[LogRow],
    uploaded: &[Uploaded],
    store: &Arc<dyn ObjectStore>,
) -> Result<(), ImportError> {
    let todo: Vec<&Uploaded> = uploaded
        .iter()
        .filter(|u| rows[u.row].status == RowStatus::Ok)
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = todo
        .iter()
        .map(|u| {
            let key = &rows[u.row].key;
            key.strip_prefix(&format!("{bucket}/"))
                .unwrap_or(key)
                .to_owned()
        })
        .collect();
    let asked = tokio::spawn(store_view(Arc::clone(store), bucket.to_owned(), keys));
    let reread = tokio::task::block_in_place(|| reread_all(fs, &todo));
    let infos = match asked.await {
        Ok(infos) => infos,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Vec::new(),
    };
    let fail = |u: &Uploaded, why: String| {
        Err(ImportError::Verification {
            file: rows[u.row].file.clone(),
            why,
        })
    };
    for (k, u) in todo.iter().enumerate() {
        let row = &rows[u.row];
        let expected = match reread.get(k) {
            Some(Some(Ok(Sums::Whole { md5, .. }))) if *md5 != row.md5 => {
                return fail(
                    u,
                    format!("MD5 {md5} on re-reading, {} when uploaded", row.md5),
                )
            }
            Some(Some(Ok(Sums::Whole { md5, parts_etag }))) => match (&u.part_md5s, parts_etag) {
                // The parts were hashed as they were sent, from the buffers the file's MD5
                // (just confirmed by the re-read) was computed from.
                (Some(sent), _) => multipart_etag(sent),
                (None, Some(etag)) => etag.clone(),
                (None, None) => md5.clone(),
            },
            Some(Some(Ok(Sums::Parts(md5s)))) => {
                let sent = u.part_md5s.as_deref().unwrap_or_default();
                if let Some(n) = (0..md5s.len().max(sent.len()) / 16)
                    .find(|&n| md5s.get(n * 16..n * 16 + 16) != sent.get(n * 16..n * 16 + 16))
                {
                    let hex_of = |m: &[u8]| m.get(n * 16..n * 16 + 16).map(hex::encode);
                    return fail(
                        u,
                        format!(
                            "part {}: MD5 {} on re-reading, {} when uploaded",
                            n + 1,
                            hex_of(md5s).unwrap_or_else(|| "(none)".into()),
                            hex_of(sent).unwrap_or_else(|| "(none)".into()),
                        ),
                    );
                }
                multipart_etag(sent)
            }
            Some(Some(Err(why))) => return fail(u, why.clone()),
            Some(None) | None => return fail(u, "re-reading stopped before this file".into()),
        };
        let info = match infos.get(k) {
            Some(Ok(Some(info))) => info,
            Some(Ok(None)) => return fail(u, "the object is missing from the bucket".into()),
            Some(Err(e)) => return fail(u, format!("HEAD failed: {e}")),
            None => return fail(u, "the store was not asked about it".into()),
        };
        if info.size != u.size {
            return fail(
                u,
                format!("the object has {} bytes, the file {}", info.size, u.size),
            );
        }
        if info.etag != expected {
            return fail(
                u,
                format!("the object's ETag is {}, expected {expected}", info.etag),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_fit_5_tb_in_10000_parts() {
        assert_eq!(part_size(0), MIN_PART_BYTES);
        assert_eq!(part_size(78 * 1024 * MIB), MIN_PART_BYTES);
        assert_eq!(part_size(80 * 1024 * MIB), 9 * MIB);
        let five_tb = MAX_OBJECT_BYTES;
        let p = part_size(five_tb);
        assert!(five_tb.div_ceil(p) <= MAX_PARTS);
        assert_eq!(p % MIB, 0);
    }

    #[test]
    fn common_prefixes_end_on_characters() {
        let keys = |k: &[&str]| k.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(common_prefix(&keys(&["p/a/x", "p/a/y", "p/ab"])), "p/a");
        assert_eq!(common_prefix(&keys(&["café", "cafè"])), "caf");
        assert_eq!(common_prefix(&keys(&["only"])), "only");
        assert_eq!(common_prefix(&keys(&["a", "b"])), "");
        assert_eq!(common_prefix(&[]), "");
    }

    #[test]
    fn paths_show_bad_bytes() {
        assert_eq!(display_path(b"caf\xe9/x"), "caf\\xe9/x");
        assert_eq!(display_path("café".as_bytes()), "café");
    }
}

#[cfg(test)]
mod pipeline_tests;
