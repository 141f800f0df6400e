//! Object keys of imported files: prefix + path, then substitutions, as the guide orders them.

use crate::manifest::{Substitutions, MAX_KEY_BYTES};

/// Why a file gets no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRejection {
    /// The file's path is not valid UTF-8 (the guide: such files are not imported).
    NotUtf8,
    /// The key would be longer than S3 allows.
    TooLong(usize),
    /// The substitutions turned the key into the empty string (400 InvalidSubstitution).
    EmptiedBySubstitution,
}

/// The key of the file at `path` (raw bytes, `/`-separated, relative to the root).
///
/// # Errors
///
/// The path is not UTF-8, the key is too long, or the substitutions emptied it.
pub fn object_key(
    prefix: &str,
    path: &[u8],
    substitutions: &Substitutions,
) -> Result<String, KeyRejection> {
    let path = std::str::from_utf8(path).map_err(|_| KeyRejection::NotUtf8)?;
    let key = substitutions.apply(&format!("{prefix}{path}"));
    if key.is_empty() {
        return Err(KeyRejection::EmptiedBySubstitution);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyRejection::TooLong(key.len()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_then_substitutions() {
        let none = Substitutions::default();
        assert_eq!(
            object_key("images/", b"README.txt", &none),
            Ok("images/README.txt".into())
        );
        // TSTD3: no slash after the prefix.
        assert_eq!(
            object_key("dropoff", b"images/wookie1.jpg", &none),
            Ok("dropoffimages/wookie1.jpg".into())
        );
        let subs = Substitutions::new(vec![("ZZ1/".into(), String::new())]);
        assert_eq!(object_key("", b"ZZ1/a.txt", &subs), Ok("a.txt".into()));
        assert_eq!(
            object_key("", b"ZZ1/", &subs),
            Err(KeyRejection::EmptiedBySubstitution)
        );
        assert_eq!(
            object_key("", b"caf\xe9", &none),
            Err(KeyRejection::NotUtf8)
        );
        assert_eq!(
            object_key("", "x".repeat(1025).as_bytes(), &none),
            Err(KeyRejection::TooLong(1025))
        );
    }
}
