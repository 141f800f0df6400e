//! Station drivers: everything that touches hardware or an on-disk format.
//!
//! udev, USB identity, block I/O and ioctls, partition tables, TrueCrypt and the filesystem
//! readers and writers live here, and know nothing of jobs. Customer media are untrusted input:
//! they are read through our own positional-read stack, never mounted.
//!
//! `unsafe` is denied in the whole crate; three small modules allow it, with a `SAFETY` comment
//! on every block: the ioctls, the VAES/AVX-512 AES-XTS kernel (`truecrypt::vaes`), and the
//! multi-buffer MD5 kernels on AVX-512 and AVX2 (`md5_lanes`).

#![deny(unsafe_code)]

pub mod block;
pub mod block_write;
pub mod export_fs;
pub mod fs;
pub mod identity;
#[allow(unsafe_code)]
mod ioctl;
#[allow(unsafe_code)]
pub mod md5_lanes;
pub mod partition;
pub mod policy;
pub mod probe;
pub mod source;
pub mod truecrypt;
pub mod udev;
