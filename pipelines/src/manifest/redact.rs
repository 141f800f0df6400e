//! Redaction of manifest text for display and logs: pinCode and trueCryptPassword values
//! become `********`, even in a manifest that does not parse.

use super::raw::is_secret_key;
use super::secret::REDACTED;

/// The manifest text with the values of `pinCode` and `trueCryptPassword` replaced.
///
/// Works line by line so it also covers manifests that fail to parse: a secret key (with or
/// without a space after the colon, as a list item or not) has its value replaced, and so do
/// the more-indented lines that continue it.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The indentation of a secret key whose value may continue on the following lines.
    let mut continuing: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let (body, ending) = split_ending(line);
        let indent = body.len() - body.trim_start().len();
        if let Some(key_indent) = continuing {
            if body.trim().is_empty() || indent > key_indent {
                if body.trim().is_empty() {
                    out.push_str(line);
                } else {
                    out.push_str(&body[..indent]);
                    out.push_str(REDACTED);
                    out.push_str(ending);
                }
                continue;
            }
            continuing = None;
        }
        let content = body.trim_start();
        let item = content.strip_prefix("- ").map(str::trim_start);
        let keyed = item.unwrap_or(content);
        let key_indent = indent + (content.len() - keyed.len());
        match keyed.split_once(':') {
            Some((key, _)) if is_secret_key(key.trim().trim_matches(['"', '\''])) => {
                let key_end = body.len() - keyed.len() + key.len() + 1;
                out.push_str(&body[..key_end]);
                out.push(' ');
                out.push_str(REDACTED);
                out.push_str(ending);
                continuing = Some(key_indent);
            }
            _ => out.push_str(line),
        }
    }
    out
}

fn split_ending(line: &str) -> (&str, &str) {
    let trimmed = line.trim_end_matches(['\n', '\r']);
    (trimmed, &line[trimmed.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_secret_is_redacted() {
        let text = "deviceId: A\npinCode:4321\ntrueCryptPassword: \"p@ss word\"\r\nPINCODE : 99\ntrueCryptPassword:\n  Secret\n    More\nbucket: b\n";
        let r = redact(text);
        for secret in ["4321", "p@ss", "99", "Secret", "More"] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        assert_eq!(
            r,
            "deviceId: A\npinCode: ********\ntrueCryptPassword: ********\r\nPINCODE : ********\ntrueCryptPassword: ********\n  ********\n    ********\nbucket: b\n"
        );
    }

    #[test]
    fn other_lines_are_untouched() {
        let text = "notificationEmail: a@b.com\nreturnAddress:\n  name: Jane\n";
        assert_eq!(redact(text), text);
    }
}
