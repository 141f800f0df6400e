//! `stationctl inspect`: what is on a device or image (partition table, filesystems, labels,
//! sizes) and, with `--files`, every entry of one filesystem with the MD5 of each file.
//!
//! It reads through the same userspace stack as the pipelines (block device, partition slice,
//! filesystem reader), so it shows what an import would see, and works without the daemon.
//!
//! The `--files` listing is a contract, compared with `md5sum` of the tree an image was made
//! from: one line per entry, `md5 size mtime kind path`, sorted by the printed path (byte
//! order). See [`write_files`] and [`escape_path`].

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::block::{AlignedBuf, BlockDevice};
use drivers::fs::walk::{walk, Limits, WalkEntry, WalkProblem};
use drivers::fs::{open_filesystem, EntryKind, FileSystem, FsError, RawName};
use drivers::md5_lanes::Md5Lane;
use drivers::partition::{Partition, PartitionError, PartitionTable, Scheme};
use drivers::probe::{probe, Detected};
use drivers::source::{IoError, ReadAt, Slice};

/// File data is read in chunks of this size.
pub const CHUNK: usize = 8 << 20;

/// With this environment variable set to `1`, `--files` counts the reads it issues and writes
/// their statistics to the problems stream (stderr) at the end: see [`ReadStats`].
pub const READ_STATS_ENV: &str = "STATION_READ_STATS";

/// Files at least this large are counted apart in the read statistics.
pub const LARGE_FILE: u64 = 1 << 20;

/// Why a device could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The device could not be opened or read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The partition table is corrupt, or the partition asked for does not exist.
    #[error(transparent)]
    Table(#[from] PartitionError),
    /// The filesystem could not be opened.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// `--files` without `--partition`, and no single filesystem to choose.
    #[error("{device}: {why}; choose one with --partition N:\n{listing}")]
    Choose {
        /// The device.
        device: String,
        /// What was found.
        why: String,
        /// One line per partition, as the report prints them.
        listing: String,
    },
    /// `--files` on a device without a partition table whose contents are not recognised.
    #[error("{device}: no partition table and no filesystem this station recognises")]
    NothingToList {
        /// The device.
        device: String,
    },
}

/// A partition and what [`probe`] found in it.
#[derive(Debug)]
pub struct PartitionInfo {
    /// The partition.
    pub partition: Partition,
    /// Its filesystem (`Ok(None)`: unknown), or why it could not be read.
    pub filesystem: Result<Option<Detected>, IoError>,
}

/// A device with its table read and every filesystem probed.
#[derive(Debug)]
pub struct Inspected {
    /// The device or image.
    pub device: Arc<BlockDevice>,
    /// Its partition table.
    pub table: PartitionTable,
    /// The filesystem on the whole device, when it has no partition table (`None`: unknown,
    /// or there is a table).
    pub whole: Option<Detected>,
    /// The partitions, in table order.
    pub partitions: Vec<PartitionInfo>,
}

/// Opens `path` (block device or image), reads its partition table and probes each partition.
///
/// # Errors
///
/// The device cannot be opened or read, or its partition table is corrupt.
pub fn inspect(path: &Path) -> Result<Inspected, InspectError> {
    let device = Arc::new(BlockDevice::open(path)?);
    // A block device knows its logical sector size; an image's is guessed from the GPT.
    let sector_size = device
        .is_block_device()
        .then(|| device.logical_sector_size());
    let table = PartitionTable::read(&*device, sector_size)?;
    let whole = if table.scheme == Scheme::None {
        probe(&*device)?
    } else {
        None
    };
    let mut partitions = Vec::new();
    for p in &table.partitions {
        // The table checked that every partition fits the device; a failure here is an I/O
        // error of this partition only, shown on its line.
        let name = format!("{} partition {}", device.describe(), p.number);
        let filesystem = Slice::new(Arc::clone(&device), p.start_bytes, p.size_bytes, name)
            .and_then(|slice| probe(&slice));
        partitions.push(PartitionInfo {
            partition: p.clone(),
            filesystem,
        });
    }
    Ok(Inspected {
        device,
        table,
        whole,
        partitions,
    })
}

/// `1.5 MiB`-style size, for people.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn describe_fs(fs: &Result<Option<Detected>, IoError>) -> String {
    match fs {
        Ok(Some(d)) => match &d.label {
            Some(label) => format!(
                "filesystem {}, label \"{}\"",
                d.fs_type,
                escape_path(label.as_bytes())
            ),
            None => format!("filesystem {}", d.fs_type),
        },
        Ok(None) => "filesystem unknown".to_owned(),
        Err(e) => format!("filesystem not readable ({e})"),
    }
}

/// One line describing partition `p`, as the report and error listings print it.
pub fn describe_partition(info: &PartitionInfo) -> String {
    let p = &info.partition;
    let mut line = format!("partition {}", p.number);
    if p.logical {
        let _ = write!(line, " (logical, Linux {})", p.kernel_number);
    } else if p.kernel_number != p.number {
        let _ = write!(line, " (Linux {})", p.kernel_number);
    }
    let _ = write!(
        line,
        ": start {}, size {} ({}), type \"{}\"",
        p.start_bytes,
        p.size_bytes,
        human(p.size_bytes),
        escape_path(p.type_description.as_bytes())
    );
    if let Some(name) = &p.name {
        let _ = write!(line, ", name \"{}\"", escape_path(name.as_bytes()));
    }
    if p.bootable {
        line.push_str(", bootable");
    }
    let _ = write!(line, ", {}", describe_fs(&info.filesystem));
    line
}

impl Inspected {
    /// Writes the report: the device, the table, one line per partition (or the whole
    /// device's filesystem). Returns whether every filesystem could be probed.
    ///
    /// # Errors
    ///
    /// Writing to `out` failed.
    pub fn write_report(&self, out: &mut dyn Write) -> io::Result<bool> {
        let d = &self.device;
        write!(
            out,
            "device {}: {} bytes ({})",
            escape_path(d.describe().as_bytes()),
            d.size(),
            human(d.size()),
        )?;
        if d.is_block_device() {
            writeln!(
                out,
                ", block device, logical sector {} bytes, physical sector {} bytes",
                d.logical_sector_size(),
                d.physical_sector_size()
            )?;
        } else {
            writeln!(out, ", image file")?;
        }
        let t = &self.table;
        match t.scheme {
            Scheme::None => writeln!(out, "table none")?,
            scheme => {
                write!(
                    out,
                    "table {scheme}, sector size {}, {} partition(s)",
                    t.sector_size,
                    t.partitions.len()
                )?;
                if let Some(guid) = t.disk_guid {
                    write!(out, ", disk GUID {guid}")?;
                }
                writeln!(out)?;
            }
        }
        for warning in &t.warnings {
            writeln!(out, "warning: {}", escape_path(warning.as_bytes()))?;
        }
        let mut all_read = true;
        if t.scheme == Scheme::None {
            let whole = Ok(self.whole.clone());
            writeln!(out, "whole device: {}", describe_fs(&whole))?;
        }
        for info in &self.partitions {
            writeln!(out, "{}", describe_partition(info))?;
            all_read &= info.filesystem.is_ok();
        }
        Ok(all_read)
    }

    /// The source `--files` lists: partition `number` when given; else the whole device if it
    /// holds a filesystem; else the one partition that holds one.
    ///
    /// # Errors
    ///
    /// No such partition, or no single filesystem to choose (the message lists the
    /// partitions).
    pub fn select(&self, number: Option<u32>) -> Result<Arc<dyn ReadAt>, InspectError> {
        let device: Arc<dyn ReadAt> = self.device.clone();
        if let Some(n) = number {
            return Ok(Arc::new(self.table.slice(device, n)?));
        }
        if self.table.scheme == Scheme::None {
            return match self.whole {
                Some(_) => Ok(device),
                None => Err(InspectError::NothingToList {
                    device: device.describe(),
                }),
            };
        }
        let with_fs: Vec<&PartitionInfo> = self
            .partitions
            .iter()
            .filter(|p| matches!(p.filesystem, Ok(Some(_))))
            .collect();
        match with_fs.as_slice() {
            [one] => Ok(Arc::new(self.table.slice(device, one.partition.number)?)),
            several => Err(InspectError::Choose {
                device: device.describe(),
                why: if several.is_empty() {
                    "no partition holds a filesystem this station recognises".to_owned()
                } else {
                    format!("{} partitions hold filesystems", several.len())
                },
                listing: if self.partitions.is_empty() {
                    "(the table has no partitions)".to_owned()
                } else {
                    self.partitions
                        .iter()
                        .map(describe_partition)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            }),
        }
    }
}

/// Whether a character is written as `\xNN` escapes of its UTF-8 bytes: the backslash itself,
/// control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F), and the characters
/// that reorder or break a line on a terminal (U+061C, U+200E, U+200F, U+2028-U+202E,
/// U+2066-U+2069).
fn must_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A path (or name, or label) as the listing prints it: printable UTF-8 as is; every byte of
/// invalid UTF-8, and every byte of a character [`must_escape`] names, as `\xNN` (two
/// lowercase hex digits).
pub fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if must_escape(c) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn escaped(path: &[RawName]) -> String {
    let mut bytes = Vec::new();
    for (i, name) in path.iter().enumerate() {
        if i > 0 {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(&name.to_bytes());
    }
    escape_path(&bytes)
}

fn describe_problem(problem: &WalkProblem) -> String {
    match problem {
        WalkProblem::Unreadable { path, error } => {
            format!("{}: directory not listed: {error}", shown(path))
        }
        WalkProblem::Cycle { path, id } => format!(
            "{}: directory {id} was already reached (a cycle or a hard-linked directory); not followed",
            shown(path)
        ),
        WalkProblem::TooDeep { path } => {
            format!("{}: nested too deep; not followed", shown(path))
        }
        WalkProblem::NameTooLong { parent, len } => format!(
            "{}: an entry's name of {len} bytes is too long; skipped",
            shown(parent)
        ),
        WalkProblem::TooManyEntries { limit } => {
            format!("more than {limit} entries; the walk stopped there")
        }
    }
}

/// A path for messages: `/` for the root.
fn shown(path: &[RawName]) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        escaped(path)
    }
}

/// The MD5 of file `id` (`size` bytes), read in [`CHUNK`]s, as 32 lowercase hex digits.
fn md5_of(fs: &dyn FileSystem, id: u64, size: u64, buf: &mut [u8]) -> Result<String, String> {
    let mut hasher = Md5Lane::new();
    let mut offset = 0u64;
    while offset < size {
        let want = usize::try_from(size - offset).map_or(buf.len(), |left| left.min(buf.len()));
        let n = fs
            .read(id, offset, &mut buf[..want])
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("the file ends after {offset} of {size} bytes"));
        }
        hasher.update(&buf[..n.min(want)]);
        offset += n.min(want) as u64;
    }
    let mut hex = String::with_capacity(32);
    for b in hasher.finalize() {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

/// Whether [`READ_STATS_ENV`] asks for read statistics.
fn read_stats_requested() -> bool {
    std::env::var_os(READ_STATS_ENV).is_some_and(|v| v == "1")
}

/// Power-of-two size classes: class 0 holds empty reads, class `k` lengths in
/// `[2^(k-1), 2^k)`.
const CLASSES: usize = 65;

/// The class of a read of `len` bytes.
fn size_class(len: usize) -> usize {
    (usize::BITS - len.leading_zeros()) as usize
}

/// `2^exp` bytes for people: `512 bytes`, `4 KiB`, `8 MiB`.
fn pow2_label(exp: usize) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let unit = (exp / 10).min(UNITS.len() - 1);
    format!("{} {}", 1u64 << (exp - unit * 10), UNITS[unit])
}

/// Read counts and bytes per size class.
struct Histogram {
    reads: [AtomicU64; CLASSES],
    bytes: [AtomicU64; CLASSES],
}

impl Histogram {
    fn new() -> Self {
        Self {
            reads: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn add(&self, len: usize) {
        let class = size_class(len);
        self.reads[class].fetch_add(1, Ordering::Relaxed);
        self.bytes[class].fetch_add(len as u64, Ordering::Relaxed);
    }

    /// `(class, reads, bytes)` of every class with reads.
    fn classes(&self) -> Vec<(usize, u64, u64)> {
        (0..CLASSES)
            .map(|c| {
                (
                    c,
                    self.reads[c].load(Ordering::Relaxed),
                    self.bytes[c].load(Ordering::Relaxed),
                )
            })
            .filter(|&(_, reads, _)| reads > 0)
            .collect()
    }

    fn totals(&self) -> (u64, u64) {
        self.classes()
            .iter()
            .fold((0, 0), |(r, b), &(_, reads, bytes)| (r + reads, b + bytes))
    }
}

/// A source that counts every read by size class, and apart those issued while a large file
/// is read. Only `STATION_READ_STATS=1` puts it in the stack; the trait is unchanged.
struct CountingSource {
    inner: Arc<dyn ReadAt>,
    in_large_file: AtomicBool,
    all: Histogram,
    large: Histogram,
}

impl ReadAt for CountingSource {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.all.add(buf.len());
        if self.in_large_file.load(Ordering::Relaxed) {
            self.large.add(buf.len());
        }
        self.inner.read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Files, bytes and time of one class of files.
#[derive(Debug, Default, Clone, Copy)]
struct FileTimes {
    files: u64,
    bytes: u64,
    time: Duration,
}

/// The read statistics of one `--files` listing (`STATION_READ_STATS=1`): every read the
/// filesystem reader issued, by power-of-two size, and the time spent walking and hashing.
pub struct ReadStats {
    source: Arc<CountingSource>,
    entries: u64,
    walk: Duration,
    large: FileTimes,
    small: FileTimes,
}

impl ReadStats {
    fn new(inner: Arc<dyn ReadAt>) -> Self {
        Self {
            source: Arc::new(CountingSource {
                inner,
                in_large_file: AtomicBool::new(false),
                all: Histogram::new(),
                large: Histogram::new(),
            }),
            entries: 0,
            walk: Duration::ZERO,
            large: FileTimes::default(),
            small: FileTimes::default(),
        }
    }

    /// Writes the statistics, one `read stats: ` line each.
    fn write(&self, name: &str, out: &mut dyn Write) -> io::Result<()> {
        let (reads, bytes) = self.source.all.totals();
        let (large_reads, large_bytes) = self.source.large.totals();
        let mib = self.large.bytes as f64 / f64::from(1u32 << 20);
        let per_mib = if mib > 0.0 {
            large_reads as f64 / mib
        } else {
            0.0
        };
        let limit = pow2_label(LARGE_FILE.trailing_zeros() as usize);
        writeln!(out, "read stats: {name}: {reads} reads, {bytes} bytes")?;
        writeln!(
            out,
            "read stats: walk: {} entries in {:.3} s",
            self.entries,
            self.walk.as_secs_f64()
        )?;
        writeln!(
            out,
            "read stats: files >= {limit}: {} files, {} bytes in {:.3} s, {large_reads} reads \
             ({large_bytes} bytes), {per_mib:.3} reads per MiB",
            self.large.files,
            self.large.bytes,
            self.large.time.as_secs_f64()
        )?;
        writeln!(
            out,
            "read stats: files < {limit}: {} files, {} bytes in {:.3} s",
            self.small.files,
            self.small.bytes,
            self.small.time.as_secs_f64()
        )?;
        let large: Vec<(usize, u64, u64)> = self.source.large.classes();
        for (class, reads, bytes) in self.source.all.classes() {
            let range = if class == 0 {
                "0 bytes".to_owned()
            } else {
                format!("[{}, {})", pow2_label(class - 1), pow2_label(class))
            };
            let (lr, lb) = large
                .iter()
                .find(|l| l.0 == class)
                .map_or((0, 0), |l| (l.1, l.2));
            writeln!(
                out,
                "read stats: size {range}: {reads} reads, {bytes} bytes; for files >= {limit}: \
                 {lr} reads, {lb} bytes"
            )?;
        }
        Ok(())
    }
}

/// [`md5_of`], timing the file into `stats` when given.
fn timed_md5_of(
    fs: &dyn FileSystem,
    id: u64,
    size: u64,
    buf: &mut [u8],
    stats: Option<&mut ReadStats>,
) -> Result<String, String> {
    let Some(stats) = stats else {
        return md5_of(fs, id, size, buf);
    };
    let large = size >= LARGE_FILE;
    stats.source.in_large_file.store(large, Ordering::Relaxed);
    let started = Instant::now();
    let md5 = md5_of(fs, id, size, buf);
    let times = if large {
        &mut stats.large
    } else {
        &mut stats.small
    };
    times.files += 1;
    times.bytes += size;
    times.time += started.elapsed();
    stats.source.in_large_file.store(false, Ordering::Relaxed);
    md5
}

/// Writes the `--files` listing of `fs` to `out` and every problem to `problems` (one line
/// each, `<name>: <path>: <what>`, `name` being the device or partition). Returns whether
/// everything was read.
///
/// One line per entry, sorted by the printed path in byte order:
/// `md5 size mtime kind path`: the MD5 of a file's content as 32 lowercase hex digits (`-` for
/// every other kind); the size in bytes (a file's length, a symlink's target length, 0 for
/// other kinds); the mtime in whole seconds since the epoch, UTC (`-` when unknown;
/// filesystems that store local time without a zone, like FAT, give that local time read as
/// UTC); the kind ([`EntryKind::as_str`]); the path from the root with `/` separators,
/// escaped by [`escape_path`]. A file that cannot be read is left out and reported.
///
/// # Errors
///
/// Writing to `out` or `problems` failed.
pub fn write_files(
    fs: &dyn FileSystem,
    name: &str,
    out: &mut dyn Write,
    problems: &mut dyn Write,
) -> io::Result<bool> {
    write_files_timed(fs, name, out, problems, None)
}

/// [`write_files`], timing the walk and the files into `stats` when given.
fn write_files_timed(
    fs: &dyn FileSystem,
    name: &str,
    out: &mut dyn Write,
    problems: &mut dyn Write,
    mut stats: Option<&mut ReadStats>,
) -> io::Result<bool> {
    let started = stats.is_some().then(Instant::now);
    let walked = walk(fs, Limits::default());
    if let (Some(stats), Some(started)) = (stats.as_deref_mut(), started) {
        stats.walk = started.elapsed();
        stats.entries = walked.entries.len() as u64;
    }
    let mut all_read = walked.problems.is_empty();
    for problem in &walked.problems {
        writeln!(problems, "{name}: {}", describe_problem(problem))?;
    }
    let mut entries: Vec<(String, WalkEntry)> = walked
        .entries
        .into_iter()
        .map(|w| (escaped(&w.path), w))
        .collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut buf = AlignedBuf::new(CHUNK);
    for (path, w) in entries {
        let e = &w.entry;
        let (md5, size) = match e.kind {
            EntryKind::File => match timed_md5_of(fs, e.id, e.size, &mut buf, stats.as_deref_mut())
            {
                Ok(md5) => (md5, e.size),
                Err(why) => {
                    writeln!(problems, "{name}: {path}: {why}")?;
                    all_read = false;
                    continue;
                }
            },
            EntryKind::Symlink => ("-".to_owned(), e.size),
            _ => ("-".to_owned(), 0),
        };
        let mtime = e
            .mtime
            .map_or_else(|| "-".to_owned(), |t| t.seconds.to_string());
        writeln!(out, "{md5} {size} {mtime} {} {path}", e.kind.as_str())?;
    }
    Ok(all_read)
}

/// Opens the filesystem `--files` lists (see [`Inspected::select`]) and writes its listing.
/// Volume warnings (a dirty journal) go to `problems` too but do not count as unread.
///
/// # Errors
///
/// No filesystem to list, or it cannot be opened, or writing failed.
pub fn list_files(
    inspected: &Inspected,
    partition: Option<u32>,
    out: &mut dyn Write,
    problems: &mut dyn Write,
) -> Result<bool, InspectError> {
    list_files_on(inspected.select(partition)?, out, problems)
}

/// Lists every entry of the filesystem on `source` (a partition, or a decrypted TrueCrypt
/// volume), as [`list_files`] does.
///
/// # Errors
///
/// As [`list_files`].
pub fn list_files_on(
    source: Arc<dyn ReadAt>,
    out: &mut dyn Write,
    problems: &mut dyn Write,
) -> Result<bool, InspectError> {
    let name = source.describe();
    let mut stats = read_stats_requested().then(|| ReadStats::new(Arc::clone(&source)));
    let source = match &stats {
        Some(stats) => Arc::clone(&stats.source) as Arc<dyn ReadAt>,
        None => source,
    };
    let fs = open_filesystem(source)?;
    let mut write = |out: &mut dyn Write, problems: &mut dyn Write| -> io::Result<bool> {
        for warning in fs.warnings() {
            writeln!(
                problems,
                "warning: {name}: {}",
                escape_path(warning.as_bytes())
            )?;
        }
        let all_read = write_files_timed(&*fs, &name, out, problems, stats.as_mut())?;
        if let Some(stats) = &stats {
            out.flush()?;
            stats.write(&name, problems)?;
        }
        Ok(all_read)
    };
    write(out, problems).map_err(|e| {
        InspectError::Io(IoError {
            device: "standard output".to_owned(),
            offset: 0,
            len: 0,
            source: e,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_invalid_utf8_backslash_and_controls() {
        let cases: [(&[u8], &str); 7] = [
            (b"docs/notes v1.txt", "docs/notes v1.txt"),
            ("café 日本語 😀.txt".as_bytes(), "café 日本語 😀.txt"),
            (b"bad_\xff\xfe_caf\xe9", "bad_\\xff\\xfe_caf\\xe9"),
            (b"back\\slash", "back\\x5cslash"),
            (b"line\nbreak\ttab\x7f", "line\\x0abreak\\x09tab\\x7f"),
            (
                "c1\u{85}bidi\u{202E}".as_bytes(),
                "c1\\xc2\\x85bidi\\xe2\\x80\\xae",
            ),
            // A truncated multi-byte sequence, then valid text.
            (b"a\xe6\x97b", "a\\xe6\\x97b"),
        ];
        for (raw, want) in cases {
            assert_eq!(escape_path(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn read_stats_count_reads_by_power_of_two_size() {
        assert_eq!(
            [0, 1, 2, 3, 4096, 4097, 8 << 20].map(size_class),
            [0, 1, 2, 2, 13, 13, 24]
        );
        assert_eq!(pow2_label(9), "512 bytes");
        assert_eq!(pow2_label(23), "8 MiB");
        let memory = drivers::source::MemorySource::new("mem", vec![7u8; 1 << 20]);
        let mut stats = ReadStats::new(Arc::new(memory));
        let mut buf = vec![0u8; 5000];
        for len in [512, 700, 5000] {
            stats
                .source
                .read_exact_at(0, &mut buf[..len])
                .unwrap_or_else(|e| panic!("{e}"));
        }
        stats.large.files = 1;
        stats.large.bytes = 1 << 20;
        let mut out = Vec::new();
        stats
            .write("mem", &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("read stats: mem: 3 reads, 6212 bytes\n"),
            "{text}"
        );
        assert!(
            text.contains("read stats: size [512 bytes, 1 KiB): 2 reads, 1212 bytes; "),
            "{text}"
        );
        assert!(
            text.contains("read stats: size [4 KiB, 8 KiB): 1 reads, 5000 bytes; "),
            "{text}"
        );
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(29_360_128), "28.0 MiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
