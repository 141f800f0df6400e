//! Inodes: mode, size, flags, times, the 60-byte `i_block` area, checksums, and the in-inode
//! extended attribute that holds inline data.

use super::checksum::crc32c;
use super::superblock::Superblock;
use super::{le16, le32, Dev};
use crate::fs::{EntryKind, FsError, Timestamp, Zone};

const I_MODE: usize = 0x00;
const I_SIZE_LO: usize = 0x04;
const I_MTIME: usize = 0x10;
const I_BLOCKS_LO: usize = 0x1C;
const I_FLAGS: usize = 0x20;
/// Where `i_block` (block map, extent root, fast symlink or inline data) starts.
pub(crate) const I_BLOCK: usize = 0x28;
/// Size of `i_block`.
pub(crate) const I_BLOCK_LEN: usize = 60;
const I_GENERATION: usize = 0x64;
const I_FILE_ACL_LO: usize = 0x68;
const I_SIZE_HIGH: usize = 0x6C;
const I_BLOCKS_HIGH: usize = 0x74;
const I_FILE_ACL_HIGH: usize = 0x76;
const I_CHECKSUM_LO: usize = 0x7C;
const I_EXTRA_ISIZE: usize = 0x80;
const I_CHECKSUM_HI: usize = 0x82;
const I_MTIME_EXTRA: usize = 0x88;
const GOOD_OLD_INODE_SIZE: usize = 128;

/// Inode flag: the file's blocks are mapped by an extent tree.
pub(crate) const EXTENTS_FL: u32 = 0x0008_0000;
/// Inode flag: the data lives in the inode (i_block and the `system.data` attribute).
pub(crate) const INLINE_DATA_FL: u32 = 0x1000_0000;
/// Inode flag: the content (and, for directories, the names) is encrypted.
pub(crate) const ENCRYPT_FL: u32 = 0x0000_0800;

/// An inode read from the inode table.
#[derive(Debug, Clone)]
pub(crate) struct Inode {
    /// The inode number.
    pub ino: u32,
    /// Byte offset of the inode record on the volume.
    pub offset: u64,
    /// The record (the superblock's inode size).
    pub raw: Vec<u8>,
    /// Type and permission bits.
    pub mode: u16,
    /// Flags (`EXTENTS_FL`, ...).
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// `i_blocks` (512-byte units).
    pub blocks: u64,
    /// The extended-attribute block, 0 if none.
    pub file_acl: u64,
    /// Bytes of the record past the first 128 that are in use.
    pub extra_isize: usize,
}

/// Decodes an ext4 time: a signed 32-bit seconds field, plus (when the inode has room for it)
/// two epoch bits extending it to 34 bits and 30 bits of nanoseconds. A nanosecond value out of
/// range reads as 0: a bad time must never make a file unreadable.
pub(crate) fn decode_time(raw: u32, extra: Option<u32>) -> Timestamp {
    let mut seconds = i64::from(i32::from_le_bytes(raw.to_le_bytes()));
    let mut nanos = 0;
    if let Some(extra) = extra {
        seconds += i64::from(extra & 0x3) << 32;
        nanos = extra >> 2;
        if nanos >= 1_000_000_000 {
            nanos = 0;
        }
    }
    Timestamp {
        seconds,
        nanos,
        zone: Zone::Utc,
    }
}

impl Inode {
    /// Parses and checks the record of inode `ino` read at byte `offset`.
    pub(crate) fn parse(
        raw: Vec<u8>,
        ino: u32,
        offset: u64,
        sb: &Superblock,
        dev: &Dev,
    ) -> Result<Self, FsError> {
        let at = |field: usize| offset + field as u64;
        let inode_size = raw.len();
        let extra_isize = if inode_size > GOOD_OLD_INODE_SIZE {
            usize::from(le16(&raw, I_EXTRA_ISIZE))
        } else {
            0
        };
        if GOOD_OLD_INODE_SIZE + extra_isize > inode_size || extra_isize % 4 != 0 {
            return Err(dev.corrupt(
                at(I_EXTRA_ISIZE),
                format!("inode {ino}: extra size {extra_isize} (the record is {inode_size} bytes)"),
            ));
        }
        if sb.metadata_csum() {
            let has_hi = extra_isize >= I_CHECKSUM_HI + 2 - GOOD_OLD_INODE_SIZE;
            let mut stored = u32::from(le16(&raw, I_CHECKSUM_LO));
            let mut copy = raw.clone();
            copy[I_CHECKSUM_LO..I_CHECKSUM_LO + 2].fill(0);
            if has_hi {
                stored |= u32::from(le16(&raw, I_CHECKSUM_HI)) << 16;
                copy[I_CHECKSUM_HI..I_CHECKSUM_HI + 2].fill(0);
            }
            let seed = inode_seed(sb, ino, le32(&raw, I_GENERATION));
            let mut computed = crc32c(seed, &copy);
            if !has_hi {
                computed &= 0xFFFF;
            }
            if stored != computed {
                return Err(dev.corrupt(
                    at(I_CHECKSUM_LO),
                    format!("inode {ino}: checksum 0x{stored:08X} (computed 0x{computed:08X})"),
                ));
            }
        }
        let mode = le16(&raw, I_MODE);
        let is_reg = mode & 0xF000 == 0x8000;
        let is_dir = mode & 0xF000 == 0x4000;
        let mut size = u64::from(le32(&raw, I_SIZE_LO));
        if is_reg || (is_dir && sb.incompat & 0x4000 != 0) {
            size |= u64::from(le32(&raw, I_SIZE_HIGH)) << 32;
        }
        let mtime_extra = (extra_isize >= I_MTIME_EXTRA + 4 - GOOD_OLD_INODE_SIZE)
            .then(|| le32(&raw, I_MTIME_EXTRA));
        Ok(Self {
            ino,
            offset,
            mode,
            flags: le32(&raw, I_FLAGS),
            size,
            mtime: decode_time(le32(&raw, I_MTIME), mtime_extra),
            blocks: u64::from(le32(&raw, I_BLOCKS_LO))
                | (u64::from(le16(&raw, I_BLOCKS_HIGH)) << 32),
            file_acl: u64::from(le32(&raw, I_FILE_ACL_LO))
                | (u64::from(le16(&raw, I_FILE_ACL_HIGH)) << 32),
            extra_isize,
            raw,
        })
    }

    /// What the mode says the inode is, or `None` for a mode with no valid type.
    pub(crate) fn kind(&self) -> Option<EntryKind> {
        Some(match self.mode & 0xF000 {
            0x1000 => EntryKind::Fifo,
            0x2000 => EntryKind::CharDevice,
            0x4000 => EntryKind::Directory,
            0x6000 => EntryKind::BlockDevice,
            0x8000 => EntryKind::File,
            0xA000 => EntryKind::Symlink,
            0xC000 => EntryKind::Socket,
            _ => return None,
        })
    }

    /// The 60-byte `i_block` area.
    pub(crate) fn i_block(&self) -> &[u8] {
        &self.raw[I_BLOCK..I_BLOCK + I_BLOCK_LEN]
    }

    /// Whether the inode has the given flag.
    pub(crate) fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// The seed of this inode's metadata checksums (extent and directory blocks).
    pub(crate) fn csum_seed(&self, sb: &Superblock) -> u32 {
        inode_seed(sb, self.ino, le32(&self.raw, I_GENERATION))
    }

    /// Whether a symlink keeps its target in `i_block` (a "fast" symlink): it has no data
    /// blocks apart from an extended-attribute block. The kernel's rule.
    pub(crate) fn is_fast_symlink(&self, sb: &Superblock) -> bool {
        if self.has_flag(INLINE_DATA_FL) {
            return false;
        }
        let ea_blocks = if self.file_acl != 0 {
            u64::from(sb.cluster_size / 512)
        } else {
            0
        };
        self.blocks == ea_blocks && self.size < I_BLOCK_LEN as u64
    }

    /// Where the `system.data` attribute's value lies in the record (offset, length), for
    /// inline data; `None` when the inode has no such attribute.
    pub(crate) fn inline_data_xattr(&self, dev: &Dev) -> Result<Option<(usize, usize)>, FsError> {
        let start = GOOD_OLD_INODE_SIZE + self.extra_isize;
        if start + 4 > self.raw.len() || le32(&self.raw, start) != 0xEA02_0000 {
            return Ok(None);
        }
        let first = start + 4;
        let end = self.raw.len();
        let mut pos = first;
        // Each entry takes at least 16 bytes, so this ends within the record.
        while pos + 16 <= end {
            if le32(&self.raw, pos) == 0 {
                break;
            }
            let name_len = usize::from(self.raw[pos]);
            let index = self.raw[pos + 1];
            let value_offs = usize::from(le16(&self.raw, pos + 2));
            let value_inum = le32(&self.raw, pos + 4);
            let value_size = le32(&self.raw, pos + 8) as usize;
            let name = self.raw.get(pos + 16..pos + 16 + name_len);
            let Some(name) = name else {
                return Err(dev.corrupt(
                    self.offset + pos as u64,
                    format!("inode {}: in-inode attribute name of {name_len} bytes runs past the record", self.ino),
                ));
            };
            if index == 7 && name == b"data" {
                if value_inum != 0 {
                    return Err(dev.unsupported(format!(
                        "inode {}: inline data stored in attribute inode {value_inum}",
                        self.ino
                    )));
                }
                let value_start = first + value_offs;
                if value_start.checked_add(value_size).is_none_or(|e| e > end) {
                    return Err(dev.corrupt(
                        self.offset + pos as u64,
                        format!(
                            "inode {}: inline data attribute at {value_offs}, {value_size} bytes, past the record",
                            self.ino
                        ),
                    ));
                }
                return Ok(Some((value_start, value_size)));
            }
            pos += (16 + name_len).next_multiple_of(4);
        }
        Ok(None)
    }
}

/// The checksum seed of inode `ino` with generation `generation`.
fn inode_seed(sb: &Superblock, ino: u32, generation: u32) -> u32 {
    let crc = crc32c(sb.csum_seed, &ino.to_le_bytes());
    crc32c(crc, &generation.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_1970_and_after_2038_decode() {
        // 1960-04-03, no extra field: bit 31 set means before 1970.
        assert_eq!(decode_time(0xEDAA_A400, None).seconds, -307_584_000);
        // The same raw field with epoch bits 1 is in 2106-ish; with the extra field 0 it is
        // still 1960.
        assert_eq!(decode_time(0xEDAA_A400, Some(0)).seconds, -307_584_000);
        // 2040-01-01 and 2100-01-01 need the epoch bit.
        assert_eq!(decode_time(0x83AA_7E80, Some(1)).seconds, 2_208_988_800);
        assert_eq!(decode_time(0xF486_5700, Some(1)).seconds, 4_102_444_800);
        // Nanoseconds live in the upper 30 bits.
        let t = decode_time(5, Some(123_456_789 << 2));
        assert_eq!((t.seconds, t.nanos, t.zone), (5, 123_456_789, Zone::Utc));
        // Out-of-range nanoseconds do not make the time (or the file) unreadable.
        assert_eq!(decode_time(5, Some(0xFFFF_FFFC)).nanos, 0);
    }
}
