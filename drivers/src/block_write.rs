//! Writing a block device (or an image file, for tests): what erasing a customer's device
//! needs. `O_DIRECT` positional writes from aligned buffers, a flush that reaches the device,
//! and refusal of anything the kernel marks read-only.
//!
//! Writes bypass the page cache for the same reason reads do (see [`crate::block`]): an erase
//! writes the whole device once, and cached copies would only push out useful pages and make
//! a read-back check the cache instead of the medium. A block device is opened with `O_EXCL`,
//! so one that is mounted or held by another exclusive user (device-mapper, md, a filesystem)
//! is refused by the kernel rather than overwritten underneath it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::block::BUFFER_ALIGN;
use crate::ioctl;
use crate::source::{read_file_exact_at, IoError, ReadAt};

/// Offset alignment of direct I/O on a regular file (as in [`crate::block`]).
const FILE_ALIGN: u64 = 4096;

/// Why a device cannot be opened for writing, written, or flushed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The device is read-only: opened read-only by the kernel's answer, or its read-only
    /// flag (`BLKROGET`) is set.
    #[error(
        "{device}: the device is read-only ({why}); refusing to write to it: clear the \
         write protection and retry, or flag the device for destruction"
    )]
    ReadOnly {
        /// The device path.
        device: String,
        /// What says so.
        why: String,
    },
    /// The kernel refused exclusive access: the device is mounted or held.
    #[error(
        "{device}: the device is in use (mounted, or held by device-mapper, md or another \
         program); unmount or release it before writing"
    )]
    Busy {
        /// The device path.
        device: String,
    },
    /// The path could not be opened or examined for writing.
    #[error("{device}: cannot open for writing: {source}")]
    Open {
        /// The device path.
        device: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A positional write failed.
    #[error("{device}: cannot write {len} bytes at byte offset {offset}: {source}")]
    Write {
        /// The device path.
        device: String,
        /// The byte offset of the write.
        offset: u64,
        /// The length of the write.
        len: usize,
        /// The underlying error.
        source: io::Error,
    },
    /// Flushing written data to the medium failed: what was written may not be on it.
    #[error("{device}: cannot flush written data to the device: {source}")]
    Flush {
        /// The device path.
        device: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Positional writes to a fixed-size device, on top of positional reads (for reading back).
pub trait WriteAt: ReadAt {
    /// Writes all of `buf` at byte `offset`; a write past the end is an error, never growth.
    ///
    /// # Errors
    ///
    /// The write failed, was short or would pass the end of the device.
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> Result<(), WriteError>;

    /// Makes every completed write durable on the medium.
    ///
    /// # Errors
    ///
    /// The kernel or device reported a failure to flush.
    fn flush(&self) -> Result<(), WriteError>;
}

/// A block device or regular file open read-write, written and read with `O_DIRECT` when the
/// kernel allows it.
#[derive(Debug)]
pub struct WritableDevice {
    path: PathBuf,
    file: File,
    /// Opened without `O_DIRECT` on first use, for requests that are not aligned (the tail of
    /// an image file whose size is not a multiple of 4096).
    buffered: OnceLock<File>,
    direct: bool,
    size: u64,
    logical_sector: u32,
    physical_sector: u32,
    is_block_device: bool,
    /// Offsets and lengths of direct requests are multiples of this.
    align: u64,
}

impl WritableDevice {
    /// Opens `path` (a block device, or a regular file for tests) read-write with `O_DIRECT`
    /// (and `O_EXCL` for a block device), refusing a device the kernel marks read-only.
    ///
    /// # Errors
    ///
    /// [`WriteError::ReadOnly`] when the device or file cannot be written,
    /// [`WriteError::Busy`] when a block device is mounted or held, [`WriteError::Open`] when
    /// the path cannot be opened, is neither a block device nor a regular file, or its size or
    /// sector size cannot be read.
    pub fn open(path: &Path) -> Result<Self, WriteError> {
        let device = path.display().to_string();
        let open_err = |source| WriteError::Open {
            device: device.clone(),
            source,
        };
        let file_type = std::fs::metadata(path).map_err(open_err)?.file_type();
        let is_block_device = file_type.is_block_device();
        if !is_block_device && !file_type.is_file() {
            return Err(open_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither a block device nor a regular file",
            )));
        }
        // O_EXCL without O_CREAT on a block device: EBUSY when it is mounted or held.
        let excl = if is_block_device { libc::O_EXCL } else { 0 };
        let (file, direct) = match open_read_write(path, libc::O_DIRECT | excl) {
            Ok(file) => (file, true),
            // EINVAL: this filesystem does not do O_DIRECT.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (
                open_read_write(path, excl).map_err(|e| classify_open(&device, e))?,
                false,
            ),
            Err(e) => return Err(classify_open(&device, e)),
        };
        let (size, logical_sector, physical_sector, align) = if is_block_device {
            // Writes to a read-only block device fail only at write time (EPERM): ask first.
            if ioctl::read_only(&file).map_err(open_err)? {
                return Err(WriteError::ReadOnly {
                    device,
                    why: "the kernel's read-only flag (BLKROGET) is set".into(),
                });
            }
            let size = ioctl::block_device_size(&file).map_err(open_err)?;
            let logical = ioctl::logical_sector_size(&file).map_err(open_err)?;
            let physical = ioctl::physical_sector_size(&file).map_err(open_err)?;
            if logical == 0 || !logical.is_power_of_two() {
                return Err(open_err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the kernel reports a logical sector size of {logical} bytes"),
                )));
            }
            (size, logical, physical, u64::from(logical))
        } else {
            let size = file.metadata().map_err(open_err)?.len();
            (size, 512, 512, FILE_ALIGN)
        };
        Ok(Self {
            path: path.to_owned(),
            file,
            buffered: OnceLock::new(),
            direct,
            size,
            logical_sector,
            physical_sector,
            is_block_device,
            align,
        })
    }

    /// The device path as opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The logical sector size: from the kernel for a block device, 512 for a file.
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

    /// Whether writes and reads bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The unit that offsets and lengths of direct requests are multiples of; buffers must
    /// also start on a [`BUFFER_ALIGN`] boundary (use [`crate::block::AlignedBuf`]).
    pub fn alignment(&self) -> u64 {
        self.align
    }

    fn is_aligned(&self, offset: u64, buf: &[u8]) -> bool {
        self.direct
            && offset.is_multiple_of(self.align)
            && (buf.len() as u64).is_multiple_of(self.align)
            && buf.as_ptr().addr().is_multiple_of(BUFFER_ALIGN)
    }

    /// The descriptor for requests that cannot go direct, opened on first use.
    fn buffered_file(&self) -> io::Result<&File> {
        if !self.direct {
            return Ok(&self.file);
        }
        if let Some(file) = self.buffered.get() {
            return Ok(file);
        }
        // No O_EXCL: our own direct descriptor already holds the device exclusively.
        let file = open_read_write(&self.path, 0)?;
        Ok(self.buffered.get_or_init(|| file))
    }

    fn check_range(&self, offset: u64, len: usize) -> io::Result<()> {
        check_end(self.size, offset, len, "device")
    }
}

fn open_read_write(path: &Path, flags: libc::c_int) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)
}

/// Names the open failures an operator can act on.
fn classify_open(device: &str, e: io::Error) -> WriteError {
    match e.raw_os_error() {
        Some(libc::EROFS) => WriteError::ReadOnly {
            device: device.to_owned(),
            why: "the kernel refuses to open it for writing (EROFS)".into(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => WriteError::ReadOnly {
            device: device.to_owned(),
            why: format!("opening it for writing is not permitted: {e}"),
        },
        Some(libc::EBUSY) => WriteError::Busy {
            device: device.to_owned(),
        },
        _ => WriteError::Open {
            device: device.to_owned(),
            source: e,
        },
    }
}

/// `pwrite` until all of `buf` is written, retrying interrupted calls.
fn pwrite_all(file: &File, mut offset: u64, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset = offset
                    .checked_add(n as u64)
                    .ok_or_else(|| io::Error::other("offset overflows"))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl WriteAt for WritableDevice {
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> Result<(), WriteError> {
        let fail = |source| WriteError::Write {
            device: self.describe(),
            offset,
            len: buf.len(),
            source,
        };
        self.check_range(offset, buf.len()).map_err(fail)?;
        if buf.is_empty() {
            return Ok(());
        }
        let file = if self.is_aligned(offset, buf) {
            &self.file
        } else {
            self.buffered_file().map_err(fail)?
        };
        pwrite_all(file, offset, buf).map_err(fail)
    }

    fn flush(&self) -> Result<(), WriteError> {
        let fail = |source| WriteError::Flush {
            device: self.describe(),
            source,
        };
        // fdatasync on either descriptor of a block device flushes the device's write cache;
        // the buffered one may hold dirty pages of its own.
        if let Some(buffered) = self.buffered.get() {
            buffered.sync_data().map_err(fail)?;
        }
        self.file.sync_data().map_err(fail)?;
        if self.is_block_device {
            ioctl::flush_buffers(&self.file).map_err(fail)?;
        }
        Ok(())
    }
}

impl ReadAt for WritableDevice {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let len = buf.len();
        let fail = |source| IoError {
            device: self.describe(),
            offset,
            len,
            source,
        };
        if self.check_range(offset, len).is_err() {
            return Err(IoError::past_end(self.describe(), offset, len, self.size));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let file = if self.is_aligned(offset, buf) {
            &self.file
        } else {
            self.buffered_file().map_err(fail)?
        };
        file.read_exact_at(buf, offset).map_err(fail)
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A regular file (a container file on a mounted filesystem) written and read through the page
/// cache: what [`WritableDevice`] is not. A file on a FUSE filesystem (ntfs-3g) may refuse
/// `O_DIRECT`, or take it and mix it badly with cached I/O of the same pages; the page cache of
/// the filesystem underneath also gathers the small writes of a TrueCrypt view into large ones.
/// The file keeps its size: writes past its end are refused. [`WriteAt::flush`] is `fdatasync`.
#[derive(Debug)]
pub struct BufferedFile {
    path: PathBuf,
    file: File,
    size: u64,
}

impl BufferedFile {
    /// Opens the existing regular file `path` read-write; its current length is its size.
    ///
    /// # Errors
    ///
    /// [`WriteError::Open`] when it cannot be opened or is not a regular file,
    /// [`WriteError::ReadOnly`] when writing it is not permitted.
    pub fn open(path: &Path) -> Result<Self, WriteError> {
        let device = path.display().to_string();
        let file = open_read_write(path, 0).map_err(|e| classify_open(&device, e))?;
        let meta = file.metadata().map_err(|source| WriteError::Open {
            device: device.clone(),
            source,
        })?;
        if !meta.file_type().is_file() {
            return Err(WriteError::Open {
                device,
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            size: meta.len(),
        })
    }

    /// The file's path as opened.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Refuses a request that would pass the end of a `noun` of `size` bytes.
fn check_end(size: u64, offset: u64, len: usize, noun: &str) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the {noun} ends at byte {size}"),
        )),
    }
}

impl WriteAt for BufferedFile {
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> Result<(), WriteError> {
        let fail = |source| WriteError::Write {
            device: self.describe(),
            offset,
            len: buf.len(),
            source,
        };
        check_end(self.size, offset, buf.len(), "file").map_err(fail)?;
        pwrite_all(&self.file, offset, buf).map_err(fail)
    }

    fn flush(&self) -> Result<(), WriteError> {
        self.file.sync_data().map_err(|source| WriteError::Flush {
            device: self.describe(),
            source,
        })
    }
}

impl ReadAt for BufferedFile {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::AlignedBuf;
    use std::io::Write;

    fn image(len: usize) -> tempfile::NamedTempFile {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        file.write_all(&bytes).unwrap_or_else(|e| panic!("{e}"));
        file.flush().unwrap_or_else(|e| panic!("{e}"));
        file
    }

    #[test]
    fn aligned_and_unaligned_writes_reach_the_file() {
        // Not a multiple of 4096: the tail goes through the buffered descriptor.
        let file = image(3 * 4096 + 1000);
        let dev = WritableDevice::open(file.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!dev.is_block_device());
        assert_eq!(dev.size(), 3 * 4096 + 1000);
        let zeros = AlignedBuf::new(3 * 4096);
        dev.write_all_at(0, &zeros)
            .unwrap_or_else(|e| panic!("{e}"));
        dev.write_all_at(3 * 4096, &[0u8; 1000])
            .unwrap_or_else(|e| panic!("{e}"));
        dev.flush().unwrap_or_else(|e| panic!("{e}"));
        let mut back = AlignedBuf::new(3 * 4096);
        dev.read_exact_at(0, &mut back)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(back.iter().all(|&b| b == 0));
        let on_disk = std::fs::read(file.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(on_disk.len(), 3 * 4096 + 1000);
        assert!(on_disk.iter().all(|&b| b == 0));
    }

    #[test]
    fn writes_past_the_end_are_refused_and_do_not_grow_the_file() {
        let file = image(8192);
        let dev = WritableDevice::open(file.path()).unwrap_or_else(|e| panic!("{e}"));
        let buf = AlignedBuf::new(8192);
        let e = dev.write_all_at(4096, &buf).err().map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "{}: cannot write 8192 bytes at byte offset 4096: the device ends at byte 8192",
                file.path().display()
            ))
        );
        let len = std::fs::metadata(file.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .len();
        assert_eq!(len, 8192);
    }

    #[test]
    fn open_errors_name_the_device_and_what_to_do() {
        let e = WritableDevice::open(Path::new("/dev/null"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("/dev/null: cannot open for writing: neither a block device nor a regular file")
        );
        let e = classify_open("/dev/sdz", io::Error::from_raw_os_error(libc::EROFS)).to_string();
        assert_eq!(
            e,
            "/dev/sdz: the device is read-only (the kernel refuses to open it for writing \
             (EROFS)); refusing to write to it: clear the write protection and retry, or flag \
             the device for destruction"
        );
        let e = classify_open("/dev/sdz", io::Error::from_raw_os_error(libc::EBUSY)).to_string();
        assert_eq!(
            e,
            "/dev/sdz: the device is in use (mounted, or held by device-mapper, md or another \
             program); unmount or release it before writing"
        );
    }

    #[test]
    fn a_buffered_file_writes_at_any_offset_and_keeps_its_size() {
        let file = image(5000);
        let dev = BufferedFile::open(file.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dev.size(), 5000);
        dev.write_all_at(513, b"unaligned")
            .unwrap_or_else(|e| panic!("{e}"));
        dev.flush().unwrap_or_else(|e| panic!("{e}"));
        let mut back = [0u8; 9];
        dev.read_exact_at(513, &mut back)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, b"unaligned");
        let e = dev
            .write_all_at(4996, b"12345")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "{}: cannot write 5 bytes at byte offset 4996: the file ends at byte 5000",
                file.path().display()
            ))
        );
        let e = BufferedFile::open(Path::new("/dev/null"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("/dev/null: cannot open for writing: not a regular file")
        );
    }
}
