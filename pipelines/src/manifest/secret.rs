//! Secrets from a manifest (pinCode, trueCryptPassword): never printed, wiped when dropped.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string. `Debug` and `Display` print `********`; the memory is zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself, for the one place that needs it (unlocking a volume, the operator's
    /// PIN prompt).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What a secret looks like wherever it is shown.
pub const REDACTED: &str = "********";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "******** ********");
        assert_eq!(s.expose(), "hunter2");
    }
}
