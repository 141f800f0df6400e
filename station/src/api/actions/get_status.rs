//! GetStatus: a job's codes, log location and current manifest (secrets redacted).

use super::{artifact_list, owned_job, ApiError};
use crate::api::{xml, ApiState, Request};

/// Handles GetStatus.
pub fn handle(state: &ApiState, req: &Request<'_>) -> Result<xml::Body, ApiError> {
    let job = owned_job(state, req, req.required("JobId")?)?;
    let artifacts = state.store.artifacts(&job.job_id)?;
    let finished = matches!(
        job.progress,
        crate::job::ProgressCode::Complete | crate::job::ProgressCode::SuccessWithErrors
    );
    let log = finished.then_some((job.log_bucket.as_str(), job.log_key.as_str()));
    let mut body = xml::Body::new();
    body.text("JobId", &job.job_id)
        .text("JobType", &job.job_type)
        .text("LocationCode", job.location.as_str())
        .text("LocationMessage", job.location.message())
        .text("ProgressCode", job.progress.as_str())
        .text(
            "ProgressMessage",
            &job.progress.message(log, job.error_count),
        )
        .opt("Carrier", job.carrier.as_deref())
        .opt("TrackingNumber", job.tracking_number.as_deref())
        .text("LogBucket", &job.log_bucket)
        .text("LogKey", &job.log_key)
        .text("ErrorCount", &job.error_count.to_string())
        .text("Signature", &job.signature)
        .text(
            "SignatureFileContents",
            &pipelines::signature::file_contents(&job.job_id, &job.signature),
        )
        .text(
            "CurrentManifest",
            &pipelines::manifest::redact(&job.manifest),
        )
        .text("CreationDate", &xml::timestamp(job.created_at));
    artifact_list(&mut body, &artifacts);
    Ok(body)
}
