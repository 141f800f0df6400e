//! HFS+ and HFSX, read in userspace by our own reader of the catalog B-tree.
//!
//! Why not the `hfsplus` crate: it addresses files by path string (a name holding `/` cannot be
//! reached), streams only a file's eight inline extents, does not resolve hard links, and turns
//! names into lossy `String`s. What it would still give us (the B-tree walk) is the part that
//! must be hardened against hostile input anyway, so the whole reader is here: every length
//! read from the disk is capped, every node number checked, every chain walk bounded.
//!
//! - Entry ids are CNIDs; the root folder is 2. A hard-linked file is listed with the CNID of
//!   its indirect node (`iNode<N>` in `\0\0\0\0HFS+ Private Data`), so all its links share one
//!   id, as hard links do on ext; a directory hard link is listed with the CNID of its target
//!   (`dir_<N>` in `.HFS+ Private Directory Data\r`), which the walker reports as a cycle when
//!   it reaches the same directory twice.
//! - **Names stay exactly as stored: UTF-16 in Apple's decomposed form (NFD)**, as
//!   [`RawName::Utf16`]. A customer copying from a Mac expects the bytes the Mac wrote, and S3
//!   keys are bytes: normalising to NFC would make keys that match no file the Mac shows, and
//!   two names that differ only in normalisation could collide. `café` therefore arrives as
//!   `cafe\u{301}`.
//!   The one change is the one macOS's own POSIX layer makes: a `/` stored in a catalog name
//!   (what the Finder shows for a name typed with `:`) is listed as `:`, as `ls` on the Mac
//!   shows it, so a name never splits a path or an S3 key.
//! - The metadata macOS hides is not listed: the two private hard-link directories and, on a
//!   journaled volume, `/.journal` and `/.journal_info_block`.
//! - File data is located through the fork's extents (the eight in the catalog record, then
//!   the extents overflow file), merged into byte runs, so a large read is one positional read
//!   per run. The catalog and attributes files may themselves have overflow extents.
//! - decmpfs-compressed files (see [`decmpfs`]) are read through [`FileSystem::read`], which
//!   decompresses only the 64 KiB chunks a read touches; [`FileSystem::extents`] refuses them
//!   (their stored bytes are not the file's bytes).
//! - A journal with transactions is replayed in memory, read-only: the blocks its
//!   transactions write replace the disk's bytes in every metadata read (HFS+ journals
//!   metadata only, so file extents stay valid), and [`FileSystem::warnings`] says so. A
//!   journal that cannot be replayed (bad checksum, lengths out of range) is reported and the
//!   volume is read as last checkpointed.
//! - A volume inside an HFS wrapper (the embedded-volume layout of old Mac OS) is found
//!   through the wrapper's master directory block.

mod btree;
mod catalog;
mod decmpfs;
mod volume;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use self::btree::Tree;
use self::catalog::{cmp_attr, cmp_cat, cmp_extent, extent_record, CatKey, Record};
use self::volume::{fork_runs, read_data_runs, read_runs, ForkData, Run, Vol};
use super::{
    DirEntry, EntryId, EntryKind, Extent, ExtentKind, FileSystem, FsError, FsType, RawName,
    Timestamp, Zone,
};
use crate::source::ReadAt;

/// The root folder's CNID.
const ROOT_ID: u32 = 2;
/// Fixed CNIDs of the special files.
const CATALOG_FILE_ID: u32 = 4;
const ATTRIBUTES_FILE_ID: u32 = 8;
/// Fork types in extents-overflow keys.
const DATA_FORK: u8 = 0x00;
const RESOURCE_FORK: u8 = 0xFF;
/// Seconds from 1904-01-01 (HFS+) to 1970-01-01 (Unix).
const HFS_EPOCH_OFFSET: i64 = 2_082_844_800;
/// Most entries one directory may have before it is refused as corrupt.
const MAX_DIR_ENTRIES: usize = 10_000_000;
/// Entries whose metadata is cached (filled by listings) before the cache is emptied.
const CACHED_INFOS: usize = 1_000_000;
/// Files whose runs (or decompression state) are kept.
const CACHED_FILES: usize = 32;
/// Longest symlink target read.
const MAX_LINK: u64 = 64 * 1024;
/// Largest extended attribute read.
const MAX_XATTR: u64 = 16 << 20;
/// Problems kept for [`FileSystem::warnings`].
const MAX_PROBLEMS: usize = 1000;

/// A big-endian `u16` at `off`, 0 past the end of `b`.
fn be16(b: &[u8], off: usize) -> u16 {
    b.get(off..off.saturating_add(2))
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

/// A big-endian `u32` at `off`, 0 past the end of `b`.
fn be32(b: &[u8], off: usize) -> u32 {
    b.get(off..off.saturating_add(4))
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A big-endian `u64` at `off`, 0 past the end of `b`.
fn be64(b: &[u8], off: usize) -> u64 {
    b.get(off..off.saturating_add(8)).map_or(0, |s| {
        u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
    })
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// What the reader knows about one entry.
#[derive(Debug, Clone)]
struct Info {
    kind: EntryKind,
    size: u64,
    mtime: Option<Timestamp>,
    data: ForkData,
    rsrc: ForkData,
    /// The decmpfs header of a compressed file.
    compressed: Option<decmpfs::Header>,
}

/// A compressed file's bytes, or how to get them.
enum Compressed {
    Whole(Vec<u8>),
    Chunks {
        rsrc: Vec<Run>,
        table: Vec<(u64, u32)>,
    },
}

/// Caches, behind one lock.
#[derive(Default)]
struct State {
    infos: HashMap<u32, Arc<Info>>,
    runs: VecDeque<(u32, Arc<Vec<Run>>)>,
    compressed: VecDeque<(u32, Arc<Compressed>)>,
    /// The last decompressed chunk: file, chunk index, bytes.
    chunk: Option<(u32, usize, Arc<Vec<u8>>)>,
    problems: Vec<String>,
}

/// An HFS+ or HFSX volume read through a [`ReadAt`] source.
pub struct HfsFs {
    vol: Vol,
    fs_type: FsType,
    label: Option<String>,
    catalog: Tree,
    extents: Option<Tree>,
    attributes: Option<Tree>,
    /// `\0\0\0\0HFS+ Private Data` (file hard links' indirect nodes).
    file_links: Option<u32>,
    /// `.HFS+ Private Directory Data\r` (directory hard links' targets).
    dir_links: Option<u32>,
    /// Root entries macOS hides (the private directories, the journal files).
    hidden: Vec<u32>,
    warnings: Vec<String>,
    state: Mutex<State>,
}

impl std::fmt::Debug for HfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfsFs")
            .field("device", &self.vol.device)
            .field("fs_type", &self.fs_type)
            .field("block_size", &self.vol.block_size)
            .finish_non_exhaustive()
    }
}

impl HfsFs {
    /// Opens the HFS+ or HFSX volume on `source` (directly, or inside an HFS wrapper).
    ///
    /// # Errors
    ///
    /// No HFS+ volume header, or the B-tree files it names are unreadable or corrupt.
    pub fn open(source: Arc<dyn ReadAt>) -> Result<HfsFs, FsError> {
        let (vol, header, warnings) = volume::open(source)?;
        // The extents overflow file's own extents are all in the header.
        let ext_runs = fork_runs(&vol, &header.extents_file, "extents overflow file", |_| {
            Ok(None)
        })?;
        let extents = if header.extents_file.logical_size == 0 {
            None
        } else {
            Some(Tree::open(&vol, "extents overflow", ext_runs)?)
        };
        let overflow = |file: u32, fork: u8| {
            let vol = &vol;
            let tree = extents.as_ref();
            move |start: u32| overflow_record(vol, tree, file, fork, start)
        };
        let cat_runs = fork_runs(
            &vol,
            &header.catalog_file,
            "catalog file",
            overflow(CATALOG_FILE_ID, DATA_FORK),
        )?;
        let catalog = Tree::open(&vol, "catalog", cat_runs)?;
        let attributes = if header.attributes_file.logical_size == 0 {
            None
        } else {
            let runs = fork_runs(
                &vol,
                &header.attributes_file,
                "attributes file",
                overflow(ATTRIBUTES_FILE_ID, DATA_FORK),
            )?;
            Some(Tree::open(&vol, "attributes", runs)?)
        };
        let fs_type = if header.hfsx {
            FsType::Hfsx
        } else {
            FsType::HfsPlus
        };
        let mut fs = HfsFs {
            vol,
            fs_type,
            label: None,
            catalog,
            extents,
            attributes,
            file_links: None,
            dir_links: None,
            hidden: Vec::new(),
            warnings,
            state: Mutex::new(State::default()),
        };
        fs.label = match fs.thread(ROOT_ID)? {
            Some((true, _, name)) => Some(String::from_utf16_lossy(&name)),
            _ => {
                return Err(fs.vol.corrupt(
                    0,
                    "catalog: the root folder (CNID 2) has no folder thread record",
                ))
            }
        };
        let folder_id = |r: Option<Record>| match r {
            Some(Record::Folder { id, .. }) => Some(id),
            _ => None,
        };
        fs.file_links = folder_id(fs.lookup_name(ROOT_ID, &utf16("\0\0\0\0HFS+ Private Data"))?);
        fs.dir_links =
            folder_id(fs.lookup_name(ROOT_ID, &utf16(".HFS+ Private Directory Data\r"))?);
        fs.hidden.extend(fs.file_links);
        fs.hidden.extend(fs.dir_links);
        if header.attributes & (1 << 13) != 0 {
            for name in [".journal", ".journal_info_block"] {
                if let Some(Record::File { id, .. }) = fs.lookup_name(ROOT_ID, &utf16(name))? {
                    fs.hidden.push(id);
                }
            }
        }
        Ok(fs)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only caches behind, which stay consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wrong_kind(&self, id: EntryId, expected: &'static str) -> FsError {
        FsError::WrongKind {
            device: self.vol.device.clone(),
            id,
            expected,
        }
    }

    fn problem(&self, what: String) {
        let mut state = self.lock();
        if state.problems.len() < MAX_PROBLEMS {
            state.problems.push(what);
        }
    }

    /// The thread record of `cnid`: whether it is a folder, its parent and its name.
    fn thread(&self, cnid: u32) -> Result<Option<(bool, u32, Vec<u16>)>, FsError> {
        let binary = self.catalog.binary_compare;
        let data = self
            .catalog
            .lookup(&self.vol, &|k| cmp_cat(k, cnid, &[], binary))?;
        Ok(match data.as_deref().and_then(Record::parse) {
            Some(Record::Thread {
                folder,
                parent,
                name,
            }) => Some((folder, parent, name)),
            _ => None,
        })
    }

    /// Calls `f(name, record)` for every record keyed under `parent` (the thread record comes
    /// first, with an empty name), from the first key `>= (parent, from)`.
    fn scan(
        &self,
        parent: u32,
        from: &[u16],
        f: &mut dyn FnMut(Vec<u16>, Option<Record>) -> Result<bool, FsError>,
    ) -> Result<(), FsError> {
        let binary = self.catalog.binary_compare;
        let Some(leaf) = self
            .catalog
            .find_leaf(&self.vol, &|k| cmp_cat(k, parent, from, binary))?
        else {
            return Ok(());
        };
        self.catalog.walk_leaves(&self.vol, leaf, &mut |key, data| {
            let Some(key) = CatKey::parse(key) else {
                return Err(self.vol.corrupt(0, "catalog: malformed key in a leaf node"));
            };
            if key.parent < parent {
                return Ok(true);
            }
            if key.parent > parent {
                return Ok(false);
            }
            f(key.name, Record::parse(data))
        })
    }

    /// The record named `name` in folder `parent`. The descent uses HFS+ name order. Where
    /// that order is exactly ours (HFSX's binary order; ASCII names in the private hard-link
    /// directories, which hold only `iNode<N>` and `dir_<N>`), the scan stops past the name;
    /// elsewhere a miss (a name our simplified case folding orders differently) falls back to
    /// a scan of the whole folder.
    fn lookup_name(&self, parent: u32, name: &[u16]) -> Result<Option<Record>, FsError> {
        let binary = self.catalog.binary_compare;
        let private = Some(parent) == self.file_links || Some(parent) == self.dir_links;
        let exact = binary || (private && name.iter().all(|&u| (1..0x80).contains(&u)));
        for from in [name, &[]] {
            let mut found = None;
            self.scan(parent, from, &mut |n, rec| {
                if n == name {
                    found = rec;
                    return Ok(false);
                }
                Ok(!exact || catalog::cmp_names(&n, name, binary) == std::cmp::Ordering::Less)
            })?;
            if found.is_some() || exact || from.is_empty() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The file or folder record of `cnid`, through its thread record.
    fn record(&self, cnid: u32) -> Result<Option<Record>, FsError> {
        let Some((_, parent, name)) = self.thread(cnid)? else {
            return Ok(None);
        };
        Ok(self.lookup_name(parent, &name)?.filter(|r| match r {
            Record::Folder { id, .. } | Record::File { id, .. } => *id == cnid,
            Record::Thread { .. } => false,
        }))
    }

    /// A hard link's target: record `prefix<n>` in the private directory `dir`.
    fn link_target(&self, dir: Option<u32>, prefix: &str, n: u32) -> Result<Record, FsError> {
        let name = format!("{prefix}{n}");
        let found = match dir {
            Some(dir) => self.lookup_name(dir, &utf16(&name))?,
            None => None,
        };
        found.ok_or_else(|| {
            self.vol.corrupt(
                0,
                format!("hard link to {name}: no such entry in the private metadata directory"),
            )
        })
    }

    /// Follows a hard link: the record the entry stands for.
    fn resolve(&self, rec: Record) -> Result<Record, FsError> {
        if let Record::File {
            kind_code,
            creator,
            bsd,
            ..
        } = &rec
        {
            match (kind_code, creator) {
                (b"hlnk", b"hfs+") => {
                    return self.link_target(self.file_links, "iNode", bsd.special);
                }
                (b"fdrp", b"MACS") => {
                    let target = self.link_target(self.dir_links, "dir_", bsd.special)?;
                    return match target {
                        Record::Folder { .. } => Ok(target),
                        _ => Err(self.vol.corrupt(
                            0,
                            format!("directory hard link dir_{} is not a folder", bsd.special),
                        )),
                    };
                }
                _ => {}
            }
        }
        Ok(rec)
    }

    /// The id and metadata of a (resolved) file or folder record.
    fn info_of(&self, rec: &Record) -> Result<(u32, Info), FsError> {
        let mtime = |t: u32| {
            (t != 0).then(|| Timestamp {
                seconds: i64::from(t) - HFS_EPOCH_OFFSET,
                nanos: 0,
                zone: Zone::Utc,
            })
        };
        match rec {
            Record::Folder { id, mtime: t, .. } => Ok((
                *id,
                Info {
                    kind: EntryKind::Directory,
                    size: 0,
                    mtime: mtime(*t),
                    data: ForkData::default(),
                    rsrc: ForkData::default(),
                    compressed: None,
                },
            )),
            Record::File {
                id,
                mtime: t,
                bsd,
                data,
                rsrc,
                ..
            } => {
                let kind = match bsd.mode & 0o170_000 {
                    0o120_000 => EntryKind::Symlink,
                    0o060_000 => EntryKind::BlockDevice,
                    0o020_000 => EntryKind::CharDevice,
                    0o010_000 => EntryKind::Fifo,
                    0o140_000 => EntryKind::Socket,
                    _ => EntryKind::File,
                };
                let mut info = Info {
                    kind,
                    size: if kind == EntryKind::File || kind == EntryKind::Symlink {
                        data.logical_size
                    } else {
                        0
                    },
                    mtime: mtime(*t),
                    data: *data,
                    rsrc: *rsrc,
                    compressed: None,
                };
                if kind == EntryKind::File && bsd.owner_flags & decmpfs::UF_COMPRESSED != 0 {
                    let attr = self.xattr(*id, decmpfs::XATTR_NAME)?.ok_or_else(|| {
                        self.vol.corrupt(
                            0,
                            format!(
                                "file {id} is marked compressed but has no {} attribute",
                                decmpfs::XATTR_NAME
                            ),
                        )
                    })?;
                    let h = decmpfs::header(&attr)
                        .map_err(|e| self.vol.corrupt(0, format!("file {id}: {e}")))?;
                    info.size = h.size;
                    info.compressed = Some(h);
                }
                Ok((*id, info))
            }
            Record::Thread { .. } => Err(self.vol.corrupt(
                0,
                "catalog: a thread record where a file or folder was expected",
            )),
        }
    }

    fn remember(&self, id: u32, info: Info) -> Arc<Info> {
        let info = Arc::new(info);
        let mut state = self.lock();
        if state.infos.len() >= CACHED_INFOS {
            state.infos.clear();
        }
        state.infos.insert(id, info.clone());
        info
    }

    /// Caches `info` for `id` unless an entry is already cached; returns the cached one.
    fn remember_first(&self, id: u32, info: Info) -> Arc<Info> {
        if let Some(known) = self.lock().infos.get(&id) {
            return known.clone();
        }
        self.remember(id, info)
    }

    /// The metadata of entry `id`, from the cache (filled by listings) or the catalog.
    fn info(&self, id: EntryId) -> Result<Arc<Info>, FsError> {
        let Ok(cnid) = u32::try_from(id) else {
            return Err(self.wrong_kind(id, "an entry of this volume"));
        };
        if let Some(info) = self.lock().infos.get(&cnid) {
            return Ok(info.clone());
        }
        let Some(rec) = self.record(cnid)? else {
            return Err(self.wrong_kind(id, "an entry of this volume"));
        };
        let (_, info) = self.info_of(&rec)?;
        Ok(self.remember(cnid, info))
    }

    /// The inline data of extended attribute `name` of file `id`.
    fn xattr(&self, id: u32, name: &str) -> Result<Option<Vec<u8>>, FsError> {
        let Some(tree) = &self.attributes else {
            return Ok(None);
        };
        let name = utf16(name);
        let Some(d) = tree.lookup(&self.vol, &|k| cmp_attr(k, id, &name))? else {
            return Ok(None);
        };
        let bad = |what: String| {
            self.vol
                .corrupt(0, format!("attribute of file {id}: {what}"))
        };
        match be32(&d, 0) {
            // kHFSPlusAttrInlineData
            0x10 => {
                let len = be32(&d, 12) as usize;
                d.get(16..16 + len)
                    .map(|b| Some(b.to_vec()))
                    .ok_or_else(|| bad(format!("{len} inline bytes in a {}-byte record", d.len())))
            }
            // kHFSPlusAttrForkData
            0x20 if d.len() >= 88 => {
                let fork = ForkData::parse(&d[8..88]);
                if fork.logical_size > MAX_XATTR {
                    return Err(bad(format!("{} bytes", fork.logical_size)));
                }
                let runs = fork_runs(&self.vol, &fork, "attribute fork", |_| Ok(None))?;
                let mut out = vec![0u8; fork.logical_size as usize];
                read_runs(&self.vol, &runs, 0, &mut out, "attribute fork")?;
                Ok(Some(out))
            }
            t => Err(bad(format!("record type {t:#x}"))),
        }
    }

    /// The runs of file `id`'s data fork (cached).
    fn data_runs(&self, id: u32, info: &Info) -> Result<Arc<Vec<Run>>, FsError> {
        if let Some((_, runs)) = self.lock().runs.iter().find(|(i, _)| *i == id) {
            return Ok(runs.clone());
        }
        let runs = Arc::new(self.fork_runs(id, DATA_FORK, &info.data)?);
        let mut state = self.lock();
        if state.runs.len() >= CACHED_FILES {
            state.runs.pop_front();
        }
        state.runs.push_back((id, runs.clone()));
        Ok(runs)
    }

    fn fork_runs(&self, id: u32, fork_type: u8, fork: &ForkData) -> Result<Vec<Run>, FsError> {
        let what = format!(
            "file {id} {} fork",
            if fork_type == DATA_FORK {
                "data"
            } else {
                "resource"
            }
        );
        fork_runs(&self.vol, fork, &what, |start| {
            overflow_record(&self.vol, self.extents.as_ref(), id, fork_type, start)
        })
    }

    /// The decompression state of compressed file `id` (cached).
    fn compressed(
        &self,
        id: u32,
        info: &Info,
        h: &decmpfs::Header,
    ) -> Result<Arc<Compressed>, FsError> {
        if let Some((_, c)) = self.lock().compressed.iter().find(|(i, _)| *i == id) {
            return Ok(c.clone());
        }
        let bad = |e: String| self.vol.corrupt(0, format!("compressed file {id}: {e}"));
        let layout =
            decmpfs::layout(h.kind).map_err(|e| self.vol.unsupported(format!("file {id}: {e}")))?;
        let c = match layout {
            decmpfs::Layout::Inline => {
                let attr = self.xattr(id, decmpfs::XATTR_NAME)?.unwrap_or_default();
                Compressed::Whole(decmpfs::inline(h, &attr).map_err(bad)?)
            }
            decmpfs::Layout::ResourceFork => {
                let rsrc = self.fork_runs(id, RESOURCE_FORK, &info.rsrc)?;
                let mut read = |off: u64, buf: &mut [u8]| {
                    read_runs(&self.vol, &rsrc, off, buf, "resource fork")
                        .map_err(|e| e.to_string())
                };
                let table =
                    decmpfs::chunk_table(h, info.rsrc.logical_size, &mut read).map_err(bad)?;
                Compressed::Chunks { rsrc, table }
            }
        };
        let c = Arc::new(c);
        let mut state = self.lock();
        if state.compressed.len() >= CACHED_FILES {
            state.compressed.pop_front();
        }
        state.compressed.push_back((id, c.clone()));
        Ok(c)
    }

    fn read_compressed(
        &self,
        id: u32,
        info: &Info,
        h: &decmpfs::Header,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        let c = self.compressed(id, info, h)?;
        match &*c {
            Compressed::Whole(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let src = bytes
                    .get(start..start.saturating_add(buf.len()))
                    .ok_or_else(|| {
                        self.vol
                            .corrupt(0, format!("compressed file {id}: short data"))
                    })?;
                buf.copy_from_slice(src);
            }
            Compressed::Chunks { rsrc, table } => {
                let mut done = 0usize;
                while done < buf.len() {
                    let pos = offset + done as u64;
                    let index = usize::try_from(pos / decmpfs::CHUNK).unwrap_or(usize::MAX);
                    let cached = match &self.lock().chunk {
                        Some((f, i, bytes)) if *f == id && *i == index => Some(bytes.clone()),
                        _ => None,
                    };
                    let bytes = match cached {
                        Some(b) => b,
                        None => {
                            let &(at, len) = table.get(index).ok_or_else(|| {
                                self.vol
                                    .corrupt(0, format!("compressed file {id}: no chunk {index}"))
                            })?;
                            let mut stored = vec![0u8; len as usize];
                            read_runs(&self.vol, rsrc, at, &mut stored, "resource fork")?;
                            let want = (h.size - index as u64 * decmpfs::CHUNK).min(decmpfs::CHUNK);
                            let b = Arc::new(decmpfs::chunk(&stored, want).map_err(|e| {
                                self.vol
                                    .corrupt(0, format!("compressed file {id} chunk {index}: {e}"))
                            })?);
                            self.lock().chunk = Some((id, index, b.clone()));
                            b
                        }
                    };
                    let within = (pos % decmpfs::CHUNK) as usize;
                    let n = (bytes.len().saturating_sub(within)).min(buf.len() - done);
                    if n == 0 {
                        return Err(self
                            .vol
                            .corrupt(0, format!("compressed file {id}: short chunk {index}")));
                    }
                    buf[done..done + n].copy_from_slice(&bytes[within..within + n]);
                    done += n;
                }
            }
        }
        Ok(())
    }
}

/// The extents-overflow record of `file`'s fork starting at allocation block `start`.
fn overflow_record(
    vol: &Vol,
    tree: Option<&Tree>,
    file: u32,
    fork: u8,
    start: u32,
) -> Result<Option<[(u32, u32); 8]>, FsError> {
    let Some(tree) = tree else {
        return Ok(None);
    };
    let data = tree.lookup(vol, &|k| cmp_extent(k, file, fork, start))?;
    Ok(data.as_deref().and_then(extent_record))
}

impl FileSystem for HfsFs {
    fn fs_type(&self) -> FsType {
        self.fs_type
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn root(&self) -> EntryId {
        EntryId::from(ROOT_ID)
    }

    fn read_dir(&self, dir: EntryId) -> Result<Vec<DirEntry>, FsError> {
        let Ok(cnid) = u32::try_from(dir) else {
            return Err(self.wrong_kind(dir, "a directory"));
        };
        let mut thread = None;
        let mut records = Vec::new();
        let mut malformed = 0usize;
        self.scan(cnid, &[], &mut |name, rec| {
            match rec {
                Some(Record::Thread { folder, .. }) if name.is_empty() => thread = Some(folder),
                Some(rec) => records.push((name, rec)),
                None => malformed += 1,
            }
            if records.len() > MAX_DIR_ENTRIES {
                return Err(self.vol.corrupt(
                    0,
                    format!("catalog: directory {cnid} has more than {MAX_DIR_ENTRIES} entries"),
                ));
            }
            Ok(thread != Some(false))
        })?;
        if thread != Some(true) {
            return Err(self.wrong_kind(dir, "a directory"));
        }
        if malformed > 0 {
            self.problem(format!(
                "{}: directory {cnid}: {malformed} malformed catalog record(s) skipped",
                self.vol.device
            ));
        }
        let mut out = Vec::with_capacity(records.len());
        for (name, rec) in records {
            if let Record::Folder { id, .. } | Record::File { id, .. } = rec {
                if cnid == ROOT_ID && self.hidden.contains(&id) {
                    continue;
                }
            }
            let resolved = self.resolve(rec).and_then(|r| self.info_of(&r));
            let (id, info) = match resolved {
                Ok(x) => x,
                Err(e) => {
                    self.problem(format!(
                        "directory {cnid}: entry \"{}\" skipped: {e}",
                        String::from_utf16_lossy(&name).escape_debug()
                    ));
                    continue;
                }
            };
            let name = name
                .into_iter()
                .map(|u| {
                    if u == u16::from(b'/') {
                        u16::from(b':')
                    } else {
                        u
                    }
                })
                .collect();
            // The first record seen for a CNID stays: a corrupt catalog with two records for
            // one CNID must not list one size and map another.
            let info = self.remember_first(id, info);
            out.push(DirEntry {
                id: EntryId::from(id),
                parent: dir,
                name: RawName::Utf16(name),
                kind: info.kind,
                size: info.size,
                mtime: info.mtime,
            });
        }
        Ok(out)
    }

    fn extents(&self, id: EntryId) -> Result<Vec<Extent>, FsError> {
        let info = self.info(id)?;
        if info.kind != EntryKind::File {
            return Err(self.wrong_kind(id, "a file"));
        }
        if info.compressed.is_some() {
            return Err(self.vol.unsupported(format!(
                "file {id} is decmpfs-compressed: its bytes have no extents; read it with read()"
            )));
        }
        let runs = self.data_runs(id as u32, &info)?;
        Ok(runs
            .iter()
            .map(|r| Extent {
                logical: r.logical,
                physical: r.physical,
                length: r.length,
                kind: ExtentKind::Data,
            })
            .collect())
    }

    fn read(&self, id: EntryId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let info = self.info(id)?;
        if info.kind != EntryKind::File {
            return Err(self.wrong_kind(id, "a file"));
        }
        if offset >= info.size {
            return Ok(0);
        }
        let want = usize::try_from(info.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let buf = &mut buf[..want];
        if let Some(h) = &info.compressed {
            self.read_compressed(id as u32, &info, h, offset, buf)?;
        } else {
            let runs = self.data_runs(id as u32, &info)?;
            read_data_runs(&self.vol, &runs, offset, buf)?;
        }
        Ok(want)
    }

    fn read_link(&self, id: EntryId) -> Result<Vec<u8>, FsError> {
        let info = self.info(id)?;
        if info.kind != EntryKind::Symlink {
            return Err(self.wrong_kind(id, "a symlink"));
        }
        if info.size > MAX_LINK {
            return Err(self
                .vol
                .corrupt(0, format!("symlink {id}: target of {} bytes", info.size)));
        }
        let runs = self.data_runs(id as u32, &info)?;
        let mut out = vec![0u8; info.size as usize];
        read_runs(&self.vol, &runs, 0, &mut out, "symlink target")?;
        Ok(out)
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = self.warnings.clone();
        out.extend(self.lock().problems.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests;
