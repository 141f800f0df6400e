//! GUID partition tables: the header at LBA 1 and its backup at the last LBA, each with a
//! CRC32 over the header and one over the partition-entry array.

use super::{
    le_u32, le_u64, Corrupt, Guid, Partition, PartitionError, PartitionTable, PartitionType, Scheme,
};
use crate::source::{IoError, ReadAt};

/// The largest partition-entry array read (the usual one is 128 x 128 bytes = 16 KiB).
const MAX_ARRAY_BYTES: u64 = 1 << 20;

/// The smallest header (revision 1.0).
const MIN_HEADER: u32 = 92;

/// CRC-32 (IEEE 802.3, reflected, as UEFI specifies for GPT).
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A name for a GPT partition-type GUID.
fn describe(type_guid: &Guid) -> String {
    let text = type_guid.to_string();
    let name = match text.as_str() {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI System",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => "Windows recovery environment",
        "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3" => "Microsoft LDM metadata",
        "AF9B60A0-1431-4F62-BC68-3311714A69AD" => "Microsoft LDM data",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => "Linux home",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "CA7D7CCB-63ED-4C53-861C-1742536059CC" => "Linux LUKS",
        "48465300-0000-11AA-AA11-00306543ECAC" => "Apple HFS/HFS+",
        "7C3457EF-0000-11AA-AA11-00306543ECAC" => "Apple APFS",
        "426F6F74-0000-11AA-AA11-00306543ECAC" => "Apple boot",
        "516E7CB4-6ECF-11D6-8FF8-00022D09712B" => "FreeBSD data",
        _ => return text,
    };
    name.to_owned()
}

/// The logical sector size of an image: where the GPT header is, else 512.
pub(super) fn guess_sector_size(source: &dyn ReadAt) -> Result<u32, IoError> {
    for size in [512u32, 4096] {
        let mut sig = [0u8; 8];
        if source.size() >= u64::from(size) + 8 {
            source.read_exact_at(u64::from(size), &mut sig)?;
            if &sig == b"EFI PART" {
                return Ok(size);
            }
        }
    }
    Ok(512)
}

/// A header and its entries, both checked.
#[derive(Debug)]
struct Gpt {
    alternate_lba: u64,
    disk_guid: Guid,
    partitions: Vec<Partition>,
}

/// A problem found at a byte offset.
type Found = (u64, Corrupt);

/// Reads the table, from the primary header or, when that is broken, from the backup.
pub(super) fn read(
    source: &dyn ReadAt,
    sector_size: u32,
) -> Result<PartitionTable, PartitionError> {
    let ss = u64::from(sector_size);
    let device_sectors = source.size() / ss;
    let last = device_sectors.saturating_sub(1);
    let mut warnings = Vec::new();
    let gpt = match read_at(source, ss, 1, device_sectors)? {
        Ok(primary) => {
            let backup_lba = if primary.alternate_lba < device_sectors && primary.alternate_lba > 1
            {
                primary.alternate_lba
            } else {
                warnings.push(format!(
                    "the GPT header records its backup at LBA {}, outside the device (last LBA {last})",
                    primary.alternate_lba
                ));
                last
            };
            if let Err((offset, kind)) = read_at(source, ss, backup_lba, device_sectors)? {
                warnings.push(format!(
                    "the backup GPT is corrupt at byte offset {offset}: {kind}"
                ));
            }
            primary
        }
        Err((primary_offset, primary)) => match read_at(source, ss, last, device_sectors)? {
            Ok(backup) => {
                warnings.push(format!(
                    "the primary GPT is corrupt at byte offset {primary_offset}: {primary}; \
                     the table was read from the backup header at byte offset {}",
                    last * ss
                ));
                backup
            }
            Err((backup_offset, backup)) => {
                return Err(PartitionError::Corrupt {
                    device: source.describe(),
                    offset: primary_offset,
                    kind: Corrupt::NoValidGpt {
                        primary: Box::new(primary),
                        primary_offset,
                        backup: Box::new(backup),
                        backup_offset,
                    },
                })
            }
        },
    };
    Ok(PartitionTable {
        scheme: Scheme::Gpt,
        sector_size,
        disk_guid: Some(gpt.disk_guid),
        partitions: gpt.partitions,
        warnings,
    })
}

/// Reads and checks the header at `lba` and its entry array. I/O errors are the outer error;
/// corruption the inner one.
fn read_at(
    source: &dyn ReadAt,
    ss: u64,
    lba: u64,
    device_sectors: u64,
) -> Result<Result<Gpt, Found>, IoError> {
    // `lba < device_sectors`, so `lba * ss` is below the device size: no overflow.
    let at = lba * ss;
    if lba == 0 || lba >= device_sectors || device_sectors < 3 {
        return Ok(Err((
            at.min(source.size()),
            Corrupt::GptUsableRange {
                first: lba,
                last: lba,
                device_sectors,
            },
        )));
    }
    let mut header = vec![0u8; usize::try_from(ss).unwrap_or(512)];
    source.read_exact_at(at, &mut header)?;
    if &header[..8] != b"EFI PART" {
        let mut found = [0u8; 8];
        found.copy_from_slice(&header[..8]);
        return Ok(Err((at, Corrupt::GptSignature { found })));
    }
    let header_size = le_u32(&header, 12);
    let max = u32::try_from(ss).unwrap_or(u32::MAX);
    if !(MIN_HEADER..=max).contains(&header_size) {
        return Ok(Err((
            at + 12,
            Corrupt::GptHeaderSize {
                value: header_size,
                max,
            },
        )));
    }
    let stored = le_u32(&header, 16);
    let mut copy = header[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    let computed = crc32(&copy);
    if stored != computed {
        return Ok(Err((at + 16, Corrupt::GptHeaderCrc { stored, computed })));
    }
    let my_lba = le_u64(&header, 24);
    if my_lba != lba {
        return Ok(Err((
            at + 24,
            Corrupt::GptMyLba {
                stored: my_lba,
                actual: lba,
            },
        )));
    }
    let alternate_lba = le_u64(&header, 32);
    let first_usable = le_u64(&header, 40);
    let last_usable = le_u64(&header, 48);
    if first_usable < 2 || first_usable > last_usable || last_usable >= device_sectors {
        return Ok(Err((
            at + 40,
            Corrupt::GptUsableRange {
                first: first_usable,
                last: last_usable,
                device_sectors,
            },
        )));
    }
    let mut disk_guid = [0u8; 16];
    disk_guid.copy_from_slice(&header[56..72]);
    let entries_lba = le_u64(&header, 72);
    let count = le_u32(&header, 80);
    let entry_size = le_u32(&header, 84);
    let entries_crc = le_u32(&header, 88);
    if entry_size < 128 || !entry_size.is_power_of_two() {
        return Ok(Err((at + 84, Corrupt::GptEntrySize { value: entry_size })));
    }
    let bytes = u64::from(count) * u64::from(entry_size);
    if bytes > MAX_ARRAY_BYTES {
        return Ok(Err((
            at + 80,
            Corrupt::GptEntryArrayTooLarge {
                count,
                size: entry_size,
                max: MAX_ARRAY_BYTES,
            },
        )));
    }
    let array_at = entries_lba.checked_mul(ss).filter(|start| {
        entries_lba >= 1
            && start
                .checked_add(bytes)
                .is_some_and(|end| end <= source.size())
    });
    let Some(array_at) = array_at else {
        return Ok(Err((
            at + 72,
            Corrupt::GptEntryArrayOutOfBounds {
                lba: entries_lba,
                bytes,
            },
        )));
    };
    // At most MAX_ARRAY_BYTES.
    let mut array = vec![0u8; bytes as usize];
    source.read_exact_at(array_at, &mut array)?;
    let computed = crc32(&array);
    if computed != entries_crc {
        return Ok(Err((
            at + 88,
            Corrupt::GptEntriesCrc {
                stored: entries_crc,
                computed,
            },
        )));
    }
    let mut partitions = Vec::new();
    for (index, entry) in (1u32..).zip(array.chunks_exact(entry_size as usize)) {
        let mut type_guid = [0u8; 16];
        type_guid.copy_from_slice(&entry[..16]);
        let type_guid = Guid(type_guid);
        if type_guid.is_zero() {
            continue;
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&entry[16..32]);
        let first = le_u64(entry, 32);
        let last_lba = le_u64(entry, 40);
        if first < first_usable || last_lba < first || last_lba > last_usable {
            return Ok(Err((
                array_at + u64::from(index - 1) * u64::from(entry_size) + 32,
                Corrupt::GptEntryOutOfBounds {
                    index,
                    first,
                    last: last_lba,
                    usable_first: first_usable,
                    usable_last: last_usable,
                },
            )));
        }
        let units: Vec<u16> = entry[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&units);
        let number = u32::try_from(partitions.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        // `last_lba < device_sectors`, so the byte values fit in a u64.
        partitions.push(Partition {
            number,
            kernel_number: index,
            start_bytes: first * ss,
            size_bytes: (last_lba - first + 1) * ss,
            partition_type: PartitionType::Gpt(type_guid),
            type_description: describe(&type_guid),
            name: (!name.is_empty()).then_some(name),
            guid: Some(Guid(guid)),
            logical: false,
            bootable: false,
        });
    }
    Ok(Ok(Gpt {
        alternate_lba,
        disk_guid: Guid(disk_guid),
        partitions,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::mbr::tests::put;
    use super::*;
    use crate::source::MemorySource;

    const LINUX: [u8; 16] = [
        0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D,
        0xE4,
    ];

    /// Writes a header at `lba` whose entries are at `entries_lba`, with correct CRCs.
    fn header(d: &mut [u8], ss: usize, lba: u64, alt: u64, entries_lba: u64, array: &[u8]) {
        let sectors = (d.len() / ss) as u64;
        let h = &mut d[lba as usize * ss..lba as usize * ss + 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&lba.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[56..72].copy_from_slice(&[7u8; 16]);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(array).to_le_bytes());
        let crc = crc32(h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
    }

    /// Recomputes the CRC of the header at byte `at` after a field was changed.
    fn fix_crc(d: &mut [u8], at: usize) {
        d[at + 16..at + 20].fill(0);
        let crc = crc32(&d[at..at + 92]);
        d[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    }

    /// A 2 MiB disk (in `ss`-byte sectors: 4096 of 512 or 512 of 4096) with two partitions.
    fn disk(ss: usize) -> Vec<u8> {
        let mut d = vec![0u8; 2 << 20];
        let sectors = (d.len() / ss) as u64;
        put(&mut d[..512], 0, 0, 0xEE, 1, (sectors - 1) as u32);
        let mut array = vec![0u8; 128 * 128];
        for (i, (first, last, name)) in [(40u64, 99u64, "alpha"), (100, 199, "β")]
            .iter()
            .enumerate()
        {
            let e = &mut array[i * 128..(i + 1) * 128];
            e[..16].copy_from_slice(&LINUX);
            e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (j, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        let last = sectors - 1;
        let array_sectors = (array.len() / ss) as u64;
        d[2 * ss..2 * ss + array.len()].copy_from_slice(&array);
        let backup_array = ((last - array_sectors) as usize) * ss;
        d[backup_array..backup_array + array.len()].copy_from_slice(&array);
        header(&mut d, ss, 1, last, 2, &array);
        header(&mut d, ss, last, 1, last - array_sectors, &array);
        d
    }

    fn read_disk(d: Vec<u8>) -> Result<PartitionTable, PartitionError> {
        PartitionTable::read(&MemorySource::new("disk.img", d), None)
    }

    fn corrupt_kind(d: Vec<u8>) -> (u64, Corrupt) {
        match read_disk(d) {
            Err(PartitionError::Corrupt { offset, kind, .. }) => (offset, kind),
            other => panic!("expected a corrupt table, got {other:?}"),
        }
    }

    /// Breaks the backup header's signature, so the primary's own error surfaces.
    fn without_backup(mut d: Vec<u8>, ss: usize) -> Vec<u8> {
        let at = d.len() - ss;
        d[at] = b'X';
        d
    }

    fn primary_error(d: Vec<u8>, ss: usize) -> (u64, Corrupt) {
        match corrupt_kind(without_backup(d, ss)) {
            (
                _,
                Corrupt::NoValidGpt {
                    primary,
                    primary_offset,
                    ..
                },
            ) => (primary_offset, *primary),
            other => panic!("expected NoValidGpt, got {other:?}"),
        }
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn both_sector_sizes_are_read() {
        for ss in [512usize, 4096] {
            let t = read_disk(disk(ss)).unwrap_or_else(|e| panic!("{ss}: {e}"));
            assert_eq!(t.scheme, Scheme::Gpt);
            assert_eq!(t.sector_size as usize, ss);
            assert!(t.warnings.is_empty(), "{:?}", t.warnings);
            let got: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.number,
                        p.start_bytes,
                        p.size_bytes,
                        p.type_description.as_str(),
                        p.name.as_deref(),
                    )
                })
                .collect();
            let ss = ss as u64;
            assert_eq!(
                got,
                vec![
                    (1, 40 * ss, 60 * ss, "Linux filesystem", Some("alpha")),
                    (2, 100 * ss, 100 * ss, "Linux filesystem", Some("β")),
                ]
            );
        }
    }

    #[test]
    fn a_broken_primary_header_is_replaced_by_the_backup() {
        let mut d = disk(512);
        d[512 + 60] ^= 1; // the disk GUID, under the header CRC
        let t = read_disk(d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(
            t.warnings,
            vec![format!(
                "the primary GPT is corrupt at byte offset 528: GPT header CRC32 is {:#010x}, \
                 computed {:#010x}; the table was read from the backup header at byte offset {}",
                crc32(&{
                    let mut h = disk(512)[512..604].to_vec();
                    h[16..20].fill(0);
                    h
                }),
                crc32(&{
                    let mut h = disk(512)[512..604].to_vec();
                    h[16..20].fill(0);
                    h[60] ^= 1;
                    h
                }),
                (2 << 20) - 512
            )]
        );
    }

    #[test]
    fn a_broken_backup_is_a_warning() {
        let t = read_disk(without_backup(disk(512), 512)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(
            t.warnings,
            vec![format!(
                "the backup GPT is corrupt at byte offset {}: GPT header signature is \
                 \"XFI PART\", not \"EFI PART\"",
                (2 << 20) - 512
            )]
        );
    }

    #[test]
    fn each_corrupt_header_field_has_its_own_error() {
        // (field offset in the header, new value, expected error)
        let cases: Vec<(usize, Vec<u8>, Corrupt)> = vec![
            (
                12,
                600u32.to_le_bytes().to_vec(),
                Corrupt::GptHeaderSize {
                    value: 600,
                    max: 512,
                },
            ),
            (
                24,
                5u64.to_le_bytes().to_vec(),
                Corrupt::GptMyLba {
                    stored: 5,
                    actual: 1,
                },
            ),
            (
                40,
                5000u64.to_le_bytes().to_vec(),
                Corrupt::GptUsableRange {
                    first: 5000,
                    last: 4062,
                    device_sectors: 4096,
                },
            ),
            (
                84,
                100u32.to_le_bytes().to_vec(),
                Corrupt::GptEntrySize { value: 100 },
            ),
            (
                80,
                100_000u32.to_le_bytes().to_vec(),
                Corrupt::GptEntryArrayTooLarge {
                    count: 100_000,
                    size: 128,
                    max: MAX_ARRAY_BYTES,
                },
            ),
            (
                72,
                4095u64.to_le_bytes().to_vec(),
                Corrupt::GptEntryArrayOutOfBounds {
                    lba: 4095,
                    bytes: 16384,
                },
            ),
        ];
        for (field, value, want) in cases {
            let mut d = disk(512);
            d[512 + field..512 + field + value.len()].copy_from_slice(&value);
            fix_crc(&mut d, 512);
            assert_eq!(primary_error(d, 512), (512 + field as u64, want));
        }
    }

    #[test]
    fn a_changed_entry_fails_the_array_crc() {
        let mut d = disk(512);
        d[1024 + 32] = 41; // first LBA of entry 1
        let (offset, kind) = primary_error(d, 512);
        assert_eq!(offset, 512 + 88);
        assert!(matches!(kind, Corrupt::GptEntriesCrc { .. }), "{kind:?}");
    }

    #[test]
    fn an_entry_outside_the_usable_range_is_corrupt() {
        let mut d = disk(512);
        d[1024 + 128 + 40..1024 + 128 + 48].copy_from_slice(&9999u64.to_le_bytes());
        let crc = crc32(&d[1024..1024 + 16384]);
        d[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
        fix_crc(&mut d, 512);
        assert_eq!(
            primary_error(d, 512),
            (
                1024 + 128 + 32,
                Corrupt::GptEntryOutOfBounds {
                    index: 2,
                    first: 100,
                    last: 9999,
                    usable_first: 34,
                    usable_last: 4062
                }
            )
        );
    }

    #[test]
    fn both_headers_broken_is_one_error_naming_both() {
        let mut d = disk(512);
        d[512] = b'X';
        let e = read_disk(without_backup(d, 512))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "disk.img: corrupt partition table at byte offset 512: no valid GPT: primary \
                 (byte offset 512): GPT header signature is \"XFI PART\", \
                 not \"EFI PART\"; backup (byte offset 2096640): GPT header signature is \
                 \"XFI PART\", not \"EFI PART\""
            )
        );
    }
}
