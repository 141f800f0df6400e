//! `stationctl inspect` on the images `hw-fixtures/` builds: the GPT table listing, its
//! errors, and `--files [--partition N]` of every fixture (ext2, ext3, ext4, ext4 with more
//! features, FAT12/16/32, exFAT, every partition of the GPT and MBR disks) compared line by
//! line with `md5sum` and `lstat` of the source tree the image was made from.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// The characters the contract escapes besides controls: they change lines or direction.
fn reorders(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The contract's escaping, written independently of `station::inspect`: printable UTF-8 as
/// is; a backslash, control characters, the line- and direction-changing characters and
/// invalid bytes as `\xNN`.
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
            if c == '\\' || c.is_control() || reorders(c) {
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

/// One line of the `--files` listing: `md5 size mtime kind path`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    md5: String,
    size: u64,
    /// `None` for `-` (unknown).
    mtime: Option<i64>,
    kind: String,
    /// Escaped, as printed.
    path: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mtime = self.mtime.map_or_else(|| "-".to_owned(), |t| t.to_string());
        write!(
            f,
            "{} {} {mtime} {} {}",
            self.md5, self.size, self.kind, self.path
        )
    }
}

impl Line {
    /// Parses one printed line, checking the form of every field.
    fn parse(line: &str) -> Result<Self, String> {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        let [md5, size, mtime, kind, path] = fields[..] else {
            return Err(format!("not five fields: {line:?}"));
        };
        let bad = |what: &str| format!("{what}: {line:?}");
        let hex = md5.len() == 32 && md5.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if (kind == "file") != hex || (!hex && md5 != "-") {
            return Err(bad("the md5 field is wrong for the kind"));
        }
        const KINDS: [&str; 7] = [
            "file", "dir", "symlink", "blockdev", "chardev", "fifo", "socket",
        ];
        if !KINDS.contains(&kind) {
            return Err(bad("unknown kind"));
        }
        if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
            return Err(bad("bad path"));
        }
        Ok(Self {
            md5: md5.to_owned(),
            size: size.parse().map_err(|_| bad("bad size"))?,
            mtime: match mtime {
                "-" => None,
                t => Some(t.parse().map_err(|_| bad("bad mtime"))?),
            },
            kind: kind.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// What `md5sum` and `lstat` say of every entry under `root`, as the listing must print it
/// (mtimes as `lstat` gives them), sorted by the printed path.
fn source_listing(root: &Path) -> Vec<Line> {
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
    let mut lines: Vec<Line> = entries
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
            Line {
                md5,
                size,
                mtime: Some(mtime),
                kind: kind.to_owned(),
                path: escape(bytes),
            }
        })
        .collect();
    lines.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    lines
}

/// The filesystem an image holds, for what the listing keeps of the source tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fs {
    /// ext2/3/4: everything, mtimes to the second (UTC); mke2fs adds an empty `lost+found`.
    Ext,
    /// FAT12/16/32: local time with no zone and a 2-second resolution. The README's rule:
    /// the listing gives that local time read as UTC. mtools stores the source's local time
    /// rounded down to an even second, so the expected mtime is exactly that. (The FAT
    /// fixtures have no symlinks, FIFOs or devices: FAT cannot store them.)
    Fat,
    /// exFAT: 10 ms resolution and a UTC-offset field that exfat-fuse may leave unset (then
    /// the listing gives local time read as UTC): the mtime must be within 2 s of the
    /// source's, or of its local time read as UTC.
    ExFat,
}

/// The offset east of UTC, in seconds, of this machine's zone at each of `times`, from
/// `date` (which reads the same `TZ` mtools and exfat-fuse did when the fixture was built).
fn local_offsets(times: &[i64]) -> BTreeMap<i64, i64> {
    let mut times = times.to_vec();
    times.sort_unstable();
    times.dedup();
    if times.is_empty() {
        return BTreeMap::new();
    }
    let mut child = Command::new("date")
        .args(["-f", "-", "+%z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("date: {e}"));
    let input: String = times.iter().map(|t| format!("@{t}\n")).collect();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("date: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("date: {e}"));
    assert!(out.status.success(), "date -f - failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let offsets: Vec<i64> = text
        .lines()
        .map(|z| {
            // `+hhmm` or `-hhmm`
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: i64 = z[1..].parse().unwrap_or_else(|e| panic!("{z:?}: {e}"));
            sign * ((digits / 100) * 3600 + (digits % 100) * 60)
        })
        .collect();
    assert_eq!(offsets.len(), times.len(), "date: {text}");
    times.into_iter().zip(offsets).collect()
}

/// Compares the `--files` listing `stdout` with `want` (what [`source_listing`] gives),
/// line by line, with the differences `fs` is allowed, and fails with every difference.
fn assert_listing(what: &str, stdout: &str, want: Vec<Line>, fs: Fs) {
    let mut problems = Vec::new();
    let mut got = Vec::new();
    for line in stdout.lines() {
        match Line::parse(line) {
            Ok(l) => got.push(l),
            Err(e) => problems.push(e),
        }
    }
    for pair in got.windows(2) {
        if pair[0].path.as_bytes() >= pair[1].path.as_bytes() {
            problems.push(format!(
                "not sorted by path: {:?} before {:?}",
                pair[0].path, pair[1].path
            ));
        }
    }
    if fs == Fs::Ext {
        match got.iter().position(|l| l.path == "lost+found") {
            Some(i) => {
                let l = got.remove(i);
                if l.kind != "dir" || l.size != 0 || l.mtime.is_none() {
                    problems.push(format!("lost+found is not an empty directory: {l}"));
                }
            }
            None => problems.push("lost+found is not listed".to_owned()),
        }
    }
    let mut want = want;
    let offsets = match fs {
        Fs::Ext => BTreeMap::new(),
        Fs::Fat | Fs::ExFat => {
            let times: Vec<i64> = want.iter().filter_map(|l| l.mtime).collect();
            local_offsets(&times)
        }
    };
    if fs == Fs::Fat {
        for l in &mut want {
            l.mtime = l.mtime.map(|t| {
                let local = t + offsets[&t];
                local - local.rem_euclid(2)
            });
        }
    }
    let mtime_ok = |want: Option<i64>, got: Option<i64>| match (fs, want, got) {
        (Fs::ExFat, Some(w), Some(g)) => (g - w).abs() <= 2 || (g - (w + offsets[&w])).abs() <= 2,
        _ => want == got,
    };
    let by_path: BTreeMap<&str, &Line> = got.iter().map(|l| (l.path.as_str(), l)).collect();
    for w in &want {
        match by_path.get(w.path.as_str()) {
            None => problems.push(format!("missing: {w}")),
            Some(g) => {
                let same = g.md5 == w.md5
                    && g.size == w.size
                    && g.kind == w.kind
                    && mtime_ok(w.mtime, g.mtime);
                if !same {
                    problems.push(format!("{}:\n  want {w}\n  got  {g}", w.path));
                }
            }
        }
    }
    let wanted: BTreeMap<&str, ()> = want.iter().map(|l| (l.path.as_str(), ())).collect();
    for g in &got {
        if !wanted.contains_key(g.path.as_str()) {
            problems.push(format!("extra: {g}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} difference(s) from the source tree{}:\n{}",
        problems.len(),
        match fs {
            Fs::Ext => "",
            Fs::Fat => " (FAT mtimes: local time read as UTC, rounded down to even seconds)",
            Fs::ExFat => " (exFAT mtimes: within 2 s, UTC or local time read as UTC)",
        },
        problems.join("\n")
    );
}

/// Runs `stationctl inspect IMAGE --files [--partition N]`, checks that it read everything
/// (exit 0, nothing on stderr), and compares its listing with the tree at `src`.
fn assert_files_match_source(image: &Path, partition: Option<u32>, src: &Path, fs: Fs) -> String {
    let img = image.display().to_string();
    let mut args = vec!["inspect".to_owned(), img.clone(), "--files".to_owned()];
    if let Some(n) = partition {
        args.extend(["--partition".to_owned(), n.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let what = match partition {
        Some(n) => format!("{img} partition {n}"),
        None => img,
    };
    let run = stationctl(&args, b"");
    assert_eq!(run.code, Some(0), "{what}: {}", run.stderr);
    assert_eq!(run.stderr, "", "{what}");
    assert_listing(&what, &run.stdout, source_listing(src), fs);
    run.stdout
}

/// Builds `script args` and compares the `--files` listing of its `image` with its `src`.
fn fixture_matches_source(script: &str, args: &[&str], image: &str, fs: Fs) -> String {
    let fx = build(script, args);
    assert_files_match_source(&fx.path().join(image), None, &fx.path().join("src"), fs)
}

#[test]
fn inspect_files_of_ext2_match_md5sum_of_its_source_tree() {
    fixture_matches_source("ext.sh", &["ext2"], "ext2.img", Fs::Ext);
}

#[test]
fn inspect_files_of_ext3_match_md5sum_of_its_source_tree() {
    fixture_matches_source("ext.sh", &["ext3"], "ext3.img", Fs::Ext);
}

#[test]
fn inspect_files_of_ext4_match_md5sum_of_its_source_tree() {
    let listing = fixture_matches_source("ext.sh", &["ext4"], "ext4.img", Fs::Ext);
    // The times outside 1970..2038 and the non-UTF-8 name, spelled out.
    for line in [
        " -307584000 file old.txt",
        " -1 file a/b/c/d/e/deep.txt",
        " 4102444800 file far.txt",
        " -86400 dir a/b/c",
        " file bad_\\xff\\xfe_caf\\xe9",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(line)),
            "no line ends with {line:?}"
        );
    }
}

#[test]
fn inspect_files_of_ext4_with_inline_data_and_meta_bg_match_md5sum_of_its_source_tree() {
    fixture_matches_source("ext.sh", &["ext4-features"], "ext4-features.img", Fs::Ext);
}

#[test]
fn inspect_files_of_fat12_match_md5sum_of_its_source_tree() {
    fixture_matches_source("fat12.sh", &[], "fat12.img", Fs::Fat);
}

#[test]
fn inspect_files_of_fat16_match_md5sum_of_its_source_tree() {
    fixture_matches_source("fat16.sh", &[], "fat16.img", Fs::Fat);
}

#[test]
fn inspect_files_of_fat32_match_md5sum_of_its_source_tree() {
    let listing = fixture_matches_source("fat32.sh", &[], "fat32.img", Fs::Fat);
    // Wall-clock times the script set with `touch -d`, read back as UTC whatever the zone.
    for line in [
        " 1000000000 file README.TXT",
        " 486475200 file a/top.txt",
        " 2214172798 file big.bin",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(line)),
            "no line ends with {line:?}"
        );
    }
}

/// exFAT is filled through exfat-fuse on a loop device: root, `/dev/fuse`, a free loop device.
#[test]
fn loop_inspect_files_of_exfat_match_md5sum_of_its_source_tree() {
    let listing = fixture_matches_source("exfat.sh", &[], "exfat.img", Fs::ExFat);
    assert!(listing
        .lines()
        .any(|l| l.ends_with(" file dir 🎉/inside 😀.txt")));
}

#[test]
fn inspect_files_of_each_mbr_partition_match_md5sum_of_its_source_tree() {
    let fx = build("disk-mbr.sh", &[]);
    let img = fx.path().join("disk-mbr.img");
    // 1 is the primary, 2 and 3 the logical partitions (Linux's 5 and 6).
    for n in 1..=3 {
        assert_files_match_source(&img, Some(n), &fx.path().join(format!("src-p{n}")), Fs::Ext);
    }
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
    let img = fx.path().join("disk-gpt.img");
    for n in 1..=3 {
        let listing =
            assert_files_match_source(&img, Some(n), &fx.path().join(format!("src-p{n}")), Fs::Ext);
        // The escaping of the two awkward names, spelled out.
        assert!(listing.contains(" file bad_\\xff\\xfe_caf\\xe9\n"));
        assert!(listing.contains(" file back\\x5cslash.txt\n"));
        // lost+found is listed as what it is.
        assert!(listing
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
    let want: Vec<Line> = source_listing(&fx.path().join("src-p1"))
        .into_iter()
        .filter(|l| !l.path.starts_with("docs/deep/"))
        .collect();
    assert_listing("partition 1", &run.stdout, want, Fs::Ext);
}

/// The third-party TrueCrypt fixtures (`../shared/hw-fixtures/truecrypt`).
fn truecrypt_fixture(name: &str) -> PathBuf {
    std::env::var_os("STATION_SHARED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/hw-fixtures"))
        .join("truecrypt")
        .join(name)
}

#[test]
fn password_file_opens_truecrypt_volumes_and_containers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let password = dir.path().join("password");
    // As `echo` writes it: the newline is not part of the password.
    std::fs::write(&password, "aaaaaaaaaaaa\n").unwrap_or_else(|e| panic!("{e}"));
    let pw = password.display().to_string();
    let volume = truecrypt_fixture("tc_5-sha512-xts-aes");
    let run = stationctl(
        &[
            "inspect",
            &volume.display().to_string(),
            "--password-file",
            &pw,
        ],
        b"",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("TrueCrypt volume on"), "{}", run.stdout);
    let lower = run.stdout.to_ascii_lowercase();
    assert!(
        lower.contains("sha512") && lower.contains("aes in xts mode"),
        "{}",
        run.stdout
    );

    // A wrong password: exit 2 and a message that says what to check, never the password.
    std::fs::write(&password, "not the password").unwrap_or_else(|e| panic!("{e}"));
    let run = stationctl(
        &[
            "inspect",
            &volume.display().to_string(),
            "--password-file",
            &pw,
        ],
        b"",
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stderr.contains("no TrueCrypt header opened"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not the password"), "{}", run.stderr);

    // A container in a FAT filesystem, its files listed through the decrypting view.
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("report.txt"), b"quarterly numbers\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let disk = crate::helper::container_disk(dir.path(), &src, "s3cret", &["ABCDE.tc"]);
    std::fs::write(&password, "s3cret").unwrap_or_else(|e| panic!("{e}"));
    let run = stationctl(
        &[
            "inspect",
            &disk.display().to_string(),
            "--files",
            "--password-file",
            &pw,
        ],
        b"",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let line = run
        .stdout
        .lines()
        .find(|l| l.ends_with(" report.txt"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    // md5 of "quarterly numbers\n", 18 bytes.
    assert!(
        line.starts_with("f2b6df39099bb4eb5d30e7e7fa0e8ba6 18 "),
        "{line}"
    );
}
