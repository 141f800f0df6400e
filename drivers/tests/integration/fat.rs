//! The FAT12/16/32 and exFAT reader against images built by `hw-fixtures/fat*.sh` (mtools, no
//! root) and `hw-fixtures/exfat.sh` (exfat-fuse on a loop device: root, so `loop_` tests):
//! every file byte-exact against the source tree, the size of the reads it issues, and
//! corrupted metadata that must never make it panic or hang.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use drivers::fs::fat::FatFs;
use drivers::fs::walk::{walk, Limits};
use drivers::fs::{EntryKind, ExtentKind, FileSystem, FsType, Zone};
use drivers::source::{ImageFile, IoError, ReadAt};

use crate::helper::{self, Fixture, Flipped};

fn open(fixture: &Fixture, image: &str) -> FatFs {
    let image = ImageFile::open(&fixture.path(image)).unwrap_or_else(|e| panic!("{e}"));
    FatFs::open(Arc::new(image)).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds `script`, reads `image` with `FatFs` and compares it with the source tree.
fn same_tree_as_source(script: &str, image: &str, fs_type: FsType, label: &str) -> Fixture {
    let fixture = helper::build(script, &[]);
    let fs = open(&fixture, image);
    assert_eq!(fs.fs_type(), fs_type);
    assert_eq!(fs.label().as_deref(), Some(label));
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    let source = helper::source_tree(&fixture.path("src"));
    let reader = helper::reader_tree(&fs);
    assert!(reader.len() > 600, "{} entries", reader.len());
    helper::assert_same_tree(&source, &reader, false);
    fixture
}

#[test]
fn fat32_reads_like_the_source_tree() {
    let fixture = same_tree_as_source("fat32.sh", "fat32.img", FsType::Fat32, "FIXTURE32");
    // FAT times are local with no zone: the script set these wall-clock times with `touch -d`
    // and mcopy stored them as local time, so they read back as the same wall-clock time
    // (taken as UTC), whatever the machine's zone.
    let fs = open(&fixture, "fat32.img");
    let times: BTreeMap<Vec<u8>, _> = walk(&fs, Limits::default())
        .entries
        .into_iter()
        .map(|w| (w.path_bytes(), w.entry.mtime))
        .collect();
    for (path, seconds) in [
        (&b"README.TXT"[..], 1_000_000_000),
        (b"a/top.txt", 486_475_200),
        (b"big.bin", 2_214_172_798),
    ] {
        let t = times[path].unwrap_or_else(|| panic!("no mtime"));
        assert_eq!((t.seconds, t.nanos, t.zone), (seconds, 0, Zone::Unknown));
    }
}

#[test]
fn fat16_reads_like_the_source_tree() {
    same_tree_as_source("fat16.sh", "fat16.img", FsType::Fat16, "FIXTURE16");
}

#[test]
fn fat12_reads_like_the_source_tree() {
    same_tree_as_source("fat12.sh", "fat12.img", FsType::Fat12, "FIXTURE12");
}

#[test]
fn loop_exfat_reads_like_the_source_tree() {
    let fixture = same_tree_as_source("exfat.sh", "exfat.img", FsType::ExFat, "Fixture");
    let fs = open(&fixture, "exfat.img");
    let entries = walk(&fs, Limits::default()).entries;
    let find = |path: &str| {
        entries
            .iter()
            .find(|w| w.path_bytes() == path.as_bytes())
            .map(|w| w.entry.clone())
            .unwrap_or_else(|| panic!("{path} not found"))
    };
    // The emoji names survive (mtools would have dropped them; exfat-fuse keeps them).
    find("dir 🎉/inside 😀.txt");
    // grown.bin: 10,000 bytes written, then grown to 300,000 by truncate. exfat-fuse writes
    // the zeros, so ValidDataLength is the size; `valid_data_length_below_the_size_reads_as_
    // zeros` shortens it.
    let grown = find("grown.bin");
    let extents = fs.extents(grown.id).unwrap_or_else(|e| panic!("{e}"));
    let covered: u64 = extents.iter().map(|e| e.length).sum();
    assert_eq!(covered, 300_000);
    assert!(extents.iter().all(|e| e.kind != ExtentKind::Hole));
    valid_data_length_below_the_size_reads_as_zeros(&fixture);
    // exFAT times: the 10 ms field and, when exfat-fuse sets it, the UTC offset.
    let source = helper::source_tree(&fixture.path("src"));
    for w in &entries {
        let Some(t) = w.entry.mtime else {
            panic!("{:?}: no mtime", w.path_bytes());
        };
        if t.zone == Zone::Utc && w.entry.kind == EntryKind::File {
            let want = source[&w.path_bytes()].mtime.unwrap_or_default();
            assert!(
                (t.seconds - want).abs() <= 2,
                "{:?}: {} vs {want}",
                w.path_bytes(),
                t.seconds
            );
        }
    }
}

/// The exFAT entry-set checksum (every byte of the set but the checksum field).
fn set_checksum(set: &[u8]) -> u16 {
    set.iter()
        .enumerate()
        .filter(|&(i, _)| i != 2 && i != 3)
        .fold(0u16, |sum, (_, &b)| {
            sum.rotate_right(1).wrapping_add(u16::from(b))
        })
}

/// Sets grown.bin's ValidDataLength to 10,000 of its 300,000 bytes (the rest of its content
/// is zeros in the source tree too), fixes the entry-set checksum, and reads the image again:
/// the tree still matches the source, and the tail is a zero extent.
fn valid_data_length_below_the_size_reads_as_zeros(fixture: &Fixture) {
    let mut image = std::fs::read(fixture.path("exfat.img")).unwrap_or_else(|e| panic!("{e}"));
    let name: Vec<u8> = "grown.bin"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut patched = 0;
    for at in (0..image.len() - 128).step_by(32) {
        let set = &image[at..at + 96];
        if set[0] != 0x85 || set[1] != 2 || set[32] != 0xC0 || set[64] != 0xC1 {
            continue;
        }
        if set[66..66 + name.len()] != name[..] || set[35] != 9 {
            continue;
        }
        image[at + 32 + 8..at + 32 + 16].copy_from_slice(&10_000u64.to_le_bytes());
        let sum = set_checksum(&image[at..at + 96]);
        image[at + 2..at + 4].copy_from_slice(&sum.to_le_bytes());
        patched += 1;
    }
    assert_eq!(patched, 1, "grown.bin's entry set not found");
    let source = drivers::source::MemorySource::new("patched exfat.img", image);
    let fs = FatFs::open(Arc::new(source)).unwrap_or_else(|e| panic!("{e}"));
    helper::assert_same_tree(
        &helper::source_tree(&fixture.path("src")),
        &helper::reader_tree(&fs),
        false,
    );
    let grown = walk(&fs, Limits::default())
        .entries
        .into_iter()
        .find(|w| w.path_bytes() == b"grown.bin")
        .map(|w| w.entry)
        .unwrap_or_else(|| panic!("grown.bin not found"));
    let extents = fs.extents(grown.id).unwrap_or_else(|e| panic!("{e}"));
    let last = extents.last().copied();
    assert_eq!(
        last.map(|e| (e.logical, e.length, e.kind)),
        Some((10_000, 290_000, ExtentKind::Zero))
    );
}

/// A source that counts reads and bytes.
struct Counting<R> {
    inner: R,
    reads: AtomicU64,
    bytes: AtomicU64,
}

impl<R: ReadAt> ReadAt for Counting<R> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Walks and hashes every file through a counting source and checks the read pattern: the
/// big file takes no more than one read per MiB (plus one per extent), and the whole walk of
/// the 600-file directory is not quadratic. Prints what it measured.
fn reads_are_large_and_few(script: &str, image: &str) {
    let fixture = helper::build(script, &[]);
    let file = ImageFile::open(&fixture.path(image)).unwrap_or_else(|e| panic!("{e}"));
    let source = Arc::new(Counting {
        inner: file,
        reads: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let fs = FatFs::open(source.clone()).unwrap_or_else(|e| panic!("{e}"));
    let open_reads = source.reads.load(Ordering::Relaxed);
    let entries = walk(&fs, Limits::default()).entries;
    let big = entries
        .iter()
        .find(|w| w.path_bytes() == b"big.bin")
        .map(|w| w.entry.clone())
        .unwrap_or_else(|| panic!("big.bin not found"));
    let extents = fs.extents(big.id).unwrap_or_else(|e| panic!("{e}"));
    let before = source.reads.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    loop {
        let n = fs
            .read(big.id, offset, &mut buf)
            .unwrap_or_else(|e| panic!("{e}"));
        if n == 0 {
            break;
        }
        offset += n as u64;
    }
    let big_reads = source.reads.load(Ordering::Relaxed) - before;
    let elapsed = start.elapsed().as_secs_f64();
    let mib = big.size.div_ceil(1 << 20);
    assert!(
        big_reads <= mib + extents.len() as u64,
        "{big_reads} reads for {} bytes in {} extents",
        big.size,
        extents.len()
    );
    let before = source.reads.load(Ordering::Relaxed);
    let before_bytes = source.bytes.load(Ordering::Relaxed);
    let tree = helper::reader_tree(&fs);
    let walk_reads = source.reads.load(Ordering::Relaxed) - before;
    let walk_bytes = source.bytes.load(Ordering::Relaxed) - before_bytes;
    let files = tree.values().filter(|s| s.kind == "file").count() as u64;
    let dirs = tree.len() as u64 - files;
    // Each file's extents come from its cached directory: about one read per data extent,
    // plus one per directory run.
    assert!(
        walk_reads <= 2 * (files + dirs) + 64,
        "{walk_reads} reads to walk and hash {files} files and {dirs} directories"
    );
    eprintln!(
        "{image}: open {open_reads} reads; big.bin {} bytes, {} extents, {big_reads} reads, \
         {:.0} MB/s; walk+hash of {files} files and {dirs} dirs: {walk_reads} reads, {} bytes",
        big.size,
        extents.len(),
        big.size as f64 / elapsed / 1e6,
        walk_bytes
    );
}

#[test]
fn fat32_reads_files_in_large_runs() {
    reads_are_large_and_few("fat32.sh", "fat32.img");
}

#[test]
fn loop_exfat_reads_files_in_large_runs() {
    reads_are_large_and_few("exfat.sh", "exfat.img");
}

/// What one corrupted image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Refused,
    Walked { files_failed: bool },
}

/// Opens, walks and reads every file (at most 64 MiB in all) of `source`.
fn exercise(source: Arc<dyn ReadAt>) -> Outcome {
    let Ok(fs) = FatFs::open(source) else {
        return Outcome::Refused;
    };
    let limits = Limits {
        max_entries: 100_000,
        ..Limits::default()
    };
    let walked = walk(&fs, limits);
    let mut budget: u64 = 64 << 20;
    let mut buf = vec![0u8; 1 << 20];
    let mut files_failed = false;
    for w in walked
        .entries
        .iter()
        .filter(|w| w.entry.kind == EntryKind::File)
    {
        let mut offset = 0u64;
        while budget > 0 {
            match fs.read(w.entry.id, offset, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    offset += n as u64;
                    budget = budget.saturating_sub(n as u64);
                }
                Err(_) => {
                    files_failed = true;
                    break;
                }
            }
        }
        let _ = fs.extents(w.entry.id);
    }
    let _ = fs.warnings();
    let _ = fs.label();
    Outcome::Walked { files_failed }
}

/// Byte offsets of the sectors that hold metadata: not file data (as the clean image's
/// extents say) and not all zeros, plus the first 24 sectors (boot regions) always.
fn metadata_sectors(image: &Arc<Vec<u8>>) -> Vec<u64> {
    let source = Arc::new(Flipped {
        base: image.clone(),
        flips: BTreeMap::new(),
    });
    let fs = FatFs::open(source).unwrap_or_else(|e| panic!("{e}"));
    let mut data = BTreeSet::new();
    for w in walk(&fs, Limits::default()).entries {
        if w.entry.kind != EntryKind::File {
            continue;
        }
        for e in fs.extents(w.entry.id).unwrap_or_else(|e| panic!("{e}")) {
            if e.kind == ExtentKind::Data {
                let mut s = e.physical / 512;
                while s * 512 < e.physical + e.length {
                    data.insert(s);
                    s += 1;
                }
            }
        }
    }
    (0..image.len() as u64 / 512)
        .filter(|s| {
            let at = (s * 512) as usize;
            *s < 24 || (!data.contains(s) && image[at..at + 512].iter().any(|&b| b != 0))
        })
        .map(|s| s * 512)
        .collect()
}

/// Flips 1..=16 bytes (one run in eight: in the boot sector) in metadata sectors, `runs`
/// times, and requires every run to end, without a panic, within 30 seconds.
fn corrupted_metadata_never_panics_or_hangs(script: &str, image: &str, runs: u64) {
    let fixture = helper::build(script, &[]);
    let bytes = std::fs::read(fixture.path(image)).unwrap_or_else(|e| panic!("{e}"));
    let base = Arc::new(bytes);
    let sectors = metadata_sectors(&base);
    let pick = helper::boot_or_metadata_byte(&sectors);
    helper::corrupted_runs(&base, image, runs, pick, exercise);
}

#[test]
fn fat32_corrupted_metadata_never_panics_or_hangs() {
    corrupted_metadata_never_panics_or_hangs("fat32.sh", "fat32.img", 400);
}

#[test]
fn fat12_corrupted_metadata_never_panics_or_hangs() {
    corrupted_metadata_never_panics_or_hangs("fat12.sh", "fat12.img", 200);
}

#[test]
fn loop_exfat_corrupted_metadata_never_panics_or_hangs() {
    corrupted_metadata_never_panics_or_hangs("exfat.sh", "exfat.img", 400);
}
