//! UpdateJob: replace a job's manifest before its transfer starts.

use pipelines::manifest::{self, JobType};

use super::{artifact_list, check_targets, job_artifacts, owned_job, require_live, ApiError};
use crate::api::{xml, ApiState, Request};

/// Handles UpdateJob.
pub async fn handle(state: &ApiState, req: &Request<'_>) -> Result<xml::Body, ApiError> {
    let job_id = req.required("JobId")?;
    let text = req.required("Manifest")?;
    let job_type_text = req.required("JobType")?;
    let validate_only = req.flag("ValidateOnly")?.unwrap_or(false);
    let job_type = JobType::parse(job_type_text).ok_or_else(|| {
        ApiError::invalid_parameter(format!(
            "JobType `{job_type_text}` is not Import or Export."
        ))
    })?;
    let job = owned_job(state, req, job_id)?;
    require_live(&job)?;
    if job.progress.transfer_started() {
        return Err(ApiError::unable_to_update(
            &job.job_id,
            job.progress.as_str(),
        ));
    }
    if !job.job_type.eq_ignore_ascii_case(job_type_text) {
        return Err(ApiError::invalid_parameter(format!(
            "Job {} is an {} job; UpdateJob cannot change it to {job_type_text}. Create a new job.",
            job.job_id, job.job_type
        )));
    }
    let manifest = manifest::parse(text.as_bytes(), job_type, &state.rules)?;
    if manifest.kind().as_str() != job.kind {
        return Err(ApiError::invalid_parameter(format!(
            "Job {} is a {} job; the new manifest describes a {} job. Create a new job instead.",
            job.job_id,
            job.kind,
            manifest.kind()
        )));
    }
    check_targets(state, &manifest).await?;
    let mut body = xml::Body::new();
    if validate_only {
        body.text("Success", "true");
        return Ok(body);
    }
    state.store.update_manifest(
        &job.job_id,
        &job.job_type,
        manifest.kind().as_str(),
        text,
        manifest.log_bucket(),
        &manifest.log_key(&job.job_id),
    )?;
    let (artifacts, warning) = job_artifacts(state, req, &job, &manifest).await?;
    body.text("Success", "true")
        .opt("WarningMessage", warning.as_deref());
    artifact_list(&mut body, &artifacts);
    Ok(body)
}
