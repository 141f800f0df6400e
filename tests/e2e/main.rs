//! End-to-end tests: the real `stationctl` and `stationd` binaries.

mod api;
mod daemon;
mod ebs;
mod export;
mod filesystems;
mod garage;
mod glacier;
mod helper;
mod inspect;
mod load;
mod manifest_check;
mod notify;
mod stationd_config;
