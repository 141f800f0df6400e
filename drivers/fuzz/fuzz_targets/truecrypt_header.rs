//! The TrueCrypt header parser on a decrypted 448-byte header area, then the data-area layout
//! for a header found at each location of a host of fuzzed size. The input is the host size
//! (8 bytes, little-endian), a location selector, a "seal the CRCs" flag (so mutants get past
//! the CRC checks to the field checks), then the area (padded or cut to 448 bytes).
#![no_main]
#![forbid(unsafe_code)]

use drivers::truecrypt::{parse_header, seal_crcs, HeaderLocation};
use libfuzzer_sys::fuzz_target;

const AREA: usize = 448;
const LOCATIONS: [HeaderLocation; 5] = [
    HeaderLocation::Primary,
    HeaderLocation::Hidden,
    HeaderLocation::HiddenLegacy,
    HeaderLocation::Backup,
    HeaderLocation::BackupHidden,
];

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<10>() else {
        return;
    };
    let mut size = [0u8; 8];
    size.copy_from_slice(&head[..8]);
    let host = u64::from_le_bytes(size);
    let location = LOCATIONS[usize::from(head[8]) % LOCATIONS.len()];
    let mut area = [0u8; AREA];
    let n = rest.len().min(AREA);
    area[..n].copy_from_slice(&rest[..n]);
    if head[9] & 1 == 1 {
        seal_crcs(&mut area);
    }
    let _ = parse_header(rest);
    let Ok(header) = parse_header(&area) else {
        return;
    };
    let _ = format!("{header:?}");
    let _ = location.offset(host);
    if let Ok((start, len)) = header.data_area(location, host) {
        assert!(len > 0 && start % 512 == 0 && len % 512 == 0, "{header:?}");
        assert!(
            start.checked_add(len).is_some_and(|end| end <= host),
            "data area {start}+{len} past the host's {host} bytes: {header:?}"
        );
    }
});
