//! The Glacier side of image imports: a `VaultStore` trait, and its implementation on
//! aws-sdk-glacier (multipart uploads, as the guide's 4 TB devices need).

use aws_sdk_glacier::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_glacier::primitives::ByteStream;
use bytes::Bytes;

use crate::object_store::BoxFuture;

/// A vault request that failed (after the SDK's retries).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} on vault {vault}: {code}: {message}")]
pub struct VaultStoreError {
    /// The operation (`UploadMultipartPart bytes 0-8388607`, ...).
    pub operation: String,
    /// The vault.
    pub vault: String,
    /// The service's error code, or `Network`.
    pub code: String,
    /// The service's message.
    pub message: String,
}

/// A part already stored by a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// Its first byte in the archive.
    pub first: u64,
    /// Its last byte (inclusive).
    pub last: u64,
    /// Its tree hash, hex.
    pub tree_hash: String,
}

/// A finished archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Its ID.
    pub id: String,
    /// `/<account>/vaults/<vault>/archives/<id>`.
    pub location: String,
}

/// Archives in vaults.
pub trait VaultStore: Send + Sync {
    /// Starts a multipart upload; returns its ID.
    fn initiate<'a>(
        &'a self,
        vault: &'a str,
        description: &'a str,
        part_size: u64,
    ) -> BoxFuture<'a, Result<String, VaultStoreError>>;

    /// Uploads the part starting at byte `first` with its tree hash (hex). `body` is shared,
    /// not copied, so a retry sends the same buffer again.
    fn upload_part<'a>(
        &'a self,
        vault: &'a str,
        upload_id: &'a str,
        first: u64,
        body: Bytes,
        tree_hash: &'a str,
    ) -> BoxFuture<'a, Result<(), VaultStoreError>>;

    /// The parts an upload has stored; `None` when the upload no longer exists.
    fn list_parts<'a>(
        &'a self,
        vault: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<StoredPart>>, VaultStoreError>>;

    /// Completes an upload of `size` bytes whose tree hash (hex) is `tree_hash`.
    fn complete<'a>(
        &'a self,
        vault: &'a str,
        upload_id: &'a str,
        size: u64,
        tree_hash: &'a str,
    ) -> BoxFuture<'a, Result<Archive, VaultStoreError>>;

    /// Aborts an upload.
    fn abort<'a>(
        &'a self,
        vault: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<(), VaultStoreError>>;
}

/// The vault store on aws-sdk-glacier, for the account of the credentials (`-`).
#[derive(Debug, Clone)]
pub struct GlacierStore {
    client: aws_sdk_glacier::Client,
}

impl GlacierStore {
    /// A store over `client` (already configured for the operation's region).
    pub fn new(client: aws_sdk_glacier::Client) -> Self {
        Self { client }
    }
}

fn error<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: impl Into<String>,
    vault: &str,
    e: &SdkError<E>,
) -> VaultStoreError {
    let (code, message) = crate::object_store::sdk_error_parts(e);
    VaultStoreError {
        operation: operation.into(),
        vault: vault.to_owned(),
        code,
        message,
    }
}

fn parse_range(range: &str) -> Option<(u64, u64)> {
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

impl VaultStore for GlacierStore {
    fn initiate<'a>(
        &'a self,
        vault: &'a str,
        description: &'a str,
        part_size: u64,
    ) -> BoxFuture<'a, Result<String, VaultStoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .initiate_multipart_upload()
                .account_id("-")
                .vault_name(vault)
                .archive_description(description)
                .part_size(part_size.to_string())
                .send()
                .await
                .map_err(|e| error("InitiateMultipartUpload", vault, &e))?;
            out.upload_id()
                .map(str::to_owned)
                .ok_or_else(|| VaultStoreError {
                    operation: "InitiateMultipartUpload".into(),
                    vault: vault.into(),
                    code: "NoUploadId".into(),
                    message: "the service returned no upload ID".into(),
                })
        })
    }

    fn upload_part<'a>(
        &'a self,
        vault: &'a str,
        upload_id: &'a str,
        first: u64,
        body: Bytes,
        tree_hash: &'a str,
    ) -> BoxFuture<'a, Result<(), VaultStoreError>> {
        Box::pin(async move {
            let last = first + body.len() as u64 - 1;
            let range = format!("bytes {first}-{last}/*");
            self.client
                .upload_multipart_part()
                .account_id("-")
                .vault_name(vault)
                .upload_id(upload_id)
                .range(&range)
                .checksum(tree_hash)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| error(format!("UploadMultipartPart {range}"), vault, &e))
        })
    }

    fn list_parts<'a>(
        &'a self,
        vault: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<StoredPart>>, VaultStoreError>> {
        Box::pin(async move {
            let mut parts = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_parts()
                    .account_id("-")
                    .vault_name(vault)
                    .upload_id(upload_id)
                    .set_marker(marker.clone())
                    .send()
                    .await;
                let out = match out {
                    Ok(out) => out,
                    Err(e)
                        if e.as_service_error().and_then(|s| s.code())
                            == Some("ResourceNotFoundException") =>
                    {
                        return Ok(None)
                    }
                    Err(e) => return Err(error("ListParts", vault, &e)),
                };
                for p in out.parts() {
                    if let (Some((first, last)), Some(hash)) = (
                        p.range_in_bytes().and_then(parse_range),
                        p.sha256_tree_hash(),
                    ) {
                        parts.push(StoredPart {
                            first,
                            last,
                            tree_hash: hash.to_owned(),
                        });
                    }
                }
                marker = out.marker().map(str::to_owned).filter(|m| !m.is_empty());
                if marker.is_none() {
                    return Ok(Some(parts));
                }
            }
        })
    }

    fn complete<'a>(
        &'a self,
        vault: &'a str,
        upload_id: &'a str,
        size: u64,
        tree_hash: &'a str,
    ) -> BoxFuture<'a, Result<Archive, VaultStoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .complete_multipart_upload()
                .account_id("-")
                .vault_name(vault)
                .upload_id(upload_id)
                .archive_size(size.to_string())
                .checksum(tree_hash)
                .send()
                .await
                .map_err(|e| error("CompleteMultipartUpload", vault, &e))?;
            Ok(Archive {
                id: out.archive_id().unwrap_or_default().to_owned(),
                location: out.location().unwrap_or_default().to_owned(),
            })
        })
    }

    fn abort<'a>(
        &'a self,
        vault: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<(), VaultStoreError>> {
        Box::pin(async move {
            self.client
                .abort_multipart_upload()
                .account_id("-")
                .vault_name(vault)
                .upload_id(upload_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| error("AbortMultipartUpload", vault, &e))
        })
    }
}
