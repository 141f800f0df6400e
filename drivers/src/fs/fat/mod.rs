//! FAT12, FAT16, FAT32 and exFAT, read in userspace with one shared core.
//!
//! [`FatFs::open`] checks the boot sector (FAT BPB, or the exFAT boot region with its
//! checksum, falling back to the backup region) and loads the FAT once. Cluster chains become
//! runs of clusters and then byte extents; file data is read through those extents with one
//! positional read per contiguous run of the caller's buffer, never cluster by cluster.
//!
//! Entry ids are stable: the directory's first cluster (0 for the FAT12/16 fixed root) in the
//! high 32 bits and the entry's slot plus one in the low 32 bits; the root is id 0. Parsed
//! directories are cached by first cluster, so looking up a file's entry does not re-read its
//! directory. The FSInfo sector is only a hint and is never needed to open a volume.

mod boot;
mod dir;
mod exfat;
mod table;
#[cfg(test)]
mod tests;
mod time;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use self::boot::{Geometry, Root};
use self::table::{Need, Run, Table};
use super::{
    DirEntry, EntryId, EntryKind, Extent, ExtentKind, FileSystem, FsError, FsType, RawName,
    Timestamp,
};
use crate::source::ReadAt;

/// The root directory's id.
const ROOT_ID: EntryId = 0;
/// The largest FAT directory: 65,536 entries of 32 bytes.
const MAX_FAT_DIR_BYTES: u64 = 65_536 * 32;
/// The largest exFAT directory (the specification's limit).
const MAX_EXFAT_DIR_BYTES: u64 = 256 << 20;
/// Parsed directory entries kept in the cache before the oldest directories are dropped.
const CACHED_NODES: usize = 256 * 1024;
/// Files whose extents are kept, so reading a large file in chunks does not follow its
/// chain again for every chunk.
const CACHED_EXTENTS: usize = 32;
/// Directory problems kept for [`FileSystem::warnings`].
const MAX_PROBLEMS: usize = 1000;

/// Which format a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Fat12,
    Fat16,
    Fat32,
    ExFat,
}

/// The source and its name, for reads and for errors.
struct Ctx {
    source: Arc<dyn ReadAt>,
    device: String,
}

impl Ctx {
    fn new(source: Arc<dyn ReadAt>) -> Self {
        let device = source.describe();
        Self { source, device }
    }

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

    fn wrong_kind(&self, id: EntryId, expected: &'static str) -> FsError {
        FsError::WrongKind {
            device: self.device.clone(),
            id,
            expected,
        }
    }
}

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

/// One entry of a parsed directory.
#[derive(Debug, Clone)]
struct Node {
    /// Index of the entry (the short entry, or the exFAT File entry) in its directory.
    slot: u32,
    /// Byte offset of that entry on the device.
    offset: u64,
    name: RawName,
    dir: bool,
    /// A file's length (0 for directories).
    size: u64,
    /// Bytes holding data: exFAT's ValidDataLength (a directory's length), else `size`.
    valid: u64,
    first_cluster: u32,
    /// exFAT NoFatChain: the clusters are consecutive and the FAT is not used.
    contiguous: bool,
    mtime: Option<Timestamp>,
    /// Why the entry cannot be used (a bad exFAT entry-set checksum...).
    broken: Option<String>,
}

/// What parsing one directory gives.
#[derive(Debug, Default)]
struct Listing {
    nodes: Vec<Node>,
    label: Option<String>,
    /// Entries skipped as corrupt.
    problems: Vec<String>,
}

/// Where a directory's bytes are.
#[derive(Debug, Clone, Copy)]
enum DirLoc {
    /// The FAT12/16 root region.
    Fixed { offset: u64, len: u64 },
    /// A chain followed to its end mark (FAT directories, the exFAT root).
    Chain {
        first: u32,
        max_bytes: u64,
        entry: u64,
    },
    /// An exFAT directory with a length, chained or contiguous.
    Sized {
        first: u32,
        len: u64,
        contiguous: bool,
        entry: u64,
    },
}

/// A parsed directory: nodes in slot order.
#[derive(Debug)]
struct Dir {
    nodes: Vec<Node>,
    label: Option<String>,
}

/// Caches, behind one lock.
#[derive(Default)]
struct State {
    /// Parsed directories by key (first cluster; 0 for the fixed root).
    dirs: HashMap<u32, Arc<Dir>>,
    /// Keys in insertion order, for dropping the oldest.
    order: VecDeque<u32>,
    /// Nodes held by `dirs`.
    nodes: usize,
    /// exFAT subdirectories' locations by first cluster, learnt from their parents.
    locations: HashMap<u32, DirLoc>,
    /// Recently used files' extents.
    extents: VecDeque<(EntryId, Arc<Vec<Extent>>)>,
    /// Corrupt entries skipped while listing.
    problems: Vec<String>,
    /// Every directory reachable from the root has been listed once, so `locations` is
    /// complete.
    scanned: bool,
}

/// A FAT12/16/32 or exFAT volume read through a [`ReadAt`] source.
pub struct FatFs {
    ctx: Ctx,
    geo: Geometry,
    table: Table,
    label: Option<String>,
    warnings: Vec<String>,
    state: Mutex<State>,
}

impl std::fmt::Debug for FatFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FatFs")
            .field("device", &self.ctx.device)
            .field("geometry", &self.geo)
            .finish_non_exhaustive()
    }
}

impl FatFs {
    /// Opens the FAT12/16/32 or exFAT volume on `source` (the format is told by its boot
    /// sector).
    ///
    /// # Errors
    ///
    /// The boot sector is not a usable FAT or exFAT boot sector, the FAT cannot be read, or
    /// the FAT is too large to hold in memory.
    pub fn open(source: Arc<dyn ReadAt>) -> Result<FatFs, FsError> {
        let ctx = Ctx::new(source);
        let mut sector0 = vec![0u8; 512];
        ctx.source.read_exact_at(0, &mut sector0)?;
        let geo = if boot::is_exfat(&sector0) {
            boot::parse_exfat(&ctx)?
        } else {
            boot::parse_fat(&ctx, &sector0, ctx.source.size())?
        };
        let table = Table::load(&ctx, geo.variant, geo.fat_offset, geo.cluster_count)?;
        let mut warnings = geo.warnings.clone();
        if table.clean_bit() == Some(false) {
            warnings.push("the FAT marks the volume as not cleanly unmounted".into());
        }
        if geo.variant == Variant::Fat32 {
            if let Some(w) = fsinfo_warning(&ctx, &sector0) {
                warnings.push(w);
            }
        }
        let mut fs = FatFs {
            ctx,
            geo,
            table,
            label: None,
            warnings,
            state: Mutex::new(State::default()),
        };
        // The label is in the root directory (the boot sector's copy is often stale); a root
        // that cannot be read does not stop the open: listing it will report the error.
        let boot_label = fs.geo.boot_label.clone();
        fs.label = match fs.dir(fs.root_key(), fs.root_loc()) {
            Ok(root) => root.label.clone().or(boot_label),
            Err(e) => {
                fs.warnings.push(format!("root directory: {e}"));
                boot_label
            }
        };
        Ok(fs)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only caches behind, which stay consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn root_key(&self) -> u32 {
        match self.geo.root {
            Root::Fixed { .. } => 0,
            Root::Cluster(c) => c,
        }
    }

    fn root_loc(&self) -> DirLoc {
        match self.geo.root {
            Root::Fixed { offset, len } => DirLoc::Fixed { offset, len },
            Root::Cluster(first) => DirLoc::Chain {
                first,
                max_bytes: self.max_dir_bytes(),
                entry: 0,
            },
        }
    }

    fn max_dir_bytes(&self) -> u64 {
        if self.geo.variant == Variant::ExFat {
            MAX_EXFAT_DIR_BYTES
        } else {
            MAX_FAT_DIR_BYTES
        }
    }

    /// The location of the directory with key `key`, when it is not the root.
    fn loc_of_key(&self, key: u32) -> Option<DirLoc> {
        if key == self.root_key() {
            return Some(self.root_loc());
        }
        if let Some(loc) = self.lock().locations.get(&key) {
            return Some(*loc);
        }
        // FAT directories need nothing but their first cluster; exFAT ones need their length,
        // learnt when their parent is listed.
        if self.geo.variant != Variant::ExFat {
            return (key >= 2).then_some(DirLoc::Chain {
                first: key,
                max_bytes: MAX_FAT_DIR_BYTES,
                entry: 0,
            });
        }
        self.discover(key)
    }

    /// Lists the exFAT tree breadth-first from the root until the directory with key `key`
    /// is found: an id kept from an earlier open (a job resumed after a restart) names a
    /// directory whose parent this open has not listed yet. Each directory is listed at most
    /// once, and after one complete scan a miss is final.
    fn discover(&self, key: u32) -> Option<DirLoc> {
        if self.lock().scanned {
            return None;
        }
        let mut seen = std::collections::HashSet::from([self.root_key()]);
        let mut queue = VecDeque::from([(self.root_key(), self.root_loc())]);
        while let Some((k, loc)) = queue.pop_front() {
            let Ok(dir) = self.dir(k, loc) else {
                continue;
            };
            for node in dir.nodes.iter().filter(|n| n.dir && n.broken.is_none()) {
                let Ok((child, child_loc)) = self.loc_of_node(node) else {
                    continue;
                };
                if child == key {
                    return Some(child_loc);
                }
                if seen.insert(child) {
                    queue.push_back((child, child_loc));
                }
            }
        }
        self.lock().scanned = true;
        None
    }

    /// The location of directory `node`'s content, and its key.
    fn loc_of_node(&self, node: &Node) -> Result<(u32, DirLoc), FsError> {
        if self.geo.variant == Variant::ExFat {
            if node.valid > MAX_EXFAT_DIR_BYTES {
                return Err(self.ctx.corrupt(
                    node.offset,
                    format!(
                        "directory of {} bytes (the most is {MAX_EXFAT_DIR_BYTES})",
                        node.valid
                    ),
                ));
            }
            return Ok((
                node.first_cluster,
                DirLoc::Sized {
                    first: node.first_cluster,
                    len: node.valid,
                    contiguous: node.contiguous,
                    entry: node.offset,
                },
            ));
        }
        if node.first_cluster == 0 {
            return Err(self
                .ctx
                .corrupt(node.offset, "directory entry with first cluster 0"));
        }
        Ok((
            node.first_cluster,
            DirLoc::Chain {
                first: node.first_cluster,
                max_bytes: MAX_FAT_DIR_BYTES,
                entry: node.offset,
            },
        ))
    }

    /// The extents of `len` bytes in `runs`.
    fn run_extents(&self, runs: &[Run], len: u64) -> Vec<Extent> {
        let mut out = Vec::with_capacity(runs.len());
        let mut logical = 0u64;
        for run in runs {
            if logical >= len {
                break;
            }
            // Runs were checked against the cluster count, which was checked against the
            // device size: these products fit easily, but saturate rather than trust that.
            let physical = self.geo.heap_offset.saturating_add(
                u64::from(run.start)
                    .saturating_sub(2)
                    .saturating_mul(self.geo.cluster_size),
            );
            let length = u64::from(run.len)
                .saturating_mul(self.geo.cluster_size)
                .min(len - logical);
            out.push(Extent {
                logical,
                physical,
                length,
                kind: ExtentKind::Data,
            });
            logical = logical.saturating_add(length);
        }
        out
    }

    fn clusters_for(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.geo.cluster_size)
    }

    /// The extents holding a directory's bytes.
    fn dir_extents(&self, loc: DirLoc) -> Result<Vec<Extent>, FsError> {
        match loc {
            DirLoc::Fixed { offset, len } => Ok(vec![Extent {
                logical: 0,
                physical: offset,
                length: len,
                kind: ExtentKind::Data,
            }]),
            DirLoc::Chain {
                first,
                max_bytes,
                entry,
            } => {
                let max = self.clusters_for(max_bytes).max(1);
                let runs = self.table.chain(&self.ctx, first, Need::UpTo(max), entry)?;
                Ok(self.run_extents(&runs, u64::MAX))
            }
            DirLoc::Sized {
                first,
                len,
                contiguous,
                entry,
            } => {
                let n = self.clusters_for(len);
                let runs = if contiguous {
                    self.table.contiguous(&self.ctx, first, n, entry)?
                } else {
                    self.table
                        .chain(&self.ctx, first, Need::Exactly(n), entry)?
                };
                Ok(self.run_extents(&runs, len))
            }
        }
    }

    /// The parsed directory with key `key` at `loc`, from the cache or read now.
    fn dir(&self, key: u32, loc: DirLoc) -> Result<Arc<Dir>, FsError> {
        if let Some(d) = self.lock().dirs.get(&key) {
            return Ok(Arc::clone(d));
        }
        let extents = self.dir_extents(loc)?;
        let total: u64 = extents.iter().map(|e| e.length).sum();
        let mut bytes = vec![0u8; usize::try_from(total).unwrap_or(0)];
        self.read_extents(&extents, 0, &mut bytes)?;
        let at = |pos: usize| device_offset(&extents, pos as u64);
        let root = key == self.root_key();
        let mut listing = match self.geo.variant {
            Variant::ExFat => exfat::parse(&bytes, root, &at),
            variant => dir::parse(&bytes, variant == Variant::Fat32, root, &at),
        };
        listing.nodes.sort_by_key(|n| n.slot);
        let dir = Arc::new(Dir {
            nodes: listing.nodes,
            label: listing.label,
        });
        let mut state = self.lock();
        if self.geo.variant == Variant::ExFat {
            for node in dir.nodes.iter().filter(|n| n.dir && n.broken.is_none()) {
                if let Ok((k, loc)) = self.loc_of_node(node) {
                    state.locations.entry(k).or_insert(loc);
                }
            }
        }
        let room = MAX_PROBLEMS.saturating_sub(state.problems.len());
        state
            .problems
            .extend(listing.problems.into_iter().take(room));
        // Drop the oldest directories once the cache is full (the newest always stays).
        while state.nodes.saturating_add(dir.nodes.len()) > CACHED_NODES {
            let Some(old) = state.order.pop_front() else {
                break;
            };
            if let Some(d) = state.dirs.remove(&old) {
                state.nodes = state.nodes.saturating_sub(d.nodes.len());
            }
        }
        if state.dirs.insert(key, Arc::clone(&dir)).is_none() {
            state.order.push_back(key);
            state.nodes = state.nodes.saturating_add(dir.nodes.len());
        }
        Ok(dir)
    }

    /// The directory listing entry `id` and the entry's index in it.
    fn resolve(&self, id: EntryId) -> Result<(Arc<Dir>, usize), FsError> {
        let not_found = || self.ctx.wrong_kind(id, "an entry of this volume");
        let key = u32::try_from(id >> 32).map_err(|_| not_found())?;
        let slot = u32::try_from(id & 0xFFFF_FFFF)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .ok_or_else(not_found)?;
        let loc = self.loc_of_key(key).ok_or_else(not_found)?;
        let dir = self.dir(key, loc)?;
        let index = dir
            .nodes
            .binary_search_by_key(&slot, |n| n.slot)
            .map_err(|_| not_found())?;
        Ok((dir, index))
    }

    /// The file entry `id`.
    fn file(&self, id: EntryId) -> Result<Node, FsError> {
        if id == ROOT_ID {
            return Err(self.ctx.wrong_kind(id, "a file"));
        }
        let (dir, index) = self.resolve(id)?;
        let node = dir
            .nodes
            .get(index)
            .ok_or_else(|| self.ctx.wrong_kind(id, "a file"))?;
        if node.dir {
            return Err(self.ctx.wrong_kind(id, "a file"));
        }
        if let Some(why) = &node.broken {
            return Err(self.ctx.corrupt(node.offset, why.clone()));
        }
        Ok(node.clone())
    }

    /// The extents of file `id`, from the cache or computed now.
    fn file_extents(&self, id: EntryId) -> Result<(Node, Arc<Vec<Extent>>), FsError> {
        let node = self.file(id)?;
        if let Some((_, e)) = self.lock().extents.iter().find(|(i, _)| *i == id) {
            return Ok((node, Arc::clone(e)));
        }
        let data_clusters = self.clusters_for(node.valid);
        let runs = if node.valid == 0 {
            Vec::new()
        } else if node.contiguous {
            // The whole allocation must lie inside the volume, not only the valid part.
            let all = self.clusters_for(node.size);
            let mut runs =
                self.table
                    .contiguous(&self.ctx, node.first_cluster, all, node.offset)?;
            if let Some(r) = runs.first_mut() {
                r.len = u32::try_from(data_clusters).unwrap_or(r.len);
            }
            runs
        } else {
            self.table.chain(
                &self.ctx,
                node.first_cluster,
                Need::Exactly(data_clusters),
                node.offset,
            )?
        };
        let mut extents = self.run_extents(&runs, node.valid);
        if node.size > node.valid {
            extents.push(Extent {
                logical: node.valid,
                physical: 0,
                length: node.size - node.valid,
                kind: ExtentKind::Zero,
            });
        }
        let extents = Arc::new(extents);
        let mut state = self.lock();
        if state.extents.len() >= CACHED_EXTENTS {
            state.extents.pop_front();
        }
        state.extents.push_back((id, Arc::clone(&extents)));
        Ok((node, extents))
    }

    /// Fills `buf` from logical byte `offset` of `extents`: one read per data extent the
    /// range touches, zeros for the rest. The range must lie inside the extents.
    fn read_extents(&self, extents: &[Extent], offset: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let first = extents.partition_point(|e| e.logical.saturating_add(e.length) <= offset);
        let mut done = 0usize;
        for e in extents.iter().skip(first) {
            if done >= buf.len() {
                break;
            }
            let pos = offset.saturating_add(done as u64);
            let within = pos.saturating_sub(e.logical);
            let take = usize::try_from(e.length.saturating_sub(within))
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let dst = &mut buf[done..done + take];
            match e.kind {
                ExtentKind::Data => self
                    .ctx
                    .source
                    .read_exact_at(e.physical.saturating_add(within), dst)?,
                ExtentKind::Hole | ExtentKind::Zero => dst.fill(0),
            }
            done += take;
        }
        // Extents that do not cover the range: only possible for a directory whose chain is
        // shorter than its recorded length, which was refused earlier. Zero the rest anyway.
        buf[done..].fill(0);
        Ok(())
    }
}

/// The device offset of logical byte `pos` of `extents` (for naming directory entries).
fn device_offset(extents: &[Extent], pos: u64) -> u64 {
    let i = extents.partition_point(|e| e.logical.saturating_add(e.length) <= pos);
    extents.get(i).map_or(0, |e| {
        e.physical.saturating_add(pos.saturating_sub(e.logical))
    })
}

/// A warning when the FAT32 FSInfo sector is missing or has bad signatures. FSInfo only holds
/// free-space hints, so this never stops the open.
fn fsinfo_warning(ctx: &Ctx, sector0: &[u8]) -> Option<String> {
    let sector = le16(sector0, 11);
    let number = le16(sector0, 48);
    if number == 0 || number == 0xFFFF {
        return None;
    }
    let offset = u64::from(number).saturating_mul(u64::from(sector));
    let mut buf = [0u8; 512];
    if let Err(e) = ctx.source.read_exact_at(offset, &mut buf) {
        return Some(format!("FSInfo sector unreadable (ignored): {e}"));
    }
    let ok = le32(&buf, 0) == 0x4161_5252
        && le32(&buf, 484) == 0x6141_7272
        && le32(&buf, 508) == 0xAA55_0000;
    (!ok).then(|| {
        format!("FSInfo sector at byte offset {offset} has bad signatures (ignored: it only holds hints)")
    })
}

impl FileSystem for FatFs {
    fn fs_type(&self) -> FsType {
        match self.geo.variant {
            Variant::Fat12 => FsType::Fat12,
            Variant::Fat16 => FsType::Fat16,
            Variant::Fat32 => FsType::Fat32,
            Variant::ExFat => FsType::ExFat,
        }
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn root(&self) -> EntryId {
        ROOT_ID
    }

    fn read_dir(&self, id: EntryId) -> Result<Vec<DirEntry>, FsError> {
        let (key, loc) = if id == ROOT_ID {
            (self.root_key(), self.root_loc())
        } else {
            let (parent, index) = self.resolve(id)?;
            let node = parent
                .nodes
                .get(index)
                .ok_or_else(|| self.ctx.wrong_kind(id, "a directory"))?;
            if !node.dir {
                return Err(self.ctx.wrong_kind(id, "a directory"));
            }
            if let Some(why) = &node.broken {
                return Err(self.ctx.corrupt(node.offset, why.clone()));
            }
            self.loc_of_node(node)?
        };
        let dir = self.dir(key, loc)?;
        Ok(dir
            .nodes
            .iter()
            .map(|n| DirEntry {
                id: (u64::from(key) << 32) | (u64::from(n.slot) + 1),
                parent: id,
                name: n.name.clone(),
                kind: if n.dir {
                    EntryKind::Directory
                } else {
                    EntryKind::File
                },
                size: n.size,
                mtime: n.mtime,
            })
            .collect())
    }

    fn extents(&self, id: EntryId) -> Result<Vec<Extent>, FsError> {
        Ok(self.file_extents(id)?.1.as_ref().clone())
    }

    fn read(&self, id: EntryId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let (node, extents) = self.file_extents(id)?;
        if offset >= node.size {
            return Ok(0);
        }
        let want = usize::try_from(node.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.read_extents(&extents, offset, &mut buf[..want])?;
        Ok(want)
    }

    fn read_link(&self, id: EntryId) -> Result<Vec<u8>, FsError> {
        Err(self.ctx.wrong_kind(id, "a symlink"))
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = self.warnings.clone();
        out.extend(self.lock().problems.iter().cloned());
        out
    }
}
