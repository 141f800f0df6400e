//! CancelJob: only a job whose transfer has not started can be canceled.

use super::{owned_job, require_live, ApiError};
use crate::api::{xml, ApiState, Request};
use crate::job::ProgressCode;

/// Handles CancelJob.
pub fn handle(state: &ApiState, req: &Request<'_>) -> Result<xml::Body, ApiError> {
    let job = owned_job(state, req, req.required("JobId")?)?;
    require_live(&job)?;
    if job.progress != ProgressCode::Pending {
        let state_text = match job.progress {
            ProgressCode::InProgress => "being loaded".to_owned(),
            other => format!("finished ({})", other.as_str()),
        };
        return Err(ApiError::unable_to_cancel(&job.job_id, &state_text));
    }
    state
        .store
        .set_progress(&job.job_id, ProgressCode::Canceled)?;
    tracing::info!(job = %job.job_id, "job canceled");
    let mut body = xml::Body::new();
    body.text("Success", "true");
    Ok(body)
}
