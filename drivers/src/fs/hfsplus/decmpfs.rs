//! decmpfs: files macOS stores compressed, described by their `com.apple.decmpfs` attribute.
//!
//! Supported: type 1 (bytes inline in the attribute), type 3 (zlib inline) and type 4 (zlib in
//! the resource fork, in independently compressed 64 KiB chunks, so a read decompresses only
//! the chunks it touches). LZVN (types 7/8) and LZFSE (11/12) and the rest are refused with an
//! `Unsupported` error naming the type.

/// The attribute's name.
pub(super) const XATTR_NAME: &str = "com.apple.decmpfs";
/// `UF_COMPRESSED` in the BSD owner flags.
pub(super) const UF_COMPRESSED: u8 = 0x20;
/// Decompressed chunk size of resource-fork types.
pub(super) const CHUNK: u64 = 65536;
/// Largest compressed chunk accepted (a chunk that does not compress is stored with one byte
/// of marker).
const MAX_CHUNK_STORED: u32 = 2 * CHUNK as u32;
/// Largest chunk table read (8 bytes per 64 KiB chunk: files up to 512 GiB).
const MAX_CHUNK_TABLE: u64 = 64 << 20;
/// Largest file decompressed from inline data (inline data is at most a few KiB compressed).
const MAX_INLINE: u64 = 16 << 20;

/// The 16-byte `decmpfs_disk_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub kind: u32,
    pub size: u64,
}

/// Parses the attribute's header.
pub(super) fn header(attr: &[u8]) -> Result<Header, String> {
    if attr.len() < 16 || &attr[0..4] != b"fpmc" {
        return Err(format!(
            "{XATTR_NAME} attribute of {} bytes has no \"fpmc\" header",
            attr.len()
        ));
    }
    let le32 = |at: usize| u32::from_le_bytes([attr[at], attr[at + 1], attr[at + 2], attr[at + 3]]);
    Ok(Header {
        kind: le32(4),
        size: u64::from(le32(8)) | (u64::from(le32(12)) << 32),
    })
}

/// What a compression type needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    Inline,
    ResourceFork,
}

/// The layout of a supported type, or the reason it is not supported.
pub(super) fn layout(kind: u32) -> Result<Layout, String> {
    match kind {
        1 | 3 => Ok(Layout::Inline),
        4 => Ok(Layout::ResourceFork),
        7 | 8 => Err(format!(
            "decmpfs compression type {kind} (LZVN) is not supported"
        )),
        11 | 12 => Err(format!(
            "decmpfs compression type {kind} (LZFSE) is not supported"
        )),
        _ => Err(format!("decmpfs compression type {kind} is not supported")),
    }
}

/// Inflates zlib `data` to exactly `want` bytes.
fn inflate(data: &[u8], want: u64) -> Result<Vec<u8>, String> {
    let limit = usize::try_from(want).map_err(|_| "decompressed size too large".to_string())?;
    let out = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, limit)
        .map_err(|e| format!("zlib data does not inflate: {e:?}"))?;
    if out.len() as u64 != want {
        return Err(format!(
            "zlib data inflates to {} bytes, not {want}",
            out.len()
        ));
    }
    Ok(out)
}

/// The whole file of an inline type (1 or 3).
pub(super) fn inline(h: &Header, attr: &[u8]) -> Result<Vec<u8>, String> {
    if h.size > MAX_INLINE {
        return Err(format!("inline compressed file of {} bytes", h.size));
    }
    let body = &attr[16..];
    let raw = |b: &[u8]| -> Result<Vec<u8>, String> {
        if b.len() as u64 != h.size {
            return Err(format!(
                "{} stored bytes for a {}-byte file",
                b.len(),
                h.size
            ));
        }
        Ok(b.to_vec())
    };
    match (h.kind, body.first()) {
        (_, None) if h.size == 0 => Ok(Vec::new()),
        (1, _) => raw(body),
        // A low nibble of 0xF marks data stored uncompressed after the marker byte.
        (3, Some(b)) if b & 0x0F == 0x0F => raw(&body[1..]),
        (3, Some(_)) => inflate(body, h.size),
        _ => Err(format!("inline type {} without data", h.kind)),
    }
}

/// Reads `buf.len()` bytes at an offset of the resource fork.
pub(super) type ReadFork<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), String> + 'a;

/// The chunk table of a resource-fork type: `(offset in the fork, stored length)` of each
/// 64 KiB chunk. `read(offset, buf)` reads the resource fork.
pub(super) fn chunk_table(
    h: &Header,
    fork_len: u64,
    read: &mut ReadFork<'_>,
) -> Result<Vec<(u64, u32)>, String> {
    let mut head = [0u8; 16];
    if fork_len < 16 {
        return Err(format!("resource fork of {fork_len} bytes"));
    }
    read(0, &mut head)?;
    let data_offset = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
    let chunks = h.size.div_ceil(CHUNK);
    let table_at = data_offset + 4;
    let table_len = 4 + 8 * chunks;
    if table_len > MAX_CHUNK_TABLE {
        return Err(format!(
            "a {}-byte compressed file needs a chunk table larger than {MAX_CHUNK_TABLE} bytes",
            h.size
        ));
    }
    if table_at + table_len > fork_len {
        return Err(format!(
            "chunk table of {chunks} chunks at byte {table_at} passes the {fork_len}-byte resource fork"
        ));
    }
    let mut table = vec![0u8; usize::try_from(table_len).map_err(|_| "chunk table too large")?];
    read(table_at, &mut table)?;
    let le32 =
        |at: usize| u32::from_le_bytes([table[at], table[at + 1], table[at + 2], table[at + 3]]);
    let stored = u64::from(le32(0));
    // Entries past the ones the size needs are ignored (they are not read).
    if stored < chunks {
        return Err(format!(
            "chunk table has {stored} chunks; a {}-byte file needs {chunks}",
            h.size
        ));
    }
    let mut out = Vec::with_capacity(table.len() / 8);
    for i in 0..table.len() / 8 {
        let (off, len) = (u64::from(le32(4 + 8 * i)), le32(8 + 8 * i));
        if len == 0 || len > MAX_CHUNK_STORED || table_at + off + u64::from(len) > fork_len {
            return Err(format!("chunk {i}: {len} bytes at offset {off}"));
        }
        out.push((table_at + off, len));
    }
    Ok(out)
}

/// Decompresses one stored chunk to `want` bytes.
pub(super) fn chunk(stored: &[u8], want: u64) -> Result<Vec<u8>, String> {
    match stored.first() {
        // As for inline data: a low nibble of 0xF (no zlib header has one) marks a chunk stored
        // uncompressed after the marker byte.
        Some(b) if b & 0x0F == 0x0F => {
            if stored.len() as u64 - 1 != want {
                return Err(format!(
                    "raw chunk of {} bytes, want {want}",
                    stored.len() - 1
                ));
            }
            Ok(stored[1..].to_vec())
        }
        _ => inflate(stored, want),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u32, size: u64, body: &[u8]) -> Vec<u8> {
        let mut a = b"fpmc".to_vec();
        a.extend_from_slice(&kind.to_le_bytes());
        a.extend_from_slice(&size.to_le_bytes());
        a.extend_from_slice(body);
        a
    }

    #[test]
    fn inline_zlib_and_raw_marker() {
        let text = b"hello hello hello hello hello".repeat(20);
        let z = miniz_oxide::deflate::compress_to_vec_zlib(&text, 6);
        let a = attr(3, text.len() as u64, &z);
        let h = header(&a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inline(&h, &a).as_deref(), Ok(&text[..]));
        let mut raw = vec![0x0F];
        raw.extend_from_slice(b"abc");
        let a = attr(3, 3, &raw);
        assert_eq!(
            inline(&header(&a).unwrap_or_else(|e| panic!("{e}")), &a).as_deref(),
            Ok(&b"abc"[..])
        );
        // A lying size is an error, not a huge buffer.
        let a = attr(3, 1 << 40, &z);
        assert!(inline(&header(&a).unwrap_or_else(|e| panic!("{e}")), &a).is_err());
        assert!(header(b"fpm").is_err());
        assert!(layout(8).err().unwrap_or_default().contains("LZVN"));
        assert!(layout(12).err().unwrap_or_default().contains("LZFSE"));
    }

    #[test]
    fn resource_fork_chunks() {
        let text: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let mut fork = vec![0u8; 0x100];
        fork[0..4].copy_from_slice(&0x100u32.to_be_bytes());
        let parts: Vec<Vec<u8>> = text
            .chunks(CHUNK as usize)
            .map(|c| miniz_oxide::deflate::compress_to_vec_zlib(c, 6))
            .collect();
        let mut table = (parts.len() as u32).to_le_bytes().to_vec();
        let mut off = 4 + 8 * parts.len() as u32;
        for p in &parts {
            table.extend_from_slice(&off.to_le_bytes());
            table.extend_from_slice(&(p.len() as u32).to_le_bytes());
            off += p.len() as u32;
        }
        fork.extend_from_slice(&[0; 4]);
        fork.extend_from_slice(&table);
        for p in &parts {
            fork.extend_from_slice(p);
        }
        let h = Header {
            kind: 4,
            size: text.len() as u64,
        };
        let mut read = |o: u64, b: &mut [u8]| -> Result<(), String> {
            b.copy_from_slice(&fork[o as usize..o as usize + b.len()]);
            Ok(())
        };
        let t = chunk_table(&h, fork.len() as u64, &mut read).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        for (i, &(o, l)) in t.iter().enumerate() {
            let want = (h.size - i as u64 * CHUNK).min(CHUNK);
            out.extend(
                chunk(&fork[o as usize..o as usize + l as usize], want)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        assert_eq!(out, text);
        let h = Header {
            kind: 4,
            size: 1 << 40,
        };
        assert!(chunk_table(&h, fork.len() as u64, &mut read).is_err());
    }
}
