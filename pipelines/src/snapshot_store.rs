//! The EBS side of image imports: a `SnapshotStore` trait, and its implementation on the EBS
//! direct API (aws-sdk-ebs).

use aws_sdk_ebs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ebs::types::{ChecksumAggregationMethod, ChecksumAlgorithm};
use bytes::Bytes;

use crate::object_store::BoxFuture;

/// The EBS direct API's block size.
pub const BLOCK_BYTES: usize = 512 * 1024;

/// A snapshot request that failed (after the SDK's retries).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} on snapshot {snapshot}: {code}: {message}")]
pub struct SnapshotStoreError {
    /// The operation (`PutSnapshotBlock 12`, ...).
    pub operation: String,
    /// The snapshot (empty before it exists).
    pub snapshot: String,
    /// The service's error code, or `Network`.
    pub code: String,
    /// The service's message.
    pub message: String,
}

/// Snapshots written block by block.
pub trait SnapshotStore: Send + Sync {
    /// Starts a snapshot of `volume_gib` GiB; returns its ID.
    fn start<'a>(
        &'a self,
        volume_gib: i64,
        description: &'a str,
    ) -> BoxFuture<'a, Result<String, SnapshotStoreError>>;

    /// Writes block `index` with its SHA-256 (base64). `data` is shared, not copied, so a
    /// retry sends the same buffer again.
    fn put_block<'a>(
        &'a self,
        snapshot: &'a str,
        index: i32,
        data: Bytes,
        sha256_b64: &'a str,
    ) -> BoxFuture<'a, Result<(), SnapshotStoreError>>;

    /// Completes the snapshot with the number of blocks written and the LINEAR aggregate of
    /// their checksums (base64).
    fn complete<'a>(
        &'a self,
        snapshot: &'a str,
        changed_blocks: i32,
        aggregate_b64: &'a str,
    ) -> BoxFuture<'a, Result<String, SnapshotStoreError>>;

    /// The indexes and tokens of the snapshot's blocks.
    fn list_blocks<'a>(
        &'a self,
        snapshot: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, String)>, SnapshotStoreError>>;

    /// Reads block `index` back.
    fn get_block<'a>(
        &'a self,
        snapshot: &'a str,
        index: i32,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, SnapshotStoreError>>;
}

/// The store on aws-sdk-ebs.
#[derive(Debug, Clone)]
pub struct EbsStore {
    client: aws_sdk_ebs::Client,
}

impl EbsStore {
    /// A store over `client` (configured for the operation's region).
    pub fn new(client: aws_sdk_ebs::Client) -> Self {
        Self { client }
    }
}

fn error<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: impl Into<String>,
    snapshot: &str,
    e: &SdkError<E>,
) -> SnapshotStoreError {
    let (code, message) = crate::object_store::sdk_error_parts(e);
    SnapshotStoreError {
        operation: operation.into(),
        snapshot: snapshot.to_owned(),
        code,
        message,
    }
}

impl SnapshotStore for EbsStore {
    fn start<'a>(
        &'a self,
        volume_gib: i64,
        description: &'a str,
    ) -> BoxFuture<'a, Result<String, SnapshotStoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .start_snapshot()
                .volume_size(volume_gib)
                .description(description)
                .send()
                .await
                .map_err(|e| error("StartSnapshot", "", &e))?;
            out.snapshot_id()
                .map(str::to_owned)
                .ok_or_else(|| SnapshotStoreError {
                    operation: "StartSnapshot".into(),
                    snapshot: String::new(),
                    code: "NoSnapshotId".into(),
                    message: "the service returned no snapshot ID".into(),
                })
        })
    }

    fn put_block<'a>(
        &'a self,
        snapshot: &'a str,
        index: i32,
        data: Bytes,
        sha256_b64: &'a str,
    ) -> BoxFuture<'a, Result<(), SnapshotStoreError>> {
        Box::pin(async move {
            let len = i32::try_from(data.len()).unwrap_or(i32::MAX);
            self.client
                .put_snapshot_block()
                .snapshot_id(snapshot)
                .block_index(index)
                .data_length(len)
                .block_data(ByteStream::from(data))
                .checksum(sha256_b64)
                .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| error(format!("PutSnapshotBlock {index}"), snapshot, &e))
        })
    }

    fn complete<'a>(
        &'a self,
        snapshot: &'a str,
        changed_blocks: i32,
        aggregate_b64: &'a str,
    ) -> BoxFuture<'a, Result<String, SnapshotStoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .complete_snapshot()
                .snapshot_id(snapshot)
                .changed_blocks_count(changed_blocks)
                .checksum(aggregate_b64)
                .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
                .checksum_aggregation_method(ChecksumAggregationMethod::ChecksumAggregationLinear)
                .send()
                .await
                .map_err(|e| error("CompleteSnapshot", snapshot, &e))?;
            Ok(out
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default())
        })
    }

    fn list_blocks<'a>(
        &'a self,
        snapshot: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(i32, String)>, SnapshotStoreError>> {
        Box::pin(async move {
            let mut blocks = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_snapshot_blocks()
                    .snapshot_id(snapshot)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| error("ListSnapshotBlocks", snapshot, &e))?;
                for b in out.blocks() {
                    if let (Some(index), Some(t)) = (b.block_index(), b.block_token()) {
                        blocks.push((index, t.to_owned()));
                    }
                }
                token = out
                    .next_token()
                    .map(str::to_owned)
                    .filter(|t| !t.is_empty());
                if token.is_none() {
                    return Ok(blocks);
                }
            }
        })
    }

    fn get_block<'a>(
        &'a self,
        snapshot: &'a str,
        index: i32,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, SnapshotStoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .get_snapshot_block()
                .snapshot_id(snapshot)
                .block_index(index)
                .block_token(token)
                .send()
                .await
                .map_err(|e| error(format!("GetSnapshotBlock {index}"), snapshot, &e))?;
            out.block_data
                .collect()
                .await
                .map(|b| b.into_bytes().to_vec())
                .map_err(|e| SnapshotStoreError {
                    operation: format!("GetSnapshotBlock {index}"),
                    snapshot: snapshot.to_owned(),
                    code: "Network".into(),
                    message: e.to_string(),
                })
        })
    }
}
