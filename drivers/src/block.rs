//! A block device (or any file) as a [`ReadAt`] source: `O_DIRECT` reads with page-aligned
//! buffers, size and sector sizes from the kernel.
//!
//! Customer disks are read once, sequentially and in large chunks, so `O_DIRECT` keeps them out
//! of the page cache (where they would only push out useful pages) and lets a large, aligned
//! request reach the device as it is. Requests that are not aligned (metadata reads of a few
//! bytes, a caller's ordinary `Vec`) go through an aligned bounce buffer. When the kernel
//! refuses `O_DIRECT` (some filesystems answer `EINVAL`), the device is read through the page
//! cache instead.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::ioctl;
use crate::source::{IoError, ReadAt};

/// Memory alignment of every buffer handed to an `O_DIRECT` read: a page.
pub const BUFFER_ALIGN: usize = 4096;

/// Offset alignment used for regular files, whose filesystem's block size we do not ask for:
/// 4096 satisfies every filesystem `O_DIRECT` supports on 512- and 4096-byte-sector devices.
const FILE_ALIGN: u64 = 4096;

/// The largest bounce buffer one request allocates; longer unaligned requests are split.
const MAX_BOUNCE: usize = 8 << 20;

thread_local! {
    /// Each reading thread's bounce buffer for requests `O_DIRECT` cannot serve in place.
    static BOUNCE: std::cell::RefCell<AlignedBuf> = std::cell::RefCell::new(AlignedBuf::new(0));
}

/// A zero-filled byte buffer whose start is aligned to [`BUFFER_ALIGN`], so reads into it can
/// go straight to the device.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes starting on a page boundary.
    pub fn new(len: usize) -> Self {
        // Over-allocate by one page and start at the first aligned byte: no `unsafe` needed.
        let storage = vec![0u8; len.saturating_add(BUFFER_ALIGN)];
        let misalign = storage.as_ptr().addr() % BUFFER_ALIGN;
        let start = (BUFFER_ALIGN - misalign) % BUFFER_ALIGN;
        Self {
            storage,
            start,
            len,
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .finish()
    }
}

/// A block device or a file read with `pread`, through `O_DIRECT` when the kernel allows it.
#[derive(Debug)]
pub struct BlockDevice {
    path: PathBuf,
    file: File,
    /// Opened without `O_DIRECT` the first time the kernel refuses a direct read.
    buffered: OnceLock<File>,
    direct: AtomicBool,
    size: u64,
    logical_sector: u32,
    physical_sector: u32,
    is_block_device: bool,
    /// Offsets and lengths of direct reads are multiples of this.
    align: u64,
}

impl BlockDevice {
    /// Opens `path` (a block device or a regular file) read-only with `O_DIRECT`, falling back to
    /// buffered reads when the kernel refuses `O_DIRECT`.
    ///
    /// # Errors
    ///
    /// The path cannot be opened, is neither a block device nor a regular file, or its size
    /// or sector size cannot be read.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        Self::open_mode(path, true)
    }

    /// Opens `path` read-only for buffered reads (through the page cache).
    ///
    /// # Errors
    ///
    /// As [`BlockDevice::open`].
    pub fn open_buffered(path: &Path) -> Result<Self, IoError> {
        Self::open_mode(path, false)
    }

    fn open_mode(path: &Path, want_direct: bool) -> Result<Self, IoError> {
        let fail = |source| IoError {
            device: path.display().to_string(),
            offset: 0,
            len: 0,
            source,
        };
        let (file, direct) = if want_direct {
            match open_read_only(path, libc::O_DIRECT) {
                Ok(file) => (file, true),
                // EINVAL: this filesystem does not do O_DIRECT.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    (open_read_only(path, 0).map_err(fail)?, false)
                }
                Err(e) => return Err(fail(e)),
            }
        } else {
            (open_read_only(path, 0).map_err(fail)?, false)
        };
        let file_type = file.metadata().map_err(fail)?.file_type();
        let (size, logical_sector, physical_sector, is_block_device, align) =
            if file_type.is_block_device() {
                let size = ioctl::block_device_size(&file).map_err(fail)?;
                let logical = ioctl::logical_sector_size(&file).map_err(fail)?;
                let physical = ioctl::physical_sector_size(&file).map_err(fail)?;
                if logical == 0 || !logical.is_power_of_two() {
                    return Err(fail(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the kernel reports a logical sector size of {logical} bytes"),
                    )));
                }
                (size, logical, physical, true, u64::from(logical))
            } else if file_type.is_file() {
                let size = file.metadata().map_err(fail)?.len();
                (size, 512, 512, false, FILE_ALIGN)
            } else {
                return Err(fail(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "neither a block device nor a regular file",
                )));
            };
        Ok(Self {
            path: path.to_owned(),
            file,
            buffered: OnceLock::new(),
            direct: AtomicBool::new(direct),
            size,
            logical_sector,
            physical_sector,
            is_block_device,
            align,
        })
    }

    /// The logical sector size (the unit of LBAs): from the kernel for a block device, 512 for
    /// a file.
    pub fn logical_sector_size(&self) -> u32 {
        self.logical_sector
    }

    /// The physical sector size: from the kernel for a block device, 512 for a file.
    pub fn physical_sector_size(&self) -> u32 {
        self.physical_sector
    }

    /// Whether this is a block device (rather than an image file).
    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    /// Whether reads currently bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.load(Ordering::Relaxed)
    }

    fn error(&self, offset: u64, len: usize, source: io::Error) -> IoError {
        IoError {
            device: self.describe(),
            offset,
            len,
            source,
        }
    }

    /// The descriptor for buffered reads, opened on first use.
    fn buffered_file(&self) -> io::Result<&File> {
        if !self.is_direct() {
            return Ok(self.buffered.get().unwrap_or(&self.file));
        }
        if let Some(file) = self.buffered.get() {
            return Ok(file);
        }
        let file = open_read_only(&self.path, 0)?;
        Ok(self.buffered.get_or_init(|| file))
    }

    fn read_buffered(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let file = self
            .buffered_file()
            .map_err(|e| self.error(offset, buf.len(), e))?;
        file.read_exact_at(buf, offset)
            .map_err(|e| self.error(offset, buf.len(), e))
    }

    /// One direct read of an aligned range into an aligned buffer; stops early only at the end
    /// of a file whose size is not a multiple of the alignment.
    fn pread_direct(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset
                .checked_add(done as u64)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
            match self.file.read_at(&mut buf[done..], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Serves a request with direct reads: straight into `buf` when it is aligned, else
    /// through bounce buffers of at most [`MAX_BOUNCE`] bytes.
    fn read_direct(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let align = self.align;
        let aligned = offset.is_multiple_of(align)
            && (buf.len() as u64).is_multiple_of(align)
            && buf.as_ptr().addr().is_multiple_of(BUFFER_ALIGN);
        if aligned {
            let n = self.pread_direct(offset, buf)?;
            return if n == buf.len() {
                Ok(())
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        // The thread's bounce buffer, reused: a fresh 8 MiB buffer per request costs its
        // zeroing and a page fault per 4 KiB, a large share of a fast device's read.
        let mut bounce =
            BOUNCE.with(|b| std::mem::replace(&mut *b.borrow_mut(), AlignedBuf::new(0)));
        let result = self.read_bounced(offset, buf, &mut bounce);
        BOUNCE.with(|b| *b.borrow_mut() = bounce);
        result
    }

    fn read_bounced(&self, offset: u64, buf: &mut [u8], bounce: &mut AlignedBuf) -> io::Result<()> {
        let align = self.align;
        let mut done = 0usize;
        while done < buf.len() {
            let want_start = offset + done as u64;
            let start = want_start - want_start % align;
            let skip = usize::try_from(want_start - start).map_err(io::Error::other)?;
            let remaining = buf.len() - done;
            let span = (skip + remaining).min(MAX_BOUNCE);
            let span_aligned = span.next_multiple_of(align as usize);
            if bounce.len() < span_aligned {
                *bounce = AlignedBuf::new(span_aligned);
            }
            let got = self.pread_direct(start, &mut bounce[..span_aligned])?;
            let take = span.min(got).saturating_sub(skip);
            if take == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf[done..done + take].copy_from_slice(&bounce[skip..skip + take]);
            done += take;
        }
        Ok(())
    }
}

fn open_read_only(path: &Path, flags: libc::c_int) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)
}

impl ReadAt for BlockDevice {
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
        if buf.is_empty() {
            return Ok(());
        }
        if self.is_direct() {
            match self.read_direct(offset, buf) {
                Ok(()) => return Ok(()),
                // The kernel accepted O_DIRECT at open but refuses this read: read through the
                // page cache from now on (visible through `is_direct`). The buffered descriptor
                // is opened before the flag changes, so no thread reads the O_DIRECT one
                // unaligned.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.buffered_file()
                        .map_err(|e| self.error(offset, buf.len(), e))?;
                    self.direct.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(self.error(offset, buf.len(), e)),
            }
        }
        self.read_buffered(offset, buf)
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn buffer_alignment(&self) -> usize {
        if self.is_direct() {
            BUFFER_ALIGN
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn image(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let bytes = pattern(len);
        let mut file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        file.write_all(&bytes).unwrap_or_else(|e| panic!("{e}"));
        file.flush().unwrap_or_else(|e| panic!("{e}"));
        (file, bytes)
    }

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [0, 1, 4096, 12345] {
            let buf = AlignedBuf::new(len);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.as_ptr().addr() % BUFFER_ALIGN, 0);
        }
    }

    #[test]
    fn unaligned_and_aligned_reads_return_the_file_bytes() {
        // Not a multiple of 4096: the last direct read of the file is short.
        let (file, bytes) = image(3 * 4096 + 1000);
        for dev in [
            BlockDevice::open(file.path()),
            BlockDevice::open_buffered(file.path()),
        ] {
            let dev = dev.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(dev.size(), bytes.len() as u64);
            assert!(!dev.is_block_device());
            for (offset, len) in [
                (0usize, 1usize),
                (1, 10),
                (4095, 2),
                (100, 9000),
                (12000, 1288),
            ] {
                let mut buf = vec![0u8; len];
                dev.read_exact_at(offset as u64, &mut buf)
                    .unwrap_or_else(|e| panic!("{offset}+{len}: {e}"));
                assert_eq!(buf, bytes[offset..offset + len], "{offset}+{len}");
            }
            let mut aligned = AlignedBuf::new(8192);
            dev.read_exact_at(4096, &mut aligned)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&aligned[..], &bytes[4096..12288]);
        }
    }

    #[test]
    fn reads_longer_than_the_bounce_buffer_are_split() {
        let (file, bytes) = image(MAX_BOUNCE + 3 * 4096);
        let dev = BlockDevice::open(file.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut buf = vec![0u8; MAX_BOUNCE + 5000];
        dev.read_exact_at(7, &mut buf)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(buf == bytes[7..7 + buf.len()]);
    }

    #[test]
    fn errors_name_the_device_and_offset() {
        let (file, _) = image(4096);
        let dev = BlockDevice::open(file.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 8];
        let e = dev
            .read_exact_at(4090, &mut buf)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "{}: cannot read 8 bytes at byte offset 4090: the source ends at byte 4096",
                file.path().display()
            ))
        );
        let e = BlockDevice::open(Path::new("/dev/null"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("/dev/null: cannot read 0 bytes at byte offset 0: neither a block device nor a regular file")
        );
    }
}
