//! The EBS import pipeline: the whole raw device to an EBS snapshot through the EBS direct
//! API, 512 KiB blocks with their SHA-256, all-zero blocks not sent, a LINEAR aggregate
//! checksum, a read-back verification, and the guide's S3/EBS log.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use drivers::source::ReadAt;
use md5::{Digest as _, Md5};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::manifest::{JobManifest, Manifest};
use crate::object_store::{ObjectHeaders, ObjectStore, ObjectStoreError};
use crate::s3_import::log::{self, LogRow, RowStatus};
use crate::s3_import::Progress;
use crate::snapshot_store::{SnapshotStore, SnapshotStoreError, BLOCK_BYTES};

/// The guide's largest device for EBS jobs: 16 TB.
pub const MAX_DEVICE_BYTES: u64 = 16_000_000_000_000;
const GIB: u64 = 1024 * 1024 * 1024;
/// Device reads of this many blocks at a time.
const READ_BLOCKS: usize = 16;
/// Attempts per block before the import fails.
const BLOCK_ATTEMPTS: u32 = 5;

/// How much of the snapshot is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Every written block.
    All,
    /// Every n-th written block, and the first and last.
    Sampled(usize),
}

/// The result of an EBS import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbsOutcome {
    /// The snapshot.
    pub snapshot_id: String,
    /// Blocks written (the rest were all zeros).
    pub changed_blocks: u64,
    /// The device's size.
    pub size: u64,
    /// The device's MD5, hex.
    pub md5: String,
    /// Blocks read back and compared.
    pub verified_blocks: u64,
    /// The log's bucket.
    pub log_bucket: String,
    /// The log's key.
    pub log_key: String,
}

/// Why an EBS import failed.
#[derive(Debug, thiserror::Error)]
pub enum EbsError {
    /// The manifest is not an EBS import's.
    #[error("the manifest describes a {0} job, not an EBS import")]
    WrongKind(&'static str),
    /// The device is empty or over the guide's limit.
    #[error("{device}: {size} bytes; an EBS import takes 1 byte to 16 TB")]
    DeviceSize {
        /// The device.
        device: String,
        /// Its size.
        size: u64,
    },
    /// The device could not be read.
    #[error(transparent)]
    Read(#[from] drivers::source::IoError),
    /// The snapshot service refused or failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotStoreError),
    /// What was read back differs from the device.
    #[error("verification failed: {0}")]
    Verification(String),
    /// The log could not be stored.
    #[error("the log could not be uploaded: {0}")]
    Log(ObjectStoreError),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn put_with_retries(
    store: Arc<dyn SnapshotStore>,
    snapshot: String,
    index: i32,
    data: Vec<u8>,
    checksum: String,
) -> Result<(), SnapshotStoreError> {
    crate::retry::with_backoff(BLOCK_ATTEMPTS, "block upload", || {
        store.put_block(&snapshot, index, data.clone(), &checksum)
    })
    .await
}

/// Imports `device` into a new EBS snapshot.
///
/// # Errors
///
/// The manifest is not an EBS import's, the device is empty, too large or unreadable, the
/// service refused a block after retries, the read-back differs, or the log was not stored.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    device: Arc<dyn ReadAt>,
    manifest: &Manifest,
    job_id: &str,
    store: Arc<dyn SnapshotStore>,
    objects: &dyn ObjectStore,
    progress: &dyn Progress,
    memory_cap: u64,
    verify: Verify,
) -> Result<EbsOutcome, EbsError> {
    if !matches!(manifest.job, JobManifest::EbsImport(_)) {
        return Err(EbsError::WrongKind(manifest.kind().as_str()));
    }
    let size = device.size();
    if size == 0 || size > MAX_DEVICE_BYTES {
        return Err(EbsError::DeviceSize {
            device: device.describe(),
            size,
        });
    }
    progress.planned(1, size);
    let volume_gib = i64::try_from(size.div_ceil(GIB)).unwrap_or(i64::MAX);
    let snapshot = store.start(volume_gib, job_id).await?;

    let in_flight = usize::try_from(memory_cap / BLOCK_BYTES as u64)
        .unwrap_or(1)
        .clamp(1, 256);
    let memory = Arc::new(Semaphore::new(in_flight));
    let mut checksums: BTreeMap<i32, [u8; 32]> = BTreeMap::new();
    let mut whole = Md5::new();
    let mut tasks = Vec::new();
    let chunk = (BLOCK_BYTES * READ_BLOCKS) as u64;
    let mut offset = 0u64;
    let mut buf = vec![0u8; BLOCK_BYTES * READ_BLOCKS];
    while offset < size {
        let len = usize::try_from(chunk.min(size - offset)).unwrap_or(0);
        tokio::task::block_in_place(|| device.read_exact_at(offset, &mut buf[..len]))?;
        whole.update(&buf[..len]);
        progress.bytes(len as u64);
        for (i, block) in buf[..len].chunks(BLOCK_BYTES).enumerate() {
            if block.iter().all(|&b| b == 0) {
                continue; // A new snapshot reads as zeros where nothing was written.
            }
            let index = i32::try_from(offset / BLOCK_BYTES as u64 + i as u64).unwrap_or(i32::MAX);
            // The last block of a device that is not a whole number of blocks is padded.
            let mut data = block.to_vec();
            data.resize(BLOCK_BYTES, 0);
            let sha: [u8; 32] = Sha256::digest(&data).into();
            checksums.insert(index, sha);
            let permit = Arc::clone(&memory)
                .acquire_owned()
                .await
                .map_err(|_| EbsError::Verification("the upload queue closed".into()))?;
            let task = tokio::spawn(put_with_retries(
                Arc::clone(&store),
                snapshot.clone(),
                index,
                data,
                b64(&sha),
            ));
            tasks.push(tokio::spawn(async move {
                let result = task.await;
                drop(permit);
                result
            }));
        }
        offset += len as u64;
    }
    for task in tasks {
        match task.await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e.into()),
            _ => return Err(EbsError::Verification("a block upload task stopped".into())),
        }
    }
    // LINEAR: SHA-256 of the blocks' checksums concatenated in block order.
    let mut aggregate = Sha256::new();
    for sha in checksums.values() {
        aggregate.update(sha);
    }
    let changed = i32::try_from(checksums.len()).unwrap_or(i32::MAX);
    store
        .complete(&snapshot, changed, &b64(&aggregate.finalize()))
        .await?;

    let verified = verify_snapshot(store.as_ref(), &snapshot, &checksums, verify).await?;

    let md5 = hex::encode(whole.finalize());
    let log_bucket = manifest.log_bucket().to_owned();
    let log_key = manifest.log_key(job_id);
    let row = LogRow {
        time: now(),
        file: device.describe(),
        status: RowStatus::Ok,
        key: snapshot.clone(),
        md5: md5.clone(),
        bytes: size,
        content_type: String::new(),
        etag: String::new(),
    };
    let text = log::render(&[row]);
    let text_md5: [u8; 16] = Md5::digest(text.as_bytes()).into();
    let headers = ObjectHeaders {
        content_type: Some("text/csv; charset=utf-8".into()),
        ..ObjectHeaders::default()
    };
    objects
        .put_object(&log_bucket, &log_key, text.into_bytes(), text_md5, &headers)
        .await
        .map_err(EbsError::Log)?;
    Ok(EbsOutcome {
        snapshot_id: snapshot,
        changed_blocks: checksums.len() as u64,
        size,
        md5,
        verified_blocks: verified,
        log_bucket,
        log_key,
    })
}

/// Lists the snapshot's blocks (they must be exactly the written ones) and reads back all or a
/// sample of them, comparing each with its checksum.
async fn verify_snapshot(
    store: &dyn SnapshotStore,
    snapshot: &str,
    checksums: &BTreeMap<i32, [u8; 32]>,
    verify: Verify,
) -> Result<u64, EbsError> {
    let mut blocks = store.list_blocks(snapshot).await?;
    blocks.sort();
    let listed: Vec<i32> = blocks.iter().map(|(i, _)| *i).collect();
    let written: Vec<i32> = checksums.keys().copied().collect();
    if listed != written {
        return Err(EbsError::Verification(format!(
            "the snapshot lists blocks {listed:?}, the blocks written were {written:?}"
        )));
    }
    let mut verified = 0;
    for (n, (index, token)) in blocks.iter().enumerate() {
        let sampled = match verify {
            Verify::All => true,
            Verify::Sampled(every) => n % every.max(1) == 0 || n + 1 == blocks.len(),
        };
        if !sampled {
            continue;
        }
        let data = store.get_block(snapshot, *index, token).await?;
        let sha: [u8; 32] = Sha256::digest(&data).into();
        if checksums.get(index) != Some(&sha) {
            return Err(EbsError::Verification(format!(
                "block {index} read back differs from the device"
            )));
        }
        verified += 1;
    }
    Ok(verified)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}
