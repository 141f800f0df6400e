//! The positional-read stack under every reader: one trait, and the sources that implement it.
//!
//! A device is a stack of sources: a block device or image file, then a partition slice, then
//! (for TrueCrypt) a decrypting view, then a filesystem reader. Every layer reads with
//! `read_exact_at(offset, buf)` through `&self`, so one source can serve several readers (and
//! threads) at once, and every error names the device, the offset and the length.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A read that failed, naming where.
#[derive(Debug, thiserror::Error)]
#[error("{device}: cannot read {len} bytes at byte offset {offset}: {source}")]
pub struct IoError {
    /// The device or image, as [`ReadAt::describe`] gives it.
    pub device: String,
    /// The byte offset of the read, in the source's own address space.
    pub offset: u64,
    /// The length of the read.
    pub len: usize,
    /// The underlying error.
    pub source: std::io::Error,
}

impl IoError {
    /// An error for a read past the end of a source.
    pub fn past_end(device: impl Into<String>, offset: u64, len: usize, size: u64) -> Self {
        Self {
            device: device.into(),
            offset,
            len,
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the source ends at byte {size}"),
            ),
        }
    }
}

/// Positional reads of a fixed-size source.
pub trait ReadAt: Send + Sync {
    /// Fills `buf` from byte `offset`; a read past the end is an error.
    ///
    /// # Errors
    ///
    /// The read failed or would pass the end of the source.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;

    /// The source's size in bytes.
    fn size(&self) -> u64;

    /// The device path or image name (with the partition, if any), for error messages.
    fn describe(&self) -> String;

    /// The memory alignment a buffer needs for a read to land in it straight from the device
    /// (a page, for an `O_DIRECT` [`BlockDevice`](crate::block::BlockDevice)); any other buffer
    /// is served through a bounce buffer and a copy. 1 when any buffer will do.
    fn buffer_alignment(&self) -> usize {
        1
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn buffer_alignment(&self) -> usize {
        (**self).buffer_alignment()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn buffer_alignment(&self) -> usize {
        (**self).buffer_alignment()
    }
}

/// An in-memory source, for unit tests and small metadata.
#[derive(Debug, Clone)]
pub struct MemorySource {
    name: String,
    bytes: Vec<u8>,
}

impl MemorySource {
    /// A source named `name` holding `bytes`.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            bytes,
        }
    }
}

impl ReadAt for MemorySource {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .filter(|r| r.end <= self.bytes.len());
        match range {
            Some(r) => {
                buf.copy_from_slice(&self.bytes[r]);
                Ok(())
            }
            None => Err(IoError::past_end(
                &self.name,
                offset,
                buf.len(),
                self.size(),
            )),
        }
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// An image file read with `pread`.
#[derive(Debug)]
pub struct ImageFile {
    path: PathBuf,
    file: File,
    size: u64,
}

impl ImageFile {
    /// Opens `path` read-only.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or its size read.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let fail = |source| IoError {
            device: path.display().to_string(),
            offset: 0,
            len: 0,
            source,
        };
        let file = File::open(path).map_err(fail)?;
        let size = file.metadata().map_err(fail)?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
        })
    }
}

/// `pread` of all of `buf` at `offset` from `file`, `size` bytes long; errors name the source
/// as `describe` does.
pub(crate) fn read_file_exact_at(
    file: &File,
    size: u64,
    describe: impl Fn() -> String,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), IoError> {
    let end = offset.checked_add(buf.len() as u64);
    if end.is_none_or(|end| end > size) {
        return Err(IoError::past_end(describe(), offset, buf.len(), size));
    }
    file.read_exact_at(buf, offset).map_err(|source| IoError {
        device: describe(),
        offset,
        len: buf.len(),
        source,
    })
}

impl ReadAt for ImageFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        read_file_exact_at(&self.file, self.size, || self.describe(), offset, buf)
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A window of another source: a partition.
#[derive(Debug, Clone)]
pub struct Slice<R> {
    inner: R,
    start: u64,
    len: u64,
    name: String,
}

impl<R: ReadAt> Slice<R> {
    /// The `len` bytes of `inner` from `start`, named `name` (e.g. `/dev/sdb partition 2`).
    ///
    /// # Errors
    ///
    /// The window does not fit inside `inner`.
    pub fn new(inner: R, start: u64, len: u64, name: impl Into<String>) -> Result<Self, IoError> {
        let name = name.into();
        if start.checked_add(len).is_none_or(|end| end > inner.size()) {
            return Err(IoError {
                device: inner.describe(),
                offset: start,
                len: 0,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{name}: {len} bytes from byte {start} pass the end of the device ({} bytes)",
                        inner.size()
                    ),
                ),
            });
        }
        Ok(Self {
            inner,
            start,
            len,
            name,
        })
    }

    /// Where the window starts in the inner source.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl<R: ReadAt> ReadAt for Slice<R> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(IoError::past_end(
                self.describe(),
                offset,
                buf.len(),
                self.len,
            ));
        }
        self.inner
            .read_exact_at(self.start + offset, buf)
            .map_err(|mut e| {
                e.device = self.describe();
                e.offset = offset;
                e
            })
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
    fn buffer_alignment(&self) -> usize {
        self.inner.buffer_alignment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_bounded_and_name_themselves() {
        let source = MemorySource::new("disk.img", (0..=255u8).collect());
        let slice =
            Slice::new(&source, 16, 32, "disk.img partition 1").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 4];
        slice
            .read_exact_at(28, &mut buf)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf, [44, 45, 46, 47]);
        let e = slice
            .read_exact_at(30, &mut buf)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("disk.img partition 1: cannot read 4 bytes at byte offset 30: the source ends at byte 32")
        );
        assert!(Slice::new(&source, 250, 10, "p2").is_err());
    }
}
