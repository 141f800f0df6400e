//! The file allocation table, loaded once, and cluster chains turned into runs.
//!
//! A chain is followed for at most as many clusters as the caller needs (a file's size) or
//! allows (a directory's maximum size), which is never more than the volume's cluster count,
//! so it always ends. A cluster met twice (a loop, or a chain that runs into itself) and a
//! link to a free, bad, reserved or out-of-range cluster are corrupt, and the error names the
//! FAT entry's byte offset and raw value.

use super::{Ctx, Variant};
use crate::fs::FsError;

/// The most FAT entries held in memory (4 bytes each: 256 MiB). A 2 TiB FAT32 volume with
/// 32 KiB clusters needs 64 Mi entries; larger volumes are refused as unsupported.
pub(super) const MAX_ENTRIES: u64 = 64 << 20;

/// Bytes read from the device per request while loading the FAT.
const LOAD_CHUNK: usize = 4 << 20;

/// Chains with more runs than this switch from comparing runs to a visited-cluster bitmap.
const RUNS_BEFORE_BITMAP: usize = 64;

/// A run of consecutive clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    /// The first cluster.
    pub start: u32,
    /// How many clusters.
    pub len: u32,
}

impl Run {
    fn end(self) -> u64 {
        u64::from(self.start) + u64::from(self.len)
    }
    fn contains(self, cluster: u32) -> bool {
        cluster >= self.start && u64::from(cluster) < self.end()
    }
}

/// How far to follow a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// Exactly this many clusters (a file): a shorter chain is corrupt, a longer one is cut.
    Exactly(u64),
    /// Up to the end-of-chain mark, at most this many clusters (a directory without a size).
    UpTo(u64),
}

/// The FAT in memory, one `u32` per cluster (FAT12/16 values widened, FAT32's top 4 bits
/// cleared).
#[derive(Debug)]
pub(super) struct Table {
    variant: Variant,
    offset: u64,
    entries: Vec<u32>,
}

/// What a FAT entry says comes next.
enum Next {
    Cluster(u32),
    End,
}

impl Table {
    /// Loads the entries of clusters `0..cluster_count + 2` from the FAT at byte `offset`.
    pub(super) fn load(
        ctx: &Ctx,
        variant: Variant,
        offset: u64,
        cluster_count: u32,
    ) -> Result<Self, FsError> {
        let n = u64::from(cluster_count) + 2;
        if n > MAX_ENTRIES {
            return Err(ctx.unsupported(format!(
                "a FAT of {n} entries (more than the {MAX_ENTRIES} held in memory)"
            )));
        }
        let bytes = match variant {
            Variant::Fat12 => (n * 3).div_ceil(2),
            Variant::Fat16 => n * 2,
            Variant::Fat32 | Variant::ExFat => n * 4,
        };
        let mut raw = Vec::new();
        let mut done = 0u64;
        // Bounded above by MAX_ENTRIES * 4 bytes.
        let total = usize::try_from(bytes)
            .map_err(|_| ctx.unsupported(format!("a FAT of {bytes} bytes")))?;
        raw.try_reserve_exact(total)
            .map_err(|_| ctx.unsupported(format!("a FAT of {bytes} bytes (out of memory)")))?;
        while done < bytes {
            let len = usize::try_from((bytes - done).min(LOAD_CHUNK as u64)).unwrap_or(LOAD_CHUNK);
            let start = raw.len();
            raw.resize(start + len, 0);
            ctx.source.read_exact_at(offset + done, &mut raw[start..])?;
            done += len as u64;
        }
        let count = usize::try_from(n).unwrap_or(0);
        let entries: Vec<u32> = match variant {
            Variant::Fat12 => (0..count)
                .map(|i| {
                    let at = i + i / 2;
                    let v = u16::from_le_bytes([
                        raw.get(at).copied().unwrap_or(0),
                        raw.get(at + 1).copied().unwrap_or(0),
                    ]);
                    u32::from(if i % 2 == 1 { v >> 4 } else { v & 0x0FFF })
                })
                .collect(),
            Variant::Fat16 => raw
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Variant::Fat32 => raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x0FFF_FFFF)
                .collect(),
            Variant::ExFat => raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        };
        Ok(Self {
            variant,
            offset,
            entries,
        })
    }

    /// The number of data clusters.
    fn cluster_count(&self) -> u64 {
        (self.entries.len() as u64).saturating_sub(2)
    }

    /// Whether `cluster` names a data cluster.
    pub(super) fn in_range(&self, cluster: u32) -> bool {
        cluster >= 2 && (cluster as usize) < self.entries.len()
    }

    /// The byte offset of `cluster`'s FAT entry (for FAT12, of its first byte).
    pub(super) fn entry_offset(&self, cluster: u32) -> u64 {
        let c = u64::from(cluster);
        self.offset
            + match self.variant {
                Variant::Fat12 => c + c / 2,
                Variant::Fat16 => c * 2,
                Variant::Fat32 | Variant::ExFat => c * 4,
            }
    }

    /// FAT[1]'s "clean shutdown" bit, where the format has one: `Some(false)` when the volume
    /// was not cleanly unmounted.
    pub(super) fn clean_bit(&self) -> Option<bool> {
        let v = *self.entries.get(1)?;
        match self.variant {
            Variant::Fat16 => Some(v & 0x8000 != 0),
            Variant::Fat32 => Some(v & 0x0800_0000 != 0),
            Variant::Fat12 | Variant::ExFat => None,
        }
    }

    /// The entry after `cluster` (which must be in range).
    fn next(&self, ctx: &Ctx, cluster: u32) -> Result<Next, FsError> {
        let raw = self.entries.get(cluster as usize).copied().unwrap_or(0);
        let (bad, end) = match self.variant {
            Variant::Fat12 => (0xFF7, 0xFF8),
            Variant::Fat16 => (0xFFF7, 0xFFF8),
            Variant::Fat32 => (0x0FFF_FFF7, 0x0FFF_FFF8),
            Variant::ExFat => (0xFFFF_FFF7, 0xFFFF_FFF8),
        };
        let problem = if raw >= end {
            return Ok(Next::End);
        } else if raw == bad {
            "a cluster marked bad"
        } else if raw == 0 {
            "a free cluster"
        } else if self.in_range(raw) {
            return Ok(Next::Cluster(raw));
        } else {
            "a cluster outside the volume"
        };
        Err(ctx.corrupt(
            self.entry_offset(cluster),
            format!(
                "FAT entry of cluster {cluster}: links to {problem} (raw value {raw:#x}, \
                 the volume has clusters 2..={})",
                self.cluster_count() + 1
            ),
        ))
    }

    /// Follows the chain from `first` and returns its runs. `entry_offset` is the byte offset
    /// of the directory entry that names `first`, for errors about it.
    pub(super) fn chain(
        &self,
        ctx: &Ctx,
        first: u32,
        need: Need,
        entry_offset: u64,
    ) -> Result<Vec<Run>, FsError> {
        let limit = match need {
            Need::Exactly(0) => return Ok(Vec::new()),
            Need::Exactly(n) | Need::UpTo(n) => n,
        };
        if let Need::Exactly(n) = need {
            if n > self.cluster_count() {
                return Err(ctx.corrupt(
                    entry_offset,
                    format!(
                        "entry needs {n} clusters but the volume has {}",
                        self.cluster_count()
                    ),
                ));
            }
        }
        if !self.in_range(first) {
            return Err(ctx.corrupt(
                entry_offset,
                format!(
                    "first cluster {first} outside the volume's clusters 2..={}",
                    self.cluster_count() + 1
                ),
            ));
        }
        let limit = limit.min(self.cluster_count());
        let mut runs: Vec<Run> = Vec::new();
        let mut visited: Option<Vec<u64>> = None;
        let mut cluster = first;
        let mut count = 0u64;
        loop {
            let looped = || {
                ctx.corrupt(
                    self.entry_offset(cluster),
                    format!("cluster chain from cluster {first} loops back to cluster {cluster}"),
                )
            };
            // Record `cluster`, detecting a repeat: against the runs while there are few of
            // them, then with a bitmap of every cluster.
            if let Some(bits) = visited.as_mut() {
                if !mark(bits, cluster) {
                    return Err(looped());
                }
            }
            match runs.last_mut() {
                Some(run) if run.end() == u64::from(cluster) => run.len += 1,
                _ => {
                    if visited.is_none() && runs.iter().any(|r| r.contains(cluster)) {
                        return Err(looped());
                    }
                    runs.push(Run {
                        start: cluster,
                        len: 1,
                    });
                    if visited.is_none() && runs.len() > RUNS_BEFORE_BITMAP {
                        let mut bits = vec![0u64; self.entries.len().div_ceil(64)];
                        for r in &runs {
                            for c in r.start..r.start + r.len {
                                if !mark(&mut bits, c) {
                                    return Err(looped());
                                }
                            }
                        }
                        visited = Some(bits);
                    }
                }
            }
            count += 1;
            if let Need::Exactly(n) = need {
                if count == n {
                    break;
                }
            }
            match self.next(ctx, cluster)? {
                Next::End => {
                    if let Need::Exactly(n) = need {
                        return Err(ctx.corrupt(
                            self.entry_offset(cluster),
                            format!(
                                "cluster chain from cluster {first} ends after {count} clusters \
                                 at cluster {cluster}; the entry needs {n}"
                            ),
                        ));
                    }
                    break;
                }
                Next::Cluster(next) => {
                    if count >= limit {
                        return Err(ctx.corrupt(
                            self.entry_offset(cluster),
                            format!(
                                "cluster chain from cluster {first} is longer than {limit} \
                                 clusters (the most a directory may have)"
                            ),
                        ));
                    }
                    cluster = next;
                }
            }
        }
        // A run that grew into an earlier run is a repeat too (the per-run check above only
        // looks at where runs start).
        if visited.is_none() {
            let mut sorted = runs.clone();
            sorted.sort_by_key(|r| r.start);
            for pair in sorted.windows(2) {
                if pair[0].end() > u64::from(pair[1].start) {
                    return Err(ctx.corrupt(
                        self.entry_offset(pair[1].start),
                        format!(
                            "cluster chain from cluster {first} passes cluster {} twice",
                            pair[1].start
                        ),
                    ));
                }
            }
        }
        Ok(runs)
    }

    /// The runs of a contiguous (exFAT NoFatChain) allocation of `clusters` clusters.
    pub(super) fn contiguous(
        &self,
        ctx: &Ctx,
        first: u32,
        clusters: u64,
        entry_offset: u64,
    ) -> Result<Vec<Run>, FsError> {
        if clusters == 0 {
            return Ok(Vec::new());
        }
        let fits = self.in_range(first)
            && u64::from(first) + clusters <= self.cluster_count() + 2
            && u32::try_from(clusters).is_ok();
        if !fits {
            return Err(ctx.corrupt(
                entry_offset,
                format!(
                    "contiguous allocation of {clusters} clusters from cluster {first} outside \
                     the volume's clusters 2..={}",
                    self.cluster_count() + 1
                ),
            ));
        }
        Ok(vec![Run {
            start: first,
            len: u32::try_from(clusters).unwrap_or(0),
        }])
    }
}

/// Sets `cluster`'s bit; false when it was already set (or is outside the bitmap).
fn mark(bits: &mut [u64], cluster: u32) -> bool {
    let word = (cluster / 64) as usize;
    let bit = 1u64 << (cluster % 64);
    match bits.get_mut(word) {
        Some(w) if *w & bit == 0 => {
            *w |= bit;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::source::MemorySource;

    /// A FAT32 table of `n` clusters at byte 0 with the given links (cluster, value).
    fn table(variant: Variant, n: u32, links: &[(u32, u32)]) -> (Ctx, Table) {
        let mut entries = vec![0u32; n as usize + 2];
        for &(c, v) in links {
            entries[c as usize] = v;
        }
        let ctx = Ctx::new(Arc::new(MemorySource::new("t.img", Vec::new())));
        (
            ctx,
            Table {
                variant,
                offset: 1000,
                entries,
            },
        )
    }

    fn err(r: Result<Vec<Run>, FsError>) -> String {
        match r {
            Ok(runs) => panic!("expected an error, got {runs:?}"),
            Err(e) => e.to_string(),
        }
    }

    const END: u32 = 0x0FFF_FFFF;

    #[test]
    fn chains_merge_into_runs() {
        let (ctx, t) = table(
            Variant::Fat32,
            20,
            &[(2, 3), (3, 4), (4, 10), (10, 11), (11, 5), (5, END)],
        );
        let runs = t.chain(&ctx, 2, Need::Exactly(6), 0);
        assert_eq!(
            runs.ok(),
            Some(vec![
                Run { start: 2, len: 3 },
                Run { start: 10, len: 2 },
                Run { start: 5, len: 1 }
            ])
        );
        // A longer chain is cut at what the file needs; a directory reads to the end mark.
        assert_eq!(
            t.chain(&ctx, 2, Need::Exactly(2), 0).ok(),
            Some(vec![Run { start: 2, len: 2 }])
        );
        assert_eq!(
            t.chain(&ctx, 2, Need::UpTo(100), 0).map(|r| r.len()).ok(),
            Some(3)
        );
    }

    #[test]
    fn bad_links_name_the_fat_entry_and_raw_value() {
        let (ctx, t) = table(Variant::Fat32, 20, &[(2, 3), (3, 0)]);
        assert_eq!(
            err(t.chain(&ctx, 2, Need::Exactly(3), 0)),
            "t.img: corrupt FAT entry of cluster 3: links to a free cluster (raw value 0x0, \
             the volume has clusters 2..=21) at byte offset 1012"
        );
        let (ctx, t) = table(Variant::Fat32, 20, &[(2, 0x0FFF_FFF7)]);
        assert!(err(t.chain(&ctx, 2, Need::Exactly(3), 0)).contains("a cluster marked bad"));
        let (ctx, t) = table(Variant::Fat32, 20, &[(2, 22)]);
        assert!(err(t.chain(&ctx, 2, Need::Exactly(3), 0))
            .contains("a cluster outside the volume (raw value 0x16"));
        let (ctx, t) = table(Variant::Fat32, 20, &[(2, 1)]);
        assert!(err(t.chain(&ctx, 2, Need::Exactly(3), 0)).contains("outside the volume"));
        let (ctx, t) = table(Variant::Fat32, 20, &[(2, END)]);
        assert!(err(t.chain(&ctx, 2, Need::Exactly(3), 0)).contains("ends after 1 clusters"));
        assert!(err(t.chain(&ctx, 22, Need::Exactly(1), 7))
            .contains("first cluster 22 outside the volume's clusters 2..=21 at byte offset 7"));
        assert!(err(t.chain(&ctx, 2, Need::Exactly(21), 7)).contains("needs 21 clusters"));
    }

    #[test]
    fn loops_are_found_however_long() {
        // A small loop.
        let (ctx, t) = table(Variant::Fat32, 20, &[(2, 3), (3, 2)]);
        assert!(err(t.chain(&ctx, 2, Need::Exactly(5), 0)).contains("loops back to cluster 2"));
        assert!(err(t.chain(&ctx, 2, Need::UpTo(20), 0)).contains("loops back to cluster 2"));
        // A chain that runs into the middle of an earlier run.
        let (ctx, t) = table(Variant::Fat32, 20, &[(5, 6), (6, 7), (7, 4), (4, 5)]);
        assert!(err(t.chain(&ctx, 5, Need::Exactly(5), 0)).contains("passes cluster 5 twice"));
        assert!(err(t.chain(&ctx, 5, Need::Exactly(8), 0)).contains("loops back to cluster 4"));
        // A loop after many runs, found by the bitmap: 2 -> 4 -> 6 ... -> 198 -> 2.
        let n = 200u32;
        let mut links: Vec<(u32, u32)> = (1..n / 2).map(|i| (2 * i, 2 * i + 2)).collect();
        links.push((n - 2, 2));
        let (ctx, t) = table(Variant::Fat32, n, &links);
        assert!(err(t.chain(&ctx, 2, Need::UpTo(u64::from(n)), 0)).contains("loops back"));
        // A directory chain longer than allowed.
        let (ctx, t) = table(Variant::Fat32, 20, &[(2, 3), (3, 4), (4, END)]);
        assert!(err(t.chain(&ctx, 2, Need::UpTo(2), 0)).contains("longer than 2 clusters"));
    }

    #[test]
    fn fat12_entries_unpack() {
        // Entries 0..4: 0xFF8, 0xFFF, 0x003, 0xFFF packed into 6 bytes.
        let bytes = vec![0xF8, 0xFF, 0xFF, 0x03, 0xF0, 0xFF];
        let ctx = Ctx::new(Arc::new(MemorySource::new("f12", bytes)));
        let t = Table::load(&ctx, Variant::Fat12, 0, 2);
        let t = t.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.entries, vec![0xFF8, 0xFFF, 0x003, 0xFFF]);
        assert_eq!(
            t.chain(&ctx, 2, Need::UpTo(10), 0).ok(),
            Some(vec![Run { start: 2, len: 2 }])
        );
    }

    #[test]
    fn contiguous_runs_stay_inside_the_volume() {
        let (ctx, t) = table(Variant::ExFat, 20, &[]);
        assert_eq!(
            t.contiguous(&ctx, 5, 17, 0).ok(),
            Some(vec![Run { start: 5, len: 17 }])
        );
        assert!(t.contiguous(&ctx, 5, 18, 0).is_err());
        assert!(t.contiguous(&ctx, 0, 1, 0).is_err());
    }
}
