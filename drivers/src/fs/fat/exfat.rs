//! exFAT directories: entry sets (File, Stream Extension, File Name entries), the volume
//! label, and the entries a reader skips (allocation bitmap, up-case table, GUID, padding).
//!
//! A set whose structure is broken (no stream entry, a missing name entry, a set running past
//! the directory) cannot be named: it is skipped and reported as a problem. A set that is
//! well formed but fails its checksum is listed with its name and marked broken, so reading it
//! fails with a corrupt error naming the set, and the rest of the directory still lists.
//! Names are raw UTF-16: the units of all File Name entries are joined before anything looks
//! at them, so a surrogate pair split across two entries survives.

use super::{le16, le32, le64, time, Listing, Node};
use crate::fs::RawName;

/// Bytes per directory entry.
const ENTRY: usize = 32;
const TYPE_END: u8 = 0x00;
const TYPE_IN_USE: u8 = 0x80;
const TYPE_LABEL: u8 = 0x83;
const TYPE_FILE: u8 = 0x85;
const TYPE_STREAM: u8 = 0xC0;
const TYPE_NAME: u8 = 0xC1;
const ATTR_DIRECTORY: u16 = 0x10;
/// Stream flags: clusters are allocated (FirstCluster and DataLength are meaningful).
const ALLOCATION_POSSIBLE: u8 = 0x01;
/// Stream flags: the clusters are contiguous and the FAT is not used.
const NO_FAT_CHAIN: u8 = 0x02;
/// UTF-16 units per File Name entry.
const NAME_UNITS: usize = 15;

/// The entry-set checksum: every byte of the set except the checksum field itself (bytes 2
/// and 3 of the File entry).
pub(super) fn set_checksum(set: &[u8]) -> u16 {
    set.iter()
        .enumerate()
        .filter(|&(i, _)| i != 2 && i != 3)
        .fold(0u16, |sum, (_, &b)| {
            sum.rotate_right(1).wrapping_add(u16::from(b))
        })
}

/// Parses the entries of an exFAT directory. `bytes` is its content, `at(i)` the device
/// offset of content byte `i`, `root` whether a volume label may appear.
pub(super) fn parse(bytes: &[u8], root: bool, at: &dyn Fn(usize) -> u64) -> Listing {
    let mut out = Listing::default();
    let entries: Vec<&[u8]> = bytes.chunks_exact(ENTRY).collect();
    let mut i = 0usize;
    while let Some(&e) = entries.get(i) {
        let kind = e[0];
        if kind == TYPE_END {
            break;
        }
        let step = match kind {
            TYPE_FILE => match file_set(&entries, i, at) {
                Ok((node, len)) => {
                    // A set that fails its checksum may have a wrong length too: step over its
                    // File entry only, and let its secondaries be skipped as orphans.
                    let step = if node.broken.is_some() { 1 } else { len };
                    out.nodes.push(node);
                    step
                }
                Err(problem) => {
                    out.problems.push(problem);
                    1
                }
            },
            TYPE_LABEL if root => {
                let n = usize::from(e[1]).min(11);
                let units: Vec<u16> = (0..n).map(|k| le16(e, 2 + 2 * k)).collect();
                let label = String::from_utf16_lossy(&units);
                if out.label.is_none() && !label.is_empty() {
                    out.label = Some(label);
                }
                1
            }
            // Deleted entries, the allocation bitmap, the up-case table, GUID, padding, vendor
            // entries and secondaries outside a set.
            _ => 1,
        };
        i = i.saturating_add(step);
    }
    out
}

/// Parses the set whose File entry is entry `i`: the node and the set's length in entries.
fn file_set(
    entries: &[&[u8]],
    i: usize,
    at: &dyn Fn(usize) -> u64,
) -> Result<(Node, usize), String> {
    let file = entries[i];
    let offset = at(i.saturating_mul(ENTRY));
    let problem =
        |what: String| format!("exFAT entry set at byte offset {offset}: {what}; skipped");
    let secondaries = usize::from(file[1]);
    if !(2..=18).contains(&secondaries) {
        return Err(problem(format!(
            "secondary count {secondaries} (expected 2..=18)"
        )));
    }
    let len = secondaries + 1;
    let Some(set) = entries.get(i..i.saturating_add(len)) else {
        return Err(problem(format!(
            "{len} entries run past the end of the directory"
        )));
    };
    if let Some(k) = set.iter().position(|e| e[0] & TYPE_IN_USE == 0) {
        return Err(problem(format!(
            "entry {k} of the set is not in use (type {:#04x})",
            set[k][0]
        )));
    }
    let stream = set[1];
    if stream[0] != TYPE_STREAM {
        return Err(problem(format!(
            "second entry has type {:#04x} (expected a stream extension, 0xc0)",
            stream[0]
        )));
    }
    let name_len = usize::from(stream[3]);
    let name_entries = name_len.div_ceil(NAME_UNITS);
    if name_len == 0 || name_entries > secondaries - 1 {
        return Err(problem(format!(
            "name length {name_len} does not fit {} name entries",
            secondaries - 1
        )));
    }
    let mut name = Vec::with_capacity(name_entries * NAME_UNITS);
    for (k, e) in set[2..2 + name_entries].iter().enumerate() {
        if e[0] != TYPE_NAME {
            return Err(problem(format!(
                "entry {} has type {:#04x} (expected a file name, 0xc1)",
                k + 2,
                e[0]
            )));
        }
        name.extend((0..NAME_UNITS).map(|u| le16(e, 2 + 2 * u)));
    }
    name.truncate(name_len);
    let bytes: Vec<u8> = set.iter().flat_map(|e| e.iter().copied()).collect();
    let stored = le16(file, 2);
    let computed = set_checksum(&bytes);
    let mut broken = (stored != computed)
        .then(|| format!("exFAT entry set checksum {stored:#06x} (computed {computed:#06x})"));
    let flags = stream[1];
    let valid = le64(stream, 8);
    let size = le64(stream, 24);
    let mut first_cluster = le32(stream, 20);
    if flags & ALLOCATION_POSSIBLE == 0 {
        if size != 0 && broken.is_none() {
            broken = Some(format!(
                "exFAT stream extension without allocation but with data length {size}"
            ));
        }
        first_cluster = 0;
    }
    if valid > size && broken.is_none() {
        broken = Some(format!(
            "exFAT stream extension: valid data length {valid} above data length {size}"
        ));
    }
    let dir = le16(file, 4) & ATTR_DIRECTORY != 0;
    let node = Node {
        slot: u32::try_from(i).map_err(|_| problem("slot beyond 32 bits".into()))?,
        offset,
        name: RawName::Utf16(name),
        dir,
        size: if dir { 0 } else { size },
        valid: if dir { size } else { valid.min(size) },
        first_cluster,
        contiguous: flags & NO_FAT_CHAIN != 0,
        mtime: time::exfat_time(le32(file, 12), file[21], file[23]),
        broken,
    };
    Ok((node, len))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Builds an entry set for `name` (UTF-16 units) with the given attributes, stream flags,
    /// first cluster, valid length and length, checksum filled in.
    pub(crate) fn set(
        name: &[u16],
        attr: u16,
        flags: u8,
        cluster: u32,
        valid: u64,
        size: u64,
    ) -> Vec<u8> {
        let names = name.len().div_ceil(NAME_UNITS);
        let mut out = vec![0u8; (2 + names) * ENTRY];
        out[0] = TYPE_FILE;
        out[1] = (1 + names) as u8;
        out[4..6].copy_from_slice(&attr.to_le_bytes());
        // 2001-09-09 01:46:40 local, +0.5 s, UTC+01:00.
        let stamp: u32 = (((21u32 << 9) | (9 << 5) | 9) << 16) | ((1 << 11) | (46 << 5) | 20);
        out[12..16].copy_from_slice(&stamp.to_le_bytes());
        out[21] = 50;
        out[23] = 0x80 | 4;
        let s = &mut out[ENTRY..2 * ENTRY];
        s[0] = TYPE_STREAM;
        s[1] = flags;
        s[3] = name.len() as u8;
        s[8..16].copy_from_slice(&valid.to_le_bytes());
        s[20..24].copy_from_slice(&cluster.to_le_bytes());
        s[24..32].copy_from_slice(&size.to_le_bytes());
        for k in 0..names {
            let e = &mut out[(2 + k) * ENTRY..(3 + k) * ENTRY];
            e[0] = TYPE_NAME;
            for u in 0..NAME_UNITS {
                let unit = name.get(k * NAME_UNITS + u).copied().unwrap_or(0);
                e[2 + 2 * u..4 + 2 * u].copy_from_slice(&unit.to_le_bytes());
            }
        }
        let sum = set_checksum(&out);
        out[2..4].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// A volume label entry.
    pub(crate) fn label(text: &str) -> Vec<u8> {
        let units: Vec<u16> = text.encode_utf16().collect();
        let mut e = vec![0u8; ENTRY];
        e[0] = TYPE_LABEL;
        e[1] = units.len() as u8;
        for (k, u) in units.iter().enumerate() {
            e[2 + 2 * k..4 + 2 * k].copy_from_slice(&u.to_le_bytes());
        }
        e
    }

    fn utf16(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    fn listing(parts: &[Vec<u8>]) -> Listing {
        let bytes: Vec<u8> = parts.concat();
        parse(&bytes, true, &|i| 8192 + i as u64)
    }

    #[test]
    fn sets_labels_and_skipped_entries() {
        let mut bitmap = vec![0u8; ENTRY];
        bitmap[0] = 0x81;
        let mut upcase = vec![0u8; ENTRY];
        upcase[0] = 0x82;
        let mut deleted = set(&utf16("gone.txt"), 0x20, 3, 9, 1, 1);
        deleted[0] &= 0x7F;
        let l = listing(&[
            label("Photos"),
            bitmap,
            upcase,
            deleted,
            set(&utf16("a.txt"), 0x20, 3, 5, 10, 10),
            set(&utf16("sub"), 0x10, 3, 6, 4096, 4096),
            vec![0u8; ENTRY],
            set(&utf16("after-end"), 0x20, 3, 7, 1, 1),
        ]);
        assert_eq!(l.label.as_deref(), Some("Photos"));
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let names: Vec<_> = l.nodes.iter().map(|n| n.name.to_utf8()).collect();
        assert_eq!(names, vec![Some("a.txt".into()), Some("sub".into())]);
        let a = &l.nodes[0];
        assert_eq!(
            (a.slot, a.offset, a.first_cluster, a.size),
            (6, 8192 + 6 * 32, 5, 10)
        );
        assert!(a.contiguous && !a.dir && a.broken.is_none());
        let t = a.mtime.unwrap_or_else(|| panic!("no mtime"));
        assert_eq!((t.seconds, t.nanos), (1_000_000_000 - 3600, 500_000_000));
        assert!(l.nodes[1].dir);
        assert_eq!((l.nodes[1].size, l.nodes[1].valid), (0, 4096));
    }

    #[test]
    fn long_names_and_split_surrogate_pairs_survive() {
        // 14 ASCII units then an emoji: its surrogate pair straddles the two name entries.
        let name = utf16("abcdefghijklmn😀.txt");
        assert_eq!(name[14], 0xD83D);
        let l = listing(&[set(&name, 0x20, 3, 5, 1, 1)]);
        assert_eq!(l.nodes[0].name, RawName::Utf16(name));
        assert_eq!(
            l.nodes[0].name.to_utf8().as_deref(),
            Some("abcdefghijklmn😀.txt")
        );
        let lone = vec![0x61, 0xDC00];
        let l = listing(&[set(&lone, 0x20, 3, 5, 1, 1)]);
        assert_eq!(l.nodes[0].name, RawName::Utf16(lone));
    }

    #[test]
    fn a_bad_checksum_fails_that_entry_only() {
        let mut bad = set(&utf16("bad.txt"), 0x20, 3, 5, 1, 1);
        bad[ENTRY + 24] ^= 0x01;
        let l = listing(&[bad, set(&utf16("good.txt"), 0x20, 3, 6, 1, 1)]);
        assert_eq!(l.nodes.len(), 2);
        assert!(l.nodes[0]
            .broken
            .as_deref()
            .is_some_and(|b| b.starts_with("exFAT entry set checksum")));
        assert!(l.nodes[1].broken.is_none());
    }

    #[test]
    fn broken_sets_are_skipped_and_reported() {
        let good = set(&utf16("good.txt"), 0x20, 3, 6, 1, 1);
        // No stream extension.
        let mut s = set(&utf16("x"), 0x20, 3, 5, 1, 1);
        s[ENTRY] = 0xC1;
        let l = listing(&[s, good.clone()]);
        assert_eq!(l.nodes.len(), 1);
        assert_eq!(
            l.problems,
            vec![
                "exFAT entry set at byte offset 8192: second entry has type 0xc1 (expected a \
                 stream extension, 0xc0); skipped"
            ]
        );
        // A secondary count of 1.
        let mut s = set(&utf16("x"), 0x20, 3, 5, 1, 1);
        s[1] = 1;
        let l = listing(&[s, good.clone()]);
        assert_eq!(l.nodes.len(), 1);
        assert!(l.problems[0].contains("secondary count 1"));
        // A name longer than its entries.
        let mut s = set(&utf16("x"), 0x20, 3, 5, 1, 1);
        s[ENTRY + 3] = 16;
        let l = listing(&[s, good.clone()]);
        assert!(l.problems[0].contains("name length 16"));
        // A set running past the end.
        let s = set(&utf16("x"), 0x20, 3, 5, 1, 1);
        let l = listing(&[s[..2 * ENTRY].to_vec()]);
        assert!(l.problems[0].contains("run past the end"));
    }

    #[test]
    fn valid_length_above_length_breaks_the_entry() {
        let l = listing(&[set(&utf16("v"), 0x20, 3, 5, 11, 10)]);
        assert!(l.nodes[0]
            .broken
            .as_deref()
            .is_some_and(|b| b.contains("valid data length 11 above data length 10")));
    }
}
