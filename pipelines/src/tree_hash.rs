//! The SHA-256 tree hash Glacier checks: SHA-256 of each 1 MiB chunk, combined pairwise up to
//! one root (an odd hash is carried up unchanged).

use sha2::{Digest, Sha256};

/// The chunk size of the tree.
pub const CHUNK: usize = 1024 * 1024;

/// A 32-byte SHA-256 digest.
pub type Hash = [u8; 32];

/// Combines a level of hashes into the root.
pub fn combine(mut level: Vec<Hash>) -> Hash {
    if level.is_empty() {
        return Sha256::digest([]).into();
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => {
                    let mut h = Sha256::new();
                    h.update(a);
                    h.update(b);
                    h.finalize().into()
                }
                [a] => *a,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

/// The tree hash of `data`.
pub fn tree_hash(data: &[u8]) -> Hash {
    combine(
        data.chunks(CHUNK)
            .map(|c| Sha256::digest(c).into())
            .collect(),
    )
}

/// The tree hash of an archive from the tree hashes of its parts, valid when every part but
/// the last is the same power-of-two number of MiB (the parts are then whole subtrees).
pub fn from_parts(parts: &[Hash]) -> Hash {
    combine(parts.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_data_is_its_sha256() {
        assert_eq!(tree_hash(b"abc"), <Hash>::from(Sha256::digest(b"abc")));
    }

    #[test]
    fn three_chunks_carry_the_odd_one_up() {
        let data: Vec<u8> = (0..(2 * CHUNK + 10)).map(|i| (i % 7) as u8).collect();
        let h: Vec<Hash> = data
            .chunks(CHUNK)
            .map(|c| Sha256::digest(c).into())
            .collect();
        let mut ab = Sha256::new();
        ab.update(h[0]);
        ab.update(h[1]);
        let ab: Hash = ab.finalize().into();
        let mut root = Sha256::new();
        root.update(ab);
        root.update(h[2]);
        assert_eq!(tree_hash(&data), <Hash>::from(root.finalize()));
    }

    #[test]
    fn power_of_two_parts_compose() {
        let data: Vec<u8> = (0..(5 * CHUNK + 123))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for part in [CHUNK, 2 * CHUNK, 4 * CHUNK] {
            let parts: Vec<Hash> = data.chunks(part).map(tree_hash).collect();
            assert_eq!(from_parts(&parts), tree_hash(&data), "part size {part}");
        }
    }
}
