//! The writable filesystem an export writes into: format the customer's device, mount it, and
//! (with a TrueCrypt password) put a container on it whose plaintext holds a filesystem of the
//! same kind. [`ExportVolume::root`] is the directory the export pipeline writes files under
//! with `std::fs`; [`ExportVolume::finish`] syncs and takes every layer down again.
//!
//! Exports write a filesystem we create ourselves, so unlike imports (which only ever read
//! customer media in userspace) the kernel or FUSE mounts it. The layers, bottom up:
//!
//! ```text
//! device (/dev/sdX, or an image file in tests)
//!   -> [loop device, ext4 on an image file only]   losetup --find --show
//!   -> ext4 (mkfs.ext4, kernel mount)  |  NTFS (mkntfs, ntfs-3g on the file or device)
//!   -> with a password: <JOBID>.tc, a TrueCrypt 7.1a container file (our truecrypt::create)
//!        -> its plaintext as one file in a FUSE mount (fuser, served by a thread of ours)
//!        -> loop device -> ext4 (kernel)  |  NTFS (ntfs-3g on the loop device: fuseblk)
//!   -> root(): where files go
//! ```
//!
//! - **Formatting.** The filesystem covers the whole device: no partition table (a customer's
//!   machine mounts a partitionless ("superfloppy") disk; Windows shows it as one volume).
//!   ext4: `mkfs.ext4 -F -q -b 4096 -I 256 -m 0 -E lazy_itable_init=0,lazy_journal_init=0,
//!   nodiscard`: 4 KiB blocks whatever the size (so [`ExportVolume::max_file_size`] is 16 TiB
//!   less 4 KiB even on a small device), 256-byte inodes (times past 2038), no blocks reserved
//!   for root (the disk is the customer's), inode tables and journal zeroed now so the
//!   kernel's lazy init does not compete with the export, and no discard (a container's
//!   plaintext cannot discard). NTFS: `mkntfs -F -Q -q` (quick: no zeroing; NTFS never reads
//!   free space). Every external tool runs with [`Command`]; its stderr goes into the error.
//! - **Mounting.** ext4 through the kernel, on a loop device when the device is an image
//!   file. NTFS through ntfs-3g (FUSE), which opens a file or a device itself (the container's
//!   plaintext still goes through a loop device, whose page cache gathers ntfs-3g's many
//!   small metadata rewrites). ntfs-3g runs in the foreground (`-o no_detach`) as our child,
//!   with its stderr in a log file under `work_dir`, so teardown can wait for the process to
//!   exit: only then is everything it cached on the device (an ntfs-3g mount on a file is a
//!   plain `fuse` mount, whose `umount` does not wait for it). A block device that is mounted
//!   or held is refused before anything is written (`mkntfs -F` would format it anyway).
//! - **Container.** `<JOBID>.tc` is made as large as the free space allows, less a margin of
//!   free/1024 clamped to 8 MiB..1 GiB (the container file's own metadata: ext4 extent index
//!   blocks, under 2 MiB for a 16 TiB file; NTFS runlists and MFT records), rounded down to
//!   4 KiB and capped at the outer filesystem's largest file. It is preallocated with
//!   `fallocate` where the filesystem can (ext4), else extended sparse (ntfs-3g). The data area
//!   is left as it is ([`DataFill::Untouched`], TrueCrypt's quick format): encrypted zeros or
//!   random bytes would write the whole device once before the export can start (about 11
//!   hours for 8 TB at 200 MB/s). The price: unwritten parts of the container read back as
//!   zeros in the raw file, so someone holding the disk sees how much of the container is in
//!   use (not what). mkfs does not rely on zeroed space (ext4's tables are zeroed by the
//!   options above). The header uses HMAC-RIPEMD-160 (TrueCrypt's default and first try) and
//!   AES-XTS. The container file is written through the page cache ([`BufferedFile`]):
//!   ntfs-3g may refuse `O_DIRECT`, and the cache turns the many small writes into large ones.
//! - **FUSE.** The plaintext is one file in a FUSE mount served on fuser's background thread
//!   (`export_fs/plaintext.rs`): reads decrypt, writes encrypt, `fsync`/`flush` make the
//!   container file durable. Direct I/O on that file keeps no second copy of the plaintext in
//!   the page cache, and the thread marks itself an I/O flusher. Nothing deadlocks because
//!   the server thread only ever touches the container file on the outer filesystem, never
//!   its own mount or the inner one, and the caller's thread never holds anything the server
//!   needs.
//! - **Teardown** ([`ExportVolume::finish`]), strictly in reverse: unmount the inner
//!   filesystem (kernel: `umount` writes everything through the loop device; ntfs-3g: `umount`
//!   and wait for the process to exit), `losetup -d` and wait until the kernel has let go of
//!   the backing file, unmount the FUSE plaintext and join its thread, report any I/O error it
//!   answered, flush the container file, unmount the outer filesystem the same way, detach its
//!   loop device, remove our directories and `fsync` the device. After a failed step the rest
//!   is taken down lazily (as on drop) and every failure is reported. Dropping an
//!   [`ExportVolume`] without `finish` unmounts lazily and detaches, never waits long and
//!   never panics; data may then not be complete on the device.
//!
//! Fragile: everything here needs root, `/dev/fuse` and loop devices. `umount` of a busy
//! mount (a file still open under [`ExportVolume::root`]) fails after a short wait; close
//! files first.

mod file;
mod plaintext;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::block_write::{BufferedFile, WriteAt};
use crate::truecrypt::{self, CreateOptions, CreatePrf, DataFill, TrueCryptError, MAX_PASSWORD};
pub use file::ExportFile;
use plaintext::{FirstError, View};

/// The largest file on ext4 with 4 KiB blocks (extents): 2^32 blocks less one.
const EXT4_MAX_FILE: u64 = (1 << 44) - 4096;
/// The smallest container worth making (and formatting).
const MIN_CONTAINER: u64 = 8 << 20;
const MIN_MARGIN: u64 = 8 << 20;
const MAX_MARGIN: u64 = 1 << 30;
/// The longest ext4 label, in bytes.
const EXT4_MAX_LABEL: usize = 16;
/// The longest NTFS label, in UTF-16 units.
const NTFS_MAX_LABEL: usize = 128;

/// How long ntfs-3g may take to show up as mounted.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a busy mount or loop device is retried (udev's probes hold them briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long ntfs-3g may take to write its caches and exit after `umount`.
const EXIT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a dropped volume waits for ntfs-3g to exit.
const DROP_EXIT_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// A filesystem kind an export can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFsKind {
    /// ext4, mounted by the kernel.
    Ext4,
    /// NTFS, mounted by ntfs-3g.
    Ntfs,
}

impl fmt::Display for ExportFsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ext4 => "ext4",
            Self::Ntfs => "NTFS",
        })
    }
}

/// The TrueCrypt container of an export.
#[derive(Clone, Copy)]
pub struct ContainerSpec<'a> {
    /// The container's file name on the outer filesystem (`<JOBID>.tc`).
    pub file_name: &'a str,
    /// The password: 1 to 64 printable ASCII bytes. Never copied, logged or shown.
    pub password: &'a [u8],
}

impl fmt::Debug for ContainerSpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("file_name", &self.file_name)
            .finish_non_exhaustive()
    }
}

/// Which layer an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Checking the arguments, before anything is written.
    Check,
    /// mkfs.ext4 or mkntfs.
    Format,
    /// Attaching a loop device.
    Loop,
    /// Mounting (kernel or ntfs-3g).
    Mount,
    /// Creating or flushing the TrueCrypt container.
    Container,
    /// Serving the container's plaintext through FUSE.
    Fuse,
    /// Unmounting.
    Unmount,
    /// Detaching a loop device.
    Detach,
    /// The final sync of the device.
    Sync,
}

impl Step {
    /// What an operator can do about a failure in this step.
    fn advice(self) -> &'static str {
        match self {
            Self::Check => "fix the job's settings",
            Self::Format => {
                "check that the device is writable and not mounted or held, and that e2fsprogs \
                 and ntfs-3g are installed (scripts/setup)"
            }
            Self::Loop | Self::Detach => {
                "check `losetup -a` and that loop devices are available (modprobe loop)"
            }
            Self::Mount => {
                "check the kernel log (dmesg), that nothing is mounted there already, and that \
                 /dev/fuse and ntfs-3g are available"
            }
            Self::Container => "check the free space and health of the device",
            Self::Fuse => "check that /dev/fuse exists and the fuse module is loaded",
            Self::Unmount => {
                "close every file under the mount point (fuser -m shows who holds it) and \
                 unmount it by hand; the device may not hold all data"
            }
            Self::Sync => "the device may not hold all data: check it and export again",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Check => "check",
            Self::Format => "format",
            Self::Loop => "loop",
            Self::Mount => "mount",
            Self::Container => "container",
            Self::Fuse => "fuse",
            Self::Unmount => "unmount",
            Self::Detach => "detach",
            Self::Sync => "sync",
        })
    }
}

/// Why an export filesystem could not be made or taken down. Every message names the device
/// or file, the step, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExportFsError {
    /// A setting is refused before anything is written.
    #[error("{target}: {step}: {what}; {}", .step.advice())]
    Invalid {
        /// Always [`Step::Check`].
        step: Step,
        /// The device (or the container name).
        target: String,
        /// What is wrong.
        what: String,
    },
    /// An external tool failed.
    #[error("{target}: {step}: `{command}` {outcome}; {}", .step.advice())]
    Tool {
        /// The layer.
        step: Step,
        /// The device, file or mount point it worked on.
        target: String,
        /// The command line.
        command: String,
        /// Its exit status and stderr, or why it did not start.
        outcome: String,
    },
    /// A system call failed.
    #[error("{target}: {step}: cannot {what}: {source}; {}", .step.advice())]
    Io {
        /// The layer.
        step: Step,
        /// The device, file or mount point.
        target: String,
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Something we wait for did not happen in time.
    #[error("{target}: {step}: {what} (waited {}s); {}", .waited.as_secs(), .step.advice())]
    Timeout {
        /// The layer.
        step: Step,
        /// The device, file or mount point.
        target: String,
        /// What did not happen.
        what: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Creating or writing the container failed.
    #[error("{target}: container: {source}; {}", Step::Container.advice())]
    Container {
        /// The container file.
        target: String,
        /// What the TrueCrypt layer said (it never shows the password).
        source: TrueCryptError,
    },
    /// The formatted device has no room for a container.
    #[error(
        "{target}: container: only {free} bytes are free on the formatted device, a container \
         needs at least {needed}; use a larger device"
    )]
    NoRoom {
        /// The container file.
        target: String,
        /// Free bytes on the outer filesystem.
        free: u64,
        /// Bytes needed (container and margin).
        needed: u64,
    },
    /// The plaintext server answered a read or write with EIO: the inner filesystem may be
    /// incomplete.
    #[error(
        "{target}: fuse: the container's plaintext could not be read or written ({first}); \
         the exported files in it may be incomplete: check the device and export again"
    )]
    Plaintext {
        /// The container file.
        target: String,
        /// The first error.
        first: String,
    },
    /// Several teardown steps failed (each one is listed).
    #[error("{} teardown steps failed: {}", .0.len(), join(.0))]
    Teardown(Vec<ExportFsError>),
}

fn join(errors: &[ExportFsError]) -> String {
    errors
        .iter()
        .enumerate()
        .map(|(i, e)| format!("({}) {e}", i + 1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One layer, torn down in the reverse of the order it was set up.
enum Layer {
    /// A directory we made (the work directory, a mount point): removed with `rmdir`.
    Dir(PathBuf),
    /// A log file we made.
    File(PathBuf),
    /// The device, synced last.
    Device(PathBuf),
    /// A loop device over a file.
    Loop { device: PathBuf, backing: PathBuf },
    /// A kernel mount.
    Kernel { dir: PathBuf, source: PathBuf },
    /// An ntfs-3g process in the foreground, and the file it logs to.
    Ntfs3g {
        dir: PathBuf,
        source: PathBuf,
        child: Child,
        log: PathBuf,
    },
    /// The FUSE server of a container's plaintext.
    Plaintext {
        dir: PathBuf,
        container: PathBuf,
        session: Option<fuser::BackgroundSession>,
        view: Arc<View>,
        errors: Arc<FirstError>,
    },
}

impl Layer {
    /// Takes the layer down, waiting for everything to reach the layer below.
    fn close(&mut self) -> Result<(), ExportFsError> {
        match self {
            Self::Dir(dir) => std::fs::remove_dir(&*dir).map_err(|source| ExportFsError::Io {
                step: Step::Unmount,
                target: dir.display().to_string(),
                what: "remove the directory".into(),
                source,
            }),
            Self::File(file) => match std::fs::remove_file(&*file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ExportFsError::Io {
                    step: Step::Unmount,
                    target: file.display().to_string(),
                    what: "remove the log file".into(),
                    source: e,
                }),
                _ => Ok(()),
            },
            Self::Device(device) => {
                let fail = |source| ExportFsError::Io {
                    step: Step::Sync,
                    target: device.display().to_string(),
                    what: "sync the device".into(),
                    source,
                };
                File::open(&*device)
                    .and_then(|f| f.sync_all())
                    .map_err(fail)
            }
            Self::Loop { device, backing } => detach(device, backing),
            Self::Kernel { dir, source } => unmount(dir, source),
            Self::Ntfs3g {
                dir,
                source,
                child,
                log,
            } => {
                unmount(dir, source)?;
                wait_exit(child, source, log)
            }
            Self::Plaintext {
                dir,
                container,
                session,
                view,
                errors,
            } => {
                unmount(dir, container)?;
                let target = container.display().to_string();
                let stopped = session.take().map_or(Ok(()), |session| {
                    session.join().map_err(|source| ExportFsError::Io {
                        step: Step::Fuse,
                        target: target.clone(),
                        what: "stop the plaintext server".into(),
                        source,
                    })
                });
                // Flushed whatever else failed: what did reach the container should stay.
                let flushed = view.flush().map_err(|e| ExportFsError::Container {
                    target: target.clone(),
                    source: e.into(),
                });
                if let Some(first) = errors.get() {
                    return Err(ExportFsError::Plaintext { target, first });
                }
                stopped.and(flushed)
            }
        }
    }

    /// Takes the layer down without waiting: lazy unmount, detach. Never fails.
    fn abandon(&mut self) {
        match self {
            Self::Dir(dir) => {
                let _ = std::fs::remove_dir(&*dir);
            }
            Self::File(file) => {
                let _ = std::fs::remove_file(&*file);
            }
            Self::Device(_) => {}
            Self::Loop { device, .. } => {
                let _ = quiet("losetup", &[OsStr::new("-d"), device.as_os_str()]);
            }
            Self::Kernel { dir, .. } => {
                let _ = quiet("umount", &[OsStr::new("-l"), dir.as_os_str()]);
            }
            Self::Ntfs3g { dir, child, .. } => {
                let _ = quiet("umount", &[OsStr::new("-l"), dir.as_os_str()]);
                let deadline = Instant::now() + DROP_EXIT_WAIT;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(POLL);
                }
            }
            Self::Plaintext { dir, session, .. } => {
                let _ = quiet("umount", &[OsStr::new("-l"), dir.as_os_str()]);
                // Not joined: the thread serves the loop device until the kernel lets go.
                drop(session.take());
            }
        }
    }
}

/// A freshly formatted, mounted, writable export filesystem (optionally inside a container).
pub struct ExportVolume {
    root: PathBuf,
    kind: ExportFsKind,
    max_file_size: u64,
    /// Set up in this order; taken down from the end.
    layers: Vec<Layer>,
}

impl fmt::Debug for ExportVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportVolume")
            .field("root", &self.root)
            .field("kind", &self.kind)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl ExportVolume {
    /// Formats `device` (a block device, or a regular image file for tests) with `kind` and
    /// `label`, mounts it read-write on a directory under `work_dir`; with `container`,
    /// creates the container file on it (as large as the free space allows, less a small
    /// margin), formats the container's plaintext with `kind` and mounts that. `root()` is
    /// then where files go. Everything on the device is lost.
    ///
    /// # Errors
    ///
    /// [`ExportFsError::Invalid`] for a bad label, container name or password (nothing is
    /// written then); otherwise the error of the first layer that failed, after every layer
    /// already set up has been taken down again.
    pub fn create(
        device: &Path,
        kind: ExportFsKind,
        label: &str,
        container: Option<ContainerSpec<'_>>,
        work_dir: &Path,
    ) -> Result<Self, ExportFsError> {
        check_label(device, kind, label)?;
        if let Some(spec) = &container {
            check_container(spec)?;
        }
        let file_type = std::fs::metadata(device)
            .map_err(|source| ExportFsError::Io {
                step: Step::Check,
                target: device.display().to_string(),
                what: "examine the device".into(),
                source,
            })?
            .file_type();
        if !file_type.is_block_device() && !file_type.is_file() {
            return Err(ExportFsError::Invalid {
                step: Step::Check,
                target: device.display().to_string(),
                what: "neither a block device nor a regular file".into(),
            });
        }
        if file_type.is_block_device() {
            check_not_in_use(device)?;
        }
        let mut volume = Self {
            root: PathBuf::new(),
            kind,
            max_file_size: 0,
            layers: vec![Layer::Device(device.to_owned())],
        };
        match volume.build(device, label, container, work_dir) {
            Ok(()) => Ok(volume),
            Err(e) => {
                // The first error is the one to act on; teardown errors would only follow it.
                let _ = volume.teardown(true);
                Err(e)
            }
        }
    }

    fn build(
        &mut self,
        device: &Path,
        label: &str,
        container: Option<ContainerSpec<'_>>,
        work_dir: &Path,
    ) -> Result<(), ExportFsError> {
        let base = self.make_work_dir(work_dir)?;
        let outer = self.format_and_mount(device, false, label, &base, "outer")?;
        let Some(spec) = container else {
            self.set_root(outer)?;
            return Ok(());
        };
        let container = outer.join(spec.file_name);
        let outer_max = self.filesystem_max_file(&outer)?;
        let view = Arc::new(create_container(&container, &outer, outer_max, spec)?);
        let dir = base.join("plaintext");
        self.make_dir(&dir)?;
        let errors = Arc::new(FirstError::default());
        let session = plaintext::serve(Arc::clone(&view), Arc::clone(&errors), &dir, &container)
            .map_err(|source| ExportFsError::Io {
                step: Step::Fuse,
                target: container.display().to_string(),
                what: format!("serve the plaintext through FUSE on {}", dir.display()),
                source,
            })?;
        self.layers.push(Layer::Plaintext {
            dir: dir.clone(),
            container,
            session: Some(session),
            view,
            errors,
        });
        let inner =
            self.format_and_mount(&dir.join(plaintext::FILE_NAME), true, label, &base, "inner")?;
        self.set_root(inner)
    }

    fn set_root(&mut self, root: PathBuf) -> Result<(), ExportFsError> {
        self.max_file_size = self.filesystem_max_file(&root)?;
        self.root = root;
        Ok(())
    }

    /// The largest file the filesystem mounted on `dir` holds.
    fn filesystem_max_file(&self, dir: &Path) -> Result<u64, ExportFsError> {
        Ok(match self.kind {
            ExportFsKind::Ext4 => EXT4_MAX_FILE,
            // Measured on ntfs-3g 2022.10.3: a write may end at 2^63 less one cluster, and
            // ntfs-3g reports the cluster size as the block size.
            ExportFsKind::Ntfs => {
                let cluster = statvfs(dir, Step::Mount)?.f_bsize.max(512);
                (1u64 << 63) - cluster
            }
        })
    }

    /// `work_dir/export-<pid>-<n>`, made fresh, holding our mount points and logs.
    fn make_work_dir(&mut self, work_dir: &Path) -> Result<PathBuf, ExportFsError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let fail = |source| ExportFsError::Io {
            step: Step::Mount,
            target: work_dir.display().to_string(),
            what: "make the work directory".into(),
            source,
        };
        std::fs::create_dir_all(work_dir).map_err(fail)?;
        let work_dir = work_dir.canonicalize().map_err(fail)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = work_dir.join(format!("export-{}-{n}", std::process::id()));
        self.make_dir(&base)?;
        Ok(base)
    }

    fn make_dir(&mut self, dir: &Path) -> Result<(), ExportFsError> {
        std::fs::create_dir(dir).map_err(|source| ExportFsError::Io {
            step: Step::Mount,
            target: dir.display().to_string(),
            what: "make the directory".into(),
            source,
        })?;
        self.layers.push(Layer::Dir(dir.to_owned()));
        Ok(())
    }

    /// Formats `source` (a device or file) and mounts it on `base/name`; returns the mount
    /// point. With `via_loop`, a file goes through a loop device for ntfs-3g too.
    fn format_and_mount(
        &mut self,
        source: &Path,
        via_loop: bool,
        label: &str,
        base: &Path,
        name: &str,
    ) -> Result<PathBuf, ExportFsError> {
        let dir = base.join(name);
        let is_block = std::fs::metadata(source)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        // The kernel mounts ext4 from a block device only. ntfs-3g opens a file itself, and
        // the outer image file is fine so (its page cache absorbs ntfs-3g's small writes), but
        // the plaintext file goes through a loop device all the same: ntfs-3g rewrites the
        // same metadata blocks for every cluster it allocates, and the loop device's page
        // cache gathers those; straight on the FUSE file each rewrite is a round trip through
        // two FUSE servers (measured: 5 MB/s instead of 36 MB/s in a debug build).
        let device = if is_block || (self.kind == ExportFsKind::Ntfs && !via_loop) {
            source.to_owned()
        } else {
            let out = run(
                Step::Loop,
                source,
                "losetup",
                &[
                    OsStr::new("--find"),
                    OsStr::new("--show"),
                    source.as_os_str(),
                ],
            )?;
            let device = PathBuf::from(out.trim());
            self.layers.push(Layer::Loop {
                device: device.clone(),
                backing: source.to_owned(),
            });
            device
        };
        match self.kind {
            ExportFsKind::Ext4 => {
                run(
                    Step::Format,
                    &device,
                    "mkfs.ext4",
                    &[
                        "-F",
                        "-q",
                        "-L",
                        label,
                        "-b",
                        "4096",
                        "-I",
                        "256",
                        "-m",
                        "0",
                        "-E",
                        "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
                    ]
                    .map(OsStr::new)
                    .into_iter()
                    .chain([device.as_os_str()])
                    .collect::<Vec<_>>(),
                )?;
                self.make_dir(&dir)?;
                run(
                    Step::Mount,
                    &device,
                    "mount",
                    &[
                        OsStr::new("-t"),
                        OsStr::new("ext4"),
                        device.as_os_str(),
                        dir.as_os_str(),
                    ],
                )?;
                self.layers.push(Layer::Kernel {
                    dir: dir.clone(),
                    source: device,
                });
            }
            ExportFsKind::Ntfs => {
                run(
                    Step::Format,
                    &device,
                    "mkntfs",
                    &[
                        OsStr::new("-F"),
                        OsStr::new("-Q"),
                        OsStr::new("-q"),
                        OsStr::new("-L"),
                        OsStr::new(label),
                        device.as_os_str(),
                    ],
                )?;
                self.make_dir(&dir)?;
                let log = base.join(format!("ntfs-3g-{name}.log"));
                self.layers.push(Layer::File(log.clone()));
                let child = spawn_ntfs3g(&device, &dir, &log)?;
                self.layers.push(Layer::Ntfs3g {
                    dir: dir.clone(),
                    source: device.clone(),
                    child,
                    log: log.clone(),
                });
                if let Some(Layer::Ntfs3g { child, .. }) = self.layers.last_mut() {
                    wait_mounted(child, &device, &dir, &log)?;
                }
            }
        }
        Ok(dir)
    }

    /// Where files go: the root directory of the (inner) filesystem.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The filesystem kind.
    pub fn kind(&self) -> ExportFsKind {
        self.kind
    }

    /// The largest file the filesystem holds (ext4 with 4 KiB blocks: 16 TiB - 4 KiB; NTFS
    /// through ntfs-3g: 2^63 bytes less one cluster). The free space is another limit: see
    /// [`ExportVolume::free_bytes`].
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Bytes free for files under [`ExportVolume::root`] now.
    ///
    /// # Errors
    ///
    /// `statvfs` failed.
    pub fn free_bytes(&self) -> Result<u64, ExportFsError> {
        let st = statvfs(&self.root, Step::Mount)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Syncs and unmounts everything in reverse order, detaches loop devices, stops the FUSE
    /// server and waits for ntfs-3g to exit; when it returns `Ok`, every byte written under
    /// [`ExportVolume::root`] is on the device.
    ///
    /// # Errors
    ///
    /// Each failed layer, naming the layer and the device; after a failure the remaining
    /// layers are taken down lazily, so nothing stays mounted, but the device may not hold
    /// everything.
    pub fn finish(mut self) -> Result<(), ExportFsError> {
        let mut errors = self.teardown(true);
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ExportFsError::Teardown(errors)),
        }
    }

    /// Takes every layer down; `strict` waits for each, and turns lazy after a failure.
    fn teardown(&mut self, strict: bool) -> Vec<ExportFsError> {
        let mut errors = Vec::new();
        let mut strict = strict;
        while let Some(mut layer) = self.layers.pop() {
            if strict {
                if let Err(e) = layer.close() {
                    errors.push(e);
                    strict = false;
                    layer.abandon();
                }
            } else {
                layer.abandon();
            }
        }
        errors
    }
}

impl Drop for ExportVolume {
    fn drop(&mut self) {
        let _ = self.teardown(false);
    }
}

/// Refuses a block device that is mounted or held (the kernel answers `O_EXCL` with EBUSY):
/// `mkntfs -F` would otherwise format a mounted device.
fn check_not_in_use(device: &Path) -> Result<(), ExportFsError> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(device)
    {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(ExportFsError::Invalid {
            step: Step::Check,
            target: device.display().to_string(),
            what: "the device is in use (mounted, or held by device-mapper, md or another \
                   program); unmount or release it first"
                .into(),
        }),
        Err(source) => Err(ExportFsError::Io {
            step: Step::Check,
            target: device.display().to_string(),
            what: "open the device".into(),
            source,
        }),
    }
}

fn check_label(device: &Path, kind: ExportFsKind, label: &str) -> Result<(), ExportFsError> {
    let invalid = |what: String| ExportFsError::Invalid {
        step: Step::Check,
        target: device.display().to_string(),
        what,
    };
    let too_long = match kind {
        ExportFsKind::Ext4 => label.len() > EXT4_MAX_LABEL,
        ExportFsKind::Ntfs => label.encode_utf16().count() > NTFS_MAX_LABEL,
    };
    if too_long {
        return Err(invalid(format!(
            "the label {label:?} is too long for {kind} (at most {} {})",
            if kind == ExportFsKind::Ext4 {
                EXT4_MAX_LABEL
            } else {
                NTFS_MAX_LABEL
            },
            if kind == ExportFsKind::Ext4 {
                "bytes"
            } else {
                "characters"
            }
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the label {label:?} holds control characters"
        )));
    }
    Ok(())
}

fn check_container(spec: &ContainerSpec<'_>) -> Result<(), ExportFsError> {
    let invalid = |what: &str| ExportFsError::Invalid {
        step: Step::Check,
        target: format!("{:?}", spec.file_name),
        what: what.into(),
    };
    if spec.file_name.is_empty()
        || spec.file_name == "."
        || spec.file_name == ".."
        || spec.file_name.contains(['/', '\0'])
    {
        return Err(invalid(
            "the container name must be a plain file name (<JOBID>.tc)",
        ));
    }
    if spec.password.is_empty()
        || spec.password.len() > MAX_PASSWORD
        || !spec.password.iter().all(|b| (0x20..=0x7e).contains(b))
    {
        return Err(invalid(
            "the TrueCrypt password must be 1 to 64 printable ASCII characters",
        ));
    }
    Ok(())
}

/// Makes `path` on the outer filesystem mounted at `outer` and writes a TrueCrypt container
/// over all of it.
fn create_container(
    path: &Path,
    outer: &Path,
    outer_max: u64,
    spec: ContainerSpec<'_>,
) -> Result<View, ExportFsError> {
    let target = path.display().to_string();
    let io_fail = |what: &str| {
        let target = target.clone();
        let what = what.to_owned();
        move |source| ExportFsError::Io {
            step: Step::Container,
            target,
            what,
            source,
        }
    };
    let st = statvfs(outer, Step::Container)?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let margin = (free / 1024).clamp(MIN_MARGIN, MAX_MARGIN);
    let size = free.saturating_sub(margin).min(outer_max) / 4096 * 4096;
    if size < MIN_CONTAINER {
        return Err(ExportFsError::NoRoom {
            target,
            free,
            needed: MIN_CONTAINER + margin,
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_fail("create the container file"))?;
    match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => {}
        // ntfs-3g: a sparse file instead; TrueCrypt's quick format leaves it unwritten anyway.
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            file.set_len(size)
                .map_err(io_fail("extend the container file"))?;
        }
        Err(e) => return Err(io_fail("allocate the container file")(e.into())),
    }
    drop(file);
    let container = |source: TrueCryptError| ExportFsError::Container {
        target: target.clone(),
        source,
    };
    let writer = BufferedFile::open(path).map_err(|e| container(e.into()))?;
    let options = CreateOptions {
        prf: CreatePrf::Ripemd160,
        fill: DataFill::Untouched,
    };
    let view = truecrypt::create(writer, size, spec.password, &[], &options, &mut rand::rng())
        .map_err(container)?;
    view.flush().map_err(|e| container(e.into()))?;
    Ok(view)
}

fn statvfs(dir: &Path, step: Step) -> Result<rustix::fs::StatVfs, ExportFsError> {
    rustix::fs::statvfs(dir).map_err(|e| ExportFsError::Io {
        step,
        target: dir.display().to_string(),
        what: "read the filesystem's sizes (statvfs)".into(),
        source: e.into(),
    })
}

fn command_line(program: &str, args: &[&OsStr]) -> String {
    std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last part of a tool's stderr, on one line.
fn tail(text: &str) -> String {
    const MAX: usize = 2000;
    let text = text.trim();
    let start = text.len().saturating_sub(MAX);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].replace('\n', " | ")
}

/// Runs `program args`, returning its stdout; a failure carries its stderr.
fn run(step: Step, target: &Path, program: &str, args: &[&OsStr]) -> Result<String, ExportFsError> {
    let fail = |outcome: String| ExportFsError::Tool {
        step,
        target: target.display().to_string(),
        command: command_line(program, args),
        outcome,
    };
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("could not be started: {e}")))?;
    if !output.status.success() {
        return Err(fail(format!(
            "failed ({}): {}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr))
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command for its effect only, ignoring what it says (lazy teardown).
fn quiet(program: &str, args: &[&OsStr]) -> io::Result<()> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(drop)
}

/// `umount dir`, retried while the mount is busy (a udev probe may hold it for a moment).
fn unmount(dir: &Path, source: &Path) -> Result<(), ExportFsError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match run(Step::Unmount, dir, "umount", &[dir.as_os_str()]) {
            Ok(_) => return Ok(()),
            Err(ExportFsError::Tool {
                step,
                command,
                outcome,
                ..
            }) => {
                let busy = outcome.contains("busy");
                if !busy || Instant::now() >= deadline {
                    return Err(ExportFsError::Tool {
                        step,
                        target: format!("{} (mounted from {})", dir.display(), source.display()),
                        command,
                        outcome,
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `losetup -d`, then waits until the kernel has released the backing file (the detach is
/// deferred while something, such as udev, still has the loop device open).
fn detach(device: &Path, backing: &Path) -> Result<(), ExportFsError> {
    let target = PathBuf::from(format!(
        "{} (loop device of {})",
        device.display(),
        backing.display()
    ));
    run(
        Step::Detach,
        &target,
        "losetup",
        &[OsStr::new("-d"), device.as_os_str()],
    )?;
    let name = device.file_name().map(OsString::from).unwrap_or_default();
    let sysfs = Path::new("/sys/class/block").join(name);
    if !wait_until(BUSY_TIMEOUT, || {
        crate::identity::loop_backing_file(&sysfs).is_none()
    }) {
        return Err(ExportFsError::Timeout {
            step: Step::Detach,
            target: target.display().to_string(),
            what: "the loop device still holds its backing file after `losetup -d`".into(),
            waited: BUSY_TIMEOUT,
        });
    }
    Ok(())
}

/// Polls `done` until it holds or `timeout` passes; says whether it held.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Starts ntfs-3g on `source` in the foreground (our child), logging to `log`.
fn spawn_ntfs3g(source: &Path, dir: &Path, log: &Path) -> Result<Child, ExportFsError> {
    let args = [
        OsStr::new("-o"),
        OsStr::new("no_detach"),
        source.as_os_str(),
        dir.as_os_str(),
    ];
    let log_file = File::create(log).map_err(|source| ExportFsError::Io {
        step: Step::Mount,
        target: log.display().to_string(),
        what: "create the ntfs-3g log".into(),
        source,
    })?;
    Command::new("ntfs-3g")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| ExportFsError::Tool {
            step: Step::Mount,
            target: source.display().to_string(),
            command: command_line("ntfs-3g", &args),
            outcome: format!("could not be started: {e}"),
        })
}

fn read_log(log: &Path) -> String {
    tail(&std::fs::read_to_string(log).unwrap_or_default())
}

/// Waits until ntfs-3g's mount shows up on `dir`, or the process exits.
fn wait_mounted(
    child: &mut Child,
    source: &Path,
    dir: &Path,
    log: &Path,
) -> Result<(), ExportFsError> {
    let mut exited = None;
    let mounted = wait_until(MOUNT_TIMEOUT, || {
        if is_mount_point(dir) {
            return true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        false
    });
    let command = format!(
        "ntfs-3g -o no_detach {} {}",
        source.display(),
        dir.display()
    );
    match exited {
        Some(status) => Err(ExportFsError::Tool {
            step: Step::Mount,
            target: source.display().to_string(),
            command,
            outcome: format!("failed ({status}): {}", read_log(log)),
        }),
        None if !mounted => Err(ExportFsError::Timeout {
            step: Step::Mount,
            target: source.display().to_string(),
            what: format!("ntfs-3g did not mount {}: {}", dir.display(), read_log(log)),
            waited: MOUNT_TIMEOUT,
        }),
        None => Ok(()),
    }
}

/// Waits for an unmounted ntfs-3g to write its caches and exit.
fn wait_exit(child: &mut Child, source: &Path, log: &Path) -> Result<(), ExportFsError> {
    let mut status = None;
    let exited = wait_until(EXIT_TIMEOUT, || match child.try_wait() {
        Ok(Some(s)) => {
            status = Some(s);
            true
        }
        Ok(None) => false,
        Err(_) => true,
    });
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(ExportFsError::Tool {
            step: Step::Unmount,
            target: source.display().to_string(),
            command: "ntfs-3g".into(),
            outcome: format!("exited after umount with {s}: {}", read_log(log)),
        }),
        None => Err(ExportFsError::Timeout {
            step: Step::Unmount,
            target: source.display().to_string(),
            what: if exited {
                "cannot learn whether ntfs-3g exited".into()
            } else {
                "ntfs-3g did not exit after umount".into()
            },
            waited: EXIT_TIMEOUT,
        }),
    }
}

/// What a process killed in the middle of an export left under `work_dir` (its mounts, the
/// loop devices on files there), taken down: the inner filesystems and their loop devices
/// first, then the FUSE and outer mounts, newest first, lazily when a plain unmount fails.
/// Returns what it undid, for the log. Nothing may be using `work_dir` meanwhile.
pub fn clean_up(work_dir: &Path) -> Vec<String> {
    let mut undone = Vec::new();
    let under = |p: &Path| p.starts_with(work_dir);
    let loops_here = || -> Vec<(PathBuf, PathBuf)> {
        crate::identity::attached_loops()
            .into_iter()
            .filter(|(_, _, backing)| under(backing))
            .map(|(node, _, backing)| (node, backing))
            .collect()
    };
    let take_down = |mounts: Vec<(PathBuf, PathBuf)>, undone: &mut Vec<String>| {
        for (point, source) in mounts.into_iter().rev() {
            let plain = unmount(&point, &source).is_ok();
            if !plain {
                let _ = quiet("umount", &[OsStr::new("-l"), point.as_os_str()]);
            }
            undone.push(format!(
                "unmounted {} (from {}){}",
                point.display(),
                source.display(),
                if plain { "" } else { " lazily" }
            ));
        }
    };
    let inner: Vec<PathBuf> = loops_here().into_iter().map(|(dev, _)| dev).collect();
    take_down(
        mounts_under(work_dir)
            .into_iter()
            .filter(|(_, source)| inner.contains(source))
            .collect(),
        &mut undone,
    );
    for (device, backing) in loops_here() {
        if detach(&device, &backing).is_ok() {
            undone.push(format!(
                "detached {} from {}",
                device.display(),
                backing.display()
            ));
        }
    }
    take_down(mounts_under(work_dir), &mut undone);
    undone
}

/// The mounts whose mount point is under `dir`, in mount order: (mount point, source).
fn mounts_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    crate::identity::mountinfo()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .map(|m| (m.mount_point, m.source))
        .collect()
}

/// Whether `dir` is a mount point in this process's mount namespace.
fn is_mount_point(dir: &Path) -> bool {
    crate::identity::mountinfo()
        .iter()
        .any(|m| m.mount_point == dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<ExportVolume>();
    }

    #[test]
    fn teardown_errors_are_all_listed() {
        let e = ExportFsError::Teardown(vec![
            ExportFsError::Timeout {
                step: Step::Detach,
                target: "/dev/loop7 (loop device of /x/plaintext/plaintext)".into(),
                what: "the loop device still holds its backing file after `losetup -d`".into(),
                waited: Duration::from_secs(30),
            },
            ExportFsError::Plaintext {
                target: "/x/outer/JOB1.tc".into(),
                first: "disk full".into(),
            },
        ]);
        assert_eq!(
            e.to_string(),
            "2 teardown steps failed: (1) /dev/loop7 (loop device of /x/plaintext/plaintext): \
             detach: the loop device still holds its backing file after `losetup -d` (waited \
             30s); check `losetup -a` and that loop devices are available (modprobe loop) (2) \
             /x/outer/JOB1.tc: fuse: the container's plaintext could not be read or written \
             (disk full); the exported files in it may be incomplete: check the device and \
             export again"
        );
    }

    #[test]
    fn bad_settings_are_refused_before_anything_is_written() {
        let e = check_label(
            Path::new("/dev/sdz"),
            ExportFsKind::Ext4,
            "a label too long!",
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "/dev/sdz: check: the label \"a label too long!\" is too long for ext4 (at most \
                 16 bytes); fix the job's settings"
            )
        );
        assert!(check_label(
            Path::new("/dev/sdz"),
            ExportFsKind::Ntfs,
            "a label too long!"
        )
        .is_ok());
        let e = check_container(&ContainerSpec {
            file_name: "JOB1.tc",
            password: "p\u{e4}ss".as_bytes(),
        })
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "\"JOB1.tc\": check: the TrueCrypt password must be 1 to 64 printable ASCII \
                 characters; fix the job's settings"
            )
        );
        assert!(check_container(&ContainerSpec {
            file_name: "../JOB1.tc",
            password: b"secret",
        })
        .is_err());
        let spec = ContainerSpec {
            file_name: "JOB1.tc",
            password: b"hunter2",
        };
        assert!(!format!("{spec:?}").contains("hunter2"));
    }

    #[test]
    fn tool_errors_name_the_device_the_step_and_what_to_do() {
        let e = run(
            Step::Format,
            Path::new("/nonexistent/device"),
            "mkfs.ext4",
            &[OsStr::new("-F"), OsStr::new("/nonexistent/device")],
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            e.starts_with(
                "/nonexistent/device: format: `mkfs.ext4 -F /nonexistent/device` failed (exit \
                 status: 1): "
            ) || e.contains("could not be started"),
            "{e}"
        );
        assert!(e.ends_with(
            "; check that the device is writable and not mounted or held, and that e2fsprogs \
             and ntfs-3g are installed (scripts/setup)"
        ));
    }
}
