//! The NTFS reader against images built by `hw-fixtures/ntfs.sh` (mkntfs + ntfs-3g: root, so
//! `loop_`-style FUSE tests), with ntfs-3g itself as the oracle: every image is mounted
//! read-only through ntfs-3g and every path's kind, size, MD5 and mtime must match what our
//! reader walks. Also: the read pattern of big files, the fragmented volume (attribute lists
//! for $MFT, a directory index and a file), a volume marked dirty, and corrupted metadata
//! that must never make the reader panic or hang.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use drivers::fs::ntfs::NtfsFs;
use drivers::fs::walk::{walk, Limits, WalkEntry};
use drivers::fs::{open_filesystem, EntryKind, ExtentKind, FileSystem, FsError, FsType, Zone};
use drivers::source::{ImageFile, IoError, MemorySource, ReadAt};

use crate::helper::{self, Fixture, Flipped};

fn open(image: &Path) -> NtfsFs {
    let source = ImageFile::open(image).unwrap_or_else(|e| panic!("{e}"));
    NtfsFs::open(Arc::new(source)).unwrap_or_else(|e| panic!("{image:?}: {e}"))
}

/// An ntfs-3g read-only mount of an image, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn new(image: &Path) -> Mount {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let status = Command::new("ntfs-3g")
            .arg("-o")
            .arg("ro")
            .arg(image)
            .arg(dir.path())
            .status()
            .unwrap_or_else(|e| panic!("ntfs-3g: {e}"));
        assert!(status.success(), "ntfs-3g {image:?}: {status}");
        Mount { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn entries(fs: &dyn FileSystem) -> Vec<WalkEntry> {
    let walked = walk(fs, Limits::default());
    assert!(walked.problems.is_empty(), "{:?}", walked.problems);
    walked.entries
}

fn find(entries: &[WalkEntry], path: &str) -> drivers::fs::DirEntry {
    entries
        .iter()
        .find(|w| w.path_bytes() == path.as_bytes())
        .map(|w| w.entry.clone())
        .unwrap_or_else(|| panic!("{path} not found"))
}

/// Walks `image` with our reader and compares it with ntfs-3g's view.
fn same_tree_as_ntfs3g(image: &Path) -> usize {
    let fs = open(image);
    let mount = Mount::new(image);
    let oracle = helper::source_tree(&mount.path());
    let reader = helper::reader_tree(&fs);
    helper::assert_same_tree(&oracle, &reader, true);
    reader.len()
}

fn reads_like_ntfs3g(fixture: &Fixture) {
    let image = fixture.path("ntfs.img");
    let n = same_tree_as_ntfs3g(&image);
    assert!(n > 650, "{n} entries");
    let fs = open(&image);
    assert_eq!(fs.fs_type(), FsType::Ntfs);
    assert_eq!(fs.label().as_deref(), Some("NtfsFixture"));
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    let boxed = open_filesystem(Arc::new(
        ImageFile::open(&image).unwrap_or_else(|e| panic!("{e}")),
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(boxed.fs_type(), FsType::Ntfs);
}

fn special_entries(fixture: &Fixture) {
    let image = fixture.path("ntfs.img");
    let fs = open(&image);
    let all = entries(&fs);
    let mount = Mount::new(&image);

    // No system file in the root listing.
    for w in all.iter().filter(|w| w.path.len() == 1) {
        let name = w.path_bytes();
        assert!(
            !name.starts_with(b"$"),
            "{}",
            String::from_utf8_lossy(&name)
        );
    }
    // DOS aliases are not files.
    for alias in ["ALONGF~1.TEX", "LONGDI~1"] {
        assert!(
            !all.iter().any(|w| w.path_bytes() == alias.as_bytes()),
            "{alias} listed"
        );
    }
    assert_eq!(find(&all, "Long Directory Name").kind, EntryKind::Directory);
    // Hard links: one record, three names.
    let ids: BTreeSet<_> = [
        "links/original.txt",
        "links/second name.txt",
        "a/third link.txt",
    ]
    .iter()
    .map(|p| find(&all, p).id)
    .collect();
    assert_eq!(ids.len(), 1);
    // Both symlink kinds read back as ntfs-3g shows them.
    for link in ["interix-link", "reparse-link"] {
        let e = find(&all, link);
        assert_eq!(e.kind, EntryKind::Symlink, "{link}");
        let want = std::fs::read_link(mount.path().join(link)).unwrap_or_else(|e| panic!("{e}"));
        let got = fs.read_link(e.id).unwrap_or_else(|e| panic!("{link}: {e}"));
        assert_eq!(got, want.as_os_str().as_encoded_bytes(), "{link}");
    }
    assert!(matches!(
        fs.read_link(find(&all, "ads.txt").id),
        Err(FsError::WrongKind { .. })
    ));
    // The ADS is named, not read.
    let ads = find(&all, "ads.txt");
    assert_eq!(ads.size, 12);
    assert_eq!(
        fs.streams(ads.id).unwrap_or_else(|e| panic!("{e}")),
        vec!["secret".to_string()]
    );
    assert!(fs
        .streams(find(&all, "README.TXT").id)
        .unwrap_or_else(|e| panic!("{e}"))
        .is_empty());
    // The sparse file has holes; the compressed ones have no plain extents but read fine.
    let sparse = fs
        .extents(find(&all, "sparse.bin").id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sparse.iter().any(|e| e.kind == ExtentKind::Hole),
        "{sparse:?}"
    );
    assert_eq!(sparse.iter().map(|e| e.length).sum::<u64>(), 16 << 20);
    assert!(matches!(
        fs.extents(find(&all, "packed/numbers.txt").id),
        Err(FsError::Unsupported { .. })
    ));
    // Times: UTC, with the 100 ns digits.
    let t = find(&all, "packed/numbers.txt")
        .mtime
        .unwrap_or_else(|| panic!("no mtime"));
    assert_eq!(
        (t.seconds, t.nanos, t.zone),
        (1_580_608_922, 123_456_700, Zone::Utc)
    );
    let t = find(&all, "big.bin")
        .mtime
        .unwrap_or_else(|| panic!("no mtime"));
    assert_eq!(t.seconds, 2_214_172_798);
    // Directories are not files.
    assert!(matches!(
        fs.read(find(&all, "packed").id, 0, &mut [0u8; 16]),
        Err(FsError::WrongKind { .. })
    ));
}

fn fragmented_volume_reads_like_ntfs3g(fixture: &Fixture) {
    let image = fixture.path("frag.img");
    let n = same_tree_as_ntfs3g(&image);
    assert!(n > 5000, "{n} entries");
    let fs = open(&image);
    let all = entries(&fs);
    let frag = find(&all, "fragmented.bin");
    let extents = fs.extents(frag.id).unwrap_or_else(|e| panic!("{e}"));
    assert!(extents.len() > 100, "{} extents", extents.len());
}

/// Sets the dirty flag of `$Volume`'s `$VOLUME_INFORMATION` in a copy of the image (record 3
/// lies in $MFT's first run, and the flags word is not at a sector end, so no fixup is
/// touched).
fn mark_dirty(image: &mut [u8]) {
    let le16 = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let le32 = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let sector = le16(image, 0x0B);
    let cluster = sector * image[0x0D] as usize;
    let mft = u64::from_le_bytes(
        image[0x30..0x38]
            .try_into()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let record_size = 1usize << (256 - image[0x40] as usize);
    let rec = mft as usize * cluster + 3 * record_size;
    let mut off = rec + le16(image, rec + 0x14);
    loop {
        let kind = le32(image, off);
        assert_ne!(kind, 0xFFFF_FFFF, "no $VOLUME_INFORMATION");
        if kind == 0x70 {
            let value = off + le16(image, off + 0x14);
            image[value + 0x0A] |= 1;
            return;
        }
        off += le32(image, off + 4) as usize;
    }
}

fn dirty_volume_is_a_warning(fixture: &Fixture) {
    let mut bytes = std::fs::read(fixture.path("ntfs.img")).unwrap_or_else(|e| panic!("{e}"));
    mark_dirty(&mut bytes);
    let fs = NtfsFs::open(Arc::new(MemorySource::new("dirty.img", bytes)))
        .unwrap_or_else(|e| panic!("{e}"));
    let warnings = fs.warnings();
    assert!(warnings.iter().any(|w| w.contains("dirty")), "{warnings:?}");
    // Still readable.
    assert!(entries(&fs).len() > 650);
}

/// Sets FILE_ATTRIBUTE_ENCRYPTED in the `$STANDARD_INFORMATION` of MFT record `record` in a
/// copy of the image (ntfs-3g refuses to set it). The record is found by the number it
/// carries at 0x2C; the flags word is in the first sector, away from the fixup bytes.
fn mark_encrypted(image: &mut [u8], record: u64) {
    let le16 = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let le32 = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let at = (0..image.len() - 1024)
        .step_by(1024)
        .find(|&at| &image[at..at + 4] == b"FILE" && u64::from(le32(image, at + 0x2C)) == record)
        .unwrap_or_else(|| panic!("record {record} not found"));
    let attr = at + le16(image, at + 0x14);
    assert_eq!(
        le32(image, attr),
        0x10,
        "first attribute is not $STANDARD_INFORMATION"
    );
    let value = attr + le16(image, attr + 0x14);
    image[value + 0x21] |= 0x40;
}

fn encrypted_files_are_unsupported(fixture: &Fixture) {
    let mut bytes = std::fs::read(fixture.path("ntfs.img")).unwrap_or_else(|e| panic!("{e}"));
    let id = find(&entries(&open(&fixture.path("ntfs.img"))), "ads.txt").id;
    mark_encrypted(&mut bytes, id);
    let fs = NtfsFs::open(Arc::new(MemorySource::new("efs.img", bytes)))
        .unwrap_or_else(|e| panic!("{e}"));
    match fs.read(id, 0, &mut [0u8; 64]) {
        Err(FsError::Unsupported { what, .. }) => {
            assert!(what.contains(&format!("record {id}")), "{what}");
            assert!(what.contains("EFS"), "{what}");
        }
        other => panic!("encrypted file read gave {other:?}"),
    }
}

/// A source that counts reads.
struct Counting<R> {
    inner: R,
    reads: AtomicU64,
}

impl<R: ReadAt> ReadAt for Counting<R> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn reads_big_files_in_large_runs(fixture: &Fixture) {
    for (image, path) in [
        ("ntfs.img", "random-12m.bin"),
        ("frag.img", "fragmented.bin"),
    ] {
        let file = ImageFile::open(&fixture.path(image)).unwrap_or_else(|e| panic!("{e}"));
        let source = Arc::new(Counting {
            inner: file,
            reads: AtomicU64::new(0),
        });
        let fs = NtfsFs::open(source.clone()).unwrap_or_else(|e| panic!("{e}"));
        let big = find(&entries(&fs), path);
        let extents = fs.extents(big.id).unwrap_or_else(|e| panic!("{e}"));
        let before = source.reads.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut buf = vec![0u8; 4 << 20];
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
        assert_eq!(offset, big.size);
        let reads = source.reads.load(Ordering::Relaxed) - before;
        // One read per extent crossed per call, nothing per cluster.
        let calls = big.size.div_ceil(4 << 20);
        assert!(
            reads <= calls + extents.len() as u64,
            "{path}: {reads} reads for {} bytes in {} extents",
            big.size,
            extents.len()
        );
        eprintln!(
            "{image}/{path}: {} bytes, {} extents, {reads} reads, {:.0} MB/s",
            big.size,
            extents.len(),
            big.size as f64 / start.elapsed().as_secs_f64() / 1e6
        );
    }
}

/// What one corrupted image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Refused,
    Walked { files_failed: bool },
}

/// Opens, walks and reads every file (at most 64 MiB in all) of `source`.
fn exercise(source: Arc<dyn ReadAt>) -> Outcome {
    let Ok(fs) = NtfsFs::open(source) else {
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
    for w in &walked.entries {
        let id = w.entry.id;
        let _ = fs.streams(id);
        if w.entry.kind == EntryKind::Symlink {
            let _ = fs.read_link(id);
        }
        if w.entry.kind != EntryKind::File {
            continue;
        }
        let mut offset = 0u64;
        while budget > 0 {
            match fs.read(id, offset, &mut buf) {
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
        let _ = fs.extents(id);
    }
    let _ = fs.warnings();
    Outcome::Walked { files_failed }
}

/// Byte offsets of the metadata sectors: not file data (as the clean image's extents say)
/// and not all zeros, plus the boot sector.
fn metadata_sectors(image: &Arc<Vec<u8>>) -> Vec<u64> {
    let source = Arc::new(Flipped {
        base: image.clone(),
        flips: BTreeMap::new(),
    });
    let fs = NtfsFs::open(source).unwrap_or_else(|e| panic!("{e}"));
    let mut data = BTreeSet::new();
    for w in entries(&fs) {
        if w.entry.kind != EntryKind::File {
            continue;
        }
        // Resident and compressed files have no extents: their sectors stay candidates.
        for e in fs.extents(w.entry.id).unwrap_or_default() {
            if e.kind == ExtentKind::Data {
                for s in e.physical / 512..(e.physical + e.length).div_ceil(512) {
                    data.insert(s);
                }
            }
        }
    }
    (0..image.len() as u64 / 512)
        .filter(|s| {
            let at = (s * 512) as usize;
            *s == 0 || (!data.contains(s) && image[at..at + 512].iter().any(|&b| b != 0))
        })
        .map(|s| s * 512)
        .collect()
}

/// Flips 1..=16 bytes (one run in eight: in the boot sector) in metadata sectors, `runs`
/// times; every run must end, without a panic, within 30 seconds.
fn corrupted_metadata_never_panics_or_hangs(fixture: &Fixture, image: &str, runs: u64) {
    let bytes = std::fs::read(fixture.path(image)).unwrap_or_else(|e| panic!("{e}"));
    let base = Arc::new(bytes);
    let sectors = metadata_sectors(&base);
    let pick = helper::boot_or_metadata_byte(&sectors);
    helper::corrupted_runs(&base, image, runs, pick, exercise);
}

/// Builds the images once and checks everything against ntfs-3g.
#[test]
fn loop_ntfs_matches_ntfs3g() {
    let fixture = helper::build("ntfs.sh", &[]);
    reads_like_ntfs3g(&fixture);
    special_entries(&fixture);
    fragmented_volume_reads_like_ntfs3g(&fixture);
    dirty_volume_is_a_warning(&fixture);
    encrypted_files_are_unsupported(&fixture);
    reads_big_files_in_large_runs(&fixture);
}

#[test]
fn loop_ntfs_corrupted_metadata_never_panics_or_hangs() {
    let fixture = helper::build("ntfs.sh", &[]);
    corrupted_metadata_never_panics_or_hangs(&fixture, "ntfs.img", 300);
    corrupted_metadata_never_panics_or_hangs(&fixture, "frag.img", 100);
}
