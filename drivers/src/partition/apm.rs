//! Apple partition maps: a driver descriptor (`ER`) in block 0 giving the block size, then one
//! `PM` entry per block from block 1, the first entry saying how many there are.
//!
//! Entries are numbered in map order; the map's own entry (`Apple_partition_map`) and free
//! space (`Apple_Free`) are not partitions. [`super::Partition::kernel_number`] keeps the map
//! slot, which is the number Linux gives (`sdb2` for the second entry).

use super::{Corrupt, Partition, PartitionError, PartitionTable, PartitionType, Scheme};
use crate::source::ReadAt;

/// The most map entries followed (real maps have a handful; Linux reads at most a few dozen).
pub(super) const MAX_ENTRIES: u32 = 256;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A NUL-padded ASCII field.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The map's block size if `sector0` starts a map (an `ER` descriptor with a usable block
/// size, or none at all and a `PM` entry at 512, which `sector1` holds).
pub(super) fn block_size(sector0: &[u8; 512], sector1: &[u8]) -> Option<u32> {
    if &sector0[0..2] == b"ER" {
        let size = u32::from(be16(sector0, 2));
        return Some(if matches!(size, 512 | 1024 | 2048 | 4096) {
            size
        } else {
            512
        });
    }
    (sector1.len() >= 2 && &sector1[0..2] == b"PM").then_some(512)
}

/// Reads the map with blocks of `bs` bytes.
pub(super) fn read(source: &dyn ReadAt, bs: u32) -> Result<PartitionTable, PartitionError> {
    let device = source.describe();
    let corrupt = |offset: u64, kind: Corrupt| PartitionError::Corrupt {
        device: device.clone(),
        offset,
        kind,
    };
    let bs64 = u64::from(bs);
    let device_blocks = source.size() / bs64;
    let mut entry = [0u8; 512];
    let mut partitions = Vec::new();
    let mut count = 1u32;
    let mut slot = 1u32;
    while slot <= count {
        let at = u64::from(slot) * bs64;
        if at + 512 > source.size() {
            return Err(corrupt(
                at,
                Corrupt::ApmEntry {
                    slot,
                    what: "passes the end of the device".into(),
                },
            ));
        }
        source.read_exact_at(at, &mut entry)?;
        if &entry[0..2] != b"PM" {
            return Err(corrupt(
                at,
                Corrupt::ApmEntry {
                    slot,
                    what: format!("signature \"{}\", not \"PM\"", entry[0..2].escape_ascii()),
                },
            ));
        }
        if slot == 1 {
            count = be32(&entry, 4);
            if count == 0 || count > MAX_ENTRIES {
                return Err(corrupt(
                    at + 4,
                    Corrupt::ApmEntry {
                        slot,
                        what: format!("map of {count} entries (1..={MAX_ENTRIES} accepted)"),
                    },
                ));
            }
        }
        let start = u64::from(be32(&entry, 8));
        let blocks = u64::from(be32(&entry, 12));
        let name = text(&entry[16..48]);
        let kind = text(&entry[48..80]);
        let skip = blocks == 0 || kind == "Apple_partition_map" || kind == "Apple_Free";
        if !skip {
            if start == 0 || start + blocks > device_blocks {
                return Err(corrupt(
                    at + 8,
                    Corrupt::ApmEntry {
                        slot,
                        what: format!(
                            "{blocks} blocks from block {start} do not fit in blocks 1..{device_blocks}"
                        ),
                    },
                ));
            }
            let mut raw = [0u8; 32];
            raw.copy_from_slice(&entry[48..80]);
            partitions.push(Partition {
                number: partitions.len() as u32 + 1,
                kernel_number: slot,
                start_bytes: start * bs64,
                size_bytes: blocks * bs64,
                partition_type: PartitionType::Apm(raw),
                type_description: kind,
                name: (!name.is_empty()).then_some(name),
                guid: None,
                logical: false,
                bootable: false,
            });
        }
        slot += 1;
    }
    Ok(PartitionTable {
        scheme: Scheme::Apm,
        sector_size: bs,
        disk_guid: None,
        partitions,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    fn map(entries: &[(&str, &str, u32, u32)], count: u32) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        d[0..2].copy_from_slice(b"ER");
        d[2..4].copy_from_slice(&512u16.to_be_bytes());
        for (i, (name, kind, start, blocks)) in entries.iter().enumerate() {
            let e = &mut d[512 * (i + 1)..512 * (i + 2)];
            e[0..2].copy_from_slice(b"PM");
            e[4..8].copy_from_slice(&count.to_be_bytes());
            e[8..12].copy_from_slice(&start.to_be_bytes());
            e[12..16].copy_from_slice(&blocks.to_be_bytes());
            e[16..16 + name.len()].copy_from_slice(name.as_bytes());
            e[48..48 + kind.len()].copy_from_slice(kind.as_bytes());
        }
        d
    }

    fn read_map(d: Vec<u8>) -> Result<PartitionTable, PartitionError> {
        PartitionTable::read(&MemorySource::new("apm.img", d), None)
    }

    #[test]
    fn entries_become_partitions_in_map_order() {
        let d = map(
            &[
                ("Apple", "Apple_partition_map", 1, 63),
                ("disk", "Apple_HFS", 64, 1000),
                ("", "Apple_Free", 1064, 10),
                ("more", "Apple_UNIX_SVR2", 1074, 20),
            ],
            4,
        );
        let t = read_map(d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.scheme, Scheme::Apm);
        let got: Vec<_> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.kernel_number,
                    p.start_bytes,
                    p.size_bytes,
                    p.type_description.as_str(),
                    p.name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 2, 64 * 512, 1000 * 512, "Apple_HFS", Some("disk")),
                (2, 4, 1074 * 512, 20 * 512, "Apple_UNIX_SVR2", Some("more")),
            ]
        );
    }

    #[test]
    fn corrupt_maps_are_errors() {
        let outside = map(
            &[
                ("Apple", "Apple_partition_map", 1, 63),
                ("x", "Apple_HFS", 64, 1 << 20),
            ],
            2,
        );
        let huge = map(&[("Apple", "Apple_partition_map", 1, 63)], 100_000);
        let missing = map(&[("Apple", "Apple_partition_map", 1, 63)], 3);
        for (d, want) in [
            (outside, "entry 2: "),
            (huge, "map of 100000 entries"),
            (missing, "entry 2: signature"),
        ] {
            let e = read_map(d).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(want), "{e}");
        }
    }
}
