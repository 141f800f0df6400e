//! Shared test helpers: build a fixture with its `hw-fixtures/` script, and compare what a
//! reader sees with the source tree the image was made from.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use drivers::fs::walk::{walk, Limits};
use drivers::fs::{EntryKind, FileSystem};
use drivers::source::{IoError, ReadAt};
use md5::{Digest, Md5};

/// A fixture built into a temporary directory: `dir/src` (the source tree, when the script
/// makes one) and the images the script writes.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// A file the script wrote, by name.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs `hw-fixtures/<script> OUTDIR [args]` and returns the output directory.
pub fn build(script: &str, args: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hw-fixtures")
        .join(script);
    let output = Command::new(&path)
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Fixture { dir }
}

/// What one entry looks like, for comparing a reader with the source tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub kind: &'static str,
    pub size: u64,
    /// MD5 of a file's content, hex; empty for other kinds.
    pub md5: String,
    /// Modification time in seconds since the epoch, when compared.
    pub mtime: Option<i64>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every entry under `root` (paths relative to it, `/`-separated raw bytes).
pub fn source_tree(root: &Path) -> BTreeMap<Vec<u8>, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("{dir:?}: {e}"));
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let rel = path
                .strip_prefix(root)
                .unwrap_or_else(|e| panic!("{e}"))
                .as_os_str()
                .as_bytes()
                .to_vec();
            let ft = meta.file_type();
            let (kind, size, md5) = if ft.is_dir() {
                stack.push(path.clone());
                ("dir", 0, String::new())
            } else if ft.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                ("file", meta.len(), hex(&Md5::digest(&bytes)))
            } else if ft.is_symlink() {
                ("symlink", 0, String::new())
            } else if ft.is_fifo() {
                ("fifo", 0, String::new())
            } else if ft.is_socket() {
                ("socket", 0, String::new())
            } else if ft.is_block_device() {
                ("blockdev", 0, String::new())
            } else {
                ("chardev", 0, String::new())
            };
            out.insert(
                rel,
                Seen {
                    kind,
                    size,
                    md5,
                    mtime: Some(meta.mtime()),
                },
            );
        }
    }
    out
}

/// Every entry a reader sees, files hashed through `FileSystem::read` in 1 MiB chunks.
pub fn reader_tree(fs: &dyn FileSystem) -> BTreeMap<Vec<u8>, Seen> {
    let walked = walk(fs, Limits::default());
    assert!(
        walked.problems.is_empty(),
        "walk problems: {:?}",
        walked.problems
    );
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    for w in walked.entries {
        let e = &w.entry;
        let (size, md5) = if e.kind == EntryKind::File {
            let mut hasher = Md5::new();
            let mut offset = 0u64;
            loop {
                let n = fs
                    .read(e.id, offset, &mut buf)
                    .unwrap_or_else(|err| panic!("{:?}: {err}", w.path_bytes()));
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            assert_eq!(
                offset,
                e.size,
                "{:?}: read {offset} of {} bytes",
                w.path_bytes(),
                e.size
            );
            (e.size, hex(&hasher.finalize()))
        } else {
            (0, String::new())
        };
        out.insert(
            w.path_bytes(),
            Seen {
                kind: e.kind.as_str(),
                size,
                md5,
                mtime: e.mtime.map(|t| t.seconds),
            },
        );
    }
    out
}

/// Asserts that the reader shows exactly the source tree. `compare_mtime` is off for
/// filesystems whose times are local or coarse (FAT's 2-second resolution).
pub fn assert_same_tree(
    source: &BTreeMap<Vec<u8>, Seen>,
    reader: &BTreeMap<Vec<u8>, Seen>,
    compare_mtime: bool,
) {
    let strip = |m: &BTreeMap<Vec<u8>, Seen>| -> BTreeMap<Vec<u8>, Seen> {
        m.iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                if !compare_mtime || v.kind == "symlink" {
                    v.mtime = None;
                }
                (k.clone(), v)
            })
            .collect()
    };
    let (source, reader) = (strip(source), strip(reader));
    let mut differences = Vec::new();
    for (path, want) in &source {
        match reader.get(path) {
            None => differences.push(format!("missing: {}", String::from_utf8_lossy(path))),
            Some(got) if got != want => differences.push(format!(
                "{}: want {want:?}, got {got:?}",
                String::from_utf8_lossy(path)
            )),
            Some(_) => {}
        }
    }
    for path in reader.keys() {
        if !source.contains_key(path) {
            differences.push(format!("extra: {}", String::from_utf8_lossy(path)));
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// An image in memory with some bytes changed (no copy of the whole image per run).
pub struct Flipped {
    pub base: Arc<Vec<u8>>,
    pub flips: BTreeMap<u64, u8>,
}

impl ReadAt for Flipped {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.base.len() as u64) {
            return Err(IoError::past_end(
                "flipped.img",
                offset,
                buf.len(),
                self.size(),
            ));
        }
        let start = offset as usize;
        buf.copy_from_slice(&self.base[start..start + buf.len()]);
        for (&at, &value) in self.flips.range(offset..offset + buf.len() as u64) {
            buf[(at - offset) as usize] = value;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.base.len() as u64
    }
    fn describe(&self) -> String {
        "flipped.img".into()
    }
}

/// A byte to flip for [`corrupted_runs`]: one time in eight in the boot sector, else in one of
/// `sectors` (byte offsets of 512-byte metadata sectors).
pub fn boot_or_metadata_byte(sectors: &[u64]) -> impl Fn(&mut Rng) -> u64 + '_ {
    move |rng: &mut Rng| {
        let sector = if rng.below(8) == 0 {
            0
        } else {
            sectors[rng.below(sectors.len() as u64) as usize]
        };
        sector + rng.below(512)
    }
}

/// Corrupts `base` `runs` times (1..=16 bytes flipped, each at the offset `pick` chooses) and
/// runs `exercise` on each corrupted image: every run must end, without a panic, within 30
/// seconds. Prints how the runs ended, by outcome.
pub fn corrupted_runs<O: Ord + std::fmt::Debug + Send + 'static>(
    base: &Arc<Vec<u8>>,
    name: &str,
    runs: u64,
    pick: impl Fn(&mut Rng) -> u64,
    exercise: fn(Arc<dyn ReadAt>) -> O,
) {
    use std::sync::mpsc;
    use std::time::Duration;
    let mut outcomes: BTreeMap<O, u64> = BTreeMap::new();
    for seed in 1..=runs {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut flips = BTreeMap::new();
        for _ in 0..=rng.below(16) {
            let at = pick(&mut rng);
            let old = base[at as usize];
            flips.insert(at, old ^ (1 + rng.below(255)) as u8);
        }
        let source = Arc::new(Flipped {
            base: base.clone(),
            flips: flips.clone(),
        });
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let _ = tx.send(exercise(source));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(outcome) => *outcomes.entry(outcome).or_default() += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name} seed {seed}: no end after 30 s (flips {flips:?})")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{name} seed {seed}: the reader panicked (flips {flips:?})")
            }
        }
        worker
            .join()
            .unwrap_or_else(|_| panic!("{name} seed {seed}: the reader panicked"));
    }
    eprintln!("{name}: {runs} corrupted runs: {outcomes:?}");
    assert_eq!(outcomes.values().sum::<u64>(), runs);
}

/// xorshift64*: a small seeded generator, so a failing run can be replayed from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `cryptsetup tcryptDump` of `path` (AES only on this machine: always `-h` and `-c aes`),
/// the password on stdin: whether it opened, and what it printed.
pub fn tcrypt_dump(path: &Path, hash: &str, password: &[u8], extra: &[&str]) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("cryptsetup")
        .args(["tcryptDump", "-h", hash, "-c", "aes"])
        .args(extra)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cryptsetup: {e} (install cryptsetup-bin: scripts/setup)"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(password).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Asserts that a tcryptDump shows the header `truecrypt::create` writes: version 5, needs
/// TrueCrypt 7.0, AES-XTS with a 512-bit key, data at 128 KiB.
pub fn assert_created_header(dump: &str) {
    for line in [
        "Version:       \t5",
        "Driver req.:\t7.0",
        "MK offset:\t131072",
        "Cipher chain:\taes",
        "Cipher mode:\txts-plain64",
        "MK bits:       \t512",
    ] {
        let (key, value) = line.split_once(':').unwrap_or_default();
        assert!(
            dump.lines()
                .any(|l| l.starts_with(key) && l.trim_end().ends_with(value.trim())),
            "{key}: {value}: {dump}"
        );
    }
}
