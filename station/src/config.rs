//! The station's configuration, `/etc/stationd/stationd.yaml`.
//!
//! Every option has a default that works on a developer machine, so an empty file (or none at
//! the default path) is a valid configuration. Unknown keys are errors that name the key: a
//! misspelt option silently ignored is a station that does not do what its operator thinks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pipelines::manifest::{self, Region, Rules};
use serde::{Deserialize, Serialize};

/// Where `stationd` and `stationctl` look for the configuration by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/stationd/stationd.yaml";

const MIB: u64 = 1024 * 1024;
const TB: u64 = 1_000_000_000_000;

/// The station's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The station's name, shown to operators and in logs.
    pub station_name: String,
    /// The facility's country (ISO 3166 code or English name): decides when a return shipment
    /// needs customs information and whether expedited shipping is offered.
    pub facility_country: String,
    /// Where the station keeps its database and working files.
    pub data_dir: PathBuf,
    /// The operator console's Unix socket.
    pub console: ConsoleConfig,
    /// The file holding the station key (signs SIGNATURE files and barcodes, seals account
    /// secrets); created mode 0600 on first start. Default: `signing.key` in the data directory.
    pub signing_key_file: Option<PathBuf>,
    /// The customer-facing control-plane API.
    pub api: ApiConfig,
    /// The Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// Per-region target overrides (endpoint, credentials profile), keyed by region name.
    pub targets: BTreeMap<String, TargetConfig>,
    /// Throughput and memory limits.
    pub transfer: TransferConfig,
    /// Which devices the station accepts.
    pub devices: DevicePolicy,
    /// How erasure is verified.
    pub erase: EraseConfig,
    /// How long a bay waits for the operator and for progress.
    pub bays: BayConfig,
    /// E-mail to customers (notificationEmail) and the operator.
    pub notifications: NotificationConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            station_name: "station".to_owned(),
            facility_country: "US".to_owned(),
            data_dir: PathBuf::from("/var/lib/stationd"),
            console: ConsoleConfig::default(),
            signing_key_file: None,
            api: ApiConfig::default(),
            metrics: MetricsConfig::default(),
            targets: BTreeMap::new(),
            transfer: TransferConfig::default(),
            devices: DevicePolicy::default(),
            erase: EraseConfig::default(),
            bays: BayConfig::default(),
            notifications: NotificationConfig::default(),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or network only).
    None,
    /// STARTTLS after connecting (port 587).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
}

/// E-mail notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    /// The SMTP server (host name); no e-mail is sent without one (messages still queue).
    pub smtp_server: Option<String>,
    /// Its port; default 25 with `tls: none`, 587 with `starttls`, 465 with `tls`.
    pub smtp_port: Option<u16>,
    /// none, starttls or tls.
    pub tls: SmtpTls,
    /// The From address.
    pub sender: String,
    /// The SMTP user, if the server wants one.
    pub username: Option<String>,
    /// A file holding the SMTP password (read at start).
    pub password_file: Option<PathBuf>,
    /// The facility's operator address: destruction cases and stuck bays.
    pub operator_email: Option<String>,
    /// The longest wait between attempts at a message the server did not take, seconds.
    pub retry_max_secs: u64,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            smtp_server: None,
            smtp_port: None,
            tls: SmtpTls::Starttls,
            sender: "stationd@localhost".to_owned(),
            username: None,
            password_file: None,
            operator_email: None,
            retry_max_secs: 300,
        }
    }
}

impl NotificationConfig {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }
}

/// How long a bay waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BayConfig {
    /// Seconds to wait for a barcode scan when a device has no SIGNATURE file.
    pub scan_timeout_secs: u64,
    /// Seconds without progress after which a transfer fails with DeviceError.
    pub stall_timeout_secs: u64,
    /// Seconds a PIN-pad device may take to be unlocked by the operator, and then to appear.
    pub unlock_timeout_secs: u64,
}

impl Default for BayConfig {
    fn default() -> Self {
        Self {
            scan_timeout_secs: 300,
            stall_timeout_secs: 600,
            unlock_timeout_secs: 600,
        }
    }
}

/// The operator console's socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The socket's path.
    pub socket: PathBuf,
    /// The group allowed to connect (the socket is mode 0660); `None` leaves it to root.
    pub group: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/stationd/console.sock"),
            group: None,
        }
    }
}

/// The control-plane API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port the API listens on.
    pub listen: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// The metrics endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port of the endpoint; off when absent.
    pub listen: Option<SocketAddr>,
}

/// Where one region's S3, Glacier and EBS requests go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// An endpoint URL replacing AWS's for every service (an S3-compatible store, a local
    /// test server).
    pub endpoint: Option<String>,
    /// An endpoint for S3 only (beats `endpoint`).
    pub s3_endpoint: Option<String>,
    /// An endpoint for Glacier only (beats `endpoint`).
    pub glacier_endpoint: Option<String>,
    /// An endpoint for the EBS direct API only (beats `endpoint`).
    pub ebs_endpoint: Option<String>,
    /// The AWS credentials profile to use.
    pub profile: Option<String>,
}

/// Throughput and memory limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferConfig {
    /// Uploads in flight at once per job.
    pub upload_concurrency: usize,
    /// Downloads (GETs) in flight at once per export job: many, since small objects are
    /// bound by round trips; the memory cap bounds the bytes.
    pub download_concurrency: usize,
    /// EBS block writes and reads in flight at once per job: many, since each carries only
    /// 512 KiB and is bound by its round trip (coldsnap, AWS's uploader, uses 64).
    pub ebs_concurrency: usize,
    /// Size of each sequential device read, in MiB.
    pub read_chunk_mib: u64,
    /// The most memory all buffers of one job may hold, in MiB.
    pub memory_cap_mib: u64,
    /// How much of an EBS snapshot is read back after the import. Sampled by default: the
    /// service checks every block's SHA-256 as it arrives and the aggregate of all of them at
    /// completion, and the listing shows every block is there (as an S3 import trusts the
    /// store's ETags rather than reading the objects back); reading every block back doubles
    /// the job's time and requests.
    pub ebs_verify: EbsVerify,
}

/// How much of an EBS snapshot is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EbsVerify {
    /// Every written block.
    All,
    /// Every 64th written block, and the first and last.
    Sampled,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            upload_concurrency: 16,
            download_concurrency: 64,
            ebs_concurrency: 64,
            read_chunk_mib: 8,
            memory_cap_mib: 512,
            ebs_verify: EbsVerify::Sampled,
        }
    }
}

/// Device buses the station can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// USB 2.0 and 3.x.
    Usb,
    /// SATA and eSATA (udev's `ata`).
    Ata,
    /// SCSI and SAS.
    Scsi,
    /// NVMe.
    Nvme,
}

/// Which devices the station accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicePolicy {
    /// Buses whose devices are accepted.
    pub allowed_buses: Vec<Bus>,
    /// Whether loop devices are treated as bays (for tests and demos only).
    pub allow_loop_devices: bool,
    /// Largest device for S3 imports and exports, in bytes (the guide: 16 TB).
    pub max_bytes_s3: u64,
    /// Largest device for EBS imports, in bytes (the guide: 16 TB).
    pub max_bytes_ebs: u64,
    /// Largest device for Glacier imports, in bytes (the guide: 4 TB).
    pub max_bytes_glacier: u64,
}

impl Default for DevicePolicy {
    fn default() -> Self {
        Self {
            allowed_buses: vec![Bus::Usb, Bus::Ata],
            allow_loop_devices: false,
            max_bytes_s3: 16 * TB,
            max_bytes_ebs: 16 * TB,
            max_bytes_glacier: 4 * TB,
        }
    }
}

/// How an erase is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EraseVerify {
    /// Every block is read back and checked to be zero.
    Full,
    /// One 8 MiB chunk in 64, and the last, is read back.
    Sampled,
}

/// Erase settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EraseConfig {
    /// How the zero-overwrite is verified.
    pub verify: EraseVerify,
}

impl Default for EraseConfig {
    fn default() -> Self {
        Self {
            verify: EraseVerify::Full,
        }
    }
}

/// A configuration that cannot be used, naming the file and the option.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape (this includes unknown keys).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What serde says, with the key, line and column.
        message: String,
    },
    /// An option has a value the station cannot use.
    #[error("{path}: {option}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The option, as a dotted path.
        option: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl Config {
    /// Loads the configuration at `path`. When `path` is the default path and no file is
    /// there, the defaults are used.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not valid, has unknown keys or unusable values.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_CONFIG_PATH) =>
            {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::from_yaml(&text, path)
    }

    /// Parses and checks configuration text; `path` is used in messages.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // An empty file or one holding only comments is the default configuration.
        let only_comments = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        let config: Self = if only_comments {
            Self::default()
        } else {
            serde_norway::from_str(text).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string(),
            })?
        };
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |option: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            option: option.to_owned(),
            message,
        };
        if manifest::country_code(&self.facility_country).is_none() {
            return Err(invalid(
                "facility_country",
                format!(
                    "`{}` is not a country; write its ISO 3166 code, such as US or IE",
                    self.facility_country
                ),
            ));
        }
        for (region, target) in &self.targets {
            if !Region::ALL.iter().any(|r| r.as_str() == region) {
                let names: Vec<&str> = Region::ALL.iter().map(|r| r.as_str()).collect();
                return Err(invalid(
                    &format!("targets.{region}"),
                    format!(
                        "not a region the station serves; use one of {}",
                        names.join(", ")
                    ),
                ));
            }
            for (name, endpoint) in [
                ("endpoint", &target.endpoint),
                ("s3_endpoint", &target.s3_endpoint),
                ("glacier_endpoint", &target.glacier_endpoint),
                ("ebs_endpoint", &target.ebs_endpoint),
            ] {
                if let Some(endpoint) = endpoint {
                    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                        return Err(invalid(
                            &format!("targets.{region}.{name}"),
                            format!("`{endpoint}` must be an http:// or https:// URL"),
                        ));
                    }
                }
            }
        }
        let t = &self.transfer;
        for (field, value) in [
            ("transfer.upload_concurrency", t.upload_concurrency as u64),
            (
                "transfer.download_concurrency",
                t.download_concurrency as u64,
            ),
            ("transfer.ebs_concurrency", t.ebs_concurrency as u64),
            ("transfer.read_chunk_mib", t.read_chunk_mib),
        ] {
            if !(1..=256).contains(&value) {
                return Err(invalid(
                    field,
                    format!("{value} is out of range; use 1 to 256"),
                ));
            }
        }
        // A reader needs at least two buffers in flight to overlap reading and uploading.
        if t.memory_cap_mib < 2 * t.read_chunk_mib {
            return Err(invalid(
                "transfer.memory_cap_mib",
                format!(
                    "{} MiB cannot hold two read chunks of {} MiB; raise it or lower read_chunk_mib",
                    t.memory_cap_mib, t.read_chunk_mib
                ),
            ));
        }
        if self.devices.allowed_buses.is_empty() && !self.devices.allow_loop_devices {
            return Err(invalid(
                "devices.allowed_buses",
                "no bus is allowed, so no device would ever be accepted; list usb and/or ata"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The manifest rules this station applies.
    pub fn manifest_rules(&self) -> Rules {
        Rules {
            facility_country: manifest::country_code(&self.facility_country)
                .unwrap_or("US")
                .to_owned(),
            ..Rules::default()
        }
    }

    /// The station key's file.
    pub fn key_file(&self) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing.key"))
    }

    /// The read chunk in bytes.
    pub fn read_chunk_bytes(&self) -> u64 {
        self.transfer.read_chunk_mib * MIB
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, Path::new("/etc/stationd/stationd.yaml"))
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let config = load("# nothing here\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config, Config::default());
        assert_eq!(config.manifest_rules(), Rules::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load("station_name: a\nupload_concurency: 4\n")
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("unknown field `upload_concurency`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = load("transfer:\n  chunk: 4\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown field `chunk`"), "{e}");
    }

    #[test]
    fn values_are_checked() {
        for (text, option) in [
            ("facility_country: Atlantis\n", "facility_country"),
            ("targets:\n  mars-north-1: {}\n", "targets.mars-north-1"),
            (
                "targets:\n  us-east-1:\n    endpoint: localhost:9000\n",
                "targets.us-east-1.endpoint",
            ),
            (
                "transfer:\n  upload_concurrency: 0\n",
                "transfer.upload_concurrency",
            ),
            (
                "transfer:\n  ebs_concurrency: 300\n",
                "transfer.ebs_concurrency",
            ),
            (
                "transfer:\n  memory_cap_mib: 8\n",
                "transfer.memory_cap_mib",
            ),
            ("devices:\n  allowed_buses: []\n", "devices.allowed_buses"),
        ] {
            match load(text) {
                Err(ConfigError::Invalid { option: o, .. }) => assert_eq!(o, option, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = load("erase:\n  verify: never\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown variant `never`"), "{e}");
    }

    #[test]
    fn a_full_config_is_read() {
        let config = load(
            "station_name: dock-3\nfacility_country: Ireland\ndata_dir: /srv/station\n\
             api:\n  listen: 0.0.0.0:443\nmetrics:\n  listen: 127.0.0.1:9100\n\
             targets:\n  eu-west-1:\n    endpoint: http://127.0.0.1:9000\n    profile: garage\n\
             devices:\n  allowed_buses: [usb]\n  allow_loop_devices: true\n\
             erase:\n  verify: sampled\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.station_name, "dock-3");
        assert_eq!(config.manifest_rules().facility_country, "IE");
        assert_eq!(config.metrics.listen.map(|a| a.port()), Some(9100));
        assert_eq!(config.devices.allowed_buses, vec![Bus::Usb]);
        assert_eq!(config.erase.verify, EraseVerify::Sampled);
        assert_eq!(
            config
                .targets
                .get("eu-west-1")
                .and_then(|t| t.profile.as_deref()),
            Some("garage")
        );
    }

    /// The shipped example configuration stays loadable as options are added.
    #[test]
    fn shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/stationd.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let config = Config::from_yaml(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config, Config::default());
    }
}
