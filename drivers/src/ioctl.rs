//! The crate's only `unsafe` code: the block-device ioctls.
//!
//! Each call passes a valid, open file descriptor and a pointer to a local integer of exactly
//! the type the kernel writes for that request (linux/fs.h), so the kernel never writes
//! outside it. Everything else in the crate stays safe and is checked by `deny(unsafe_code)`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `BLKGETSIZE64`: `_IOR(0x12, 114, size_t)`, the device size in bytes (`u64`). The request
/// number encodes `sizeof(size_t)` (bits 16-29) although the kernel writes a u64:
/// 0x8008_1272 on 64-bit targets.
const BLKGETSIZE64: libc::c_ulong =
    0x8000_1272 | ((std::mem::size_of::<usize>() as libc::c_ulong) << 16);
/// `BLKSSZGET`: `_IO(0x12, 104)`, the logical sector size (`int`).
const BLKSSZGET: libc::c_ulong = 0x1268;
/// `BLKPBSZGET`: `_IO(0x12, 123)`, the physical sector size (`unsigned int`).
const BLKPBSZGET: libc::c_ulong = 0x127b;
/// `BLKROGET`: `_IO(0x12, 94)`, the device's read-only flag (`int`, non-zero when read-only).
const BLKROGET: libc::c_ulong = 0x125e;
/// `BLKFLSBUF`: `_IO(0x12, 97)`, write back and drop the device's buffer cache (no argument).
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// The size in bytes of the block device open as `file`.
pub(crate) fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: `file` is an open descriptor for the whole call; BLKGETSIZE64 writes one u64
    // through the pointer, which points to the local `size`, a live, aligned u64.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// The logical sector size of the block device open as `file`.
pub(crate) fn logical_sector_size(file: &File) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: `file` is an open descriptor; BLKSSZGET writes one `int` through the pointer,
    // which points to the local `size` of that type.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut size as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(size).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("BLKSSZGET returned {size}"),
        )
    })
}

/// The physical sector size of the block device open as `file`.
pub(crate) fn physical_sector_size(file: &File) -> io::Result<u32> {
    let mut size: libc::c_uint = 0;
    // SAFETY: `file` is an open descriptor; BLKPBSZGET writes one `unsigned int` through the
    // pointer, which points to the local `size` of that type.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKPBSZGET, &mut size as *mut libc::c_uint) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Whether the kernel marks the block device open as `file` read-only (`losetup -r`, a
/// write-protect switch, `blockdev --setro`).
pub(crate) fn read_only(file: &File) -> io::Result<bool> {
    let mut flag: libc::c_int = 0;
    // SAFETY: `file` is an open descriptor; BLKROGET writes one `int` through the pointer,
    // which points to the local `flag` of that type.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKROGET, &mut flag as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flag != 0)
}

/// Writes back and drops the buffer cache of the block device open as `file`, so later
/// buffered readers see what is on the device, not pages cached before it was written.
pub(crate) fn flush_buffers(file: &File) -> io::Result<()> {
    // SAFETY: `file` is an open descriptor; BLKFLSBUF takes no argument and writes no memory
    // of ours (the third argument is ignored; 0 is passed).
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKFLSBUF, 0 as libc::c_ulong) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_numbers_match_linux_fs_h() {
        #[cfg(target_pointer_width = "64")]
        assert_eq!(super::BLKGETSIZE64, 0x8008_1272);
        assert_eq!(super::BLKSSZGET, 0x1268);
        assert_eq!(super::BLKPBSZGET, 0x127b);
        assert_eq!(super::BLKROGET, 0x125e);
        assert_eq!(super::BLKFLSBUF, 0x1261);
    }
}
