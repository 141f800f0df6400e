//! Station pipelines: what a job does with a device, independent of how the device was found.
//!
//! This crate holds the manifest model and its validation; later it holds signatures, the
//! import, export and erase pipelines, the guide's CSV logs and the target stores. It knows
//! nothing of udev, sockets or SQLite (`station` wires those in) and reads devices only
//! through `drivers`.

#![forbid(unsafe_code)]

pub mod ebs_import;
pub mod erase;
pub mod glacier_import;
pub mod job_log;
pub mod lanes;
pub mod manifest;
pub mod object_store;
pub mod retry;
pub mod s3_export;
pub mod s3_import;
pub mod signature;
pub mod snapshot_store;
pub mod tree_hash;
pub mod vault_store;
