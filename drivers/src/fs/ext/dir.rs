//! Directory blocks: linear lists of `ext4_dir_entry_2` records.
//!
//! Hashed (htree) directories are read the same way: their index blocks look like one empty
//! entry spanning the block (or, for the root, like `.` and `..`), so walking every block
//! linearly lists each name exactly once without trusting the hash tree.

use super::checksum::crc32c;
use super::{le16, le32, Dev};
use crate::fs::{EntryKind, FsError};

/// One name found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry {
    /// The inode it names.
    pub ino: u32,
    /// The name's bytes.
    pub name: Vec<u8>,
    /// The file type byte (0 when the volume has no filetype feature).
    pub file_type: u8,
    /// Byte offset of the record, for error messages.
    pub offset: u64,
}

/// The kind a directory entry's file type byte gives.
pub(crate) fn kind_of_file_type(file_type: u8) -> Option<EntryKind> {
    Some(match file_type {
        1 => EntryKind::File,
        2 => EntryKind::Directory,
        3 => EntryKind::CharDevice,
        4 => EntryKind::BlockDevice,
        5 => EntryKind::Fifo,
        6 => EntryKind::Socket,
        7 => EntryKind::Symlink,
        _ => return None,
    })
}

/// Parses the records of one directory block (or an inline-data region) read at byte
/// `offset`, appending every live entry except `.` and `..` to `out`.
pub(crate) fn parse_block(
    buf: &[u8],
    offset: u64,
    filetype: bool,
    dev: &Dev,
    out: &mut Vec<RawEntry>,
) -> Result<(), FsError> {
    let len = buf.len();
    let mut pos = 0usize;
    while pos < len {
        let at = offset + pos as u64;
        if pos + 8 > len {
            return Err(dev.corrupt(
                at,
                format!(
                    "directory entry header runs past the block ({} bytes left)",
                    len - pos
                ),
            ));
        }
        let ino = le32(buf, pos);
        let mut rec_len = usize::from(le16(buf, pos + 4));
        // 64 KiB blocks store a whole-block record length as 65535 (or 0).
        if len == 65536 && pos == 0 && (rec_len == 65535 || rec_len == 0) {
            rec_len = 65536;
        }
        let (name_len, file_type) = if filetype {
            (usize::from(buf[pos + 6]), buf[pos + 7])
        } else {
            (usize::from(le16(buf, pos + 6)), 0)
        };
        if rec_len < 8 || rec_len % 4 != 0 || pos + rec_len > len || 8 + name_len > rec_len {
            return Err(dev.corrupt(
                at,
                format!(
                    "directory entry record length {rec_len} (name length {name_len}, {} bytes left in the block)",
                    len - pos
                ),
            ));
        }
        if ino != 0 {
            let name = &buf[pos + 8..pos + 8 + name_len];
            if name.is_empty() {
                return Err(dev.corrupt(
                    at,
                    format!("directory entry for inode {ino} has an empty name"),
                ));
            }
            if name != b"." && name != b".." {
                out.push(RawEntry {
                    ino,
                    name: name.to_vec(),
                    file_type,
                    offset: at,
                });
            }
        }
        pos += rec_len;
    }
    Ok(())
}

/// Checks the checksum in a leaf block's tail record, when it has one (htree index blocks
/// have none, and are not checked).
pub(crate) fn verify_leaf(block: &[u8], offset: u64, seed: u32, dev: &Dev) -> Result<(), FsError> {
    let Some(tail_start) = block.len().checked_sub(12) else {
        return Ok(());
    };
    let tail = &block[tail_start..];
    let is_tail = le32(tail, 0) == 0 && le16(tail, 4) == 12 && tail[6] == 0 && tail[7] == 0xDE;
    if !is_tail {
        return Ok(());
    }
    let stored = le32(tail, 8);
    let computed = crc32c(seed, &block[..tail_start]);
    if stored != computed {
        return Err(dev.corrupt(
            offset + tail_start as u64 + 8,
            format!("directory block checksum 0x{stored:08X} (computed 0x{computed:08X})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ino: u32, rec_len: u16, name: &[u8], file_type: u8) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&ino.to_le_bytes());
        r.extend_from_slice(&rec_len.to_le_bytes());
        r.push(name.len() as u8);
        r.push(file_type);
        r.extend_from_slice(name);
        r.resize(usize::from(rec_len), 0);
        r
    }

    fn block() -> Vec<u8> {
        let mut b = record(2, 12, b".", 2);
        b.extend(record(2, 12, b"..", 2));
        b.extend(record(12, 20, b"bad_\xff\xfe", 1));
        b.extend(record(0, 16, b"gone", 1));
        b.extend(record(13, 1024 - 60, b"sub", 2));
        b
    }

    #[test]
    fn names_stay_raw_and_dot_entries_and_free_records_are_skipped() {
        let dev = Dev("t.img".into());
        let mut out = Vec::new();
        assert!(parse_block(&block(), 4096, true, &dev, &mut out).is_ok());
        let names: Vec<(u32, &[u8], u8)> = out
            .iter()
            .map(|e| (e.ino, e.name.as_slice(), e.file_type))
            .collect();
        assert_eq!(
            names,
            vec![(12, &b"bad_\xff\xfe"[..], 1), (13, &b"sub"[..], 2)]
        );
        assert_eq!(out[1].offset, 4096 + 60);
    }

    #[test]
    fn a_bad_record_length_is_corrupt_at_its_offset() {
        let dev = Dev("t.img".into());
        let mut b = block();
        // The third record's rec_len: 6 is below the 8-byte header.
        b[24 + 4] = 6;
        let e = parse_block(&b, 4096, true, &dev, &mut Vec::new())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("t.img: corrupt directory entry record length 6 (name length 6, 1000 bytes left in the block) at byte offset 4120")
        );
    }
}
