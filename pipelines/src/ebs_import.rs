//! The EBS import pipeline: the whole raw device to an EBS snapshot through the EBS direct
//! API, 512 KiB blocks with their SHA-256, all-zero blocks not sent, a LINEAR aggregate
//! checksum, a read-back verification, and the guide's S3/EBS log.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use drivers::md5_lanes::Md5Lane;
use drivers::source::ReadAt;
use sha2::Digest as _;
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::job_log::{self as log, LogRow, RowStatus};
use crate::manifest::{JobManifest, Manifest};
use crate::object_store::{ObjectStore, ObjectStoreError};
use crate::s3_import::Progress;
use crate::snapshot_store::{SnapshotStore, SnapshotStoreError, BLOCK_BYTES};

/// The guide's largest device for EBS jobs: 16 TB.
pub const MAX_DEVICE_BYTES: u64 = 16_000_000_000_000;
const GIB: u64 = 1024 * 1024 * 1024;
/// Device reads of this many blocks at a time.
const READ_BLOCKS: usize = 16;
const CHUNK_BYTES: u64 = (BLOCK_BYTES * READ_BLOCKS) as u64;
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
    /// A task of the import ended early (a panic or a shutdown); run the import again.
    #[error("{0} stopped before the import finished; run the import again")]
    Stopped(String),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A device read whose memory is counted against the job's cap until its last block is sent:
/// the permit lives as long as the buffer.
struct Counted {
    data: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Hashes a block and writes it, retrying with backoff; returns its index and SHA-256.
async fn put_block(
    store: Arc<dyn SnapshotStore>,
    snapshot: Arc<str>,
    index: i32,
    data: Bytes,
) -> Result<(i32, [u8; 32]), SnapshotStoreError> {
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let checksum = b64(&sha);
    // `Bytes` clones share the buffer: a retry does not copy the block.
    crate::retry::with_backoff(BLOCK_ATTEMPTS, "block upload", || {
        store.put_block(&snapshot, index, data.clone(), &checksum)
    })
    .await?;
    Ok((index, sha))
}

/// Reads the device in chunks on a blocking thread, each chunk counted against `memory`,
/// feeding `chunks` (for the uploads) and `md5` (the device's MD5, on its own thread so
/// neither reading nor uploading waits for it).
fn read_device(
    device: &dyn ReadAt,
    memory: &Arc<Semaphore>,
    chunks: &tokio::sync::mpsc::Sender<(u64, Bytes)>,
    md5: &std::sync::mpsc::Sender<Bytes>,
) -> Result<(), EbsError> {
    let size = device.size();
    let handle = tokio::runtime::Handle::current();
    let mut offset = 0u64;
    while offset < size {
        let len = usize::try_from(CHUNK_BYTES.min(size - offset)).unwrap_or(0);
        let blocks = u32::try_from(len.div_ceil(BLOCK_BYTES)).unwrap_or(u32::MAX);
        let Ok(permit) = handle.block_on(Arc::clone(memory).acquire_many_owned(blocks)) else {
            return Ok(()); // The import stopped.
        };
        let mut data = vec![0u8; len];
        device.read_exact_at(offset, &mut data)?;
        let chunk = Bytes::from_owner(Counted {
            data,
            _permit: permit,
        });
        let _ = md5.send(chunk.clone());
        if chunks.blocking_send((offset, chunk)).is_err() {
            return Ok(()); // The import stopped.
        }
        offset += len as u64;
    }
    Ok(())
}

/// Whether `block` is all zeros: OR-folds 4 KiB at a time (a loop the compiler vectorises,
/// unlike a byte-by-byte early exit) and stops at the first piece with a set bit.
fn is_zero(block: &[u8]) -> bool {
    block
        .chunks(4096)
        .all(|piece| piece.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

fn stopped(what: &str) -> EbsError {
    EbsError::Stopped(what.to_owned())
}

/// Imports `device` into a new EBS snapshot, with at most `concurrency` requests in flight
/// and at most `memory_cap` bytes of device data held.
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
    concurrency: usize,
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
    let snapshot: Arc<str> = store.start(volume_gib, job_id).await?.into();
    let concurrency = concurrency.clamp(1, 256);

    // Memory in blocks; at least two chunks so reading overlaps sending.
    let memory_blocks = usize::try_from(memory_cap / BLOCK_BYTES as u64)
        .unwrap_or(usize::MAX)
        .clamp(2 * READ_BLOCKS, Semaphore::MAX_PERMITS);
    let memory = Arc::new(Semaphore::new(memory_blocks));
    let (chunk_tx, mut chunk_rx) = tokio::sync::mpsc::channel::<(u64, Bytes)>(2);
    let (md5_tx, md5_rx) = std::sync::mpsc::channel::<Bytes>();
    let md5_thread = tokio::task::spawn_blocking(move || {
        let mut whole = Md5Lane::new();
        for chunk in md5_rx {
            whole.update(&chunk);
        }
        hex::encode(whole.finalize())
    });
    let reader = {
        let device = Arc::clone(&device);
        let memory = Arc::clone(&memory);
        tokio::task::spawn_blocking(move || {
            read_device(device.as_ref(), &memory, &chunk_tx, &md5_tx)
        })
    };

    let requests = Arc::new(Semaphore::new(concurrency));
    let mut checksums: Vec<(i32, [u8; 32])> = Vec::new();
    let mut uploads = tokio::task::JoinSet::new();
    let collect =
        |result: Result<Result<(i32, [u8; 32]), SnapshotStoreError>, tokio::task::JoinError>,
         checksums: &mut Vec<(i32, [u8; 32])>|
         -> Result<(), EbsError> {
            match result {
                Ok(Ok(done)) => {
                    checksums.push(done);
                    Ok(())
                }
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(stopped("a block upload task")),
            }
        };
    let sent = async {
        while let Some((offset, chunk)) = chunk_rx.recv().await {
            progress.bytes(chunk.len() as u64);
            for (i, start) in (0..chunk.len()).step_by(BLOCK_BYTES).enumerate() {
                let end = (start + BLOCK_BYTES).min(chunk.len());
                if is_zero(&chunk[start..end]) {
                    continue; // A new snapshot reads as zeros where nothing was written.
                }
                let index =
                    i32::try_from(offset / BLOCK_BYTES as u64 + i as u64).unwrap_or(i32::MAX);
                let data = if end - start == BLOCK_BYTES {
                    chunk.slice(start..end)
                } else {
                    // The last block of a device that is not a whole number of blocks is padded.
                    let mut padded = chunk[start..end].to_vec();
                    padded.resize(BLOCK_BYTES, 0);
                    Bytes::from(padded)
                };
                let permit = Arc::clone(&requests)
                    .acquire_owned()
                    .await
                    .map_err(|_| stopped("the upload queue"))?;
                let put = put_block(Arc::clone(&store), Arc::clone(&snapshot), index, data);
                uploads.spawn(async move {
                    let result = put.await;
                    drop(permit);
                    result
                });
                while let Some(result) = uploads.try_join_next() {
                    collect(result, &mut checksums)?;
                }
            }
        }
        while let Some(result) = uploads.join_next().await {
            collect(result, &mut checksums)?;
        }
        Ok::<(), EbsError>(())
    }
    .await;
    if let Err(e) = sent {
        memory.close(); // Stops the reader.
        drop(chunk_rx);
        uploads.abort_all();
        return Err(e);
    }
    reader.await.map_err(|_| stopped("the device reader"))??;

    // LINEAR: SHA-256 of the blocks' checksums concatenated in block order.
    checksums.sort_unstable_by_key(|(index, _)| *index);
    let mut aggregate = Sha256::new();
    for (_, sha) in &checksums {
        aggregate.update(sha);
    }
    let changed = i32::try_from(checksums.len()).unwrap_or(i32::MAX);
    store
        .complete(&snapshot, changed, &b64(&aggregate.finalize()))
        .await?;

    let verified = verify_snapshot(&store, &snapshot, &checksums, verify, concurrency).await?;
    // The MD5 thread's tail overlaps CompleteSnapshot and the read-back.
    let md5 = md5_thread.await.map_err(|_| stopped("the MD5 thread"))?;

    let log_bucket = manifest.log_bucket().to_owned();
    let log_key = manifest.log_key(job_id);
    let row = LogRow {
        time: log::now(),
        file: device.describe(),
        status: RowStatus::Ok,
        key: snapshot.to_string(),
        md5: md5.clone(),
        bytes: size,
        content_type: String::new(),
        etag: String::new(),
    };
    log::upload(objects, &log_bucket, &log_key, log::render(&[row]))
        .await
        .map_err(EbsError::Log)?;
    Ok(EbsOutcome {
        snapshot_id: snapshot.to_string(),
        changed_blocks: checksums.len() as u64,
        size,
        md5,
        verified_blocks: verified,
        log_bucket,
        log_key,
    })
}

/// A block read back: its index, the SHA-256 sent and the SHA-256 read.
type ReadBack = (i32, [u8; 32], [u8; 32]);

/// Lists the snapshot's blocks (they must be exactly the written ones) and reads back all or a
/// sample of them, `concurrency` at a time, comparing each block's SHA-256 with the one sent as
/// it arrives. The read-back needs the completed snapshot: the EBS direct API lists and reads
/// only completed snapshots.
async fn verify_snapshot(
    store: &Arc<dyn SnapshotStore>,
    snapshot: &Arc<str>,
    checksums: &[(i32, [u8; 32])],
    verify: Verify,
    concurrency: usize,
) -> Result<u64, EbsError> {
    let mut blocks = store.list_blocks(snapshot).await?;
    blocks.sort_unstable_by_key(|(index, _)| *index);
    if blocks.len() != checksums.len()
        || blocks.iter().zip(checksums).any(|((a, _), (b, _))| a != b)
    {
        let listed: Vec<i32> = blocks.iter().map(|(i, _)| *i).collect();
        let written: Vec<i32> = checksums.iter().map(|(i, _)| *i).collect();
        return Err(EbsError::Verification(format!(
            "the snapshot lists blocks {listed:?}, the blocks written were {written:?}"
        )));
    }
    let count = blocks.len();
    let mut reads = tokio::task::JoinSet::new();
    let mut verified = 0;
    let check = |result: Result<Result<ReadBack, SnapshotStoreError>, tokio::task::JoinError>|
     -> Result<(), EbsError> {
        match result {
            Ok(Ok((_, want, got))) if want == got => Ok(()),
            Ok(Ok((index, _, _))) => Err(EbsError::Verification(format!(
                "block {index} of snapshot {snapshot} read back differs from the device; import the device again"
            ))),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(stopped("a block read-back task")),
        }
    };
    for (n, ((index, token), (_, want))) in blocks.into_iter().zip(checksums).enumerate() {
        let sampled = match verify {
            Verify::All => true,
            Verify::Sampled(every) => n % every.max(1) == 0 || n + 1 == count,
        };
        if !sampled {
            continue;
        }
        if reads.len() >= concurrency {
            if let Some(result) = reads.join_next().await {
                check(result)?;
                verified += 1;
            }
        }
        let store = Arc::clone(store);
        let snapshot = Arc::clone(snapshot);
        let want = *want;
        reads.spawn(async move {
            let data = store.get_block(&snapshot, index, &token).await?;
            let got: [u8; 32] = Sha256::digest(&data).into();
            Ok((index, want, got))
        });
    }
    while let Some(result) = reads.join_next().await {
        check(result)?;
        verified += 1;
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_are_found_wherever_the_set_byte_is() {
        let mut block = vec![0u8; BLOCK_BYTES];
        assert!(is_zero(&block));
        for at in [0, 4095, 4096, BLOCK_BYTES - 1] {
            block[at] = 1;
            assert!(!is_zero(&block), "a byte set at {at}");
            block[at] = 0;
        }
        assert!(is_zero(&block[..100]));
    }
}
