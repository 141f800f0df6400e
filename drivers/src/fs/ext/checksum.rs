//! The two checksums ext2/3/4 metadata uses: CRC32C (metadata_csum) and CRC16 (gdt_csum).
//!
//! Both are the raw table-driven update with no final inversion, because that is how the
//! on-disk values are defined (the kernel's `crc32c(seed, ...)` and `crc16(seed, ...)`).
//! Computed with our own small tables so the reader needs no checksum crate.

/// CRC32C (Castagnoli) table for the reflected polynomial 0x82F63B78.
const CRC32C_TABLE: [u32; 256] = crc32c_table();

/// CRC16 (ANSI / IBM) table for the reflected polynomial 0xA001.
const CRC16_TABLE: [u16; 256] = crc16_table();

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// Continues a CRC32C over `data` from `crc`, with no inversion (ext4's `ext4_chksum`).
pub(crate) fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    crc
}

/// Continues a CRC16 over `data` from `crc`, with no inversion (the kernel's `crc16`).
pub(crate) fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc = CRC16_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_values() {
        // The catalogue check values are for the inverted forms.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
        // CRC-16/ARC: init 0, reflected 0x8005.
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
    }
}
