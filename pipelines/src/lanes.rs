//! Hashing side by side on re-reading: how many whole files go together, and the MD5s of many
//! ranges of one file, read a chunk of every range at a time and hashed side by
//! side (`drivers::md5_lanes`): the parts of a multipart object on re-reading. MD5 is serial
//! within one range; ranges are independent, so sixteen of them cost about what one does.

use drivers::md5_lanes::{update_many, Md5Lane};

/// Ranges hashed side by side.
pub const LANES: usize = 16;
/// Bytes of each range read at a time; `LANES` of these are the buffers.
pub const LANE_CHUNK: u64 = 4 * 1024 * 1024;
/// The most whole files re-read and hashed together (`md5_lanes::digest_many`), and their
/// most bytes.
pub const BATCH_FILES: usize = 16;
/// See [`BATCH_FILES`].
pub const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Cuts a run of whole files into batches of at most [`BATCH_FILES`] files and
/// [`BATCH_BYTES`] bytes (a larger file is a batch of its own).
#[derive(Debug, Default)]
pub struct Batcher {
    files: usize,
    bytes: u64,
}

impl Batcher {
    /// Counts a file of `size` bytes in: whether it starts a new batch.
    pub fn starts_batch(&mut self, size: u64) -> bool {
        let new = self.files == 0
            || self.files == BATCH_FILES
            || self.bytes.saturating_add(size) > BATCH_BYTES;
        if new {
            *self = Self::default();
        }
        self.files += 1;
        self.bytes = self.bytes.saturating_add(size);
        new
    }

    /// Ends the current batch: the next file starts one.
    pub fn end(&mut self) {
        *self = Self::default();
    }
}

/// The MD5 of each of `ranges` (offset, length), in order. `read_at(offset, buf)` fills all
/// of `buf` from `offset` or fails; `buffers` are reused from call to call.
///
/// # Errors
///
/// The first error of `read_at`.
pub fn range_md5s<E>(
    ranges: &[(u64, u64)],
    buffers: &mut Vec<Vec<u8>>,
    mut read_at: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<Vec<[u8; 16]>, E> {
    let mut md5s = Vec::with_capacity(ranges.len());
    for group in ranges.chunks(LANES) {
        if buffers.len() < group.len() {
            buffers.resize_with(group.len(), Vec::new);
        }
        let mut lanes = vec![Md5Lane::new(); group.len()];
        let longest = group.iter().map(|&(_, len)| len).max().unwrap_or(0);
        let mut done = 0u64;
        while done < longest {
            let mut lens = Vec::with_capacity(group.len());
            for (&(offset, len), buf) in group.iter().zip(buffers.iter_mut()) {
                let want = usize::try_from(len.saturating_sub(done).min(LANE_CHUNK)).unwrap_or(0);
                if buf.len() < want {
                    buf.resize(want, 0);
                }
                if want > 0 {
                    read_at(offset + done, &mut buf[..want])?;
                }
                lens.push(want);
            }
            let data: Vec<&[u8]> = buffers.iter().zip(&lens).map(|(b, &n)| &b[..n]).collect();
            update_many(&mut lanes, &data);
            done += LANE_CHUNK;
        }
        md5s.extend(lanes.into_iter().map(Md5Lane::finalize));
    }
    Ok(md5s)
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::*;

    #[test]
    fn every_range_gets_its_own_md5() {
        let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
        // Unequal lengths, an empty range, more ranges than lanes, overlaps.
        let mut ranges = vec![(0, 9_000_000), (9_000_000, 11_000_000), (5, 0), (17, 1)];
        ranges.extend((0..20).map(|i| (i * 700_001, 4_194_304 + i * 3)));
        let mut buffers = Vec::new();
        let got = range_md5s(&ranges, &mut buffers, |offset, buf: &mut [u8]| {
            let start = usize::try_from(offset).map_err(|_| "offset")?;
            buf.copy_from_slice(&data[start..start + buf.len()]);
            Ok::<(), &str>(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let want: Vec<[u8; 16]> = ranges
            .iter()
            .map(|&(o, l)| Md5::digest(&data[o as usize..(o + l) as usize]).into())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn batches_end_at_the_file_count_the_byte_count_and_on_demand() {
        let mut b = Batcher::default();
        let starts: Vec<bool> = (0..BATCH_FILES + 2).map(|_| b.starts_batch(1)).collect();
        let mut want = vec![false; BATCH_FILES + 2];
        want[0] = true;
        want[BATCH_FILES] = true;
        assert_eq!(starts, want);
        let mut b = Batcher::default();
        assert!(b.starts_batch(BATCH_BYTES - 1));
        assert!(!b.starts_batch(1));
        assert!(b.starts_batch(1));
        assert!(
            b.starts_batch(BATCH_BYTES + 1),
            "a large file is a batch of its own"
        );
        assert!(b.starts_batch(1));
        b.end();
        assert!(b.starts_batch(1));
    }

    #[test]
    fn a_read_error_ends_the_hashing() {
        let mut calls = 0;
        let got = range_md5s(&[(0, 10), (10, 10)], &mut Vec::new(), |offset, _| {
            calls += 1;
            if offset == 10 {
                Err("unreadable")
            } else {
                Ok(())
            }
        });
        assert_eq!(got, Err("unreadable"));
        assert_eq!(calls, 2);
    }
}
