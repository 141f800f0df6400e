//! Whole-volume tests on images built in memory: FAT12, FAT16, FAT32 and exFAT, then one
//! corrupted field at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::dir::tests::{lfn, short};
use super::exfat::tests::{label as exfat_label, set as exfat_set};
use super::{FatFs, Variant};
use crate::fs::{DirEntry, EntryKind, Extent, ExtentKind, FileSystem, FsError, FsType, Zone};
use crate::source::{IoError, MemorySource, ReadAt};

/// A source that counts the reads issued through it.
struct Counting {
    inner: MemorySource,
    reads: AtomicU64,
}

impl Counting {
    fn new(bytes: Vec<u8>) -> Arc<Self> {
        Arc::new(Self {
            inner: MemorySource::new("mem.img", bytes),
            reads: AtomicU64::new(0),
        })
    }
    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl ReadAt for Counting {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn ok<T>(r: Result<T, FsError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn err<T: std::fmt::Debug>(r: Result<T, FsError>) -> FsError {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn open(bytes: Vec<u8>) -> Result<FatFs, FsError> {
    FatFs::open(Arc::new(MemorySource::new("mem.img", bytes)))
}

fn by_name(entries: &[DirEntry], name: &str) -> DirEntry {
    entries
        .iter()
        .find(|e| e.name.to_utf8().as_deref() == Some(name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed in {entries:?}"))
}

fn read_all(fs: &dyn FileSystem, id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1000];
    loop {
        let n = ok(fs.read(id, out.len() as u64, &mut buf));
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Deterministic bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const SECTOR: usize = 512;

/// A FAT12/16/32 image in memory, 512-byte sectors and clusters, two FATs.
struct FatImg {
    bytes: Vec<u8>,
    variant: Variant,
    fat_offset: usize,
    fat_bytes: usize,
    root_offset: usize,
    heap: usize,
}

impl FatImg {
    fn new(variant: Variant, clusters: u32) -> Self {
        let fat32 = variant == Variant::Fat32;
        let reserved = if fat32 { 32 } else { 1 };
        let root_entries: usize = if fat32 { 0 } else { 512 };
        let entries = clusters as usize + 2;
        let fat_bytes = match variant {
            Variant::Fat12 => (entries * 3).div_ceil(2),
            Variant::Fat16 => entries * 2,
            _ => entries * 4,
        };
        let fat_sectors = fat_bytes.div_ceil(SECTOR);
        let root_sectors = root_entries * 32 / SECTOR;
        let data_start = reserved + 2 * fat_sectors + root_sectors;
        let total = data_start + clusters as usize;
        let mut b = vec![0u8; total * SECTOR];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        b[3..11].copy_from_slice(b"MSWIN4.1");
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[14..16].copy_from_slice(&(reserved as u16).to_le_bytes());
        b[16] = 2;
        b[17..19].copy_from_slice(&(root_entries as u16).to_le_bytes());
        if total < 0x10000 {
            b[19..21].copy_from_slice(&(total as u16).to_le_bytes());
        } else {
            b[32..36].copy_from_slice(&(total as u32).to_le_bytes());
        }
        b[21] = 0xF8;
        if fat32 {
            b[36..40].copy_from_slice(&(fat_sectors as u32).to_le_bytes());
            b[44..48].copy_from_slice(&2u32.to_le_bytes());
            b[48..50].copy_from_slice(&1u16.to_le_bytes());
            b[71..82].copy_from_slice(b"BOOTLABEL  ");
            // FSInfo in sector 1.
            let f = SECTOR;
            b[f..f + 4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
            b[f + 484..f + 488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
            b[f + 508..f + 512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
        } else {
            b[22..24].copy_from_slice(&(fat_sectors as u16).to_le_bytes());
            b[43..54].copy_from_slice(b"BOOTLABEL  ");
        }
        b[510] = 0x55;
        b[511] = 0xAA;
        let mut img = Self {
            bytes: b,
            variant,
            fat_offset: reserved * SECTOR,
            fat_bytes: fat_sectors * SECTOR,
            root_offset: (reserved + 2 * fat_sectors) * SECTOR,
            heap: data_start * SECTOR,
        };
        img.set_fat(0, 0x0FFF_FFF8);
        img.set_fat(1, 0x0FFF_FFFF);
        if fat32 {
            img.set_fat(2, 0x0FFF_FFFF);
        }
        img
    }

    fn eoc(&self) -> u32 {
        match self.variant {
            Variant::Fat12 => 0xFFF,
            Variant::Fat16 => 0xFFFF,
            _ => 0x0FFF_FFFF,
        }
    }

    /// Writes FAT entry `cluster` in both FATs.
    fn set_fat(&mut self, cluster: u32, value: u32) {
        let c = cluster as usize;
        for copy in 0..2 {
            let base = self.fat_offset + copy * self.fat_bytes;
            match self.variant {
                Variant::Fat12 => {
                    let at = base + c + c / 2;
                    let old = u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]]);
                    let v = (value & 0xFFF) as u16;
                    let new = if c % 2 == 1 {
                        (old & 0x000F) | (v << 4)
                    } else {
                        (old & 0xF000) | v
                    };
                    self.bytes[at..at + 2].copy_from_slice(&new.to_le_bytes());
                }
                Variant::Fat16 => {
                    let at = base + c * 2;
                    self.bytes[at..at + 2].copy_from_slice(&(value as u16).to_le_bytes());
                }
                _ => {
                    let at = base + c * 4;
                    self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
        }
    }

    fn cluster(&self, c: u32) -> usize {
        self.heap + (c as usize - 2) * SECTOR
    }

    /// Stores `data` in `clusters` (one cluster each, in order) and chains them.
    fn put(&mut self, clusters: &[u32], data: &[u8]) {
        for (i, &c) in clusters.iter().enumerate() {
            let chunk = data.chunks(SECTOR).nth(i).unwrap_or(&[]);
            let at = self.cluster(c);
            self.bytes[at..at + chunk.len()].copy_from_slice(chunk);
            let next = clusters.get(i + 1).copied().unwrap_or(self.eoc());
            self.set_fat(c, next);
        }
    }

    /// Writes directory entries at byte `at`.
    fn entries(&mut self, at: usize, entries: &[[u8; 32]]) {
        for (i, e) in entries.iter().enumerate() {
            self.bytes[at + i * 32..at + i * 32 + 32].copy_from_slice(e);
        }
    }

    fn root(&self) -> usize {
        if self.variant == Variant::Fat32 {
            self.cluster(2)
        } else {
            self.root_offset
        }
    }
}

/// The standard FAT test volume: a label, a fragmented file, an empty file, a long-named
/// file and a subdirectory with one file.
fn fat_volume(variant: Variant, clusters: u32) -> (FatImg, Vec<u8>, Vec<u8>) {
    let mut img = FatImg::new(variant, clusters);
    let big = pattern(3 * SECTOR + 100, 7);
    let small = pattern(10, 1);
    // big.bin: clusters 10, 11, 20, 21 (two runs).
    img.put(&[10, 11, 20, 21], &big);
    img.put(&[30], &small);
    // The subdirectory: clusters 40 -> 41.
    img.put(&[40, 41], &[]);
    let long: Vec<u16> = "Long name é.txt".encode_utf16().collect();
    let mut root = vec![
        short(b"VOLUME     ", 0x08, 0, 0, 0),
        short(b"BIG     BIN", 0x20, 0, 10, big.len() as u32),
        short(b"EMPTY   TXT", 0x20, 0x18, 0, 0),
    ];
    root.extend(lfn(&long, b"LONGNA~1TXT"));
    root.push(short(b"LONGNA~1TXT", 0x20, 0, 30, small.len() as u32));
    root.push(short(b"SUB        ", 0x10, 0, 40, 0));
    let r = img.root();
    img.entries(r, &root);
    // The subdirectory: `.`, `..`, then deleted entries to the end of its first cluster; its
    // file sits in its second cluster, slot 16.
    let mut sub = vec![
        short(b".          ", 0x10, 0, 40, 0),
        short(b"..         ", 0x10, 0, 0, 0),
    ];
    sub.resize(16, short(b"\xe5OLD    TXT", 0x20, 0, 3, 1));
    let at = img.cluster(40);
    img.entries(at, &sub);
    img.put(&[50], &small);
    let at = img.cluster(41);
    img.entries(
        at,
        &[short(b"INNER   DAT", 0x20, 0, 50, small.len() as u32)],
    );
    (img, big, small)
}

fn check_fat_volume(variant: Variant, clusters: u32, fs_type: FsType) {
    let (img, big, small) = fat_volume(variant, clusters);
    let fs = ok(open(img.bytes.clone()));
    assert_eq!(fs.fs_type(), fs_type);
    assert_eq!(fs.label().as_deref(), Some("VOLUME"));
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    let root = ok(fs.read_dir(fs.root()));
    let names: Vec<_> = root.iter().map(|e| e.name.to_utf8()).collect();
    assert_eq!(
        names,
        ["BIG.BIN", "empty.txt", "Long name é.txt", "SUB"].map(|s| Some(s.to_string()))
    );
    let b = by_name(&root, "BIG.BIN");
    assert_eq!(
        (b.kind, b.size, b.parent),
        (EntryKind::File, big.len() as u64, 0)
    );
    assert_eq!(read_all(&fs, b.id), big);
    let heap = img.heap as u64;
    assert_eq!(
        ok(fs.extents(b.id)),
        vec![
            Extent {
                logical: 0,
                physical: heap + 8 * 512,
                length: 1024,
                kind: ExtentKind::Data
            },
            Extent {
                logical: 1024,
                physical: heap + 18 * 512,
                length: big.len() as u64 - 1024,
                kind: ExtentKind::Data
            }
        ]
    );
    let e = by_name(&root, "empty.txt");
    assert_eq!(read_all(&fs, e.id), Vec::<u8>::new());
    assert_eq!(ok(fs.extents(e.id)), vec![]);
    let l = by_name(&root, "Long name é.txt");
    assert_eq!(read_all(&fs, l.id), small);
    let sub = by_name(&root, "SUB");
    assert_eq!(sub.kind, EntryKind::Directory);
    let inner = ok(fs.read_dir(sub.id));
    assert_eq!(inner.len(), 1);
    assert_eq!(inner[0].parent, sub.id);
    assert_eq!(inner[0].id, (40u64 << 32) | 17);
    assert_eq!(read_all(&fs, inner[0].id), small);
    let t = inner[0].mtime.unwrap_or_else(|| panic!("no mtime"));
    assert_eq!((t.seconds, t.zone), (1_000_000_000, Zone::Unknown));
    // Ids are stable: another open of the same volume gives the same ones, and a fresh open
    // resolves an id without a walk.
    let again = ok(open(img.bytes.clone()));
    assert_eq!(ok(again.read_dir(again.root())), root);
    assert_eq!(read_all(&again, inner[0].id), small);
    // Wrong kinds.
    assert!(matches!(fs.read_dir(b.id), Err(FsError::WrongKind { .. })));
    assert!(matches!(
        fs.read(sub.id, 0, &mut [0u8; 4]),
        Err(FsError::WrongKind { .. })
    ));
    assert!(matches!(fs.read_link(b.id), Err(FsError::WrongKind { .. })));
    assert!(matches!(
        fs.read(b.id + 1000, 0, &mut [0u8; 4]),
        Err(FsError::WrongKind { .. })
    ));
    // Reads past the end and in the middle.
    let mut buf = [0u8; 8];
    assert_eq!(ok(fs.read(b.id, big.len() as u64 - 3, &mut buf)), 3);
    assert_eq!(&buf[..3], &big[big.len() - 3..]);
    assert_eq!(ok(fs.read(b.id, 1020, &mut buf)), 8);
    assert_eq!(&buf[..], &big[1020..1028]);
    assert_eq!(ok(fs.read(b.id, 1 << 40, &mut buf)), 0);
}

#[test]
fn fat12_volume_reads() {
    check_fat_volume(Variant::Fat12, 100, FsType::Fat12);
}

#[test]
fn fat16_volume_reads() {
    check_fat_volume(Variant::Fat16, 5000, FsType::Fat16);
}

#[test]
fn fat32_volume_reads() {
    check_fat_volume(Variant::Fat32, 100, FsType::Fat32);
}

#[test]
fn file_data_is_read_with_one_request_per_run() {
    let (img, big, _) = fat_volume(Variant::Fat32, 100);
    let source = Counting::new(img.bytes);
    let fs = ok(FatFs::open(source.clone()));
    let root = ok(fs.read_dir(fs.root()));
    let b = by_name(&root, "BIG.BIN");
    let before = source.reads();
    let mut buf = vec![0u8; 1 << 20];
    assert_eq!(ok(fs.read(b.id, 0, &mut buf)), big.len());
    assert_eq!(&buf[..big.len()], &big[..]);
    // Two runs: two reads, no FAT or directory reads.
    assert_eq!(source.reads() - before, 2);
}

#[test]
fn listing_is_parsed_once_per_directory() {
    // 600 one-cluster files in a FAT32 subdirectory of 600 × 32 bytes = 38 clusters.
    let mut img = FatImg::new(Variant::Fat32, 1000);
    let dir_clusters: Vec<u32> = (10..48).collect();
    img.put(&dir_clusters, &[]);
    let mut entries = Vec::new();
    for i in 0..600u32 {
        let c = 100 + i;
        img.put(&[c], &pattern(20, i as u8));
        let name = format!("F{i:<7}DAT");
        let mut raw = [0u8; 11];
        raw.copy_from_slice(name.as_bytes());
        entries.push(short(&raw, 0x20, 0, c, 20));
    }
    let at = img.cluster(10);
    // The directory's clusters are consecutive, so one write covers them.
    img.entries(at, &entries);
    let r = img.root();
    img.entries(r, &[short(b"MANY       ", 0x10, 0, 10, 0)]);
    let source = Counting::new(img.bytes);
    let fs = ok(FatFs::open(source.clone()));
    let many = by_name(&ok(fs.read_dir(fs.root())), "MANY");
    let listed = ok(fs.read_dir(many.id));
    assert_eq!(listed.len(), 600);
    let before = source.reads();
    for (i, e) in listed.iter().enumerate() {
        assert_eq!(read_all(&fs, e.id), pattern(20, i as u8));
    }
    // One read per file: the directory is not read again.
    assert_eq!(source.reads() - before, 600);
}

#[test]
fn one_corrupt_boot_field_one_error() {
    let (img, _, _) = fat_volume(Variant::Fat32, 100);
    let cases: [(usize, &[u8], &str); 5] = [
        (
            11,
            &[0xF4, 0x01],
            "mem.img: corrupt boot sector: bytes per sector 500 (expected 512, 1024, 2048 or \
             4096) at byte offset 11",
        ),
        (
            13,
            &[3],
            "mem.img: corrupt boot sector: sectors per cluster 3 (expected a power of two) at \
             byte offset 13",
        ),
        (
            16,
            &[0],
            "mem.img: corrupt boot sector: number of FATs 0 at byte offset 16",
        ),
        (
            44,
            &[200, 0, 0, 0],
            "mem.img: corrupt boot sector: root directory cluster 200 outside the volume's \
             clusters 2..=101 at byte offset 44",
        ),
        (
            32,
            &[10, 0, 0, 0],
            "mem.img: corrupt boot sector: total sector count 10 is smaller than the 34 \
             sectors before the data area at byte offset 19",
        ),
    ];
    for (at, bytes, want) in cases {
        let mut b = img.bytes.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        if at == 32 {
            // The count is in the 16-bit field for this small volume; move it.
            b[19..21].copy_from_slice(&[0, 0]);
        }
        assert_eq!(err(open(b)).to_string(), want);
    }
}

#[test]
fn fsinfo_is_only_advisory_and_dirty_volumes_warn() {
    let (mut img, big, _) = fat_volume(Variant::Fat32, 100);
    img.bytes[SECTOR] ^= 0xFF;
    let fs = ok(open(img.bytes.clone()));
    assert_eq!(
        fs.warnings(),
        vec!["FSInfo sector at byte offset 512 has bad signatures (ignored: it only holds hints)"]
    );
    let b = by_name(&ok(fs.read_dir(fs.root())), "BIG.BIN");
    assert_eq!(read_all(&fs, b.id), big);
    img.bytes[SECTOR] ^= 0xFF;
    img.set_fat(1, 0x07FF_FFFF);
    let fs = ok(open(img.bytes));
    assert_eq!(
        fs.warnings(),
        vec!["the FAT marks the volume as not cleanly unmounted"]
    );
}

#[test]
fn a_bad_chain_fails_that_file_only() {
    let (mut img, _, small) = fat_volume(Variant::Fat16, 5000);
    // BIG.BIN's chain 10 -> 11 -> 20 -> 21: make 11 point back to 10.
    img.set_fat(11, 10);
    let fs = ok(open(img.bytes.clone()));
    let root = ok(fs.read_dir(fs.root()));
    let b = by_name(&root, "BIG.BIN");
    let fat_entry_11 = img.fat_offset as u64 + 22;
    assert_eq!(
        err(fs.read(b.id, 0, &mut [0u8; 4])).to_string(),
        format!(
            "mem.img: corrupt cluster chain from cluster 10 loops back to cluster 10 at byte \
             offset {}",
            fat_entry_11 - 2
        )
    );
    let l = by_name(&root, "Long name é.txt");
    assert_eq!(read_all(&fs, l.id), small);
    // A free cluster inside the chain.
    img.set_fat(11, 0);
    let fs = ok(open(img.bytes.clone()));
    let e = err(fs.extents(b.id));
    assert!(
        matches!(&e, FsError::Corrupt { offset, what, .. }
            if *offset == fat_entry_11 && what.contains("a free cluster (raw value 0x0")),
        "{e}"
    );
    // A size larger than the chain.
    img.set_fat(11, 0xFFFF);
    let fs = ok(open(img.bytes.clone()));
    assert!(err(fs.extents(b.id))
        .to_string()
        .contains("ends after 2 clusters at cluster 11; the entry needs 4"));
    // A directory whose chain loops.
    img.set_fat(41, 40);
    let fs = ok(open(img.bytes));
    let sub = by_name(&ok(fs.read_dir(fs.root())), "SUB");
    assert!(err(fs.read_dir(sub.id)).to_string().contains("loops back"));
}

#[test]
fn a_cyclic_directory_tree_is_walked_to_an_end() {
    let (mut img, _, _) = fat_volume(Variant::Fat32, 100);
    // SUB's second cluster lists SUB itself again.
    let at = img.cluster(41) + 32;
    img.entries(at, &[short(b"AGAIN      ", 0x10, 0, 40, 0)]);
    let fs = ok(open(img.bytes));
    let w = crate::fs::walk::walk(&fs, crate::fs::walk::Limits::default());
    assert!(w.entries.len() < 20, "{}", w.entries.len());
    assert!(w
        .problems
        .iter()
        .any(|p| matches!(p, crate::fs::walk::WalkProblem::Cycle { .. })));
}

/// An exFAT image in memory: 512-byte sectors and clusters, one FAT, root at cluster 2,
/// allocation bitmap at 3, up-case table at 4.
struct ExImg {
    bytes: Vec<u8>,
    heap: usize,
    fat: usize,
}

const EX_CLUSTERS: u32 = 200;

impl ExImg {
    fn new() -> Self {
        let fat_sectors = ((EX_CLUSTERS as usize + 2) * 4).div_ceil(SECTOR);
        let heap_sector = 24 + fat_sectors;
        let total = heap_sector + EX_CLUSTERS as usize;
        let mut b = vec![0u8; total * SECTOR];
        b[0..3].copy_from_slice(&[0xEB, 0x76, 0x90]);
        b[3..11].copy_from_slice(b"EXFAT   ");
        b[72..80].copy_from_slice(&(total as u64).to_le_bytes());
        b[80..84].copy_from_slice(&24u32.to_le_bytes());
        b[84..88].copy_from_slice(&(fat_sectors as u32).to_le_bytes());
        b[88..92].copy_from_slice(&(heap_sector as u32).to_le_bytes());
        b[92..96].copy_from_slice(&EX_CLUSTERS.to_le_bytes());
        b[96..100].copy_from_slice(&2u32.to_le_bytes());
        b[104..106].copy_from_slice(&0x0100u16.to_le_bytes());
        b[108] = 9;
        b[109] = 0;
        b[110] = 1;
        b[510] = 0x55;
        b[511] = 0xAA;
        let mut img = Self {
            bytes: b,
            heap: heap_sector * SECTOR,
            fat: 24 * SECTOR,
        };
        img.set_fat(0, 0xFFFF_FFF8);
        img.set_fat(1, 0xFFFF_FFFF);
        img
    }

    /// Writes the boot checksum and copies the main boot region to the backup.
    fn seal(&mut self) {
        let sum = super::boot::tests::checksum(&self.bytes[..12 * SECTOR]);
        for k in 0..SECTOR / 4 {
            let at = 11 * SECTOR + 4 * k;
            self.bytes[at..at + 4].copy_from_slice(&sum.to_le_bytes());
        }
        let (main, rest) = self.bytes.split_at_mut(12 * SECTOR);
        rest[..12 * SECTOR].copy_from_slice(main);
    }

    fn set_fat(&mut self, cluster: u32, value: u32) {
        let at = self.fat + cluster as usize * 4;
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn cluster(&self, c: u32) -> usize {
        self.heap + (c as usize - 2) * SECTOR
    }

    /// Stores `data` from cluster `first` on, contiguous; chained in the FAT when `chain`.
    fn put(&mut self, clusters: &[u32], data: &[u8], chain: bool) {
        for (i, &c) in clusters.iter().enumerate() {
            let chunk = data.chunks(SECTOR).nth(i).unwrap_or(&[]);
            let at = self.cluster(c);
            self.bytes[at..at + chunk.len()].copy_from_slice(chunk);
            if chain {
                let next = clusters.get(i + 1).copied().unwrap_or(0xFFFF_FFFF);
                self.set_fat(c, next);
            }
        }
    }
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// The standard exFAT test volume.
fn exfat_volume() -> (ExImg, Vec<u8>, Vec<u8>) {
    let mut img = ExImg::new();
    let big = pattern(3 * SECTOR + 100, 3);
    let small = pattern(700, 9);
    // Root directory: clusters 2 -> 5 (chained).
    img.put(&[2, 5], &[], true);
    img.set_fat(3, 0xFFFF_FFFF);
    img.set_fat(4, 0xFFFF_FFFF);
    // contiguous.bin: NoFatChain, clusters 10..=13.
    img.put(&[10, 11, 12, 13], &big, false);
    // chained.bin: clusters 20, 21, 30, 31.
    img.put(&[20, 21, 30, 31], &big, true);
    // partial.bin: 700 valid bytes of 2000, contiguous in 40..=43.
    img.put(&[40, 41], &small, false);
    // sub: a contiguous directory in clusters 50..=51 holding one file (cluster 60).
    img.put(&[60, 61], &small, false);
    let emoji = utf16("abcdefghijklmn😀.txt");
    let mut bitmap = vec![0u8; 32];
    bitmap[0] = 0x81;
    bitmap[20..24].copy_from_slice(&3u32.to_le_bytes());
    bitmap[24..32].copy_from_slice(&25u64.to_le_bytes());
    let mut upcase = vec![0u8; 32];
    upcase[0] = 0x82;
    upcase[20..24].copy_from_slice(&4u32.to_le_bytes());
    upcase[24..32].copy_from_slice(&128u64.to_le_bytes());
    let n = big.len() as u64;
    let root = [
        exfat_label("Photos 📷"),
        bitmap,
        upcase,
        exfat_set(&utf16("contiguous.bin"), 0x20, 3, 10, n, n),
        exfat_set(&utf16("chained.bin"), 0x20, 1, 20, n, n),
        exfat_set(&utf16("partial.bin"), 0x20, 3, 40, 700, 2000),
        exfat_set(&utf16("empty"), 0x20, 0, 0, 0, 0),
        exfat_set(&emoji, 0x20, 3, 60, 700, 700),
        exfat_set(&utf16("sub"), 0x10, 3, 50, 1024, 1024),
    ]
    .concat();
    // The root's entries fill its first cluster and spill into the second (cluster 5).
    assert!(root.len() > SECTOR);
    let (a, b) = root.split_at(SECTOR);
    let at = img.cluster(2);
    img.bytes[at..at + SECTOR].copy_from_slice(a);
    let at = img.cluster(5);
    img.bytes[at..at + b.len()].copy_from_slice(b);
    // sub's content: deleted entries in its first cluster, one entry set in its second.
    let at = img.cluster(50);
    for k in 0..16 {
        img.bytes[at + 32 * k] = 0x05;
    }
    let inner = exfat_set(&utf16("inner.dat"), 0x20, 3, 60, 700, 700);
    let at = img.cluster(51);
    img.bytes[at..at + inner.len()].copy_from_slice(&inner);
    img.seal();
    (img, big, small)
}

#[test]
fn exfat_volume_reads() {
    let (img, big, small) = exfat_volume();
    let fs = ok(open(img.bytes.clone()));
    assert_eq!(fs.fs_type(), FsType::ExFat);
    assert_eq!(fs.label().as_deref(), Some("Photos 📷"));
    assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
    let root = ok(fs.read_dir(fs.root()));
    let names: Vec<_> = root
        .iter()
        .map(|e| e.name.to_utf8().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "contiguous.bin",
            "chained.bin",
            "partial.bin",
            "empty",
            "abcdefghijklmn😀.txt",
            "sub"
        ]
    );
    let c = by_name(&root, "contiguous.bin");
    assert_eq!(read_all(&fs, c.id), big);
    assert_eq!(ok(fs.extents(c.id)).len(), 1);
    let ch = by_name(&root, "chained.bin");
    assert_eq!(read_all(&fs, ch.id), big);
    assert_eq!(ok(fs.extents(ch.id)).len(), 2);
    let p = by_name(&root, "partial.bin");
    assert_eq!(p.size, 2000);
    let mut want = small.clone();
    want.resize(2000, 0);
    assert_eq!(read_all(&fs, p.id), want);
    let heap = img.heap as u64;
    assert_eq!(
        ok(fs.extents(p.id)),
        vec![
            Extent {
                logical: 0,
                physical: heap + 38 * 512,
                length: 700,
                kind: ExtentKind::Data
            },
            Extent {
                logical: 700,
                physical: 0,
                length: 1300,
                kind: ExtentKind::Zero
            }
        ]
    );
    let e = by_name(&root, "empty");
    assert_eq!((e.size, read_all(&fs, e.id)), (0, vec![]));
    let t = c.mtime.unwrap_or_else(|| panic!("no mtime"));
    assert_eq!(
        (t.seconds, t.nanos, t.zone),
        (1_000_000_000 - 3600, 500_000_000, Zone::Utc)
    );
    let sub = by_name(&root, "sub");
    assert_eq!(sub.kind, EntryKind::Directory);
    let inner = ok(fs.read_dir(sub.id));
    assert_eq!(inner.len(), 1);
    assert_eq!(inner[0].id, (50u64 << 32) | 17);
    assert_eq!(read_all(&fs, inner[0].id), small);
    // A fresh open resolves an id of a nested entry without being walked first (sub's
    // length is only known from its parent, so the reader finds it).
    let again = ok(open(img.bytes.clone()));
    assert_eq!(read_all(&again, inner[0].id), small);
    assert_eq!(ok(again.read_dir(sub.id)), inner);
    // An id that names nothing: a miss after one scan of the tree.
    let fresh = ok(open(img.bytes));
    assert!(matches!(
        fresh.read((77u64 << 32) | 1, 0, &mut [0u8; 4]),
        Err(FsError::WrongKind { .. })
    ));
    assert!(matches!(
        fresh.read((77u64 << 32) | 1, 0, &mut [0u8; 4]),
        Err(FsError::WrongKind { .. })
    ));
}

#[test]
fn exfat_bad_entry_set_fails_that_entry_only() {
    let (mut img, big, _) = exfat_volume();
    // chained.bin's set starts after the label, bitmap, up-case and contiguous.bin's 3
    // entries: root entry 6. Flip a bit of its data length.
    let at = img.cluster(2) + 6 * 32 + 32 + 24;
    img.bytes[at] ^= 1;
    let fs = ok(open(img.bytes));
    let root = ok(fs.read_dir(fs.root()));
    assert_eq!(root.len(), 6);
    let ch = by_name(&root, "chained.bin");
    let e = err(fs.read(ch.id, 0, &mut [0u8; 4]));
    assert!(
        matches!(&e, FsError::Corrupt { offset, what, .. }
            if *offset == img.heap as u64 + 6 * 32
                && what.starts_with("exFAT entry set checksum")),
        "{e}"
    );
    let c = by_name(&root, "contiguous.bin");
    assert_eq!(read_all(&fs, c.id), big);
}

#[test]
fn exfat_backup_boot_region_is_used_when_the_main_one_is_corrupt() {
    let (mut img, big, _) = exfat_volume();
    img.bytes[100] ^= 0xFF;
    let fs = ok(open(img.bytes.clone()));
    assert_eq!(fs.warnings().len(), 1);
    assert!(fs.warnings()[0].starts_with(
        "the main exFAT boot region is unusable (mem.img: corrupt exFAT boot sector: boot \
         checksum"
    ));
    let c = by_name(&ok(fs.read_dir(fs.root())), "contiguous.bin");
    assert_eq!(read_all(&fs, c.id), big);
    // Both regions bad: the main region's error.
    img.bytes[12 * SECTOR + 100] ^= 0xFF;
    let e = err(open(img.bytes));
    assert!(
        matches!(&e, FsError::Corrupt { offset: 5632, what, .. } if what.contains("boot checksum")),
        "{e}"
    );
}

#[test]
fn one_corrupt_exfat_field_one_error() {
    let cases: [(usize, &[u8], &str); 4] = [
        (
            108,
            &[8],
            "mem.img: corrupt exFAT boot sector: bytes-per-sector shift 8 (expected 9..=12) at \
             byte offset 108",
        ),
        (
            110,
            &[3],
            "mem.img: corrupt exFAT boot sector: number of FATs 3 (expected 1 or 2) at byte \
             offset 110",
        ),
        (
            96,
            &[250, 0, 0, 0],
            "mem.img: corrupt exFAT boot sector: root directory cluster 250 outside the \
             volume's clusters 2..=201 at byte offset 96",
        ),
        (
            92,
            &[0, 1, 0, 0],
            "mem.img: corrupt exFAT boot sector: cluster count 256 does not fit the volume \
             (226 sectors, heap from sector 26) at byte offset 92",
        ),
    ];
    for (at, bytes, want) in cases {
        let (mut img, _, _) = exfat_volume();
        img.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        // Re-seal so only the field is wrong, and spoil the backup so it is not used.
        img.seal();
        img.bytes[12 * SECTOR + 3] = 0;
        assert_eq!(err(open(img.bytes)).to_string(), want);
    }
    // A chain link to a bad cluster.
    let (mut img, _, _) = exfat_volume();
    img.set_fat(21, 0xFFFF_FFF7);
    let fs = ok(open(img.bytes.clone()));
    let ch = by_name(&ok(fs.read_dir(fs.root())), "chained.bin");
    assert_eq!(
        err(fs.read(ch.id, 0, &mut [0u8; 4])).to_string(),
        format!(
            "mem.img: corrupt FAT entry of cluster 21: links to a cluster marked bad (raw value \
             0xfffffff7, the volume has clusters 2..=201) at byte offset {}",
            img.fat + 21 * 4
        )
    );
    // A contiguous file running past the last cluster.
    let (mut img, _, _) = exfat_volume();
    let at = img.cluster(2) + 3 * 32 + 32 + 20;
    img.bytes[at..at + 4].copy_from_slice(&199u32.to_le_bytes());
    let sum_at = img.cluster(2) + 3 * 32;
    let set_bytes = img.bytes[sum_at..sum_at + 3 * 32].to_vec();
    let sum = super::exfat::set_checksum(&set_bytes);
    img.bytes[sum_at + 2..sum_at + 4].copy_from_slice(&sum.to_le_bytes());
    let fs = ok(open(img.bytes));
    let c = by_name(&ok(fs.read_dir(fs.root())), "contiguous.bin");
    assert!(err(fs.extents(c.id))
        .to_string()
        .contains("contiguous allocation of 4 clusters from cluster 199 outside"));
}

#[test]
fn exfat_dirty_flag_warns() {
    let (mut img, _, _) = exfat_volume();
    img.bytes[106] |= 2;
    // VolumeFlags are outside the checksum.
    let fs = ok(open(img.bytes));
    assert_eq!(
        fs.warnings(),
        vec!["the exFAT volume is marked dirty (not cleanly unmounted)"]
    );
}

#[test]
fn garbage_is_refused_without_panicking() {
    for len in [0usize, 100, 512, 4096] {
        let r = open(vec![0u8; len]);
        assert!(r.is_err());
    }
    let mut b = vec![0xFFu8; 64 * 1024];
    b[3..11].copy_from_slice(b"EXFAT   ");
    assert!(open(b).is_err());
}
