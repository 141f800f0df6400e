//! DOS/MBR partition tables: four primary slots, and logical partitions in a chain of EBRs
//! inside one extended partition.

use std::collections::HashSet;

use super::{le_u32, Corrupt, Partition, PartitionError, PartitionTable, PartitionType, Scheme};
use crate::source::ReadAt;

/// The system id of a GPT protective MBR entry.
pub(super) const PROTECTIVE: u8 = 0xEE;

/// Where the four 16-byte entries start in an MBR or EBR.
const TABLE: usize = 446;

/// The most logical partitions followed: Linux stops at 256 partitions in all, and a chain
/// longer than that is either corrupt or hostile.
const MAX_LOGICAL: u32 = 252;

/// One 16-byte entry, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub boot_flag: u8,
    pub system_id: u8,
    pub start: u32,
    pub sectors: u32,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.system_id == 0 || self.sectors == 0
    }

    fn is_extended(&self) -> bool {
        matches!(self.system_id, 0x05 | 0x0F | 0x85)
    }
}

/// The four entries of an MBR or EBR sector.
pub(super) fn entries(sector: &[u8; 512]) -> [Entry; 4] {
    std::array::from_fn(|i| {
        let at = TABLE + 16 * i;
        Entry {
            boot_flag: sector[at],
            system_id: sector[at + 4],
            start: le_u32(sector, at + 8),
            sectors: le_u32(sector, at + 12),
        }
    })
}

/// A name for an MBR system id.
pub(super) fn describe(system_id: u8) -> String {
    let name = match system_id {
        0x01 => "FAT12",
        0x04 => "FAT16 <32M",
        0x05 => "Extended",
        0x06 => "FAT16",
        0x07 => "HPFS/NTFS/exFAT",
        0x0B => "W95 FAT32",
        0x0C => "W95 FAT32 (LBA)",
        0x0E => "W95 FAT16 (LBA)",
        0x0F => "W95 Ext'd (LBA)",
        0x11 => "Hidden FAT12",
        0x14 => "Hidden FAT16 <32M",
        0x16 => "Hidden FAT16",
        0x17 => "Hidden HPFS/NTFS",
        0x1B => "Hidden W95 FAT32",
        0x1C => "Hidden W95 FAT32 (LBA)",
        0x1E => "Hidden W95 FAT16 (LBA)",
        0x27 => "Hidden NTFS WinRE",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x85 => "Linux extended",
        0x8E => "Linux LVM",
        0xA5 => "FreeBSD",
        0xA6 => "OpenBSD",
        0xA8 => "Darwin UFS",
        0xAB => "Darwin boot",
        0xAF => "HFS / HFS+",
        0xEE => "GPT",
        0xEF => "EFI (FAT-12/16/32)",
        0xFD => "Linux raid autodetect",
        _ => return format!("type {system_id:#04x}"),
    };
    name.to_owned()
}

fn corrupt(source: &dyn ReadAt, offset: u64, kind: Corrupt) -> PartitionError {
    PartitionError::Corrupt {
        device: source.describe(),
        offset,
        kind,
    }
}

fn partition(
    number: u32,
    kernel_number: u32,
    entry: &Entry,
    start_lba: u64,
    sector_size: u64,
    logical: bool,
) -> Partition {
    // Both factors are below 2^32 and 2^13, so the products fit in a u64.
    Partition {
        number,
        kernel_number,
        start_bytes: start_lba * sector_size,
        size_bytes: u64::from(entry.sectors) * sector_size,
        partition_type: PartitionType::Mbr(entry.system_id),
        type_description: describe(entry.system_id),
        name: None,
        guid: None,
        logical,
        bootable: entry.boot_flag == 0x80,
    }
}

/// Reads the primary entries of the MBR and the EBR chain of its extended partition.
pub(super) fn read(
    source: &dyn ReadAt,
    sector_size: u32,
    primary: &[Entry; 4],
) -> Result<PartitionTable, PartitionError> {
    let ss = u64::from(sector_size);
    let device_sectors = source.size() / ss;
    let mut partitions = Vec::new();
    let mut extended: Option<(u64, u64)> = None;
    let mut extended_count = 0u32;
    for (slot, e) in (1u32..).zip(primary.iter()) {
        if e.is_empty() {
            continue;
        }
        let start = u64::from(e.start);
        let end = start + u64::from(e.sectors);
        if start == 0 || end > device_sectors {
            return Err(corrupt(
                source,
                (TABLE + 16 * (slot as usize - 1)) as u64,
                Corrupt::MbrEntryOutOfBounds {
                    slot,
                    start,
                    sectors: u64::from(e.sectors),
                    device_sectors,
                },
            ));
        }
        if e.is_extended() {
            extended_count += 1;
            extended = Some((start, end));
            continue;
        }
        let number = u32::try_from(partitions.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        partitions.push(partition(number, slot, e, start, ss, false));
    }
    if extended_count > 1 {
        return Err(corrupt(
            source,
            TABLE as u64,
            Corrupt::MultipleExtended {
                count: extended_count,
            },
        ));
    }
    if let Some((ext_start, ext_end)) = extended {
        read_logical(source, ss, ext_start, ext_end, &mut partitions)?;
    }
    Ok(PartitionTable {
        scheme: Scheme::Mbr,
        sector_size,
        disk_guid: None,
        partitions,
        warnings: Vec::new(),
    })
}

/// Follows the EBR chain of the extended partition `ext_start..ext_end` (LBAs).
fn read_logical(
    source: &dyn ReadAt,
    ss: u64,
    ext_start: u64,
    ext_end: u64,
    partitions: &mut Vec<Partition>,
) -> Result<(), PartitionError> {
    let mut visited = HashSet::new();
    let mut ebr = ext_start;
    let mut kernel_number = 5u32;
    loop {
        // `ebr` is inside the extended partition, which is inside the device: no overflow.
        let ebr_offset = ebr * ss;
        if !visited.insert(ebr) {
            return Err(corrupt(source, ebr_offset, Corrupt::EbrLoop { lba: ebr }));
        }
        if kernel_number - 5 >= MAX_LOGICAL {
            return Err(corrupt(
                source,
                ebr_offset,
                Corrupt::EbrChainTooLong { limit: MAX_LOGICAL },
            ));
        }
        let mut sector = [0u8; 512];
        source.read_exact_at(ebr_offset, &mut sector)?;
        if sector[510..512] != [0x55, 0xAA] {
            return Err(corrupt(
                source,
                ebr_offset + 510,
                Corrupt::EbrSignature {
                    lba: ebr,
                    found: super::le_u16(&sector, 510),
                },
            ));
        }
        let [logical, link, ..] = entries(&sector);
        if !logical.is_empty() {
            let start = ebr + u64::from(logical.start);
            let end = start + u64::from(logical.sectors);
            if start <= ebr || end > ext_end {
                return Err(corrupt(
                    source,
                    ebr_offset + TABLE as u64,
                    Corrupt::LogicalOutOfBounds {
                        start,
                        sectors: u64::from(logical.sectors),
                        ebr,
                        ext_end,
                    },
                ));
            }
            let number = u32::try_from(partitions.len())
                .unwrap_or(u32::MAX)
                .saturating_add(1);
            partitions.push(partition(number, kernel_number, &logical, start, ss, true));
            kernel_number += 1;
        }
        if link.is_empty() || !link.is_extended() {
            return Ok(());
        }
        let next = ext_start + u64::from(link.start);
        if next <= ext_start || next >= ext_end {
            return Err(corrupt(
                source,
                ebr_offset + TABLE as u64 + 16,
                Corrupt::EbrLinkOutOfBounds {
                    lba: next,
                    ext_start,
                    ext_end,
                },
            ));
        }
        ebr = next;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::source::MemorySource;

    /// Writes an entry into a 512-byte table sector.
    pub fn put(sector: &mut [u8], slot: usize, boot: u8, id: u8, start: u32, sectors: u32) {
        let at = TABLE + 16 * slot;
        sector[at] = boot;
        sector[at + 4] = id;
        sector[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        sector[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xAA;
    }

    /// A 4 MiB disk (8192 sectors of `ss`... in 512 units): primary 1 at 64+1000, extended
    /// 2048..8192 with logicals at 2048+64 (500 sectors) and 4096+64 (1000 sectors).
    pub fn disk() -> Vec<u8> {
        let mut d = vec![0u8; 8192 * 512];
        put(&mut d[..512], 0, 0x80, 0x83, 64, 1000);
        put(&mut d[..512], 1, 0, 0x05, 2048, 6144);
        let ebr1 = 2048 * 512;
        put(&mut d[ebr1..ebr1 + 512], 0, 0, 0x83, 64, 500);
        put(&mut d[ebr1..ebr1 + 512], 1, 0, 0x05, 2048, 3000);
        let ebr2 = 4096 * 512;
        put(&mut d[ebr2..ebr2 + 512], 0, 0, 0x0C, 64, 1000);
        d
    }

    fn read(d: Vec<u8>) -> Result<PartitionTable, PartitionError> {
        PartitionTable::read(&MemorySource::new("disk.img", d), None)
    }

    fn corrupt_kind(d: Vec<u8>) -> (u64, Corrupt) {
        match read(d) {
            Err(PartitionError::Corrupt { offset, kind, .. }) => (offset, kind),
            other => panic!("expected a corrupt table, got {other:?}"),
        }
    }

    #[test]
    fn primary_extended_and_logical_partitions_are_read_in_table_order() {
        let t = read(disk()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.scheme, Scheme::Mbr);
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
                    p.logical,
                    p.bootable,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1, 64 * 512, 1000 * 512, "Linux", false, true),
                (2, 5, 2112 * 512, 500 * 512, "Linux", true, false),
                (3, 6, 4160 * 512, 1000 * 512, "W95 FAT32 (LBA)", true, false),
            ]
        );
    }

    #[test]
    fn the_same_table_with_4096_byte_sectors_scales() {
        let src = MemorySource::new("disk.img", {
            let mut d = disk();
            d.resize(8192 * 4096, 0);
            // Move the EBRs to where 4096-byte LBAs put them.
            let (e1, e2) = (2048 * 512, 4096 * 512);
            let s1: Vec<u8> = d[e1..e1 + 512].to_vec();
            let s2: Vec<u8> = d[e2..e2 + 512].to_vec();
            d[e1..e1 + 512].fill(0);
            d[e2..e2 + 512].fill(0);
            d[2048 * 4096..2048 * 4096 + 512].copy_from_slice(&s1);
            d[4096 * 4096..4096 * 4096 + 512].copy_from_slice(&s2);
            d
        });
        let t = PartitionTable::read(&src, Some(4096)).unwrap_or_else(|e| panic!("{e}"));
        let starts: Vec<_> = t.partitions.iter().map(|p| p.start_bytes).collect();
        assert_eq!(starts, vec![64 * 4096, 2112 * 4096, 4160 * 4096]);
    }

    #[test]
    fn an_entry_past_the_end_is_corrupt() {
        let mut d = disk();
        put(&mut d[..512], 0, 0x80, 0x83, 64, 9000);
        let (offset, kind) = corrupt_kind(d);
        assert_eq!(offset, 446);
        assert_eq!(
            kind,
            Corrupt::MbrEntryOutOfBounds {
                slot: 1,
                start: 64,
                sectors: 9000,
                device_sectors: 8192
            }
        );
    }

    #[test]
    fn two_extended_partitions_are_corrupt() {
        let mut d = disk();
        put(&mut d[..512], 2, 0, 0x0F, 1100, 100);
        assert_eq!(corrupt_kind(d).1, Corrupt::MultipleExtended { count: 2 });
    }

    #[test]
    fn an_ebr_chain_that_loops_is_corrupt() {
        let mut d = disk();
        let ebr2 = 4096 * 512;
        // The second EBR links back to the first.
        put(&mut d[ebr2..ebr2 + 512], 1, 0, 0x05, 0, 100);
        // A link at relative 0 is the extended start itself: refused as out of bounds.
        assert_eq!(
            corrupt_kind(d.clone()).1,
            Corrupt::EbrLinkOutOfBounds {
                lba: 2048,
                ext_start: 2048,
                ext_end: 8192
            }
        );
        // The second EBR links to itself.
        put(&mut d[ebr2..ebr2 + 512], 1, 0, 0x05, 2048, 100);
        assert_eq!(
            corrupt_kind(d),
            (ebr2 as u64, Corrupt::EbrLoop { lba: 4096 })
        );
    }

    #[test]
    fn a_logical_partition_outside_the_extended_one_is_corrupt() {
        let mut d = disk();
        let ebr2 = 4096 * 512;
        put(&mut d[ebr2..ebr2 + 512], 0, 0, 0x83, 64, 4100);
        assert_eq!(
            corrupt_kind(d),
            (
                ebr2 as u64 + 446,
                Corrupt::LogicalOutOfBounds {
                    start: 4160,
                    sectors: 4100,
                    ebr: 4096,
                    ext_end: 8192
                }
            )
        );
    }

    #[test]
    fn an_ebr_without_signature_is_corrupt() {
        let mut d = disk();
        d[4096 * 512 + 511] = 0;
        let e = read(d).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("disk.img: corrupt partition table at byte offset 2097662: the EBR at LBA 4096 has signature 0x0055, not 0xaa55")
        );
    }

    #[test]
    fn boot_code_in_the_table_area_is_no_table() {
        let mut d = disk();
        d[446] = 0x33;
        assert_eq!(read(d).map(|t| t.scheme).ok(), Some(Scheme::None));
    }
}
