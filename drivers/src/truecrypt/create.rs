//! Creating TrueCrypt 7.1a containers, and the encrypting view export writes through.

use std::io;
use std::sync::Arc;

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::header::{build_header, NewHeader, GROUP_LEN, HEADER_LEN, SALT_LEN};
use super::kdf::{self, Prf};
use super::xts::{Chain, ChainKeys, UNIT};
use super::{
    check_bounds, check_secret, describe_volume, read_decrypt, HeaderLocation, Magic,
    TrueCryptError, VolumeInfo, MAX_PASSWORD,
};
use crate::block::AlignedBuf;
use crate::block_write::{WriteAt, WriteError};
use crate::source::{IoError, ReadAt};

/// TrueCrypt's smallest container: four 64 KiB header slots and a minimal FAT.
pub const MIN_CREATE_SIZE: u64 = 299_008;
/// Bytes encrypted and written per request.
const CHUNK: usize = 1 << 20;

/// The PBKDF2 PRF of a new container: the two that TrueCrypt 7.1a, cryptsetup and tcplay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatePrf {
    /// HMAC-RIPEMD-160 x2000, TrueCrypt's default and first try.
    Ripemd160,
    /// HMAC-SHA-512 x1000.
    Sha512,
}

impl CreatePrf {
    fn kdf(self) -> (Prf, u32) {
        match self {
            Self::Ripemd160 => (Prf::Ripemd160, 2000),
            Self::Sha512 => (Prf::Sha512, 1000),
        }
    }
}

/// What the data area holds after [`create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFill {
    /// Left as it was (quick format): the caller writes all of it, or does not care.
    Untouched,
    /// Encrypted zeros: the plaintext reads back as zeros.
    Zeros,
    /// Random bytes (TrueCrypt's full format): free space looks like ciphertext.
    Random,
}

/// Settings of a new container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// The header PRF.
    pub prf: CreatePrf,
    /// The data area's initial content.
    pub fill: DataFill,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            prf: CreatePrf::Ripemd160,
            fill: DataFill::Zeros,
        }
    }
}

/// Writes a TrueCrypt 7.1a volume (AES-XTS, header version 5, needs 7.0) over the first `size`
/// bytes of `target` (a container file made to that size, or a whole device): the primary
/// header at 0, the backup header (its own salt) at `size - 131072`, random bytes in every other
/// header slot (including the hidden-volume slots), and the data area as `options.fill` says.
/// Returns the view to write the plaintext filesystem through. The caller flushes.
///
/// `password` is 1 to 64 printable ASCII bytes (or empty with keyfiles).
///
/// # Errors
///
/// `Create` when the size is wrong (not a multiple of 512, under [`MIN_CREATE_SIZE`], or past
/// the end of the target); `Secret` for a password TrueCrypt would refuse; `Write` when the
/// target cannot be written.
pub fn create<W: WriteAt, R: CryptoRng + ?Sized>(
    target: W,
    size: u64,
    password: &[u8],
    keyfiles: &[Vec<u8>],
    options: &CreateOptions,
    rng: &mut R,
) -> Result<EncryptingView<W>, TrueCryptError> {
    let device = target.describe();
    let bad = |what: String| TrueCryptError::Create {
        device: device.clone(),
        what,
    };
    if !size.is_multiple_of(512) || size < MIN_CREATE_SIZE {
        return Err(bad(format!(
            "{size} bytes: the size must be a multiple of 512 and at least {MIN_CREATE_SIZE}"
        )));
    }
    if size > target.size() {
        return Err(bad(format!(
            "{size} bytes do not fit: the target holds {} bytes",
            target.size()
        )));
    }
    check_secret(password, keyfiles, false)?;
    if password.len() > MAX_PASSWORD || !password.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(TrueCryptError::Secret(
            "a password for a new TrueCrypt volume must be printable ASCII (so TrueCrypt on \
             Windows accepts it too)"
                .into(),
        ));
    }
    let chain = Chain::Aes;
    let mut master = Zeroizing::new([0u8; 256]);
    // OpenSSL and VeraCrypt 1.26.7 refuse an XTS key whose halves are equal.
    while master[..32] == master[32..64] {
        rng.fill_bytes(&mut master[..chain.key_len()]);
    }
    let keys = ChainKeys::new(chain, &master[..])
        .ok_or_else(|| bad("the master key is too short".into()))?;
    let data_size = size - 2 * GROUP_LEN;
    let area = build_header(&NewHeader {
        volume_size: data_size,
        data_start: GROUP_LEN,
        key_area: &master[..chain.key_len()],
    });
    let key_area_crc32 = crc32fast::hash(&master[..]);
    let (prf, iterations) = options.prf.kdf();
    let secret = kdf::password_input(password, keyfiles, 64);

    // The data area first: a crash leaves no header pointing at unwritten data.
    let view = EncryptingView::new(
        target,
        Arc::new(keys),
        VolumeInfo {
            format: Magic::TrueCrypt,
            prf,
            iterations,
            chain,
            header_version: 5,
            required_program_version: 0x0700,
            hidden: false,
            header: HeaderLocation::Primary,
            data_offset: GROUP_LEN,
            data_size,
            sector_size: 512,
            key_area_crc32,
        },
    );
    match options.fill {
        DataFill::Untouched => {}
        DataFill::Zeros => view.fill_zeros()?,
        DataFill::Random => {
            let mut buf = AlignedBuf::new(CHUNK);
            let mut at = GROUP_LEN;
            while at < GROUP_LEN + data_size {
                let n = CHUNK.min((GROUP_LEN + data_size - at) as usize);
                rng.fill_bytes(&mut buf[..n]);
                view.target.write_all_at(at, &buf[..n])?;
                at += n as u64;
            }
        }
    }
    for group_start in [0, size - GROUP_LEN] {
        let mut group = AlignedBuf::new(GROUP_LEN as usize);
        rng.fill_bytes(&mut group[..]);
        let mut header_key = Zeroizing::new([0u8; 64]);
        kdf::derive(
            prf,
            iterations,
            &secret,
            &group[..SALT_LEN],
            &mut header_key[..],
        );
        let header_keys = ChainKeys::new(chain, &header_key[..])
            .ok_or_else(|| bad("the header key is too short".into()))?;
        group[SALT_LEN..HEADER_LEN].copy_from_slice(&area[..]);
        header_keys.encrypt(&mut group[SALT_LEN..HEADER_LEN], 0);
        view.target.write_all_at(group_start, &group[..])?;
    }
    Ok(view)
}

/// A read-write view of a volume's data area: writes are encrypted with XTS, reads decrypted.
///
/// Writes of whole 512-byte units at unit boundaries go straight through; a partial unit is
/// read, decrypted, patched and rewritten, so two threads must not write the same unit at once.
pub struct EncryptingView<W> {
    target: W,
    keys: Arc<ChainKeys>,
    info: VolumeInfo,
}

impl<W: WriteAt> std::fmt::Debug for EncryptingView<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptingView")
            .field("target", &self.target.describe())
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn write_error(e: IoError) -> WriteError {
    WriteError::Write {
        device: e.device,
        offset: e.offset,
        len: e.len,
        source: e.source,
    }
}

impl<W: WriteAt> EncryptingView<W> {
    pub(super) fn new(target: W, keys: Arc<ChainKeys>, info: VolumeInfo) -> Self {
        Self { target, keys, info }
    }

    /// The volume's settings and layout.
    pub fn info(&self) -> &VolumeInfo {
        &self.info
    }

    /// The target, back.
    pub fn into_inner(self) -> W {
        self.target
    }

    /// Writes encrypted zeros over the whole data area.
    fn fill_zeros(&self) -> Result<(), WriteError> {
        let zeros = vec![0u8; CHUNK];
        let mut at = 0;
        while at < self.info.data_size {
            let n = CHUNK.min((self.info.data_size - at) as usize);
            self.write_all_at(at, &zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// Encrypts and writes one whole unit-aligned run at absolute host offset `abs`.
    fn write_units(&self, abs: u64, plain: &[u8], buf: &mut AlignedBuf) -> Result<(), WriteError> {
        let out = &mut buf[..plain.len()];
        out.copy_from_slice(plain);
        self.keys.encrypt(out, abs / UNIT as u64);
        self.target.write_all_at(abs, out)
    }
}

impl<W: WriteAt> ReadAt for EncryptingView<W> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        check_bounds(&self.describe(), &self.info, offset, buf.len())?;
        read_decrypt(
            &self.target,
            &self.keys,
            self.info.data_offset + offset,
            buf,
        )
    }
    fn size(&self) -> u64 {
        self.info.data_size
    }
    fn describe(&self) -> String {
        describe_volume(&self.target.describe(), &self.info)
    }
}

impl<W: WriteAt> WriteAt for EncryptingView<W> {
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> Result<(), WriteError> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.info.data_size)
        {
            return Err(WriteError::Write {
                device: self.describe(),
                offset,
                len: buf.len(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the volume ends at byte {}", self.info.data_size),
                ),
            });
        }
        let unit = UNIT as u64;
        let mut scratch = AlignedBuf::new(CHUNK.min(buf.len().next_multiple_of(UNIT)).max(UNIT));
        let mut pos = 0usize;
        let mut cur = self.info.data_offset + offset;
        while pos < buf.len() {
            let skip = (cur % unit) as usize;
            let left = buf.len() - pos;
            if skip == 0 && left >= UNIT {
                let n = (left - left % UNIT).min(CHUNK);
                self.write_units(cur, &buf[pos..pos + n], &mut scratch)?;
                pos += n;
                cur += n as u64;
            } else {
                // A partial unit: read, decrypt, patch, encrypt, write.
                let start = cur - skip as u64;
                let one = &mut scratch[..UNIT];
                self.target.read_exact_at(start, one).map_err(write_error)?;
                self.keys.decrypt(one, start / unit);
                let n = (UNIT - skip).min(left);
                one[skip..skip + n].copy_from_slice(&buf[pos..pos + n]);
                self.keys.encrypt(one, start / unit);
                self.target.write_all_at(start, one)?;
                pos += n;
                cur += n as u64;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), WriteError> {
        self.target.flush()
    }
}
