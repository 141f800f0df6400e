//! The filesystem-reader interface every reader (ext, FAT/exFAT, NTFS, HFS+) implements, and
//! the types it speaks.
//!
//! A reader handles metadata; file data is located by [`FileSystem::extents`] and read in large
//! chunks through the reader's source, so a pipeline can issue reads in physical order. Names
//! stay raw (bytes or UTF-16 code units) until the pipeline decides what to do with them.

pub mod ext;
pub mod fat;
pub mod file_source;
pub mod hfsplus;
pub mod ntfs;
pub mod walk;

use std::fmt;
use std::sync::Arc;

use crate::source::{IoError, ReadAt};

/// A stable identifier of an entry within one filesystem (inode number, MFT record,
/// directory cluster + slot, CNID...).
pub type EntryId = u64;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
    /// A block device node.
    BlockDevice,
    /// A character device node.
    CharDevice,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl EntryKind {
    /// A one-word name for listings (`file`, `dir`, `symlink`, `blockdev`, `chardev`, `fifo`,
    /// `socket`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Directory => "dir",
            Self::Symlink => "symlink",
            Self::BlockDevice => "blockdev",
            Self::CharDevice => "chardev",
            Self::Fifo => "fifo",
            Self::Socket => "socket",
        }
    }
}

/// A name as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RawName {
    /// Bytes (ext2/3/4): usually UTF-8, not always.
    Bytes(Vec<u8>),
    /// UTF-16 code units (FAT long names, exFAT, NTFS, HFS+), possibly with unpaired
    /// surrogates.
    Utf16(Vec<u16>),
}

impl RawName {
    /// The name as UTF-8, or `None` when it is not valid UTF-8 (or UTF-16).
    pub fn to_utf8(&self) -> Option<String> {
        match self {
            Self::Bytes(b) => String::from_utf8(b.clone()).ok(),
            Self::Utf16(u) => String::from_utf16(u).ok(),
        }
    }

    /// The name's bytes: the raw bytes, or UTF-16 transcoded to UTF-8 with unpaired surrogates
    /// written as their WTF-8 three-byte form (which is not valid UTF-8, so it stays visible).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Bytes(b) => b.clone(),
            Self::Utf16(units) => {
                let mut out = Vec::with_capacity(units.len());
                for r in char::decode_utf16(units.iter().copied()) {
                    match r {
                        Ok(c) => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        Err(e) => {
                            let u = e.unpaired_surrogate();
                            out.push(0xE0 | (u >> 12) as u8);
                            out.push(0x80 | ((u >> 6) & 0x3F) as u8);
                            out.push(0x80 | (u & 0x3F) as u8);
                        }
                    }
                }
                out
            }
        }
    }
}

/// Whether a timestamp's zone is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// The time is UTC (ext, NTFS, HFS+, exFAT with its offset field).
    Utc,
    /// The filesystem stores local time with no zone (FAT, exFAT without an offset); the
    /// value is that local time read as if it were UTC.
    Unknown,
}

/// A modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00 (UTC when `zone` is `Utc`); negative before 1970.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
    /// Whether the zone is known.
    pub zone: Zone,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's stable id.
    pub id: EntryId,
    /// The id of the directory that lists it.
    pub parent: EntryId,
    /// The name as stored.
    pub name: RawName,
    /// What it is.
    pub kind: EntryKind,
    /// Its size in bytes (a file's logical length; 0 for most other kinds).
    pub size: u64,
    /// Its modification time, when the filesystem has one that could be decoded.
    pub mtime: Option<Timestamp>,
}

/// Whether an extent holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtentKind {
    /// Bytes stored at `physical`.
    Data,
    /// A hole: reads as zeros, nothing stored.
    Hole,
    /// Allocated but not yet written (ext4 unwritten extents, exFAT past ValidDataLength,
    /// NTFS past the initialized size): reads as zeros.
    Zero,
}

/// A run of a file's bytes, in byte units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    /// Offset within the file.
    pub logical: u64,
    /// Offset within the filesystem's source (meaningless for holes and zero runs).
    pub physical: u64,
    /// Length in bytes.
    pub length: u64,
    /// Data, hole or zeros.
    pub kind: ExtentKind,
}

/// The filesystems the station recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    /// ext2.
    Ext2,
    /// ext3.
    Ext3,
    /// ext4.
    Ext4,
    /// FAT12.
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
    /// exFAT.
    ExFat,
    /// NTFS.
    Ntfs,
    /// HFS+.
    HfsPlus,
    /// HFSX (case-sensitive HFS+).
    Hfsx,
}

impl FsType {
    /// The name the guide uses (`EXT4`, `FAT32`, `exFAT`, `NTFS`, `HFSPlus`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ext2 => "EXT2",
            Self::Ext3 => "EXT3",
            Self::Ext4 => "EXT4",
            Self::Fat12 => "FAT12",
            Self::Fat16 => "FAT16",
            Self::Fat32 => "FAT32",
            Self::ExFat => "exFAT",
            Self::Ntfs => "NTFS",
            Self::HfsPlus => "HFSPlus",
            Self::Hfsx => "HFSX",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong reading a filesystem. Corrupt, unsupported and I/O errors stay apart so the
/// pipeline can map them to the guide's log codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The device could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// On-disk data is inconsistent.
    #[error("{device}: corrupt {what} at byte offset {offset}")]
    Corrupt {
        /// The device (and partition).
        device: String,
        /// The byte offset of the structure, within the filesystem's source.
        offset: u64,
        /// What is corrupt, with the raw value where it helps.
        what: String,
    },
    /// A feature the reader does not implement.
    #[error("{device}: unsupported: {what}")]
    Unsupported {
        /// The device (and partition).
        device: String,
        /// The feature.
        what: String,
    },
    /// The entry id does not name an entry of the kind the call needs.
    #[error("{device}: entry {id} is not {expected}")]
    WrongKind {
        /// The device (and partition).
        device: String,
        /// The entry.
        id: EntryId,
        /// What the call needed (`a directory`, `a file`).
        expected: &'static str,
    },
}

/// A mounted-in-userspace filesystem: directory listing, extents and reads.
pub trait FileSystem: Send + Sync {
    /// The filesystem's type.
    fn fs_type(&self) -> FsType;

    /// The volume label, if any.
    fn label(&self) -> Option<String>;

    /// The root directory's id.
    fn root(&self) -> EntryId;

    /// The entries of directory `dir`, without `.` and `..`.
    ///
    /// # Errors
    ///
    /// `dir` is not a directory, or its metadata cannot be read or is corrupt.
    fn read_dir(&self, dir: EntryId) -> Result<Vec<DirEntry>, FsError>;

    /// The extents of file `id`, in logical order, covering exactly its size.
    ///
    /// # Errors
    ///
    /// `id` is not a file, or its mapping cannot be read or is corrupt.
    fn extents(&self, id: EntryId) -> Result<Vec<Extent>, FsError>;

    /// Reads file `id` from `offset` into `buf`; returns the bytes read (short only at the end
    /// of the file).
    ///
    /// # Errors
    ///
    /// As [`FileSystem::extents`], or the data cannot be read.
    fn read(&self, id: EntryId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError>;

    /// The target of symlink `id`, as stored.
    ///
    /// # Errors
    ///
    /// `id` is not a symlink, or its target cannot be read.
    fn read_link(&self, id: EntryId) -> Result<Vec<u8>, FsError>;

    /// Warnings about the volume's state found when opening it (a dirty journal, a volume
    /// marked dirty), for the operator and the log.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The names of entry `id`'s alternate data streams (NTFS named `$DATA` streams), which
    /// are not part of the file's content: the pipeline notes them in the log. Empty for
    /// filesystems without them.
    ///
    /// # Errors
    ///
    /// The entry's metadata cannot be read.
    fn streams(&self, id: EntryId) -> Result<Vec<String>, FsError> {
        let _ = id;
        Ok(Vec::new())
    }
}

/// Opens the filesystem on `source`: finds its type by signature ([`crate::probe`]) and hands
/// the source to the reader for that type.
///
/// # Errors
///
/// No known signature, no reader for the type found (both `Unsupported`), or the reader's own
/// error opening the volume.
pub fn open_filesystem(source: Arc<dyn ReadAt>) -> Result<Box<dyn FileSystem>, FsError> {
    let device = source.describe();
    let Some(detected) = crate::probe::probe(&*source)? else {
        return Err(FsError::Unsupported {
            device,
            what: "unknown filesystem (no signature this station knows)".into(),
        });
    };
    match detected.fs_type {
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => Ok(Box::new(ext::ExtFs::open(source)?)),
        FsType::Fat12 | FsType::Fat16 | FsType::Fat32 | FsType::ExFat => {
            Ok(Box::new(fat::FatFs::open(source)?))
        }
        FsType::HfsPlus | FsType::Hfsx => Ok(Box::new(hfsplus::HfsFs::open(source)?)),
        FsType::Ntfs => Ok(Box::new(ntfs::NtfsFs::open(source)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_names_keep_unpaired_surrogates_visible() {
        let name = RawName::Utf16(vec![0x61, 0xD800, 0x62]);
        assert_eq!(name.to_utf8(), None);
        assert_eq!(name.to_bytes(), vec![0x61, 0xED, 0xA0, 0x80, 0x62]);
        let name = RawName::Utf16("café 😀".encode_utf16().collect());
        assert_eq!(name.to_utf8().as_deref(), Some("café 😀"));
    }
}
