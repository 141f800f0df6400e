//! LZNT1, the compression of NTFS compressed attributes: a compression unit (16 clusters)
//! holds chunks that each decompress to at most 4,096 bytes.

/// Bytes one chunk decompresses to.
const CHUNK: usize = 4096;

/// Decompresses the LZNT1 stream `src` into `out` (one compression unit, zeroed by the
/// caller). Each chunk fills its own 4,096 bytes of `out`; a short chunk leaves the rest
/// zero, as Windows does. Stops at the end mark, the end of `src` or the end of `out`.
///
/// # Errors
///
/// A chunk or back-reference that points outside the data (as text for the caller).
pub(super) fn decompress(src: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut p = 0usize;
    let mut chunk_start = 0usize;
    while chunk_start < out.len() && p + 2 <= src.len() {
        let header = u16::from_le_bytes([src[p], src[p + 1]]);
        if header == 0 {
            break;
        }
        let size = usize::from(header & 0x0FFF) + 1;
        let Some(data) = src.get(p + 2..p + 2 + size) else {
            return Err(format!(
                "LZNT1 chunk of {size} bytes at byte {p} passes the end of the unit"
            ));
        };
        let dst_end = (chunk_start + CHUNK).min(out.len());
        let dst = &mut out[chunk_start..dst_end];
        if header & 0x8000 == 0 {
            let n = size.min(dst.len());
            dst[..n].copy_from_slice(&data[..n]);
        } else {
            chunk(data, dst).map_err(|e| format!("LZNT1 chunk at byte {p}: {e}"))?;
        }
        p += 2 + size;
        chunk_start += CHUNK;
    }
    Ok(())
}

/// Decompresses one compressed chunk into `dst` (at most 4,096 bytes).
fn chunk(data: &[u8], dst: &mut [u8]) -> Result<(), String> {
    let mut s = 0usize;
    let mut d = 0usize;
    while s < data.len() && d < dst.len() {
        let flags = data[s];
        s += 1;
        for bit in 0..8 {
            if s >= data.len() || d >= dst.len() {
                break;
            }
            if (flags >> bit) & 1 == 0 {
                dst[d] = data[s];
                d += 1;
                s += 1;
                continue;
            }
            let Some(t) = data.get(s..s + 2) else {
                return Err("back-reference cut short".into());
            };
            let token = u16::from_le_bytes([t[0], t[1]]);
            s += 2;
            if d == 0 {
                return Err("back-reference before any data".into());
            }
            // The split between offset and length bits moves with the position: more
            // offset bits as the output grows.
            let mut lg = 0u32;
            let mut i = d - 1;
            while i >= 0x10 {
                i >>= 1;
                lg += 1;
            }
            let back = usize::from(token >> (12 - lg)) + 1;
            let length = usize::from(token & (0x0FFF >> lg)) + 3;
            if back > d {
                return Err(format!("back-reference {back} bytes before position {d}"));
            }
            for _ in 0..length {
                if d >= dst.len() {
                    break;
                }
                dst[d] = dst[d - back];
                d += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompresses_literals_and_overlapping_back_references() {
        // "abc" then a back-reference 3 back, 9 long: "abcabcabcabc".
        let chunk = [0x08, b'a', b'b', b'c', 0x06, 0x20];
        let header = 0xB000u16 | (chunk.len() as u16 - 1);
        let mut src = header.to_le_bytes().to_vec();
        src.extend_from_slice(&chunk);
        src.extend_from_slice(&[0, 0]);
        let mut out = vec![0u8; 8192];
        decompress(&src, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&out[..12], b"abcabcabcabc");
        assert!(out[12..].iter().all(|&b| b == 0));
    }

    #[test]
    fn uncompressed_chunks_are_copied_and_short_chunks_padded() {
        let mut src = Vec::new();
        // A compressed chunk giving "xy", then a stored 4,096-byte chunk.
        let chunk = [0x00, b'x', b'y'];
        src.extend_from_slice(&(0xB000u16 | (chunk.len() as u16 - 1)).to_le_bytes());
        src.extend_from_slice(&chunk);
        src.extend_from_slice(&(0x3000u16 | 0x0FFF).to_le_bytes());
        src.extend(std::iter::repeat_n(7u8, 4096));
        let mut out = vec![0u8; 16384];
        decompress(&src, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&out[..2], b"xy");
        assert!(out[2..4096].iter().all(|&b| b == 0));
        assert!(out[4096..8192].iter().all(|&b| b == 7));
        assert!(out[8192..].iter().all(|&b| b == 0));
    }

    #[test]
    fn wider_offsets_later_in_the_chunk() {
        // 32 literals, then a reference 32 back, 4 long: at position 32 the offset has 5
        // bits (lg 1), the length 11.
        let mut chunk = Vec::new();
        for group in 0..4 {
            chunk.push(0x00);
            chunk.extend((0..8).map(|i| b'A' + group * 8 + i));
        }
        chunk.push(0x01);
        let token: u16 = ((32 - 1) << 11) | (4 - 3);
        chunk.extend_from_slice(&token.to_le_bytes());
        let mut src = (0xB000u16 | (chunk.len() as u16 - 1))
            .to_le_bytes()
            .to_vec();
        src.extend_from_slice(&chunk);
        let mut out = vec![0u8; 4096];
        decompress(&src, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&out[32..36], b"ABCD");
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let mut out = vec![0u8; 4096];
        // Back-reference first.
        let src = [0x02, 0xB0, 0x01, 0x00, 0x00];
        assert!(decompress(&src, &mut out).is_err());
        // Back-reference too far back.
        let src = [0x03, 0xB0, 0x02, b'a', 0x00, 0x50];
        assert!(decompress(&src, &mut out).is_err());
        // Chunk longer than the input.
        let src = [0xFF, 0xBF, 0x00];
        assert!(decompress(&src, &mut out).is_err());
    }
}
