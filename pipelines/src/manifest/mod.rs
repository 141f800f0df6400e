//! The guide's manifest: the raw parse (`raw`), the validated model (`model`) and the rules
//! between them (`validate`).
//!
//! ```
//! use pipelines::manifest::{self, JobKind, JobType, Rules};
//!
//! let text = "manifestVersion: 3.0\ndeviceId: 49382\neraseDevice: yes\nlogBucket: myBucket\n\
//!     notificationEmail: jane.roe@example.com\nreturnAddress:\n  name: Jane Roe\n  \
//!     street1: 123 Any Street\n  city: Anytown\n  stateOrProvince: WA\n  \
//!     postalCode: 91011-1111\n  phoneNumber: 206-555-1111\n  country: USA\n\
//!     operations:\n  - destination: glacier\n    source: device\n    region: us-east-1\n    \
//!     vaultName: MyGlacierVault\n    archiveComment: July 24, 2012 daily archive\n";
//! let m = manifest::parse(text.as_bytes(), JobType::Import, &Rules::default()).unwrap();
//! assert_eq!(m.kind(), JobKind::GlacierImport);
//! ```

mod country;
mod date;
mod error;
mod model;
mod raw;
mod redact;
mod secret;
mod validate;

pub use country::{country_code, is_eu};
pub use date::HttpDate;
pub use error::{ManifestError, ManifestErrorCode, ManifestErrors};
pub use model::*;
pub use redact::redact;
pub use secret::{Secret, REDACTED};
pub use validate::{MAX_ARCHIVE_COMMENT_CHARS, MAX_KEY_BYTES};

/// What validation needs to know about the station and the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The facility's country (ISO 3166-1 alpha-2): customs are required for returns to other
    /// countries, except between EU members.
    pub facility_country: String,
    /// The length of job IDs, for the `logPrefix` + `import-log-` + job ID limit.
    pub job_id_len: usize,
}

/// The length of the job IDs the station issues (the guide's IDs look like `53TX4`).
pub const JOB_ID_LEN: usize = 5;

impl Default for Rules {
    fn default() -> Self {
        Self {
            facility_country: "US".to_owned(),
            job_id_len: JOB_ID_LEN,
        }
    }
}

/// Parses and validates a manifest for a job of `job_type`.
///
/// # Errors
///
/// Every problem found, in manifest order; the first is the one the API reports.
pub fn parse(bytes: &[u8], job_type: JobType, rules: &Rules) -> Result<Manifest, ManifestErrors> {
    let entries = raw::parse(bytes)?;
    validate::validate(&entries, job_type, rules).map_err(ManifestErrors::from_vec)
}

#[cfg(test)]
mod tests;
