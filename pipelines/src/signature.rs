//! The SIGNATURE file and the barcode: what proves a device belongs to a job.
//!
//! CreateJob returns the SIGNATURE file's contents; the customer copies them to the root of
//! the device (S3 jobs) or tapes the barcode `1.0:JOBID:SIGNATURE` to it (EBS and Glacier). The
//! signature is an HMAC-SHA1 of the job ID under the station's signing key, so a station can
//! check a device without trusting anything else written on it.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// What the signature covers, so a signature of this kind is never valid for another use.
fn message(job_id: &str) -> Vec<u8> {
    format!("station-job-signature:{job_id}").into_bytes()
}

/// The base64 HMAC-SHA1 signature of `job_id` under `key`.
pub fn sign(key: &[u8], job_id: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(key, job_id).finalize().into_bytes())
}

fn mac(key: &[u8], job_id: &str) -> HmacSha1 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha1 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(&message(job_id));
    mac
}

/// Whether `signature` (base64) is the signature of `job_id` under `key`, compared in constant
/// time.
pub fn verify(key: &[u8], job_id: &str, signature: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    mac(key, job_id).verify_slice(&bytes).is_ok()
}

/// The SIGNATURE file's contents for a job, as CreateJob returns them.
pub fn file_contents(job_id: &str, signature: &str) -> String {
    format!("version:2.0\nsigningMethod:HmacSHA1\njobId:{job_id}\nsignature:{signature}\n")
}

/// The text of the barcode for EBS and Glacier devices: `1.0:JOBID:SIGNATURE`.
pub fn barcode_text(job_id: &str, signature: &str) -> String {
    format!("1.0:{job_id}:{signature}")
}

/// A SIGNATURE file or barcode as read from a device, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The job it claims.
    pub job_id: String,
    /// The signature it carries.
    pub signature: String,
}

/// Why presented text is not a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The text is not a SIGNATURE file or barcode.
    #[error("not a SIGNATURE file: {0}")]
    Malformed(String),
}

/// Parses a SIGNATURE file (CRLF, a BOM and surrounding whitespace tolerated, as editors
/// leave them).
///
/// # Errors
///
/// A field is missing or has an unexpected value.
pub fn parse_file(text: &[u8]) -> Result<Presented, SignatureError> {
    if text.len() > 4096 {
        return Err(SignatureError::Malformed(format!(
            "{} bytes; a SIGNATURE file is under 200",
            text.len()
        )));
    }
    let text = std::str::from_utf8(text)
        .map_err(|_| SignatureError::Malformed("not UTF-8 text".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut version = None;
    let mut method = None;
    let mut job_id = None;
    let mut signature = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(SignatureError::Malformed(format!(
                "line `{line}` has no `:`"
            )));
        };
        let slot = match key.trim() {
            "version" => &mut version,
            "signingMethod" => &mut method,
            "jobId" => &mut job_id,
            "signature" => &mut signature,
            other => {
                return Err(SignatureError::Malformed(format!(
                    "unknown field `{other}`"
                )));
            }
        };
        if slot.replace(value.trim().to_owned()).is_some() {
            return Err(SignatureError::Malformed(format!(
                "`{}` given twice",
                key.trim()
            )));
        }
    }
    match (version.as_deref(), method.as_deref()) {
        (Some("2.0"), Some("HmacSHA1")) => {}
        (Some(v), _) if v != "2.0" => {
            return Err(SignatureError::Malformed(format!(
                "version `{v}` is not 2.0"
            )))
        }
        (_, Some(m)) if m != "HmacSHA1" => {
            return Err(SignatureError::Malformed(format!(
                "signingMethod `{m}` is not HmacSHA1"
            )))
        }
        _ => {
            return Err(SignatureError::Malformed(
                "version or signingMethod missing".into(),
            ))
        }
    }
    match (job_id, signature) {
        (Some(job_id), Some(signature)) if !job_id.is_empty() && !signature.is_empty() => {
            Ok(Presented { job_id, signature })
        }
        _ => Err(SignatureError::Malformed(
            "jobId or signature missing".into(),
        )),
    }
}

/// Parses a scanned barcode `1.0:JOBID:SIGNATURE`.
///
/// # Errors
///
/// The text does not have that form.
pub fn parse_barcode(text: &str) -> Result<Presented, SignatureError> {
    let text = text.trim();
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("1.0"), Some(job_id), Some(signature))
            if !job_id.is_empty() && !signature.is_empty() =>
        {
            Ok(Presented {
                job_id: job_id.to_owned(),
                signature: signature.to_owned(),
            })
        }
        _ => Err(SignatureError::Malformed(
            "a barcode reads `1.0:JOBID:SIGNATURE`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn sign_verify_and_round_trip() {
        let sig = sign(KEY, "A36BC");
        assert_eq!(sig.len(), 28);
        assert!(verify(KEY, "A36BC", &sig));
        assert!(!verify(KEY, "A36BD", &sig));
        assert!(!verify(b"another key", "A36BC", &sig));
        assert!(!verify(KEY, "A36BC", "not base64!"));
        let file = file_contents("A36BC", &sig);
        assert_eq!(
            parse_file(file.replace('\n', "\r\n").as_bytes()),
            Ok(Presented {
                job_id: "A36BC".into(),
                signature: sig.clone()
            })
        );
        assert_eq!(
            parse_barcode(&barcode_text("A36BC", &sig)).map(|p| p.signature),
            Ok(sig)
        );
    }

    #[test]
    fn the_guides_example_file_parses() {
        let text = b"version:2.0\nsigningMethod:HmacSHA1\njobId:A36BC\nsignature:O8WnNGMfs6cwbpQHvJ0qXLrUdqI=\n";
        let p = parse_file(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.job_id, "A36BC");
        assert_eq!(p.signature, "O8WnNGMfs6cwbpQHvJ0qXLrUdqI=");
    }

    #[test]
    fn malformed_files_say_why() {
        for (text, why) in [
            (
                "version:1.0\nsigningMethod:HmacSHA1\njobId:A\nsignature:x",
                "version `1.0`",
            ),
            (
                "version:2.0\nsigningMethod:MD5\njobId:A\nsignature:x",
                "signingMethod `MD5`",
            ),
            (
                "version:2.0\nsigningMethod:HmacSHA1\nsignature:x",
                "jobId or signature missing",
            ),
            (
                "version:2.0\nsigningMethod:HmacSHA1\njobId:A\njobId:B\nsignature:x",
                "given twice",
            ),
            ("hello", "no `:`"),
        ] {
            let e = parse_file(text.as_bytes())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(why), "{text}: {e}");
        }
        assert!(parse_barcode("2.0:A:B").is_err());
        assert!(parse_barcode("1.0:A").is_err());
    }
}
