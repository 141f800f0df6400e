//! `stationctl inspect` on the GPT disk `hw-fixtures/disk-gpt.sh` builds: the table listing,
//! and `--files --partition N` against `md5sum` and `lstat` of partition N's source tree.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helper::stationctl;

/// Runs `hw-fixtures/<script> OUTDIR args...` into a new temporary directory.
fn build(script: &str, args: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hw-fixtures")
        .join(script);
    let out = Command::new(&path)
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The contract's escaping, written independently of `station::inspect`: printable UTF-8 as
/// is, a backslash, control characters and invalid bytes as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => {
                let (v, _) = rest.split_at(e.valid_up_to());
                let bad = e.error_len().unwrap_or(rest.len() - e.valid_up_to());
                (std::str::from_utf8(v).unwrap_or_default(), bad)
            }
        };
        for c in valid.chars() {
            if c == '\\' || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        let bad_start = valid.len();
        for b in &rest[bad_start..bad_start + bad] {
            out.push_str(&format!("\\x{b:02x}"));
        }
        rest = &rest[bad_start + bad..];
    }
    out
}

/// `md5sum -z` of every regular file under `root`, by path relative to it.
fn md5sums(root: &Path, files: &[PathBuf]) -> BTreeMap<Vec<u8>, String> {
    if files.is_empty() {
        return BTreeMap::new();
    }
    let out = Command::new("md5sum")
        .arg("-z")
        .arg("--")
        .args(files)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("md5sum: {e}"));
    assert!(out.status.success(), "md5sum failed");
    out.stdout
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| {
            // "<32 hex>  <name>"
            let (hash, name) = r.split_at(32);
            (
                name[2..].to_vec(),
                String::from_utf8_lossy(hash).into_owned(),
            )
        })
        .collect()
}

/// The lines `stationctl inspect --files` must print for the tree at `root`, sorted.
fn expected_listing(root: &Path) -> Vec<String> {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{dir:?}: {e}")).path();
            let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{e}"));
            let rel = path
                .strip_prefix(root)
                .unwrap_or_else(|e| panic!("{e}"))
                .to_path_buf();
            let ft = meta.file_type();
            let (kind, size) = if ft.is_dir() {
                stack.push(path.clone());
                ("dir", 0)
            } else if ft.is_file() {
                files.push(rel.clone());
                ("file", meta.len())
            } else if ft.is_symlink() {
                ("symlink", meta.len())
            } else if ft.is_fifo() {
                ("fifo", 0)
            } else if ft.is_socket() {
                ("socket", 0)
            } else if ft.is_block_device() {
                ("blockdev", 0)
            } else {
                ("chardev", 0)
            };
            entries.push((rel, kind, size, meta.mtime()));
        }
    }
    let sums = md5sums(root, &files);
    let mut lines: Vec<String> = entries
        .into_iter()
        .map(|(rel, kind, size, mtime)| {
            let bytes = rel.as_os_str().as_bytes();
            let md5 = if kind == "file" {
                sums.get(bytes)
                    .unwrap_or_else(|| panic!("no md5sum for {rel:?}"))
                    .clone()
            } else {
                "-".to_owned()
            };
            format!("{md5} {size} {mtime} {kind} {}", escape(bytes))
        })
        .collect();
    lines.sort_by(|a, b| path_of(a).as_bytes().cmp(path_of(b).as_bytes()));
    lines
}

/// The path field: everything after the fourth space.
fn path_of(line: &str) -> &str {
    line.splitn(5, ' ').nth(4).unwrap_or("")
}

/// The listing minus what mkfs.ext* adds to every volume (`lost+found`).
fn listing_without_lost_found(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| path_of(l) != "lost+found")
        .map(str::to_owned)
        .collect()
}

#[test]
fn inspect_lists_the_gpt_table_with_filesystems_and_labels() {
    let fx = build("disk-gpt.sh", &[]);
    let img = fx.path().join("disk-gpt.img");
    let img_s = img.display().to_string();
    let run = stationctl(&["inspect", &img_s], b"");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let fdisk = Command::new("fdisk")
        .args(["-l", "-o", "Device,Start,Sectors", &img_s])
        .output()
        .unwrap_or_else(|e| panic!("fdisk: {e}"));
    let layout: Vec<(u64, u64)> = String::from_utf8_lossy(&fdisk.stdout)
        .lines()
        .filter(|l| l.starts_with(&img_s))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .map(|n| n.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
                .collect();
            (f[0] * 512, f[1] * 512)
        })
        .collect();
    assert_eq!(layout.len(), 3);
    let mut want = vec![
        format!("device {img_s}: 67108864 bytes (64.0 MiB), image file"),
        String::new(), // the table line, checked below (its disk GUID is random)
    ];
    for (i, (fs, name)) in [("EXT4", "alpha"), ("EXT3", "beta"), ("EXT2", "gamma")]
        .iter()
        .enumerate()
    {
        let (start, size) = layout[i];
        want.push(format!(
            "partition {}: start {start}, size {size} ({:.1} MiB), type \"Linux filesystem\", \
             name \"{name}\", filesystem {fs}, label \"{name}\"",
            i + 1,
            size as f64 / 1048576.0
        ));
    }
    let mut got: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    assert!(
        got.get(1).is_some_and(
            |l| l.starts_with("table gpt, sector size 512, 3 partition(s), disk GUID ")
        ),
        "{}",
        run.stdout
    );
    if let Some(l) = got.get_mut(1) {
        l.clear();
    }
    assert_eq!(got, want);
}

#[test]
fn inspect_files_of_each_gpt_partition_match_md5sum_of_its_source_tree() {
    let fx = build("disk-gpt.sh", &[]);
    let img = fx.path().join("disk-gpt.img").display().to_string();
    for n in 1..=3 {
        let run = stationctl(
            &["inspect", &img, "--files", "--partition", &n.to_string()],
            b"",
        );
        assert_eq!(run.code, Some(0), "partition {n}: {}", run.stderr);
        assert_eq!(run.stderr, "", "partition {n}");
        let want = expected_listing(&fx.path().join(format!("src-p{n}")));
        assert_eq!(
            listing_without_lost_found(&run.stdout),
            want,
            "partition {n}"
        );
        // The escaping of the two awkward names, spelled out.
        assert!(run.stdout.contains(" file bad_\\xff\\xfe_caf\\xe9\n"));
        assert!(run.stdout.contains(" file back\\x5cslash.txt\n"));
        // lost+found is listed as what it is.
        assert!(run
            .stdout
            .lines()
            .any(|l| l.starts_with("- 0 ") && l.ends_with(" dir lost+found")));
    }
}

#[test]
fn inspect_files_needs_a_partition_when_several_hold_filesystems() {
    let fx = build("disk-gpt.sh", &[]);
    let img = fx.path().join("disk-gpt.img").display().to_string();
    let run = stationctl(&["inspect", &img, "--files"], b"");
    assert_eq!(run.code, Some(2));
    assert_eq!(run.stdout, "");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            format!(
                "stationctl: {img}: 3 partitions hold filesystems; choose one with --partition N:"
            )
            .as_str()
        )
    );
    assert_eq!(lines.len(), 4, "{}", run.stderr);
    assert!(lines[1].starts_with("partition 1: start 1048576, "));
    let run = stationctl(&["inspect", &img, "--files", "--partition", "4"], b"");
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "stationctl: {img}: there is no partition 4: the table (gpt) has 3 partition(s), \
             numbered from 1"
        )
    );
}

#[test]
fn a_corrupt_directory_is_reported_and_the_rest_is_listed_with_exit_code_1() {
    let fx = build("disk-gpt.sh", &[]);
    let img = fx.path().join("disk-gpt.img");
    let img_s = img.display().to_string();
    // Partition 1 starts at 1 MiB (the script's layout); debugfs reads it in place.
    let at = 1u64 << 20;
    let out = Command::new("debugfs")
        .args(["-R", "blocks /docs/deep", &format!("{img_s}?offset={at}")])
        .output()
        .unwrap_or_else(|e| panic!("debugfs: {e}"));
    let block: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("debugfs: {}", String::from_utf8_lossy(&out.stderr)));
    // The fixture's ext4 uses 1 KiB blocks (mke2fs's "small" type).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::FileExt::write_all_at(&file, &[0xA5; 1024], at + block * 1024)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = stationctl(&["inspect", &img_s, "--files", "--partition", "1"], b"");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "{img_s} partition 1: docs/deep: directory not listed: "
        )),
        "{}",
        run.stderr
    );
    // Everything outside docs/deep is still listed.
    let want: Vec<String> = expected_listing(&fx.path().join("src-p1"))
        .into_iter()
        .filter(|l| !path_of(l).starts_with("docs/deep/"))
        .collect();
    assert_eq!(listing_without_lost_found(&run.stdout), want);
}
