//! CreateJob: validate the manifest, check its buckets, store the job, sign it.

use pipelines::manifest::{self, JobType};

use super::{artifact_list, check_targets, job_artifacts, ApiError, JOBS_PER_DAY};
use crate::api::{xml, ApiState, Request};
use crate::job::{LocationCode, ProgressCode};
use crate::store::{now, JobRecord};

/// Handles CreateJob.
pub async fn handle(state: &ApiState, req: &Request<'_>) -> Result<xml::Body, ApiError> {
    let job_type_text = req.required("JobType")?;
    let job_type = JobType::parse(job_type_text).ok_or_else(|| {
        ApiError::invalid_parameter(format!(
            "JobType `{job_type_text}` is not Import or Export."
        ))
    })?;
    let text = req.required("Manifest")?;
    let validate_only = req.flag("ValidateOnly")?.unwrap_or(false);
    let addendum = req.param("ManifestAddendum").map(str::to_owned);
    let manifest = manifest::parse(text.as_bytes(), job_type, &state.rules)?;
    check_targets(state, &manifest).await?;
    let job_type_name = match job_type {
        JobType::Import => "Import",
        JobType::Export => "Export",
    };
    let mut body = xml::Body::new();
    if validate_only {
        body.text("JobType", job_type_name);
        return Ok(body);
    }
    if state
        .store
        .jobs_created_since(req.account.id, now() - 86_400)?
        >= JOBS_PER_DAY
    {
        return Err(ApiError::quota_exceeded(JOBS_PER_DAY));
    }
    let signing_key = state.store.key().signing_key();
    let created_at = now();
    let job = state.store.insert_job(|job_id| JobRecord {
        job_id: job_id.to_owned(),
        account_id: req.account.id,
        job_type: job_type_name.to_owned(),
        kind: manifest.kind().as_str().to_owned(),
        manifest: text.to_owned(),
        manifest_addendum: addendum.clone(),
        location: LocationCode::NotReceived,
        progress: ProgressCode::Pending,
        error_count: 0,
        log_bucket: manifest.log_bucket().to_owned(),
        log_key: manifest.log_key(job_id),
        signature: pipelines::signature::sign(signing_key.as_ref(), job_id),
        carrier: None,
        tracking_number: None,
        created_at,
    })?;
    tracing::info!(job = %job.job_id, kind = %job.kind, account = %req.account.name, "job created");
    let (artifacts, warning) = job_artifacts(state, req, &job, &manifest).await?;
    body.text("JobId", &job.job_id)
        .text("JobType", job_type_name)
        .text("Signature", &job.signature)
        .text(
            "SignatureFileContents",
            &pipelines::signature::file_contents(&job.job_id, &job.signature),
        )
        .opt("WarningMessage", warning.as_deref());
    artifact_list(&mut body, &artifacts);
    Ok(body)
}
