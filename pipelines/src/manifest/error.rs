//! Manifest errors: the guide's error code, the field, the line and what to do.

use std::fmt;

/// The guide's CreateJob error codes that a manifest can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestErrorCode {
    /// The text is not a well-formed manifest (YAML structure, encoding, quoting).
    MalformedManifest,
    /// A required field is absent.
    MissingManifestField,
    /// A field is present but its value is not acceptable.
    InvalidManifestField,
    /// The return address is not one we can ship to.
    InvalidAddress,
    /// Customs information is required but absent, or a required customs subfield is absent.
    MissingCustoms,
    /// A customs subfield has a value that is not acceptable.
    InvalidCustoms,
    /// The export `fileSystem` is not one the station can write.
    InvalidFileSystem,
    /// The operations target more than one region.
    MultipleRegions,
}

impl ManifestErrorCode {
    /// The guide's exception name, as the API returns it (`InvalidManifestFieldException`).
    pub fn exception_name(self) -> &'static str {
        match self {
            Self::MalformedManifest => "MalformedManifestException",
            Self::MissingManifestField => "MissingManifestFieldException",
            Self::InvalidManifestField => "InvalidManifestFieldException",
            Self::InvalidAddress => "InvalidAddressException",
            Self::MissingCustoms => "MissingCustomsException",
            Self::InvalidCustoms => "InvalidCustomsException",
            Self::InvalidFileSystem => "InvalidFileSystemException",
            Self::MultipleRegions => "MultipleRegionsException",
        }
    }
}

impl fmt::Display for ManifestErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.exception_name())
    }
}

/// One problem found in a manifest.
///
/// `Display` gives `field: line N: message`, the form the API and `stationctl` print after the
/// exception name. Messages never contain the value of `pinCode` or `trueCryptPassword`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The guide's error code.
    pub code: ManifestErrorCode,
    /// The field as a path (`returnAddress.country`, `operations[2].region`); empty when the
    /// problem is not in one field.
    pub field: String,
    /// The 1-based line of the manifest, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl ManifestError {
    /// A new error.
    pub fn new(
        code: ManifestErrorCode,
        field: impl Into<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            field: field.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a manifest, in the order of the manifest; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestErrors(Vec<ManifestError>);

impl ManifestErrors {
    /// Wraps a list, sorted into manifest order (errors without a line last). An empty list,
    /// which validation never produces, becomes one generic error so the type stays non-empty.
    pub(crate) fn from_vec(mut errors: Vec<ManifestError>) -> Self {
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        if errors.is_empty() {
            errors.push(ManifestError::new(
                ManifestErrorCode::MalformedManifest,
                "",
                None,
                "the manifest could not be validated.",
            ));
        }
        Self(errors)
    }

    /// The first problem, in manifest order: the one the API reports.
    pub fn first(&self) -> &ManifestError {
        // The constructor guarantees at least one element.
        &self.0[0]
    }

    /// All problems.
    pub fn all(&self) -> &[ManifestError] {
        &self.0
    }
}

impl From<ManifestError> for ManifestErrors {
    fn from(error: ManifestError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.first();
        write!(f, "{}: {}", first.code, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_exception_field_and_line() {
        let e = ManifestErrors::from(ManifestError::new(
            ManifestErrorCode::InvalidManifestField,
            "logPrefix",
            Some(7),
            "too long",
        ));
        assert_eq!(
            e.to_string(),
            "InvalidManifestFieldException: logPrefix: line 7: too long"
        );
    }

    #[test]
    fn errors_are_reported_in_line_order_with_unlocated_last() {
        let mk = |line| ManifestError::new(ManifestErrorCode::MalformedManifest, "", line, "x");
        let errors = ManifestErrors::from_vec(vec![mk(None), mk(Some(9)), mk(Some(2))]);
        let lines: Vec<_> = errors.all().iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(2), Some(9), None]);
    }
}
