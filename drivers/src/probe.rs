//! Filesystem detection by signature: which filesystem a source holds, and its label where
//! that is cheap to read.
//!
//! Boot-sector filesystems (NTFS, exFAT, FAT) are checked first: `mke2fs` zeroes the first
//! kilobyte, so a stale ext superblock left under a later FAT volume does not win. Anything
//! not recognised is reported as unknown (`None`), never guessed.

use crate::fs::FsType;
use crate::source::{IoError, ReadAt};

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The filesystem.
    pub fs_type: FsType,
    /// The volume label, when set and cheap to read (not for HFS+, whose name is in the
    /// catalog).
    pub label: Option<String>,
}

/// How much of the start of a source the signatures need.
const HEAD: usize = 4096;

/// The filesystem on `source`, or `None` when no signature we know is there.
///
/// # Errors
///
/// The source cannot be read.
pub fn probe(source: &dyn ReadAt) -> Result<Option<Detected>, IoError> {
    let mut head = [0u8; HEAD];
    let len = usize::try_from(source.size()).map_or(HEAD, |size| size.min(HEAD));
    source.read_exact_at(0, &mut head[..len])?;
    if len < 512 {
        return Ok(None);
    }
    let mut sector = [0u8; 512];
    sector.copy_from_slice(&head[..512]);
    if is_ntfs(&sector) {
        return Ok(Some(Detected {
            fs_type: FsType::Ntfs,
            label: ntfs_label(source, &sector),
        }));
    }
    if is_exfat(&sector) {
        return Ok(Some(Detected {
            fs_type: FsType::ExFat,
            label: exfat_label(source, &sector),
        }));
    }
    if let Some(fs_type) = fat_type(&sector) {
        return Ok(Some(Detected {
            fs_type,
            label: fat_label(&sector, fs_type),
        }));
    }
    if let Some(detected) = ext(&head[1024..]) {
        return Ok(Some(detected));
    }
    Ok(hfs_plus(&head[1024..]))
}

/// Whether `sector` is the boot sector of a volume (FAT, exFAT, NTFS) rather than an MBR.
pub(crate) fn is_volume_boot_sector(sector: &[u8; 512]) -> bool {
    is_ntfs(sector) || is_exfat(sector) || fat_type(sector).is_some()
}

fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_le(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// A label from fixed-width, space- or NUL-padded bytes.
fn padded_label(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches([' ', '\0']);
    (!text.is_empty()).then(|| text.to_owned())
}

/// A label from UTF-16LE code units.
fn utf16_label(bytes: &[u8]) -> Option<String> {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let text = String::from_utf16_lossy(&units);
    (!text.is_empty()).then_some(text)
}

fn is_ntfs(s: &[u8; 512]) -> bool {
    let bps = u16_le(s, 0x0B);
    &s[3..11] == b"NTFS    "
        && s[510..512] == [0x55, 0xAA]
        && bps.is_power_of_two()
        && (256..=4096).contains(&bps)
}

/// The `$Volume` name of an NTFS volume: MFT record 3, attribute 0x60. Any inconsistency
/// gives no label; reading the volume is the reader's business.
fn ntfs_label(source: &dyn ReadAt, s: &[u8; 512]) -> Option<String> {
    let bps = u64::from(u16_le(s, 0x0B));
    let spc = s[0x0D];
    let cluster = if spc <= 0x80 {
        bps.checked_mul(u64::from(spc))?
    } else {
        bps.checked_shl(256 - u32::from(spc))?
    };
    let per_record = i8::from_le_bytes([s[0x40]]);
    let record_size = if per_record > 0 {
        cluster.checked_mul(u64::try_from(per_record).ok()?)?
    } else {
        1u64.checked_shl(u32::from(per_record.unsigned_abs()))?
    };
    if !(512..=65536).contains(&record_size) || cluster == 0 {
        return None;
    }
    let at = u64_le(s, 0x30)
        .checked_mul(cluster)?
        .checked_add(record_size.checked_mul(3)?)?;
    let mut record = vec![0u8; usize::try_from(record_size).ok()?];
    source.read_exact_at(at, &mut record).ok()?;
    if &record[..4] != b"FILE" {
        return None;
    }
    // Update sequence: the last two bytes of every 512-byte block hold the sequence number;
    // the real bytes are in the array.
    let usa = usize::from(u16_le(&record, 4));
    let usa_count = usize::from(u16_le(&record, 6));
    if usa_count == 0 || usa.checked_add(usa_count.checked_mul(2)?)? > record.len() {
        return None;
    }
    let usn = [record[usa], record[usa + 1]];
    for i in 1..usa_count {
        let end = i.checked_mul(512)?;
        if end > record.len() || record[end - 2..end] != usn {
            return None;
        }
        let fix = [record[usa + 2 * i], record[usa + 2 * i + 1]];
        record[end - 2..end].copy_from_slice(&fix);
    }
    let mut attr = usize::from(u16_le(&record, 0x14));
    // Every attribute is at least 16 bytes long, so this ends.
    while attr.checked_add(16)? <= record.len() {
        let kind = u32_le(&record, attr);
        if kind == 0xFFFF_FFFF {
            return None;
        }
        let len = usize::try_from(u32_le(&record, attr + 4)).ok()?;
        if len < 16 || attr.checked_add(len)? > record.len() {
            return None;
        }
        if kind == 0x60 && record[attr + 8] == 0 && len >= 0x18 {
            let value_len = usize::try_from(u32_le(&record, attr + 0x10)).ok()?;
            let value_at = attr.checked_add(usize::from(u16_le(&record, attr + 0x14)))?;
            let value = record.get(value_at..value_at.checked_add(value_len)?)?;
            return utf16_label(value);
        }
        attr += len;
    }
    None
}

fn is_exfat(s: &[u8; 512]) -> bool {
    &s[3..11] == b"EXFAT   "
        && s[11..64].iter().all(|&b| b == 0)
        && s[510..512] == [0x55, 0xAA]
        && (9..=12).contains(&s[0x6C])
        && u32::from(s[0x6C]) + u32::from(s[0x6D]) <= 25
}

/// The exFAT volume label: the 0x83 entry in the first cluster of the root directory.
fn exfat_label(source: &dyn ReadAt, s: &[u8; 512]) -> Option<String> {
    let sector = 1u64 << s[0x6C];
    let cluster = sector << s[0x6D];
    let heap = u64::from(u32_le(s, 0x58)).checked_mul(sector)?;
    let root = u64::from(u32_le(s, 0x60)).checked_sub(2)?;
    let at = heap.checked_add(root.checked_mul(cluster)?)?;
    let len = usize::try_from(cluster.min(64 << 10)).ok()?;
    let mut dir = vec![0u8; len];
    source.read_exact_at(at, &mut dir).ok()?;
    for entry in dir.chunks_exact(32) {
        match entry[0] {
            0x00 => return None,
            0x83 => {
                let chars = usize::from(entry[1]).min(11);
                return utf16_label(&entry[2..2 + 2 * chars]);
            }
            _ => {}
        }
    }
    None
}

/// FAT12, FAT16 or FAT32 by the cluster-count rule of Microsoft's FAT specification, when
/// `s` is a plausible FAT boot sector.
fn fat_type(s: &[u8; 512]) -> Option<FsType> {
    if !matches!(s[0], 0xEB | 0xE9) || s[510..512] != [0x55, 0xAA] {
        return None;
    }
    let bps = u32::from(u16_le(s, 0x0B));
    let spc = u32::from(s[0x0D]);
    let reserved = u32::from(u16_le(s, 0x0E));
    let fats = u32::from(s[0x10]);
    let root_entries = u32::from(u16_le(s, 0x11));
    let total16 = u32::from(u16_le(s, 0x13));
    let media = s[0x15];
    let fat16 = u32::from(u16_le(s, 0x16));
    let total32 = u32_le(s, 0x20);
    let fat32 = u32_le(s, 0x24);
    if !matches!(bps, 512 | 1024 | 2048 | 4096)
        || !spc.is_power_of_two()
        || spc > 128
        || reserved == 0
        || !(1..=4).contains(&fats)
        || !(media == 0xF0 || media >= 0xF8)
    {
        return None;
    }
    let total = if total16 != 0 { total16 } else { total32 };
    let fat_size = if fat16 != 0 { fat16 } else { fat32 };
    if total == 0 || fat_size == 0 {
        return None;
    }
    let root_sectors = root_entries.checked_mul(32)?.checked_add(bps - 1)? / bps;
    let meta = reserved
        .checked_add(fats.checked_mul(fat_size)?)?
        .checked_add(root_sectors)?;
    let clusters = total.checked_sub(meta)? / spc;
    Some(if clusters < 4085 {
        FsType::Fat12
    } else if clusters < 65525 {
        FsType::Fat16
    } else {
        FsType::Fat32
    })
}

/// The label in the extended boot record (FAT32 keeps it at another offset).
fn fat_label(s: &[u8; 512], fs_type: FsType) -> Option<String> {
    let (signature, label) = if fs_type == FsType::Fat32 {
        (0x42, 0x47)
    } else {
        (0x26, 0x2B)
    };
    // 0x28 is the older extended boot record, without a label.
    if s[signature] != 0x29 {
        return None;
    }
    padded_label(&s[label..label + 11]).filter(|l| l != "NO NAME")
}

/// ext2, ext3 or ext4 by the superblock's feature flags (`sb` is the superblock).
fn ext(sb: &[u8]) -> Option<Detected> {
    const MAGIC: u16 = 0xEF53;
    const COMPAT_HAS_JOURNAL: u32 = 0x4;
    const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
    // What ext3 knows: filetype, recover, meta_bg; sparse_super, large_file, btree_dir.
    // Anything more (extents, 64bit, flex_bg, huge_file, metadata_csum, ...) is ext4.
    const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x10;
    const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;
    if u16_le(sb, 0x38) != MAGIC || u32_le(sb, 0x18) > 6 || u32_le(sb, 0) == 0 {
        return None;
    }
    let compat = u32_le(sb, 0x5C);
    let incompat = u32_le(sb, 0x60);
    let ro_compat = u32_le(sb, 0x64);
    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        // An external journal, not a filesystem.
        return None;
    }
    let fs_type = if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        FsType::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        FsType::Ext3
    } else {
        FsType::Ext2
    };
    Some(Detected {
        fs_type,
        label: padded_label(&sb[0x78..0x88]),
    })
}

/// HFS+ (`H+`, version 4) or HFSX (`HX`, version 5) by the volume header (`vh`) at 1024, or
/// an HFS wrapper (`BD`) whose embedded volume is HFS+ (`H+` at 0x7C of its master directory
/// block).
fn hfs_plus(vh: &[u8]) -> Option<Detected> {
    if &vh[0..2] == b"BD" && &vh[0x7C..0x7E] == b"H+" {
        return Some(Detected {
            fs_type: FsType::HfsPlus,
            label: None,
        });
    }
    let signature = [vh[0], vh[1]];
    let version = u16::from_be_bytes([vh[2], vh[3]]);
    let block_size = u32::from_be_bytes([vh[40], vh[41], vh[42], vh[43]]);
    if block_size < 512 || !block_size.is_power_of_two() {
        return None;
    }
    let fs_type = match (&signature, version) {
        (b"H+", 4) => FsType::HfsPlus,
        (b"HX", 5) => FsType::Hfsx,
        _ => return None,
    };
    Some(Detected {
        fs_type,
        label: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    fn detect(bytes: Vec<u8>) -> Option<Detected> {
        probe(&MemorySource::new("vol.img", bytes)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A FAT boot sector: `total` sectors of 512 bytes, 1 sector per cluster.
    fn fat(total: u32, fat_size: u32, root_entries: u16, fat32: bool) -> Vec<u8> {
        let mut v = vec![0u8; 1 << 20];
        v[0] = 0xEB;
        v[1] = 0x3C;
        v[2] = 0x90;
        v[3..11].copy_from_slice(b"mkfs.fat");
        v[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        v[0x0D] = 1;
        v[0x0E..0x10].copy_from_slice(&(if fat32 { 32u16 } else { 1 }).to_le_bytes());
        v[0x10] = 2;
        v[0x11..0x13].copy_from_slice(&root_entries.to_le_bytes());
        v[0x15] = 0xF8;
        v[0x20..0x24].copy_from_slice(&total.to_le_bytes());
        let (sig, label) = if fat32 {
            v[0x24..0x28].copy_from_slice(&fat_size.to_le_bytes());
            (0x42, 0x47)
        } else {
            v[0x16..0x18].copy_from_slice(&(fat_size as u16).to_le_bytes());
            (0x26, 0x2B)
        };
        v[sig] = 0x29;
        v[label..label + 11].copy_from_slice(b"CUSTOMER   ");
        v[510] = 0x55;
        v[511] = 0xAA;
        v
    }

    #[test]
    fn fat_type_follows_the_cluster_count() {
        // 1 reserved + 2 FATs + 32 root sectors (512 entries), then the clusters.
        let total = |fat_size: u32, clusters: u32| 1 + 2 * fat_size + 32 + clusters;
        let cases = [
            (total(12, 4084), 12, FsType::Fat12),
            (total(16, 4085), 16, FsType::Fat16),
            (total(256, 65524), 256, FsType::Fat16),
        ];
        for (total, fat_size, want) in cases {
            let d = detect(fat(total, fat_size, 512, false));
            assert_eq!(
                d.map(|d| (d.fs_type, d.label)),
                Some((want, Some("CUSTOMER".into()))),
                "{total}"
            );
        }
        // FAT32: 32 reserved + 2 x 600 FAT sectors, no root entries.
        let d = detect(fat(32 + 2 * 600 + 65525, 600, 0, true));
        assert_eq!(
            d.map(|d| (d.fs_type, d.label)),
            Some((FsType::Fat32, Some("CUSTOMER".into())))
        );
        // Metadata larger than the volume: not FAT.
        assert_eq!(detect(fat(30, 12, 512, false)), None);
    }

    #[test]
    fn one_bad_bpb_field_is_not_fat() {
        let total = |fat_size: u32, clusters: u32| 1 + 2 * fat_size + 32 + clusters;
        for (at, value) in [(0x0B, 100u8), (0x0D, 3), (0x10, 0), (0x15, 0x12), (0, 0)] {
            let mut v = fat(total(16, 5000), 16, 512, false);
            v[at] = value;
            if at == 0x0B {
                v[0x0C] = 0;
            }
            assert_eq!(detect(v), None, "byte {at:#x}");
        }
    }

    #[test]
    fn ext_features_decide_the_version() {
        let sb = |compat: u32, incompat: u32, ro: u32| {
            let mut v = vec![0u8; 8192];
            let s = &mut v[1024..2048];
            s[0..4].copy_from_slice(&128u32.to_le_bytes());
            s[0x38..0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
            s[0x5C..0x60].copy_from_slice(&compat.to_le_bytes());
            s[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
            s[0x64..0x68].copy_from_slice(&ro.to_le_bytes());
            s[0x78..0x7D].copy_from_slice(b"disk1");
            v
        };
        let kind = |v| detect(v).map(|d: Detected| d.fs_type);
        assert_eq!(kind(sb(0, 0x2, 0x3)), Some(FsType::Ext2));
        assert_eq!(kind(sb(0x4, 0x2, 0x3)), Some(FsType::Ext3));
        assert_eq!(kind(sb(0x4, 0x2 | 0x40, 0x3)), Some(FsType::Ext4));
        assert_eq!(kind(sb(0x4, 0x2, 0x3 | 0x400)), Some(FsType::Ext4));
        assert_eq!(kind(sb(0, 0x8, 0)), None, "external journal device");
        assert_eq!(
            detect(sb(0, 0x2, 0)).and_then(|d| d.label).as_deref(),
            Some("disk1")
        );
    }

    #[test]
    fn hfs_plus_and_hfsx_by_signature_and_version() {
        let vh = |sig: &[u8; 2], version: u16| {
            let mut v = vec![0u8; 8192];
            v[1024..1026].copy_from_slice(sig);
            v[1026..1028].copy_from_slice(&version.to_be_bytes());
            v[1064..1068].copy_from_slice(&4096u32.to_be_bytes());
            v
        };
        let kind = |v| detect(v).map(|d: Detected| d.fs_type);
        assert_eq!(kind(vh(b"H+", 4)), Some(FsType::HfsPlus));
        assert_eq!(kind(vh(b"HX", 5)), Some(FsType::Hfsx));
        assert_eq!(kind(vh(b"H+", 5)), None);
    }

    #[test]
    fn exfat_label_comes_from_the_root_directory() {
        let mut v = vec![0u8; 1 << 20];
        v[0] = 0xEB;
        v[1] = 0x76;
        v[2] = 0x90;
        v[3..11].copy_from_slice(b"EXFAT   ");
        v[0x58..0x5C].copy_from_slice(&64u32.to_le_bytes()); // cluster heap at sector 64
        v[0x60..0x64].copy_from_slice(&4u32.to_le_bytes()); // root at cluster 4
        v[0x6C] = 9;
        v[0x6D] = 3; // 4 KiB clusters
        v[510] = 0x55;
        v[511] = 0xAA;
        let root = 64 * 512 + 2 * 4096;
        v[root] = 0x83;
        v[root + 1] = 3;
        for (i, u) in "Été".encode_utf16().enumerate() {
            v[root + 2 + 2 * i..root + 4 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        let d = detect(v.clone());
        assert_eq!(
            d.map(|d| (d.fs_type, d.label)),
            Some((FsType::ExFat, Some("Été".into())))
        );
        v[20] = 1; // inside the must-be-zero range
        assert_eq!(detect(v), None);
    }

    #[test]
    fn ntfs_label_comes_from_the_volume_record() {
        let mut v = vec![0u8; 1 << 20];
        v[0] = 0xEB;
        v[1] = 0x52;
        v[2] = 0x90;
        v[3..11].copy_from_slice(b"NTFS    ");
        v[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        v[0x0D] = 8; // 4 KiB clusters
        v[0x30..0x38].copy_from_slice(&4u64.to_le_bytes()); // MFT at cluster 4
        v[0x40] = 0xF6; // -10: 1 KiB records
        v[510] = 0x55;
        v[511] = 0xAA;
        let rec = 4 * 4096 + 3 * 1024;
        let r = &mut v[rec..rec + 1024];
        r[..4].copy_from_slice(b"FILE");
        r[4..6].copy_from_slice(&0x30u16.to_le_bytes());
        r[6..8].copy_from_slice(&3u16.to_le_bytes());
        r[0x14..0x16].copy_from_slice(&0x38u16.to_le_bytes());
        // Update sequence number 0x0007 at the end of each 512-byte block; the real bytes
        // there are zero.
        r[0x30..0x32].copy_from_slice(&7u16.to_le_bytes());
        r[510..512].copy_from_slice(&7u16.to_le_bytes());
        r[1022..1024].copy_from_slice(&7u16.to_le_bytes());
        // A $STANDARD_INFORMATION-like attribute of 0x18 bytes, then $VOLUME_NAME.
        r[0x38..0x3C].copy_from_slice(&0x10u32.to_le_bytes());
        r[0x3C..0x40].copy_from_slice(&0x18u32.to_le_bytes());
        let a = 0x38 + 0x18;
        r[a..a + 4].copy_from_slice(&0x60u32.to_le_bytes());
        r[a + 4..a + 8].copy_from_slice(&0x28u32.to_le_bytes());
        r[a + 0x10..a + 0x14].copy_from_slice(&8u32.to_le_bytes());
        r[a + 0x14..a + 0x16].copy_from_slice(&0x18u16.to_le_bytes());
        for (i, u) in "Data".encode_utf16().enumerate() {
            r[a + 0x18 + 2 * i..a + 0x1A + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        r[a + 0x28..a + 0x2C].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        let d = detect(v.clone());
        assert_eq!(
            d.map(|d| (d.fs_type, d.label)),
            Some((FsType::Ntfs, Some("Data".into())))
        );
        // A torn record (bad update sequence) still detects NTFS, without a label.
        v[rec + 510] = 9;
        assert_eq!(
            detect(v).map(|d| (d.fs_type, d.label)),
            Some((FsType::Ntfs, None))
        );
    }

    #[test]
    fn blank_and_tiny_sources_are_unknown() {
        assert_eq!(detect(vec![0u8; 1 << 16]), None);
        assert_eq!(detect(vec![0u8; 100]), None);
    }
}
