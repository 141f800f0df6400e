//! Catalog, extents-overflow and attributes keys and records.

use std::cmp::Ordering;

use super::volume::ForkData;
use super::{be16, be32};

/// Record types (`kHFSPlusFolderRecord`...).
const FOLDER: u16 = 1;
const FILE: u16 = 2;
const FOLDER_THREAD: u16 = 3;
const FILE_THREAD: u16 = 4;

/// A catalog key: the parent's CNID and the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CatKey {
    pub parent: u32,
    pub name: Vec<u16>,
}

impl CatKey {
    /// Parses a key (without its length field); `None` when it is malformed.
    pub fn parse(key: &[u8]) -> Option<Self> {
        if key.len() < 6 {
            return None;
        }
        let len = usize::from(be16(key, 4));
        if len > 255 || key.len() < 6 + 2 * len {
            return None;
        }
        Some(Self {
            parent: be32(key, 0),
            name: (0..len).map(|i| be16(key, 6 + 2 * i)).collect(),
        })
    }
}

/// Folds a UTF-16 code unit the way HFS+ orders names, for the common cases: ASCII letters
/// compare without case and U+0000 sorts last (Apple's table maps it to 0xFFFF, which is what
/// puts the private metadata directory at the end of the root). Other characters compare as
/// code units; a lookup that misses because of this falls back to a directory scan.
fn fold(u: u16) -> u16 {
    match u {
        0 => 0xFFFF,
        0x41..=0x5A => u + 0x20,
        _ => u,
    }
}

/// Orders two names as the catalog does (`binary` on HFSX).
pub(super) fn cmp_names(a: &[u16], b: &[u16], binary: bool) -> Ordering {
    if binary {
        return a.cmp(b);
    }
    a.iter().map(|&u| fold(u)).cmp(b.iter().map(|&u| fold(u)))
}

/// Orders a stored catalog key against `(parent, name)`; a malformed key sorts first, so a
/// descent never picks it as the place to go right of.
pub(super) fn cmp_cat(stored: &[u8], parent: u32, name: &[u16], binary: bool) -> Ordering {
    match CatKey::parse(stored) {
        Some(k) => k
            .parent
            .cmp(&parent)
            .then_with(|| cmp_names(&k.name, name, binary)),
        None => Ordering::Less,
    }
}

/// Orders a stored extents-overflow key against `(file, fork, start)`.
pub(super) fn cmp_extent(stored: &[u8], file: u32, fork: u8, start: u32) -> Ordering {
    if stored.len() < 10 {
        return Ordering::Less;
    }
    (be32(stored, 2), stored[0], be32(stored, 6)).cmp(&(file, fork, start))
}

/// The eight extents of an extents-overflow record.
pub(super) fn extent_record(data: &[u8]) -> Option<[(u32, u32); 8]> {
    if data.len() < 64 {
        return None;
    }
    let mut out = [(0, 0); 8];
    for (i, e) in out.iter_mut().enumerate() {
        *e = (be32(data, i * 8), be32(data, i * 8 + 4));
    }
    Some(out)
}

/// Orders a stored attributes key against `(file, name)` with start block 0.
pub(super) fn cmp_attr(stored: &[u8], file: u32, name: &[u16]) -> Ordering {
    if stored.len() < 12 {
        return Ordering::Less;
    }
    let len = usize::from(be16(stored, 10));
    if len > 127 || stored.len() < 12 + 2 * len {
        return Ordering::Less;
    }
    be32(stored, 2)
        .cmp(&file)
        .then_with(|| {
            (0..len)
                .map(|i| be16(stored, 12 + 2 * i))
                .cmp(name.iter().copied())
        })
        .then_with(|| be32(stored, 6).cmp(&0))
}

/// The BSD information of a file or folder record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bsd {
    pub owner_flags: u8,
    pub mode: u16,
    /// `iNodeNum` of a hard link, `linkCount` of an indirect node, `rawDevice` of a device.
    pub special: u32,
}

/// A catalog leaf record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    Folder {
        id: u32,
        mtime: u32,
        bsd: Bsd,
    },
    File {
        id: u32,
        mtime: u32,
        bsd: Bsd,
        /// Finder type and creator (`hlnk`/`hfs+` for a file hard link, `fdrp`/`MACS` for a
        /// directory hard link).
        kind_code: [u8; 4],
        creator: [u8; 4],
        data: ForkData,
        rsrc: ForkData,
    },
    Thread {
        folder: bool,
        parent: u32,
        name: Vec<u16>,
    },
}

impl Record {
    /// Parses record data; `None` when it is malformed or of an unknown type.
    pub fn parse(d: &[u8]) -> Option<Self> {
        let bsd = |d: &[u8]| Bsd {
            owner_flags: d[41],
            mode: be16(d, 42),
            special: be32(d, 44),
        };
        match be16(d, 0) {
            FOLDER if d.len() >= 88 => Some(Self::Folder {
                id: be32(d, 8),
                mtime: be32(d, 16),
                bsd: bsd(d),
            }),
            FILE if d.len() >= 248 => Some(Self::File {
                id: be32(d, 8),
                mtime: be32(d, 16),
                bsd: bsd(d),
                kind_code: [d[48], d[49], d[50], d[51]],
                creator: [d[52], d[53], d[54], d[55]],
                data: ForkData::parse(&d[88..168]),
                rsrc: ForkData::parse(&d[168..248]),
            }),
            t @ (FOLDER_THREAD | FILE_THREAD) if d.len() >= 10 => {
                let len = usize::from(be16(d, 8));
                if len > 255 || d.len() < 10 + 2 * len {
                    return None;
                }
                Some(Self::Thread {
                    folder: t == FOLDER_THREAD,
                    parent: be32(d, 4),
                    name: (0..len).map(|i| be16(d, 10 + 2 * i)).collect(),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parent: u32, name: &str) -> Vec<u8> {
        let units: Vec<u16> = name.encode_utf16().collect();
        let mut k = parent.to_be_bytes().to_vec();
        k.extend_from_slice(&(units.len() as u16).to_be_bytes());
        for u in units {
            k.extend_from_slice(&u.to_be_bytes());
        }
        k
    }

    #[test]
    fn names_order_without_ascii_case_and_nul_last() {
        let n = |s: &str| s.encode_utf16().collect::<Vec<u16>>();
        assert_eq!(cmp_names(&n("Hello"), &n("hello"), false), Ordering::Equal);
        assert_eq!(cmp_names(&n("Hello"), &n("hello"), true), Ordering::Less);
        assert_eq!(
            cmp_names(&n("\0\0\0\0HFS+ Private Data"), &n("zzz"), false),
            Ordering::Greater
        );
        assert_eq!(cmp_cat(&key(2, "a"), 2, &n("b"), false), Ordering::Less);
        assert_eq!(cmp_cat(&key(3, "a"), 2, &n("b"), false), Ordering::Greater);
        assert_eq!(cmp_cat(&[0, 0], 2, &n(""), false), Ordering::Less);
    }

    #[test]
    fn malformed_records_are_none() {
        assert_eq!(Record::parse(&[0, 2, 0]), None);
        let mut thread = vec![0, 3, 0, 0, 0, 0, 0, 2, 0, 200];
        assert_eq!(Record::parse(&thread), None);
        thread[9] = 0;
        assert_eq!(
            Record::parse(&thread),
            Some(Record::Thread {
                folder: true,
                parent: 2,
                name: vec![]
            })
        );
    }
}
