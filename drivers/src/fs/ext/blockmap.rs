//! ext2/ext3 block maps: 12 direct pointers, then single, double and triple indirect blocks.
//!
//! A zero pointer at any level is a hole covering everything below it (ext4-view follows it as
//! block 0). Only the indirect blocks the file's size reaches are read, and the levels are
//! fixed, so the walk is bounded by the file's size.

use super::inode::{Inode, I_BLOCK};
use super::runs::{RunError, Runs};
use super::{le32, ExtFs};
use crate::fs::{ExtentKind, FsError};

const DIRECT: u64 = 12;

struct Walk<'a> {
    fs: &'a ExtFs,
    inode: &'a Inode,
    runs: &'a mut Runs,
    per_block: u64,
    end_block: u64,
}

/// Adds the blocks of `inode`'s block map to `runs`.
pub(crate) fn map(fs: &ExtFs, inode: &Inode, runs: &mut Runs) -> Result<(), FsError> {
    let per_block = u64::from(fs.sb.block_size / 4);
    let end_block = runs.end_block();
    let capacity = DIRECT + per_block + per_block.pow(2) + per_block.pow(3);
    if end_block > capacity {
        return Err(fs.dev.corrupt(
            inode.offset + 4,
            format!(
                "inode {}: size {} needs {end_block} blocks; a block map addresses {capacity}",
                inode.ino, inode.size
            ),
        ));
    }
    let mut walk = Walk {
        fs,
        inode,
        runs,
        per_block,
        end_block,
    };
    let i_block = inode.i_block();
    let pointer_offset = |i: u64| inode.offset + I_BLOCK as u64 + 4 * i;
    for i in 0..DIRECT {
        let ptr = le32(i_block, 4 * i as usize);
        if walk.pointer(ptr, pointer_offset(i), 0, i)? {
            return Ok(());
        }
    }
    let mut first = DIRECT;
    for level in 1..=3u32 {
        let slot = DIRECT + u64::from(level) - 1;
        let ptr = le32(i_block, 4 * slot as usize);
        if walk.pointer(ptr, pointer_offset(slot), level, first)? {
            return Ok(());
        }
        first += per_block.pow(level);
    }
    Ok(())
}

impl Walk<'_> {
    /// Follows pointer `ptr` (stored at byte `at`) covering `per_block^level` blocks from
    /// logical block `first`. Returns whether the end of the file was reached.
    fn pointer(&mut self, ptr: u32, at: u64, level: u32, first: u64) -> Result<bool, FsError> {
        if first >= self.end_block {
            return Ok(true);
        }
        if ptr == 0 {
            return Ok(false);
        }
        let sb = &self.fs.sb;
        let block = u64::from(ptr);
        if block <= u64::from(sb.first_data_block) || block >= sb.blocks_count {
            return Err(self.fs.dev.corrupt(
                at,
                format!(
                    "inode {}: block pointer {ptr} for logical block {first} (level {level}; the volume has {} blocks)",
                    self.inode.ino, sb.blocks_count
                ),
            ));
        }
        if level == 0 {
            return match self.runs.push(first, block, 1, ExtentKind::Data) {
                Ok(done) => Ok(done),
                Err(RunError::TooMany) => Err(self.fs.dev.unsupported(format!(
                    "inode {}: more than {} fragments",
                    self.inode.ino,
                    super::runs::MAX_EXTENTS
                ))),
                Err(RunError::Overlap { .. }) => Err(self.fs.dev.corrupt(
                    at,
                    format!(
                        "inode {}: logical block {first} mapped twice",
                        self.inode.ino
                    ),
                )),
            };
        }
        let bs = u64::from(sb.block_size);
        let mut buf = vec![0u8; sb.block_size as usize];
        self.fs.source.read_exact_at(block * bs, &mut buf)?;
        let span = self.per_block.pow(level - 1);
        for i in 0..self.per_block {
            let child = le32(&buf, 4 * i as usize);
            if self.pointer(child, block * bs + 4 * i, level - 1, first + i * span)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
