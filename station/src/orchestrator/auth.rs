//! Reading a device's SIGNATURE (on its filesystem, or inside a TrueCrypt volume).

use super::*;

/// Jobs whose TrueCrypt password is tried on a device that names none.
pub(super) const MAX_TRUECRYPT_CANDIDATES: usize = 8;

/// A device's job, found by its SIGNATURE or barcode.
pub(super) struct Auth {
    pub(super) job: JobRecord,
    /// Set when the job is known but the device is not what it promised (its TrueCrypt volume
    /// does not open): no import, erase and return.
    pub(super) unusable: Option<String>,
}

/// What trying the candidate jobs' TrueCrypt passwords found.
pub(super) enum Encrypted {
    /// The SIGNATURE file inside the opened volume.
    Signature(Vec<u8>),
    /// The device names a job, but cannot be opened as the guide requires.
    Unusable(Box<JobRecord>, String),
    /// Nothing opened.
    Nothing,
    /// The run was refused (the message says why).
    Refused,
}

/// What the root of a device's filesystem says about its SIGNATURE file.
pub(super) enum SignatureRead {
    /// The file's bytes.
    Found(Vec<u8>),
    /// No file, or no filesystem (the reason).
    Missing(String),
}

/// Whether the device's first MiB reads as zeros (as this station's erase leaves it).
pub(super) fn starts_blank(devnode: &Path) -> bool {
    let Ok(device) = drivers::block::BlockDevice::open(devnode) else {
        return false;
    };
    let len = drivers::source::ReadAt::size(&device).min(1 << 20);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    drivers::source::ReadAt::read_exact_at(&device, 0, &mut buf).is_ok()
        && pipelines::erase::first_nonzero(&buf).is_none()
}

/// Reads `SIGNATURE` from the root of the device's one filesystem.
pub(super) fn read_signature(devnode: &Path) -> SignatureRead {
    let inspected = match crate::inspect::inspect(devnode) {
        Ok(i) => i,
        Err(e) => return SignatureRead::Missing(e.to_string()),
    };
    match inspected.select(None) {
        Ok(source) => read_signature_in(source),
        Err(e) => SignatureRead::Missing(e.to_string()),
    }
}

/// Reads `SIGNATURE` from the root of the filesystem on `source`.
pub(super) fn read_signature_in(source: Arc<dyn drivers::source::ReadAt>) -> SignatureRead {
    let fs = match drivers::fs::open_filesystem(source) {
        Ok(fs) => fs,
        Err(e) => return SignatureRead::Missing(e.to_string()),
    };
    let entries = match fs.read_dir(fs.root()) {
        Ok(e) => e,
        Err(e) => return SignatureRead::Missing(e.to_string()),
    };
    let Some(entry) = entries
        .iter()
        .find(|e| e.name.to_utf8().as_deref() == Some("SIGNATURE"))
    else {
        return SignatureRead::Missing("no SIGNATURE in the root directory".into());
    };
    // A SIGNATURE file is under 200 bytes; parse_file refuses anything over 4 KiB.
    let mut buf = vec![0u8; usize::try_from(entry.size.min(8192)).unwrap_or(8192)];
    match fs.read(entry.id, 0, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            SignatureRead::Found(buf)
        }
        Err(e) => SignatureRead::Missing(format!("SIGNATURE cannot be read: {e}")),
    }
}
