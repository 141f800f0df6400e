//! The plaintext of a TrueCrypt container as one file in a FUSE mount, so `mkfs`, the loop
//! driver and ntfs-3g can sit on top of our own XTS layer.
//!
//! The mount holds a root directory with one regular file, [`FILE_NAME`], as large as the
//! container's data area. Reads decrypt through [`EncryptingView`], writes encrypt, `fsync` and
//! `flush` make the container file durable. Every open is `FOPEN_DIRECT_IO`: the plaintext is
//! never kept in the page cache of the FUSE file (the filesystem on top has its own cache), so a
//! write the loop driver completes has reached our view, and no FUSE writeback can wait on
//! memory that our server thread needs.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, SessionACL, WriteFlags,
};

use crate::block_write::{BufferedFile, WriteAt};
use crate::source::ReadAt;
use crate::truecrypt::EncryptingView;

/// The name of the plaintext file in the mount.
pub(super) const FILE_NAME: &str = "plaintext";
const FILE_INO: INodeNo = INodeNo(2);
/// Nothing in the mount ever changes shape: the kernel may cache names and sizes for long.
const TTL: Duration = Duration::from_secs(3600);
/// Largest request we accept from the kernel: fewer round trips for big sequential writes.
const MAX_WRITE: u32 = 1 << 20;

/// The view the server writes through, shared with [`super::ExportVolume`] for the final flush.
pub(super) type View = EncryptingView<BufferedFile>;

/// The first I/O error the server answered with EIO, kept for `finish` to report: the
/// filesystem on top only sees EIO.
#[derive(Debug, Default)]
pub(super) struct FirstError(Mutex<Option<String>>);

impl FirstError {
    fn record(&self, what: String) {
        if let Ok(mut first) = self.0.lock() {
            first.get_or_insert(what);
        }
    }

    /// The first error recorded, if any.
    pub(super) fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|first| first.clone())
    }
}

/// The FUSE filesystem: a root directory and the plaintext file.
struct Plaintext {
    view: Arc<View>,
    errors: Arc<FirstError>,
    created: SystemTime,
}

std::thread_local! {
    static IO_FLUSHER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling server thread as part of the I/O path (PR_SET_IO_FLUSHER): its memory
/// allocations then do not wait for writeback that waits for this very thread. Best effort:
/// it needs Linux 5.6 and CAP_SYS_RESOURCE.
fn mark_io_flusher() {
    IO_FLUSHER.with(|done| {
        if !done.replace(true) {
            let _ = rustix::process::configure_io_flusher_behavior(true);
        }
    });
}

impl Plaintext {
    fn attr(&self, ino: INodeNo) -> FileAttr {
        let file = ino == FILE_INO;
        FileAttr {
            ino,
            size: if file { self.view.size() } else { 0 },
            blocks: if file {
                self.view.size().div_ceil(512)
            } else {
                0
            },
            atime: self.created,
            mtime: self.created,
            ctime: self.created,
            crtime: self.created,
            kind: if file {
                FileType::RegularFile
            } else {
                FileType::Directory
            },
            perm: if file { 0o600 } else { 0o700 },
            nlink: if file { 1 } else { 2 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn known(ino: INodeNo) -> bool {
        ino == INodeNo::ROOT || ino == FILE_INO
    }
}

impl Filesystem for Plaintext {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // The kernel may offer less; what it accepts is what it sends.
        let _ = config.set_max_write(MAX_WRITE);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == FILE_NAME {
            reply.entry(&TTL, &self.attr(FILE_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if Self::known(ino) {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if !Self::known(ino) {
            reply.error(Errno::ENOENT);
        } else if size.is_some_and(|s| ino != FILE_INO || s != self.view.size()) {
            // The container has a fixed size: an O_TRUNC open or a resize is refused.
            reply.error(Errno::EPERM);
        } else {
            // Times and modes are not stored; answering keeps `touch` and friends quiet.
            reply.attr(&TTL, &self.attr(ino));
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == FILE_INO {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        mark_io_flusher();
        if ino != FILE_INO {
            reply.error(Errno::EISDIR);
            return;
        }
        let end = self.view.size();
        let len = end.saturating_sub(offset).min(u64::from(size));
        let Ok(len) = usize::try_from(len) else {
            reply.error(Errno::EINVAL);
            return;
        };
        if len == 0 {
            // At or past the end: EOF, as for any file (mkntfs probes the size this way).
            reply.data(&[]);
            return;
        }
        let mut buf = vec![0u8; len];
        match self.view.read_exact_at(offset, &mut buf) {
            Ok(()) => reply.data(&buf),
            Err(e) => {
                self.errors.record(e.to_string());
                reply.error(Errno::EIO);
            }
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        mark_io_flusher();
        if ino != FILE_INO {
            reply.error(Errno::EISDIR);
            return;
        }
        let Ok(written) = u32::try_from(data.len()) else {
            reply.error(Errno::EINVAL);
            return;
        };
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > self.view.size())
        {
            // The file does not grow: like writing past the end of a block device.
            reply.error(Errno::ENOSPC);
            return;
        }
        match self.view.write_all_at(offset, data) {
            Ok(()) => reply.written(written),
            Err(e) => {
                self.errors.record(e.to_string());
                reply.error(Errno::EIO);
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.sync(reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate() {
            let next = i as u64 + 1;
            if next > offset && reply.add(*ino, next, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    // The kernel asks for `security.capability` before writes, and the loop driver punches
    // holes on discard: neither exists here, and saying so quietly (instead of fuser's
    // default, which logs a warning each time) keeps the operator's log clean.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if Self::known(ino) {
            reply.ok();
        } else {
            reply.error(Errno::ENOENT);
        }
    }
}

impl Plaintext {
    fn sync(&self, reply: ReplyEmpty) {
        mark_io_flusher();
        match self.view.flush() {
            Ok(()) => reply.ok(),
            Err(e) => {
                self.errors.record(e.to_string());
                reply.error(Errno::EIO);
            }
        }
    }
}

/// Mounts the plaintext of `view` on `dir` (an empty directory) and serves it from a
/// background thread (fuser's). As root the kernel mount is direct; otherwise fuser falls
/// back to fusermount3.
pub(super) fn serve(
    view: Arc<View>,
    errors: Arc<FirstError>,
    dir: &Path,
    container: &Path,
) -> std::io::Result<fuser::BackgroundSession> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(container.display().to_string()),
        MountOption::Subtype("station-truecrypt".into()),
        MountOption::RW,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    config.acl = SessionACL::Owner;
    // One thread: requests are served in order, so two writes never patch the same 512-byte
    // unit at once (EncryptingView's rule), and AES-NI XTS outruns any disk on one core.
    config.n_threads = Some(1);
    let fs = Plaintext {
        view,
        errors,
        created: SystemTime::now(),
    };
    fuser::Session::new(fs, dir, &config)?.spawn()
}
