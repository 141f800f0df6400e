//! The 512-byte volume header: where it sits, and its decrypted 448-byte area.
//!
//! Offsets below are relative to the encrypted area (header byte 64). Integers are big-endian.

use zeroize::Zeroizing;

/// Bytes of a header on disk: 64 of salt, then the encrypted area.
pub const HEADER_LEN: usize = 512;
/// Bytes of salt in front of the encrypted area.
pub const SALT_LEN: usize = 64;
/// Bytes of the encrypted area.
pub const AREA_LEN: usize = HEADER_LEN - SALT_LEN;
/// Size of one header group (a header slot and the hidden header's slot) in the V2 layout.
pub const GROUP_LEN: u64 = 131_072;
/// The highest header format version known (TrueCrypt 7.1a and VeraCrypt write 5).
pub const MAX_VERSION: u16 = 5;
/// The highest program version TrueCrypt 7.1a itself would mount.
const MAX_PROGRAM: u16 = 0x071a;

const KEY_AREA: usize = 192;
const HEADER_CRC: usize = 188;

/// The magic at the start of the decrypted area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// `TRUE`: TrueCrypt (and VeraCrypt in TrueCrypt mode).
    TrueCrypt,
    /// `VERA`: VeraCrypt.
    VeraCrypt,
}

impl Magic {
    /// The four ASCII bytes.
    pub fn bytes(self) -> &'static [u8; 4] {
        match self {
            Self::TrueCrypt => b"TRUE",
            Self::VeraCrypt => b"VERA",
        }
    }
}

/// Where a header sits in its host (a file, a device or a partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderLocation {
    /// The standard header at byte 0.
    Primary,
    /// The hidden-volume header at byte 65536 (TrueCrypt 6.0 and later).
    Hidden,
    /// The hidden-volume header 1536 bytes before the end (TrueCrypt 5.x and older).
    HiddenLegacy,
    /// The backup standard header, 131072 bytes before the end.
    Backup,
    /// The backup hidden-volume header, 65536 bytes before the end.
    BackupHidden,
}

impl HeaderLocation {
    /// Where the header starts in a host of `host_size` bytes, if it fits there.
    pub fn offset(self, host_size: u64) -> Option<u64> {
        let offset = match self {
            Self::Primary => 0,
            Self::Hidden => 65_536,
            Self::HiddenLegacy => host_size.checked_sub(1536)?,
            Self::Backup => host_size.checked_sub(GROUP_LEN)?,
            Self::BackupHidden => host_size.checked_sub(65_536)?,
        };
        // A V2 header group needs both groups in the host; the legacy hidden header needs
        // the standard header in front of it.
        let needed = match self {
            Self::Primary => HEADER_LEN as u64,
            Self::HiddenLegacy => 2048,
            _ => 2 * GROUP_LEN,
        };
        (host_size >= needed && offset + HEADER_LEN as u64 <= host_size).then_some(offset)
    }

    /// Short name, for `stationctl inspect` and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Primary => "primary header at byte 0",
            Self::Hidden => "hidden-volume header at byte 65536",
            Self::HiddenLegacy => "hidden-volume header at end - 1536",
            Self::Backup => "backup header at end - 131072",
            Self::BackupHidden => "backup hidden-volume header at end - 65536",
        }
    }
}

impl std::fmt::Display for HeaderLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a decrypted area is not a usable header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The input is not 448 bytes.
    #[error("a decrypted header area is {AREA_LEN} bytes, not {0}")]
    Length(usize),
    /// No TrueCrypt or VeraCrypt magic: the key is wrong (or this is not a volume).
    #[error("no TRUE/VERA magic")]
    Magic,
    /// The key area's CRC does not match: the key is wrong.
    #[error("the key-area CRC-32 does not match")]
    KeyAreaCrc,
    /// The header fields' CRC does not match: the key is wrong.
    #[error("the header CRC-32 does not match")]
    HeaderCrc,
    /// A real header (magic and CRC match) of a kind this reader does not handle.
    #[error("{0}")]
    Unsupported(String),
    /// A real header whose fields make no sense.
    #[error("{0}")]
    Corrupt(String),
}

impl HeaderError {
    /// Whether the error only means that this key does not open this header.
    pub fn is_wrong_key(&self) -> bool {
        matches!(self, Self::Magic | Self::KeyAreaCrc | Self::HeaderCrc)
    }
}

/// A decrypted, checked header.
#[derive(Clone)]
pub struct Header {
    /// `TRUE` or `VERA`.
    pub magic: Magic,
    /// Header format version (5 for TrueCrypt 7.x).
    pub version: u16,
    /// Minimum program version needed to mount, BCD-like (`0x0700` = 7.0).
    pub required_program_version: u16,
    /// Data size of the hidden volume this header describes; 0 for a normal or outer volume.
    pub hidden_volume_size: u64,
    /// Data area size in bytes.
    pub volume_size: u64,
    /// Byte offset of the data area in the host.
    pub encrypted_area_start: u64,
    /// Bytes of the data area that are encrypted.
    pub encrypted_area_length: u64,
    /// Bit 0: system encryption; bit 1: in-place encryption of a non-system volume.
    pub flags: u32,
    /// Sector size (512 before version 5).
    pub sector_size: u32,
    /// CRC-32 of the key area, as stored.
    pub key_area_crc32: u32,
    key_area: Zeroizing<[u8; 256]>,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key area.
        f.debug_struct("Header")
            .field("magic", &self.magic)
            .field("version", &self.version)
            .field("required_program_version", &self.required_program_version)
            .field("hidden_volume_size", &self.hidden_volume_size)
            .field("volume_size", &self.volume_size)
            .field("encrypted_area_start", &self.encrypted_area_start)
            .field("encrypted_area_length", &self.encrypted_area_length)
            .field("flags", &self.flags)
            .field("sector_size", &self.sector_size)
            .finish_non_exhaustive()
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Parses and checks a decrypted 448-byte header area.
///
/// # Errors
///
/// [`HeaderError::is_wrong_key`] errors when the magic or a CRC does not match; `Unsupported`
/// or `Corrupt` for a real header this reader cannot use.
pub fn parse_header(area: &[u8]) -> Result<Header, HeaderError> {
    if area.len() != AREA_LEN {
        return Err(HeaderError::Length(area.len()));
    }
    let magic = match &area[0..4] {
        b"TRUE" => Magic::TrueCrypt,
        b"VERA" => Magic::VeraCrypt,
        _ => return Err(HeaderError::Magic),
    };
    let key_area_crc32 = be32(area, 8);
    if crc32fast::hash(&area[KEY_AREA..]) != key_area_crc32 {
        return Err(HeaderError::KeyAreaCrc);
    }
    let version = be16(area, 4);
    // Version 3 and older have no header CRC.
    if version >= 4 && crc32fast::hash(&area[..HEADER_CRC]) != be32(area, HEADER_CRC) {
        return Err(HeaderError::HeaderCrc);
    }
    let required_program_version = be16(area, 6);
    if version > MAX_VERSION {
        return Err(HeaderError::Unsupported(format!(
            "header format version {version} is newer than this reader knows ({MAX_VERSION})"
        )));
    }
    if magic == Magic::TrueCrypt && required_program_version > MAX_PROGRAM {
        return Err(HeaderError::Unsupported(format!(
            "the volume needs TrueCrypt {:x}.{:02x} or later (the format stops at 7.1a)",
            required_program_version >> 8,
            required_program_version & 0xff
        )));
    }
    let sector_size = if version >= 5 { be32(area, 64) } else { 512 };
    if !(512..=4096).contains(&sector_size) || sector_size % 512 != 0 {
        return Err(HeaderError::Corrupt(format!(
            "sector size {sector_size} is not a multiple of 512 between 512 and 4096"
        )));
    }
    let mut key_area = Zeroizing::new([0u8; 256]);
    key_area.copy_from_slice(&area[KEY_AREA..]);
    Ok(Header {
        magic,
        version,
        required_program_version,
        hidden_volume_size: be64(area, 28),
        volume_size: be64(area, 36),
        encrypted_area_start: be64(area, 44),
        encrypted_area_length: be64(area, 52),
        flags: be32(area, 60),
        sector_size,
        key_area_crc32,
        key_area,
    })
}

impl Header {
    /// The master keys (primary keys, then tweak keys, then zeros).
    pub(crate) fn key_area(&self) -> &[u8; 256] {
        &self.key_area
    }

    /// Whether this header describes a hidden volume.
    pub fn is_hidden(&self) -> bool {
        self.hidden_volume_size != 0
    }

    /// Whether the volume uses the legacy V1 layout (TrueCrypt 5.x and older): no backup
    /// headers, data right after the header, offsets computed rather than recorded.
    pub fn is_v1_layout(&self) -> bool {
        // VeraCrypt's program versions restart at 1.0 and it never wrote the V1 layout.
        self.magic == Magic::TrueCrypt
            && self.required_program_version < 0x0600
            && self.flags & 1 == 0
    }

    /// The data area (byte offset in the host, size in bytes) for a header found at `location`
    /// in a host of `host_size` bytes.
    ///
    /// # Errors
    ///
    /// `Unsupported` for system encryption or unfinished in-place encryption; `Corrupt` when the
    /// area does not fit the host or is not in whole 512-byte units.
    pub fn data_area(
        &self,
        location: HeaderLocation,
        host_size: u64,
    ) -> Result<(u64, u64), HeaderError> {
        if self.flags & 1 != 0 {
            return Err(HeaderError::Unsupported(
                "this is a system-encryption header (an encrypted Windows drive); Station opens \
                 TrueCrypt volumes and containers, not system drives"
                    .into(),
            ));
        }
        let host = host_size - host_size % 512;
        let (start, size) = if self.is_v1_layout() {
            match location {
                HeaderLocation::Primary => (512, host.saturating_sub(512)),
                HeaderLocation::HiddenLegacy => {
                    let size = self.hidden_volume_size;
                    let start = host.checked_sub(1536).and_then(|e| e.checked_sub(size));
                    let start = start.ok_or_else(|| {
                        HeaderError::Corrupt(format!(
                            "hidden volume size {size} does not fit a host of {host_size} bytes"
                        ))
                    })?;
                    (start, size)
                }
                _ => {
                    return Err(HeaderError::Corrupt(format!(
                        "a version {} header (TrueCrypt 5 layout) at the {location}",
                        self.version
                    )))
                }
            }
        } else {
            if self.flags & 2 != 0 && self.encrypted_area_length != self.volume_size {
                return Err(HeaderError::Unsupported(format!(
                    "in-place encryption of this volume was not finished ({} of {} bytes \
                     encrypted); finish it with TrueCrypt first",
                    self.encrypted_area_length, self.volume_size
                )));
            }
            (self.encrypted_area_start, self.volume_size)
        };
        let end = start.checked_add(size);
        if size == 0 || start % 512 != 0 || size % 512 != 0 || end.is_none_or(|e| e > host) {
            return Err(HeaderError::Corrupt(format!(
                "data area of {size} bytes at byte {start} is not in whole 512-byte units inside \
                 the {host_size}-byte host"
            )));
        }
        Ok((start, size))
    }
}

/// The fields of a header to write.
pub(crate) struct NewHeader<'a> {
    pub volume_size: u64,
    pub data_start: u64,
    pub key_area: &'a [u8],
}

/// A TrueCrypt 7.1a header area (version 5, needs 7.0), with both CRCs.
pub(crate) fn build_header(h: &NewHeader<'_>) -> Zeroizing<[u8; AREA_LEN]> {
    let mut a = Zeroizing::new([0u8; AREA_LEN]);
    a[0..4].copy_from_slice(Magic::TrueCrypt.bytes());
    a[4..6].copy_from_slice(&5u16.to_be_bytes());
    a[6..8].copy_from_slice(&0x0700u16.to_be_bytes());
    a[36..44].copy_from_slice(&h.volume_size.to_be_bytes());
    a[44..52].copy_from_slice(&h.data_start.to_be_bytes());
    a[52..60].copy_from_slice(&h.volume_size.to_be_bytes());
    a[64..68].copy_from_slice(&512u32.to_be_bytes());
    let n = h.key_area.len().min(256);
    a[KEY_AREA..KEY_AREA + n].copy_from_slice(&h.key_area[..n]);
    seal_crcs(&mut a[..]);
    a
}

/// Writes both CRCs of a decrypted header area (448 bytes; shorter input is left alone), so
/// tests and the fuzz target reach the field checks behind them.
pub fn seal_crcs(area: &mut [u8]) {
    if area.len() != AREA_LEN {
        return;
    }
    let key_crc = crc32fast::hash(&area[KEY_AREA..]);
    area[8..12].copy_from_slice(&key_crc.to_be_bytes());
    let header_crc = crc32fast::hash(&area[..HEADER_CRC]);
    area[HEADER_CRC..KEY_AREA].copy_from_slice(&header_crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Zeroizing<[u8; AREA_LEN]> {
        let key: Vec<u8> = (1..=64).collect();
        build_header(&NewHeader {
            volume_size: 1 << 20,
            data_start: GROUP_LEN,
            key_area: &key,
        })
    }

    #[test]
    fn built_header_parses_back() {
        let h = parse_header(&sample()[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.magic, Magic::TrueCrypt);
        assert_eq!((h.version, h.required_program_version), (5, 0x0700));
        assert_eq!(h.key_area()[..64], (1..=64).collect::<Vec<u8>>()[..]);
        let host = (1 << 20) + 2 * GROUP_LEN;
        assert_eq!(
            h.data_area(HeaderLocation::Primary, host),
            Ok((GROUP_LEN, 1 << 20))
        );
        assert!(h
            .data_area(HeaderLocation::Primary, GROUP_LEN + (1 << 20) - 512)
            .is_err());
    }

    /// Corrupt one field, expect one error.
    #[test]
    fn each_check_has_its_error() {
        let mut a = sample();
        a[0] = b'X';
        assert_eq!(parse_header(&a[..]).err(), Some(HeaderError::Magic));
        let mut a = sample();
        a[300] ^= 1;
        assert_eq!(parse_header(&a[..]).err(), Some(HeaderError::KeyAreaCrc));
        let mut a = sample();
        a[40] ^= 1;
        assert_eq!(parse_header(&a[..]).err(), Some(HeaderError::HeaderCrc));
        let mut a = sample();
        a[4..6].copy_from_slice(&6u16.to_be_bytes());
        seal_crcs(&mut a[..]);
        assert_eq!(
            parse_header(&a[..]).err().map(|e| e.to_string()).as_deref(),
            Some("header format version 6 is newer than this reader knows (5)")
        );
        let mut a = sample();
        a[64..68].copy_from_slice(&1000u32.to_be_bytes());
        seal_crcs(&mut a[..]);
        assert!(matches!(parse_header(&a[..]), Err(HeaderError::Corrupt(_))));
        let mut a = sample();
        a[60..64].copy_from_slice(&1u32.to_be_bytes());
        seal_crcs(&mut a[..]);
        let h = parse_header(&a[..]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            h.data_area(HeaderLocation::Primary, 1 << 30),
            Err(HeaderError::Unsupported(_))
        ));
        assert_eq!(
            parse_header(&[0u8; 10]).err(),
            Some(HeaderError::Length(10))
        );
    }

    #[test]
    fn header_locations_fit_the_host() {
        assert_eq!(HeaderLocation::Hidden.offset(299_008), Some(65_536));
        assert_eq!(
            HeaderLocation::Backup.offset(299_008),
            Some(299_008 - 131_072)
        );
        assert_eq!(HeaderLocation::Backup.offset(19_456), None);
        assert_eq!(HeaderLocation::HiddenLegacy.offset(40_960), Some(39_424));
        assert_eq!(HeaderLocation::Primary.offset(100), None);
    }
}
