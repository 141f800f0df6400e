//! The ext2/3/4 reader against images built by `hw-fixtures/ext.sh`: the source tree, the
//! kernel's own view of the image (root only), a dirty journal, corrupted metadata, and the
//! size of the reads it issues.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use drivers::fs::ext::ExtFs;
use drivers::fs::walk::{walk, Limits};
use drivers::fs::{EntryKind, ExtentKind, FileSystem, FsError, FsType};
use drivers::source::{ImageFile, IoError, MemorySource, ReadAt};

use crate::helper::{self, Fixture, Rng, Seen};

fn build(kind: &str) -> Fixture {
    helper::build("ext.sh", &[kind])
}

fn open(fixture: &Fixture, kind: &str) -> ExtFs {
    let path = fixture.path(&format!("{kind}.img"));
    let image = ImageFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    ExtFs::open(Arc::new(image)).unwrap_or_else(|e| panic!("{e}"))
}

/// The reader's tree without `lost+found`, which mke2fs adds and the source tree lacks.
fn reader_tree(fs: &dyn FileSystem) -> BTreeMap<Vec<u8>, Seen> {
    let mut tree = helper::reader_tree(fs);
    tree.remove(&b"lost+found"[..]);
    tree
}

/// `(path, seconds)` for the entries whose times the script set after 2038 with debugfs.
fn post_2038(fixture: &Fixture) -> Vec<(Vec<u8>, i64)> {
    let text =
        std::fs::read_to_string(fixture.path("post2038.txt")).unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, s)| {
            (
                p.as_bytes().to_vec(),
                s.parse().unwrap_or_else(|e| panic!("{l}: {e}", l = s)),
            )
        })
        .collect()
}

/// Finds the entry at `path` (`/`-separated) by walking.
fn lookup(fs: &dyn FileSystem, path: &[u8]) -> drivers::fs::DirEntry {
    let walked = walk(fs, Limits::default());
    walked
        .entries
        .into_iter()
        .find(|w| w.path_bytes() == path)
        .map(|w| w.entry)
        .unwrap_or_else(|| panic!("{} not found", String::from_utf8_lossy(path)))
}

fn same_tree_as_source(kind: &str, fs_type: FsType) {
    let fixture = build(kind);
    let fs = open(&fixture, kind);
    assert_eq!(fs.fs_type(), fs_type);
    assert_eq!(fs.label().as_deref(), Some(kind));
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());

    let source = helper::source_tree(&fixture.path("src"));
    let mut expected = source.clone();
    // The script set these after mke2fs with debugfs; the source tree carries the same value,
    // and the image must too.
    for (path, seconds) in post_2038(&fixture) {
        let seen = expected
            .get_mut(&path)
            .unwrap_or_else(|| panic!("{path:?}"));
        assert_eq!(seen.mtime, Some(seconds));
        seen.mtime = Some(seconds);
    }
    let reader = reader_tree(&fs);
    helper::assert_same_tree(&expected, &reader, true);
    assert_eq!(reader[&b"old.txt"[..]].mtime, Some(-307_584_000));
    assert_eq!(reader[&b"a/b/c/d/e/deep.txt"[..]].mtime, Some(-1));
    assert_eq!(reader[&b"far.txt"[..]].mtime, Some(4_102_444_800));

    // Holes: the sparse file is mostly holes, with data at 0, 40 MiB and 70 MiB.
    let sparse = lookup(&fs, b"sparse.bin");
    let extents = fs.extents(sparse.id).unwrap_or_else(|e| panic!("{e}"));
    let covered: u64 = extents.iter().map(|e| e.length).sum();
    assert_eq!(covered, sparse.size);
    let data: Vec<u64> = extents
        .iter()
        .filter(|e| e.kind == ExtentKind::Data)
        .map(|e| e.logical)
        .collect();
    assert_eq!(data, vec![0, 40 << 20, 70 << 20], "{extents:?}");
    assert!(extents
        .iter()
        .any(|e| e.kind == ExtentKind::Hole && e.length >= 29 << 20));
    for pair in extents.windows(2) {
        assert_eq!(pair[0].logical + pair[0].length, pair[1].logical);
        assert!(pair[0].kind != pair[1].kind || pair[0].kind == ExtentKind::Data);
    }
    // The fragmented file: 2,000 one-block islands (depth 2 on ext4).
    let frag = lookup(&fs, b"frag.bin");
    let extents = fs.extents(frag.id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        extents
            .iter()
            .filter(|e| e.kind == ExtentKind::Data)
            .count(),
        2000
    );
    // The big file is one run on a fresh ext4 volume. On ext2/3 an indirect block sits
    // between every block_size/4 data blocks, so runs are 256 KiB on 1 KiB blocks.
    let big = lookup(&fs, b"big.bin");
    let extents = fs.extents(big.id).unwrap_or_else(|e| panic!("{e}"));
    let max_runs = if kind == "ext4" {
        2
    } else {
        big.size.div_ceil(256 << 10) + 1
    };
    assert!(extents.len() as u64 <= max_runs, "{extents:?}");

    // Symlinks, fast and slow.
    for name in ["link-fast", "link-slow"] {
        let link = lookup(&fs, name.as_bytes());
        assert_eq!(link.kind, EntryKind::Symlink);
        let want =
            std::fs::read_link(fixture.path("src").join(name)).unwrap_or_else(|e| panic!("{e}"));
        let got = fs.read_link(link.id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want.as_os_str().as_encoded_bytes(), "{name}");
    }
    assert!(matches!(
        fs.read(lookup(&fs, b"a").id, 0, &mut [0u8; 8]),
        Err(FsError::WrongKind { .. })
    ));
}

#[test]
fn ext2_reads_like_the_source_tree() {
    same_tree_as_source("ext2", FsType::Ext2);
}

#[test]
fn ext3_reads_like_the_source_tree() {
    same_tree_as_source("ext3", FsType::Ext3);
}

#[test]
fn ext4_reads_like_the_source_tree() {
    same_tree_as_source("ext4", FsType::Ext4);
}

/// ext4 on 1 KiB blocks with inline data (the 5,000 small files and the small directories
/// live in their inodes), meta_bg, 64bit and gdt_csum (CRC16) descriptors.
#[test]
fn ext4_with_inline_data_and_meta_bg_reads_like_the_source_tree() {
    same_tree_as_source("ext4-features", FsType::Ext4);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// The kernel's ext4 driver as a second oracle: mount the ext4 images read-only (without loading
/// the journal) and compare what it shows with what we read. Needs root and loop devices.
#[test]
fn loop_ext_matches_the_kernel_mount() {
    if !is_root() {
        eprintln!("loop_ext_matches_the_kernel_mount: skipped, needs root");
        return;
    }
    for kind in ["ext4", "ext4-features"] {
        let fixture = build(kind);
        let mnt = fixture.path("mnt");
        std::fs::create_dir(&mnt).unwrap_or_else(|e| panic!("{e}"));
        let status = Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,ro,noload"])
            .arg(fixture.path(&format!("{kind}.img")))
            .arg(&mnt)
            .status()
            .unwrap_or_else(|e| panic!("mount: {e}"));
        assert!(status.success(), "mount {kind} failed: {status}");
        let guard = Mount(&mnt);
        let kernel = helper::source_tree(&mnt);
        drop(guard);
        let fs = open(&fixture, kind);
        helper::assert_same_tree(&kernel, &helper::reader_tree(&fs), true);
    }
}

#[test]
fn a_dirty_journal_opens_with_a_warning() {
    for kind in ["ext3", "ext4"] {
        let fixture = build(kind);
        let img = fixture.path(&format!("{kind}.img"));
        let before = std::fs::read(&img).unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new("debugfs")
            .args(["-w", "-R", "feature needs_recovery"])
            .arg(&img)
            .output()
            .unwrap_or_else(|e| panic!("debugfs: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dirty = std::fs::read(&img).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(before, dirty);
        let fs = open(&fixture, kind);
        let warnings = fs.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "the journal (inode 8) needs recovery (the volume was not cleanly unmounted)"
            ),
            "{warnings:?}"
        );
        let source = helper::source_tree(&fixture.path("src"));
        helper::assert_same_tree(&source, &reader_tree(&fs), true);
        // Never written.
        assert_eq!(std::fs::read(&img).unwrap_or_else(|e| panic!("{e}")), dirty);
    }
}

/// A source that counts the reads going through it.
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

/// A large file is read with one request per contiguous run of the caller's buffer: at most
/// one read per MiB with 1 MiB buffers, and a single read with a buffer as big as the file.
#[test]
fn ext4_reads_files_in_large_runs() {
    let fixture = build("ext4");
    let image = ImageFile::open(&fixture.path("ext4.img")).unwrap_or_else(|e| panic!("{e}"));
    let counting = Arc::new(Counting {
        inner: image,
        reads: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let fs = ExtFs::open(counting.clone()).unwrap_or_else(|e| panic!("{e}"));
    let big = lookup(&fs, b"big.bin");
    let runs = fs.extents(big.id).unwrap_or_else(|e| panic!("{e}")).len() as u64;
    for chunk in [1usize << 20, 8 << 20] {
        let mut buf = vec![0u8; chunk];
        let before = counting.reads.load(Ordering::Relaxed);
        let start = std::time::Instant::now();
        let mut offset = 0u64;
        loop {
            let n = fs
                .read(big.id, offset, &mut buf)
                .unwrap_or_else(|e| panic!("{e}"));
            if n == 0 {
                break;
            }
            offset += n as u64;
        }
        let reads = counting.reads.load(Ordering::Relaxed) - before;
        let elapsed = start.elapsed().as_secs_f64();
        eprintln!(
            "big.bin ({} bytes, {runs} runs) with {chunk}-byte buffers: {reads} reads, {:.0} MB/s",
            big.size,
            big.size as f64 / elapsed / 1e6
        );
        assert_eq!(offset, big.size);
        assert!(
            reads <= big.size.div_ceil(chunk as u64) + runs,
            "{reads} reads"
        );
    }

    // The whole tree, metadata included.
    let (reads, bytes) = (
        counting.reads.load(Ordering::Relaxed),
        counting.bytes.load(Ordering::Relaxed),
    );
    let start = std::time::Instant::now();
    let tree = helper::reader_tree(&fs);
    let content: u64 = tree.values().map(|s| s.size).sum();
    let reads = counting.reads.load(Ordering::Relaxed) - reads;
    let bytes = counting.bytes.load(Ordering::Relaxed) - bytes;
    eprintln!(
        "whole tree: {} entries, {content} bytes of content: {reads} reads, {bytes} bytes read, {:.2} s",
        tree.len(),
        start.elapsed().as_secs_f64()
    );
}

/// Everything a pipeline would do with a volume: open, walk, map and read every file (the
/// first 2 MiB), read every symlink. Returns how far it got.
fn exercise(source: Arc<dyn ReadAt>) -> &'static str {
    let Ok(fs) = ExtFs::open(source) else {
        return "open failed";
    };
    let walked = walk(&fs, Limits::default());
    let mut buf = vec![0u8; 1 << 20];
    for w in &walked.entries {
        match w.entry.kind {
            EntryKind::File => {
                let _ = fs.extents(w.entry.id);
                let mut offset = 0;
                while offset < 2 << 20 {
                    match fs.read(w.entry.id, offset, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => offset += n as u64,
                    }
                }
            }
            EntryKind::Symlink => {
                let _ = fs.read_link(w.entry.id);
            }
            _ => {}
        }
    }
    if walked.problems.is_empty() {
        "walked cleanly"
    } else {
        "walked with problems"
    }
}

/// The blocks of `image` that hold metadata: not all zero and not file content (nor the
/// journal, which the reader never looks at).
fn metadata_blocks(image: &Arc<Vec<u8>>) -> (u64, Vec<u64>) {
    let fs = ExtFs::open(Arc::new(MemorySource::new("good.img", image.to_vec())))
        .unwrap_or_else(|e| panic!("{e}"));
    let bs = u64::from(fs.block_size());
    let mut content = BTreeSet::new();
    let mut ids: Vec<u64> = walk(&fs, Limits::default())
        .entries
        .iter()
        .filter(|w| w.entry.kind == EntryKind::File)
        .map(|w| w.entry.id)
        .collect();
    ids.push(8); // the journal, when there is one
    for id in ids {
        for e in fs.extents(id).unwrap_or_default() {
            if e.kind == ExtentKind::Data {
                content.extend(e.physical / bs..(e.physical + e.length).div_ceil(bs));
            }
        }
    }
    let blocks = (0..image.len() as u64 / bs)
        .filter(|b| !content.contains(b))
        .filter(|&b| {
            image[(b * bs) as usize..((b + 1) * bs) as usize]
                .iter()
                .any(|&x| x != 0)
        })
        .collect();
    (bs, blocks)
}

/// Flips 1-16 random bytes in metadata (a quarter of the runs in the superblock and the
/// first descriptor block) at seeded-random places: opening and walking must never panic or
/// hang, whatever the outcome.
#[test]
fn corrupted_metadata_never_panics_or_hangs() {
    const RUNS: u64 = 250;
    for kind in ["ext2", "ext4"] {
        let fixture = build(kind);
        let image = Arc::new(
            std::fs::read(fixture.path(&format!("{kind}.img"))).unwrap_or_else(|e| panic!("{e}")),
        );
        let (bs, blocks) = metadata_blocks(&image);
        assert!(blocks.len() > 100, "{} metadata blocks", blocks.len());
        // One flip in four in the superblock and the block after it (descriptors on 1 KiB
        // blocks), the others anywhere in a metadata block.
        let pick = |rng: &mut Rng| {
            if rng.below(4) == 0 {
                1024 + rng.below(2048.max(bs))
            } else {
                blocks[rng.below(blocks.len() as u64) as usize] * bs + rng.below(bs)
            }
        };
        eprintln!("{kind}: {} metadata blocks", blocks.len());
        helper::corrupted_runs(&image, kind, RUNS, pick, exercise);
    }
}

/// Runs `debugfs -R request` on `img` and returns its output.
fn debugfs(img: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(img)
        .output()
        .unwrap_or_else(|e| panic!("debugfs: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The numbers in `text`, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|w| {
            w.strip_prefix("0x")
                .map_or_else(|| w.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// One corrupt field of each checksummed structure gives one clear error naming its offset.
#[test]
fn ext4_checksums_catch_one_corrupt_field_each() {
    let fixture = build("ext4");
    let img = fixture.path("ext4.img");
    let image = std::fs::read(&img).unwrap_or_else(|e| panic!("{e}"));
    let with = |at: u64| {
        let mut bytes = image.clone();
        bytes[at as usize] ^= 0x01;
        ExtFs::open(Arc::new(MemorySource::new("c.img", bytes)))
    };
    let good = ExtFs::open(Arc::new(MemorySource::new("c.img", image.clone())))
        .unwrap_or_else(|e| panic!("{e}"));
    let message = |r: Result<(), FsError>| r.err().map(|e| e.to_string()).unwrap_or_default();

    // Superblock: the free-blocks count.
    let e = message(with(1024 + 0x0C).map(|_| ()));
    assert!(
        e.starts_with("c.img: corrupt superblock checksum 0x"),
        "{e}"
    );
    assert!(e.ends_with("at byte offset 2044"), "{e}");

    // Group 0's descriptor (block 1): its group holds the root, so the open fails.
    let e = message(with(4096 + 0x0C).map(|_| ()));
    assert!(
        e.starts_with("c.img: corrupt group 0 descriptor checksum 0x"),
        "{e}"
    );
    assert!(e.ends_with("at byte offset 4096"), "{e}");

    // big.bin's inode: listed (from its directory entry), unreadable.
    let imap = numbers(&debugfs(&img, "imap /big.bin"));
    let (ino, block, offset) = (imap[0], imap[2], imap[3]);
    let at = block * 4096 + offset;
    let fs = with(at + 0x10).unwrap_or_else(|e| panic!("{e}"));
    let big = lookup(&fs, b"big.bin");
    assert_eq!((big.id, big.size, big.mtime), (ino, 0, None));
    let e = message(fs.read(ino, 0, &mut [0u8; 4]).map(|_| ()));
    assert!(
        e.starts_with(&format!("c.img: corrupt inode {ino}: checksum 0x")),
        "{e}"
    );
    assert!(e.ends_with(&format!("at byte offset {}", at + 0x7C)), "{e}");

    // frag.bin's extent index block (depth 2).
    let frag = lookup(&good, b"frag.bin");
    let index = numbers(
        debugfs(&img, "ex /frag.bin")
            .lines()
            .nth(1)
            .unwrap_or_default(),
    )[6];
    let fs = with(index * 4096 + 20).unwrap_or_else(|e| panic!("{e}"));
    let e = message(fs.extents(frag.id).map(|_| ()));
    assert!(
        e.starts_with(&format!(
            "c.img: corrupt inode {}: extent tree: block checksum 0x",
            frag.id
        )),
        "{e}"
    );

    // A leaf block of the htree directory `many`.
    let many = lookup(&good, b"many");
    // `blocks` lists extent-tree blocks and the htree root too: take the first block that
    // ends with a leaf's checksum record.
    let leaf = numbers(&debugfs(&img, "blocks /many"))
        .into_iter()
        .find(|&b| {
            image[(b * 4096 + 4084) as usize..(b * 4096 + 4092) as usize]
                == [0, 0, 0, 0, 12, 0, 0, 0xDE]
        })
        .unwrap_or_else(|| panic!("no leaf block in /many"));
    let fs = with(leaf * 4096 + 100).unwrap_or_else(|e| panic!("{e}"));
    let e = message(fs.read_dir(many.id).map(|_| ()));
    assert!(
        e.starts_with("c.img: corrupt directory block checksum 0x"),
        "{e}"
    );
    assert!(
        e.ends_with(&format!("at byte offset {}", leaf * 4096 + 4096 - 4)),
        "{e}"
    );
    // The rest of the volume is unaffected.
    assert!(fs.read_dir(fs.root()).is_ok());
}

/// Throughput on any image: `EXT_BENCH_IMAGE=/path/to.img cargo test --release -p
/// station-drivers --test integration ext::bench -- --ignored --nocapture`. Reads every
/// file with 8 MiB buffers and prints MB/s, the number of reads and their mean size.
#[test]
#[ignore = "a measurement on an image given by EXT_BENCH_IMAGE"]
fn bench_read_every_file() {
    let Some(path) = std::env::var_os("EXT_BENCH_IMAGE") else {
        eprintln!("set EXT_BENCH_IMAGE");
        return;
    };
    let image = ImageFile::open(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    let counting = Arc::new(Counting {
        inner: image,
        reads: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let fs = ExtFs::open(counting.clone()).unwrap_or_else(|e| panic!("{e}"));
    let start = std::time::Instant::now();
    let walked = walk(&fs, Limits::default());
    let meta_reads = counting.reads.load(Ordering::Relaxed);
    let mut buf = vec![0u8; 8 << 20];
    let mut total = 0u64;
    for w in walked
        .entries
        .iter()
        .filter(|w| w.entry.kind == EntryKind::File)
    {
        let mut offset = 0u64;
        loop {
            let n = fs
                .read(w.entry.id, offset, &mut buf)
                .unwrap_or_else(|e| panic!("{e}"));
            if n == 0 {
                break;
            }
            offset += n as u64;
        }
        total += offset;
    }
    let secs = start.elapsed().as_secs_f64();
    let reads = counting.reads.load(Ordering::Relaxed);
    let bytes = counting.bytes.load(Ordering::Relaxed);
    eprintln!(
        "{} entries, {total} bytes of files in {secs:.2} s: {:.0} MB/s; {reads} reads ({meta_reads} for the walk), mean {} KiB",
        walked.entries.len(),
        total as f64 / secs / 1e6,
        bytes / reads.max(1) / 1024
    );
}
