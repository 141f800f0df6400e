//! The S3 side of imports and exports: an `ObjectStore` trait, and its implementation on
//! aws-sdk-s3 (any S3-compatible endpoint).

use std::future::Future;
use std::pin::Pin;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ObjectCannedAcl, StorageClass as S3StorageClass,
};
use base64::Engine;

use crate::manifest::{CannedAcl, HttpDate, StorageClass};

/// A boxed future, so the trait can be used as `dyn ObjectStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The headers and metadata an object is stored with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// Content-Type; `None` leaves the store's default.
    pub content_type: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// Content-Language.
    pub content_language: Option<String>,
    /// Expires.
    pub expires: Option<HttpDate>,
    /// The canned ACL; `None` for the bucket's default.
    pub acl: Option<CannedAcl>,
    /// The storage class; `None` for STANDARD.
    pub storage_class: Option<StorageClass>,
    /// User metadata (names without `x-amz-meta-`).
    pub metadata: Vec<(String, String)>,
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its size.
    pub size: u64,
    /// Its ETag, without quotes.
    pub etag: String,
    /// Its Content-Type.
    pub content_type: Option<String>,
}

/// An object a listing returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its ETag, without quotes.
    pub etag: String,
}

/// Bytes of an object, from a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChunk {
    /// The bytes, in one or more pieces (none from `get_object_into`: they are in its buffer).
    pub body: Vec<bytes::Bytes>,
    /// The object's ETag, without quotes.
    pub etag: String,
    /// The object's Content-Type.
    pub content_type: Option<String>,
    /// The object's whole size.
    pub size: u64,
}

/// A part a multipart upload already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// Its number, from 1.
    pub number: i32,
    /// Its ETag, without quotes (the MD5 of its bytes on S3).
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A store request that failed (after the SDK's retries).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} {bucket}/{key}: {code}: {message}")]
pub struct ObjectStoreError {
    /// The operation (`PutObject`, `UploadPart 3`, ...).
    pub operation: String,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The store's error code (`AccessDenied`, `NoSuchBucket`, `BadDigest`), or `Network`.
    pub code: String,
    /// The store's message.
    pub message: String,
}

/// Objects in buckets.
pub trait ObjectStore: Send + Sync {
    /// Stores `body` as one object with `Content-MD5`; returns the ETag.
    fn put_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        md5: [u8; 16],
        headers: &'a ObjectHeaders,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>>;

    /// Starts a multipart upload; returns its ID.
    fn create_multipart<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        headers: &'a ObjectHeaders,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>>;

    /// Uploads part `number` (from 1) with `Content-MD5`; returns its ETag.
    fn upload_part<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        number: i32,
        body: Vec<u8>,
        md5: [u8; 16],
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>>;

    /// Completes a multipart upload from (number, ETag) pairs; returns the object's ETag.
    fn complete_multipart<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        parts: Vec<(i32, String)>,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>>;

    /// Aborts a multipart upload, so no parts are left behind.
    fn abort_multipart<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectStoreError>>;

    /// HEAD: the object's size, ETag and type, or `None` when it does not exist.
    fn head_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ObjectInfo>, ObjectStoreError>>;

    /// The objects whose keys start with `prefix`, at most about `limit` of them (a listing
    /// that reaches `limit` stops there). A store that cannot list answers `NotImplemented`,
    /// and callers fall back to [`ObjectStore::head_object`].
    fn list_objects<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ListedObject>, ObjectStoreError>> {
        let _ = limit;
        Box::pin(async move { Err(not_implemented("ListObjectsV2", bucket, prefix)) })
    }

    /// The objects of `bucket` whose keys start with `prefix` and sort after `start_after`
    /// (excluded), in key order, stopping at `last` (included): what an export operation
    /// covers. Only the current version of each key is listed.
    fn list_range<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        start_after: Option<&'a str>,
        last: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ListedObject>, ObjectStoreError>> {
        let _ = (start_after, last);
        Box::pin(async move { Err(not_implemented("ListObjectsV2", bucket, prefix)) })
    }

    /// GET of the current version of an object: the whole of it, or `range` (first byte,
    /// length). With `if_match`, an object whose ETag changed is refused
    /// (`PreconditionFailed`).
    fn get_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        range: Option<(u64, u64)>,
        if_match: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectChunk, ObjectStoreError>> {
        let _ = (range, if_match);
        Box::pin(async move { Err(not_implemented("GetObject", bucket, key)) })
    }

    /// As [`ObjectStore::get_object`], with the body written into `buf`, which it must fill
    /// exactly (its length is the range's, or 0 for an empty object) instead of returned: a
    /// caller that reuses its buffers holds no more memory than they are, however the network
    /// delivered the bytes, and can choose their alignment.
    fn get_object_into<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        range: Option<(u64, u64)>,
        if_match: Option<&'a str>,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, Result<ObjectChunk, ObjectStoreError>> {
        Box::pin(async move {
            let mut chunk = self.get_object(bucket, key, range, if_match).await?;
            let mut filled = BodyFill::new(buf, "GetObject", bucket, key);
            for piece in chunk.body.drain(..) {
                filled.add(&piece)?;
            }
            filled.finish()?;
            Ok(chunk)
        })
    }

    /// HEAD of part `number` (from 1) of an object: the part's size and, for an object stored
    /// by multipart upload, how many parts it has.
    fn head_part<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        number: i32,
    ) -> BoxFuture<'a, Result<(u64, Option<u32>), ObjectStoreError>> {
        let _ = number;
        Box::pin(async move { Err(not_implemented("HeadObject", bucket, key)) })
    }

    /// The IDs of multipart uploads in progress for exactly `key`, oldest first.
    fn pending_uploads<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ObjectStoreError>>;

    /// The parts an upload holds.
    fn list_parts<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredPart>, ObjectStoreError>>;
}

/// The store on aws-sdk-s3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// A store over `client`.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }

    /// Sends a GetObject (of `range`, when given and not empty): the answer's ETag, type and
    /// whole size (no body yet), the body to read, and the operation's name for errors.
    async fn get_started(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<(ObjectChunk, ByteStream, String), ObjectStoreError> {
        let operation = match range {
            Some((start, len)) => format!("GetObject bytes {start}+{len}"),
            None => "GetObject".to_owned(),
        };
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(
                range
                    .filter(|&(_, len)| len > 0)
                    .map(|(start, len)| format!("bytes={start}-{}", start + len - 1)),
            )
            .set_if_match(if_match.map(|e| format!("\"{e}\"")))
            .send()
            .await
            .map_err(|e| error(operation.as_str(), bucket, key, &e))?;
        // Content-Range `bytes a-b/size` carries the whole size of a ranged answer.
        let size = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|n| n.parse().ok())
            .or_else(|| out.content_length().and_then(|n| u64::try_from(n).ok()))
            .unwrap_or(0);
        let chunk = ObjectChunk {
            body: Vec::new(),
            etag: unquote(out.e_tag()),
            content_type: out.content_type().map(str::to_owned),
            size,
        };
        Ok((chunk, out.body, operation))
    }

    /// ListObjectsV2 page by page: keys under `prefix` after `start_after`, up to and
    /// including `last`; the listing stops at the first page that reaches `limit` objects.
    async fn list_v2(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedObject>, ObjectStoreError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
                .set_start_after(start_after.map(str::to_owned))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| error("ListObjectsV2", bucket, prefix, &e))?;
            for o in out.contents() {
                let Some(key) = o.key() else { continue };
                if last.is_some_and(|last| key > last) {
                    return Ok(objects);
                }
                objects.push(ListedObject {
                    key: key.to_owned(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: unquote(o.e_tag()),
                });
            }
            token = out.next_continuation_token().map(str::to_owned);
            if out.is_truncated() != Some(true) || token.is_none() || objects.len() >= limit {
                return Ok(objects);
            }
        }
    }
}

/// The service's error code and message of an SDK error, or `Network` and a short
/// description when the request never got an answer. Shared by every store on the AWS SDK.
pub fn sdk_error_parts<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: &SdkError<E>,
) -> (String, String) {
    match e.as_service_error() {
        Some(s) => (
            s.code().unwrap_or("Error").to_owned(),
            s.message().unwrap_or("").to_owned(),
        ),
        None => (
            "Network".to_owned(),
            format!("{e:?}").chars().take(300).collect(),
        ),
    }
}

fn error<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: impl Into<String>,
    bucket: &str,
    key: &str,
    e: &SdkError<E>,
) -> ObjectStoreError {
    let (code, message) = sdk_error_parts(e);
    store_error(operation, bucket, key, code, message)
}

/// An error of `operation` on `bucket`/`key` with the store's (or our) `code` and `message`.
fn store_error(
    operation: impl Into<String>,
    bucket: &str,
    key: &str,
    code: impl Into<String>,
    message: impl Into<String>,
) -> ObjectStoreError {
    ObjectStoreError {
        operation: operation.into(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        code: code.into(),
        message: message.into(),
    }
}

/// A GET body copied into a caller's buffer, which it must fill exactly.
struct BodyFill<'b> {
    buf: &'b mut [u8],
    got: usize,
    operation: &'b str,
    bucket: &'b str,
    key: &'b str,
}

impl<'b> BodyFill<'b> {
    fn new(buf: &'b mut [u8], operation: &'b str, bucket: &'b str, key: &'b str) -> Self {
        Self {
            buf,
            got: 0,
            operation,
            bucket,
            key,
        }
    }

    /// Copies the next `piece`; more bytes than the buffer holds is an error.
    fn add(&mut self, piece: &[u8]) -> Result<(), ObjectStoreError> {
        let end = self.got + piece.len();
        let Some(to) = self.buf.get_mut(self.got..end) else {
            return Err(incomplete(
                self.operation.to_owned(),
                self.bucket,
                self.key,
                end as u64,
                self.buf.len() as u64,
            ));
        };
        to.copy_from_slice(piece);
        self.got = end;
        Ok(())
    }

    /// Fewer bytes than the buffer holds is an error.
    fn finish(self) -> Result<(), ObjectStoreError> {
        if self.got != self.buf.len() {
            return Err(incomplete(
                self.operation.to_owned(),
                self.bucket,
                self.key,
                self.got as u64,
                self.buf.len() as u64,
            ));
        }
        Ok(())
    }
}

/// A body of `got` bytes where `wanted` were asked for.
fn incomplete(
    operation: String,
    bucket: &str,
    key: &str,
    got: u64,
    wanted: u64,
) -> ObjectStoreError {
    let message = format!("{got} bytes came, {wanted} were asked for");
    store_error(operation, bucket, key, "IncompleteBody", message)
}

/// A body that broke off.
fn network(
    operation: &str,
    bucket: &str,
    key: &str,
    e: &impl std::fmt::Display,
) -> ObjectStoreError {
    store_error(operation, bucket, key, "Network", e.to_string())
}

fn not_implemented(operation: &str, bucket: &str, key: &str) -> ObjectStoreError {
    let message = "this store cannot do that";
    store_error(operation, bucket, key, "NotImplemented", message)
}

fn b64(md5: &[u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5)
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or("").trim_matches('"').to_owned()
}

fn acl(acl: CannedAcl) -> ObjectCannedAcl {
    ObjectCannedAcl::from(acl.as_str())
}

fn storage_class(class: StorageClass) -> S3StorageClass {
    S3StorageClass::from(class.as_str())
}

fn expires(date: HttpDate) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs(date.unix_seconds)
}

impl ObjectStore for S3Store {
    fn put_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        md5: [u8; 16],
        h: &'a ObjectHeaders,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            let mut req = self
                .client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_md5(b64(&md5))
                .body(ByteStream::from(body))
                .set_content_type(h.content_type.clone())
                .set_content_encoding(h.content_encoding.clone())
                .set_cache_control(h.cache_control.clone())
                .set_content_disposition(h.content_disposition.clone())
                .set_content_language(h.content_language.clone())
                .set_expires(h.expires.map(expires))
                .set_acl(h.acl.map(acl))
                .set_storage_class(h.storage_class.map(storage_class));
            for (k, v) in &h.metadata {
                req = req.metadata(k, v);
            }
            // Content-MD5 protects the body end to end; signing it too would hash every byte
            // again (SHA-256) for nothing.
            req.customize()
                .disable_payload_signing()
                .send()
                .await
                .map(|out| unquote(out.e_tag()))
                .map_err(|e| error("PutObject", bucket, key, &e))
        })
    }

    fn create_multipart<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        h: &'a ObjectHeaders,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            let mut req = self
                .client
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .set_content_type(h.content_type.clone())
                .set_content_encoding(h.content_encoding.clone())
                .set_cache_control(h.cache_control.clone())
                .set_content_disposition(h.content_disposition.clone())
                .set_content_language(h.content_language.clone())
                .set_expires(h.expires.map(expires))
                .set_acl(h.acl.map(acl))
                .set_storage_class(h.storage_class.map(storage_class));
            for (k, v) in &h.metadata {
                req = req.metadata(k, v);
            }
            let out = req
                .send()
                .await
                .map_err(|e| error("CreateMultipartUpload", bucket, key, &e))?;
            out.upload_id().map(str::to_owned).ok_or_else(|| {
                let message = "the store returned no upload ID";
                store_error("CreateMultipartUpload", bucket, key, "NoUploadId", message)
            })
        })
    }

    fn upload_part<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        number: i32,
        body: Vec<u8>,
        md5: [u8; 16],
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            self.client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_md5(b64(&md5))
                .body(ByteStream::from(body))
                // As PutObject: Content-MD5 protects the body, unsigned.
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map(|out| unquote(out.e_tag()))
                .map_err(|e| error(format!("UploadPart {number}"), bucket, key, &e))
        })
    }

    fn complete_multipart<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        parts: Vec<(i32, String)>,
    ) -> BoxFuture<'a, Result<String, ObjectStoreError>> {
        Box::pin(async move {
            let parts = parts
                .into_iter()
                .map(|(n, etag)| CompletedPart::builder().part_number(n).e_tag(etag).build())
                .collect();
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|out| unquote(out.e_tag()))
                .map_err(|e| error("CompleteMultipartUpload", bucket, key, &e))
        })
    }

    fn abort_multipart<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectStoreError>> {
        Box::pin(async move {
            self.client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| error("AbortMultipartUpload", bucket, key, &e))
        })
    }

    fn head_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ObjectInfo>, ObjectStoreError>> {
        Box::pin(async move {
            match self
                .client
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => Ok(Some(ObjectInfo {
                    size: out
                        .content_length()
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                    etag: unquote(out.e_tag()),
                    content_type: out.content_type().map(str::to_owned),
                })),
                Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(None),
                Err(e) => Err(error("HeadObject", bucket, key, &e)),
            }
        })
    }

    fn list_objects<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ListedObject>, ObjectStoreError>> {
        Box::pin(self.list_v2(bucket, prefix, None, None, limit))
    }

    fn list_range<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        start_after: Option<&'a str>,
        last: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ListedObject>, ObjectStoreError>> {
        Box::pin(self.list_v2(bucket, prefix, start_after, last, usize::MAX))
    }

    fn get_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        range: Option<(u64, u64)>,
        if_match: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectChunk, ObjectStoreError>> {
        Box::pin(async move {
            let (mut chunk, mut stream, operation) =
                self.get_started(bucket, key, range, if_match).await?;
            let mut got = 0u64;
            while let Some(piece) = stream.next().await {
                let piece = piece.map_err(|e| network(&operation, bucket, key, &e))?;
                got += piece.len() as u64;
                chunk.body.push(piece);
            }
            if let Some((_, len)) = range.filter(|&(_, len)| len > 0 && len != got) {
                return Err(incomplete(operation, bucket, key, got, len));
            }
            Ok(chunk)
        })
    }

    fn get_object_into<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        range: Option<(u64, u64)>,
        if_match: Option<&'a str>,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, Result<ObjectChunk, ObjectStoreError>> {
        Box::pin(async move {
            let (chunk, mut stream, operation) =
                self.get_started(bucket, key, range, if_match).await?;
            let mut filled = BodyFill::new(buf, &operation, bucket, key);
            while let Some(piece) = stream.next().await {
                let piece = piece.map_err(|e| network(&operation, bucket, key, &e))?;
                filled.add(&piece)?;
            }
            filled.finish()?;
            Ok(chunk)
        })
    }

    fn head_part<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        number: i32,
    ) -> BoxFuture<'a, Result<(u64, Option<u32>), ObjectStoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .head_object()
                .bucket(bucket)
                .key(key)
                .part_number(number)
                .send()
                .await
                .map_err(|e| error(format!("HeadObject part {number}"), bucket, key, &e))?;
            let size = out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            let parts = out.parts_count().and_then(|n| u32::try_from(n).ok());
            Ok((size, parts))
        })
    }

    fn pending_uploads<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ObjectStoreError>> {
        Box::pin(async move {
            let mut ids = Vec::new();
            let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
            loop {
                let out = self
                    .client
                    .list_multipart_uploads()
                    .bucket(bucket)
                    .prefix(key)
                    .set_key_marker(key_marker.clone())
                    .set_upload_id_marker(id_marker.clone())
                    .send()
                    .await
                    .map_err(|e| error("ListMultipartUploads", bucket, key, &e))?;
                for u in out.uploads() {
                    if u.key() == Some(key) {
                        if let Some(id) = u.upload_id() {
                            ids.push(id.to_owned());
                        }
                    }
                }
                if out.is_truncated() != Some(true) {
                    return Ok(ids);
                }
                key_marker = out.next_key_marker().map(str::to_owned);
                id_marker = out.next_upload_id_marker().map(str::to_owned);
                if key_marker.is_none() && id_marker.is_none() {
                    return Ok(ids);
                }
            }
        })
    }

    fn list_parts<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredPart>, ObjectStoreError>> {
        Box::pin(async move {
            let mut parts = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_parts()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .set_part_number_marker(marker.clone())
                    .send()
                    .await
                    .map_err(|e| error("ListParts", bucket, key, &e))?;
                for p in out.parts() {
                    if let Some(n) = p.part_number() {
                        let size = p.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                        parts.push(StoredPart {
                            number: n,
                            etag: unquote(p.e_tag()),
                            size,
                        });
                    }
                }
                if out.is_truncated() != Some(true) {
                    return Ok(parts);
                }
                marker = out.next_part_number_marker().map(str::to_owned);
                if marker.is_none() {
                    return Ok(parts);
                }
            }
        })
    }
}
