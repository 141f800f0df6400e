//! The Content-Type (and Content-Encoding) of an imported file.

use crate::manifest::S3Import;

/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether the first bytes of a file are gzip's.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&GZIP_MAGIC)
}

/// The headers an object gets for its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeHeaders {
    /// Content-Type; `None` leaves S3's default (`binary/octet-stream`).
    pub content_type: Option<String>,
    /// `gzip` when setContentEncodingForGzFiles applies.
    pub content_encoding: Option<&'static str>,
}

/// S3's Content-Type when none is sent.
pub const S3_DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The type of the file named `name` (its last path component) whose first bytes are `head`:
/// the manifest's contentTypes (case-insensitive), then the IANA table by extension
/// (case-insensitive), then defaultContentType, else S3's default. With
/// setContentEncodingForGzFiles, a gzip file gets `Content-Encoding: gzip` and its `.gz` or
/// `.gzip` extension is left out of the lookup.
pub fn type_headers(manifest: &S3Import, name: &str, head: &[u8]) -> TypeHeaders {
    let gz = manifest.set_content_encoding_for_gz_files && is_gzip(head);
    let mut name = name;
    if gz {
        for ext in [".gz", ".gzip"] {
            if name.len() > ext.len() && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext) {
                name = &name[..name.len() - ext.len()];
                break;
            }
        }
    }
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty());
    let content_type = extension
        .and_then(|ext| {
            manifest
                .content_type_for(ext)
                .map(str::to_owned)
                .or_else(|| {
                    mime_guess::from_ext(&ext.to_ascii_lowercase())
                        .first()
                        .map(|m| m.essence_str().to_owned())
                })
        })
        .or_else(|| manifest.default_content_type.clone());
    TypeHeaders {
        content_type,
        content_encoding: gz.then_some("gzip"),
    }
}
