//! ListJobs: the account's jobs, newest first, in pages.

use super::ApiError;
use crate::api::{xml, ApiState, Request};
use crate::job::ProgressCode;

/// The largest page.
const MAX_PAGE: usize = 1000;

/// Handles ListJobs.
pub fn handle(state: &ApiState, req: &Request<'_>) -> Result<xml::Body, ApiError> {
    let max = match req.param("MaxJobs") {
        None => MAX_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_parameter(format!(
                    "MaxJobs `{text}` must be a number from 1 to {MAX_PAGE}."
                )))
            }
        },
    };
    let (jobs, truncated) = state
        .store
        .list_jobs(req.account.id, req.param("Marker"), max)?;
    let mut body = xml::Body::new();
    body.nested("Jobs", |b| {
        for job in &jobs {
            b.nested("member", |b| {
                b.text("JobId", &job.job_id)
                    .text("CreationDate", &xml::timestamp(job.created_at))
                    .text(
                        "IsCanceled",
                        if job.progress == ProgressCode::Canceled {
                            "true"
                        } else {
                            "false"
                        },
                    )
                    .text("JobType", &job.job_type);
            });
        }
    })
    .text("IsTruncated", if truncated { "true" } else { "false" });
    Ok(body)
}
