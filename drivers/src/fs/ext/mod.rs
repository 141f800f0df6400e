//! ext2, ext3 and ext4, read in userspace without mounting.
//!
//! [`ExtFs`] reads the superblock and group descriptors when opened, then inodes, directory
//! blocks, extent trees and block maps on demand. File data is never read block by block: a
//! file's blocks are merged into byte extents ([`FileSystem::extents`]) and
//! [`FileSystem::read`] issues one read per contiguous run of the caller's buffer.
//!
//! What it reads: 1-64 KiB blocks, 32- and 64-byte group descriptors, meta_bg, flex_bg,
//! extents (unwritten extents read as zeros), ext2/3 block maps with holes at any level,
//! inline data, htree directories (walked linearly), 34-bit times with nanoseconds, and
//! metadata_csum checksums of the superblock, group descriptors, inodes, extent blocks and
//! directory leaf blocks (gdt_csum CRC16 too). What it refuses: compression, dirdata,
//! journal devices, encrypted files and directories (fscrypt). A journal that needs recovery
//! is reported by [`FileSystem::warnings`] and not replayed: the volume is read as it is on
//! disk, and never written.

mod blockmap;
mod checksum;
mod dir;
mod extent;
mod group;
mod inode;
mod runs;
mod superblock;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::fs::{
    DirEntry, EntryId, EntryKind, Extent, ExtentKind, FileSystem, FsError, FsType, RawName,
};
use crate::source::ReadAt;
use dir::RawEntry;
use group::Group;
use inode::{Inode, ENCRYPT_FL, EXTENTS_FL, INLINE_DATA_FL, I_BLOCK, I_BLOCK_LEN};
use runs::{RunError, Runs};
use superblock::{Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};

/// The root directory's inode.
const ROOT_INO: u32 = 2;
/// Largest directory listed: 256 MiB of entries is several million names.
const MAX_DIR_BYTES: u64 = 256 << 20;
/// Directory data is read in chunks of at most this many bytes.
const DIR_CHUNK: usize = 1 << 20;
/// Inodes of one directory are read in windows of at most this many bytes of inode table.
const INODE_WINDOW: u64 = 64 << 10;
/// Files whose extent lists are kept, so sequential reads do not walk the tree again.
const MAP_CACHE: usize = 8;
/// Inodes kept from directory listings (about 400 bytes each), so opening a file just listed
/// costs no read.
const INODE_CACHE: usize = 16_384;

/// The little-endian `u16` at `off`, or 0 past the end of `b` (callers check lengths first).
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    match b.get(off..).and_then(|s| s.get(..2)) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

/// The little-endian `u32` at `off`, or 0 past the end of `b` (callers check lengths first).
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..).and_then(|s| s.get(..4)) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// The device name errors carry.
#[derive(Debug, Clone)]
pub(crate) struct Dev(pub(crate) String);

impl Dev {
    /// A corrupt-structure error at byte `offset`.
    pub(crate) fn corrupt(&self, offset: u64, what: impl Into<String>) -> FsError {
        FsError::Corrupt {
            device: self.0.clone(),
            offset,
            what: what.into(),
        }
    }

    /// An unsupported-feature error.
    pub(crate) fn unsupported(&self, what: impl Into<String>) -> FsError {
        FsError::Unsupported {
            device: self.0.clone(),
            what: what.into(),
        }
    }

    fn wrong_kind(&self, id: EntryId, expected: &'static str) -> FsError {
        FsError::WrongKind {
            device: self.0.clone(),
            id,
            expected,
        }
    }
}

/// A file's extents, kept between reads.
#[derive(Debug)]
struct FileMap {
    size: u64,
    extents: Vec<Extent>,
}

/// An ext2, ext3 or ext4 volume, read-only.
pub struct ExtFs {
    source: Arc<dyn ReadAt>,
    dev: Dev,
    sb: Superblock,
    groups: Vec<Group>,
    warnings: Vec<String>,
    maps: Mutex<Vec<(EntryId, Arc<FileMap>)>>,
    inodes: Mutex<HashMap<u32, Inode>>,
}

impl std::fmt::Debug for ExtFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtFs")
            .field("device", &self.dev.0)
            .field("type", &self.sb.fs_type())
            .field("block_size", &self.sb.block_size)
            .field("groups", &self.sb.group_count)
            .finish_non_exhaustive()
    }
}

impl ExtFs {
    /// Opens the ext2/3/4 volume on `source`: reads and checks the superblock, the group
    /// descriptors and the root inode.
    ///
    /// # Errors
    ///
    /// `Corrupt` when the superblock, the descriptor table or the root directory is bad,
    /// `Unsupported` for an incompatible feature this reader does not implement (named),
    /// `Io` when the source cannot be read.
    pub fn open(source: Arc<dyn ReadAt>) -> Result<ExtFs, FsError> {
        let dev = Dev(source.describe());
        let size = source.size();
        if size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(dev.corrupt(
                0,
                format!("device of {size} bytes: too small for an ext2/3/4 superblock"),
            ));
        }
        let mut raw = vec![0u8; SUPERBLOCK_SIZE];
        source.read_exact_at(SUPERBLOCK_OFFSET, &mut raw)?;
        let sb = Superblock::parse(&raw, size, &dev)?;
        let groups = group::read_groups(&*source, &sb, &dev)?;
        let warnings = sb.warnings();
        let fs = ExtFs {
            source,
            dev,
            sb,
            groups,
            warnings,
            maps: Mutex::new(Vec::new()),
            inodes: Mutex::new(HashMap::new()),
        };
        let root = fs.inode(ROOT_INO)?;
        if root.kind() != Some(EntryKind::Directory) {
            return Err(fs.dev.corrupt(
                root.offset,
                format!("root inode 2 has mode 0o{:o}, not a directory", root.mode),
            ));
        }
        Ok(fs)
    }

    /// The volume's block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.sb.block_size
    }

    /// Byte offset of inode `ino`'s record.
    fn inode_location(&self, ino: u32) -> Result<u64, FsError> {
        let sb = &self.sb;
        if ino == 0 || ino > sb.inodes_count {
            return Err(self
                .dev
                .wrong_kind(u64::from(ino), "an inode number of this volume"));
        }
        let index = ino - 1;
        let group = (index / sb.inodes_per_group) as usize;
        let slot = u64::from(index % sb.inodes_per_group);
        let Some(g) = self.groups.get(group) else {
            return Err(self
                .dev
                .wrong_kind(u64::from(ino), "an inode number of this volume"));
        };
        let table = g
            .inode_table
            .clone()
            .map_err(|what| self.dev.corrupt(g.offset, what))?;
        Ok(table * u64::from(sb.block_size) + slot * u64::from(sb.inode_size))
    }

    /// Reads and checks inode `ino`.
    fn inode(&self, ino: u32) -> Result<Inode, FsError> {
        let offset = self.inode_location(ino)?;
        let mut raw = vec![0u8; usize::from(self.sb.inode_size)];
        self.source.read_exact_at(offset, &mut raw)?;
        Inode::parse(raw, ino, offset, &self.sb, &self.dev)
    }

    /// Inode `id` from the public interface.
    fn inode_by_id(&self, id: EntryId) -> Result<Inode, FsError> {
        let ino = u32::try_from(id)
            .map_err(|_| self.dev.wrong_kind(id, "an inode number of this volume"))?;
        self.inode(ino)
    }

    /// Reads many inodes, each window of neighbouring records with one read.
    fn inodes(&self, inos: &[u32]) -> HashMap<u32, Result<Inode, FsError>> {
        let mut sorted = inos.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let isize = u64::from(self.sb.inode_size);
        let table_bytes = u64::from(self.sb.inodes_per_group) * isize;
        let mut out = HashMap::with_capacity(sorted.len());
        let mut window: Option<(u64, Vec<u8>)> = None;
        for ino in sorted {
            let offset = match self.inode_location(ino) {
                Ok(offset) => offset,
                Err(e) => {
                    out.insert(ino, Err(e));
                    continue;
                }
            };
            let cached = window.as_ref().and_then(|(start, buf)| {
                let from = usize::try_from(offset.checked_sub(*start)?).ok()?;
                buf.get(from..from + usize::from(self.sb.inode_size))
                    .map(<[u8]>::to_vec)
            });
            let raw = match cached {
                Some(raw) => raw,
                None => {
                    // From this record to the end of its group's table, at most one window.
                    let slot = u64::from((ino - 1) % self.sb.inodes_per_group);
                    let len = (table_bytes - slot * isize).min(INODE_WINDOW).max(isize);
                    let mut buf = vec![0u8; len as usize];
                    if let Err(e) = self.source.read_exact_at(offset, &mut buf) {
                        window = None;
                        out.insert(ino, Err(e.into()));
                        continue;
                    }
                    let raw = buf[..usize::from(self.sb.inode_size)].to_vec();
                    window = Some((offset, buf));
                    raw
                }
            };
            out.insert(ino, Inode::parse(raw, ino, offset, &self.sb, &self.dev));
        }
        out
    }

    /// The byte extents of `inode`'s data, covering exactly its size.
    fn map(&self, inode: &Inode) -> Result<Vec<Extent>, FsError> {
        if inode.has_flag(ENCRYPT_FL) {
            return Err(self
                .dev
                .unsupported(format!("inode {} is encrypted (fscrypt)", inode.ino)));
        }
        if inode.has_flag(INLINE_DATA_FL) {
            return self.inline_extents(inode);
        }
        let mut runs = Runs::new(self.sb.block_size, inode.size);
        if inode.has_flag(EXTENTS_FL) {
            // Logical block numbers are 32 bits.
            let max = u64::from(self.sb.block_size) << 32;
            if inode.size > max {
                return Err(self.dev.corrupt(
                    inode.offset + 4,
                    format!(
                        "inode {}: size {} past the {max} bytes an extent tree addresses",
                        inode.ino, inode.size
                    ),
                ));
            }
            extent::map(self, inode, &mut runs)?;
        } else {
            blockmap::map(self, inode, &mut runs)?;
        }
        runs.finish().map_err(|e| match e {
            RunError::TooMany => self.dev.unsupported(format!(
                "inode {}: more than {} fragments",
                inode.ino,
                runs::MAX_EXTENTS
            )),
            RunError::Overlap { logical, .. } => self.dev.corrupt(
                inode.offset,
                format!("inode {}: block {logical} mapped twice", inode.ino),
            ),
        })
    }

    /// Extents of an inline-data inode: `i_block`, then the `system.data` attribute's value,
    /// both inside the inode record (so their physical offsets are in the inode table).
    fn inline_extents(&self, inode: &Inode) -> Result<Vec<Extent>, FsError> {
        let first = inode.size.min(I_BLOCK_LEN as u64);
        let mut out = Vec::new();
        if first > 0 {
            out.push(Extent {
                logical: 0,
                physical: inode.offset + I_BLOCK as u64,
                length: first,
                kind: ExtentKind::Data,
            });
        }
        let rest = inode.size - first;
        if rest > 0 {
            let (start, len) = inode.inline_data_xattr(&self.dev)?.unwrap_or((0, 0));
            if (len as u64) < rest {
                return Err(self.dev.corrupt(
                    inode.offset,
                    format!(
                        "inode {}: inline data of {} bytes, but only {} are stored",
                        inode.ino,
                        inode.size,
                        first + len as u64
                    ),
                ));
            }
            out.push(Extent {
                logical: first,
                physical: inode.offset + start as u64,
                length: rest,
                kind: ExtentKind::Data,
            });
        }
        Ok(out)
    }

    /// The extents of regular file `id`, from the cache when it was mapped recently.
    fn file_map(&self, id: EntryId) -> Result<Arc<FileMap>, FsError> {
        {
            let mut maps = self
                .maps
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(pos) = maps.iter().position(|(k, _)| *k == id) {
                let hit = maps.remove(pos);
                let map = Arc::clone(&hit.1);
                maps.insert(0, hit);
                return Ok(map);
            }
        }
        let listed = u32::try_from(id).ok().and_then(|ino| {
            self.inodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&ino)
        });
        let inode = match listed {
            Some(inode) => inode,
            None => self.inode_by_id(id)?,
        };
        if inode.kind() != Some(EntryKind::File) {
            return Err(self.dev.wrong_kind(id, "a regular file"));
        }
        let map = Arc::new(FileMap {
            size: inode.size,
            extents: self.map(&inode)?,
        });
        let mut maps = self
            .maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        maps.insert(0, (id, Arc::clone(&map)));
        maps.truncate(MAP_CACHE);
        Ok(map)
    }

    /// Reads `buf.len()` bytes (fewer at the end) from `offset` of a file with `extents`:
    /// one read per contiguous run, zeros for holes and unwritten extents.
    fn read_extents(
        &self,
        extents: &[Extent],
        size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, FsError> {
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from((size - offset).min(buf.len() as u64)).unwrap_or(buf.len());
        let mut done = 0usize;
        let first = extents.partition_point(|e| e.logical + e.length <= offset);
        for e in &extents[first..] {
            if done == want {
                break;
            }
            let pos = offset + done as u64;
            if e.logical > pos {
                // The extents cover the size without gaps; anything else is a bug, not data.
                return Err(self
                    .dev
                    .corrupt(e.physical, format!("extent list gap at byte {pos}")));
            }
            let into = pos - e.logical;
            let n =
                usize::try_from((e.length - into).min((want - done) as u64)).unwrap_or(want - done);
            let dst = &mut buf[done..done + n];
            match e.kind {
                ExtentKind::Data => self.source.read_exact_at(e.physical + into, dst)?,
                ExtentKind::Hole | ExtentKind::Zero => dst.fill(0),
            }
            done += n;
        }
        Ok(done)
    }

    /// The entries of directory inode `inode`, as stored.
    fn dir_entries(&self, inode: &Inode) -> Result<Vec<RawEntry>, FsError> {
        if inode.has_flag(ENCRYPT_FL) {
            return Err(self.dev.unsupported(format!(
                "directory inode {} is encrypted (fscrypt)",
                inode.ino
            )));
        }
        let filetype = self.sb.filetype();
        let mut out = Vec::new();
        if inode.has_flag(INLINE_DATA_FL) {
            // i_block: the parent's inode number, then records; then the attribute's records.
            let body = &inode.i_block()[4..];
            dir::parse_block(
                body,
                inode.offset + I_BLOCK as u64 + 4,
                filetype,
                &self.dev,
                &mut out,
            )?;
            if let Some((start, len)) = inode.inline_data_xattr(&self.dev)? {
                if len > 0 {
                    let region = &inode.raw[start..start + len];
                    dir::parse_block(
                        region,
                        inode.offset + start as u64,
                        filetype,
                        &self.dev,
                        &mut out,
                    )?;
                }
            }
            return Ok(out);
        }
        if inode.size > MAX_DIR_BYTES {
            return Err(self.dev.unsupported(format!(
                "directory inode {} has {} bytes of entries; this reader lists at most {MAX_DIR_BYTES}",
                inode.ino, inode.size
            )));
        }
        let extents = self.map(inode)?;
        let bs = self.sb.block_size as usize;
        let seed = self.sb.metadata_csum().then(|| inode.csum_seed(&self.sb));
        let chunk_max = DIR_CHUNK.max(bs);
        let mut buf = Vec::new();
        for e in extents.iter().filter(|e| e.kind == ExtentKind::Data) {
            let mut done = 0u64;
            while done < e.length {
                // Whole blocks only: a partial block at the end of a directory holds no entry.
                let n = (e.length - done).min(chunk_max as u64) as usize / bs * bs;
                if n == 0 {
                    break;
                }
                buf.resize(n, 0);
                let start = e.physical + done;
                self.source.read_exact_at(start, &mut buf)?;
                for (k, block) in buf.chunks_exact(bs).enumerate() {
                    let offset = start + (k * bs) as u64;
                    if let Some(seed) = seed {
                        dir::verify_leaf(block, offset, seed, &self.dev)?;
                    }
                    dir::parse_block(block, offset, filetype, &self.dev, &mut out)?;
                }
                done += n as u64;
            }
        }
        Ok(out)
    }
}

impl FileSystem for ExtFs {
    fn fs_type(&self) -> FsType {
        self.sb.fs_type()
    }

    fn label(&self) -> Option<String> {
        self.sb.label()
    }

    fn root(&self) -> EntryId {
        u64::from(ROOT_INO)
    }

    fn read_dir(&self, dir: EntryId) -> Result<Vec<DirEntry>, FsError> {
        let inode = self.inode_by_id(dir)?;
        if inode.kind() != Some(EntryKind::Directory) {
            return Err(self.dev.wrong_kind(dir, "a directory"));
        }
        let raw = self.dir_entries(&inode)?;
        let inos: Vec<u32> = raw.iter().map(|e| e.ino).collect();
        let inodes = self.inodes(&inos);
        {
            // Keep the files' inodes for the reads that usually follow a listing.
            let mut cache = self
                .inodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let files = inodes
                .values()
                .flatten()
                .filter(|i| i.kind() == Some(EntryKind::File));
            for inode in files.take(INODE_CACHE) {
                if cache.len() >= INODE_CACHE {
                    cache.clear();
                }
                cache.insert(inode.ino, inode.clone());
            }
        }
        Ok(raw
            .into_iter()
            .map(|e| {
                // An entry whose inode cannot be read is still listed, with the kind its
                // directory entry gives, so the error surfaces when that entry is opened.
                let (kind, size, mtime) = match inodes.get(&e.ino) {
                    Some(Ok(i)) if i.kind().is_some() => {
                        let kind = i.kind().unwrap_or(EntryKind::File);
                        let size = match kind {
                            EntryKind::File | EntryKind::Symlink => i.size,
                            _ => 0,
                        };
                        (kind, size, Some(i.mtime))
                    }
                    _ => (
                        dir::kind_of_file_type(e.file_type).unwrap_or(EntryKind::File),
                        0,
                        None,
                    ),
                };
                DirEntry {
                    id: u64::from(e.ino),
                    parent: dir,
                    name: RawName::Bytes(e.name),
                    kind,
                    size,
                    mtime,
                }
            })
            .collect())
    }

    fn extents(&self, id: EntryId) -> Result<Vec<Extent>, FsError> {
        Ok(self.file_map(id)?.extents.clone())
    }

    fn read(&self, id: EntryId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let map = self.file_map(id)?;
        self.read_extents(&map.extents, map.size, offset, buf)
    }

    fn read_link(&self, id: EntryId) -> Result<Vec<u8>, FsError> {
        let inode = self.inode_by_id(id)?;
        if inode.kind() != Some(EntryKind::Symlink) {
            return Err(self.dev.wrong_kind(id, "a symlink"));
        }
        if inode.has_flag(ENCRYPT_FL) {
            return Err(self.dev.unsupported(format!(
                "symlink inode {} is encrypted (fscrypt)",
                inode.ino
            )));
        }
        let limit = u64::from(self.sb.block_size);
        if inode.size > limit {
            return Err(self.dev.corrupt(
                inode.offset + 4,
                format!(
                    "symlink inode {}: target of {} bytes (at most {limit})",
                    inode.ino, inode.size
                ),
            ));
        }
        let len = inode.size as usize;
        if inode.is_fast_symlink(&self.sb) {
            return Ok(inode.i_block()[..len].to_vec());
        }
        let extents = self.map(&inode)?;
        let mut target = vec![0u8; len];
        let n = self.read_extents(&extents, inode.size, 0, &mut target)?;
        target.truncate(n);
        Ok(target)
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    const BS: usize = 1024;
    const INODE_TABLE: usize = 5;

    /// A tiny hand-made ext2 volume: 1 KiB blocks, 64 blocks, one group, 16 inodes of 256
    /// bytes from block 5, and a root directory in block 10 listing `file` (inode 12) and
    /// `ext` (inode 13).
    struct Image(Vec<u8>);

    impl Image {
        fn new() -> Self {
            let mut img = Image(vec![0u8; 64 * BS]);
            let sb = 1024;
            img.put32(sb, 16); // inodes
            img.put32(sb + 0x04, 64); // blocks
            img.put32(sb + 0x14, 1); // first data block
            img.put32(sb + 0x20, 8192); // blocks per group
            img.put32(sb + 0x24, 8192); // clusters per group
            img.put32(sb + 0x28, 16); // inodes per group
            img.put16(sb + 0x38, 0xEF53);
            img.put16(sb + 0x3A, 1); // clean
            img.put32(sb + 0x4C, 1); // dynamic revision
            img.put32(sb + 0x54, 11);
            img.put16(sb + 0x58, 256);
            img.put32(sb + 0x60, 0x2); // filetype
            img.put32(2 * BS + 0x08, INODE_TABLE as u32);
            img.inode(2, 0x41ED, 1024, 0, &[10]);
            let mut dir = Vec::new();
            for (ino, name, ft, rec_len) in [
                (2u32, &b"."[..], 2u8, 12u16),
                (2, b"..", 2, 12),
                (12, b"file", 1, 12),
                (13, b"ext", 1, 1024 - 36),
            ] {
                let start = dir.len();
                dir.extend_from_slice(&ino.to_le_bytes());
                dir.extend_from_slice(&rec_len.to_le_bytes());
                dir.push(name.len() as u8);
                dir.push(ft);
                dir.extend_from_slice(name);
                dir.resize(start + usize::from(rec_len), 0);
            }
            img.0[10 * BS..11 * BS].copy_from_slice(&dir);
            img
        }
        fn put16(&mut self, at: usize, v: u16) {
            self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
        fn put32(&mut self, at: usize, v: u32) {
            self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn inode_at(ino: u32) -> usize {
            INODE_TABLE * BS + (ino as usize - 1) * 256
        }
        /// Writes inode `ino` with `i_block` holding `pointers`.
        fn inode(&mut self, ino: u32, mode: u16, size: u32, flags: u32, pointers: &[u32]) {
            let at = Self::inode_at(ino);
            self.put16(at, mode);
            self.put32(at + 0x04, size);
            self.put32(at + 0x20, flags);
            self.put16(at + 0x80, 32);
            for (i, p) in pointers.iter().enumerate() {
                self.put32(at + 0x28 + 4 * i, *p);
            }
        }
        fn open(self) -> Result<ExtFs, FsError> {
            ExtFs::open(Arc::new(MemorySource::new("t.img", self.0)))
        }
    }

    fn ok<T>(r: Result<T, FsError>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    fn data(logical: u64, block: u64, len: u64) -> Extent {
        Extent {
            logical,
            physical: block * BS as u64,
            length: len,
            kind: ExtentKind::Data,
        }
    }

    fn gap(logical: u64, len: u64, kind: ExtentKind) -> Extent {
        Extent {
            logical,
            physical: 0,
            length: len,
            kind,
        }
    }

    /// A block map with data in the direct, double- and triple-indirect ranges and a zero
    /// pointer at every level (direct, single, inside double, inside triple).
    fn sparse_block_map() -> Image {
        let mut img = Image::new();
        const K: u64 = 1024;
        let size = ((12 + 256 + 65_536 + 3) * K) as u32;
        let mut ptrs = [0u32; 15];
        ptrs[0] = 20;
        ptrs[13] = 21; // double
        ptrs[14] = 24; // triple
        img.inode(12, 0x81A4, size, 0, &ptrs);
        img.put32(21 * BS + 4, 22); // double[1] -> indirect 22
        img.put32(22 * BS, 23); // -> data block 23
        img.put32(24 * BS, 25); // triple[0] -> 25
        img.put32(25 * BS, 26); // -> 26
        img.put32(26 * BS + 4, 27); // [1] -> data block 27
        img
    }

    #[test]
    fn zero_pointers_at_every_block_map_level_are_holes() {
        let fs = ok(sparse_block_map().open());
        let k = 1024u64;
        let size = (12 + 256 + 65_536 + 3) * k;
        let double_1 = (12 + 256 + 256) * k;
        let triple_1 = (12 + 256 + 65_536 + 1) * k;
        assert_eq!(
            ok(fs.extents(12)),
            vec![
                data(0, 20, k),
                gap(k, double_1 - k, ExtentKind::Hole),
                data(double_1, 23, k),
                gap(double_1 + k, triple_1 - double_1 - k, ExtentKind::Hole),
                data(triple_1, 27, k),
                gap(triple_1 + k, size - triple_1 - k, ExtentKind::Hole),
            ]
        );
        let mut buf = vec![0xAAu8; 3000];
        assert_eq!(ok(fs.read(12, double_1 - 1000, &mut buf)), 3000);
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_block_pointer_past_the_volume_is_corrupt_where_it_is_stored() {
        let mut img = sparse_block_map();
        img.put32(22 * BS, 9999);
        let fs = ok(img.open());
        let e = fs.extents(12).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("t.img: corrupt inode 12: block pointer 9999 for logical block 524 (level 0; the volume has 64 blocks) at byte offset 22528")
        );
    }

    /// Inode 13: an extent tree of depth 1 whose leaf (block 30) holds a written and an
    /// unwritten extent.
    fn extent_tree() -> Image {
        let mut img = Image::new();
        let at = Image::inode_at(13);
        img.inode(13, 0x81A4, 10 * 1024, EXTENTS_FL, &[]);
        // Root header: magic, 1 entry, max 4, depth 1; index: block 0 -> leaf block 30.
        for (off, v) in [(0usize, 0xF30Au16), (2, 1), (4, 4), (6, 1)] {
            img.put16(at + 0x28 + off, v);
        }
        img.put32(at + 0x28 + 12 + 4, 30);
        let leaf = 30 * BS;
        for (off, v) in [(0usize, 0xF30Au16), (2, 2), (4, 84), (6, 0)] {
            img.put16(leaf + off, v);
        }
        // Blocks 0-1 at 40, blocks 4-5 unwritten at 50.
        img.put32(leaf + 12, 0);
        img.put16(leaf + 16, 2);
        img.put32(leaf + 20, 40);
        img.put32(leaf + 24, 4);
        img.put16(leaf + 28, 32_768 + 2);
        img.put32(leaf + 32, 50);
        img
    }

    #[test]
    fn extent_trees_map_unwritten_extents_as_zeros() {
        let fs = ok(extent_tree().open());
        let k = 1024u64;
        assert_eq!(
            ok(fs.extents(13)),
            vec![
                data(0, 40, 2 * k),
                gap(2 * k, 2 * k, ExtentKind::Hole),
                Extent {
                    logical: 4 * k,
                    physical: 50 * k,
                    length: 2 * k,
                    kind: ExtentKind::Zero
                },
                gap(6 * k, 4 * k, ExtentKind::Hole),
            ]
        );
    }

    #[test]
    fn a_bad_extent_leaf_is_corrupt_at_its_block() {
        let mut img = extent_tree();
        img.put16(30 * BS + 6, 3); // leaf depth 3 under a depth-1 root
        let e = ok(img.open()).extents(13).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("t.img: corrupt inode 13: extent tree: depth 3 (want 0) at byte offset 30726")
        );
        let mut img = extent_tree();
        img.put16(30 * BS, 0x1234);
        let e = ok(img.open()).extents(13).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("t.img: corrupt inode 13: extent tree: header magic 0x1234 (want 0xF30A) at byte offset 30720")
        );
    }

    #[test]
    fn the_root_lists_raw_names_with_kinds_from_the_inodes() {
        let fs = ok(extent_tree().open());
        let names: Vec<(Vec<u8>, EntryKind, u64)> = ok(fs.read_dir(2))
            .into_iter()
            .map(|e| (e.name.to_bytes(), e.kind, e.id))
            .collect();
        assert_eq!(
            names,
            vec![
                (b"file".to_vec(), EntryKind::File, 12),
                (b"ext".to_vec(), EntryKind::File, 13)
            ]
        );
        assert!(matches!(
            fs.read_dir(13),
            Err(FsError::WrongKind { id: 13, .. })
        ));
        assert!(matches!(
            fs.extents(99),
            Err(FsError::WrongKind { id: 99, .. })
        ));
    }

    fn open_error(img: Image) -> String {
        img.open().err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn superblock_fields_are_checked_one_by_one() {
        let mut img = Image::new();
        img.put16(1024 + 0x38, 0xEF54);
        assert_eq!(
            open_error(img),
            "t.img: corrupt superblock magic 0xEF54 (want 0xEF53: not an ext2/3/4 volume) at byte offset 1080"
        );
        let mut img = Image::new();
        img.put32(1024 + 0x18, 7);
        assert_eq!(
            open_error(img),
            "t.img: corrupt log block size 7 (block size over 64 KiB) at byte offset 1048"
        );
        let mut img = Image::new();
        img.put32(1024 + 0x60, 0x3);
        assert_eq!(
            open_error(img),
            "t.img: unsupported: incompatible feature compression (0x1)"
        );
        let mut img = Image::new();
        img.put32(1024 + 0x60, 0x2 | 0x100_0000);
        assert_eq!(
            open_error(img),
            "t.img: unsupported: unknown incompatible feature flags 0x1000000"
        );
        let mut img = Image::new();
        img.put32(1024 + 0x04, 65);
        assert_eq!(
            open_error(img),
            "t.img: corrupt block count 65 of 1024 bytes: more than the device's 65536 bytes (a truncated image?) at byte offset 1028"
        );
        let mut img = Image::new();
        img.put32(1024 + 0x28, 0);
        assert_eq!(
            open_error(img),
            "t.img: corrupt inodes per group 0 (want 1 to 8192) at byte offset 1064"
        );
        let mut img = Image::new();
        img.put16(1024 + 0x58, 200);
        assert_eq!(
            open_error(img),
            "t.img: corrupt inode size 200 (want a power of two from 128 to the block size 1024) at byte offset 1112"
        );
    }

    #[test]
    fn a_bad_superblock_checksum_is_corrupt_at_the_checksum() {
        let mut img = Image::new();
        img.put32(1024 + 0x64, RO_METADATA_CSUM);
        img.0[1024 + 0x175] = 1;
        let crc = checksum::crc32c(!0, &img.0[1024..1024 + 0x3FC]);
        img.put32(1024 + 0x3FC, crc ^ 1);
        assert_eq!(
            open_error(img),
            format!(
                "t.img: corrupt superblock checksum 0x{:08X} (computed 0x{crc:08X}) at byte offset 2044",
                crc ^ 1
            )
        );
    }

    const RO_METADATA_CSUM: u32 = 0x400;

    #[test]
    fn a_root_that_is_not_a_directory_fails_the_open() {
        let mut img = Image::new();
        img.put16(Image::inode_at(2), 0x81A4);
        assert_eq!(
            open_error(img),
            "t.img: corrupt root inode 2 has mode 0o100644, not a directory at byte offset 5376"
        );
    }

    #[test]
    fn an_unreadable_inode_is_listed_from_its_directory_entry_and_fails_when_read() {
        let mut img = Image::new();
        img.put16(Image::inode_at(12) + 0x80, 3); // extra_isize not a multiple of 4
        let fs = ok(img.open());
        let entries = ok(fs.read_dir(2));
        assert_eq!((entries[0].kind, entries[0].mtime), (EntryKind::File, None));
        let e = fs.read(12, 0, &mut [0u8; 16]).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("t.img: corrupt inode 12: extra size 3 (the record is 256 bytes) at byte offset 8064")
        );
    }
}
