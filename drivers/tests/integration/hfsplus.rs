//! The HFS+ reader against the macOS-made images of `../shared/hw-fixtures/hfsplus/` (their
//! README lists the expected contents) and against `xorriso -hfsplus` images of a source tree
//! (`hw-fixtures/hfsplus.sh`), found bare, through an Apple partition map and through a GPT;
//! the size of the reads it issues; and corrupted metadata that must never make it panic or
//! hang.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use drivers::fs::hfsplus::HfsFs;
use drivers::fs::walk::{walk, Limits};
use drivers::fs::{open_filesystem, EntryKind, FileSystem, FsType, RawName, Zone};
use drivers::partition::{PartitionTable, PartitionType, Scheme};
use drivers::source::{ImageFile, IoError, ReadAt};

use crate::helper::{self, Fixture, Rng};

/// One fixture build for all tests (xorriso and zstd take a few seconds).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| helper::build("hfsplus.sh", &[]))
}

fn image(name: &str) -> Arc<dyn ReadAt> {
    let path = fixture().path(name);
    Arc::new(ImageFile::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
}

fn real(name: &str) -> Arc<dyn ReadAt> {
    let path = fixture().path("real").join(name);
    assert!(
        path.exists(),
        "{path:?} missing: the macOS images are in ../shared/hw-fixtures/hfsplus"
    );
    image(&format!("real/{name}"))
}

fn open(source: Arc<dyn ReadAt>) -> Box<dyn FileSystem> {
    open_filesystem(source).unwrap_or_else(|e| panic!("{e}"))
}

/// Path -> (kind, size, md5) of what the reader shows.
fn listing(fs: &dyn FileSystem) -> BTreeMap<String, (&'static str, u64, String)> {
    helper::reader_tree(fs)
        .into_iter()
        .map(|(path, seen)| {
            (
                String::from_utf8(path).unwrap_or_else(|e| panic!("{e}")),
                (seen.kind, seen.size, seen.md5),
            )
        })
        .collect()
}

/// The contents the fixtures README gives, except `.fseventsd`'s files (only counted).
fn assert_macos_contents(fs: &dyn FileSystem, hello: (&str, u64, &str)) {
    let seen = listing(fs);
    let file = |size: u64, md5: &str| ("file", size, md5.to_string());
    assert_eq!(seen.get("hello.txt"), Some(&file(hello.1, hello.2)));
    assert_eq!(
        seen.get("subdir/nested.txt"),
        Some(&file(11, "ee461e6ee6365b4b78a893756581a5d4"))
    );
    assert_eq!(seen.get("subdir").map(|s| s.0), Some("dir"));
    assert_eq!(seen.get(".fseventsd").map(|s| s.0), Some("dir"));
    let events = seen.keys().filter(|p| p.starts_with(".fseventsd/")).count();
    assert_eq!(events, 3, "{seen:?}");
    let others: Vec<_> = seen
        .keys()
        .filter(|p| {
            !p.starts_with(".fseventsd")
                && !["hello.txt", "subdir", "subdir/nested.txt"].contains(&p.as_str())
        })
        .collect();
    assert!(
        others.is_empty(),
        "entries the README does not list (hidden metadata must not show): {others:?}"
    );
    let mut buf = [0u8; 64];
    let root = fs.read_dir(fs.root()).unwrap_or_else(|e| panic!("{e}"));
    let hello_entry = root
        .iter()
        .find(|e| e.name == RawName::Utf16("hello.txt".encode_utf16().collect()))
        .unwrap_or_else(|| panic!("no hello.txt"));
    let n = fs
        .read(hello_entry.id, 0, &mut buf)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&buf[..n], hello.0.as_bytes());
    let t = hello_entry.mtime.unwrap_or_else(|| panic!("no mtime"));
    // Made in 2026 (HFS+ dates are UTC seconds since 1904).
    assert_eq!(t.zone, Zone::Utc);
    assert!((1_700_000_000..1_900_000_000).contains(&t.seconds), "{t:?}");
}

#[test]
fn macos_image_walks_to_the_readme_contents() {
    let fs = open(real("test_hfsplus.img"));
    assert_eq!(fs.fs_type(), FsType::HfsPlus);
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    assert_macos_contents(
        &*fs,
        ("Hello, hfsplus", 14, "35c36f93ffe7891b1f55e1225cae2e92"),
    );
}

#[test]
fn macos_journaled_images_hide_the_journal_and_replay_a_dirty_one() {
    let hello = (
        "Hello, hfsplus-journaled!",
        25,
        "e6abec7402f9e5e4563991a6008c343c",
    );
    let clean = open(real("test_hfsplus_journaled_clean.img"));
    assert_eq!(clean.label().as_deref(), Some("JTest"));
    assert!(clean.warnings().is_empty(), "{:?}", clean.warnings());
    assert_macos_contents(&*clean, hello);
    let dirty = open(real("test_hfsplus_journaled_dirty.img"));
    let warnings = dirty.warnings();
    assert!(
        warnings.iter().any(|w| w.contains(
            "dirty journal: 3 transaction(s) (3 block(s)) not yet written to their places on the volume were replayed in memory"
        )),
        "{warnings:?}"
    );
    assert_macos_contents(&*dirty, hello);
}

/// The source tree's paths as HFS+ stores them: decomposed (the script's one NFC name).
fn source_as_stored() -> BTreeMap<Vec<u8>, helper::Seen> {
    helper::source_tree(&fixture().path("src"))
        .into_iter()
        .map(|(path, seen)| {
            let path = if path == "café.txt".as_bytes() {
                "cafe\u{301}.txt".as_bytes().to_vec()
            } else {
                path
            };
            (path, seen)
        })
        .collect()
}

#[test]
fn xorriso_image_reads_like_the_source_tree_with_nfd_names() {
    let fs = open(image("hfsplus.img"));
    assert_eq!(fs.fs_type(), FsType::HfsPlus);
    assert_eq!(fs.label().as_deref(), Some("HFSTEST"));
    let reader = helper::reader_tree(&*fs);
    assert!(reader.len() > 300, "{} entries", reader.len());
    helper::assert_same_tree(&source_as_stored(), &reader, true);
    // The NFD input stays NFD, the NFC input comes back NFD.
    assert!(reader.contains_key("nai\u{308}ve.txt".as_bytes()));
    assert!(!reader.contains_key("café.txt".as_bytes()));
    let walked = walk(&*fs, Limits::default()).entries;
    let by_path = |p: &[u8]| {
        walked
            .iter()
            .find(|w| w.path_bytes() == p)
            .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(p)))
            .entry
            .clone()
    };
    let link = by_path(b"docs/link-to-hello");
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(
        fs.read_link(link.id).unwrap_or_else(|e| panic!("{e}")),
        b"../hello.txt"
    );
    // xorriso writes the two names of a hard-linked file as two files (no iNode): hard
    // links are tested on a synthetic volume in the unit tests.
    assert_eq!(by_path(b"media/hard-link.txt").size, 2048);
}

#[test]
fn big_files_are_few_big_extents_and_reads() {
    struct Counting {
        inner: Arc<dyn ReadAt>,
        reads: AtomicU64,
        largest: AtomicU64,
    }
    impl ReadAt for Counting {
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.largest.fetch_max(buf.len() as u64, Ordering::Relaxed);
            self.inner.read_exact_at(offset, buf)
        }
        fn size(&self) -> u64 {
            self.inner.size()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }
    let counting = Arc::new(Counting {
        inner: image("hfsplus.img"),
        reads: AtomicU64::new(0),
        largest: AtomicU64::new(0),
    });
    let fs = HfsFs::open(counting.clone()).unwrap_or_else(|e| panic!("{e}"));
    let entry = walk(&fs, Limits::default())
        .entries
        .into_iter()
        .find(|w| w.path_bytes() == b"media/nine-mib.bin")
        .unwrap_or_else(|| panic!("no media/nine-mib.bin"));
    let extents = fs.extents(entry.entry.id).unwrap_or_else(|e| panic!("{e}"));
    assert!(extents.len() <= 2, "{extents:?}");
    assert_eq!(extents.iter().map(|e| e.length).sum::<u64>(), 9 << 20);
    let before = counting.reads.load(Ordering::Relaxed);
    let mut buf = vec![0u8; 8 << 20];
    let mut offset = 0;
    loop {
        let n = fs
            .read(entry.entry.id, offset, &mut buf)
            .unwrap_or_else(|e| panic!("{e}"));
        if n == 0 {
            break;
        }
        offset += n as u64;
    }
    let reads = counting.reads.load(Ordering::Relaxed) - before;
    assert_eq!(offset, 9 << 20);
    assert!(reads <= 4, "{reads} reads for 9 MiB");
    assert_eq!(counting.largest.load(Ordering::Relaxed), 8 << 20);
}

#[test]
fn apple_partition_map_and_gpt_find_the_hfs_partition() {
    let iso = image("hybrid.iso");
    let t = PartitionTable::read(&*iso, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.scheme, Scheme::Apm);
    let hfs = t
        .partitions
        .iter()
        .find(|p| p.type_description == "Apple_HFS")
        .unwrap_or_else(|| panic!("no Apple_HFS in {:?}", t.partitions));
    assert!(matches!(hfs.partition_type, PartitionType::Apm(_)));
    assert_eq!(hfs.name.as_deref(), Some("HFSPLUS_Hybrid"));
    let slice = t
        .slice(iso.clone(), hfs.number)
        .unwrap_or_else(|e| panic!("{e}"));
    let fs = open(Arc::new(slice));
    helper::assert_same_tree(&source_as_stored(), &helper::reader_tree(&*fs), true);

    let gpt = image("gpt.img");
    let t = PartitionTable::read(&*gpt, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.scheme, Scheme::Gpt);
    let p = t.partition(2).unwrap_or_else(|| panic!("no partition 2"));
    assert_eq!(p.type_description, "Apple HFS/HFS+");
    let slice = t.slice(gpt.clone(), 2).unwrap_or_else(|e| panic!("{e}"));
    let fs = open(Arc::new(slice));
    assert_eq!(fs.fs_type(), FsType::HfsPlus);
    helper::assert_same_tree(&source_as_stored(), &helper::reader_tree(&*fs), true);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    OpenFailed,
    Walked { problems: bool, files_failed: bool },
}

/// Opens, walks and reads everything (bounded), never unwrapping the reader's results.
fn exercise(source: Arc<dyn ReadAt>) -> Outcome {
    let Ok(fs) = HfsFs::open(source) else {
        return Outcome::OpenFailed;
    };
    let walked = walk(
        &fs,
        Limits {
            max_entries: 100_000,
            ..Limits::default()
        },
    );
    let mut buf = vec![0u8; 1 << 20];
    let mut budget: u64 = 64 << 20;
    let mut files_failed = false;
    for w in &walked.entries {
        match w.entry.kind {
            EntryKind::File => {
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
            EntryKind::Symlink => {
                let _ = fs.read_link(w.entry.id);
            }
            _ => {}
        }
    }
    let _ = fs.warnings();
    Outcome::Walked {
        problems: !walked.problems.is_empty(),
        files_failed,
    }
}

/// Byte offsets of the 512-byte sectors holding metadata: the volume header and the B-tree
/// files (as the clean image's header maps them).
fn metadata_sectors(image: &[u8]) -> Vec<u64> {
    let vh = &image[1024..1536];
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let block = u64::from(be32(vh, 40));
    let mut out: BTreeSet<u64> = [2u64].into_iter().collect();
    // Extents overflow, catalog, attributes: inline extents of their fork data.
    for fork in [192usize, 272, 352] {
        for i in 0..8 {
            let start = u64::from(be32(vh, fork + 16 + i * 8));
            let count = u64::from(be32(vh, fork + 20 + i * 8));
            for s in start * block / 512..(start + count) * block / 512 {
                let at = (s * 512) as usize;
                if at + 512 <= image.len() && image[at..at + 512].iter().any(|&b| b != 0) {
                    out.insert(s);
                }
            }
        }
    }
    // A journaled volume: its journal info block and the journal's written sectors.
    if be32(vh, 4) & (1 << 13) != 0 {
        let jib = u64::from(be32(vh, 12)) * block;
        let at = jib as usize;
        let be64 = |at: usize| (u64::from(be32(image, at)) << 32) | u64::from(be32(image, at + 4));
        let (offset, size) = (be64(at + 36), be64(at + 44));
        out.insert(jib / 512);
        for s in offset / 512..(offset + size) / 512 {
            let at = (s * 512) as usize;
            if at + 512 <= image.len() && image[at..at + 512].iter().any(|&b| b != 0) {
                out.insert(s);
            }
        }
    }
    out.into_iter().map(|s| s * 512).collect()
}

/// Flips 1..=16 bytes in metadata sectors, `runs` times, and requires every run to end,
/// without a panic, within 30 seconds.
fn corrupted_metadata_never_panics_or_hangs(bytes: Vec<u8>, name: &str, runs: u64) {
    let base = Arc::new(bytes);
    let sectors = metadata_sectors(&base);
    assert!(
        sectors.len() > 2,
        "{name}: {} metadata sectors",
        sectors.len()
    );
    let pick = |rng: &mut Rng| sectors[rng.below(sectors.len() as u64) as usize] + rng.below(512);
    helper::corrupted_runs(&base, name, runs, pick, exercise);
}

#[test]
fn corrupted_metadata_never_panics_or_hangs_macos() {
    for name in ["test_hfsplus.img", "test_hfsplus_journaled_dirty.img"] {
        let path = fixture().path("real").join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        corrupted_metadata_never_panics_or_hangs(bytes, name, 300);
    }
}

#[test]
fn corrupted_metadata_never_panics_or_hangs_xorriso() {
    let path = fixture().path("hfsplus.img");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    corrupted_metadata_never_panics_or_hangs(bytes, "hfsplus.img", 200);
}
