//! Header key derivation: PBKDF2 with TrueCrypt's and VeraCrypt's PRFs, and the keyfile pool.

use hmac::Hmac;
use zeroize::Zeroizing;

/// Bytes derived per trial: enough for a three-cipher XTS cascade (PBKDF2 is prefix-stable,
/// so one derivation serves every chain).
pub const DERIVED_LEN: usize = 192;
/// Keyfile bytes that count: TrueCrypt reads only the first MiB of each.
const KEYFILE_MAX: usize = 1 << 20;

/// The HMAC hash of a header's PBKDF2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prf {
    /// HMAC-RIPEMD-160 (TrueCrypt's default).
    Ripemd160,
    /// HMAC-SHA-512.
    Sha512,
    /// HMAC-Whirlpool.
    Whirlpool,
    /// HMAC-SHA-1 (TrueCrypt before 5.0; mount only).
    Sha1,
    /// HMAC-SHA-256 (VeraCrypt only).
    Sha256,
}

impl Prf {
    /// The hash's usual name, as cryptsetup spells it (`ripemd160`, `sha512`...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ripemd160 => "ripemd160",
            Self::Sha512 => "sha512",
            Self::Whirlpool => "whirlpool",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }
}

impl std::fmt::Display for Prf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// PBKDF2-HMAC-`prf` of `password` and `salt` into `out`.
pub fn derive(prf: Prf, iterations: u32, password: &[u8], salt: &[u8], out: &mut [u8]) {
    // pbkdf2 only fails on an HMAC key of invalid length, and HMAC takes any length.
    let _ = match prf {
        Prf::Ripemd160 => {
            pbkdf2::pbkdf2::<Hmac<ripemd::Ripemd160>>(password, salt, iterations, out)
        }
        Prf::Sha512 => pbkdf2::pbkdf2::<Hmac<sha2::Sha512>>(password, salt, iterations, out),
        Prf::Whirlpool => {
            pbkdf2::pbkdf2::<Hmac<whirlpool::Whirlpool>>(password, salt, iterations, out)
        }
        Prf::Sha1 => pbkdf2::pbkdf2::<Hmac<sha1::Sha1>>(password, salt, iterations, out),
        Prf::Sha256 => pbkdf2::pbkdf2::<Hmac<sha2::Sha256>>(password, salt, iterations, out),
    };
}

/// The reflected CRC-32 table (polynomial 0xEDB88320), for the keyfile register.
const CRC_TABLE: [u32; 256] = {
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

/// The PBKDF2 password: the password itself without keyfiles; with keyfiles, the pool of
/// `pool_len` bytes (64, or 128 for VeraCrypt passwords over 64 bytes) into which every keyfile's
/// running CRC-32 register was added, then the password bytes. Empty keyfiles are rejected by
/// the caller.
pub fn password_input(
    password: &[u8],
    keyfiles: &[Vec<u8>],
    pool_len: usize,
) -> Zeroizing<Vec<u8>> {
    if keyfiles.is_empty() {
        return Zeroizing::new(password.to_vec());
    }
    let mut pool = Zeroizing::new(vec![0u8; pool_len]);
    for keyfile in keyfiles {
        let mut reg = 0xFFFF_FFFFu32;
        let mut pos = 0;
        for &b in keyfile.iter().take(KEYFILE_MAX) {
            reg = CRC_TABLE[((reg ^ u32::from(b)) & 0xff) as usize] ^ (reg >> 8);
            for r in reg.to_be_bytes() {
                pool[pos] = pool[pos].wrapping_add(r);
                pos += 1;
            }
            if pos >= pool_len {
                pos = 0;
            }
        }
    }
    for (p, &b) in pool.iter_mut().zip(password) {
        *p = p.wrapping_add(b);
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 6070 (PBKDF2-HMAC-SHA1), and the RFC 7914 section 11 PBKDF2-HMAC-SHA256 vector.
    #[test]
    fn pbkdf2_vectors() {
        let mut out = [0u8; 20];
        derive(Prf::Sha1, 2, b"password", b"salt", &mut out);
        assert_eq!(hex(&out), "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
        derive(Prf::Sha1, 4096, b"password", b"salt", &mut out);
        assert_eq!(hex(&out), "4b007901b765489abead49d926f721d065a429c1");
        let mut out = [0u8; 64];
        derive(Prf::Sha256, 1, b"passwd", b"salt", &mut out);
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
    }

    #[test]
    fn keyfile_pool_mixes_crc_register_and_password() {
        // One keyfile of one zero byte: reg = table[0xff] ^ 0x00ffffff, added at pool[0..4].
        let pool = password_input(b"ab", &[vec![0u8]], 64);
        let reg = CRC_TABLE[0xff] ^ 0x00ff_ffff;
        let be = reg.to_be_bytes();
        assert_eq!(pool[0], be[0].wrapping_add(b'a'));
        assert_eq!(pool[1], be[1].wrapping_add(b'b'));
        assert_eq!(&pool[2..4], &be[2..4]);
        assert!(pool[4..].iter().all(|&b| b == 0));
        assert_eq!(pool.len(), 64);
        // The register equals the complement of the CRC-32 of the prefix read so far.
        assert_eq!(!reg, crc32fast::hash(&[0]));
        // Without keyfiles the password is used as is.
        assert_eq!(&password_input(b"abc", &[], 64)[..], b"abc");
    }
}
