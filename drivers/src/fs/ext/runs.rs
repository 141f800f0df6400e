//! Turns block mappings, given in logical order, into byte-unit extents that cover exactly a
//! file's size: contiguous blocks merge into one run, gaps become holes, and whatever lies past
//! the end of the file is cut off.

use crate::fs::{Extent, ExtentKind};

/// Most extents one file may have: 4 Mi runs take 128 MiB of memory, and only a file made of
/// millions of separate fragments needs more.
pub(crate) const MAX_EXTENTS: usize = 1 << 22;

/// Why a mapping could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunError {
    /// The blocks start before the end of the previous mapping (out of order or twice).
    Overlap {
        /// The logical block.
        logical: u64,
        /// The first logical block not yet mapped.
        expected: u64,
    },
    /// More than [`MAX_EXTENTS`] runs.
    TooMany,
}

/// Accumulates a file's extents.
#[derive(Debug)]
pub(crate) struct Runs {
    block_size: u64,
    size: u64,
    /// The first byte not yet covered.
    next: u64,
    extents: Vec<Extent>,
}

impl Runs {
    /// An empty map for a file of `size` bytes on `block_size`-byte blocks.
    pub(crate) fn new(block_size: u32, size: u64) -> Self {
        Self {
            block_size: u64::from(block_size),
            size,
            next: 0,
            extents: Vec::new(),
        }
    }

    /// The number of blocks the file's size spans: mappings at or past it are not needed.
    pub(crate) fn end_block(&self) -> u64 {
        self.size.div_ceil(self.block_size)
    }

    /// Adds `count` blocks from logical block `logical`, stored at physical block `physical`
    /// (ignored for holes). Returns whether the file is now covered to its end.
    pub(crate) fn push(
        &mut self,
        logical: u64,
        physical: u64,
        count: u64,
        kind: ExtentKind,
    ) -> Result<bool, RunError> {
        let bs = self.block_size;
        let start = logical.saturating_mul(bs);
        if start < self.next {
            return Err(RunError::Overlap {
                logical,
                expected: self.next.div_ceil(bs),
            });
        }
        if start >= self.size {
            return Ok(true);
        }
        if start > self.next {
            self.append(self.next, 0, start - self.next, ExtentKind::Hole)?;
        }
        let length = count.saturating_mul(bs).min(self.size - start);
        self.append(start, physical.saturating_mul(bs), length, kind)?;
        self.next = start + length;
        Ok(self.next >= self.size)
    }

    fn append(
        &mut self,
        logical: u64,
        physical: u64,
        length: u64,
        kind: ExtentKind,
    ) -> Result<(), RunError> {
        if length == 0 {
            return Ok(());
        }
        if let Some(last) = self.extents.last_mut() {
            let contiguous = last.kind == kind
                && last.logical + last.length == logical
                && (kind != ExtentKind::Data || last.physical + last.length == physical);
            if contiguous {
                last.length += length;
                return Ok(());
            }
        }
        if self.extents.len() >= MAX_EXTENTS {
            return Err(RunError::TooMany);
        }
        self.extents.push(Extent {
            logical,
            physical,
            length,
            kind,
        });
        Ok(())
    }

    /// The extents, with a final hole up to the file's size.
    pub(crate) fn finish(mut self) -> Result<Vec<Extent>, RunError> {
        if self.next < self.size {
            self.append(self.next, 0, self.size - self.next, ExtentKind::Hole)?;
        }
        Ok(self.extents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(logical: u64, physical: u64, length: u64, kind: ExtentKind) -> Extent {
        Extent {
            logical,
            physical,
            length,
            kind,
        }
    }

    #[test]
    fn contiguous_blocks_merge_gaps_become_holes_and_the_tail_is_cut() {
        let mut runs = Runs::new(1024, 10_000);
        assert_eq!(runs.end_block(), 10);
        assert_eq!(runs.push(0, 100, 1, ExtentKind::Data), Ok(false));
        assert_eq!(runs.push(1, 101, 2, ExtentKind::Data), Ok(false));
        assert_eq!(runs.push(5, 200, 1, ExtentKind::Zero), Ok(false));
        assert_eq!(
            runs.push(5, 300, 1, ExtentKind::Data),
            Err(RunError::Overlap {
                logical: 5,
                expected: 6
            })
        );
        assert_eq!(runs.push(8, 400, 8, ExtentKind::Data), Ok(true));
        assert_eq!(runs.push(12, 500, 1, ExtentKind::Data), Ok(true));
        let extents = runs.finish();
        assert_eq!(
            extents,
            Ok(vec![
                e(0, 102_400, 3072, ExtentKind::Data),
                e(3072, 0, 2048, ExtentKind::Hole),
                e(5120, 204_800, 1024, ExtentKind::Zero),
                e(6144, 0, 2048, ExtentKind::Hole),
                e(8192, 409_600, 1808, ExtentKind::Data),
            ])
        );
        let runs = Runs::new(4096, 5000);
        assert_eq!(runs.finish(), Ok(vec![e(0, 0, 5000, ExtentKind::Hole)]));
    }
}
