//! One file of a filesystem as a positional-read source: how a TrueCrypt container
//! (`<JOBID>.tc`) on a customer's filesystem becomes the host of a decrypting view.

use std::sync::Arc;

use super::{EntryId, FileSystem};
use crate::source::{IoError, ReadAt};

/// A file read through its filesystem reader.
pub struct FileSource {
    fs: Arc<dyn FileSystem>,
    id: EntryId,
    size: u64,
    name: String,
}

impl FileSource {
    /// File `id` of `fs`, `size` bytes long; `name` (its path) goes into error messages.
    pub fn new(fs: Arc<dyn FileSystem>, id: EntryId, size: u64, name: impl Into<String>) -> Self {
        Self {
            fs,
            id,
            size,
            name: name.into(),
        }
    }
}

impl ReadAt for FileSource {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(IoError::past_end(
                self.describe(),
                offset,
                buf.len(),
                self.size,
            ));
        }
        let mut done = 0;
        while done < buf.len() {
            let n = self
                .fs
                .read(self.id, offset + done as u64, &mut buf[done..])
                .map_err(|e| IoError {
                    device: self.describe(),
                    offset: offset + done as u64,
                    len: buf.len() - done,
                    source: std::io::Error::other(e.to_string()),
                })?;
            if n == 0 {
                return Err(IoError::past_end(
                    self.describe(),
                    offset,
                    buf.len(),
                    self.size,
                ));
            }
            done += n;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
