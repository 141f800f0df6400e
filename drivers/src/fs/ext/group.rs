//! Block group descriptors: where each group's inode table is, with their checksums.
//!
//! Descriptors are read once when the volume is opened. A descriptor that fails its checksum
//! or points outside the volume is kept as an error, so only the inodes of that group become
//! unreadable, not the whole volume.

use super::checksum::{crc16, crc32c};
use super::superblock::{
    Superblock, INCOMPAT_64BIT, INCOMPAT_META_BG, RO_COMPAT_GDT_CSUM, RO_COMPAT_METADATA_CSUM,
};
use super::{le16, le32, Dev};
use crate::fs::FsError;
use crate::source::ReadAt;

const BG_INODE_TABLE_LO: usize = 0x08;
const BG_CHECKSUM: usize = 0x1E;
const BG_INODE_TABLE_HI: usize = 0x28;

/// One group's descriptor, as far as the reader needs it.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// First block of the inode table, or why it cannot be used.
    pub inode_table: Result<u64, String>,
    /// Byte offset of the descriptor, for error messages.
    pub offset: u64,
}

/// Byte offsets of each descriptor block, in order.
fn descriptor_blocks(sb: &Superblock) -> Vec<u64> {
    let per_block = sb.block_size / u32::from(sb.desc_size);
    let count = sb.group_count.div_ceil(per_block);
    let first = u64::from(sb.first_data_block);
    (0..count)
        .map(|i| {
            if sb.incompat & INCOMPAT_META_BG == 0 || i < sb.first_meta_bg {
                return first + 1 + u64::from(i);
            }
            // meta_bg: the descriptor block of meta group i sits in its first group, after
            // the superblock backup if that group has one.
            let group = i.saturating_mul(per_block);
            let mut has_super = u64::from(sb.group_has_super(group));
            if sb.block_size == 1024 && i == 0 && sb.first_data_block == 0 {
                has_super += 1;
            }
            first + u64::from(group) * u64::from(sb.blocks_per_group) + has_super
        })
        .collect()
}

/// Reads and checks every group descriptor.
pub(crate) fn read_groups(
    source: &dyn ReadAt,
    sb: &Superblock,
    dev: &Dev,
) -> Result<Vec<Group>, FsError> {
    let bs = u64::from(sb.block_size);
    let desc_size = usize::from(sb.desc_size);
    let per_block = usize::try_from(sb.block_size / u32::from(sb.desc_size)).unwrap_or(1);
    let groups = usize::try_from(sb.group_count)
        .map_err(|_| dev.corrupt(0, format!("{} block groups", sb.group_count)))?;
    let itable_blocks = (u64::from(sb.inodes_per_group) * u64::from(sb.inode_size)).div_ceil(bs);
    let blocks = descriptor_blocks(sb);
    let mut out = Vec::with_capacity(groups);
    // Contiguous descriptor blocks (all of them without meta_bg) are read in one go.
    let mut i = 0;
    while i < blocks.len() {
        let mut run = 1;
        while i + run < blocks.len() && blocks[i + run] == blocks[i] + run as u64 && run < 256 {
            run += 1;
        }
        if blocks[i] + run as u64 > sb.blocks_count {
            return Err(dev.corrupt(
                blocks[i].saturating_mul(bs),
                format!(
                    "group descriptor block {} past the end of the volume ({} blocks)",
                    blocks[i] + run as u64 - 1,
                    sb.blocks_count
                ),
            ));
        }
        let mut buf = vec![0u8; run * sb.block_size as usize];
        source.read_exact_at(blocks[i] * bs, &mut buf)?;
        for (k, block) in buf.chunks_exact(sb.block_size as usize).enumerate() {
            for (j, raw) in block.chunks_exact(desc_size).take(per_block).enumerate() {
                let g = (i + k) * per_block + j;
                if g >= groups {
                    break;
                }
                let offset = (blocks[i] + k as u64) * bs + (j * desc_size) as u64;
                out.push(parse(raw, g as u32, offset, itable_blocks, sb));
            }
        }
        i += run;
    }
    Ok(out)
}

/// Checks one descriptor and finds its inode table.
fn parse(raw: &[u8], group: u32, offset: u64, itable_blocks: u64, sb: &Superblock) -> Group {
    let check = || -> Result<u64, String> {
        let stored = le16(raw, BG_CHECKSUM);
        if sb.ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
            let mut crc = crc32c(sb.csum_seed, &group.to_le_bytes());
            crc = crc32c(crc, &raw[..BG_CHECKSUM]);
            crc = crc32c(crc, &[0, 0]);
            crc = crc32c(crc, &raw[BG_CHECKSUM + 2..]);
            let computed = (crc & 0xFFFF) as u16;
            if stored != computed {
                return Err(format!(
                    "group {group} descriptor checksum 0x{stored:04X} (computed 0x{computed:04X})"
                ));
            }
        } else if sb.ro_compat & RO_COMPAT_GDT_CSUM != 0 {
            let mut crc = crc16(!0, &sb.uuid);
            crc = crc16(crc, &group.to_le_bytes());
            crc = crc16(crc, &raw[..BG_CHECKSUM]);
            if sb.incompat & INCOMPAT_64BIT != 0 {
                crc = crc16(crc, &raw[BG_CHECKSUM + 2..]);
            }
            if stored != crc {
                return Err(format!(
                    "group {group} descriptor checksum 0x{stored:04X} (computed 0x{crc:04X})"
                ));
            }
        }
        let mut table = u64::from(le32(raw, BG_INODE_TABLE_LO));
        if sb.incompat & INCOMPAT_64BIT != 0 {
            table |= u64::from(le32(raw, BG_INODE_TABLE_HI)) << 32;
        }
        if table <= u64::from(sb.first_data_block)
            || table.saturating_add(itable_blocks) > sb.blocks_count
        {
            return Err(format!(
                "group {group} inode table at block {table} ({itable_blocks} blocks; the volume has {})",
                sb.blocks_count
            ));
        }
        Ok(table)
    };
    Group {
        inode_table: check(),
        offset,
    }
}
