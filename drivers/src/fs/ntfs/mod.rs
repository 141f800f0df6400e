//! NTFS, read in userspace.
//!
//! [`NtfsFs::open`] checks the boot sector, reads `$MFT`'s own record and maps the whole
//! `$MFT` through its `$ATTRIBUTE_LIST` when it is fragmented beyond one record. Every file
//! is then its base MFT record plus the extension records its attribute list names;
//! attribute instances split across records are joined by starting VCN.
//!
//! Entry ids are MFT record numbers (the root is 5), so hard links (several `$FILE_NAME`s)
//! are one id listed under each of its names. DOS 8.3 aliases are skipped; Win32 and POSIX
//! names are listed. Directories are read from their `$I30` index: `$INDEX_ROOT`, then the
//! `INDX` blocks of `$INDEX_ALLOCATION` reached from it, each checked against the index's
//! `$BITMAP` and visited at most once. As Windows and ntfs-3g do, the system files (records
//! 0 to 15: `$MFT`, `$Bitmap`, ..., `$Extend`) are not listed.
//!
//! Policies: a file is its unnamed `$DATA` stream; named streams (alternate data streams)
//! are not read but are reported by [`FileSystem::streams`] so the pipeline can log them.
//! Reparse-point symlinks and junctions (and Interix symlinks written by ntfs-3g) are
//! [`EntryKind::Symlink`] and never followed. EFS-encrypted, WOF-compressed and
//! deduplicated files cannot be read (`Unsupported`, naming the MFT record). Bytes past a stream's initialized size read as zeros. Uncompressed
//! non-resident data is read through its runs, one positional read per contiguous run of the
//! caller's buffer; LZNT1-compressed data is read one compression unit at a time. Resident
//! and compressed files have no physical extents: [`FileSystem::extents`] refuses them, and
//! [`FileSystem::read`] serves them.

mod index;
mod lznt1;
mod record;
mod runlist;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use self::record::{Attr, Body, Record};
use self::runlist::Run;
use super::{
    DirEntry, EntryId, EntryKind, Extent, ExtentKind, FileSystem, FsError, FsType, RawName,
    Timestamp, Zone,
};
use crate::source::ReadAt;

/// The root directory's MFT record.
const ROOT_ID: EntryId = 5;
/// `$Volume`'s MFT record.
const VOLUME_RECORD: u64 = 3;
/// Records below this are system files (and reserved), never listed.
const FIRST_USER_RECORD: u64 = 16;
/// The largest attribute list read (real ones are a few KiB; 256 KiB is the format's limit).
const MAX_ATTRIBUTE_LIST: u64 = 1 << 20;
/// The most extension records one file may have.
const MAX_EXTENSION_RECORDS: usize = 16_384;
/// The largest index `$BITMAP` or reparse point read.
const MAX_SMALL_VALUE: u64 = 16 << 20;
/// The largest reparse point (the format's limit is 16 KiB).
const MAX_REPARSE: u64 = 64 << 10;
/// The largest Interix symlink file looked at.
const MAX_INTERIX: u64 = 8 + 2 * 4096;
/// The largest compression unit decoded.
const MAX_UNIT_BYTES: u64 = 4 << 20;
/// The largest `$MFT` accepted (2^32 records of 4 KiB would be 16 TiB; real MFTs are far
/// smaller, and the record-number field is 32 bits in records).
const MAX_MFT_RECORDS: u64 = 1 << 32;
/// MFT records read and cached together.
const RECORDS_PER_CHUNK: u64 = 64;
/// MFT chunks kept in the cache.
const CACHED_CHUNKS: usize = 128;
/// Files whose layout (extents) is kept, so reading a big file in chunks does not load its
/// record again for every chunk.
const CACHED_LAYOUTS: usize = 32;
/// Problems kept for [`FileSystem::warnings`].
const MAX_PROBLEMS: usize = 1000;
/// Seconds from 1601-01-01 to 1970-01-01.
const EPOCH_1601: i64 = 11_644_473_600;

/// `$STANDARD_INFORMATION` file attribute: system file.
const FILE_ATTRIBUTE_SYSTEM: u32 = 0x0004;
/// File attribute: EFS-encrypted.
const FILE_ATTRIBUTE_ENCRYPTED: u32 = 0x4000;
/// `$FILE_NAME` attribute in index keys: the entry is a directory.
const FILE_NAME_DIRECTORY: u32 = 0x1000_0000;
/// Reparse tag of a symbolic link.
const TAG_SYMLINK: u32 = 0xA000_000C;
/// Reparse tag of a junction (mount point).
const TAG_MOUNT_POINT: u32 = 0xA000_0003;
/// Reparse tag of a file compressed by Windows Overlay Filter (`compact /exe`): its data is
/// in a named stream in a format this reader does not decode; the unnamed one is sparse.
const TAG_WOF: u32 = 0x8000_0017;
/// Reparse tag of a file deduplicated by Windows Server: its data is in the chunk store.
const TAG_DEDUP: u32 = 0x8000_0013;
/// The start of an Interix symlink's data.
const INTERIX_SYMLINK: &[u8; 8] = b"IntxLNK\x01";
/// The name of filename indexes.
const I30: [u16; 4] = [0x24, 0x49, 0x33, 0x30];

/// A little-endian `u16` at `off`, 0 past the end of `b`.
fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off.saturating_add(2))
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

/// A little-endian `u32` at `off`, 0 past the end of `b`.
fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off.saturating_add(4))
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A little-endian `u64` at `off`, 0 past the end of `b`.
fn le64(b: &[u8], off: usize) -> u64 {
    b.get(off..off.saturating_add(8)).map_or(0, |s| {
        u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
    })
}

/// An NTFS time (100 ns units since 1601-01-01 UTC) as a [`Timestamp`].
fn timestamp(t: i64) -> Timestamp {
    Timestamp {
        seconds: t.div_euclid(10_000_000) - EPOCH_1601,
        nanos: (t.rem_euclid(10_000_000) * 100) as u32,
        zone: Zone::Utc,
    }
}

/// The source and its name, for reads and for errors.
struct Ctx {
    source: Arc<dyn ReadAt>,
    device: String,
}

impl Ctx {
    fn corrupt(&self, offset: u64, what: impl Into<String>) -> FsError {
        FsError::Corrupt {
            device: self.device.clone(),
            offset,
            what: what.into(),
        }
    }

    fn unsupported(&self, what: impl Into<String>) -> FsError {
        FsError::Unsupported {
            device: self.device.clone(),
            what: what.into(),
        }
    }
}

/// What the boot sector says.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Bytes per cluster.
    cluster: u64,
    /// Clusters in the volume.
    clusters: u64,
    /// `$MFT`'s first cluster.
    mft_lcn: u64,
    /// Bytes per MFT record.
    record_size: usize,
}

/// Parses the boot sector.
fn parse_boot(ctx: &Ctx, b: &[u8]) -> Result<Geometry, FsError> {
    if b.get(3..11) != Some(&b"NTFS    "[..]) {
        return Err(ctx.corrupt(3, "boot sector: no NTFS signature"));
    }
    let sector = u64::from(le16(b, 0x0B));
    if !(256..=4096).contains(&sector) || !sector.is_power_of_two() {
        return Err(ctx.corrupt(0x0B, format!("boot sector: {sector} bytes per sector")));
    }
    let raw_spc = b[0x0D];
    let spc: u64 = if raw_spc <= 0x80 {
        u64::from(raw_spc)
    } else {
        // Clusters above 64 KiB: the byte is a negative power of two.
        let shift = 256 - u32::from(raw_spc);
        if shift > 12 {
            0
        } else {
            1 << shift
        }
    };
    if spc == 0 || !spc.is_power_of_two() || sector * spc > 2 << 20 {
        return Err(ctx.corrupt(
            0x0D,
            format!("boot sector: sectors per cluster byte {raw_spc:#04x}"),
        ));
    }
    let cluster = sector * spc;
    let clusters = le64(b, 0x28) / spc;
    if clusters > runlist::MAX_VCN {
        return Err(ctx.corrupt(
            0x28,
            format!("boot sector: {clusters} clusters (at most 2^40)"),
        ));
    }
    let mft_lcn = le64(b, 0x30);
    if clusters == 0 || mft_lcn >= clusters {
        return Err(ctx.corrupt(
            0x30,
            format!("boot sector: $MFT at cluster {mft_lcn} of {clusters}"),
        ));
    }
    let raw = b[0x40] as i8;
    let record_size: u64 = if raw > 0 {
        u64::from(raw.unsigned_abs()) * cluster
    } else {
        let shift = u32::from(raw.unsigned_abs());
        if shift > 16 {
            0
        } else {
            1 << shift
        }
    };
    if !(512..=65536).contains(&record_size) || !record_size.is_power_of_two() {
        return Err(ctx.corrupt(
            0x40,
            format!("boot sector: MFT record size byte {raw} ({record_size} bytes)"),
        ));
    }
    Ok(Geometry {
        cluster,
        clusters,
        mft_lcn,
        record_size: record_size as usize,
    })
}

/// Reads `buf.len()` bytes from byte `offset` of the stream mapped by `runs`: one positional
/// read per run crossed; sparse runs give zeros. `what` names the stream for errors.
fn read_runs(
    ctx: &Ctx,
    cluster: u64,
    runs: &[Run],
    offset: u64,
    buf: &mut [u8],
    what: &dyn Fn() -> String,
) -> Result<(), FsError> {
    let mut done = 0usize;
    while done < buf.len() {
        let pos = offset + done as u64;
        let vcn = pos / cluster;
        let i = runs.partition_point(|r| r.end() <= vcn);
        let Some(run) = runs.get(i).filter(|r| r.vcn <= vcn) else {
            return Err(ctx.corrupt(
                pos,
                format!("{}: byte {pos} is not mapped by its runlist", what()),
            ));
        };
        let in_run = pos - run.vcn * cluster;
        let n = (buf.len() - done).min((run.len * cluster - in_run) as usize);
        let out = &mut buf[done..done + n];
        match run.lcn {
            None => out.fill(0),
            Some(lcn) => ctx.source.read_exact_at(lcn * cluster + in_run, out)?,
        }
        done += n;
    }
    Ok(())
}

/// Applies the fixups of MFT record `number` (read from byte `offset`) and parses it.
fn finish_record(
    ctx: &Ctx,
    geo: &Geometry,
    offset: u64,
    mut buf: Vec<u8>,
    number: u64,
) -> Result<Record, FsError> {
    record::apply_fixups(&mut buf, b"FILE")
        .and_then(|()| record::parse_record(&buf, number, geo.clusters))
        .map_err(|e| ctx.corrupt(offset, format!("MFT record {number}: {e}")))
}

/// An attribute's value, joined across its instances.
#[derive(Debug, Clone)]
enum Stream {
    Resident(Vec<u8>),
    NonResident {
        size: u64,
        initialized: u64,
        compression_unit: u8,
        runs: Vec<Run>,
    },
}

impl Stream {
    fn size(&self) -> u64 {
        match self {
            Self::Resident(v) => v.len() as u64,
            Self::NonResident { size, .. } => *size,
        }
    }
}

/// A file: its base record's header and every attribute from the base and extension records.
#[derive(Debug)]
struct File {
    number: u64,
    flags: u16,
    /// `$STANDARD_INFORMATION` file attributes.
    attributes: u32,
    /// `$STANDARD_INFORMATION` modification time, raw.
    mtime: Option<i64>,
    attrs: Vec<Attr>,
}

impl File {
    fn is_dir(&self) -> bool {
        self.flags & record::RECORD_DIRECTORY != 0
    }

    /// The stream of attribute `kind` named `name`, with the flags of its first instance.
    fn stream(
        &self,
        ctx: &Ctx,
        offset: u64,
        kind: u32,
        name: &[u16],
    ) -> Result<Option<(Stream, u16)>, FsError> {
        let mut parts: Vec<&Attr> = self
            .attrs
            .iter()
            .filter(|a| a.kind == kind && a.name == name)
            .collect();
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        if let Body::Resident(v) = &first.body {
            return Ok(Some((Stream::Resident(v.clone()), first.flags)));
        }
        parts.sort_by_key(|a| match &a.body {
            Body::NonResident(nr) => nr.start_vcn,
            Body::Resident(_) => 0,
        });
        let mut runs: Vec<Run> = Vec::new();
        let mut next_vcn = 0u64;
        let mut head = None;
        for part in &parts {
            let Body::NonResident(nr) = &part.body else {
                return Err(ctx.corrupt(
                    offset,
                    format!(
                        "MFT record {}: attribute {kind:#x} is both resident and not",
                        self.number
                    ),
                ));
            };
            if nr.start_vcn != next_vcn {
                return Err(ctx.corrupt(
                    offset,
                    format!(
                        "MFT record {}: attribute {kind:#x} instance starts at VCN {} where VCN \
                         {next_vcn} was expected",
                        self.number, nr.start_vcn
                    ),
                ));
            }
            head.get_or_insert((nr, part.flags));
            runs.extend_from_slice(&nr.runs);
            next_vcn = nr.last_vcn.saturating_add(1);
        }
        let Some((nr, flags)) = head else {
            return Ok(None);
        };
        Ok(Some((
            Stream::NonResident {
                size: nr.size,
                initialized: nr.initialized.min(nr.size),
                // Sparse streams carry a compression unit too; only the flag says compressed.
                compression_unit: if flags & record::ATTR_COMPRESSED != 0 {
                    nr.compression_unit
                } else {
                    0
                },
                runs,
            },
            flags,
        )))
    }
}

/// How to read a file's unnamed stream.
#[derive(Debug)]
enum Layout {
    Resident(Vec<u8>),
    /// Uncompressed, non-resident: byte extents covering the size.
    Extents {
        size: u64,
        extents: Vec<Extent>,
    },
    /// LZNT1-compressed in units of `unit` clusters.
    Compressed {
        size: u64,
        initialized: u64,
        unit: u64,
        runs: Vec<Run>,
    },
}

impl Layout {
    fn size(&self) -> u64 {
        match self {
            Self::Resident(v) => v.len() as u64,
            Self::Extents { size, .. } | Self::Compressed { size, .. } => *size,
        }
    }
}

/// Caches, behind one lock.
#[derive(Default)]
struct State {
    /// MFT chunks by chunk number.
    chunks: HashMap<u64, Arc<Vec<u8>>>,
    /// Chunk numbers in insertion order, for dropping the oldest.
    order: VecDeque<u64>,
    /// Recently used files' layouts.
    layouts: VecDeque<(EntryId, Arc<Layout>)>,
    /// Entries whose record could not be read while listing.
    problems: Vec<String>,
}

/// An NTFS volume read through a [`ReadAt`] source.
pub struct NtfsFs {
    ctx: Ctx,
    geo: Geometry,
    /// `$MFT`'s runs (all of them, joined through its attribute list).
    mft: Vec<Run>,
    /// Records in `$MFT`.
    records: u64,
    label: Option<String>,
    warnings: Vec<String>,
    state: Mutex<State>,
}

impl std::fmt::Debug for NtfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtfsFs")
            .field("device", &self.ctx.device)
            .field("geometry", &self.geo)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl NtfsFs {
    /// Opens the NTFS volume on `source`.
    ///
    /// # Errors
    ///
    /// The boot sector is not NTFS, `$MFT` cannot be mapped, or the root directory's record
    /// is unreadable.
    pub fn open(source: Arc<dyn ReadAt>) -> Result<NtfsFs, FsError> {
        let device = source.describe();
        let ctx = Ctx { source, device };
        let mut boot = vec![0u8; 512];
        ctx.source.read_exact_at(0, &mut boot)?;
        let geo = parse_boot(&ctx, &boot)?;
        let (mft, records) = map_mft(&ctx, &geo)?;
        let mut fs = NtfsFs {
            ctx,
            geo,
            mft,
            records,
            label: None,
            warnings: Vec::new(),
            state: Mutex::new(State::default()),
        };
        match fs.volume_info() {
            Ok((label, dirty)) => {
                fs.label = label;
                if dirty {
                    fs.warnings.push(
                        "the volume is marked dirty (not cleanly unmounted, or a chkdsk is \
                         pending): its metadata may be inconsistent; run chkdsk on Windows \
                         if files are missing"
                            .into(),
                    );
                }
            }
            Err(e) => fs.warnings.push(format!("$Volume: {e}")),
        }
        let root = fs.load(ROOT_ID)?;
        if !root.is_dir() {
            return Err(fs.ctx.corrupt(
                fs.record_offset(ROOT_ID),
                "MFT record 5 (the root directory) is not a directory",
            ));
        }
        Ok(fs)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only caches behind, which stay consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The label and the dirty flag, from `$Volume`.
    fn volume_info(&self) -> Result<(Option<String>, bool), FsError> {
        let volume = self.load(VOLUME_RECORD)?;
        let offset = self.record_offset(VOLUME_RECORD);
        let label = match volume.stream(&self.ctx, offset, record::VOLUME_NAME, &[])? {
            Some((Stream::Resident(v), _)) if !v.is_empty() => {
                Some(String::from_utf16_lossy(&record::utf16(&v)))
            }
            _ => None,
        };
        let dirty = match volume.stream(&self.ctx, offset, record::VOLUME_INFORMATION, &[])? {
            Some((Stream::Resident(v), _)) => le16(&v, 0x0A) & 0x0001 != 0,
            _ => false,
        };
        Ok((label, dirty))
    }

    /// The byte offset of MFT record `n` in the source (0 when it is not mapped), for errors.
    fn record_offset(&self, n: u64) -> u64 {
        let pos = n.saturating_mul(self.geo.record_size as u64);
        let vcn = pos / self.geo.cluster;
        let i = self.mft.partition_point(|r| r.end() <= vcn);
        match self.mft.get(i) {
            Some(Run {
                vcn: start,
                lcn: Some(lcn),
                ..
            }) if *start <= vcn => lcn * self.geo.cluster + (pos - start * self.geo.cluster),
            _ => 0,
        }
    }

    /// MFT record `n`, through the chunk cache.
    fn record(&self, n: u64) -> Result<Record, FsError> {
        if n >= self.records {
            return Err(self.ctx.corrupt(
                0,
                format!(
                    "MFT record {n} is past the end of $MFT ({} records)",
                    self.records
                ),
            ));
        }
        let rs = self.geo.record_size;
        let chunk_no = n / RECORDS_PER_CHUNK;
        let chunk = self.lock().chunks.get(&chunk_no).cloned();
        let chunk = match chunk {
            Some(c) => Some(c),
            None => {
                let first = chunk_no * RECORDS_PER_CHUNK;
                let count = RECORDS_PER_CHUNK.min(self.records - first);
                let mut buf = vec![0u8; count as usize * rs];
                let what = || "$MFT".to_string();
                // A chunk that cannot be read whole (a bad sector, a hole in the mapping)
                // falls back to reading the one record.
                match read_runs(
                    &self.ctx,
                    self.geo.cluster,
                    &self.mft,
                    first * rs as u64,
                    &mut buf,
                    &what,
                ) {
                    Ok(()) => {
                        let buf = Arc::new(buf);
                        let mut state = self.lock();
                        if state.chunks.insert(chunk_no, buf.clone()).is_none() {
                            state.order.push_back(chunk_no);
                        }
                        while state.order.len() > CACHED_CHUNKS {
                            if let Some(old) = state.order.pop_front() {
                                state.chunks.remove(&old);
                            }
                        }
                        Some(buf)
                    }
                    Err(_) => None,
                }
            }
        };
        let bytes = match chunk {
            Some(c) => {
                let at = (n - chunk_no * RECORDS_PER_CHUNK) as usize * rs;
                c[at..at + rs].to_vec()
            }
            None => {
                let mut buf = vec![0u8; rs];
                let what = || format!("$MFT record {n}");
                read_runs(
                    &self.ctx,
                    self.geo.cluster,
                    &self.mft,
                    n * rs as u64,
                    &mut buf,
                    &what,
                )?;
                buf
            }
        };
        finish_record(&self.ctx, &self.geo, self.record_offset(n), bytes, n)
    }

    /// File `n`: its base record and the attributes of its extension records.
    fn load(&self, n: u64) -> Result<File, FsError> {
        let rec = self.record(n)?;
        let offset = self.record_offset(n);
        if rec.flags & record::RECORD_IN_USE == 0 {
            return Err(self.ctx.corrupt(
                offset,
                format!("MFT record {n} is not in use (a deleted file)"),
            ));
        }
        if rec.base != 0 {
            return Err(self.ctx.corrupt(
                offset,
                format!(
                    "MFT record {n} is an extension of record {}, not a file",
                    rec.base
                ),
            ));
        }
        let mut attrs = rec.attrs;
        if let Some(list) = attrs
            .iter()
            .find(|a| a.kind == record::ATTRIBUTE_LIST)
            .cloned()
        {
            let value = single_value(&self.ctx, &self.geo, &list, MAX_ATTRIBUTE_LIST, offset, n)?;
            let entries = record::parse_list(&value)
                .map_err(|e| self.ctx.corrupt(offset, format!("MFT record {n}: {e}")))?;
            // Each extension record once, whatever the list says (no loops).
            let extensions: BTreeSet<u64> = entries
                .iter()
                .map(|e| e.record)
                .filter(|&r| r != n)
                .collect();
            if extensions.len() > MAX_EXTENSION_RECORDS {
                return Err(self.ctx.corrupt(
                    offset,
                    format!(
                        "MFT record {n}: attribute list names {} extension records",
                        extensions.len()
                    ),
                ));
            }
            for r in extensions {
                let ext = self.record(r)?;
                if ext.flags & record::RECORD_IN_USE == 0 || ext.base != n {
                    return Err(self.ctx.corrupt(
                        offset,
                        format!(
                            "MFT record {n}: its attribute list names record {r}, which is not \
                             one of its extension records"
                        ),
                    ));
                }
                attrs.extend(
                    ext.attrs
                        .into_iter()
                        .filter(|a| a.kind != record::ATTRIBUTE_LIST),
                );
            }
        }
        let (attributes, mtime) = match attrs
            .iter()
            .find(|a| a.kind == record::STANDARD_INFORMATION)
            .map(|a| &a.body)
        {
            Some(Body::Resident(v)) if v.len() >= 0x24 => {
                (le32(v, 0x20), Some(le64(v, 0x08) as i64))
            }
            _ => (0, None),
        };
        Ok(File {
            number: n,
            flags: rec.flags,
            attributes,
            mtime,
            attrs,
        })
    }

    /// The bytes of a stream of at most `cap` bytes (zeros past its initialized size).
    fn stream_bytes(
        &self,
        file: &File,
        stream: Stream,
        cap: u64,
        what: &str,
    ) -> Result<Vec<u8>, FsError> {
        let offset = self.record_offset(file.number);
        match stream {
            Stream::Resident(v) => Ok(v),
            Stream::NonResident {
                size,
                initialized,
                compression_unit,
                runs,
            } => {
                if size > cap {
                    return Err(self.ctx.corrupt(
                        offset,
                        format!(
                            "MFT record {}: {what} of {size} bytes (at most {cap})",
                            file.number
                        ),
                    ));
                }
                if compression_unit != 0 {
                    return Err(self
                        .ctx
                        .unsupported(format!("MFT record {}: compressed {what}", file.number)));
                }
                let mut buf = vec![0u8; size as usize];
                let init = initialized.min(size) as usize;
                let name = || format!("MFT record {}: {what}", file.number);
                read_runs(
                    &self.ctx,
                    self.geo.cluster,
                    &runs,
                    0,
                    &mut buf[..init],
                    &name,
                )?;
                Ok(buf)
            }
        }
    }

    /// The reparse point's tag and data, when the file has one.
    fn reparse(&self, file: &File) -> Result<Option<(u32, Vec<u8>)>, FsError> {
        let offset = self.record_offset(file.number);
        let Some((stream, _)) = file.stream(&self.ctx, offset, record::REPARSE_POINT, &[])? else {
            return Ok(None);
        };
        let v = self.stream_bytes(file, stream, MAX_REPARSE, "reparse point")?;
        if v.len() < 8 {
            return Err(self.ctx.corrupt(
                offset,
                format!(
                    "MFT record {}: reparse point of {} bytes",
                    file.number,
                    v.len()
                ),
            ));
        }
        let len = usize::from(le16(&v, 4)).min(v.len() - 8);
        Ok(Some((le32(&v, 0), v[8..8 + len].to_vec())))
    }

    /// The target of an Interix symlink (a system file starting with `IntxLNK\1`, as
    /// ntfs-3g writes symlinks), when the file is one.
    fn interix_target(&self, file: &File) -> Result<Option<Vec<u16>>, FsError> {
        if file.attributes & FILE_ATTRIBUTE_SYSTEM == 0 || file.is_dir() {
            return Ok(None);
        }
        let offset = self.record_offset(file.number);
        let Some((stream, flags)) = file.stream(&self.ctx, offset, record::DATA, &[])? else {
            return Ok(None);
        };
        let size = stream.size();
        if !(10..=MAX_INTERIX).contains(&size)
            || flags & (record::ATTR_COMPRESSED | record::ATTR_ENCRYPTED) != 0
        {
            return Ok(None);
        }
        let v = self.stream_bytes(file, stream, MAX_INTERIX, "data")?;
        Ok(v.strip_prefix(&INTERIX_SYMLINK[..]).map(record::utf16))
    }

    /// What a file is.
    fn kind(&self, file: &File) -> Result<EntryKind, FsError> {
        if let Some((tag, _)) = self.reparse(file)? {
            if tag == TAG_SYMLINK || tag == TAG_MOUNT_POINT {
                return Ok(EntryKind::Symlink);
            }
        }
        if file.is_dir() {
            return Ok(EntryKind::Directory);
        }
        if self.interix_target(file)?.is_some() {
            return Ok(EntryKind::Symlink);
        }
        Ok(EntryKind::File)
    }

    /// Kind, size and mtime of file `n`, for its directory entries.
    fn describe(&self, n: u64) -> Result<(EntryKind, u64, Option<Timestamp>), FsError> {
        let file = self.load(n)?;
        let kind = self.kind(&file)?;
        let size = if kind == EntryKind::File {
            file.stream(&self.ctx, self.record_offset(n), record::DATA, &[])?
                .map_or(0, |(s, _)| s.size())
        } else {
            0
        };
        Ok((kind, size, file.mtime.map(timestamp)))
    }

    /// How to read file `id`, from the cache or its record.
    fn layout(&self, id: EntryId) -> Result<Arc<Layout>, FsError> {
        if let Some((_, l)) = self.lock().layouts.iter().find(|(i, _)| *i == id) {
            return Ok(l.clone());
        }
        let file = self.load(id)?;
        if file.is_dir() {
            return Err(FsError::WrongKind {
                device: self.ctx.device.clone(),
                id,
                expected: "a file",
            });
        }
        let layout = Arc::new(self.file_layout(&file)?);
        let mut state = self.lock();
        state.layouts.push_back((id, layout.clone()));
        while state.layouts.len() > CACHED_LAYOUTS {
            state.layouts.pop_front();
        }
        Ok(layout)
    }

    fn file_layout(&self, file: &File) -> Result<Layout, FsError> {
        let n = file.number;
        let offset = self.record_offset(n);
        let encrypted = || {
            self.ctx.unsupported(format!(
                "MFT record {n}: EFS-encrypted file; its data cannot be read without the \
                 owner's key (copy it decrypted from Windows)"
            ))
        };
        if file.attributes & FILE_ATTRIBUTE_ENCRYPTED != 0 {
            return Err(encrypted());
        }
        // Reading these through the unnamed stream would give zeros, silently.
        match self.reparse(file)? {
            Some((TAG_WOF, _)) => {
                return Err(self.ctx.unsupported(format!(
                    "MFT record {n}: compressed by Windows (WOF, `compact /exe`); decompress \
                     it on Windows (`compact /u /exe`) first"
                )))
            }
            Some((TAG_DEDUP, _)) => {
                return Err(self.ctx.unsupported(format!(
                    "MFT record {n}: deduplicated by Windows Server; its data is in the \
                     volume's chunk store"
                )))
            }
            _ => {}
        }
        let Some((stream, flags)) = file.stream(&self.ctx, offset, record::DATA, &[])? else {
            return Ok(Layout::Resident(Vec::new()));
        };
        if flags & record::ATTR_ENCRYPTED != 0 {
            return Err(encrypted());
        }
        match stream {
            Stream::Resident(v) => Ok(Layout::Resident(v)),
            Stream::NonResident {
                size,
                initialized,
                compression_unit,
                runs,
            } => {
                if compression_unit != 0 {
                    let unit = 1u64 << compression_unit.min(32);
                    if compression_unit > 16 || unit * self.geo.cluster > MAX_UNIT_BYTES {
                        return Err(self.ctx.unsupported(format!(
                            "MFT record {n}: compression unit of 2^{compression_unit} clusters"
                        )));
                    }
                    return Ok(Layout::Compressed {
                        size,
                        initialized,
                        unit,
                        runs,
                    });
                }
                let extents = build_extents(&runs, size, initialized, self.geo.cluster)
                    .map_err(|e| self.ctx.corrupt(offset, format!("MFT record {n}: {e}")))?;
                Ok(Layout::Extents { size, extents })
            }
        }
    }

    /// Reads `buf` from byte `offset` of extents.
    fn read_extents(&self, extents: &[Extent], offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let mut i = extents.partition_point(|e| e.logical + e.length <= offset);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let Some(e) = extents.get(i) else {
                return Err(self
                    .ctx
                    .corrupt(0, format!("byte {pos} is past the file's extents")));
            };
            let in_ext = pos - e.logical;
            let n = (buf.len() - done).min((e.length - in_ext) as usize);
            let out = &mut buf[done..done + n];
            match e.kind {
                ExtentKind::Data => self.ctx.source.read_exact_at(e.physical + in_ext, out)?,
                ExtentKind::Hole | ExtentKind::Zero => out.fill(0),
            }
            done += n;
            i += 1;
        }
        Ok(())
    }

    /// Reads `buf` from byte `offset` of a compressed stream, one unit at a time.
    fn read_compressed(
        &self,
        id: EntryId,
        runs: &[Run],
        unit: u64,
        initialized: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        let unit_bytes = unit * self.geo.cluster;
        let mut unit_buf = vec![0u8; unit_bytes as usize];
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let u = pos / unit_bytes;
            let in_unit = (pos - u * unit_bytes) as usize;
            let n = (buf.len() - done).min(unit_bytes as usize - in_unit);
            let out = &mut buf[done..done + n];
            if pos >= initialized {
                out.fill(0);
            } else {
                self.decode_unit(id, runs, unit, u, &mut unit_buf)?;
                out.copy_from_slice(&unit_buf[in_unit..in_unit + n]);
                // Zeros from the initialized size on.
                let valid = (initialized - pos).min(n as u64) as usize;
                out[valid..].fill(0);
            }
            done += n;
        }
        Ok(())
    }

    /// Decodes compression unit `u` into `out`: all sparse gives zeros, all allocated is
    /// stored as is, anything between is LZNT1 in the allocated clusters.
    fn decode_unit(
        &self,
        id: EntryId,
        runs: &[Run],
        unit: u64,
        u: u64,
        out: &mut [u8],
    ) -> Result<(), FsError> {
        let cs = self.geo.cluster;
        let start = u * unit;
        let end = start + unit;
        out.fill(0);
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let mut i = runs.partition_point(|r| r.end() <= start);
        while let Some(r) = runs.get(i).filter(|r| r.vcn < end) {
            if let Some(lcn) = r.lcn {
                let from = r.vcn.max(start);
                let to = r.end().min(end);
                pieces.push((lcn + (from - r.vcn), to - from));
            }
            i += 1;
        }
        let allocated: u64 = pieces.iter().map(|p| p.1).sum();
        if allocated == 0 {
            return Ok(());
        }
        let mut data = if allocated == unit {
            out.to_vec()
        } else {
            vec![0u8; (allocated * cs) as usize]
        };
        let mut at = 0usize;
        for (lcn, len) in pieces {
            let n = (len * cs) as usize;
            self.ctx
                .source
                .read_exact_at(lcn * cs, &mut data[at..at + n])?;
            at += n;
        }
        if allocated == unit {
            out.copy_from_slice(&data);
            return Ok(());
        }
        lznt1::decompress(&data, out).map_err(|e| {
            self.ctx.corrupt(
                self.record_offset(id),
                format!("MFT record {id}: compression unit {u}: {e}"),
            )
        })
    }

    fn problem(&self, what: String) {
        let mut state = self.lock();
        if state.problems.len() < MAX_PROBLEMS {
            state.problems.push(what);
        }
    }
}

/// Maps `$MFT`: its record 0, read where the boot sector says, then the extension records
/// its attribute list names (each must lie in the part of `$MFT` already mapped).
fn map_mft(ctx: &Ctx, geo: &Geometry) -> Result<(Vec<Run>, u64), FsError> {
    let offset = geo.mft_lcn * geo.cluster;
    let mut buf = vec![0u8; geo.record_size];
    ctx.source.read_exact_at(offset, &mut buf)?;
    let rec0 = finish_record(ctx, geo, offset, buf, 0)?;
    let data_of = |rec: &Record| -> Vec<record::NonResident> {
        let mut v: Vec<_> = rec
            .attrs
            .iter()
            .filter(|a| a.kind == record::DATA && a.name.is_empty())
            .filter_map(|a| match &a.body {
                Body::NonResident(nr) => Some(nr.clone()),
                Body::Resident(_) => None,
            })
            .collect();
        v.sort_by_key(|nr| nr.start_vcn);
        v
    };
    let first = data_of(&rec0);
    let Some(head) = first.first().filter(|nr| nr.start_vcn == 0) else {
        return Err(ctx.corrupt(offset, "MFT record 0 ($MFT) has no $DATA starting at VCN 0"));
    };
    let size = head.size;
    let mut runs: Vec<Run> = Vec::new();
    let mut next_vcn = 0u64;
    let mut add = |nr: &record::NonResident, runs: &mut Vec<Run>| -> Result<(), FsError> {
        if nr.start_vcn != next_vcn {
            return Err(ctx.corrupt(
                offset,
                format!(
                    "$MFT's $DATA instance starts at VCN {} where VCN {next_vcn} was expected",
                    nr.start_vcn
                ),
            ));
        }
        runs.extend_from_slice(&nr.runs);
        next_vcn = nr.last_vcn.saturating_add(1);
        Ok(())
    };
    for nr in &first {
        add(nr, &mut runs)?;
    }
    if let Some(list) = rec0.attrs.iter().find(|a| a.kind == record::ATTRIBUTE_LIST) {
        let value = single_value(ctx, geo, list, MAX_ATTRIBUTE_LIST, offset, 0)?;
        let mut entries = record::parse_list(&value)
            .map_err(|e| ctx.corrupt(offset, format!("MFT record 0: {e}")))?;
        entries.retain(|e| e.kind == record::DATA && e.name.is_empty() && e.record != 0);
        entries.sort_by_key(|e| e.start_vcn);
        let mut seen = HashSet::new();
        for e in entries {
            if !seen.insert(e.record) {
                continue;
            }
            let mut buf = vec![0u8; geo.record_size];
            let what = || format!("$MFT (extension record {})", e.record);
            read_runs(
                ctx,
                geo.cluster,
                &runs,
                e.record.saturating_mul(geo.record_size as u64),
                &mut buf,
                &what,
            )?;
            let ext = finish_record(ctx, geo, offset, buf, e.record)?;
            if ext.base != 0 {
                return Err(ctx.corrupt(
                    offset,
                    format!("MFT record {} is not an extension of $MFT", e.record),
                ));
            }
            for nr in &data_of(&ext) {
                add(nr, &mut runs)?;
            }
        }
    }
    let records = size / geo.record_size as u64;
    if records <= ROOT_ID
        || records > MAX_MFT_RECORDS
        || size > geo.clusters.saturating_mul(geo.cluster)
    {
        return Err(ctx.corrupt(offset, format!("$MFT of {size} bytes")));
    }
    Ok((runs, records))
}

/// The value of one attribute instance of record `n` (not joined with other instances: for
/// attribute lists, which are never split).
fn single_value(
    ctx: &Ctx,
    geo: &Geometry,
    attr: &Attr,
    cap: u64,
    offset: u64,
    n: u64,
) -> Result<Vec<u8>, FsError> {
    match &attr.body {
        Body::Resident(v) => Ok(v.clone()),
        Body::NonResident(nr) => {
            if nr.start_vcn != 0 || nr.size > cap {
                return Err(ctx.corrupt(
                    offset,
                    format!(
                        "MFT record {n}: attribute {:#x} of {} bytes from VCN {}",
                        attr.kind, nr.size, nr.start_vcn
                    ),
                ));
            }
            let mut buf = vec![0u8; nr.size as usize];
            let init = nr.initialized.min(nr.size) as usize;
            let what = || format!("MFT record {n}: attribute {:#x}", attr.kind);
            read_runs(ctx, geo.cluster, &nr.runs, 0, &mut buf[..init], &what)?;
            Ok(buf)
        }
    }
}

/// Byte extents of an uncompressed stream of `size` bytes mapped by `runs`: sparse runs are
/// holes, bytes past `initialized` are zeros.
fn build_extents(
    runs: &[Run],
    size: u64,
    initialized: u64,
    cluster: u64,
) -> Result<Vec<Extent>, String> {
    let mut out: Vec<Extent> = Vec::new();
    let mut push = |e: Extent| {
        if e.length == 0 {
            return;
        }
        if let Some(last) = out.last_mut() {
            let joins = last.kind == e.kind
                && (e.kind != ExtentKind::Data || last.physical + last.length == e.physical);
            if joins && last.logical + last.length == e.logical {
                last.length += e.length;
                return;
            }
        }
        out.push(e);
    };
    let mut next_vcn = 0u64;
    for r in runs {
        if r.vcn != next_vcn {
            return Err(format!("runlist jumps from VCN {next_vcn} to {}", r.vcn));
        }
        next_vcn = r.end();
        let logical = r.vcn * cluster;
        if logical >= size {
            break;
        }
        let length = (r.len * cluster).min(size - logical);
        match r.lcn {
            None => push(Extent {
                logical,
                physical: 0,
                length,
                kind: ExtentKind::Hole,
            }),
            Some(lcn) => {
                let data = initialized.saturating_sub(logical).min(length);
                push(Extent {
                    logical,
                    physical: lcn * cluster,
                    length: data,
                    kind: ExtentKind::Data,
                });
                push(Extent {
                    logical: logical + data,
                    physical: 0,
                    length: length - data,
                    kind: ExtentKind::Zero,
                });
            }
        }
    }
    if next_vcn.saturating_mul(cluster) < size {
        return Err(format!(
            "runlist maps {} of {size} bytes",
            next_vcn.saturating_mul(cluster)
        ));
    }
    Ok(out)
}

impl FileSystem for NtfsFs {
    fn fs_type(&self) -> FsType {
        FsType::Ntfs
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn root(&self) -> EntryId {
        ROOT_ID
    }

    fn read_dir(&self, dir: EntryId) -> Result<Vec<DirEntry>, FsError> {
        let file = self.load(dir)?;
        if !file.is_dir() {
            return Err(FsError::WrongKind {
                device: self.ctx.device.clone(),
                id: dir,
                expected: "a directory",
            });
        }
        let offset = self.record_offset(dir);
        let corrupt = |what: String| {
            self.ctx
                .corrupt(offset, format!("MFT record {dir}: {what}"))
        };
        let Some((Stream::Resident(root), _)) =
            file.stream(&self.ctx, offset, record::INDEX_ROOT, &I30)?
        else {
            return Err(corrupt("directory without a resident $INDEX_ROOT".into()));
        };
        let block = u64::from(le32(&root, 8));
        let node =
            index::parse_node(&root, 0x10).map_err(|e| corrupt(format!("$INDEX_ROOT: {e}")))?;
        let mut entries = node.entries;
        if !node.children.is_empty() {
            let Some((
                Stream::NonResident {
                    size,
                    initialized: _,
                    compression_unit: _,
                    runs,
                },
                _,
            )) = file.stream(&self.ctx, offset, record::INDEX_ALLOCATION, &I30)?
            else {
                return Err(corrupt(
                    "index has child nodes but no $INDEX_ALLOCATION".into(),
                ));
            };
            if !(512..=65536).contains(&block) || !block.is_power_of_two() {
                return Err(corrupt(format!("index blocks of {block} bytes")));
            }
            let Some((bitmap, _)) = file.stream(&self.ctx, offset, record::BITMAP, &I30)? else {
                return Err(corrupt("index without a $BITMAP".into()));
            };
            let bitmap = self.stream_bytes(&file, bitmap, MAX_SMALL_VALUE, "index $BITMAP")?;
            let vcn_unit = if block >= self.geo.cluster {
                self.geo.cluster
            } else {
                512
            };
            let mut visited = HashSet::new();
            let mut stack: Vec<u64> = node.children.into_iter().rev().collect();
            let mut buf = vec![0u8; block as usize];
            while let Some(vcn) = stack.pop() {
                let byte = vcn.checked_mul(vcn_unit).filter(|b| {
                    b % block == 0 && b.checked_add(block).is_some_and(|end| end <= size)
                });
                let Some(byte) = byte else {
                    return Err(corrupt(format!(
                        "index node at VCN {vcn} is outside $INDEX_ALLOCATION ({size} bytes)"
                    )));
                };
                let idx = byte / block;
                let in_use = bitmap
                    .get((idx / 8) as usize)
                    .is_some_and(|b| b >> (idx % 8) & 1 != 0);
                if !in_use {
                    return Err(corrupt(format!(
                        "index node at VCN {vcn} is marked free in the index $BITMAP"
                    )));
                }
                if !visited.insert(idx) {
                    return Err(corrupt(format!(
                        "index node at VCN {vcn} is reached twice (a cycle in the index)"
                    )));
                }
                let name = || format!("MFT record {dir}: $INDEX_ALLOCATION");
                read_runs(&self.ctx, self.geo.cluster, &runs, byte, &mut buf, &name)?;
                record::apply_fixups(&mut buf, b"INDX")
                    .map_err(|e| corrupt(format!("index node at VCN {vcn}: {e}")))?;
                if le64(&buf, 0x10) != vcn {
                    return Err(corrupt(format!(
                        "index node at VCN {vcn} says it is VCN {}",
                        le64(&buf, 0x10)
                    )));
                }
                let node = index::parse_node(&buf, 0x18)
                    .map_err(|e| corrupt(format!("index node at VCN {vcn}: {e}")))?;
                entries.extend(node.entries);
                stack.extend(node.children.into_iter().rev());
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if e.namespace == index::NAMESPACE_DOS
                || e.record == dir
                || (dir == ROOT_ID && e.record < FIRST_USER_RECORD)
            {
                continue;
            }
            let (kind, size, mtime) = match self.describe(e.record) {
                Ok(d) => d,
                Err(err) => {
                    // Listed from the index's copy of the name's metadata, so the entry is
                    // not silently lost: reading it gives the error again.
                    self.problem(format!("{}: {err}", String::from_utf16_lossy(&e.name)));
                    let kind = if e.attributes & FILE_NAME_DIRECTORY != 0 {
                        EntryKind::Directory
                    } else {
                        EntryKind::File
                    };
                    let size = if kind == EntryKind::File { e.size } else { 0 };
                    (kind, size, Some(timestamp(e.mtime)))
                }
            };
            out.push(DirEntry {
                id: e.record,
                parent: dir,
                name: RawName::Utf16(e.name),
                kind,
                size,
                mtime,
            });
        }
        Ok(out)
    }

    fn extents(&self, id: EntryId) -> Result<Vec<Extent>, FsError> {
        match &*self.layout(id)? {
            Layout::Extents { extents, .. } => Ok(extents.clone()),
            Layout::Resident(v) if v.is_empty() => Ok(Vec::new()),
            Layout::Resident(_) => Err(self.ctx.unsupported(format!(
                "MFT record {id}: data stored inside the MFT record has no extents; use read"
            ))),
            Layout::Compressed { .. } => Err(self.ctx.unsupported(format!(
                "MFT record {id}: LZNT1-compressed data has no plain extents; use read"
            ))),
        }
    }

    fn read(&self, id: EntryId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let layout = self.layout(id)?;
        let size = layout.size();
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - offset) as usize;
        let out = &mut buf[..n];
        match &*layout {
            Layout::Resident(v) => out.copy_from_slice(&v[offset as usize..offset as usize + n]),
            Layout::Extents { extents, .. } => self.read_extents(extents, offset, out)?,
            Layout::Compressed {
                initialized,
                unit,
                runs,
                ..
            } => self.read_compressed(id, runs, *unit, *initialized, offset, out)?,
        }
        Ok(n)
    }

    fn read_link(&self, id: EntryId) -> Result<Vec<u8>, FsError> {
        let file = self.load(id)?;
        if let Some((tag, data)) = self.reparse(&file)? {
            // Symlinks have a flags word before the path buffer; junctions do not.
            let buffer = match tag {
                TAG_SYMLINK => 12,
                TAG_MOUNT_POINT => 8,
                _ => 0,
            };
            if buffer != 0 {
                let name = |off: usize, len: usize| {
                    data.get(buffer + off..buffer + off + len)
                        .map(record::utf16)
                };
                let substitute = name(usize::from(le16(&data, 0)), usize::from(le16(&data, 2)));
                let print = name(usize::from(le16(&data, 4)), usize::from(le16(&data, 6)));
                let relative = tag == TAG_SYMLINK && le32(&data, 8) & 1 != 0;
                let target = if relative {
                    // A relative target reads as a POSIX path, as ntfs-3g shows it.
                    substitute.map(|s| {
                        s.into_iter()
                            .map(|u| {
                                if u == u16::from(b'\\') {
                                    u16::from(b'/')
                                } else {
                                    u
                                }
                            })
                            .collect()
                    })
                } else {
                    print.filter(|p| !p.is_empty()).or(substitute)
                };
                return target.map(|t| RawName::Utf16(t).to_bytes()).ok_or_else(|| {
                    self.ctx.corrupt(
                        self.record_offset(id),
                        format!("MFT record {id}: reparse point names outside its data"),
                    )
                });
            }
        }
        if let Some(target) = self.interix_target(&file)? {
            return Ok(RawName::Utf16(target).to_bytes());
        }
        Err(FsError::WrongKind {
            device: self.ctx.device.clone(),
            id,
            expected: "a symlink",
        })
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = self.warnings.clone();
        out.extend(self.lock().problems.iter().cloned());
        out
    }

    fn streams(&self, id: EntryId) -> Result<Vec<String>, FsError> {
        let file = self.load(id)?;
        let mut names: Vec<String> = Vec::new();
        for a in file
            .attrs
            .iter()
            .filter(|a| a.kind == record::DATA && !a.name.is_empty())
        {
            let name = String::from_utf16_lossy(&a.name);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_split_at_the_initialized_size_and_keep_holes() {
        let runs = [
            Run {
                vcn: 0,
                lcn: Some(100),
                len: 4,
            },
            Run {
                vcn: 4,
                lcn: None,
                len: 2,
            },
            Run {
                vcn: 6,
                lcn: Some(200),
                len: 4,
            },
        ];
        let e =
            build_extents(&runs, 9 * 4096 + 10, 7 * 4096, 4096).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<_> = e.iter().map(|e| (e.logical, e.length, e.kind)).collect();
        assert_eq!(
            got,
            vec![
                (0, 4 * 4096, ExtentKind::Data),
                (4 * 4096, 2 * 4096, ExtentKind::Hole),
                (6 * 4096, 4096, ExtentKind::Data),
                (7 * 4096, 2 * 4096 + 10, ExtentKind::Zero),
            ]
        );
        assert_eq!(e[2].physical, 200 * 4096);
        assert!(build_extents(&runs, 11 * 4096, 0, 4096).is_err());
        assert!(build_extents(&runs[1..], 4096, 0, 4096).is_err());
    }

    #[test]
    fn times_count_100ns_from_1601() {
        let t = timestamp((EPOCH_1601 + 1_000_000_000) * 10_000_000 + 1234);
        assert_eq!((t.seconds, t.nanos), (1_000_000_000, 123_400));
        let t = timestamp(0);
        assert_eq!(t.seconds, -EPOCH_1601);
    }
}
