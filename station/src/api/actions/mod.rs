//! One module per action of the Query API.

mod cancel_job;
mod create_job;
mod get_shipping_label;
mod get_status;
mod list_jobs;
mod update_job;

use pipelines::manifest::{JobManifest, Manifest};

use super::error::ApiError;
use super::{xml, ApiState, Request};
use crate::job::{LocationCode, ProgressCode};
use crate::store::{now, Artifact, JobRecord};

/// A job expires when its device has not arrived 30 days after it was created.
pub const EXPIRY_SECONDS: i64 = 30 * 86_400;
/// CreateJob requests allowed per account in 24 hours (the guide's 50 jobs a day).
pub const JOBS_PER_DAY: u64 = 50;

/// Runs the action named `action`.
pub async fn dispatch(
    state: &ApiState,
    action: &str,
    req: &Request<'_>,
) -> Result<xml::Body, ApiError> {
    match action {
        "CreateJob" => create_job::handle(state, req).await,
        "UpdateJob" => update_job::handle(state, req).await,
        "CancelJob" => cancel_job::handle(state, req),
        "GetStatus" => get_status::handle(state, req),
        "ListJobs" => list_jobs::handle(state, req),
        "GetShippingLabel" => get_shipping_label::handle(state, req),
        other => Err(ApiError::unknown_operation(other)),
    }
}

/// The caller's job `job_id`, with expiry applied; another account's job does not exist.
fn owned_job(state: &ApiState, req: &Request<'_>, job_id: &str) -> Result<JobRecord, ApiError> {
    if !crate::job::is_job_id(job_id) {
        return Err(ApiError::invalid_job_id(job_id));
    }
    let mut job = state
        .store
        .job(job_id)?
        .filter(|j| j.account_id == req.account.id)
        .ok_or_else(|| ApiError::invalid_job_id(job_id))?;
    if job.progress == ProgressCode::Pending
        && job.location == LocationCode::NotReceived
        && now() - job.created_at > EXPIRY_SECONDS
    {
        state
            .store
            .set_progress(&job.job_id, ProgressCode::Expired)?;
        job.progress = ProgressCode::Expired;
    }
    Ok(job)
}

/// Refuses canceled and expired jobs.
fn require_live(job: &JobRecord) -> Result<(), ApiError> {
    match job.progress {
        ProgressCode::Canceled => Err(ApiError::canceled_job_id(&job.job_id)),
        ProgressCode::Expired => Err(ApiError::expired_job_id(&job.job_id)),
        _ => Ok(()),
    }
}

/// Checks that the manifest's buckets and vault exist, and an export's buckets share a region.
async fn check_targets(state: &ApiState, manifest: &Manifest) -> Result<(), ApiError> {
    let unreachable = |e: crate::targets::TargetError| {
        tracing::warn!(error = %e, "target check failed");
        ApiError::internal(format!(
            "The station could not check your buckets ({e}). Try again later."
        ))
    };
    let mut buckets: Vec<(&str, &str)> = vec![("logBucket", manifest.log_bucket())];
    match &manifest.job {
        JobManifest::S3Import(s3) => buckets.push(("bucket", &s3.bucket)),
        JobManifest::S3Export(export) => {
            for op in &export.operations {
                buckets.push(("exportBucket", &op.export_bucket));
            }
        }
        JobManifest::GlacierImport(g) => {
            let exists = state
                .targets
                .vault_exists(g.operation.region, &g.operation.vault_name)
                .await
                .map_err(unreachable)?;
            if !exists {
                return Err(ApiError::no_such_bucket(format!(
                    "The Glacier vault `{}` does not exist in {}. Create the vault, or change operations.vaultName.",
                    g.operation.vault_name, g.operation.region
                )));
            }
        }
        JobManifest::EbsImport(_) => {}
    }
    let mut regions: Vec<(&str, String)> = Vec::new();
    for (field, bucket) in buckets {
        match state.targets.bucket_region(bucket).await.map_err(unreachable)? {
            Some(region) => regions.push((bucket, region)),
            None => {
                return Err(ApiError::no_such_bucket(format!(
                    "The bucket `{bucket}` ({field}) does not exist. Create it, or change the manifest's {field}."
                )))
            }
        }
    }
    if matches!(manifest.job, JobManifest::S3Export(_)) {
        if let Some((first_bucket, first_region)) = regions.first() {
            if let Some((bucket, region)) = regions.iter().find(|(_, r)| r != first_region) {
                return Err(ApiError::multiple_regions(format!(
                    "The bucket `{first_bucket}` is in {first_region} but `{bucket}` is in {region}; an export's buckets and its log bucket must be in one region. Create one job per region."
                )));
            }
        }
    }
    Ok(())
}

/// `<ArtifactList>` of a job.
fn artifact_list(body: &mut xml::Body, artifacts: &[Artifact]) {
    body.nested("ArtifactList", |b| {
        for a in artifacts {
            b.nested("member", |b| {
                b.text("Description", &a.description).text("URL", &a.url);
            });
        }
    });
}

/// Makes the EBS/Glacier instructions PDF, stores it for download and puts it in the log
/// bucket; returns the artifacts.
async fn job_artifacts(
    state: &ApiState,
    req: &Request<'_>,
    job: &JobRecord,
    manifest: &Manifest,
) -> Result<(Vec<Artifact>, Option<String>), ApiError> {
    let (region, what) = match &manifest.job {
        JobManifest::EbsImport(e) => (e.operation.region, "an Amazon EBS snapshot"),
        JobManifest::GlacierImport(g) => (g.operation.region, "an Amazon Glacier archive"),
        _ => return Ok((Vec::new(), None)),
    };
    let barcode = pipelines::signature::barcode_text(&job.job_id, &job.signature);
    let pdf = crate::pdf::import_instructions(&crate::pdf::ImportInstructions {
        station: &state.station_name,
        job_id: &job.job_id,
        device_id: &manifest.common.device_id,
        region: region.as_str(),
        destination: what,
        barcode: &barcode,
    });
    let token = state
        .store
        .put_document(Some(&job.job_id), "application/pdf", &pdf)?;
    let key = format!(
        "{}import-instructions-{}.pdf",
        manifest.common.log_prefix, job.job_id
    );
    let warning = match state
        .targets
        .put_object(manifest.log_bucket(), &key, pdf, "application/pdf")
        .await
    {
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not put the PDF in the log bucket");
            Some(format!(
                "The job's PDF could not be written to your log bucket ({e}); download it from the ArtifactList URL."
            ))
        }
    };
    let artifacts = vec![Artifact {
        description: format!(
            "Device instructions and signature barcode for job {}",
            job.job_id
        ),
        url: format!("{}/documents/{token}.pdf", req.base_url),
    }];
    state.store.set_artifacts(&job.job_id, &artifacts)?;
    Ok((artifacts, warning))
}
