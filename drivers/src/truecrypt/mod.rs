//! TrueCrypt 7.1a volumes and containers (and VeraCrypt's): open for import, create for export.
//!
//! [`open`] tries every PBKDF2 PRF and XTS cipher chain on every header location in parallel
//! and returns a [`Volume`]: a decrypting [`ReadAt`] view of the data area over any source (a
//! device, a partition, or a `<JOBID>.tc` file read through a filesystem reader). [`create`]
//! writes a new TrueCrypt 7.1a container (AES-XTS, header version 5, backup header) and returns
//! an [`EncryptingView`] to write the plaintext filesystem through. The format is described in
//! `shared/TRUECRYPT.md`. Passwords, keyfile pools, derived keys and key schedules are wiped
//! when dropped. Legacy CBC and LRW volumes (TrueCrypt 4.x and older) are not read.

mod create;
mod header;
mod kdf;
#[allow(unsafe_code)]
mod vaes;
mod xts;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

pub use create::{create, CreateOptions, CreatePrf, DataFill, EncryptingView, MIN_CREATE_SIZE};
pub use header::{parse_header, seal_crcs, Header, HeaderError, HeaderLocation, Magic};
pub use kdf::Prf;
pub use xts::{Chain, CipherKind};

use crate::block::AlignedBuf;
use crate::block_write::{WriteAt, WriteError};
use crate::source::{IoError, ReadAt};
use header::{AREA_LEN, HEADER_LEN, SALT_LEN};
use kdf::DERIVED_LEN;
use xts::{ChainKeys, UNIT};

/// The longest TrueCrypt password, in bytes.
pub const MAX_PASSWORD: usize = 64;
/// The longest VeraCrypt password, in bytes.
pub const MAX_VERACRYPT_PASSWORD: usize = 128;

/// Which AES-XTS code this CPU runs, for the logs and benchmarks: the VAES/AVX-512 kernel, or
/// RustCrypto's `aes` (AES-NI when the CPU has it, else constant-time software).
pub fn aes_xts_backend() -> &'static str {
    if vaes::supported() {
        "VAES/AVX-512"
    } else {
        "RustCrypto aes (AES-NI or software)"
    }
}

/// What went wrong opening or creating a volume.
#[derive(Debug, thiserror::Error)]
pub enum TrueCryptError {
    /// Reading or writing the host failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Writing the target failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The host cannot hold even a header.
    #[error("{device}: {size} bytes is too small to be a TrueCrypt volume")]
    TooSmall {
        /// The host.
        device: String,
        /// Its size in bytes.
        size: u64,
    },
    /// No header location opened with any PRF and cipher chain.
    #[error(
        "{device}: no TrueCrypt header opened with the password (and keyfiles) given (tried {tried}); \
         check the password and keyfiles. If the volume was made with TrueCrypt 4.x or older \
         (legacy CBC or LRW mode), Station cannot read it: copy its files into a new volume made \
         with TrueCrypt 7.1a (XTS mode)"
    )]
    NoHeaderOpened {
        /// The host.
        device: String,
        /// The header locations and PRFs tried, for the operator.
        tried: String,
    },
    /// A header decrypted, but describes a volume this reader cannot use.
    #[error("{device}: the {location} opened, but the volume cannot be read: {reason}")]
    Unusable {
        /// The host.
        device: String,
        /// Which header opened.
        location: HeaderLocation,
        /// Why it cannot be used.
        reason: HeaderError,
    },
    /// The password or a keyfile breaks TrueCrypt's rules (the password itself is never shown).
    #[error("{0}")]
    Secret(String),
    /// A volume cannot be created with these settings.
    #[error("{device}: cannot create a TrueCrypt volume: {what}")]
    Create {
        /// The target.
        device: String,
        /// What is wrong, and what to do.
        what: String,
    },
}

/// How to look for a header.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Also try VeraCrypt's `VERA` headers (500000+ iterations: seconds per header).
    pub veracrypt: bool,
    /// VeraCrypt personal iterations multiplier (iterations = 15000 + 1000 x PIM).
    pub pim: Option<u32>,
    /// Also try the backup headers at the end of the host (when the primary is damaged).
    pub backup_headers: bool,
    /// Only this PRF (TrueCrypt's mount dialog offers the same choice); `None` tries them all.
    pub prf: Option<Prf>,
    /// PBKDF2 threads; `None` = one per core.
    pub threads: Option<usize>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            veracrypt: false,
            pim: None,
            backup_headers: true,
            prf: None,
            threads: None,
        }
    }
}

/// What was found when a volume opened, for `stationctl inspect` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// `TRUE` (TrueCrypt) or `VERA` (VeraCrypt).
    pub format: Magic,
    /// The PBKDF2 PRF that opened the header.
    pub prf: Prf,
    /// Its iteration count.
    pub iterations: u32,
    /// The cipher chain.
    pub chain: Chain,
    /// Header format version.
    pub header_version: u16,
    /// Minimum program version recorded in the header (`0x0700` = 7.0).
    pub required_program_version: u16,
    /// Whether this is a hidden volume.
    pub hidden: bool,
    /// Which header opened.
    pub header: HeaderLocation,
    /// Byte offset of the data area in the host.
    pub data_offset: u64,
    /// Data area size in bytes.
    pub data_size: u64,
    /// The volume's sector size (the XTS data unit is 512 bytes regardless).
    pub sector_size: u32,
    /// CRC-32 of the key area, as stored (cryptsetup and tcplay show it too).
    pub key_area_crc32: u32,
}

impl std::fmt::Display for VolumeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}volume: {}, header version {} (needs {:x}.{:x}), PBKDF2-HMAC-{} x{}, {} in XTS \
             mode, {} data bytes at byte {}",
            match self.format {
                Magic::TrueCrypt => "TrueCrypt",
                Magic::VeraCrypt => "VeraCrypt",
            },
            if self.hidden { "hidden " } else { "" },
            self.header,
            self.header_version,
            self.required_program_version >> 8,
            self.required_program_version & 0xff,
            self.prf,
            self.iterations,
            self.chain,
            self.data_size,
            self.data_offset
        )
    }
}

/// A PBKDF2 setting to try.
#[derive(Debug, Clone, Copy)]
struct Kdf {
    prf: Prf,
    iterations: u32,
    magic: Magic,
}

/// TrueCrypt 7.1a's order; SHA-1 opens pre-5.0 volumes.
const TRUECRYPT_KDFS: [(Prf, u32); 4] = [
    (Prf::Ripemd160, 2000),
    (Prf::Sha512, 1000),
    (Prf::Whirlpool, 1000),
    (Prf::Sha1, 2000),
];

fn veracrypt_kdfs(pim: Option<u32>) -> Vec<(Prf, u32)> {
    let prfs = [Prf::Sha512, Prf::Whirlpool, Prf::Sha256, Prf::Ripemd160];
    match pim {
        Some(pim) if pim > 0 => {
            let iterations = 15_000u32.saturating_add(pim.saturating_mul(1000));
            prfs.iter().map(|&p| (p, iterations)).collect()
        }
        _ => vec![
            (Prf::Sha512, 500_000),
            (Prf::Whirlpool, 500_000),
            (Prf::Sha256, 500_000),
            (Prf::Ripemd160, 655_331),
        ],
    }
}

/// A decrypted volume: reads the data area of a TrueCrypt volume, decrypting XTS.
///
/// Offset 0 is the first byte of the data area. The data unit number of each 512 bytes is its
/// absolute offset in the host divided by 512, so the view works over any host.
pub struct Volume {
    source: Arc<dyn ReadAt>,
    keys: Arc<ChainKeys>,
    info: VolumeInfo,
    /// An aligned buffer reused by reads into buffers the source cannot fill directly (it only
    /// ever holds ciphertext).
    aligned: Mutex<Option<AlignedBuf>>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("source", &self.source.describe())
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Volume {
    /// What was found: PRF, chain, header, layout.
    pub fn info(&self) -> &VolumeInfo {
        &self.info
    }

    /// An encrypting view with this volume's keys over `target`, which must be the same host
    /// opened for writing.
    pub fn writer<W: WriteAt>(&self, target: W) -> EncryptingView<W> {
        EncryptingView::new(target, Arc::clone(&self.keys), self.info.clone())
    }
}

impl ReadAt for Volume {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        check_bounds(&self.describe(), &self.info, offset, buf.len())?;
        let abs = self.info.data_offset + offset;
        // Where the whole units start in `buf`: that is what the source reads into.
        let head = (UNIT - (abs % UNIT as u64) as usize) % UNIT;
        let align = self.source.buffer_alignment();
        if align > 1
            && buf.len() >= head + UNIT
            && !(buf.as_ptr().addr() + head).is_multiple_of(align)
        {
            return self.read_through_aligned(abs, head, buf);
        }
        read_decrypt(&*self.source, &self.keys, abs, buf)
    }
    fn size(&self) -> u64 {
        self.info.data_size
    }
    fn describe(&self) -> String {
        describe_volume(&self.source.describe(), &self.info)
    }
}

/// The most bytes one read puts through [`Volume`]'s aligned buffer: the block device's own
/// bounce buffer is as large, so the device sees the same requests.
const MAX_ALIGNED: usize = 8 << 20;

impl Volume {
    /// Reads for a buffer that is not aligned the way the source wants (a `Vec` handed to an
    /// `O_DIRECT` device): rather than the source reading into its bounce buffer, copying into
    /// `buf` and the decryption passing over `buf` again, the source reads straight into an
    /// aligned buffer of ours and the decryption writes `buf` from it (one pass fewer).
    /// `head` is the length of the partial unit `buf` starts with (less than `buf.len()`).
    fn read_through_aligned(&self, abs: u64, head: usize, buf: &mut [u8]) -> Result<(), IoError> {
        let unit = UNIT as u64;
        // Partial units at either end: through read_decrypt's one-unit buffer.
        let body = (buf.len() - head) / UNIT * UNIT;
        let (first, rest) = buf.split_at_mut(head);
        let (middle, last) = rest.split_at_mut(body);
        read_decrypt(&*self.source, &self.keys, abs, first)?;
        // Taken out of the mutex for the read: a second reader at the same time makes its own.
        let taken = self.aligned.lock().ok().and_then(|mut slot| slot.take());
        let want = body.min(MAX_ALIGNED);
        let mut aligned = match taken {
            Some(b) if b.len() >= want => b,
            _ => AlignedBuf::new(want),
        };
        let mut at = abs + head as u64;
        for chunk in middle.chunks_mut(MAX_ALIGNED) {
            let from = &mut aligned[..chunk.len()];
            self.source.read_exact_at(at, from)?;
            self.keys.decrypt_from(from, chunk, at / unit);
            at += chunk.len() as u64;
        }
        if let Ok(mut slot) = self.aligned.lock() {
            *slot = Some(aligned);
        }
        read_decrypt(&*self.source, &self.keys, at, last)
    }
}

fn describe_volume(host: &str, info: &VolumeInfo) -> String {
    let kind = if info.hidden {
        "hidden volume"
    } else {
        "volume"
    };
    format!("{host} (TrueCrypt {kind})")
}

fn check_bounds(device: &str, info: &VolumeInfo, offset: u64, len: usize) -> Result<(), IoError> {
    if offset
        .checked_add(len as u64)
        .is_none_or(|end| end > info.data_size)
    {
        return Err(IoError::past_end(device, offset, len, info.data_size));
    }
    Ok(())
}

/// Reads `buf` from absolute host offset `abs` and decrypts it: whole units in place, a
/// partial unit at either end through a one-unit buffer.
fn read_decrypt(
    source: &dyn ReadAt,
    keys: &ChainKeys,
    abs: u64,
    buf: &mut [u8],
) -> Result<(), IoError> {
    let unit = UNIT as u64;
    let mut pos = 0usize;
    let mut cur = abs;
    let mut one = [0u8; UNIT];
    while pos < buf.len() {
        let skip = (cur % unit) as usize;
        let left = buf.len() - pos;
        if skip == 0 && left >= UNIT {
            let whole = left - left % UNIT;
            let part = &mut buf[pos..pos + whole];
            source.read_exact_at(cur, part)?;
            keys.decrypt(part, cur / unit);
            pos += whole;
            cur += whole as u64;
        } else {
            let start = cur - skip as u64;
            source.read_exact_at(start, &mut one)?;
            keys.decrypt(&mut one, start / unit);
            let n = (UNIT - skip).min(left);
            buf[pos..pos + n].copy_from_slice(&one[skip..skip + n]);
            pos += n;
            cur += n as u64;
        }
    }
    Ok(())
}

/// One header trial: a location and a KDF.
struct Job {
    location: usize,
    kdf: Kdf,
}

/// A header that decrypted.
struct Found {
    header: Header,
    chain: Chain,
    kdf: Kdf,
}

enum Outcome {
    NotOpened,
    Opened(Box<Found>),
    Refused(HeaderError),
}

/// Derives the header key for one KDF and tries every chain on one header.
fn try_header(raw: &[u8; HEADER_LEN], kdf: Kdf, password: &[u8]) -> Outcome {
    let mut key = Zeroizing::new([0u8; DERIVED_LEN]);
    kdf::derive(
        kdf.prf,
        kdf.iterations,
        password,
        &raw[..SALT_LEN],
        &mut key[..],
    );
    let mut area = Zeroizing::new([0u8; AREA_LEN]);
    for chain in Chain::ALL {
        let Some(keys) = ChainKeys::new(chain, &key[..]) else {
            continue;
        };
        area.copy_from_slice(&raw[SALT_LEN..]);
        keys.decrypt(&mut area[..], 0);
        match parse_header(&area[..]) {
            Ok(header) if header.magic == kdf.magic => {
                return Outcome::Opened(Box::new(Found { header, chain, kdf }))
            }
            Ok(_) => {}
            Err(e) if e.is_wrong_key() => {}
            Err(e) => return Outcome::Refused(e),
        }
    }
    Outcome::NotOpened
}

/// Opens the TrueCrypt (or, with [`OpenOptions::veracrypt`], VeraCrypt) volume on `source` with
/// `password` and `keyfiles` (their contents; order does not matter).
///
/// Tries the primary header, the hidden-volume headers (at 65536, and at the end for volumes
/// of TrueCrypt 5 and older) and then the backup headers, each with every PRF and cipher chain;
/// PBKDF2 runs on all cores. The first location in that order that opens wins, so the outer
/// password opens the outer volume and the hidden password the hidden one.
///
/// # Errors
///
/// [`TrueCryptError::NoHeaderOpened`] when nothing opens (wrong password or keyfiles, not a
/// volume, or a legacy CBC/LRW volume); `Unusable` for a header that opened but describes a
/// volume we cannot read; `Secret` for a password TrueCrypt would refuse; `Io`.
pub fn open(
    source: Arc<dyn ReadAt>,
    password: &[u8],
    keyfiles: &[Vec<u8>],
    options: &OpenOptions,
) -> Result<Volume, TrueCryptError> {
    let device = source.describe();
    let host = source.size();
    check_secret(password, keyfiles, options.veracrypt)?;
    if host < HEADER_LEN as u64 {
        return Err(TrueCryptError::TooSmall { device, size: host });
    }
    let tc_password = kdf::password_input(password, keyfiles, 64);
    let vc_pool = if password.len() > MAX_PASSWORD {
        128
    } else {
        64
    };
    let vc_password = kdf::password_input(password, keyfiles, vc_pool);

    let mut kdfs: Vec<Kdf> = Vec::new();
    if password.len() <= MAX_PASSWORD {
        kdfs.extend(TRUECRYPT_KDFS.iter().map(|&(prf, iterations)| Kdf {
            prf,
            iterations,
            magic: Magic::TrueCrypt,
        }));
    }
    if options.veracrypt {
        kdfs.extend(
            veracrypt_kdfs(options.pim)
                .into_iter()
                .map(|(prf, iterations)| Kdf {
                    prf,
                    iterations,
                    magic: Magic::VeraCrypt,
                }),
        );
    }

    if let Some(prf) = options.prf {
        kdfs.retain(|k| k.prf == prf);
    }

    let mut wanted = vec![
        HeaderLocation::Primary,
        HeaderLocation::Hidden,
        HeaderLocation::HiddenLegacy,
    ];
    if options.backup_headers {
        wanted.extend([HeaderLocation::Backup, HeaderLocation::BackupHidden]);
    }
    let mut locations: Vec<(HeaderLocation, u64, Box<[u8; HEADER_LEN]>)> = Vec::new();
    for location in wanted {
        let Some(offset) = location.offset(host) else {
            continue;
        };
        if locations.iter().any(|(_, o, _)| *o == offset) {
            continue;
        }
        let mut raw = Box::new([0u8; HEADER_LEN]);
        source.read_exact_at(offset, &mut raw[..])?;
        locations.push((location, offset, raw));
    }
    let jobs: Vec<Job> = (0..locations.len())
        .flat_map(|location| kdfs.iter().map(move |&kdf| Job { location, kdf }))
        .collect();

    let threads = options
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let best = AtomicUsize::new(usize::MAX);
    let run = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            // Jobs are taken in priority order: once one succeeded, later ones cannot win.
            if i >= jobs.len() || i > best.load(Ordering::Relaxed) {
                break;
            }
            let job = &jobs[i];
            let password = match job.kdf.magic {
                Magic::TrueCrypt => &tc_password[..],
                Magic::VeraCrypt => &vc_password[..],
            };
            let outcome = try_header(&locations[job.location].2, job.kdf, password);
            if !matches!(outcome, Outcome::NotOpened) {
                best.fetch_min(i, Ordering::Relaxed);
            }
            done.push((i, outcome));
        }
        done
    };
    let mut outcomes: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(run)).collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    outcomes.retain(|(_, o)| !matches!(o, Outcome::NotOpened));
    outcomes.sort_by_key(|(i, _)| *i);
    let Some((i, outcome)) = outcomes.into_iter().next() else {
        let places: Vec<&str> = locations.iter().map(|(l, _, _)| l.name()).collect();
        let prfs: Vec<String> = kdfs
            .iter()
            .map(|k| format!("{} x{}", k.prf, k.iterations))
            .collect();
        return Err(TrueCryptError::NoHeaderOpened {
            device,
            tried: format!(
                "{}; PBKDF2 {}; 8 XTS cipher chains",
                places.join(", "),
                prfs.join(", ")
            ),
        });
    };
    let location = locations[jobs[i].location].0;
    let found = match outcome {
        Outcome::Opened(found) => found,
        Outcome::Refused(reason) => {
            return Err(TrueCryptError::Unusable {
                device,
                location,
                reason,
            })
        }
        Outcome::NotOpened => unreachable!("filtered out above"),
    };
    let unusable = |reason| TrueCryptError::Unusable {
        device: device.clone(),
        location,
        reason,
    };
    let header = &found.header;
    let (data_offset, data_size) = header.data_area(location, host).map_err(unusable)?;
    let keys = ChainKeys::new(found.chain, &header.key_area()[..])
        .ok_or_else(|| unusable(HeaderError::Corrupt("short key area".into())))?;
    Ok(Volume {
        source,
        keys: Arc::new(keys),
        aligned: Mutex::new(None),
        info: VolumeInfo {
            format: header.magic,
            prf: found.kdf.prf,
            iterations: found.kdf.iterations,
            chain: found.chain,
            header_version: header.version,
            required_program_version: header.required_program_version,
            hidden: header.is_hidden(),
            header: location,
            data_offset,
            data_size,
            sector_size: header.sector_size,
            key_area_crc32: header.key_area_crc32,
        },
    })
}

/// TrueCrypt's rules for the secret: at most 64 bytes (128 for VeraCrypt), empty only with
/// keyfiles, and no empty keyfile.
fn check_secret(
    password: &[u8],
    keyfiles: &[Vec<u8>],
    veracrypt: bool,
) -> Result<(), TrueCryptError> {
    let max = if veracrypt {
        MAX_VERACRYPT_PASSWORD
    } else {
        MAX_PASSWORD
    };
    if password.len() > max {
        return Err(TrueCryptError::Secret(format!(
            "the password is {} bytes long; TrueCrypt passwords have at most {MAX_PASSWORD} bytes \
             (VeraCrypt {MAX_VERACRYPT_PASSWORD})",
            password.len()
        )));
    }
    if password.is_empty() && keyfiles.is_empty() {
        return Err(TrueCryptError::Secret(
            "the password is empty and no keyfile was given; give the volume's password".into(),
        ));
    }
    if let Some(i) = keyfiles.iter().position(Vec::is_empty) {
        return Err(TrueCryptError::Secret(format!(
            "keyfile {} of {} is empty; TrueCrypt keyfiles hold at least one byte",
            i + 1,
            keyfiles.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    #[test]
    fn secrets_follow_truecrypt_rules_and_errors_hide_them() {
        let source: Arc<dyn ReadAt> = Arc::new(MemorySource::new("tiny.tc", vec![0; 1024]));
        let long = vec![b'x'; 65];
        let e = open(Arc::clone(&source), &long, &[], &OpenOptions::default())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("the password is 65 bytes long; TrueCrypt passwords have at most 64 bytes (VeraCrypt 128)")
        );
        let e = open(Arc::clone(&source), b"", &[], &OpenOptions::default()).err();
        assert!(matches!(e, Some(TrueCryptError::Secret(_))));
        let e = open(
            Arc::clone(&source),
            b"pw",
            &[vec![]],
            &OpenOptions::default(),
        )
        .err();
        assert!(matches!(e, Some(TrueCryptError::Secret(_))));
        let e = open(source, b"hunter2", &[], &OpenOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("tiny.tc: no TrueCrypt header opened with the password (and keyfiles) given (tried primary header at byte 0; PBKDF2 ripemd160 x2000, sha512 x1000, whirlpool x1000, sha1 x2000; 8 XTS cipher chains)"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
    }
}
