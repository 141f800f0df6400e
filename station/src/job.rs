//! A job's identity and status codes, as the guide defines them.

use rand::Rng;

/// Where the device is (the guide's Device Location Status Codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationCode {
    /// The station has not received the device.
    NotReceived,
    /// The device is at the station.
    AtAWS,
    /// The device has been shipped back.
    Returned,
}

impl LocationCode {
    /// The code as the API returns it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotReceived => "NotReceived",
            Self::AtAWS => "AtAWS",
            Self::Returned => "Returned",
        }
    }

    /// Parses a stored code.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::NotReceived, Self::AtAWS, Self::Returned]
            .into_iter()
            .find(|c| c.as_str() == text)
    }

    /// The guide's message for the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotReceived => "AWS has not received your device.",
            Self::AtAWS => "Your device is at AWS.",
            Self::Returned => "Your device has been returned.",
        }
    }
}

/// How the transfer is going (the guide's Job Progress Status Codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressCode {
    /// Not started.
    Pending,
    /// Loading.
    InProgress,
    /// Loaded without errors.
    Complete,
    /// Loaded, with errors in the log.
    SuccessWithErrors,
    /// Canceled by the customer.
    Canceled,
    /// Expired before the device arrived.
    Expired,
    /// The device did not work.
    DeviceError,
    /// The SIGNATURE file was invalid.
    InvalidSignature,
    /// The SIGNATURE file was missing.
    MissingSignature,
    /// The device, its power supply or connectors were missing.
    MissingDevice,
    /// Not a supported device.
    UnsupportedDeviceType,
    /// Not a supported filesystem.
    UnsupportedFileFormat,
    /// Not a supported power supply.
    UnsupportedPowerSupply,
}

const ALL_PROGRESS: [ProgressCode; 13] = [
    ProgressCode::Pending,
    ProgressCode::InProgress,
    ProgressCode::Complete,
    ProgressCode::SuccessWithErrors,
    ProgressCode::Canceled,
    ProgressCode::Expired,
    ProgressCode::DeviceError,
    ProgressCode::InvalidSignature,
    ProgressCode::MissingSignature,
    ProgressCode::MissingDevice,
    ProgressCode::UnsupportedDeviceType,
    ProgressCode::UnsupportedFileFormat,
    ProgressCode::UnsupportedPowerSupply,
];

impl ProgressCode {
    /// The code as the API returns it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Complete => "Complete",
            Self::SuccessWithErrors => "SuccessWithErrors",
            Self::Canceled => "Canceled",
            Self::Expired => "Expired",
            Self::DeviceError => "DeviceError",
            Self::InvalidSignature => "InvalidSignature",
            Self::MissingSignature => "MissingSignature",
            Self::MissingDevice => "MissingDevice",
            Self::UnsupportedDeviceType => "UnsupportedDeviceType",
            Self::UnsupportedFileFormat => "UnsupportedFileFormat",
            Self::UnsupportedPowerSupply => "UnsupportedPowerSupply",
        }
    }

    /// Parses a stored code.
    pub fn parse(text: &str) -> Option<Self> {
        ALL_PROGRESS.into_iter().find(|c| c.as_str() == text)
    }

    /// Whether the transfer has started (the manifest can no longer change).
    pub fn transfer_started(self) -> bool {
        !matches!(self, Self::Pending)
    }

    /// Whether the job has reached an end (it can no longer be canceled).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::InProgress)
    }

    /// The guide's message for the code; `log` is where the log went, `errors` the count.
    pub fn message(self, log: Option<(&str, &str)>, errors: u64) -> String {
        let (bucket, key) = log.unwrap_or(("", ""));
        match self {
            Self::Pending => "The specified job has not started.".into(),
            Self::InProgress => "The data on your device is currently being loaded.".into(),
            Self::Complete => format!(
                "The data loaded successfully. The log was saved to {key} in the bucket {bucket}."
            ),
            Self::SuccessWithErrors => format!(
                "The data load completed with {errors} errors. See {key} in the bucket {bucket} for more details."
            ),
            Self::Canceled => "The job was canceled.".into(),
            Self::Expired => "The job expired.".into(),
            Self::DeviceError => "The job was aborted. Your device would not function properly.".into(),
            Self::InvalidSignature => "The job was aborted. The SIGNATURE file was invalid.".into(),
            Self::MissingSignature => "The job was aborted. The SIGNATURE file was missing.".into(),
            Self::MissingDevice => "The job was aborted. Your device, power supply, or device connectors were missing.".into(),
            Self::UnsupportedDeviceType => "The job was aborted. AWS Import/Export requires a USB2 or eSATA connector type, or a 2.5\" or 3.5\" SATA hard drive.".into(),
            Self::UnsupportedFileFormat => "The job was aborted. The device's file system is not supported.".into(),
            Self::UnsupportedPowerSupply => "The job was aborted. The device's power supply is not supported.".into(),
        }
    }
}

/// The alphabet of job IDs: the guide's IDs (`53TX4`, `A36BC`) use capitals and digits.
const JOB_ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A random job ID of [`pipelines::manifest::JOB_ID_LEN`] characters; the store makes it unique.
pub fn new_job_id() -> String {
    let mut rng = rand::rng();
    (0..pipelines::manifest::JOB_ID_LEN)
        .map(|_| char::from(JOB_ID_ALPHABET[rng.random_range(0..JOB_ID_ALPHABET.len())]))
        .collect()
}

/// Whether `text` has the form of a job ID (so it can be looked up at all).
pub fn is_job_id(text: &str) -> bool {
    text.len() == pipelines::manifest::JOB_ID_LEN
        && text.bytes().all(|b| JOB_ID_ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_have_the_guides_form() {
        for _ in 0..100 {
            let id = new_job_id();
            assert!(is_job_id(&id), "{id}");
        }
        assert!(!is_job_id("abcde"));
        assert!(!is_job_id("ABCDEF"));
    }

    #[test]
    fn codes_round_trip() {
        for c in ALL_PROGRESS {
            assert_eq!(ProgressCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(LocationCode::parse("AtAWS"), Some(LocationCode::AtAWS));
        assert_eq!(
            ProgressCode::SuccessWithErrors.message(Some(("logs", "import-log-A")), 3),
            "The data load completed with 3 errors. See import-log-A in the bucket logs for more details."
        );
    }
}
