//! The guide's import log: a UTF-8 CSV, one row per file in walk order, and a closing line that
//! reconciles the counts.

use std::fmt::Write;

/// The header row.
pub const HEADER: &str = "DateTime,File,Status,Code,Key,MD5,Bytes,Content-Type,ETag";

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// When the file was processed, seconds since the epoch.
    pub time: i64,
    /// The file's path relative to the root (non-UTF-8 bytes as `\xNN`).
    pub file: String,
    /// The outcome.
    pub status: RowStatus,
    /// `bucket/key`, when the file has a key.
    pub key: String,
    /// The file's MD5 (hex), when it was read.
    pub md5: String,
    /// The file's size.
    pub bytes: u64,
    /// The stored Content-Type.
    pub content_type: String,
    /// The object's ETag.
    pub etag: String,
}

/// The guide's log status codes used by imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowStatus {
    /// 200 OK.
    Ok,
    /// 103 Ignored: the SIGNATURE file, an `ignore` match, or something that is not a regular
    /// file (symlinks, device nodes, FIFOs and sockets are never followed).
    Ignored,
    /// 400 InvalidSubstitution: the substitutions emptied the key.
    InvalidSubstitution,
    /// 400 InvalidFileName: the name is not UTF-8.
    InvalidFileName,
    /// 400 KeyTooLong: the key is over 1024 bytes.
    KeyTooLong,
    /// 403 AccessDenied, from the store.
    AccessDenied,
    /// 413 FileTooLarge: over 5 TB.
    FileTooLarge,
    /// 508 ReadError: the device could not be read.
    ReadError,
    /// 500 and the store's code: the upload failed after retries.
    UploadFailed(String),
}

impl RowStatus {
    /// The Status and Code columns.
    pub fn columns(&self) -> (u16, &str) {
        match self {
            Self::Ok => (200, "OK"),
            Self::Ignored => (103, "Ignored"),
            Self::InvalidSubstitution => (400, "InvalidSubstitution"),
            Self::InvalidFileName => (400, "InvalidFileName"),
            Self::KeyTooLong => (400, "KeyTooLong"),
            Self::AccessDenied => (403, "AccessDenied"),
            Self::FileTooLarge => (413, "FileTooLarge"),
            Self::ReadError => (508, "ReadError"),
            Self::UploadFailed(code) => (500, code.as_str()),
        }
    }

    /// Whether the row counts as an error of the job.
    pub fn is_error(&self) -> bool {
        !matches!(self, Self::Ok | Self::Ignored)
    }
}

/// `Tue 03 Feb 2009 21:57:43 GMT`, the guide's DateTime.
pub fn log_time(seconds: i64) -> String {
    let rfc = crate::manifest::HttpDate {
        unix_seconds: seconds,
    }
    .to_string();
    // `Tue, 03 Feb 2009 21:57:43 GMT` without the comma.
    rfc.replacen(',', "", 1)
}

fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// The whole log: header, rows, and the closing line
/// `# files=N ok=N errors=N ignored=N bytes=N`.
pub fn render(rows: &[LogRow]) -> String {
    let mut out = String::from(HEADER);
    out.push_str("\r\n");
    let (mut ok, mut errors, mut ignored, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for row in rows {
        let (status, code) = row.status.columns();
        match row.status {
            RowStatus::Ok => {
                ok += 1;
                bytes += row.bytes;
            }
            RowStatus::Ignored => ignored += 1,
            _ => errors += 1,
        }
        let fields = [
            log_time(row.time),
            row.file.clone(),
            status.to_string(),
            code.to_owned(),
            row.key.clone(),
            row.md5.clone(),
            row.bytes.to_string(),
            row.content_type.clone(),
            row.etag.clone(),
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, f);
        }
        out.push_str("\r\n");
    }
    let _ = write!(
        out,
        "# files={} ok={ok} errors={errors} ignored={ignored} bytes={bytes}\r\n",
        rows.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_quote_and_reconcile() {
        let row = |file: &str, status| LogRow {
            time: 1_233_698_263,
            file: file.into(),
            status,
            key: String::new(),
            md5: String::new(),
            bytes: 90,
            content_type: String::new(),
            etag: String::new(),
        };
        let text = render(&[
            row("SIGNATURE", RowStatus::Ignored),
            row("a,\"b\".txt", RowStatus::Ok),
            row("x", RowStatus::ReadError),
        ]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(
            lines[1],
            "Tue 03 Feb 2009 21:57:43 GMT,SIGNATURE,103,Ignored,,,90,,"
        );
        assert_eq!(
            lines[2],
            "Tue 03 Feb 2009 21:57:43 GMT,\"a,\"\"b\"\".txt\",200,OK,,,90,,"
        );
        assert_eq!(
            lines[3],
            "Tue 03 Feb 2009 21:57:43 GMT,x,508,ReadError,,,90,,"
        );
        assert_eq!(lines[4], "# files=3 ok=1 errors=1 ignored=1 bytes=90");
    }
}
