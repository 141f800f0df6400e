//! drivers integration tests: readers against images built by `hw-fixtures/` scripts.

mod export_fs;
mod ext;
mod fat;
mod helper;
mod hfsplus;
mod ntfs;
mod partition;
mod truecrypt;
mod udev;
