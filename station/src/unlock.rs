//! Opening an encrypted import device, by the guide's rules ("Using TrueCrypt Encryption for
//! Import to Amazon S3"): with `trueCryptPassword` in the manifest, the device (the whole disk,
//! or its one partition) is a TrueCrypt volume, or the filesystem on it holds one container
//! named `<JOBID>.tc`. Anything else (no volume and no container, several containers, several
//! partitions, a password that opens nothing) means no import: the device is erased and
//! returned, and the job ends `UnsupportedFileFormat`.

use std::path::Path;
use std::sync::Arc;

use drivers::fs::file_source::FileSource;
use drivers::fs::{open_filesystem, EntryKind};
use drivers::partition::Scheme;
use drivers::source::ReadAt;
use drivers::truecrypt::{self, OpenOptions, TrueCryptError};

use crate::inspect::inspect;

/// Why an encrypted device cannot be imported. Each message names the device and what the
/// customer should have sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnlockError {
    /// The device has several partitions.
    #[error("{device}: {count} partitions; a TrueCrypt import device must hold one partition (or none) with the volume or the container")]
    Partitions {
        /// The device.
        device: String,
        /// How many.
        count: usize,
    },
    /// Neither a volume the password opens nor a `<JOBID>.tc` container.
    #[error("{why}; and there is no container {expected} on {device} ({found})")]
    NotEncrypted {
        /// The device.
        device: String,
        /// Why the device itself is not a volume the password opens.
        why: String,
        /// `<JOBID>.tc`.
        expected: String,
        /// What was found instead.
        found: String,
    },
    /// More than one container.
    #[error("{device}: {count} TrueCrypt containers ({names}); the device must hold exactly one, named {expected}")]
    Containers {
        /// The device.
        device: String,
        /// How many.
        count: usize,
        /// Their names.
        names: String,
        /// `<JOBID>.tc`.
        expected: String,
    },
    /// The container is there but the password does not open it.
    #[error("{container}: the manifest's trueCryptPassword does not open it ({why})")]
    WrongPassword {
        /// The container.
        container: String,
        /// What the reader said.
        why: String,
    },
    /// The device could not be read.
    #[error("{0}")]
    Unreadable(String),
}

/// The decrypted view of an import device, and how it was found.
pub struct Unlocked {
    /// The plaintext volume: a filesystem reader opens it.
    pub source: Arc<dyn ReadAt>,
    /// `TrueCrypt volume on …` or `container …/JOBID.tc`, for the operator.
    pub what: String,
    /// What the header says: PRF, cipher chain, version, layout.
    pub info: truecrypt::VolumeInfo,
}

/// Which container file may hold the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container<'a> {
    /// Only `<JOBID>.tc` (an import).
    Job(&'a str),
    /// The one `.tc` file in the root, whatever its name (`stationctl inspect`).
    Any,
}

/// Opens `devnode` for job `job_id` with `password` (see the module's rules).
///
/// # Errors
///
/// [`UnlockError`], one variant per rule of the guide.
pub fn open_encrypted(
    devnode: &Path,
    job_id: &str,
    password: &[u8],
) -> Result<Unlocked, UnlockError> {
    open_volume(devnode, Container::Job(job_id), password)
}

/// Opens the TrueCrypt volume on `devnode` (whole device, its one partition, or the container
/// `container` allows) with `password`.
///
/// # Errors
///
/// As [`open_encrypted`].
pub fn open_volume(
    devnode: &Path,
    container: Container<'_>,
    password: &[u8],
) -> Result<Unlocked, UnlockError> {
    let inspected = inspect(devnode).map_err(|e| UnlockError::Unreadable(e.to_string()))?;
    let device: Arc<dyn ReadAt> = inspected.device.clone();
    let name = device.describe();
    let host: Arc<dyn ReadAt> = if inspected.table.scheme == Scheme::None {
        device
    } else {
        match inspected.partitions.as_slice() {
            [one] => Arc::new(
                inspected
                    .table
                    .slice(device, one.partition.number)
                    .map_err(|e| UnlockError::Unreadable(e.to_string()))?,
            ),
            several => {
                return Err(UnlockError::Partitions {
                    device: name,
                    count: several.len(),
                })
            }
        }
    };
    let options = OpenOptions::default();
    let not_volume = match truecrypt::open(Arc::clone(&host), password, &[], &options) {
        Ok(volume) => {
            let what = format!("TrueCrypt volume on {}", host.describe());
            return Ok(Unlocked {
                info: volume.info().clone(),
                source: Arc::new(volume),
                what,
            });
        }
        Err(e @ (TrueCryptError::NoHeaderOpened { .. } | TrueCryptError::TooSmall { .. })) => {
            e.to_string()
        }
        Err(e) => return Err(UnlockError::Unreadable(e.to_string())),
    };
    let expected = match container {
        Container::Job(job_id) => format!("{job_id}.tc"),
        Container::Any => "(a .tc file)".to_owned(),
    };
    let fs = match open_filesystem(Arc::clone(&host)) {
        Ok(fs) => Arc::from(fs),
        Err(e) => {
            return Err(UnlockError::NotEncrypted {
                device: name,
                why: not_volume,
                expected,
                found: format!("no filesystem either: {e}"),
            })
        }
    };
    let fs: Arc<dyn drivers::fs::FileSystem> = fs;
    let entries = fs
        .read_dir(fs.root())
        .map_err(|e| UnlockError::Unreadable(e.to_string()))?;
    let containers: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .filter_map(|e| Some((e.name.to_utf8()?, e)))
        .filter(|(n, _)| n.to_ascii_lowercase().ends_with(".tc"))
        .collect();
    let (file, entry) = match containers.as_slice() {
        [] => {
            return Err(UnlockError::NotEncrypted {
                device: name,
                why: not_volume,
                expected,
                found: "no .tc file in the root directory".into(),
            })
        }
        [(file, entry)] => (file.clone(), *entry),
        several => {
            return Err(UnlockError::Containers {
                device: name,
                count: several.len(),
                names: several
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                expected,
            })
        }
    };
    if matches!(container, Container::Job(_)) && file != expected {
        return Err(UnlockError::NotEncrypted {
            device: name,
            why: not_volume,
            expected,
            found: format!("the container is named {file}"),
        });
    }
    let container = format!("{name}:/{file}");
    let source = Arc::new(FileSource::new(fs, entry.id, entry.size, container.clone()));
    match truecrypt::open(source, password, &[], &options) {
        Ok(volume) => Ok(Unlocked {
            info: volume.info().clone(),
            source: Arc::new(volume),
            what: format!("container {container}"),
        }),
        Err(e) => Err(UnlockError::WrongPassword {
            container,
            why: e.to_string(),
        }),
    }
}

/// The `<JOBID>` of every `<JOBID>.tc` in the root of the device's filesystem (the job a
/// container device belongs to is in its file name; its SIGNATURE is inside).
pub fn container_jobs(devnode: &Path) -> Vec<String> {
    let Ok(inspected) = inspect(devnode) else {
        return Vec::new();
    };
    let Ok(source) = inspected.select(None) else {
        return Vec::new();
    };
    let Ok(fs) = open_filesystem(source) else {
        return Vec::new();
    };
    let Ok(entries) = fs.read_dir(fs.root()) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| e.name.to_utf8())
        .filter_map(|n| n.strip_suffix(".tc").map(str::to_owned))
        .filter(|stem| crate::job::is_job_id(stem))
        .collect()
}
