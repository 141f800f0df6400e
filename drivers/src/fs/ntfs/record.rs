//! MFT records and INDX blocks: update-sequence fixups, the record header, attributes and
//! attribute-list entries. Parsers return text describing what is corrupt; the caller adds
//! the device and offset.

use super::runlist::{self, Run};
use super::{le16, le32, le64};

/// `$STANDARD_INFORMATION`.
pub(super) const STANDARD_INFORMATION: u32 = 0x10;
/// `$ATTRIBUTE_LIST`.
pub(super) const ATTRIBUTE_LIST: u32 = 0x20;
/// `$VOLUME_NAME`.
pub(super) const VOLUME_NAME: u32 = 0x60;
/// `$VOLUME_INFORMATION`.
pub(super) const VOLUME_INFORMATION: u32 = 0x70;
/// `$DATA`.
pub(super) const DATA: u32 = 0x80;
/// `$INDEX_ROOT`.
pub(super) const INDEX_ROOT: u32 = 0x90;
/// `$INDEX_ALLOCATION`.
pub(super) const INDEX_ALLOCATION: u32 = 0xA0;
/// `$BITMAP`.
pub(super) const BITMAP: u32 = 0xB0;
/// `$REPARSE_POINT`.
pub(super) const REPARSE_POINT: u32 = 0xC0;

/// Attribute flag: LZNT1-compressed.
pub(super) const ATTR_COMPRESSED: u16 = 0x0001;
/// Attribute flag: EFS-encrypted.
pub(super) const ATTR_ENCRYPTED: u16 = 0x4000;

/// Record flag: in use.
pub(super) const RECORD_IN_USE: u16 = 0x0001;
/// Record flag: has a filename index (a directory).
pub(super) const RECORD_DIRECTORY: u16 = 0x0002;

/// The fixup stride: the update sequence protects the last two bytes of every 512 bytes.
const STRIDE: usize = 512;

/// Checks and undoes the update-sequence fixups of a multi-sector record (`FILE` or `INDX`)
/// in place, after checking its magic.
///
/// # Errors
///
/// A wrong magic, an update-sequence array that does not fit the record, or a sector whose
/// last two bytes do not carry the sequence number (a torn write).
pub(super) fn apply_fixups(buf: &mut [u8], magic: &[u8; 4]) -> Result<(), String> {
    if buf.get(..4) != Some(&magic[..]) {
        let got = buf.get(..4).unwrap_or(&[]);
        return Err(format!(
            "record magic {:?} (want {:?})",
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(magic)
        ));
    }
    let usa_offset = usize::from(le16(buf, 4));
    let usa_count = usize::from(le16(buf, 6));
    if !buf.len().is_multiple_of(STRIDE) || usa_count != buf.len() / STRIDE + 1 {
        return Err(format!(
            "update sequence of {usa_count} entries for a {}-byte record",
            buf.len()
        ));
    }
    if usa_offset % 2 != 0 || usa_offset < 8 || usa_offset + 2 * usa_count > STRIDE - 2 {
        return Err(format!("update sequence array at offset {usa_offset}"));
    }
    let usn = [buf[usa_offset], buf[usa_offset + 1]];
    for i in 1..usa_count {
        let at = i * STRIDE - 2;
        if buf[at..at + 2] != usn {
            return Err(format!(
                "sector {} of the record does not end with the update sequence number (torn write)",
                i - 1
            ));
        }
        let fix = usa_offset + 2 * i;
        buf[at] = buf[fix];
        buf[at + 1] = buf[fix + 1];
    }
    Ok(())
}

/// A non-resident attribute instance.
#[derive(Debug, Clone)]
pub(super) struct NonResident {
    pub start_vcn: u64,
    pub last_vcn: u64,
    /// log2 of the compression unit in clusters (0: not compressed).
    pub compression_unit: u8,
    /// Logical size (valid in the instance that starts at VCN 0).
    pub size: u64,
    /// Initialized size: bytes past it read as zeros.
    pub initialized: u64,
    pub runs: Vec<Run>,
}

/// An attribute's value.
#[derive(Debug, Clone)]
pub(super) enum Body {
    Resident(Vec<u8>),
    NonResident(NonResident),
}

/// One attribute of a record.
#[derive(Debug, Clone)]
pub(super) struct Attr {
    pub kind: u32,
    pub name: Vec<u16>,
    pub flags: u16,
    pub body: Body,
}

/// A parsed MFT record.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub flags: u16,
    /// The base record's number, 0 for a base record.
    pub base: u64,
    pub attrs: Vec<Attr>,
}

/// Parses MFT record `number` (fixups already applied) of a volume of `clusters` clusters.
///
/// # Errors
///
/// A header or attribute that does not fit the record.
pub(super) fn parse_record(buf: &[u8], number: u64, clusters: u64) -> Result<Record, String> {
    let usa_offset = le16(buf, 4);
    // Records written by XP and later carry their own number: a mismatch means the $MFT
    // mapping (or the record) is wrong.
    if usa_offset >= 0x30 && u64::from(le32(buf, 0x2C)) != number & 0xFFFF_FFFF {
        return Err(format!(
            "record {number} says it is record {}",
            le32(buf, 0x2C)
        ));
    }
    let flags = le16(buf, 0x16);
    let used = (le32(buf, 0x18) as usize).min(buf.len());
    let base = le64(buf, 0x20) & 0xFFFF_FFFF_FFFF;
    let mut attrs = Vec::new();
    let mut off = usize::from(le16(buf, 0x14));
    loop {
        if off + 4 > used {
            return Err(format!("attribute at offset {off} passes the record's end"));
        }
        let kind = le32(buf, off);
        if kind == 0xFFFF_FFFF {
            break;
        }
        let len = le32(buf, off + 4) as usize;
        if len < 0x18 || !len.is_multiple_of(8) || off + len > used {
            return Err(format!(
                "attribute {kind:#x} at offset {off} has length {len}"
            ));
        }
        let a = &buf[off..off + len];
        attrs.push(parse_attr(a, clusters).map_err(|e| format!("attribute {kind:#x}: {e}"))?);
        off += len;
    }
    Ok(Record { flags, base, attrs })
}

/// Parses one attribute (its whole length in `a`).
fn parse_attr(a: &[u8], clusters: u64) -> Result<Attr, String> {
    let kind = le32(a, 0);
    let non_resident = a[8] != 0;
    let name_len = usize::from(a[9]);
    let name_off = usize::from(le16(a, 0x0A));
    let flags = le16(a, 0x0C);
    let name = if name_len == 0 {
        Vec::new()
    } else {
        let bytes = a
            .get(name_off..name_off + 2 * name_len)
            .ok_or("name passes the attribute's end")?;
        utf16(bytes)
    };
    let body = if non_resident {
        if a.len() < 0x40 {
            return Err("non-resident header cut short".into());
        }
        let start_vcn = le64(a, 0x10);
        let last_vcn = le64(a, 0x18);
        let runs_off = usize::from(le16(a, 0x20));
        let compression_unit = a[0x22];
        let size = le64(a, 0x30);
        let initialized = le64(a, 0x38);
        let runs_bytes = a
            .get(runs_off..)
            .ok_or("runlist offset past the attribute")?;
        let runs = runlist::decode(runs_bytes, start_vcn, clusters)?;
        // An instance may map fewer clusters than it claims (the rest is unallocated),
        // but never more.
        if runs
            .last()
            .is_some_and(|r| r.end() > last_vcn.saturating_add(1))
        {
            return Err(format!("runlist passes the last VCN {last_vcn}"));
        }
        Body::NonResident(NonResident {
            start_vcn,
            last_vcn,
            compression_unit,
            size,
            initialized,
            runs,
        })
    } else {
        let value_len = le32(a, 0x10) as usize;
        let value_off = usize::from(le16(a, 0x14));
        let value = a
            .get(value_off..value_off.saturating_add(value_len))
            .ok_or_else(|| format!("resident value of {value_len} bytes passes the attribute"))?;
        Body::Resident(value.to_vec())
    };
    Ok(Attr {
        kind,
        name,
        flags,
        body,
    })
}

/// UTF-16LE code units from bytes (an odd last byte is dropped).
pub(super) fn utf16(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// One entry of an `$ATTRIBUTE_LIST`: where an instance of an attribute lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListEntry {
    pub kind: u32,
    pub name: Vec<u16>,
    pub start_vcn: u64,
    /// The record holding the instance.
    pub record: u64,
}

/// Parses an `$ATTRIBUTE_LIST` value.
///
/// # Errors
///
/// An entry that does not fit the list.
pub(super) fn parse_list(v: &[u8]) -> Result<Vec<ListEntry>, String> {
    let mut out = Vec::new();
    let mut p = 0usize;
    while p + 0x1A <= v.len() {
        let kind = le32(v, p);
        let len = usize::from(le16(v, p + 4));
        if len < 0x1A || p + len > v.len() {
            return Err(format!("attribute list entry at byte {p} has length {len}"));
        }
        let name_len = usize::from(v[p + 6]);
        let name_off = usize::from(v[p + 7]);
        let name = if name_len == 0 {
            Vec::new()
        } else {
            let bytes = v
                .get(p + name_off..p + name_off + 2 * name_len)
                .filter(|_| name_off + 2 * name_len <= len)
                .ok_or_else(|| format!("attribute list entry at byte {p}: name out of entry"))?;
            utf16(bytes)
        };
        out.push(ListEntry {
            kind,
            name,
            start_vcn: le64(v, p + 8),
            record: le64(v, p + 0x10) & 0xFFFF_FFFF_FFFF,
        });
        p += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_with_usa(size: usize) -> Vec<u8> {
        let mut buf = vec![0u8; size];
        buf[..4].copy_from_slice(b"FILE");
        buf[4..6].copy_from_slice(&0x30u16.to_le_bytes());
        let count = size / 512 + 1;
        buf[6..8].copy_from_slice(&(count as u16).to_le_bytes());
        buf[0x30..0x32].copy_from_slice(&[0x34, 0x12]);
        for i in 1..count {
            // The real last bytes of each sector go into the array; the sectors end with
            // the sequence number.
            let at = i * 512 - 2;
            buf[0x30 + 2 * i] = i as u8;
            buf[0x31 + 2 * i] = 0xA0;
            buf[at] = 0x34;
            buf[at + 1] = 0x12;
        }
        buf
    }

    #[test]
    fn fixups_restore_the_sector_ends() {
        let mut buf = record_with_usa(1024);
        apply_fixups(&mut buf, b"FILE").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[510..512], &[1, 0xA0]);
        assert_eq!(&buf[1022..1024], &[2, 0xA0]);
    }

    #[test]
    fn torn_writes_and_bad_arrays_are_errors() {
        let mut buf = record_with_usa(1024);
        buf[1023] = 0;
        assert!(apply_fixups(&mut buf, b"FILE").is_err());
        let mut buf = record_with_usa(1024);
        assert!(apply_fixups(&mut buf, b"INDX").is_err());
        let mut buf = record_with_usa(1024);
        buf[6] = 9;
        assert!(apply_fixups(&mut buf, b"FILE").is_err());
        let mut buf = record_with_usa(1024);
        buf[4..6].copy_from_slice(&0x1F0u16.to_le_bytes());
        assert!(apply_fixups(&mut buf, b"FILE").is_err());
        let mut short = b"FIL".to_vec();
        assert!(apply_fixups(&mut short, b"FILE").is_err());
    }

    #[test]
    fn attribute_lists_parse_and_reject_overruns() {
        let mut v = vec![0u8; 0x20];
        v[..4].copy_from_slice(&DATA.to_le_bytes());
        v[4..6].copy_from_slice(&0x20u16.to_le_bytes());
        v[8..16].copy_from_slice(&7u64.to_le_bytes());
        v[0x10..0x18].copy_from_slice(&(0x0003_0000_0000_0042u64).to_le_bytes());
        let list = parse_list(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            list,
            vec![ListEntry {
                kind: DATA,
                name: Vec::new(),
                start_vcn: 7,
                record: 0x42
            }]
        );
        v[4..6].copy_from_slice(&0x40u16.to_le_bytes());
        assert!(parse_list(&v).is_err());
    }
}
