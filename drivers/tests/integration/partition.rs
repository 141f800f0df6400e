//! Partition tables of the disks `hw-fixtures/disk-gpt.sh` and `disk-mbr.sh` build, checked
//! against sfdisk / fdisk and blkid, through image files and (as root, `loop_` tests) a real
//! loop device.

use std::path::{Path, PathBuf};
use std::process::Command;

use drivers::block::{AlignedBuf, BlockDevice};
use drivers::fs::FsType;
use drivers::partition::{Corrupt, PartitionError, PartitionTable, Scheme};
use drivers::probe::probe;
use drivers::source::{ImageFile, ReadAt};

use crate::helper::build;

/// One partition as an external tool lists it, in sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    node: String,
    start: u64,
    size: u64,
    kind: String,
    name: Option<String>,
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// The value of `"key": value` on a line of sfdisk's JSON (one field per line).
fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim().strip_prefix(&format!("\"{key}\":"))?;
    Some(rest.trim().trim_end_matches(',').trim_matches('"'))
}

/// `sfdisk --json IMG`: the sector size and the partitions, extended containers included.
fn sfdisk_json(img: &Path) -> (u64, Vec<Listed>) {
    let text = run("sfdisk", &["--json", &img.display().to_string()]);
    let mut sector_size = 0;
    let mut parts: Vec<Listed> = Vec::new();
    let number = |v: &str| {
        v.parse::<u64>()
            .unwrap_or_else(|e| panic!("sfdisk --json: {v:?}: {e}"))
    };
    for line in text.lines() {
        if let Some(v) = json_field(line, "sectorsize") {
            sector_size = number(v);
        } else if let Some(v) = json_field(line, "node") {
            parts.push(Listed {
                node: v.to_owned(),
                start: 0,
                size: 0,
                kind: String::new(),
                name: None,
            });
        } else if let Some(last) = parts.last_mut() {
            if let Some(v) = json_field(line, "start") {
                last.start = number(v);
            } else if let Some(v) = json_field(line, "size") {
                last.size = number(v);
            } else if let Some(v) = json_field(line, "type") {
                v.clone_into(&mut last.kind);
            } else if let Some(v) = json_field(line, "name") {
                last.name = Some(v.to_owned());
            }
        }
    }
    assert!(sector_size > 0, "no sectorsize in sfdisk --json:\n{text}");
    (sector_size, parts)
}

/// `fdisk -b SS -l IMG`, for sector sizes sfdisk 2.38 cannot be told about.
fn fdisk_list(img: &Path, sector_size: u32) -> Vec<Listed> {
    let path = img.display().to_string();
    let text = run(
        "fdisk",
        &[
            "-b",
            &sector_size.to_string(),
            "-l",
            "-o",
            "Device,Start,Sectors,Name",
            &path,
        ],
    );
    text.lines()
        .filter(|l| l.starts_with(&path))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| {
                f[i].parse::<u64>()
                    .unwrap_or_else(|e| panic!("fdisk: {l:?}: {e}"))
            };
            Listed {
                node: f[0].to_owned(),
                start: n(1),
                size: n(2),
                kind: String::new(),
                name: f.get(3).map(|s| (*s).to_owned()),
            }
        })
        .collect()
}

/// `blkid -p -O OFFSET IMG`: the filesystem TYPE and LABEL blkid sees at a byte offset.
fn blkid(img: &Path, offset: u64) -> (String, Option<String>) {
    let text = run(
        "blkid",
        &[
            "-p",
            "-o",
            "export",
            "-O",
            &offset.to_string(),
            &img.display().to_string(),
        ],
    );
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    };
    (
        get("TYPE").unwrap_or_else(|| panic!("blkid found no TYPE:\n{text}")),
        get("LABEL"),
    )
}

fn open(img: &Path) -> BlockDevice {
    BlockDevice::open(img).unwrap_or_else(|e| panic!("{e}"))
}

fn table(source: &dyn ReadAt, sector_size: Option<u32>) -> PartitionTable {
    PartitionTable::read(source, sector_size).unwrap_or_else(|e| panic!("{e}"))
}

/// Our view: (start, size) in sectors of `ss`, name.
fn ours(t: &PartitionTable, ss: u64) -> Vec<(u64, u64, Option<String>)> {
    t.partitions
        .iter()
        .map(|p| {
            assert_eq!(p.start_bytes % ss, 0);
            assert_eq!(p.size_bytes % ss, 0);
            (p.start_bytes / ss, p.size_bytes / ss, p.name.clone())
        })
        .collect()
}

fn theirs(listed: &[Listed]) -> Vec<(u64, u64, Option<String>)> {
    listed
        .iter()
        .map(|l| (l.start, l.size, l.name.clone()))
        .collect()
}

/// Every partition's filesystem as our probe sees it and as blkid does.
fn assert_probe_matches_blkid(img: &Path, t: &PartitionTable, want: &[(FsType, &str)]) {
    let dev = open(img);
    let mut got = Vec::new();
    for p in &t.partitions {
        let slice = t.slice(&dev, p.number).unwrap_or_else(|e| panic!("{e}"));
        let d = probe(&slice)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("partition {}: unknown filesystem", p.number));
        let (blkid_type, blkid_label) = blkid(img, p.start_bytes);
        assert_eq!(
            d.fs_type.as_str().to_lowercase(),
            blkid_type,
            "partition {}",
            p.number
        );
        assert_eq!(d.label, blkid_label, "partition {}", p.number);
        got.push((d.fs_type, d.label.unwrap_or_default()));
    }
    let want: Vec<(FsType, String)> = want.iter().map(|(t, l)| (*t, (*l).to_owned())).collect();
    assert_eq!(got, want);
}

#[test]
fn gpt_fixture_matches_sfdisk_and_blkid() {
    let fx = build("disk-gpt.sh", &[]);
    let img = fx.path("disk-gpt.img");
    let (ss, listed) = sfdisk_json(&img);
    assert_eq!(ss, 512);
    let t = table(&open(&img), None);
    assert_eq!(t.scheme, Scheme::Gpt);
    assert_eq!(t.sector_size, 512);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(listed.len(), 3);
    assert_eq!(ours(&t, ss), theirs(&listed));
    let numbers: Vec<(u32, u32)> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.kernel_number))
        .collect();
    assert_eq!(numbers, vec![(1, 1), (2, 2), (3, 3)]);
    for (p, l) in t.partitions.iter().zip(&listed) {
        assert_eq!(p.type_description, "Linux filesystem");
        let drivers::partition::PartitionType::Gpt(guid) = p.partition_type else {
            panic!("{p:?}: not a GPT type");
        };
        assert_eq!(guid.to_string(), l.kind);
    }
    assert_probe_matches_blkid(
        &img,
        &t,
        &[
            (FsType::Ext4, "alpha"),
            (FsType::Ext3, "beta"),
            (FsType::Ext2, "gamma"),
        ],
    );
}

#[test]
fn gpt_fixture_with_4096_byte_sectors_matches_fdisk() {
    let fx = build("disk-gpt.sh", &["4096"]);
    let img = fx.path("disk-gpt.img");
    let listed = fdisk_list(&img, 4096);
    assert_eq!(listed.len(), 3);
    // An image does not say its sector size: the GPT header at byte 4096 does.
    let t = table(&open(&img), None);
    assert_eq!((t.scheme, t.sector_size), (Scheme::Gpt, 4096));
    assert_eq!(ours(&t, 4096), theirs(&listed));
    // Told the wrong size, the protective MBR leads to no GPT at LBA 1 or at the last LBA.
    let e = PartitionTable::read(&open(&img), Some(512)).err();
    assert!(
        matches!(
            e,
            Some(PartitionError::Corrupt {
                kind: Corrupt::NoValidGpt { .. },
                ..
            })
        ),
        "{e:?}"
    );
    assert_probe_matches_blkid(
        &img,
        &t,
        &[
            (FsType::Ext4, "alpha"),
            (FsType::Ext3, "beta"),
            (FsType::Ext2, "gamma"),
        ],
    );
}

#[test]
fn mbr_fixture_with_logical_partitions_matches_sfdisk_and_blkid() {
    let fx = build("disk-mbr.sh", &[]);
    let img = fx.path("disk-mbr.img");
    let (ss, listed) = sfdisk_json(&img);
    // sfdisk lists the extended container too; our table counts only partitions with data.
    let data: Vec<Listed> = listed
        .iter()
        .filter(|l| !matches!(l.kind.as_str(), "5" | "f" | "85"))
        .cloned()
        .collect();
    assert_eq!(listed.len(), 4);
    assert_eq!(data.len(), 3);
    let t = table(&open(&img), None);
    assert_eq!(t.scheme, Scheme::Mbr);
    assert_eq!(ours(&t, ss), theirs(&data));
    // Linux's numbers are the node suffixes: img1, img5, img6.
    let kernel: Vec<String> = t
        .partitions
        .iter()
        .map(|p| format!("{}{}", img.display(), p.kernel_number))
        .collect();
    let nodes: Vec<String> = data.iter().map(|l| l.node.clone()).collect();
    assert_eq!(kernel, nodes);
    let flags: Vec<(u32, bool, bool, &str)> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.logical, p.bootable, p.type_description.as_str()))
        .collect();
    assert_eq!(
        flags,
        vec![
            (1, false, true, "Linux"),
            (2, true, false, "Linux"),
            (3, true, false, "Linux"),
        ]
    );
    assert_probe_matches_blkid(
        &img,
        &t,
        &[
            (FsType::Ext4, "one"),
            (FsType::Ext3, "five"),
            (FsType::Ext2, "six"),
        ],
    );
}

/// A copy of `img` with `bytes` written at `offset`.
fn corrupted_copy(img: &Path, edits: &[(u64, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let copy = dir.path().join("corrupt.img");
    std::fs::copy(img, &copy).unwrap_or_else(|e| panic!("{e}"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&copy)
        .unwrap_or_else(|e| panic!("{e}"));
    for (offset, bytes) in edits {
        std::os::unix::fs::FileExt::write_all_at(&file, bytes, *offset)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    (dir, copy)
}

#[test]
fn a_corrupt_primary_gpt_is_read_from_the_backup() {
    let fx = build("disk-gpt.sh", &[]);
    let img = fx.path("disk-gpt.img");
    let good = table(&open(&img), None);
    let (_, listed) = sfdisk_json(&img);
    let size = std::fs::metadata(&img)
        .unwrap_or_else(|e| panic!("{e}"))
        .len();
    // The header's disk GUID (covered by the header CRC), then the first entry's first LBA
    // (covered by the entry-array CRC).
    for (offset, what) in [
        (512 + 56, "GPT header CRC32"),
        (1024 + 32, "entry array CRC32"),
    ] {
        let (_dir, copy) = corrupted_copy(&img, &[(offset, b"\xde\xad")]);
        let t = table(
            &ImageFile::open(&copy).unwrap_or_else(|e| panic!("{e}")),
            None,
        );
        assert_eq!(t.partitions, good.partitions, "{what}");
        assert_eq!(ours(&t, 512), theirs(&listed));
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        let w = &t.warnings[0];
        assert!(
            w.starts_with("the primary GPT is corrupt at byte offset ")
                && w.contains(what)
                && w.ends_with(&format!(
                    "the table was read from the backup header at byte offset {}",
                    size - 512
                )),
            "{w}"
        );
    }
    // With the backup broken as well, nothing is guessed.
    let (_dir, copy) = corrupted_copy(&img, &[(512, b"XFI"), (size - 512, b"XFI")]);
    let e = PartitionTable::read(&open(&copy), None)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e,
        Some(format!(
            "{}: corrupt partition table at byte offset 512: no valid GPT: primary (byte offset \
             512): GPT header signature is \"XFI PART\", not \"EFI PART\"; backup (byte offset \
             {}): GPT header signature is \"XFI PART\", not \"EFI PART\"",
            copy.display(),
            size - 512
        ))
    );
}

/// A loop device, detached when dropped (also when the test fails).
struct Loop(String);

impl Loop {
    fn attach(img: &Path, sector_size: u32) -> Self {
        let out = run(
            "losetup",
            &[
                "--find",
                "--show",
                "--read-only",
                "--sector-size",
                &sector_size.to_string(),
                &img.display().to_string(),
            ],
        );
        Self(out.trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn loop_block_device_reports_size_sector_sizes_and_reads_like_the_image() {
    for ss in [512u32, 4096] {
        let fx = build("disk-gpt.sh", &[&ss.to_string()]);
        let img = fx.path("disk-gpt.img");
        let lo = Loop::attach(&img, ss);
        let dev = BlockDevice::open(Path::new(&lo.0)).unwrap_or_else(|e| panic!("{e}"));
        assert!(dev.is_block_device());
        assert!(dev.is_direct(), "{}: O_DIRECT refused", lo.0);
        assert_eq!(dev.size(), 64 << 20);
        assert_eq!(dev.logical_sector_size(), ss);
        assert!(
            dev.physical_sector_size() >= ss && dev.physical_sector_size().is_power_of_two(),
            "physical sector size {}",
            dev.physical_sector_size()
        );
        // The kernel's logical sector size, not a guess, reads the table.
        let t = table(&dev, Some(dev.logical_sector_size()));
        let from_image = table(&open(&img), None);
        assert_eq!(t, from_image);
        // Unaligned and large aligned reads through the device return the image's bytes.
        let file = ImageFile::open(&img).unwrap_or_else(|e| panic!("{e}"));
        let p1 = t.slice(&dev, 1).unwrap_or_else(|e| panic!("{e}"));
        let p1_file = t.slice(&file, 1).unwrap_or_else(|e| panic!("{e}"));
        for (offset, len) in [(1024u64, 1024usize), (1234, 1000), (4095, 9000)] {
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            p1.read_exact_at(offset, &mut a)
                .unwrap_or_else(|e| panic!("{e}"));
            p1_file
                .read_exact_at(offset, &mut b)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(a == b, "{ss}: {len} bytes at {offset} differ");
        }
        let (mut a, mut b) = (AlignedBuf::new(8 << 20), vec![0u8; 8 << 20]);
        dev.read_exact_at(1 << 20, &mut a)
            .unwrap_or_else(|e| panic!("{e}"));
        file.read_exact_at(1 << 20, &mut b)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(a[..] == b[..], "{ss}: 8 MiB aligned read differs");
        let e = dev
            .read_exact_at((64 << 20) - 10, &mut [0u8; 20])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!(
                "{}: cannot read 20 bytes at byte offset 67108854: the source ends at byte 67108864",
                lo.0
            ))
        );
    }
}
