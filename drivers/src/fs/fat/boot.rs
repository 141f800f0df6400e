//! Boot sectors: the FAT12/16/32 BIOS parameter block and the exFAT main (or backup) boot
//! region, turned into one [`Geometry`] the rest of the reader uses.
//!
//! Every field is checked before it is used, and the cluster count is clamped to what the FAT
//! can describe and what the device holds, so a hostile boot sector cannot make the reader
//! allocate or walk more than the device's size justifies.

use super::{le16, le32, le64, Ctx, Variant};
use crate::fs::FsError;

/// Where the root directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    /// FAT12/16: a fixed region after the FATs, `len` bytes at byte `offset`.
    Fixed { offset: u64, len: u64 },
    /// FAT32 and exFAT: a cluster chain.
    Cluster(u32),
}

/// The layout of a FAT or exFAT volume, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Geometry {
    /// Which of the four formats.
    pub variant: Variant,
    /// Bytes per cluster (a power of two).
    pub cluster_size: u64,
    /// Byte offset of the FAT in use.
    pub fat_offset: u64,
    /// Bytes of that FAT.
    pub fat_bytes: u64,
    /// Byte offset of cluster 2.
    pub heap_offset: u64,
    /// Number of data clusters: valid cluster numbers are `2..cluster_count + 2`.
    pub cluster_count: u32,
    /// The root directory.
    pub root: Root,
    /// FAT: the label in the boot sector (the root directory's label entry wins).
    pub boot_label: Option<String>,
    /// Things to tell the operator (dirty volume, backup boot region used...).
    pub warnings: Vec<String>,
}

/// The exFAT boot region's OEM name.
const EXFAT_NAME: &[u8; 8] = b"EXFAT   ";

/// The largest cluster number each FAT width can name (the values above it are reserved,
/// bad or end-of-chain markers).
fn max_cluster_value(variant: Variant) -> u32 {
    match variant {
        Variant::Fat12 => 0xFF6,
        Variant::Fat16 => 0xFFF6,
        Variant::Fat32 => 0x0FFF_FFF6,
        Variant::ExFat => 0xFFFF_FFF6,
    }
}

/// How many FAT entries `bytes` of FAT hold.
fn fat_capacity(variant: Variant, bytes: u64) -> u64 {
    match variant {
        Variant::Fat12 => bytes.saturating_mul(2) / 3,
        Variant::Fat16 => bytes / 2,
        Variant::Fat32 | Variant::ExFat => bytes / 4,
    }
}

/// Whether sector 0 looks like exFAT (its OEM name), so [`super::FatFs::open`] can choose.
pub(super) fn is_exfat(sector0: &[u8]) -> bool {
    sector0.get(3..11) == Some(EXFAT_NAME.as_slice())
}

/// Clamps the cluster count to what the FAT can describe and what the device holds.
fn clamp_clusters(
    ctx: &Ctx,
    g: &mut Geometry,
    count: u64,
    device_size: u64,
) -> Result<(), FsError> {
    let mut count = count;
    let by_value = u64::from(max_cluster_value(g.variant)).saturating_sub(1);
    let by_fat = fat_capacity(g.variant, g.fat_bytes).saturating_sub(2);
    if count > by_value {
        count = by_value;
    }
    if count > by_fat {
        g.warnings.push(format!(
            "the FAT ({} bytes) describes only {by_fat} of the volume's {count} clusters; \
             the rest is not read",
            g.fat_bytes
        ));
        count = by_fat;
    }
    if g.heap_offset > device_size {
        return Err(ctx.corrupt(
            0,
            format!(
                "boot sector: the data area starts at byte {}, past the end of the device \
                 ({device_size} bytes)",
                g.heap_offset
            ),
        ));
    }
    let on_device = device_size.saturating_sub(g.heap_offset) / g.cluster_size;
    if count > on_device {
        g.warnings.push(format!(
            "the volume has {count} clusters but the device holds only {on_device}; \
             files past the end of the device cannot be read"
        ));
        count = on_device;
    }
    g.cluster_count = u32::try_from(count).map_err(|_| {
        ctx.corrupt(
            0,
            format!("boot sector: cluster count {count} does not fit 32 bits"),
        )
    })?;
    Ok(())
}

/// Parses a FAT12/16/32 boot sector (`b` holds at least 512 bytes of sector 0).
pub(super) fn parse_fat(ctx: &Ctx, b: &[u8], device_size: u64) -> Result<Geometry, FsError> {
    let bad = |offset: u64, what: String| ctx.corrupt(offset, format!("boot sector: {what}"));
    let bytes_per_sector = le16(b, 11);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
        return Err(bad(
            11,
            format!("bytes per sector {bytes_per_sector} (expected 512, 1024, 2048 or 4096)"),
        ));
    }
    let sector = u64::from(bytes_per_sector);
    let per_cluster = b.get(13).copied().unwrap_or(0);
    if !per_cluster.is_power_of_two() {
        return Err(bad(
            13,
            format!("sectors per cluster {per_cluster} (expected a power of two)"),
        ));
    }
    let reserved = le16(b, 14);
    if reserved == 0 {
        return Err(bad(14, "reserved sector count 0".into()));
    }
    let fats = b.get(16).copied().unwrap_or(0);
    if fats == 0 {
        return Err(bad(16, "number of FATs 0".into()));
    }
    let root_entries = le16(b, 17);
    let total16 = le16(b, 19);
    let fat_size16 = le16(b, 22);
    let total32 = le32(b, 32);
    let fat_size32 = le32(b, 36);
    let fat32 = fat_size16 == 0;
    let fat_sectors = if fat32 {
        u64::from(fat_size32)
    } else {
        u64::from(fat_size16)
    };
    if fat_sectors == 0 {
        return Err(bad(36, "FAT size 0".into()));
    }
    let total_sectors = if total16 != 0 {
        u64::from(total16)
    } else {
        u64::from(total32)
    };
    if total_sectors == 0 {
        return Err(bad(32, "total sector count 0".into()));
    }
    if fat32 && root_entries != 0 {
        return Err(bad(
            17,
            format!("FAT32 volume with {root_entries} fixed root entries (expected 0)"),
        ));
    }
    if !fat32 && root_entries == 0 {
        return Err(bad(
            17,
            "FAT12/16 volume with no root directory entries".into(),
        ));
    }
    // Sector counts are at most 32 bits and sector sizes 4 KiB: none of this can overflow a
    // u64, but the subtraction can underflow on a corrupt sector.
    let root_sectors = (u64::from(root_entries) * 32).div_ceil(sector);
    let fat_start = u64::from(reserved);
    let fat_region = u64::from(fats) * fat_sectors;
    let root_start = fat_start + fat_region;
    let data_start = root_start + root_sectors;
    let data_sectors = total_sectors.checked_sub(data_start).ok_or_else(|| {
        bad(
            19,
            format!(
                "total sector count {total_sectors} is smaller than the {data_start} sectors \
                 before the data area"
            ),
        )
    })?;
    let count = data_sectors / u64::from(per_cluster);
    let variant = if fat32 {
        Variant::Fat32
    } else if count < 4085 {
        Variant::Fat12
    } else {
        Variant::Fat16
    };
    // FAT32 may keep one FAT active instead of mirroring them (ExtFlags bit 7).
    let mut warnings = Vec::new();
    let mut active = 0u64;
    if fat32 {
        let ext_flags = le16(b, 40);
        if ext_flags & 0x80 != 0 {
            active = u64::from(ext_flags & 0x0F);
            if active >= u64::from(fats) {
                warnings.push(format!(
                    "boot sector names FAT {active} active but the volume has {fats}; \
                     using FAT 0"
                ));
                active = 0;
            }
        }
    }
    let label_at = if fat32 { 71 } else { 43 };
    let boot_label = b
        .get(label_at..label_at + 11)
        .and_then(super::dir::label_from_bytes);
    if le16(b, 510) != 0xAA55 {
        warnings.push("boot sector lacks the 0x55 0xAA signature".into());
    }
    let fat_bytes = fat_sectors * sector;
    let mut g = Geometry {
        variant,
        cluster_size: u64::from(per_cluster) * sector,
        fat_offset: (fat_start + active * fat_sectors) * sector,
        fat_bytes,
        heap_offset: data_start * sector,
        cluster_count: 0,
        root: Root::Fixed {
            offset: root_start * sector,
            len: u64::from(root_entries) * 32,
        },
        boot_label,
        warnings,
    };
    if g.fat_offset.saturating_add(fat_bytes) > device_size {
        return Err(bad(
            22,
            format!(
                "the FAT ({fat_bytes} bytes at byte {}) passes the end of the device \
                 ({device_size} bytes)",
                g.fat_offset
            ),
        ));
    }
    clamp_clusters(ctx, &mut g, count, device_size)?;
    if fat32 {
        let root = le32(b, 44);
        if root < 2 || u64::from(root) >= u64::from(g.cluster_count) + 2 {
            return Err(bad(
                44,
                format!(
                    "root directory cluster {root} outside the volume's clusters 2..={}",
                    u64::from(g.cluster_count) + 1
                ),
            ));
        }
        g.root = Root::Cluster(root);
    }
    Ok(g)
}

/// The exFAT boot checksum over the first 11 sectors of a boot region, skipping the
/// VolumeFlags and PercentInUse bytes (which change without the checksum being rewritten).
fn boot_checksum(region: &[u8], sector: usize) -> u32 {
    let mut sum = 0u32;
    for (i, &byte) in region.iter().take(sector.saturating_mul(11)).enumerate() {
        if matches!(i, 106 | 107 | 112) {
            continue;
        }
        sum = sum.rotate_right(1).wrapping_add(u32::from(byte));
    }
    sum
}

/// Checks one exFAT boot region whose sectors are `1 << shift` bytes (`region` holds 12 of
/// them) and returns its geometry. `base` is the region's byte offset, for messages.
fn parse_exfat_region(
    ctx: &Ctx,
    region: &[u8],
    base: u64,
    device_size: u64,
) -> Result<Geometry, FsError> {
    let bad = |offset: u64, what: String| {
        ctx.corrupt(
            base.saturating_add(offset),
            format!("exFAT boot sector: {what}"),
        )
    };
    if !is_exfat(region) {
        return Err(bad(3, "no EXFAT signature".into()));
    }
    if region.get(11..64).is_none_or(|z| z.iter().any(|&b| b != 0)) {
        return Err(bad(11, "bytes 11..64 are not zero".into()));
    }
    if le16(region, 510) != 0xAA55 {
        return Err(bad(
            510,
            format!(
                "boot signature {:#06x} (expected 0xaa55)",
                le16(region, 510)
            ),
        ));
    }
    let sector_shift = region.get(108).copied().unwrap_or(0);
    if !(9..=12).contains(&sector_shift) {
        return Err(bad(
            108,
            format!("bytes-per-sector shift {sector_shift} (expected 9..=12)"),
        ));
    }
    let cluster_shift = region.get(109).copied().unwrap_or(0);
    if u32::from(sector_shift) + u32::from(cluster_shift) > 25 {
        return Err(bad(
            109,
            format!("sectors-per-cluster shift {cluster_shift}: clusters above 32 MiB"),
        ));
    }
    let sector = 1usize << sector_shift;
    if region.len() < sector * 12 {
        return Err(bad(0, "boot region shorter than 12 sectors".into()));
    }
    let want = boot_checksum(region, sector);
    let stored = le32(region, sector * 11);
    if want != stored {
        return Err(bad(
            u64::try_from(sector * 11).unwrap_or(0),
            format!("boot checksum {stored:#010x} (computed {want:#010x})"),
        ));
    }
    let revision = le16(region, 104);
    if revision >> 8 != 1 {
        return Err(ctx.unsupported(format!(
            "exFAT revision {}.{} (only 1.x is read)",
            revision >> 8,
            revision & 0xFF
        )));
    }
    let fats = region.get(110).copied().unwrap_or(0);
    if !(1..=2).contains(&fats) {
        return Err(bad(110, format!("number of FATs {fats} (expected 1 or 2)")));
    }
    let sector = 1u64 << sector_shift;
    let volume_sectors = le64(region, 72);
    let fat_start = u64::from(le32(region, 80));
    let fat_sectors = u64::from(le32(region, 84));
    let heap_start = u64::from(le32(region, 88));
    let count = u64::from(le32(region, 92));
    let root = le32(region, 96);
    let flags = le16(region, 106);
    if fat_start < 24 {
        return Err(bad(
            80,
            format!("FAT offset {fat_start} sectors (inside the boot regions)"),
        ));
    }
    if fat_sectors == 0 {
        return Err(bad(84, "FAT length 0".into()));
    }
    if heap_start < fat_start + fat_sectors * u64::from(fats) {
        return Err(bad(
            88,
            format!(
                "cluster heap offset {heap_start} sectors overlaps the FATs \
                 ({fats} × {fat_sectors} sectors from sector {fat_start})"
            ),
        ));
    }
    let cluster_size = sector << cluster_shift;
    let in_volume = volume_sectors.saturating_sub(heap_start) / (1u64 << cluster_shift);
    if count > in_volume {
        return Err(bad(
            92,
            format!(
                "cluster count {count} does not fit the volume ({volume_sectors} sectors, \
                 heap from sector {heap_start})"
            ),
        ));
    }
    let mut warnings = Vec::new();
    // VolumeFlags bit 0: the second FAT is the active one.
    let active = if flags & 1 != 0 && fats == 2 { 1 } else { 0 };
    if flags & 2 != 0 {
        warnings.push("the exFAT volume is marked dirty (not cleanly unmounted)".into());
    }
    if flags & 4 != 0 {
        warnings.push("the exFAT volume is marked as having had media failures".into());
    }
    let fat_bytes = fat_sectors * sector;
    let mut g = Geometry {
        variant: Variant::ExFat,
        cluster_size,
        fat_offset: (fat_start + active * fat_sectors) * sector,
        fat_bytes,
        heap_offset: heap_start * sector,
        cluster_count: 0,
        root: Root::Cluster(root),
        boot_label: None,
        warnings,
    };
    if g.fat_offset.saturating_add(fat_bytes) > device_size {
        return Err(bad(
            84,
            format!(
                "the FAT ({fat_bytes} bytes at byte {}) passes the end of the device \
                 ({device_size} bytes)",
                g.fat_offset
            ),
        ));
    }
    clamp_clusters(ctx, &mut g, count, device_size)?;
    if root < 2 || u64::from(root) >= u64::from(g.cluster_count) + 2 {
        return Err(bad(
            96,
            format!(
                "root directory cluster {root} outside the volume's clusters 2..={}",
                u64::from(g.cluster_count) + 1
            ),
        ));
    }
    Ok(g)
}

/// Reads and checks the exFAT main boot region; when it is corrupt, the backup region (the
/// next 12 sectors) is used instead, with a warning.
pub(super) fn parse_exfat(ctx: &Ctx) -> Result<Geometry, FsError> {
    let device_size = ctx.source.size();
    let read_region = |offset: u64, shift: u8| -> Result<Vec<u8>, FsError> {
        let mut buf = vec![0u8; 12usize << shift];
        ctx.source.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    };
    let mut first = vec![0u8; 512];
    ctx.source.read_exact_at(0, &mut first)?;
    let shift = first.get(108).copied().unwrap_or(0);
    let main = if (9..=12).contains(&shift) {
        read_region(0, shift).and_then(|r| parse_exfat_region(ctx, &r, 0, device_size))
    } else {
        parse_exfat_region(ctx, &first, 0, device_size)
    };
    let main_err = match main {
        Ok(g) => return Ok(g),
        Err(e) => e,
    };
    // The backup starts at sector 12; its sector size is only known once it is read, so try
    // each possible size.
    for shift in 9u8..=12 {
        let offset = 12u64 << shift;
        let Ok(region) = read_region(offset, shift) else {
            continue;
        };
        if region.get(108) != Some(&shift) {
            continue;
        }
        if let Ok(mut g) = parse_exfat_region(ctx, &region, offset, device_size) {
            g.warnings.insert(
                0,
                format!("the main exFAT boot region is unusable ({main_err}); the backup was used"),
            );
            return Ok(g);
        }
    }
    Err(main_err)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The boot checksum of a region of 512-byte sectors (for building test images).
    pub(crate) fn checksum(region: &[u8]) -> u32 {
        boot_checksum(region, 512)
    }

    #[test]
    fn boot_checksum_skips_the_volatile_bytes() {
        let mut region = vec![0u8; 512 * 12];
        region[0] = 1;
        let base = boot_checksum(&region, 512);
        for i in [106, 107, 112] {
            let mut r = region.clone();
            r[i] = 0xFF;
            assert_eq!(boot_checksum(&r, 512), base);
        }
        region[105] = 1;
        assert_ne!(boot_checksum(&region, 512), base);
    }
}
