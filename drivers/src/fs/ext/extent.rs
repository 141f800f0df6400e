//! ext4 extent trees: the root in `i_block`, index and leaf blocks below it.
//!
//! The tree is walked depth-first in logical order. Depth is bounded (5, as in the kernel),
//! every child must be exactly one level lower, index keys must increase, and the walk stops at
//! the end of the file, so a corrupt tree ends in an error, never in a loop.

use super::checksum::crc32c;
use super::inode::{Inode, I_BLOCK};
use super::runs::{RunError, Runs};
use super::{le16, le32, ExtFs};
use crate::fs::{ExtentKind, FsError};

const MAGIC: u16 = 0xF30A;
/// The kernel's limit on tree depth.
const MAX_DEPTH: u16 = 5;
/// Most tree blocks read for one file (a 16 TiB file of 4 KiB fragments needs about 13 M
/// leaf entries, 40 k blocks). A smaller file is held to 5 blocks per block of its size, as
/// each level can hold at most one node per block it maps.
const MAX_NODES: u64 = 1 << 20;
/// Longest extent of initialized blocks; longer lengths mark unwritten extents.
const INIT_MAX_LEN: u16 = 32_768;

struct Walk<'a> {
    fs: &'a ExtFs,
    inode: &'a Inode,
    runs: &'a mut Runs,
    nodes: u64,
    max_nodes: u64,
    seed: u32,
}

/// Adds the extents of `inode`'s tree to `runs`.
pub(crate) fn map(fs: &ExtFs, inode: &Inode, runs: &mut Runs) -> Result<(), FsError> {
    let seed = inode.csum_seed(&fs.sb);
    let max_nodes = runs
        .end_block()
        .saturating_mul(u64::from(MAX_DEPTH))
        .saturating_add(u64::from(MAX_DEPTH))
        .min(MAX_NODES);
    let mut walk = Walk {
        fs,
        inode,
        runs,
        nodes: 0,
        max_nodes,
        seed,
    };
    walk.node(inode.i_block(), inode.offset + I_BLOCK as u64, None)?;
    Ok(())
}

impl Walk<'_> {
    fn corrupt(&self, offset: u64, what: String) -> FsError {
        self.fs.dev.corrupt(
            offset,
            format!("inode {}: extent tree: {what}", self.inode.ino),
        )
    }

    /// Walks one node (the root, or a block read at byte `offset`). Returns whether the end
    /// of the file was reached.
    fn node(&mut self, node: &[u8], offset: u64, depth_want: Option<u16>) -> Result<bool, FsError> {
        let magic = le16(node, 0);
        if magic != MAGIC {
            return Err(self.corrupt(offset, format!("header magic 0x{magic:04X} (want 0xF30A)")));
        }
        let entries = le16(node, 2);
        let max = le16(node, 4);
        let depth = le16(node, 6);
        let capacity = (node.len() - 12) / 12;
        if usize::from(max) > capacity || entries > max {
            return Err(self.corrupt(
                offset,
                format!(
                    "{entries} entries, room for {max} (a node of {} bytes holds {capacity})",
                    node.len()
                ),
            ));
        }
        if depth > MAX_DEPTH || depth_want.is_some_and(|want| want != depth) {
            return Err(self.corrupt(
                offset + 6,
                format!("depth {depth} (want {})", depth_want.unwrap_or(MAX_DEPTH)),
            ));
        }
        if depth_want.is_some() && self.fs.sb.metadata_csum() {
            let tail = 12 + 12 * usize::from(max);
            match node.get(tail..tail + 4) {
                Some(stored) => {
                    let stored = le32(stored, 0);
                    let computed = crc32c(self.seed, &node[..tail]);
                    if stored != computed {
                        return Err(self.corrupt(
                            offset + tail as u64,
                            format!("block checksum 0x{stored:08X} (computed 0x{computed:08X})"),
                        ));
                    }
                }
                None => {
                    return Err(self.corrupt(
                        offset,
                        format!("no room for the checksum after {max} entries"),
                    ))
                }
            }
        }
        let blocks_count = self.fs.sb.blocks_count;
        let end_block = self.runs.end_block();
        let mut previous: Option<u32> = None;
        for k in 0..usize::from(entries) {
            let at = 12 + 12 * k;
            let e = &node[at..at + 12];
            let entry_offset = offset + at as u64;
            let logical = le32(e, 0);
            if previous.is_some_and(|p| p >= logical) {
                return Err(self.corrupt(
                    entry_offset,
                    format!(
                        "entry for block {logical} after one for block {}",
                        previous.unwrap_or(0)
                    ),
                ));
            }
            previous = Some(logical);
            if u64::from(logical) >= end_block {
                return Ok(true);
            }
            if depth == 0 {
                let raw_len = le16(e, 4);
                let (len, kind) = if raw_len > INIT_MAX_LEN {
                    (raw_len - INIT_MAX_LEN, ExtentKind::Zero)
                } else {
                    (raw_len, ExtentKind::Data)
                };
                let start = u64::from(le32(e, 8)) | (u64::from(le16(e, 6)) << 32);
                if len == 0 || start == 0 || start + u64::from(len) > blocks_count {
                    return Err(self.corrupt(
                        entry_offset,
                        format!(
                            "extent of {len} blocks at block {start} (the volume has {blocks_count} blocks)"
                        ),
                    ));
                }
                match self
                    .runs
                    .push(u64::from(logical), start, u64::from(len), kind)
                {
                    Ok(true) => return Ok(true),
                    Ok(false) => {}
                    Err(e) => return Err(self.run_error(entry_offset, e)),
                }
            } else {
                let child = u64::from(le32(e, 4)) | (u64::from(le16(e, 8)) << 32);
                if child <= u64::from(self.fs.sb.first_data_block) || child >= blocks_count {
                    return Err(self.corrupt(
                        entry_offset,
                        format!(
                            "index points to block {child} (the volume has {blocks_count} blocks)"
                        ),
                    ));
                }
                self.nodes += 1;
                if self.nodes > self.max_nodes {
                    return Err(self.corrupt(
                        offset,
                        format!(
                            "more than {} tree blocks for {} bytes",
                            self.max_nodes, self.inode.size
                        ),
                    ));
                }
                let bs = u64::from(self.fs.sb.block_size);
                let mut block = vec![0u8; self.fs.sb.block_size as usize];
                self.fs.source.read_exact_at(child * bs, &mut block)?;
                if self.node(&block, child * bs, Some(depth - 1))? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn run_error(&self, offset: u64, e: RunError) -> FsError {
        match e {
            RunError::Overlap { logical, expected } => self.corrupt(
                offset,
                format!("extent for block {logical} overlaps the previous ones (next free block {expected})"),
            ),
            RunError::TooMany => self.fs.dev.unsupported(format!(
                "inode {}: more than {} fragments",
                self.inode.ino,
                super::runs::MAX_EXTENTS
            )),
        }
    }
}
