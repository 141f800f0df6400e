//! The AWS side as the control plane sees it: do the job's buckets and vaults exist, in which
//! region, and putting a document into the log bucket. Implemented with the AWS SDK against
//! the configured endpoints (AWS itself, or a local server such as moto).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use pipelines::manifest::Region;

use crate::config::Config;

/// A boxed future, so the trait can be used as `dyn Targets`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A target could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct TargetError {
    /// What was being done (`HeadBucket my-bucket`).
    pub what: String,
    /// The service's answer or the connection error.
    pub message: String,
}

/// Questions CreateJob asks the targets.
pub trait Targets: Send + Sync {
    /// The region of `bucket`, or `None` when it does not exist.
    fn bucket_region<'a>(
        &'a self,
        bucket: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, TargetError>>;

    /// Whether Glacier vault `vault` exists in `region`.
    fn vault_exists<'a>(
        &'a self,
        region: Region,
        vault: &'a str,
    ) -> BoxFuture<'a, Result<bool, TargetError>>;

    /// Puts `body` at `bucket`/`key`.
    fn put_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), TargetError>>;
}

/// The targets through the AWS SDK.
pub struct SdkTargets {
    s3: aws_sdk_s3::Client,
    glacier: BTreeMap<&'static str, aws_sdk_glacier::Client>,
}

impl SdkTargets {
    /// Clients for every region, with the config's endpoints and profiles. The S3 client
    /// uses us-east-1's settings (bucket lookups are global); `endpoint_override` replaces
    /// every region's endpoint (stationd `--endpoint-url`).
    pub async fn new(config: &Config, endpoint_override: Option<&str>) -> Self {
        let mut glacier = BTreeMap::new();
        for region in Region::ALL {
            let shared = region_config(config, region, Service::Glacier, endpoint_override).await;
            glacier.insert(region.as_str(), aws_sdk_glacier::Client::new(&shared));
        }
        Self {
            s3: s3_client(config, endpoint_override).await,
            glacier,
        }
    }
}

/// The AWS services the station talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// S3: imports, exports, logs.
    S3,
    /// Glacier: image imports.
    Glacier,
    /// The EBS direct API: image imports.
    Ebs,
}

/// The SDK configuration of one service in one region: `endpoint_override` (stationd's and
/// stationctl's `--endpoint-url`) if given, else the region's endpoint for that service, else
/// the region's endpoint, else AWS's; the region's profile; credentials from the standard
/// chain.
pub async fn region_config(
    config: &Config,
    region: Region,
    service: Service,
    endpoint_override: Option<&str>,
) -> aws_config::SdkConfig {
    let target = config
        .targets
        .get(region.as_str())
        .cloned()
        .unwrap_or_default();
    let service_endpoint = match service {
        Service::S3 => target.s3_endpoint.as_deref(),
        Service::Glacier => target.glacier_endpoint.as_deref(),
        Service::Ebs => target.ebs_endpoint.as_deref(),
    };
    // Standard retries with exponential backoff and jitter; five attempts ride out a
    // store's brief overload without hiding a real outage for long.
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.as_str()))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5));
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = endpoint_override
        .or(service_endpoint)
        .or(target.endpoint.as_deref())
    {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// The S3 client: us-east-1's settings (bucket names are global), path-style addressing so
/// local S3 servers work.
pub async fn s3_client(config: &Config, endpoint_override: Option<&str>) -> aws_sdk_s3::Client {
    let shared = region_config(config, Region::UsEast1, Service::S3, endpoint_override).await;
    // Uploads carry Content-MD5, which the store checks; the SDK's own optional CRC32 of
    // every body would be one more pass over each byte.
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn describe<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> String {
    let (code, message) = pipelines::object_store::sdk_error_parts(e);
    format!("{code}: {message}")
}

impl Targets for SdkTargets {
    fn bucket_region<'a>(
        &'a self,
        bucket: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, TargetError>> {
        Box::pin(async move {
            match self.s3.get_bucket_location().bucket(bucket).send().await {
                Ok(out) => {
                    // An empty LocationConstraint means us-east-1.
                    let region = out
                        .location_constraint()
                        .map(|c| c.as_str().to_owned())
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "us-east-1".to_owned());
                    Ok(Some(region))
                }
                Err(e)
                    if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchBucket")
                        || e.raw_response().map(|r| r.status().as_u16()) == Some(404) =>
                {
                    Ok(None)
                }
                Err(e) => Err(TargetError {
                    what: format!("GetBucketLocation {bucket}"),
                    message: describe(&e),
                }),
            }
        })
    }

    fn vault_exists<'a>(
        &'a self,
        region: Region,
        vault: &'a str,
    ) -> BoxFuture<'a, Result<bool, TargetError>> {
        Box::pin(async move {
            let Some(client) = self.glacier.get(region.as_str()) else {
                return Ok(false);
            };
            match client
                .describe_vault()
                .account_id("-")
                .vault_name(vault)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                // AWS answers ResourceNotFoundException; moto answers VaultNotFound.
                Err(e)
                    if matches!(
                        e.as_service_error().and_then(|s| s.code()),
                        Some("ResourceNotFoundException" | "VaultNotFound")
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(TargetError {
                    what: format!("DescribeVault {vault} in {region}"),
                    message: describe(&e),
                }),
            }
        })
    }

    fn put_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            self.s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| TargetError {
                    what: format!("PutObject {bucket}/{key}"),
                    message: describe(&e),
                })
        })
    }
}
