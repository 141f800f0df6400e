//! TrueCrypt: the third-party volumes in `../shared/hw-fixtures/truecrypt` (cryptsetup's test
//! images, with their passwords and known answers in `expected.tsv`) open and decrypt to the
//! expected SHA-256; legacy CBC/LRW volumes and wrong passwords are refused; containers we
//! create open with our reader and with `cryptsetup tcryptDump`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use drivers::block_write::{WritableDevice, WriteAt};
use drivers::fs::{open_filesystem, EntryId, FileSystem, FsType};
use drivers::source::{ImageFile, IoError, MemorySource, ReadAt};
use drivers::truecrypt::{
    create, open, CreateOptions, CreatePrf, DataFill, HeaderLocation, Magic, OpenOptions, Prf,
    TrueCryptError,
};
use sha2::{Digest, Sha256};

use crate::helper;

const PASSWORD: &[u8] = b"aaaaaaaaaaaa";
const PASSWORD_HIDDEN: &[u8] = b"bbbbbbbbbbbb";
const PASSWORD_72C: &[u8] =
    b"aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffffffffffff";
const PASSWORD_PIM: &[u8] = b"cccccccccccccccccccc";

/// The shared third-party images: `STATION_SHARED_FIXTURES` or `../shared/hw-fixtures`.
fn fixtures() -> PathBuf {
    let base = std::env::var_os("STATION_SHARED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/hw-fixtures"));
    let dir = base.join("truecrypt");
    assert!(
        dir.join("expected.tsv").is_file(),
        "{dir:?}: the TrueCrypt test images are missing; set STATION_SHARED_FIXTURES to the \
         shared hw-fixtures folder"
    );
    dir
}

fn image(path: &Path) -> Arc<dyn ReadAt> {
    Arc::new(ImageFile::open(path).unwrap_or_else(|e| panic!("{e}")))
}

fn keyfiles() -> Vec<Vec<u8>> {
    ["keyfile1", "keyfile2"]
        .iter()
        .map(|k| std::fs::read(fixtures().join(k)).unwrap_or_else(|e| panic!("{k}: {e}")))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the whole view in pieces of `piece` bytes (to cover partial units too).
fn read_all(view: &dyn ReadAt, piece: usize) -> Vec<u8> {
    let mut out = vec![0u8; view.size() as usize];
    for (i, chunk) in out.chunks_mut(piece).enumerate() {
        view.read_exact_at((i * piece) as u64, chunk)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    out
}

/// One line of expected.tsv.
struct Expected {
    file: String,
    header: String,
    password_ref: String,
    kdf: String,
    cipher: String,
    magic: String,
    key_area_crc32: String,
    data_offset: u64,
    data_size: u64,
    sha256: String,
}

fn expected() -> Vec<Expected> {
    let text = std::fs::read_to_string(fixtures().join("expected.tsv"))
        .unwrap_or_else(|e| panic!("expected.tsv: {e}"));
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 10, "expected.tsv: {line}");
            Expected {
                file: f[0].into(),
                header: f[1].into(),
                password_ref: f[2].into(),
                kdf: f[3].into(),
                cipher: f[4].into(),
                magic: f[5].into(),
                key_area_crc32: f[6].into(),
                data_offset: f[7].parse().unwrap_or_else(|e| panic!("{line}: {e}")),
                data_size: f[8].parse().unwrap_or_else(|e| panic!("{line}: {e}")),
                sha256: f[9].into(),
            }
        })
        .collect()
}

/// The secret a row names: `PASSWORD`, `PASSWORD+keyfile1+keyfile2`, `PASSWORD_PIM,PIM=1234`...
fn secret(row: &Expected) -> (Vec<u8>, Vec<Vec<u8>>, Option<u32>) {
    let (words, pim) = match row.password_ref.split_once(",PIM=") {
        Some((w, p)) => (w, Some(p.parse().unwrap_or_else(|e| panic!("{p}: {e}")))),
        None => (row.password_ref.as_str(), None),
    };
    let mut parts = words.split('+');
    let password = match parts.next() {
        Some("PASSWORD") => PASSWORD,
        Some("PASSWORD_HIDDEN") => PASSWORD_HIDDEN,
        Some("PASSWORD_72C") => PASSWORD_72C,
        Some("PASSWORD_PIM") => PASSWORD_PIM,
        Some("(empty)") => b"",
        other => panic!("unknown password {other:?}"),
    };
    let keyfiles = if parts.next().is_some() {
        keyfiles()
    } else {
        Vec::new()
    };
    (password.to_vec(), keyfiles, pim)
}

/// Opens the volume a row describes and checks everything the row says; `prf_hint` restricts
/// the trial to the row's PRF.
fn check_row(row: &Expected, prf_hint: bool) {
    let (password, keyfiles, pim) = secret(row);
    let veracrypt = row.magic == "VERA";
    let prf = [
        Prf::Ripemd160,
        Prf::Sha512,
        Prf::Whirlpool,
        Prf::Sha1,
        Prf::Sha256,
    ]
    .into_iter()
    .find(|p| row.kdf.starts_with(&format!("{p}-")));
    let options = OpenOptions {
        veracrypt,
        pim,
        prf: if prf_hint { prf } else { None },
        ..OpenOptions::default()
    };
    let started = Instant::now();
    let volume = open(
        image(&fixtures().join(&row.file)),
        &password,
        &keyfiles,
        &options,
    )
    .unwrap_or_else(|e| panic!("{} ({}): {e}", row.file, row.header));
    if veracrypt {
        eprintln!(
            "{} {}: opened in {:?}",
            row.file,
            row.header,
            started.elapsed()
        );
    }
    let info = volume.info();
    let what = format!("{} {}: {info}", row.file, row.header);
    let location = match row.header.as_str() {
        "primary@0" => HeaderLocation::Primary,
        "hidden@65536" => HeaderLocation::Hidden,
        "hidden@end-1536" => HeaderLocation::HiddenLegacy,
        other => panic!("unknown header {other}"),
    };
    assert_eq!(info.header, location, "{what}");
    assert_eq!(info.hidden, location != HeaderLocation::Primary, "{what}");
    assert_eq!(
        format!("{}-{}", info.prf, info.iterations),
        row.kdf,
        "{what}"
    );
    assert_eq!(info.chain.name(), row.cipher, "{what}");
    let magic = if veracrypt {
        Magic::VeraCrypt
    } else {
        Magic::TrueCrypt
    };
    assert_eq!(info.format, magic, "{what}");
    assert_eq!(
        format!("{:08x}", info.key_area_crc32),
        row.key_area_crc32,
        "{what}"
    );
    assert_eq!(
        (info.data_offset, info.data_size),
        (row.data_offset, row.data_size),
        "{what}"
    );
    assert_eq!(volume.size(), row.data_size);
    let whole = read_all(&volume, row.data_size as usize);
    assert_eq!(sha256_hex(&whole), row.sha256, "{what}");
    // Reads that start and end inside units give the same bytes.
    let pieces = read_all(&volume, 700);
    assert!(pieces == whole, "{what}: unaligned reads differ");
}

#[test]
fn every_truecrypt_xts_fixture_opens_and_decrypts_to_its_sha256() {
    let rows: Vec<Expected> = expected()
        .into_iter()
        .filter(|r| r.magic == "TRUE")
        .collect();
    assert!(
        rows.len() >= 41,
        "expected.tsv lists {} TrueCrypt rows",
        rows.len()
    );
    for row in &rows {
        check_row(row, false);
    }
}

#[test]
#[ignore = "VeraCrypt KDFs (500000+ iterations) take a minute per image in a debug build; \
            run `cargo test --release -p station-drivers --test integration -- --ignored`"]
fn veracrypt_fixtures_open_with_veracrypt_enabled() {
    // The first image is found by the full trial (SHA-512 is VeraCrypt's first PRF); the
    // others are opened with their PRF named, as VeraCrypt's mount dialog allows, to keep the
    // run short: the keyfile pools (empty and 72-byte passwords), the hidden volume, the PIM.
    let rows: Vec<Expected> = expected()
        .into_iter()
        .filter(|r| r.magic == "VERA")
        .collect();
    assert!(
        rows.len() >= 12,
        "expected.tsv lists {} VeraCrypt rows",
        rows.len()
    );
    for (i, row) in rows.iter().enumerate() {
        check_row(row, i != 0);
    }
}

#[test]
fn the_decrypted_volume_is_a_fat_filesystem() {
    let volume = open(
        image(&fixtures().join("tc_5-sha512-xts-serpent-twofish-aes")),
        PASSWORD,
        &[],
        &OpenOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut boot = [0u8; 512];
    volume
        .read_exact_at(0, &mut boot)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&boot[3..11], b"MSDOS5.0");
    assert_eq!(&boot[510..], &[0x55, 0xaa]);
    let fs = open_filesystem(Arc::new(volume)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(fs.fs_type(), FsType::Fat12 | FsType::Fat16),
        "{:?}",
        fs.fs_type()
    );
}

#[test]
fn backup_headers_open_when_the_primary_is_wiped() {
    for (file, password, location) in [
        ("tc_5-sha512-xts-aes", PASSWORD, HeaderLocation::Backup),
        (
            "tc_4-sha512-xts-aes-hidden",
            PASSWORD_HIDDEN,
            HeaderLocation::BackupHidden,
        ),
    ] {
        let path = fixtures().join(file);
        let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let intact = open(image(&path), password, &[], &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = read_all(&intact, 4096);
        // Wipe the primary and the hidden header: only the backups are left.
        bytes[..512].fill(0);
        bytes[65_536..65_536 + 512].fill(0);
        let source: Arc<dyn ReadAt> = Arc::new(MemorySource::new(file, bytes));
        let no_backup = OpenOptions {
            backup_headers: false,
            ..OpenOptions::default()
        };
        assert!(matches!(
            open(Arc::clone(&source), password, &[], &no_backup),
            Err(TrueCryptError::NoHeaderOpened { .. })
        ));
        let volume = open(source, password, &[], &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(volume.info().header, location);
        assert_eq!(volume.info().data_offset, intact.info().data_offset);
        assert!(
            read_all(&volume, 4096) == want,
            "{file}: backup header reads differ"
        );
    }
}

#[test]
fn legacy_cbc_and_lrw_volumes_are_refused_with_what_to_do() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !(name.starts_with("tc_1-") || name.starts_with("tc_2-")) {
            continue;
        }
        seen += 1;
        let e = open(image(&path), PASSWORD, &[], &OpenOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{name}: a legacy volume opened"));
        let text = e.to_string();
        assert!(
            matches!(e, TrueCryptError::NoHeaderOpened { .. }),
            "{name}: {text}"
        );
        assert!(
            text.contains("legacy CBC or LRW mode")
                && text.contains("a new volume made with TrueCrypt 7.1a (XTS mode)"),
            "{name}: {text}"
        );
    }
    assert_eq!(seen, 28);
}

#[test]
fn a_wrong_password_fails_cleanly_after_one_full_round() {
    let path = fixtures().join("tc_5-sha512-xts-aes-hidden");
    let started = Instant::now();
    let e = open(
        image(&path),
        b"wrong password",
        &[],
        &OpenOptions::default(),
    )
    .err()
    .unwrap_or_else(|| panic!("opened with a wrong password"));
    let took = started.elapsed();
    let text = e.to_string();
    assert_eq!(
        text,
        format!(
            "{}: no TrueCrypt header opened with the password (and keyfiles) given (tried \
             primary header at byte 0, hidden-volume header at byte 65536, hidden-volume header \
             at end - 1536, backup header at end - 131072, backup hidden-volume header at end - \
             65536; PBKDF2 ripemd160 x2000, sha512 x1000, whirlpool x1000, sha1 x2000; 8 XTS \
             cipher chains); check the password and keyfiles. If the volume was made with \
             TrueCrypt 4.x or older (legacy CBC or LRW mode), Station cannot read it: copy its \
             files into a new volume made with TrueCrypt 7.1a (XTS mode)",
            path.display()
        )
    );
    assert!(!text.contains("wrong password"));
    // Keyfiles that are not the volume's fail the same way.
    assert!(matches!(
        open(
            image(&fixtures().join("tck_5-sha512-xts-aes")),
            PASSWORD,
            &[],
            &OpenOptions::default()
        ),
        Err(TrueCryptError::NoHeaderOpened { .. })
    ));
    eprintln!("one full trial round (debug build, 20 PBKDF2 runs): {took:?}");
}

/// An image that asks for page-aligned buffers, as an `O_DIRECT` block device does, and counts
/// the reads longer than one XTS unit that came in a buffer it would have had to bounce.
struct DirectLike {
    inner: Arc<dyn ReadAt>,
    bounced: AtomicUsize,
}

impl ReadAt for DirectLike {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        if buf.len() > 512 && !buf.as_ptr().addr().is_multiple_of(4096) {
            self.bounced.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn buffer_alignment(&self) -> usize {
        4096
    }
}

/// Reads into buffers at odd addresses over a source that wants aligned ones: the volume reads
/// the ciphertext into an aligned buffer of its own and decrypts out of it, and the plaintext is
/// the same, for every chain.
#[test]
fn unaligned_buffers_over_a_direct_source_read_through_an_aligned_one() {
    let rows: Vec<Expected> = expected()
        .into_iter()
        .filter(|r| r.file.starts_with("tc_5-sha512-xts-") && !r.file.ends_with("-hidden"))
        .collect();
    assert!(
        rows.len() >= 8,
        "expected.tsv lists {} tc_5 rows",
        rows.len()
    );
    for row in &rows {
        let source = Arc::new(DirectLike {
            inner: image(&fixtures().join(&row.file)),
            bounced: AtomicUsize::new(0),
        });
        let options = OpenOptions {
            prf: Some(Prf::Sha512),
            ..OpenOptions::default()
        };
        let volume = open(source.clone(), PASSWORD, &[], &options)
            .unwrap_or_else(|e| panic!("{}: {e}", row.file));
        let before = source.bounced.load(Ordering::Relaxed);
        let size = volume.size() as usize;
        // One byte in: the buffer is not page-aligned.
        let mut backing = vec![0u8; size + 4097];
        let start = 4096 - backing.as_ptr().addr() % 4096 + 1;
        let whole = &mut backing[start..start + size];
        volume
            .read_exact_at(0, whole)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sha256_hex(whole), row.sha256, "{}", row.file);
        // Pieces that start and end inside units.
        for (i, piece) in whole.chunks_mut(1300).enumerate() {
            volume
                .read_exact_at((i * 1300) as u64, piece)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(sha256_hex(whole), row.sha256, "{} in pieces", row.file);
        assert_eq!(
            source.bounced.load(Ordering::Relaxed),
            before,
            "{}: data reads into unaligned buffers",
            row.file
        );
    }
}

/// A file inside a filesystem reader, as a positional-read source.
struct FileInFs {
    fs: Arc<dyn FileSystem>,
    id: EntryId,
    size: u64,
}

impl ReadAt for FileInFs {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let n = self.fs.read(self.id, offset, buf).map_err(|e| IoError {
            device: self.describe(),
            offset,
            len: buf.len(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if n != buf.len() {
            return Err(IoError::past_end(
                self.describe(),
                offset,
                buf.len(),
                self.size,
            ));
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn describe(&self) -> String {
        "fat.img:/JOB1234.tc".into()
    }
}

#[test]
fn a_container_file_opens_through_a_filesystem_reader() {
    let row = expected()
        .into_iter()
        .find(|r| r.file == "tc_5-sha512-xts-aes-hidden" && r.header == "hidden@65536")
        .unwrap_or_else(|| panic!("row"));
    let fixture = helper::build(
        "truecrypt-in-fat.sh",
        &[fixtures().join(&row.file).to_str().unwrap_or_default()],
    );
    let fs: Arc<dyn FileSystem> = Arc::from(
        open_filesystem(image(&fixture.path("fat.img"))).unwrap_or_else(|e| panic!("{e}")),
    );
    let entry = fs
        .read_dir(fs.root())
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|e| e.name.to_bytes() == b"JOB1234.tc")
        .unwrap_or_else(|| panic!("JOB1234.tc not found"));
    let container: Arc<dyn ReadAt> = Arc::new(FileInFs {
        fs,
        id: entry.id,
        size: entry.size,
    });
    let volume = open(container, PASSWORD_HIDDEN, &[], &OpenOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(volume.info().hidden);
    assert_eq!(sha256_hex(&read_all(&volume, 1000)), row.sha256);
    assert_eq!(
        volume.describe(),
        "fat.img:/JOB1234.tc (TrueCrypt hidden volume)"
    );
}

/// A file of `size` bytes in a temporary directory, open for writing.
fn new_container(dir: &Path, size: u64) -> (PathBuf, WritableDevice) {
    let path = dir.join("JOB1234.tc");
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    file.set_len(size).unwrap_or_else(|e| panic!("{e}"));
    drop(file);
    let device = WritableDevice::open(&path).unwrap_or_else(|e| panic!("{e}"));
    (path, device)
}

#[test]
fn a_created_container_round_trips_and_cryptsetup_accepts_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let size = 1 << 20;
    let password = b"Export password 1";
    for (prf, fill, hash) in [
        (CreatePrf::Sha512, DataFill::Zeros, "sha512"),
        (CreatePrf::Ripemd160, DataFill::Random, "ripemd160"),
    ] {
        let (path, device) = new_container(dir.path(), size);
        let options = CreateOptions { prf, fill };
        let view = create(device, size, password, &[], &options, &mut rand::rng())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(view.size(), size - 262_144);
        // Plaintext written at odd offsets, across unit and chunk boundaries.
        let text: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        view.write_all_at(1000, &text)
            .unwrap_or_else(|e| panic!("{e}"));
        view.write_all_at(view.size() - 7, b"the end")
            .unwrap_or_else(|e| panic!("{e}"));
        view.flush().unwrap_or_else(|e| panic!("{e}"));
        let mut back = vec![0u8; text.len()];
        view.read_exact_at(1000, &mut back)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(back == text);
        drop(view);

        // Our reader finds what we wrote.
        let volume = open(image(&path), password, &[], &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let info = volume.info().clone();
        assert_eq!(
            (info.prf, info.chain.name().as_str(), info.header_version),
            (
                if hash == "sha512" {
                    Prf::Sha512
                } else {
                    Prf::Ripemd160
                },
                "AES",
                5
            )
        );
        assert_eq!(
            (info.data_offset, info.data_size),
            (131_072, size - 262_144)
        );
        let all = read_all(&volume, 65_536);
        assert!(all[1000..101_000] == text[..]);
        assert_eq!(&all[all.len() - 7..], b"the end");
        if fill == DataFill::Zeros {
            assert!(all[..1000].iter().all(|&b| b == 0));
            assert!(all[101_000..all.len() - 7].iter().all(|&b| b == 0));
        }
        // The raw container shows no plaintext and no zeros in its slots.
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!raw.windows(7).any(|w| w == b"the end"));
        assert!(raw[65_536..65_536 + 512].iter().any(|&b| b != 0));
        assert!(raw[raw.len() - 512..].iter().any(|&b| b != 0));

        // cryptsetup opens the primary and the backup header.
        for extra in [&[][..], &["--tcrypt-backup"][..]] {
            let (ok, out) = helper::tcrypt_dump(&path, hash, password, extra);
            assert!(ok, "cryptsetup tcryptDump {extra:?}: {out}");
            helper::assert_created_header(&out);
            assert!(
                out.contains(&format!("PBKDF2 hash:\t{hash}")) || out.contains(hash),
                "{out}"
            );
        }
        let (ok, _) = helper::tcrypt_dump(&path, hash, b"not the password", &[]);
        assert!(!ok, "cryptsetup opened our container with a wrong password");
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn create_refuses_bad_sizes_and_passwords() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = CreateOptions::default();
    let attempt = |size: u64, password: &[u8]| {
        let (_, device) = new_container(dir.path(), 1 << 20);
        create(device, size, password, &[], &options, &mut rand::rng()).err()
    };
    let e = attempt(200_000, b"pw").map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.ends_with(
            "cannot create a TrueCrypt volume: 200000 bytes: the size must be a multiple of 512 \
             and at least 299008"
        )),
        "{e:?}"
    );
    assert!(matches!(
        attempt(2 << 20, b"pw"),
        Some(TrueCryptError::Create { .. })
    ));
    assert!(matches!(
        attempt(1 << 20, "p\u{e4}ssword".as_bytes()),
        Some(TrueCryptError::Secret(_))
    ));
}
