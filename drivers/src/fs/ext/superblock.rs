//! The ext2/3/4 superblock: geometry, feature flags and their checks.
//!
//! The superblock is the 1,024 bytes at byte 1,024 of the volume. Every field that sizes or
//! places something else is checked here, once, so the rest of the reader can rely on a
//! consistent geometry (block size, groups, inode size, descriptor size).

use super::checksum::crc32c;
use super::{le16, le32, Dev};
use crate::fs::{FsError, FsType};

/// Byte offset of the superblock on the volume.
pub(crate) const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock.
pub(crate) const SUPERBLOCK_SIZE: usize = 1024;

const MAGIC: u16 = 0xEF53;
/// Most block groups a volume may have.
const MAX_GROUPS: u32 = 1 << 23;

// Field offsets inside the superblock.
const S_INODES_COUNT: usize = 0x00;
const S_BLOCKS_COUNT_LO: usize = 0x04;
const S_FIRST_DATA_BLOCK: usize = 0x14;
const S_LOG_BLOCK_SIZE: usize = 0x18;
const S_LOG_CLUSTER_SIZE: usize = 0x1C;
const S_BLOCKS_PER_GROUP: usize = 0x20;
const S_CLUSTERS_PER_GROUP: usize = 0x24;
const S_INODES_PER_GROUP: usize = 0x28;
const S_MAGIC: usize = 0x38;
const S_STATE: usize = 0x3A;
const S_REV_LEVEL: usize = 0x4C;
const S_FIRST_INO: usize = 0x54;
const S_INODE_SIZE: usize = 0x58;
const S_FEATURE_COMPAT: usize = 0x5C;
const S_FEATURE_INCOMPAT: usize = 0x60;
const S_FEATURE_RO_COMPAT: usize = 0x64;
const S_UUID: usize = 0x68;
const S_VOLUME_NAME: usize = 0x78;
const S_JOURNAL_INUM: usize = 0xE0;
const S_LAST_ORPHAN: usize = 0xE8;
const S_DESC_SIZE: usize = 0xFE;
const S_FIRST_META_BG: usize = 0x104;
const S_BLOCKS_COUNT_HI: usize = 0x150;
const S_CHECKSUM_TYPE: usize = 0x175;
const S_BACKUP_BGS: usize = 0x24C;
const S_CHECKSUM_SEED: usize = 0x270;
const S_CHECKSUM: usize = 0x3FC;

/// compat: the volume has a journal.
pub(crate) const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// compat: superblock backups only in the two groups `s_backup_bgs` names.
pub(crate) const COMPAT_SPARSE_SUPER2: u32 = 0x200;

/// incompat: directory entries carry a file type.
pub(crate) const INCOMPAT_FILETYPE: u32 = 0x2;
/// incompat: the journal needs recovery.
pub(crate) const INCOMPAT_RECOVER: u32 = 0x4;
/// incompat: group descriptors are spread over meta block groups.
pub(crate) const INCOMPAT_META_BG: u32 = 0x10;
/// incompat: files may use extent trees.
pub(crate) const INCOMPAT_EXTENTS: u32 = 0x40;
/// incompat: 64-bit block numbers and 64-byte group descriptors.
pub(crate) const INCOMPAT_64BIT: u32 = 0x80;
/// incompat: the checksum seed is stored in the superblock.
pub(crate) const INCOMPAT_CSUM_SEED: u32 = 0x2000;
/// incompat: small files and directories may live inside the inode.
pub(crate) const INCOMPAT_INLINE_DATA: u32 = 0x8000;

/// The incompat features, with the ones this reader can read.
const INCOMPAT_FEATURES: &[(u32, &str, bool)] = &[
    (0x1, "compression", false),
    (INCOMPAT_FILETYPE, "filetype", true),
    (INCOMPAT_RECOVER, "needs_recovery", true),
    (
        0x8,
        "journal_dev (this is an external journal, not a filesystem)",
        false,
    ),
    (INCOMPAT_META_BG, "meta_bg", true),
    (INCOMPAT_EXTENTS, "extent", true),
    (INCOMPAT_64BIT, "64bit", true),
    (0x100, "mmp", true),
    (0x200, "flex_bg", true),
    (0x400, "ea_inode", true),
    (0x1000, "dirdata", false),
    (INCOMPAT_CSUM_SEED, "metadata_csum_seed", true),
    (0x4000, "large_dir", true),
    (INCOMPAT_INLINE_DATA, "inline_data", true),
    (0x10000, "encrypt", true),
    (0x20000, "casefold", true),
];

/// ro_compat: superblock backups only in groups 0, 1 and powers of 3, 5 and 7.
pub(crate) const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// ro_compat: group descriptors carry a CRC16.
pub(crate) const RO_COMPAT_GDT_CSUM: u32 = 0x10;
/// ro_compat: blocks are allocated in clusters.
pub(crate) const RO_COMPAT_BIGALLOC: u32 = 0x200;
/// ro_compat: metadata carries CRC32C checksums.
pub(crate) const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// Every ro_compat feature the kernel knows of in 2026; others are reported as warnings.
const RO_COMPAT_KNOWN: u32 = 0x1FFFF;

/// The ro_compat and incompat bits ext3 knows; anything beyond makes a volume ext4.
const EXT3_INCOMPAT: u32 = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;
const EXT3_RO_COMPAT: u32 = RO_COMPAT_SPARSE_SUPER | 0x2 | 0x4;

/// The superblock fields the reader uses, checked for consistency.
#[derive(Debug, Clone)]
pub(crate) struct Superblock {
    /// Total inodes.
    pub inodes_count: u32,
    /// Total blocks.
    pub blocks_count: u64,
    /// The block holding the superblock (1 on 1 KiB-block volumes, else 0).
    pub first_data_block: u32,
    /// Block size in bytes (1 KiB to 64 KiB).
    pub block_size: u32,
    /// Cluster size in bytes (the block size unless bigalloc).
    pub cluster_size: u32,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// On-disk inode record size.
    pub inode_size: u16,
    /// Group descriptor size (32, or 64 and up with 64bit).
    pub desc_size: u16,
    /// Number of block groups.
    pub group_count: u32,
    /// Feature flags.
    pub compat: u32,
    /// Feature flags.
    pub incompat: u32,
    /// Feature flags.
    pub ro_compat: u32,
    /// The volume's UUID (the CRC16 seed of gdt_csum).
    pub uuid: [u8; 16],
    /// The volume label, NUL-padded.
    pub volume_name: [u8; 16],
    /// First meta block group (meta_bg).
    pub first_meta_bg: u32,
    /// The groups holding superblock backups (sparse_super2).
    pub backup_bgs: [u32; 2],
    /// The journal's inode (0 when external or absent).
    pub journal_inum: u32,
    /// Mount state (bit 0: cleanly unmounted, bit 1: errors).
    pub state: u16,
    /// Head of the orphan inode list.
    pub last_orphan: u32,
    /// The CRC32C seed of metadata checksums (from the UUID or stored).
    pub csum_seed: u32,
}

impl Superblock {
    /// Parses and checks the 1,024 bytes read at [`SUPERBLOCK_OFFSET`] of a volume of
    /// `device_size` bytes.
    pub(crate) fn parse(b: &[u8], device_size: u64, dev: &Dev) -> Result<Self, FsError> {
        let at = |field: usize| SUPERBLOCK_OFFSET + field as u64;
        if b.len() < SUPERBLOCK_SIZE {
            return Err(dev.corrupt(
                SUPERBLOCK_OFFSET,
                format!("superblock: only {} bytes", b.len()),
            ));
        }
        let magic = le16(b, S_MAGIC);
        if magic != MAGIC {
            return Err(dev.corrupt(
                at(S_MAGIC),
                format!("superblock magic 0x{magic:04X} (want 0xEF53: not an ext2/3/4 volume)"),
            ));
        }
        let compat = le32(b, S_FEATURE_COMPAT);
        let incompat = le32(b, S_FEATURE_INCOMPAT);
        let ro_compat = le32(b, S_FEATURE_RO_COMPAT);

        // The checksum first: when it is wrong, every other field is suspect.
        let metadata_csum = ro_compat & RO_COMPAT_METADATA_CSUM != 0;
        if metadata_csum {
            let kind = b[S_CHECKSUM_TYPE];
            if kind != 1 {
                return Err(dev.unsupported(format!(
                    "superblock checksum type {kind} (only 1, crc32c, is defined)"
                )));
            }
            let stored = le32(b, S_CHECKSUM);
            let computed = crc32c(!0, &b[..S_CHECKSUM]);
            if stored != computed {
                return Err(dev.corrupt(
                    at(S_CHECKSUM),
                    format!("superblock checksum 0x{stored:08X} (computed 0x{computed:08X})"),
                ));
            }
        }

        for &(bit, name, readable) in INCOMPAT_FEATURES {
            if incompat & bit != 0 && !readable {
                return Err(dev.unsupported(format!("incompatible feature {name} (0x{bit:X})")));
            }
        }
        let known: u32 = INCOMPAT_FEATURES.iter().map(|f| f.0).fold(0, |a, b| a | b);
        let unknown = incompat & !known;
        if unknown != 0 {
            return Err(
                dev.unsupported(format!("unknown incompatible feature flags 0x{unknown:X}"))
            );
        }

        let log_block_size = le32(b, S_LOG_BLOCK_SIZE);
        if log_block_size > 6 {
            return Err(dev.corrupt(
                at(S_LOG_BLOCK_SIZE),
                format!("log block size {log_block_size} (block size over 64 KiB)"),
            ));
        }
        let block_size = 1024u32 << log_block_size;
        let bigalloc = ro_compat & RO_COMPAT_BIGALLOC != 0;
        let cluster_size = if bigalloc {
            let log = le32(b, S_LOG_CLUSTER_SIZE);
            if log < log_block_size || log > 29 {
                return Err(dev.corrupt(
                    at(S_LOG_CLUSTER_SIZE),
                    format!(
                        "log cluster size {log} (block size 2^{})",
                        log_block_size + 10
                    ),
                ));
            }
            1u32 << (log + 10)
        } else {
            block_size
        };

        let rev_level = le32(b, S_REV_LEVEL);
        let inode_size = if rev_level == 0 {
            128
        } else {
            let size = le16(b, S_INODE_SIZE);
            if size < 128 || !size.is_power_of_two() || u32::from(size) > block_size {
                return Err(dev.corrupt(
                    at(S_INODE_SIZE),
                    format!("inode size {size} (want a power of two from 128 to the block size {block_size})"),
                ));
            }
            size
        };
        if rev_level > 0 {
            let first_ino = le32(b, S_FIRST_INO);
            if first_ino < 11 {
                return Err(dev.corrupt(
                    at(S_FIRST_INO),
                    format!("first non-reserved inode {first_ino} (want 11 or more)"),
                ));
            }
        }

        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            let size = le16(b, S_DESC_SIZE);
            if !(64..=1024).contains(&size) || !size.is_power_of_two() {
                return Err(dev.corrupt(
                    at(S_DESC_SIZE),
                    format!("group descriptor size {size} (want a power of two from 64 to 1024)"),
                ));
            }
            size
        } else {
            32
        };

        let blocks_lo = u64::from(le32(b, S_BLOCKS_COUNT_LO));
        let blocks_count = if incompat & INCOMPAT_64BIT != 0 {
            blocks_lo | (u64::from(le32(b, S_BLOCKS_COUNT_HI)) << 32)
        } else {
            blocks_lo
        };
        let first_data_block = le32(b, S_FIRST_DATA_BLOCK);
        if u64::from(first_data_block) >= blocks_count {
            return Err(dev.corrupt(
                at(S_FIRST_DATA_BLOCK),
                format!("first data block {first_data_block} of a volume of {blocks_count} blocks"),
            ));
        }
        let fs_bytes = blocks_count.checked_mul(u64::from(block_size));
        if fs_bytes.is_none_or(|n| n > device_size) {
            return Err(dev.corrupt(
                at(S_BLOCKS_COUNT_LO),
                format!(
                    "block count {blocks_count} of {block_size} bytes: more than the device's {device_size} bytes (a truncated image?)"
                ),
            ));
        }

        // Bitmaps are one block (one cluster per bit), so a group holds at most 8 x block
        // size clusters and inodes.
        let bits = block_size.saturating_mul(8);
        let blocks_per_group = le32(b, S_BLOCKS_PER_GROUP);
        let clusters_per_group = le32(b, S_CLUSTERS_PER_GROUP);
        let per_group_ok = if bigalloc {
            clusters_per_group > 0
                && clusters_per_group <= bits
                && u64::from(blocks_per_group)
                    == u64::from(clusters_per_group) * u64::from(cluster_size / block_size)
        } else {
            blocks_per_group > 0 && blocks_per_group <= bits
        };
        if !per_group_ok {
            return Err(dev.corrupt(
                at(S_BLOCKS_PER_GROUP),
                format!("blocks per group {blocks_per_group} (clusters per group {clusters_per_group}, block size {block_size})"),
            ));
        }
        let inodes_per_group = le32(b, S_INODES_PER_GROUP);
        if inodes_per_group == 0 || inodes_per_group > bits {
            return Err(dev.corrupt(
                at(S_INODES_PER_GROUP),
                format!("inodes per group {inodes_per_group} (want 1 to {bits})"),
            ));
        }
        let data_blocks = blocks_count - u64::from(first_data_block);
        let groups = data_blocks.div_ceil(u64::from(blocks_per_group));
        let group_count = u32::try_from(groups).map_err(|_| {
            dev.corrupt(
                at(S_BLOCKS_COUNT_LO),
                format!("{groups} block groups (block count {blocks_count}, {blocks_per_group} per group)"),
            )
        })?;
        // 8 Mi groups is 256 TiB with 1 KiB blocks and 512 TiB with 4 KiB blocks; more would
        // only come from a corrupt geometry and would cost gigabytes of descriptors.
        if group_count > MAX_GROUPS {
            return Err(dev.unsupported(format!(
                "{group_count} block groups (block count {blocks_count}, {blocks_per_group} per group): more than {MAX_GROUPS}"
            )));
        }
        let inodes_count = le32(b, S_INODES_COUNT);
        if inodes_count < 11 || u64::from(inodes_count) > groups * u64::from(inodes_per_group) {
            return Err(dev.corrupt(
                at(S_INODES_COUNT),
                format!(
                    "inode count {inodes_count} ({groups} groups of {inodes_per_group} inodes)"
                ),
            ));
        }

        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[S_UUID..S_UUID + 16]);
        let mut volume_name = [0u8; 16];
        volume_name.copy_from_slice(&b[S_VOLUME_NAME..S_VOLUME_NAME + 16]);
        let csum_seed = if incompat & INCOMPAT_CSUM_SEED != 0 {
            le32(b, S_CHECKSUM_SEED)
        } else {
            crc32c(!0, &uuid)
        };
        Ok(Self {
            inodes_count,
            blocks_count,
            first_data_block,
            block_size,
            cluster_size,
            blocks_per_group,
            inodes_per_group,
            inode_size,
            desc_size,
            group_count,
            compat,
            incompat,
            ro_compat,
            uuid,
            volume_name,
            first_meta_bg: le32(b, S_FIRST_META_BG),
            backup_bgs: [le32(b, S_BACKUP_BGS), le32(b, S_BACKUP_BGS + 4)],
            journal_inum: le32(b, S_JOURNAL_INUM),
            state: le16(b, S_STATE),
            last_orphan: le32(b, S_LAST_ORPHAN),
            csum_seed,
        })
    }

    /// Whether metadata carries CRC32C checksums.
    pub(crate) fn metadata_csum(&self) -> bool {
        self.ro_compat & RO_COMPAT_METADATA_CSUM != 0
    }

    /// Whether directory entries carry a file type byte.
    pub(crate) fn filetype(&self) -> bool {
        self.incompat & INCOMPAT_FILETYPE != 0
    }

    /// ext2, ext3 or ext4, as blkid names them: ext4 when any feature beyond ext3's is set.
    pub(crate) fn fs_type(&self) -> FsType {
        if self.incompat & !EXT3_INCOMPAT != 0 || self.ro_compat & !EXT3_RO_COMPAT != 0 {
            FsType::Ext4
        } else if self.compat & COMPAT_HAS_JOURNAL != 0 {
            FsType::Ext3
        } else {
            FsType::Ext2
        }
    }

    /// Whether group `group` holds a superblock backup (and so a descriptor copy).
    pub(crate) fn group_has_super(&self, group: u32) -> bool {
        if group == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return group == self.backup_bgs[0] || group == self.backup_bgs[1];
        }
        if self.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 || group == 1 {
            return true;
        }
        [3u32, 5, 7].iter().any(|&base| {
            let mut n = base;
            while n < group {
                match n.checked_mul(base) {
                    Some(next) => n = next,
                    None => return false,
                }
            }
            n == group
        })
    }

    /// The volume label, when set.
    pub(crate) fn label(&self) -> Option<String> {
        let end = self.volume_name.iter().position(|&c| c == 0).unwrap_or(16);
        let name = &self.volume_name[..end];
        (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    }

    /// Warnings about the volume's state: a journal that needs recovery, recorded errors,
    /// unknown read-only features.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.incompat & INCOMPAT_RECOVER != 0 {
            let journal = match self.journal_inum {
                0 => "an external journal".to_string(),
                ino => format!("the journal (inode {ino})"),
            };
            out.push(format!(
                "{journal} needs recovery (the volume was not cleanly unmounted): the volume is \
                 read as it is on disk, without replaying the journal, so the last changes before \
                 the crash may be missing"
            ));
        }
        if self.state & 0x2 != 0 {
            out.push(format!(
                "the kernel recorded errors on this volume (state 0x{:04X}); its metadata may be inconsistent",
                self.state
            ));
        } else if self.state & 0x1 == 0 && self.compat & COMPAT_HAS_JOURNAL == 0 {
            out.push(format!(
                "the volume is not marked clean (state 0x{:04X}): it was not unmounted cleanly",
                self.state
            ));
        }
        if self.last_orphan != 0 {
            out.push(format!(
                "orphan inodes are pending deletion (list head inode {})",
                self.last_orphan
            ));
        }
        let unknown = self.ro_compat & !RO_COMPAT_KNOWN;
        if unknown != 0 {
            out.push(format!(
                "unknown read-only-compatible feature flags 0x{unknown:X}; read anyway"
            ));
        }
        out
    }
}
