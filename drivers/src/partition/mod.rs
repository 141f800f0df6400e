//! Partition tables, parsed in userspace: MBR (with extended and logical partitions), GPT
//! (CRCs checked, the backup header used when the primary is broken) and Apple partition maps.
//!
//! The kernels of the loading stations have no partition-table support, and a customer's
//! table is untrusted input anyway: every count and offset read from the disk goes through
//! checked arithmetic, and a corrupt table is an error naming the device and the byte offset
//! of the field, never a panic or an endless loop.
//!
//! Partitions are numbered from 1 in table order: MBR primaries in slot order, then logical
//! partitions in EBR-chain order (the extended container itself is not a partition); GPT
//! entries in array order, skipping empty entries. [`Partition::kernel_number`] keeps the
//! number Linux would give (`sdb5` for the first logical partition).

mod apm;
mod gpt;
mod mbr;

use std::fmt;

use crate::source::{IoError, ReadAt, Slice};

/// The kind of partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// No partition table: the device is one volume (or blank, or unknown).
    None,
    /// A DOS/MBR table.
    Mbr,
    /// A GUID partition table.
    Gpt,
    /// An Apple partition map.
    Apm,
}

impl Scheme {
    /// `none`, `mbr`, `gpt` or `apm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Mbr => "mbr",
            Self::Gpt => "gpt",
            Self::Apm => "apm",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A GPT GUID, as stored (the first three fields little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Whether every byte is zero (an unused GPT entry).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02X}"))
    }
}

/// A partition's type as the table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionType {
    /// An MBR system-id byte.
    Mbr(u8),
    /// A GPT partition-type GUID.
    Gpt(Guid),
    /// An Apple partition map type (`Apple_HFS`...), NUL-padded ASCII.
    Apm([u8; 32]),
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, in table order (see the module documentation).
    pub number: u32,
    /// The number Linux would give it: the MBR slot (1-4) or 5 and up for logical partitions;
    /// the GPT entry index plus one.
    pub kernel_number: u32,
    /// Where it starts, in bytes from the start of the device.
    pub start_bytes: u64,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// The raw type.
    pub partition_type: PartitionType,
    /// The type in words (`Linux filesystem`, `W95 FAT32 (LBA)`, or the raw value).
    pub type_description: String,
    /// The GPT partition name, when set.
    pub name: Option<String>,
    /// The GPT unique partition GUID.
    pub guid: Option<Guid>,
    /// An MBR logical partition (inside the extended partition).
    pub logical: bool,
    /// The MBR boot flag (0x80).
    pub bootable: bool,
}

/// A device's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// The kind of table found.
    pub scheme: Scheme,
    /// The logical sector size the table was read with (the unit of its LBAs).
    pub sector_size: u32,
    /// The GPT disk GUID.
    pub disk_guid: Option<Guid>,
    /// The partitions in table order.
    pub partitions: Vec<Partition>,
    /// Things the operator should know that did not stop the reading (a broken primary GPT
    /// read from its backup, a broken backup).
    pub warnings: Vec<String>,
}

/// What is wrong in a corrupt table; the raw values are kept for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    /// An MBR entry does not fit the device (or starts on the MBR itself).
    #[error("MBR entry {slot}: {sectors} sectors from LBA {start} do not fit in LBA 1..{device_sectors}")]
    MbrEntryOutOfBounds {
        /// Slot 1-4.
        slot: u32,
        /// The entry's first LBA.
        start: u64,
        /// The entry's length in sectors.
        sectors: u64,
        /// The device's length in sectors.
        device_sectors: u64,
    },
    /// More than one extended partition.
    #[error("the MBR has {count} extended partitions; at most one is allowed")]
    MultipleExtended {
        /// How many.
        count: u32,
    },
    /// An EBR without the 0x55AA signature.
    #[error("the EBR at LBA {lba} has signature {found:#06x}, not 0xaa55")]
    EbrSignature {
        /// The EBR's LBA.
        lba: u64,
        /// The two bytes found (little-endian).
        found: u16,
    },
    /// The EBR chain comes back to an EBR already read.
    #[error("the EBR chain loops back to LBA {lba}")]
    EbrLoop {
        /// The LBA reached twice.
        lba: u64,
    },
    /// The EBR chain is longer than we follow.
    #[error("the EBR chain has more than {limit} logical partitions")]
    EbrChainTooLong {
        /// The limit.
        limit: u32,
    },
    /// A link to the next EBR points outside the extended partition.
    #[error("the link to the next EBR points to LBA {lba}, outside the extended partition (LBA {ext_start}..{ext_end})")]
    EbrLinkOutOfBounds {
        /// The LBA it points to.
        lba: u64,
        /// The extended partition's first LBA.
        ext_start: u64,
        /// The extended partition's end LBA (exclusive).
        ext_end: u64,
    },
    /// A logical partition lies outside its extended partition, or over its EBR.
    #[error("logical partition of {sectors} sectors from LBA {start} is not inside LBA {ebr}..{ext_end} (after its EBR, inside the extended partition)")]
    LogicalOutOfBounds {
        /// Its first LBA.
        start: u64,
        /// Its length in sectors.
        sectors: u64,
        /// The LBA of its EBR.
        ebr: u64,
        /// The extended partition's end LBA (exclusive).
        ext_end: u64,
    },
    /// The GPT header does not start with `EFI PART`.
    #[error("GPT header signature is \"{}\", not \"EFI PART\"", .found.escape_ascii())]
    GptSignature {
        /// The eight bytes found.
        found: [u8; 8],
    },
    /// The GPT header size is out of range.
    #[error("GPT header size {value} is outside 92..={max}")]
    GptHeaderSize {
        /// The size found.
        value: u32,
        /// The sector size.
        max: u32,
    },
    /// The GPT header's CRC32 does not match.
    #[error("GPT header CRC32 is {stored:#010x}, computed {computed:#010x}")]
    GptHeaderCrc {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the header as read.
        computed: u32,
    },
    /// The GPT header records another LBA than where it was read.
    #[error("GPT header says it is at LBA {stored}, but was read at LBA {actual}")]
    GptMyLba {
        /// The LBA recorded.
        stored: u64,
        /// The LBA read.
        actual: u64,
    },
    /// The usable LBA range is empty or passes the device's end.
    #[error(
        "GPT usable range LBA {first}..={last} does not fit a device of {device_sectors} sectors"
    )]
    GptUsableRange {
        /// The first usable LBA.
        first: u64,
        /// The last usable LBA.
        last: u64,
        /// The device's length in sectors.
        device_sectors: u64,
    },
    /// The partition-entry size is not 128 times a power of two.
    #[error("GPT partition entry size {value} is not 128 times a power of two")]
    GptEntrySize {
        /// The size found.
        value: u32,
    },
    /// The partition-entry array is larger than we read.
    #[error(
        "GPT partition entry array of {count} entries of {size} bytes is larger than {max} bytes"
    )]
    GptEntryArrayTooLarge {
        /// The entry count.
        count: u32,
        /// The entry size.
        size: u32,
        /// The limit in bytes.
        max: u64,
    },
    /// The partition-entry array passes the end of the device.
    #[error(
        "GPT partition entry array of {bytes} bytes at LBA {lba} passes the end of the device"
    )]
    GptEntryArrayOutOfBounds {
        /// The array's first LBA.
        lba: u64,
        /// Its length in bytes.
        bytes: u64,
    },
    /// The partition-entry array's CRC32 does not match.
    #[error("GPT partition entry array CRC32 is {stored:#010x}, computed {computed:#010x}")]
    GptEntriesCrc {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the array as read.
        computed: u32,
    },
    /// A partition entry ends before it starts or leaves the usable range.
    #[error("GPT entry {index}: LBA {first}..={last} is not inside the usable range LBA {usable_first}..={usable_last}")]
    GptEntryOutOfBounds {
        /// The entry's index in the array (from 1).
        index: u32,
        /// Its first LBA.
        first: u64,
        /// Its last LBA.
        last: u64,
        /// The first usable LBA.
        usable_first: u64,
        /// The last usable LBA.
        usable_last: u64,
    },
    /// An Apple partition map entry is unusable.
    #[error("Apple partition map entry {slot}: {what}")]
    ApmEntry {
        /// The map slot (from 1).
        slot: u32,
        /// What is wrong, with the raw values.
        what: String,
    },
    /// Neither GPT header (with its entries) is valid.
    #[error("no valid GPT: primary (byte offset {primary_offset}): {primary}; backup (byte offset {backup_offset}): {backup}")]
    NoValidGpt {
        /// Why the primary failed.
        primary: Box<Corrupt>,
        /// Where.
        primary_offset: u64,
        /// Why the backup failed.
        backup: Box<Corrupt>,
        /// Where.
        backup_offset: u64,
    },
}

/// Why a partition table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The device could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The table is inconsistent.
    #[error("{device}: corrupt partition table at byte offset {offset}: {kind}")]
    Corrupt {
        /// The device.
        device: String,
        /// The byte offset of the bad field or structure.
        offset: u64,
        /// What is wrong.
        kind: Corrupt,
    },
    /// The sector size asked for is not one a table can use.
    #[error(
        "{device}: unsupported logical sector size {sector_size} (use 512, 1024, 2048 or 4096)"
    )]
    SectorSize {
        /// The device.
        device: String,
        /// The size asked for.
        sector_size: u32,
    },
    /// A partition number that the table does not have.
    #[error("{device}: there is no partition {number}: the table ({scheme}) has {count} partition(s), numbered from 1")]
    NoSuchPartition {
        /// The device.
        device: String,
        /// The number asked for.
        number: u32,
        /// The table's kind.
        scheme: Scheme,
        /// How many partitions it has.
        count: usize,
    },
}

impl PartitionTable {
    /// Reads the partition table of `source`. `sector_size` is the logical sector size when
    /// known (a block device's, from the kernel); `None` (an image file) looks for the GPT
    /// header at 512 and then at 4096 bytes, and otherwise assumes 512.
    ///
    /// # Errors
    ///
    /// The device cannot be read, or the table found is corrupt (a protective MBR with no
    /// valid GPT behind it counts as corrupt).
    pub fn read(source: &dyn ReadAt, sector_size: Option<u32>) -> Result<Self, PartitionError> {
        let sector_size = match sector_size {
            Some(size) => {
                if !matches!(size, 512 | 1024 | 2048 | 4096) {
                    return Err(PartitionError::SectorSize {
                        device: source.describe(),
                        sector_size: size,
                    });
                }
                size
            }
            None => gpt::guess_sector_size(source)?,
        };
        let none = Self {
            scheme: Scheme::None,
            sector_size,
            disk_guid: None,
            partitions: Vec::new(),
            warnings: Vec::new(),
        };
        if source.size() < 512 {
            return Ok(none);
        }
        let mut sector0 = [0u8; 512];
        source.read_exact_at(0, &mut sector0)?;
        // An Apple partition map, unless a protective MBR says a GPT wins (hybrid disks).
        let mut sector1 = [0u8; 2];
        if source.size() >= 1024 {
            source.read_exact_at(512, &mut sector1)?;
        }
        if let Some(bs) = apm::block_size(&sector0, &sector1) {
            let protective = sector0[510..512] == [0x55, 0xAA]
                && mbr::entries(&sector0)
                    .iter()
                    .any(|e| e.system_id == mbr::PROTECTIVE);
            if !protective {
                return apm::read(source, bs);
            }
        }
        if sector0[510..512] != [0x55, 0xAA] {
            // No MBR. A GPT without its protective MBR is still a GPT (some tools write it
            // that way); anything else is no table.
            return match gpt::read(source, sector_size) {
                Ok(mut table) => {
                    table
                        .warnings
                        .push("the GPT has no protective MBR (no 0x55AA at byte 510)".into());
                    Ok(table)
                }
                Err(PartitionError::Corrupt { .. }) => Ok(none),
                Err(e) => Err(e),
            };
        }
        // A volume without a table (a "superfloppy") starts with its own boot sector, which
        // also ends in 0x55AA.
        if crate::probe::is_volume_boot_sector(&sector0) {
            return Ok(none);
        }
        let entries = mbr::entries(&sector0);
        if !entries
            .iter()
            .all(|e| e.boot_flag == 0 || e.boot_flag == 0x80)
        {
            // Not a partition table: boot code or a boot sector we do not recognise.
            return Ok(none);
        }
        if entries.iter().any(|e| e.system_id == mbr::PROTECTIVE) {
            return gpt::read(source, sector_size);
        }
        mbr::read(source, sector_size, &entries)
    }

    /// The partition numbered `number` (from 1).
    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }

    /// A source for partition `number` (from 1) of `source`, named `<device> partition <n>`.
    ///
    /// # Errors
    ///
    /// The table has no such partition, or it passes the end of `source`.
    pub fn slice<R: ReadAt>(&self, source: R, number: u32) -> Result<Slice<R>, PartitionError> {
        let Some(p) = self.partition(number) else {
            return Err(PartitionError::NoSuchPartition {
                device: source.describe(),
                number,
                scheme: self.scheme,
                count: self.partitions.len(),
            });
        };
        let name = format!("{} partition {number}", source.describe());
        Ok(Slice::new(source, p.start_bytes, p.size_bytes, name)?)
    }
}

/// Little-endian readers over a buffer whose length the caller has checked.
pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    x.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(x)
}

/// See [`le_u16`].
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// See [`le_u16`].
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_in_mixed_endian_form() {
        let g = Guid([
            0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47,
            0x7D, 0xE4,
        ]);
        assert_eq!(g.to_string(), "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    }

    #[test]
    fn a_device_without_a_table_has_scheme_none() {
        let source = crate::source::MemorySource::new("blank.img", vec![0u8; 1 << 20]);
        let t = PartitionTable::read(&source, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.scheme, Scheme::None);
        assert_eq!(t.sector_size, 512);
        let e = t.slice(&source, 1).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("blank.img: there is no partition 1: the table (none) has 0 partition(s), numbered from 1")
        );
    }
}
