//! Filename index nodes: the entries of `$INDEX_ROOT` and of `INDX` blocks.

use super::record::utf16;
use super::{le16, le32, le64};

/// The DOS (8.3) namespace: an alias of another name, not a file of its own.
pub(super) const NAMESPACE_DOS: u8 = 2;

/// One filename entry of an index node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IndexEntry {
    /// The MFT record the name points to.
    pub record: u64,
    pub name: Vec<u16>,
    pub namespace: u8,
    /// The `$FILE_NAME` copy's file attributes, size and mtime: used only when the record
    /// itself cannot be read.
    pub attributes: u32,
    pub size: u64,
    pub mtime: i64,
}

/// What one node holds: its entries and the VCNs of its child nodes.
#[derive(Debug, Default)]
pub(super) struct Node {
    pub entries: Vec<IndexEntry>,
    pub children: Vec<u64>,
}

/// Parses the index node whose header (entries offset, used length) is at `header` in `buf`.
///
/// # Errors
///
/// An entry that does not fit the node.
pub(super) fn parse_node(buf: &[u8], header: usize) -> Result<Node, String> {
    let first = le32(buf, header) as usize;
    let used = le32(buf, header + 4) as usize;
    let end = header.saturating_add(used).min(buf.len());
    let mut p = header.saturating_add(first);
    let mut node = Node::default();
    loop {
        if p + 0x10 > end {
            return Err(format!(
                "index entry at byte {p} passes the node's end {end}"
            ));
        }
        let len = usize::from(le16(buf, p + 8));
        let key_len = usize::from(le16(buf, p + 10));
        let flags = le16(buf, p + 12);
        if len < 0x10 || len % 8 != 0 || p + len > end {
            return Err(format!("index entry at byte {p} has length {len}"));
        }
        if flags & 1 != 0 {
            if len < 0x18 {
                return Err(format!("index entry at byte {p} is too short for a child"));
            }
            node.children.push(le64(buf, p + len - 8));
        }
        if flags & 2 != 0 {
            break;
        }
        if key_len < 0x42 || 0x10 + key_len > len {
            return Err(format!(
                "index entry at byte {p} has a key of {key_len} bytes"
            ));
        }
        let key = &buf[p + 0x10..p + 0x10 + key_len];
        let name_len = usize::from(key[0x40]);
        let name = key
            .get(0x42..0x42 + 2 * name_len)
            .ok_or_else(|| format!("index entry at byte {p}: name passes the key"))?;
        node.entries.push(IndexEntry {
            record: le64(buf, p) & 0xFFFF_FFFF_FFFF,
            name: utf16(name),
            namespace: key[0x41],
            attributes: le32(key, 0x38),
            size: le64(key, 0x30),
            mtime: le64(key, 0x10) as i64,
        });
        p += len;
    }
    Ok(node)
}
