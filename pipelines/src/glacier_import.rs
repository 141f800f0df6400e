//! The Glacier import pipeline: the whole raw device to one archive by multipart upload, its
//! SHA-256 tree hash computed once as the parts are read, resumable from a stored upload ID,
//! and the guide's two-line Glacier log.

use std::sync::Arc;

use bytes::Bytes;
use drivers::source::ReadAt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::manifest::{JobManifest, Manifest};
use crate::object_store::{ObjectStore, ObjectStoreError};
use crate::s3_import::Progress;
use crate::tree_hash::{self, Hash};
use crate::vault_store::{Archive, VaultStore, VaultStoreError};

const MIB: u64 = 1024 * 1024;
/// The guide's largest device for Glacier jobs: 4 TB.
pub const MAX_DEVICE_BYTES: u64 = 4_000_000_000_000;
/// Glacier's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// Glacier's largest part.
pub const MAX_PART_BYTES: u64 = 4096 * MIB;
/// Attempts per part before the import fails (the SDK retries transient errors inside each).
const PART_ATTEMPTS: u32 = 5;

/// The part size for a device of `size` bytes: the smallest power-of-two MiB that fits it in
/// 10,000 parts (so part tree hashes compose into the archive's).
pub fn part_size(size: u64) -> u64 {
    let mut part = MIB;
    while size.div_ceil(part) > MAX_PARTS && part < MAX_PART_BYTES {
        part *= 2;
    }
    part
}

/// Where a job's upload ID is kept between runs, so an interrupted import resumes.
pub trait UploadState: Send + Sync {
    /// The stored upload ID, if any.
    fn load(&self) -> Option<String>;
    /// Stores the upload ID.
    fn save(&self, upload_id: &str);
    /// Forgets it (the archive is complete, or the upload is gone).
    fn clear(&self);
}

/// The result of a Glacier import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlacierOutcome {
    /// The archive.
    pub archive: Archive,
    /// Its size (the device's).
    pub size: u64,
    /// Its tree hash, hex.
    pub tree_hash: String,
    /// Parts uploaded by this run (the rest were already stored).
    pub parts_uploaded: u64,
    /// The log's bucket.
    pub log_bucket: String,
    /// The log's key.
    pub log_key: String,
}

/// Why a Glacier import failed.
#[derive(Debug, thiserror::Error)]
pub enum GlacierError {
    /// The manifest is not a Glacier import's.
    #[error("the manifest describes a {0} job, not a Glacier import")]
    WrongKind(&'static str),
    /// The device is empty or over the guide's limit.
    #[error("{device}: {size} bytes; a Glacier import takes 1 byte to 4 TB. {what}")]
    DeviceSize {
        /// The device.
        device: String,
        /// Its size.
        size: u64,
        /// What to do.
        what: &'static str,
    },
    /// The device could not be read.
    #[error(transparent)]
    Read(#[from] drivers::source::IoError),
    /// The vault refused or failed.
    #[error(transparent)]
    Vault(#[from] VaultStoreError),
    /// The log could not be stored.
    #[error("the log could not be uploaded: {0}")]
    Log(ObjectStoreError),
}

/// A part's buffer whose memory is counted against the job's cap until the upload (and any
/// retry) is done with it: the permit lives as long as the buffer.
struct Counted {
    data: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// Reads `len` bytes at `offset` with large reads.
fn read_part(
    device: &dyn ReadAt,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, drivers::source::IoError> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    const READ: usize = 8 * 1024 * 1024;
    let mut done = 0usize;
    while done < buf.len() {
        let end = (done + READ).min(buf.len());
        tokio::task::block_in_place(|| {
            device.read_exact_at(offset + done as u64, &mut buf[done..end])
        })?;
        done = end;
    }
    Ok(buf)
}

/// Uploads a part, retrying a refused or failed upload with backoff.
async fn upload_with_retries(
    vault: Arc<dyn VaultStore>,
    name: Arc<str>,
    upload_id: Arc<str>,
    first: u64,
    body: Bytes,
    hash: String,
) -> Result<(), VaultStoreError> {
    // `Bytes` clones share the buffer: a retry does not copy the part.
    crate::retry::with_backoff(PART_ATTEMPTS, "part upload", || {
        vault.upload_part(&name, &upload_id, first, body.clone(), &hash)
    })
    .await
}

/// Imports `device` into the manifest's vault as one archive, with at most `concurrency`
/// parts in flight and at most `memory_cap` bytes of parts held (at least one part).
///
/// # Errors
///
/// The manifest is not a Glacier import's, the device is empty, too large or unreadable, the
/// vault refused the upload after retries, or the log could not be stored.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    device: Arc<dyn ReadAt>,
    manifest: &Manifest,
    job_id: &str,
    vault: Arc<dyn VaultStore>,
    objects: &dyn ObjectStore,
    state: &dyn UploadState,
    progress: &dyn Progress,
    memory_cap: u64,
    concurrency: usize,
) -> Result<GlacierOutcome, GlacierError> {
    let JobManifest::GlacierImport(glacier) = &manifest.job else {
        return Err(GlacierError::WrongKind(manifest.kind().as_str()));
    };
    let size = device.size();
    if size == 0 || size > MAX_DEVICE_BYTES {
        return Err(GlacierError::DeviceSize {
            device: device.describe(),
            size,
            what: if size == 0 {
                "The device is empty: nothing to archive."
            } else {
                "Import a larger device to S3 instead and archive it with a lifecycle rule."
            },
        });
    }
    let name = glacier.operation.vault_name.clone();
    let part = part_size(size);
    progress.planned(1, size);

    // Resume: the parts the stored upload already holds, by first byte.
    let mut stored: std::collections::BTreeMap<u64, String> = Default::default();
    let mut upload_id = None;
    if let Some(id) = state.load() {
        match vault.list_parts(&name, &id).await? {
            Some(parts) => {
                tracing::info!(upload = %id, parts = parts.len(), "resuming the Glacier upload");
                stored = parts.into_iter().map(|p| (p.first, p.tree_hash)).collect();
                upload_id = Some(id);
            }
            None => state.clear(),
        }
    }
    let upload_id = match upload_id {
        Some(id) => id,
        None => {
            let id = vault
                .initiate(&name, &glacier.operation.archive_comment, part)
                .await?;
            state.save(&id);
            id
        }
    };

    // Memory is counted in parts; requests in flight are bounded separately.
    let memory_parts = usize::try_from(memory_cap / part)
        .unwrap_or(usize::MAX)
        .clamp(1, Semaphore::MAX_PERMITS);
    let memory = Arc::new(Semaphore::new(memory_parts));
    let requests = Arc::new(Semaphore::new(concurrency.clamp(1, 256)));
    let stopped = |what: &str| {
        GlacierError::Vault(VaultStoreError {
            operation: "upload".into(),
            vault: name.clone(),
            code: "Stopped".into(),
            message: format!("{what} stopped before the import finished; run the import again"),
        })
    };
    let shared_name: Arc<str> = name.as_str().into();
    let shared_id: Arc<str> = upload_id.as_str().into();
    let mut hashes: Vec<Hash> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let collect = |result: Result<Result<(), VaultStoreError>, tokio::task::JoinError>| match result
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(GlacierError::from(e)),
        Err(_) => Err(stopped("a part upload task")),
    };
    let mut parts_uploaded = 0u64;
    let mut offset = 0u64;
    while offset < size {
        let len = part.min(size - offset);
        let permit = Arc::clone(&memory)
            .acquire_owned()
            .await
            .map_err(|_| stopped("the upload queue"))?;
        let body = Bytes::from_owner(Counted {
            data: read_part(device.as_ref(), offset, len)?,
            _permit: permit,
        });
        progress.bytes(len);
        let hash = tree_hash::tree_hash(&body);
        hashes.push(hash);
        let hex = hex::encode(hash);
        if stored.get(&offset) == Some(&hex) {
            // Already stored with the same bytes: the device has not changed.
            offset += len;
            continue;
        }
        parts_uploaded += 1;
        let request = Arc::clone(&requests)
            .acquire_owned()
            .await
            .map_err(|_| stopped("the upload queue"))?;
        let upload = upload_with_retries(
            Arc::clone(&vault),
            Arc::clone(&shared_name),
            Arc::clone(&shared_id),
            offset,
            body,
            hex,
        );
        tasks.spawn(async move {
            let result = upload.await;
            drop(request);
            result
        });
        while let Some(result) = tasks.try_join_next() {
            collect(result)?;
        }
        offset += len;
    }
    while let Some(result) = tasks.join_next().await {
        collect(result)?;
    }
    let tree = hex::encode(tree_hash::from_parts(&hashes));
    let archive = vault.complete(&name, &upload_id, size, &tree).await?;
    state.clear();

    let log_bucket = manifest.log_bucket().to_owned();
    let log_key = manifest.log_key(job_id);
    let text = glacier_log(
        crate::job_log::log_time(crate::job_log::now()),
        &name,
        &archive.location,
        size,
        &tree,
        &glacier.operation.archive_comment,
    );
    crate::job_log::upload(objects, &log_bucket, &log_key, text)
        .await
        .map_err(GlacierError::Log)?;
    Ok(GlacierOutcome {
        archive,
        size,
        tree_hash: tree,
        parts_uploaded,
        log_bucket,
        log_key,
    })
}

/// The guide's two-line Glacier log. The comment is quoted when it holds a comma or a quote.
pub fn glacier_log(
    date: String,
    vault: &str,
    location: &str,
    size: u64,
    tree_hash: &str,
    comment: &str,
) -> String {
    let comment = if comment.contains([',', '"']) {
        format!("\"{}\"", comment.replace('"', "\"\""))
    } else {
        comment.to_owned()
    };
    format!(
        "DATE, VAULT, ARCHIVE ID, SIZE, TREE HASH, ARCHIVE COMMENT\r\n{date}, {vault}, {location}, {size}, {tree_hash}, {comment}\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_are_powers_of_two_within_10000_parts() {
        assert_eq!(part_size(1), MIB);
        assert_eq!(part_size(10_000 * MIB), MIB);
        assert_eq!(part_size(10_000 * MIB + 1), 2 * MIB);
        let p = part_size(MAX_DEVICE_BYTES);
        assert_eq!(p, 512 * MIB);
        assert!(MAX_DEVICE_BYTES.div_ceil(p) <= MAX_PARTS);
    }

    #[test]
    fn the_log_has_two_lines_and_quotes_commas() {
        let log = glacier_log(
            "Tue 03 Feb 2009 21:57:43 GMT".into(),
            "MyGlacierVault",
            "/123/vaults/MyGlacierVault/archives/abc",
            42,
            "ff",
            "July 24, 2012 daily archive",
        );
        assert_eq!(
            log,
            "DATE, VAULT, ARCHIVE ID, SIZE, TREE HASH, ARCHIVE COMMENT\r\nTue 03 Feb 2009 21:57:43 GMT, MyGlacierVault, /123/vaults/MyGlacierVault/archives/abc, 42, ff, \"July 24, 2012 daily archive\"\r\n"
        );
    }
}
