//! Station: the `stationd` daemon and the `stationctl` operator console.
//!
//! This crate wires the pieces together: configuration, job store, control-plane API, the
//! operator console and the orchestrator that takes a device from a bay through its job's
//! pipeline. The formats and pipelines themselves live in `pipelines` and `drivers`.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod console;
pub mod erase;
pub mod inspect;
pub mod job;
pub mod keys;
pub mod load;
pub mod logging;
pub mod notify;
pub mod orchestrator;
pub mod pdf;
pub mod store;
pub mod systemd;
pub mod targets;
pub mod unlock;
