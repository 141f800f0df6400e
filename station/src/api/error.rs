//! API errors: the guide's codes with their HTTP status.

use pipelines::manifest::ManifestErrors;

/// An error the API returns to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code (`InvalidManifestFieldException`, `SignatureDoesNotMatch`, ...).
    pub code: String,
    /// The HTTP status.
    pub status: u16,
    /// What is wrong and what to do.
    pub message: String,
    /// `Sender` (the request is wrong) or `Receiver` (the station failed).
    pub kind: &'static str,
}

impl ApiError {
    fn new(code: &str, status: u16, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            status,
            message: message.into(),
            kind: "Sender",
        }
    }

    /// A required parameter is absent.
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            "MissingParameterException",
            400,
            format!("The request must contain the parameter {name}."),
        )
    }

    /// A parameter has a bad value.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", 400, message)
    }

    /// The job does not exist or belongs to another account.
    pub fn invalid_job_id(job_id: &str) -> Self {
        Self::new(
            "InvalidJobIdException",
            400,
            format!(
                "No job {job_id} is associated with your account. Check the job ID with ListJobs."
            ),
        )
    }

    /// The job expired.
    pub fn expired_job_id(job_id: &str) -> Self {
        Self::new(
            "ExpiredJobIdException",
            400,
            format!("Job {job_id} has expired: its device did not arrive within 30 days. Create a new job."),
        )
    }

    /// The job was canceled.
    pub fn canceled_job_id(job_id: &str) -> Self {
        Self::new(
            "CanceledJobIdException",
            400,
            format!("Job {job_id} has been canceled and is no longer valid."),
        )
    }

    /// The job can no longer be canceled.
    pub fn unable_to_cancel(job_id: &str, state: &str) -> Self {
        Self::new(
            "UnableToCancelJobIdException",
            409,
            format!("Job {job_id} cannot be canceled: it is {state}."),
        )
    }

    /// The job can no longer be updated.
    pub fn unable_to_update(job_id: &str, state: &str) -> Self {
        Self::new(
            "UnableToUpdateJobIdException",
            400,
            format!("Job {job_id} cannot be updated: it is {state}. A manifest can change only before the transfer starts."),
        )
    }

    /// The account created too many jobs today.
    pub fn quota_exceeded(limit: u64) -> Self {
        Self::new(
            "CreateJobQuotaExceededException",
            400,
            format!("Your account has created {limit} jobs in the last 24 hours, the limit. Try again later or contact the facility."),
        )
    }

    /// The action is not one of the service's.
    pub fn unknown_operation(action: &str) -> Self {
        Self::new(
            "UnknownOperationException",
            403,
            format!("The operation `{action}` is not valid."),
        )
    }

    /// The Version parameter is not 2010-06-01.
    pub fn invalid_version(version: &str) -> Self {
        Self::new(
            "InvalidVersionException",
            400,
            format!("API version `{version}` is not supported; use 2010-06-01."),
        )
    }

    /// The access key is unknown.
    pub fn unknown_access_key() -> Self {
        Self::new(
            "InvalidClientTokenIdException",
            403,
            "The AWS access key does not exist.",
        )
    }

    /// The request is not signed.
    pub fn missing_authentication() -> Self {
        Self::new(
            "MissingAuthenticationToken",
            403,
            "The request is not signed. Sign it with AWS Signature Version 4 (service IngestionService) or Version 2.",
        )
    }

    /// The signature does not verify.
    pub fn signature_mismatch(detail: &str) -> Self {
        Self::new(
            "SignatureDoesNotMatch",
            403,
            format!("The request signature we calculated does not match the signature you provided: {detail}. Check your secret access key and signing method."),
        )
    }

    /// The signature's time is too far from the station's clock.
    pub fn request_expired(detail: &str) -> Self {
        Self::new("RequestExpired", 403, format!("The request time {detail} is more than 15 minutes from the station's clock. Check your clock."))
    }

    /// A bucket or vault does not exist on its target.
    pub fn no_such_bucket(message: impl Into<String>) -> Self {
        Self::new("NoSuchBucketException", 400, message)
    }

    /// The buckets are in different regions.
    pub fn multiple_regions(message: impl Into<String>) -> Self {
        Self::new("MultipleRegionsException", 400, message)
    }

    /// The station failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: "Receiver",
            ..Self::new("InternalError", 500, message)
        }
    }
}

impl From<ManifestErrors> for ApiError {
    fn from(errors: ManifestErrors) -> Self {
        let first = errors.first();
        let code = first.code.exception_name();
        Self::new(code, 400, first.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "job store");
        Self::internal("The station's job store failed; try again. The operator has been told.")
    }
}
