//! `stationctl`: the operator's command line.
//!
//! `stationctl manifest check --job-type Import|Export FILE` works without the daemon. Its
//! output is a contract scripts rely on: a valid manifest prints `OK <kind>` and exits 0; an
//! invalid one prints `<Exception>: <field>: line <n>: <message>` as its first line (further
//! problems follow, one per line) and exits 1. Anything else (unreadable file, bad arguments)
//! exits 2 with a message on stderr.
//!
//! `stationctl inspect PATH [--files [--partition N]]` also works without the daemon; its
//! `--files` listing is the contract described in `station::inspect` and the README.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pipelines::manifest::{self, JobType};
use station::config::{Config, DEFAULT_CONFIG_PATH};
use station::keys::StationKey;
use station::store::Store;

#[derive(Parser)]
#[command(
    name = "stationctl",
    version,
    about = "Operate a Station data-loading station"
)]
struct Cli {
    /// The station's configuration (for the facility country that manifest checks use).
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with job manifests.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Show what is on a device or image, without the daemon: the partition table, each
    /// partition's filesystem, label and size; with --files, every entry of one filesystem.
    Inspect {
        /// A block device or an image file.
        path: PathBuf,
        /// List every entry, one line each: `md5 size mtime kind path`.
        #[arg(long)]
        files: bool,
        /// The partition to list, counted from 1 in table order (default: the only
        /// filesystem).
        #[arg(long, requires = "files")]
        partition: Option<u32>,
    },
    /// Run one import in the foreground (no daemon): prints the log's `bucket/key` last;
    /// exits 0 on Complete, 3 on SuccessWithErrors, 1 on failure.
    Load {
        /// The device or image to load.
        #[arg(long)]
        device: PathBuf,
        /// The job's manifest.
        #[arg(long)]
        manifest: PathBuf,
        /// The job ID (names the log: logPrefix + import-log- + ID).
        #[arg(long)]
        job_id: String,
        /// The endpoint of every target region (e.g. a local S3 server).
        #[arg(long)]
        endpoint_url: Option<String>,
    },
    /// Manage customer accounts (works on the database directly; no daemon needed).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints `ACCESS_KEY_ID SECRET_ACCESS_KEY` on one line.
    Create {
        /// The account's name.
        name: String,
        /// The station's data directory (overrides the configuration's data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Check a manifest as CreateJob would: prints `OK <kind>` or the guide's error.
    Check {
        /// The job type: Import or Export (any case).
        #[arg(long, value_parser = parse_job_type)]
        job_type: JobType,
        /// The manifest file; `-` reads standard input.
        file: PathBuf,
    },
}

fn parse_job_type(text: &str) -> Result<JobType, String> {
    JobType::parse(text).ok_or_else(|| format!("`{text}` is not a job type; use Import or Export"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    station::logging::init(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stationctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Load {
            device,
            manifest,
            job_id,
            endpoint_url,
        } => {
            let config = Config::load(&cli.config)?;
            let text = read_input(&manifest)?;
            let progress = station::load::TerminalProgress::new(std::io::stderr().is_terminal());
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let result = runtime.block_on(station::load::load(
                &config,
                &device,
                &text,
                &job_id,
                endpoint_url.as_deref(),
                &progress,
            ));
            match result {
                Ok(station::load::LoadResult::Complete { log }) => {
                    println!("Complete");
                    println!("{log}");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(station::load::LoadResult::SuccessWithErrors { log, errors }) => {
                    println!("SuccessWithErrors: {errors} errors, see the log");
                    println!("{log}");
                    Ok(ExitCode::from(3))
                }
                Err(e) => {
                    eprintln!("stationctl: load failed: {e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Account {
            command: AccountCommand::Create { name, data_dir },
        } => {
            let mut config = Config::load(&cli.config)?;
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            let key = StationKey::load_or_create(&config.key_file())?;
            let store = Store::open(&config.data_dir, Arc::new(key))?;
            let (access_key_id, secret) = store.create_account(&name)?;
            println!("{access_key_id} {secret}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Manifest {
            command: ManifestCommand::Check { job_type, file },
        } => {
            let config = Config::load(&cli.config)?;
            let bytes = read_input(&file)?;
            match manifest::parse(&bytes, job_type, &config.manifest_rules()) {
                Ok(m) => {
                    println!("OK {}", m.kind());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in errors.all() {
                        println!("{}: {e}", e.code);
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Inspect {
            path,
            files,
            partition,
        } => inspect(&path, files, partition),
    }
}

/// `stationctl inspect`: exit 0 when everything was read, 1 when something could not be (the
/// problems are on stderr), 2 (through `main`) when nothing could be.
fn inspect(path: &Path, files: bool, partition: Option<u32>) -> anyhow::Result<ExitCode> {
    let inspected = station::inspect::inspect(path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let all_read = if files {
        let stderr = std::io::stderr();
        let mut problems = stderr.lock();
        station::inspect::list_files(&inspected, partition, &mut out, &mut problems)?
    } else {
        inspected.write_report(&mut out)?
    };
    out.flush().context("cannot write to standard output")?;
    Ok(if all_read {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_input(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the manifest from standard input")?;
        return Ok(bytes);
    }
    std::fs::read(file).with_context(|| format!("cannot read the manifest {}", file.display()))
}
