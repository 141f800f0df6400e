//! What the fuzz targets ask of a filesystem reader, and the promises of
//! [`drivers::fs::FileSystem`] they check on every input.
//!
//! A reader given hostile bytes may refuse them with an error, anywhere. What it may not do
//! is panic, loop, allocate without bound, or answer in a way that breaks the trait's
//! contract: extents that do not cover the file, a read longer than its buffer or short
//! before the end of the file, or `read` and `extents` disagreeing about the bytes (the
//! pipelines read through `extents`, `stationctl inspect` through `read`).

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::sync::Arc;

use drivers::fs::walk::{walk, Limits};
use drivers::fs::{EntryId, EntryKind, Extent, ExtentKind, FileSystem};
use drivers::source::{MemorySource, ReadAt};

/// Walk limits: small, so that one input cannot make the walk itself the cost.
pub const LIMITS: Limits = Limits {
    max_depth: 32,
    max_entries: 2_000,
    max_name_bytes: 1024,
};

/// The most file bytes read per input, over all files.
pub const READ_BUDGET: u64 = 4 << 20;

/// Read sizes, in turn: an odd one first, so later reads start at unaligned offsets, then
/// large chunks as the pipelines issue them.
const CHUNKS: [usize; 2] = [4097, 256 << 10];

thread_local! {
    /// The read buffer, kept between inputs: a fresh large allocation on every run costs the
    /// sanitizer an mmap and its page faults.
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; CHUNKS[1]]);
    /// What [`check_bytes`] expects, kept for the same reason.
    static EXPECTED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The input as a source, shared the way the station shares a device between layers.
pub fn source(data: &[u8]) -> Arc<dyn ReadAt> {
    Arc::new(MemorySource::new("fuzz-input", data.to_vec()))
}

/// Walks `fs` within [`LIMITS`], then maps and reads every file (within [`READ_BUDGET`]) and
/// reads every symlink. `source` is what `fs` was opened on, to check data extents against.
///
/// # Panics
///
/// When the reader breaks a promise of [`FileSystem`]; errors are fine.
pub fn exercise(fs: &dyn FileSystem, source: &dyn ReadAt) {
    let _ = fs.fs_type();
    let _ = fs.label();
    let _ = fs.warnings();
    let walked = walk(fs, LIMITS);
    let mut budget = READ_BUDGET;
    for e in &walked.entries {
        match e.entry.kind {
            EntryKind::File => BUF.with_borrow_mut(|buf| {
                read_file(fs, source, e.entry.id, e.entry.size, &mut budget, buf);
            }),
            EntryKind::Symlink => {
                let _ = fs.read_link(e.entry.id);
            }
            _ => {}
        }
    }
}

/// Maps and reads file `id` of `size` bytes from the start, at most `budget` bytes.
fn read_file(
    fs: &dyn FileSystem,
    source: &dyn ReadAt,
    id: EntryId,
    size: u64,
    budget: &mut u64,
    buf: &mut [u8],
) {
    let extents = fs.extents(id).ok();
    if let Some(extents) = &extents {
        check_coverage(id, size, extents);
    }
    // Offsets past the end (and where `offset + len` overflows) read nothing or fail.
    for offset in [size.saturating_add(1), u64::MAX - 1] {
        if let Ok(n) = fs.read(id, offset, &mut buf[..16]) {
            assert_eq!(
                n, 0,
                "file {id} of {size} bytes: read at {offset} returned {n} bytes"
            );
        }
    }
    let mut offset = 0u64;
    for chunk in CHUNKS.iter().copied().chain(std::iter::repeat(CHUNKS[1])) {
        if *budget == 0 {
            return;
        }
        let len = usize::try_from(*budget).map_or(chunk, |b| b.min(chunk));
        let Ok(n) = fs.read(id, offset, &mut buf[..len]) else {
            return;
        };
        assert!(
            n <= len,
            "file {id}: read of {len} bytes at {offset} returned {n}"
        );
        if let Some(extents) = &extents {
            check_bytes(id, source, extents, offset, &buf[..n]);
        }
        // `n <= len <= budget`, and `offset + n` cannot pass `u64::MAX` before the budget
        // runs out.
        offset = offset.saturating_add(n as u64);
        *budget = budget.saturating_sub(n as u64);
        if n < len {
            assert_eq!(
                offset, size,
                "file {id} of {size} bytes: a short read ({n} of {len} bytes) ended at {offset}, \
                 not at the end of the file"
            );
            return;
        }
    }
}

/// The extents start at 0, follow each other and end at `size`.
fn check_coverage(id: EntryId, size: u64, extents: &[Extent]) {
    let mut end = 0u64;
    for (i, e) in extents.iter().enumerate() {
        assert_eq!(
            e.logical, end,
            "file {id}: extent {i} ({e:?}) does not start where the previous one ends"
        );
        end = end
            .checked_add(e.length)
            .unwrap_or_else(|| panic!("file {id}: extent {i} ({e:?}) ends past u64::MAX"));
    }
    assert_eq!(
        end, size,
        "file {id}: the extents cover {end} bytes, the file has {size}"
    );
}

/// `data`, read through [`FileSystem::read`] at `offset`, is what the extents say is there:
/// the source's bytes for data, zeros for holes and unwritten runs. Ranges whose source bytes
/// cannot be read are not compared.
fn check_bytes(id: EntryId, source: &dyn ReadAt, extents: &[Extent], offset: u64, data: &[u8]) {
    EXPECTED
        .with_borrow_mut(|expected| check_bytes_with(id, source, extents, offset, data, expected));
}

/// [`check_bytes`], with a buffer for the expected bytes.
fn check_bytes_with(
    id: EntryId,
    source: &dyn ReadAt,
    extents: &[Extent],
    offset: u64,
    data: &[u8],
    expected: &mut Vec<u8>,
) {
    let end = offset.saturating_add(data.len() as u64);
    for e in extents {
        let e_end = e.logical.saturating_add(e.length);
        let start = e.logical.max(offset);
        let stop = e_end.min(end);
        if start >= stop {
            continue;
        }
        // Both fit in `data`, whose length is a usize.
        let (Ok(from), Ok(len)) = (
            usize::try_from(start - offset),
            usize::try_from(stop - start),
        ) else {
            return;
        };
        let got = &data[from..from + len];
        expected.clear();
        expected.resize(len, 0);
        if e.kind == ExtentKind::Data {
            let Some(at) = e.physical.checked_add(start - e.logical) else {
                continue;
            };
            if source.read_exact_at(at, expected).is_err() {
                continue;
            }
        }
        if got != expected.as_slice() {
            let first = got
                .iter()
                .zip(expected.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "file {id}: read and extents disagree at file offset {}: extent {e:?}",
                start + first as u64
            );
        }
    }
}
