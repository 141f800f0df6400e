//! The volume header (and the HFS wrapper around an embedded HFS+ volume), fork data, the
//! byte runs a fork occupies, and the journal's state.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{be16, be32, be64};
use crate::fs::FsError;
use crate::source::ReadAt;

/// Where the volume header sits, from the start of the volume.
pub(super) const HEADER_OFFSET: u64 = 1024;
/// Largest allocation block accepted (Apple's tools stop far below this).
const MAX_BLOCK_SIZE: u32 = 1 << 20;

/// `kHFSVolumeUnmountedBit`: set when the volume was cleanly unmounted.
const ATTR_UNMOUNTED: u32 = 1 << 8;
/// `kHFSVolumeInconsistentBit`: fsck found the volume inconsistent.
const ATTR_INCONSISTENT: u32 = 1 << 11;
/// `kHFSVolumeJournaledBit`.
const ATTR_JOURNALED: u32 = 1 << 13;

/// The source, where the HFS+ volume starts in it, and the allocation geometry.
pub(super) struct Vol {
    pub source: Arc<dyn ReadAt>,
    pub device: String,
    /// Byte offset of the HFS+ volume in `source` (non-zero inside an HFS wrapper).
    pub base: u64,
    pub block_size: u32,
    pub total_blocks: u32,
    /// Blocks written by a replayed journal, by source offset: they replace the disk's bytes
    /// in every read (metadata only: HFS+ journals no file data).
    overlay: BTreeMap<u64, Vec<u8>>,
    /// The longest block in `overlay`.
    overlay_max: u64,
}

impl Vol {
    pub fn corrupt(&self, offset: u64, what: impl Into<String>) -> FsError {
        FsError::Corrupt {
            device: self.device.clone(),
            offset,
            what: what.into(),
        }
    }

    pub fn unsupported(&self, what: impl Into<String>) -> FsError {
        FsError::Unsupported {
            device: self.device.clone(),
            what: what.into(),
        }
    }

    /// Reads `buf` at byte `offset` of the source (not of the volume).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
        self.source.read_exact_at(offset, buf)?;
        if self.overlay.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        for (&at, block) in self
            .overlay
            .range(offset.saturating_sub(self.overlay_max)..end)
        {
            let block_end = at + block.len() as u64;
            if block_end <= offset {
                continue;
            }
            let (from, to) = (at.max(offset), block_end.min(end));
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&block[(from - at) as usize..(to - at) as usize]);
        }
        Ok(())
    }

    /// The source offset of allocation block `block`.
    pub fn block_offset(&self, block: u32) -> u64 {
        self.base + u64::from(block) * u64::from(self.block_size)
    }
}

/// An `HFSPlusForkData`: a fork's length and its first eight extents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct ForkData {
    pub logical_size: u64,
    pub total_blocks: u32,
    /// `(startBlock, blockCount)`.
    pub extents: [(u32, u32); 8],
}

impl ForkData {
    /// Parses the 80-byte structure at the start of `b` (the caller checked its length).
    pub fn parse(b: &[u8]) -> Self {
        let mut extents = [(0, 0); 8];
        for (i, e) in extents.iter_mut().enumerate() {
            *e = (be32(b, 16 + i * 8), be32(b, 20 + i * 8));
        }
        Self {
            logical_size: be64(b, 0),
            total_blocks: be32(b, 12),
            extents,
        }
    }
}

/// One contiguous piece of a fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    /// Offset within the fork.
    pub logical: u64,
    /// Offset within the source.
    pub physical: u64,
    pub length: u64,
}

/// Reads `buf.len()` bytes at `offset` of a fork mapped by `runs`: one positional read per
/// run the range touches.
pub(super) fn read_runs(
    vol: &Vol,
    runs: &[Run],
    offset: u64,
    buf: &mut [u8],
    what: &str,
) -> Result<(), FsError> {
    read_runs_with(vol, runs, offset, buf, what, true)
}

/// [`read_runs`] for a file's data fork: straight from the source, without the replayed
/// journal's blocks (HFS+ journals no file data), so reads agree with the extents the reader
/// hands out.
pub(super) fn read_data_runs(
    vol: &Vol,
    runs: &[Run],
    offset: u64,
    buf: &mut [u8],
) -> Result<(), FsError> {
    read_runs_with(vol, runs, offset, buf, "file data", false)
}

fn read_runs_with(
    vol: &Vol,
    runs: &[Run],
    offset: u64,
    buf: &mut [u8],
    what: &str,
    overlay: bool,
) -> Result<(), FsError> {
    let mut done = 0usize;
    // Runs are in logical order: find the first that ends after `offset`.
    let mut i = runs.partition_point(|r| r.logical + r.length <= offset);
    while done < buf.len() {
        let pos = offset + done as u64;
        let Some(run) = runs.get(i).filter(|r| r.logical <= pos) else {
            return Err(vol.corrupt(
                pos,
                format!("{what}: byte {pos} of the fork is not mapped by its extents"),
            ));
        };
        let within = pos - run.logical;
        let n = usize::try_from(run.length - within)
            .unwrap_or(usize::MAX)
            .min(buf.len() - done);
        if n == 0 {
            return Err(vol.corrupt(pos, format!("{what}: empty extent at byte {pos}")));
        }
        let part = &mut buf[done..done + n];
        if overlay {
            vol.read_at(run.physical + within, part)?;
        } else {
            vol.source.read_exact_at(run.physical + within, part)?;
        }
        done += n;
        i += 1;
    }
    Ok(())
}

/// The parts of the volume header the reader uses.
#[derive(Debug, Clone)]
pub(super) struct Header {
    pub hfsx: bool,
    pub attributes: u32,
    pub journal_info_block: u32,
    pub extents_file: ForkData,
    pub catalog_file: ForkData,
    pub attributes_file: ForkData,
}

/// Finds the HFS+ volume on `source` (directly, or embedded in an HFS wrapper), parses its
/// header and replays a dirty journal in memory. Returns the volume, the header (as the
/// replayed journal leaves it) and the warnings about the volume's state.
pub(super) fn open(source: Arc<dyn ReadAt>) -> Result<(Vol, Header, Vec<String>), FsError> {
    let device = source.describe();
    let mut vol = Vol {
        source,
        device,
        base: 0,
        block_size: 512,
        total_blocks: 0,
        overlay: BTreeMap::new(),
        overlay_max: 0,
    };
    let mut vh = [0u8; 512];
    vol.read_at(HEADER_OFFSET, &mut vh)?;
    if &vh[0..2] == b"BD" {
        // An HFS Master Directory Block: the HFS+ volume is the embedded extent, counted in
        // the wrapper's allocation blocks from its first allocation block (drAlBlSt, in
        // 512-byte sectors).
        if &vh[0x7C..0x7E] != b"H+" {
            return Err(vol.unsupported("plain HFS (not HFS+) volume"));
        }
        let alloc_size = be32(&vh, 0x14);
        let first_sector = u64::from(be16(&vh, 0x1C));
        let start = u64::from(be16(&vh, 0x7E));
        if alloc_size == 0 || !alloc_size.is_multiple_of(512) {
            return Err(vol.corrupt(
                HEADER_OFFSET + 0x14,
                format!("HFS wrapper allocation block size {alloc_size}"),
            ));
        }
        vol.base = first_sector * 512 + start * u64::from(alloc_size);
        vol.read_at(vol.base + HEADER_OFFSET, &mut vh)?;
    }
    let header = parse_header(&mut vol, &vh)?;
    let warnings = journal(&mut vol, header.attributes, header.journal_info_block);
    if vol.overlay.is_empty() {
        return Ok((vol, header, warnings));
    }
    // The journal may hold a newer volume header.
    vol.read_at(vol.base + HEADER_OFFSET, &mut vh)?;
    let header = parse_header(&mut vol, &vh)?;
    Ok((vol, header, warnings))
}

/// Parses the volume header `vh` and sets `vol`'s geometry from it.
fn parse_header(vol: &mut Vol, vh: &[u8; 512]) -> Result<Header, FsError> {
    let at = vol.base + HEADER_OFFSET;
    let hfsx = match (&vh[0..2], be16(vh, 2)) {
        (b"H+", 4) => false,
        (b"HX", 5) => true,
        (sig, version) => {
            return Err(vol.corrupt(
                at,
                format!(
                    "volume header signature \"{}\" version {version} (want H+ 4 or HX 5)",
                    sig.escape_ascii()
                ),
            ))
        }
    };
    let block_size = be32(vh, 40);
    if !(512..=MAX_BLOCK_SIZE).contains(&block_size) || !block_size.is_power_of_two() {
        return Err(vol.corrupt(at + 40, format!("allocation block size {block_size}")));
    }
    vol.block_size = block_size;
    vol.total_blocks = be32(vh, 44);
    Ok(Header {
        hfsx,
        attributes: be32(vh, 4),
        journal_info_block: be32(vh, 12),
        extents_file: ForkData::parse(&vh[192..272]),
        catalog_file: ForkData::parse(&vh[272..352]),
        attributes_file: ForkData::parse(&vh[352..432]),
    })
}

/// The fork's runs from its inline extents and `more` (the overflow extents, asked for by
/// first block), truncated to its logical size and with physically adjacent runs merged.
pub(super) fn fork_runs(
    vol: &Vol,
    fork: &ForkData,
    what: &str,
    mut more: impl FnMut(u32) -> Result<Option<[(u32, u32); 8]>, FsError>,
) -> Result<Vec<Run>, FsError> {
    let bs = u64::from(vol.block_size);
    let allocated = u64::from(fork.total_blocks) * bs;
    if fork.logical_size > allocated {
        return Err(vol.corrupt(
            0,
            format!(
                "{what}: logical size {} is larger than its {} allocated blocks",
                fork.logical_size, fork.total_blocks
            ),
        ));
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut blocks: u32 = 0;
    let mut record = fork.extents;
    let mut from_overflow = false;
    loop {
        for &(start, count) in &record {
            if count == 0 || blocks >= fork.total_blocks {
                break;
            }
            let end = start.checked_add(count).filter(|&e| e <= vol.total_blocks);
            if end.is_none() {
                return Err(vol.corrupt(
                    0,
                    format!(
                        "{what}: extent of {count} blocks at block {start} passes the volume's {} blocks",
                        vol.total_blocks
                    ),
                ));
            }
            let count = count.min(fork.total_blocks - blocks);
            let logical = u64::from(blocks) * bs;
            let physical = vol.block_offset(start);
            let length = u64::from(count) * bs;
            match runs.last_mut() {
                Some(last) if last.physical + last.length == physical => last.length += length,
                _ => runs.push(Run {
                    logical,
                    physical,
                    length,
                }),
            }
            blocks += count;
        }
        if blocks >= fork.total_blocks {
            break;
        }
        let before = blocks;
        match more(blocks)? {
            Some(next) => record = next,
            None => {
                return Err(vol.corrupt(
                    0,
                    format!(
                        "{what}: extents end at block {blocks} of {}{}",
                        fork.total_blocks,
                        if from_overflow {
                            ""
                        } else {
                            " (no overflow extents record)"
                        }
                    ),
                ))
            }
        }
        from_overflow = true;
        if record.iter().all(|&(_, c)| c == 0) {
            return Err(vol.corrupt(
                0,
                format!("{what}: empty overflow extents record at block {before}"),
            ));
        }
    }
    // Keep only the logical size.
    let mut left = fork.logical_size;
    runs.retain_mut(|r| {
        if left == 0 {
            return false;
        }
        r.length = r.length.min(left);
        left -= r.length;
        true
    });
    Ok(runs)
}

/// Most bytes of journaled blocks held in memory by a replay.
const MAX_OVERLAY: u64 = 256 << 20;
/// Largest journaled block accepted (xnu journals B-tree nodes and bitmap blocks: 64 KiB at
/// most).
const MAX_JOURNAL_BLOCK: u64 = 1 << 20;
/// `JOURNAL_HEADER_MAGIC` ("JNLx").
const JOURNAL_MAGIC: u32 = 0x4A4E_4C78;

/// The journal's checksum (`calc_checksum` of xnu's `vfs_journal.c`).
fn journal_checksum(bytes: &[u8]) -> u32 {
    let mut c: u32 = 0;
    for &b in bytes {
        c = (c << 8) ^ c.wrapping_add(u32::from(b));
    }
    !c
}

/// [`journal_checksum`], for the tests that build journals.
#[cfg(test)]
pub(super) fn tests_checksum(bytes: &[u8]) -> u32 {
    journal_checksum(bytes)
}

/// A replayed journal: the blocks its transactions write, by source offset.
struct Replay {
    overlay: BTreeMap<u64, Vec<u8>>,
    transactions: usize,
    blocks: usize,
}

/// Checks the volume's state and replays a journal with transactions into `vol`'s in-memory
/// overlay (nothing is written). Returns warnings for [`crate::fs::FileSystem::warnings`].
fn journal(vol: &mut Vol, attributes: u32, journal_info_block: u32) -> Vec<String> {
    let mut out = Vec::new();
    if attributes & ATTR_INCONSISTENT != 0 {
        out.push("the volume header marks the volume inconsistent (run First Aid on a Mac)".into());
    }
    if attributes & ATTR_JOURNALED == 0 {
        if attributes & ATTR_UNMOUNTED == 0 {
            out.push(
                "the volume was not cleanly unmounted (no journal): recent changes may be missing or half-written"
                    .into(),
            );
        }
        return out;
    }
    match replay(vol, journal_info_block) {
        Ok(Some(r)) => {
            out.push(format!(
                "dirty journal: {} transaction(s) ({} block(s)) not yet written to their places on the volume were replayed in memory (the disk is not written)",
                r.transactions, r.blocks
            ));
            vol.overlay_max = r.overlay.values().map(|b| b.len() as u64).max().unwrap_or(0);
            vol.overlay = r.overlay;
        }
        Ok(None) => {
            if attributes & ATTR_UNMOUNTED == 0 {
                out.push(
                    "the journaled volume was not cleanly unmounted, but its journal is empty"
                        .into(),
                );
            }
        }
        Err(e) => out.push(format!(
            "journal not replayed: {e}; if it held transactions, the listing shows the volume as last checkpointed (eject the disk cleanly on a Mac and load again)"
        )),
    }
    out
}

/// Reads the journal's transactions (`None` when it is empty). Every length and offset is
/// checked against the journal, block-list headers against their checksums, and the walk
/// around the circular buffer is bounded by its size.
fn replay(vol: &Vol, journal_info_block: u32) -> Result<Option<Replay>, FsError> {
    if journal_info_block >= vol.total_blocks {
        return Err(vol.corrupt(
            vol.base + HEADER_OFFSET + 12,
            format!("journal info block {journal_info_block}"),
        ));
    }
    let jib_at = vol.block_offset(journal_info_block);
    let mut jib = [0u8; 52];
    vol.read_at(jib_at, &mut jib)?;
    if be32(&jib, 0) & 1 == 0 {
        return Err(vol.unsupported("the journal is on another device"));
    }
    let volume_bytes = u64::from(vol.total_blocks) * u64::from(vol.block_size);
    let (offset, size) = (be64(&jib, 36), be64(&jib, 44));
    if offset
        .checked_add(size)
        .is_none_or(|end| end > volume_bytes)
    {
        return Err(vol.corrupt(
            jib_at + 36,
            format!("journal of {size} bytes at {offset} passes the volume's {volume_bytes} bytes"),
        ));
    }
    let j_at = vol.base + offset;
    let mut jh = [0u8; 48];
    vol.read_at(j_at, &mut jh)?;
    // The journal is in the writer's byte order; its endian field says which.
    let le = u32::from_le_bytes([jh[4], jh[5], jh[6], jh[7]]) == 0x1234_5678;
    let u32_at = |b: &[u8], at: usize| {
        let x = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }
    };
    let u64_at = |b: &[u8], at: usize| {
        let (lo, hi) = (u64::from(u32_at(b, at)), u64::from(u32_at(b, at + 4)));
        if le {
            lo | (hi << 32)
        } else {
            (lo << 32) | hi
        }
    };
    let magic = u32_at(&jh, 0);
    if magic != JOURNAL_MAGIC {
        return Err(vol.corrupt(
            j_at,
            format!("journal header magic {magic:#010x} (want JNLx)"),
        ));
    }
    let (start, end, jsize) = (u64_at(&jh, 8), u64_at(&jh, 16), u64_at(&jh, 24));
    if start == end {
        return Ok(None);
    }
    let bad = |what: String| vol.corrupt(j_at, format!("journal: {what}"));
    let mut sum = jh;
    sum[36..40].fill(0);
    if journal_checksum(&sum[..44]) != u32_at(&jh, 36) {
        return Err(bad("header checksum mismatch".into()));
    }
    let blhdr_size = u64::from(u32_at(&jh, 32));
    let jhdr_size = u64::from(u32_at(&jh, 40));
    if !(512..=65536).contains(&jhdr_size) || !jhdr_size.is_power_of_two() {
        return Err(bad(format!("header size {jhdr_size}")));
    }
    if jsize != size || jsize <= jhdr_size + blhdr_size || blhdr_size < jhdr_size {
        return Err(bad(format!(
            "size {jsize} (info block: {size}), block-list header size {blhdr_size}"
        )));
    }
    if blhdr_size > (1 << 20) || blhdr_size % jhdr_size != 0 {
        return Err(bad(format!("block-list header size {blhdr_size}")));
    }
    if !(jhdr_size..jsize).contains(&start) || !(jhdr_size..jsize).contains(&end) {
        return Err(bad(format!(
            "start {start} or end {end} outside {jhdr_size}..{jsize}"
        )));
    }
    // Reads `buf` at `pos` of the circular buffer (which wraps to just after the header).
    let wrap = |pos: u64| {
        if pos >= jsize {
            jhdr_size + (pos - jhdr_size) % (jsize - jhdr_size)
        } else {
            pos
        }
    };
    let read = |mut pos: u64, buf: &mut [u8]| -> Result<u64, FsError> {
        let mut done = 0usize;
        while done < buf.len() {
            pos = wrap(pos);
            let n = usize::try_from(jsize - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            vol.read_at(j_at + pos, &mut buf[done..done + n])?;
            done += n;
            pos += n as u64;
        }
        Ok(wrap(pos))
    };
    let mut r = Replay {
        overlay: BTreeMap::new(),
        transactions: 0,
        blocks: 0,
    };
    let mut held = 0u64;
    let mut pos = start;
    let mut walked = 0u64;
    let mut blhdr = vec![0u8; blhdr_size as usize];
    while pos != end {
        let mut data_pos = read(pos, &mut blhdr)?;
        let max_blocks = usize::from(if le {
            u16::from_le_bytes([blhdr[0], blhdr[1]])
        } else {
            u16::from_be_bytes([blhdr[0], blhdr[1]])
        });
        let num_blocks = usize::from(if le {
            u16::from_le_bytes([blhdr[2], blhdr[3]])
        } else {
            u16::from_be_bytes([blhdr[2], blhdr[3]])
        });
        let used = u64::from(u32_at(&blhdr, 4));
        let mut sum = [0u8; 32];
        sum.copy_from_slice(&blhdr[..32]);
        sum[8..12].fill(0);
        if journal_checksum(&sum) != u32_at(&blhdr, 8) {
            return Err(bad(format!("block list at {pos}: checksum mismatch")));
        }
        if num_blocks == 0
            || num_blocks > max_blocks.max(1)
            || 16 + 16 * num_blocks > blhdr.len()
            || used < blhdr_size
            || used > jsize - jhdr_size
        {
            return Err(bad(format!(
                "block list at {pos}: {num_blocks} blocks (max {max_blocks}), {used} bytes"
            )));
        }
        walked += used;
        if walked > jsize {
            return Err(bad("the transactions run past the end mark".into()));
        }
        let mut data_bytes = blhdr_size;
        for i in 1..num_blocks {
            let at = 16 + 16 * i;
            let bnum = u64_at(&blhdr, at);
            let bsize = u64::from(u32_at(&blhdr, at + 8));
            data_bytes += bsize;
            if data_bytes > used || bsize > MAX_JOURNAL_BLOCK {
                return Err(bad(format!(
                    "block list at {pos}: blocks pass its {used} bytes"
                )));
            }
            if bnum == u64::MAX {
                // A block cancelled by a later transaction: skipped.
                data_pos = wrap(data_pos + bsize);
                continue;
            }
            let target = bnum.checked_mul(jhdr_size).filter(|t| {
                t.checked_add(bsize)
                    .is_some_and(|e| e <= vol.base + volume_bytes)
            });
            let Some(target) = target else {
                return Err(bad(format!(
                    "block {bnum} of {bsize} bytes outside the volume"
                )));
            };
            held += bsize;
            if held > MAX_OVERLAY {
                return Err(bad(format!(
                    "more than {MAX_OVERLAY} bytes of journaled blocks"
                )));
            }
            let mut data = vec![0u8; bsize as usize];
            data_pos = read(data_pos, &mut data)?;
            r.overlay.insert(target, data);
            r.blocks += 1;
        }
        r.transactions += 1;
        pos = wrap(pos + used);
    }
    Ok(Some(r))
}
