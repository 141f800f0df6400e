//! FAT12/16/32 directories: 8.3 short entries, VFAT long names, the volume label.
//!
//! A long name is a run of LFN entries (ordinals N|0x40, N-1, ..., 1) right before its short
//! entry, each carrying the short name's checksum. A run that is broken, out of order or whose
//! checksum does not match the short name is dropped and the short name is used, as Windows
//! does. Long names stay raw UTF-16; short names are decoded from code page 437 (the Linux
//! default) with the NT lowercase flags of byte 12 applied.

use super::{le16, le32, time, Listing, Node};
use crate::fs::RawName;

/// Bytes per directory entry.
pub(super) const ENTRY: usize = 32;

const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0F;
const ATTR_LONG_NAME_MASK: u8 = 0x3F;
/// Byte 12: the base name is lower case.
const NT_LOWER_BASE: u8 = 0x08;
/// Byte 12: the extension is lower case.
const NT_LOWER_EXT: u8 = 0x10;
/// UTF-16 units per LFN entry.
const LFN_UNITS: usize = 13;
/// Byte offsets of the 13 UTF-16 units in an LFN entry.
const LFN_OFFSETS: [usize; LFN_UNITS] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

/// Code page 437, bytes 0x80..=0xFF.
const CP437_HIGH: [u16; 128] = [
    0x00C7, 0x00FC, 0x00E9, 0x00E2, 0x00E4, 0x00E0, 0x00E5, 0x00E7, 0x00EA, 0x00EB, 0x00E8, 0x00EF,
    0x00EE, 0x00EC, 0x00C4, 0x00C5, 0x00C9, 0x00E6, 0x00C6, 0x00F4, 0x00F6, 0x00F2, 0x00FB, 0x00F9,
    0x00FF, 0x00D6, 0x00DC, 0x00A2, 0x00A3, 0x00A5, 0x20A7, 0x0192, 0x00E1, 0x00ED, 0x00F3, 0x00FA,
    0x00F1, 0x00D1, 0x00AA, 0x00BA, 0x00BF, 0x2310, 0x00AC, 0x00BD, 0x00BC, 0x00A1, 0x00AB, 0x00BB,
    0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556, 0x2555, 0x2563, 0x2551, 0x2557,
    0x255D, 0x255C, 0x255B, 0x2510, 0x2514, 0x2534, 0x252C, 0x251C, 0x2500, 0x253C, 0x255E, 0x255F,
    0x255A, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256C, 0x2567, 0x2568, 0x2564, 0x2565, 0x2559,
    0x2558, 0x2552, 0x2553, 0x256B, 0x256A, 0x2518, 0x250C, 0x2588, 0x2584, 0x258C, 0x2590, 0x2580,
    0x03B1, 0x00DF, 0x0393, 0x03C0, 0x03A3, 0x03C3, 0x00B5, 0x03C4, 0x03A6, 0x0398, 0x03A9, 0x03B4,
    0x221E, 0x03C6, 0x03B5, 0x2229, 0x2261, 0x00B1, 0x2265, 0x2264, 0x2320, 0x2321, 0x00F7, 0x2248,
    0x00B0, 0x2219, 0x00B7, 0x221A, 0x207F, 0x00B2, 0x25A0, 0x00A0,
];

/// One byte of an 8.3 name as UTF-16.
fn cp437(byte: u8) -> u16 {
    match byte.checked_sub(0x80) {
        Some(i) => CP437_HIGH[usize::from(i)],
        None => u16::from(byte),
    }
}

/// A label from an 11-byte field (boot sector or label entry): `None` when blank or the
/// `NO NAME` placeholder.
pub(super) fn label_from_bytes(field: &[u8]) -> Option<String> {
    let end = field
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i + 1);
    let units: Vec<u16> = field[..end].iter().map(|&b| cp437(b)).collect();
    let label = String::from_utf16_lossy(&units);
    (!label.is_empty() && label != "NO NAME").then_some(label)
}

/// The checksum of an 11-byte short name, as stored in its LFN entries.
pub(super) fn short_checksum(name: &[u8]) -> u8 {
    name.iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// The display form of an 8.3 name: base, then `.` and the extension if there is one, with
/// the lowercase flags applied. Empty when the base is blank (a corrupt entry).
fn short_name(raw: &[u8], nt_flags: u8) -> Vec<u16> {
    let mut name = [0u8; 11];
    name.copy_from_slice(&raw[..11]);
    // 0x05 stands for a leading 0xE5, which would otherwise mark the entry deleted.
    if name[0] == 0x05 {
        name[0] = 0xE5;
    }
    let trim = |s: &[u8]| -> usize { s.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1) };
    let (base, ext) = name.split_at(8);
    let (base, ext) = (&base[..trim(base)], &ext[..trim(ext)]);
    if base.is_empty() {
        return Vec::new();
    }
    let convert = |bytes: &[u8], lower: bool| -> Vec<u16> {
        bytes
            .iter()
            .map(|&b| cp437(if lower { b.to_ascii_lowercase() } else { b }))
            .collect()
    };
    let mut out = convert(base, nt_flags & NT_LOWER_BASE != 0);
    if !ext.is_empty() {
        out.push(u16::from(b'.'));
        out.extend(convert(ext, nt_flags & NT_LOWER_EXT != 0));
    }
    out
}

/// A long name being collected.
struct LongName {
    /// The entries' units in physical order (ordinal N first).
    parts: Vec<[u16; LFN_UNITS]>,
    /// The ordinal the next entry must have (0 once complete).
    next: u8,
    /// The short-name checksum every entry carries.
    checksum: u8,
}

impl LongName {
    /// The name, when complete and made for the short name `raw`.
    fn finish(self, raw: &[u8]) -> Option<Vec<u16>> {
        if self.next != 0 || self.checksum != short_checksum(raw) {
            return None;
        }
        let mut units: Vec<u16> = self.parts.iter().rev().flatten().copied().collect();
        if let Some(end) = units.iter().position(|&u| u == 0) {
            units.truncate(end);
        }
        (!units.is_empty()).then_some(units)
    }
}

/// Parses the entries of a FAT directory. `bytes` is the directory's content; `at(i)` is the
/// byte offset on the device of content byte `i`; `fat32` says whether the high word of the
/// first cluster counts; `root` whether a volume-label entry is expected.
pub(super) fn parse(bytes: &[u8], fat32: bool, root: bool, at: &dyn Fn(usize) -> u64) -> Listing {
    let mut out = Listing::default();
    let mut long: Option<LongName> = None;
    for (slot, e) in bytes.chunks_exact(ENTRY).enumerate() {
        let pos = slot.saturating_mul(ENTRY);
        match e[0] {
            0x00 => break,
            0xE5 => {
                long = None;
                continue;
            }
            _ => {}
        }
        let attr = e[11];
        if attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME {
            let ordinal = e[0] & 0x1F;
            let mut units = [0u16; LFN_UNITS];
            for (u, &off) in units.iter_mut().zip(LFN_OFFSETS.iter()) {
                *u = le16(e, off);
            }
            let checksum = e[13];
            long = if e[0] & 0x40 != 0 {
                (1..=20).contains(&ordinal).then(|| LongName {
                    parts: vec![units],
                    next: ordinal - 1,
                    checksum,
                })
            } else {
                long.and_then(|mut l| {
                    (l.next != 0 && ordinal == l.next && checksum == l.checksum).then(|| {
                        l.parts.push(units);
                        l.next -= 1;
                        l
                    })
                })
            };
            continue;
        }
        let pending = long.take();
        let raw = &e[..11];
        if attr & ATTR_VOLUME_ID != 0 {
            if root && out.label.is_none() {
                out.label = label_from_bytes(raw);
            }
            continue;
        }
        if raw == b".          " || raw == b"..         " {
            continue;
        }
        let Ok(slot) = u32::try_from(slot) else {
            break;
        };
        let name = match pending.and_then(|l| l.finish(raw)) {
            Some(units) => units,
            None => short_name(raw, e[12]),
        };
        if name.is_empty() {
            out.problems.push(format!(
                "directory entry at byte offset {} has a blank name; skipped",
                at(pos)
            ));
            continue;
        }
        let high = if fat32 {
            u32::from(le16(e, 20)) << 16
        } else {
            0
        };
        let dir = attr & ATTR_DIRECTORY != 0;
        let size = if dir { 0 } else { u64::from(le32(e, 28)) };
        out.nodes.push(Node {
            slot,
            offset: at(pos),
            name: RawName::Utf16(name),
            dir,
            size,
            valid: size,
            first_cluster: high | u32::from(le16(e, 26)),
            contiguous: false,
            mtime: time::fat_mtime(le16(e, 24), le16(e, 22)),
            broken: None,
        });
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A short entry.
    pub(crate) fn short(name: &[u8; 11], attr: u8, nt: u8, cluster: u32, size: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        e[12] = nt;
        e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        // 2001-09-09 01:46:40
        e[22..24].copy_from_slice(&((1u16 << 11) | (46 << 5) | 20).to_le_bytes());
        e[24..26].copy_from_slice(&((21u16 << 9) | (9 << 5) | 9).to_le_bytes());
        e
    }

    /// The LFN entries (physical order) for `name` before short name `short`.
    pub(crate) fn lfn(name: &[u16], short: &[u8; 11]) -> Vec<[u8; 32]> {
        let sum = short_checksum(short);
        let mut units = name.to_vec();
        if !units.len().is_multiple_of(13) {
            units.push(0);
        }
        while !units.len().is_multiple_of(13) {
            units.push(0xFFFF);
        }
        let n = units.len() / 13;
        let mut out = Vec::new();
        for i in (0..n).rev() {
            let mut e = [0u8; 32];
            e[0] = (i as u8 + 1) | if i + 1 == n { 0x40 } else { 0 };
            e[11] = 0x0F;
            e[13] = sum;
            for (k, &off) in LFN_OFFSETS.iter().enumerate() {
                e[off..off + 2].copy_from_slice(&units[i * 13 + k].to_le_bytes());
            }
            out.push(e);
        }
        out
    }

    fn listing(entries: &[[u8; 32]]) -> Listing {
        let bytes: Vec<u8> = entries.iter().flatten().copied().collect();
        parse(&bytes, true, true, &|i| 4096 + i as u64)
    }

    fn names(l: &Listing) -> Vec<String> {
        l.nodes
            .iter()
            .map(|n| n.name.to_utf8().unwrap_or_default())
            .collect()
    }

    #[test]
    fn short_long_deleted_dot_and_label_entries() {
        let long: Vec<u16> = "A long name, café 日本.txt".encode_utf16().collect();
        let mut entries = vec![
            short(b"MYDISK     ", 0x08, 0, 0, 0),
            short(b".          ", 0x10, 0, 5, 0),
            short(b"..         ", 0x10, 0, 0, 0),
            short(b"README  TXT", 0x20, 0, 7, 12),
            short(b"LOWER   TXT", 0x20, NT_LOWER_BASE | NT_LOWER_EXT, 8, 1),
            short(b"MIXED   TXT", 0x20, NT_LOWER_BASE, 8, 1),
            short(b"\xe5ELETED TXT", 0x20, 0, 9, 1),
            short(b"\x05BC     TXT", 0x20, 0, 9, 1),
        ];
        entries.extend(lfn(&long, b"ALONGN~1TXT"));
        entries.push(short(b"ALONGN~1TXT", 0x20, 0, 0x12_0034, 99));
        entries.push(short(b"SUBDIR     ", 0x10, 0, 10, 0));
        entries.push([0u8; 32]);
        entries.push(short(b"AFTEREND   ", 0x20, 0, 11, 1));
        let l = listing(&entries);
        assert_eq!(l.label.as_deref(), Some("MYDISK"));
        assert_eq!(
            names(&l),
            vec![
                "README.TXT",
                "lower.txt",
                "mixed.TXT",
                "\u{3c3}BC.TXT",
                "A long name, café 日本.txt",
                "SUBDIR"
            ]
        );
        let n = &l.nodes[4];
        assert_eq!((n.slot, n.first_cluster, n.size), (10, 0x12_0034, 99));
        assert_eq!(n.offset, 4096 + 10 * 32);
        assert_eq!(n.mtime.map(|t| t.seconds), Some(1_000_000_000));
        assert!(l.nodes[5].dir);
    }

    #[test]
    fn a_long_name_with_a_wrong_checksum_falls_back_to_the_short_name() {
        let long: Vec<u16> = "Long file name.txt".encode_utf16().collect();
        let mut entries = lfn(&long, b"LONGFI~1TXT");
        entries[1][13] ^= 1;
        entries.push(short(b"LONGFI~1TXT", 0x20, 0, 3, 1));
        assert_eq!(names(&listing(&entries)), vec!["LONGFI~1.TXT"]);
        // The right checksum, but made for another short name.
        let mut entries = lfn(&long, b"OTHER   TXT");
        entries.push(short(b"LONGFI~1TXT", 0x20, 0, 3, 1));
        assert_eq!(names(&listing(&entries)), vec!["LONGFI~1.TXT"]);
        // A missing middle entry.
        let long: Vec<u16> = "x".repeat(30).encode_utf16().collect();
        let mut entries = lfn(&long, b"XXXXXX~1   ");
        entries.remove(1);
        entries.push(short(b"XXXXXX~1   ", 0x20, 0, 3, 1));
        assert_eq!(names(&listing(&entries)), vec!["XXXXXX~1"]);
    }

    #[test]
    fn long_names_keep_unpaired_surrogates() {
        let long = vec![0x61, 0xD800, 0x62];
        let mut entries = lfn(&long, b"A_B     TXT");
        entries.push(short(b"A_B     TXT", 0x20, 0, 3, 1));
        let l = listing(&entries);
        assert_eq!(l.nodes[0].name, RawName::Utf16(long));
    }

    #[test]
    fn a_blank_short_name_is_skipped_and_reported() {
        let l = listing(&[short(b"           ", 0x20, 0, 3, 1)]);
        assert!(l.nodes.is_empty());
        assert_eq!(
            l.problems,
            vec!["directory entry at byte offset 4096 has a blank name; skipped"]
        );
    }

    #[test]
    fn labels() {
        assert_eq!(label_from_bytes(b"NO NAME    "), None);
        assert_eq!(label_from_bytes(b"           "), None);
        assert_eq!(label_from_bytes(b"DATA 1     ").as_deref(), Some("DATA 1"));
    }
}
