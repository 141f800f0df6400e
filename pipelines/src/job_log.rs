//! The guide's job log, the same for imports and exports: a UTF-8 CSV, one row per file in the
//! order the job handled them, and a closing line that reconciles the counts.

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

/// The guide's log status codes.
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
    /// 500 and the store's code: a request to the store failed after retries.
    StoreFailed(String),
    /// 301 Remapped (export): the file went to the recovery directory, for the reason given.
    Remapped(Remap),
    /// 499 DiskFull (export): the device is full; nothing after this row was written.
    DiskFull,
    /// 508 UnableToWrite (export): the device could not be written, or what was written did
    /// not read back as the object.
    UnableToWrite,
}

/// Why an export put a file in the recovery directory (the Code of a 301 row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remap {
    /// The key's name is invalid on the target filesystem.
    InvalidFilename,
    /// A name, or the whole path, is longer than the filesystem allows.
    FilenameTooLong,
    /// The key's path is taken (another key mapped to it, or a file sits where a directory
    /// is needed).
    MovedPermanently,
    /// The directory can hold no more entries.
    DirectoryFull,
}

impl Remap {
    /// The Code column.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidFilename => "InvalidFilename",
            Self::FilenameTooLong => "FilenameTooLong",
            Self::MovedPermanently => "MovedPermanently",
            Self::DirectoryFull => "DirectoryFull",
        }
    }
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
            Self::StoreFailed(code) => (500, code.as_str()),
            Self::Remapped(why) => (301, why.code()),
            Self::DiskFull => (499, "DiskFull"),
            Self::UnableToWrite => (508, "UnableToWrite"),
        }
    }

    /// The row of a request the store refused: 403 AccessDenied, or 500 and the store's code.
    pub fn from_store_error(e: &crate::object_store::ObjectStoreError) -> Self {
        if e.code == "AccessDenied" || e.code == "Forbidden" {
            Self::AccessDenied
        } else {
            Self::StoreFailed(e.code.clone())
        }
    }

    /// Whether the row counts as an error of the job.
    pub fn is_error(&self) -> bool {
        !matches!(self, Self::Ok | Self::Ignored)
    }
}

/// Now, in seconds since the epoch: a row's time.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
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
    render_with(rows, &[])
}

/// [`render`] with more closing lines (`# ` is put before each).
pub fn render_with(rows: &[LogRow], trailer: &[String]) -> String {
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
    for line in trailer {
        let _ = write!(out, "# {line}\r\n");
    }
    out
}

/// Stores a rendered log at `bucket/key` as UTF-8 CSV.
///
/// # Errors
///
/// The store's error.
pub async fn upload(
    store: &dyn crate::object_store::ObjectStore,
    bucket: &str,
    key: &str,
    text: String,
) -> Result<(), crate::object_store::ObjectStoreError> {
    let md5 = drivers::md5_lanes::digest(text.as_bytes());
    let headers = crate::object_store::ObjectHeaders {
        content_type: Some("text/csv; charset=utf-8".into()),
        ..Default::default()
    };
    store
        .put_object(bucket, key, text.into_bytes(), md5, &headers)
        .await
        .map(|_| ())
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
