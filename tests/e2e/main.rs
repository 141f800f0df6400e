//! End-to-end tests: the real `stationctl` and `stationd` binaries.

mod api;
mod helper;
mod manifest_check;
mod stationd_config;
