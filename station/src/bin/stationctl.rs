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
use std::os::unix::net::UnixStream;

use station::config::{Config, DEFAULT_CONFIG_PATH};
use station::console::{Reply, Request};
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
        /// Open the TrueCrypt volume (the whole device, its one partition, or the one `.tc`
        /// container in its root) with the password in this file (its first line).
        #[arg(long, conflicts_with = "partition")]
        password_file: Option<PathBuf>,
    },
    /// Run one job in the foreground (no daemon): an import from the device, or an export
    /// onto it (the device is formatted); prints the log's `bucket/key` last; exits 0 on
    /// Complete, 3 on SuccessWithErrors, 1 on failure.
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
        /// The job type, Import (the default) or Export (any case).
        #[arg(long, value_parser = parse_job_type, default_value = "Import")]
        job_type: JobType,
    },
    /// Manage customer accounts (works on the database directly; no daemon needed).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// The bays: each device, its job, state and live progress (rate, ETA).
    Status {
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The bays, redrawn as they change, until interrupted.
    Watch {
        /// One JSON line per update.
        #[arg(long)]
        json: bool,
    },
    /// The event stream (job progress, run and bay states, devices, erase results), one JSON
    /// line per event.
    Events {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Keep printing events as they happen, until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Scan a barcode for the device in BAY: reads one line from standard input, as a USB
    /// barcode scanner types it (or give it with --barcode).
    Scan {
        /// The bay (as `stationctl status` names it).
        bay: String,
        /// The barcode's text, instead of reading standard input.
        #[arg(long)]
        barcode: Option<String>,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The station's jobs, newest first.
    Jobs {
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One job.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Erase records, newest first.
    EraseRecords {
        /// Print the daemon's answer as JSON (with each signed certificate).
        #[arg(long)]
        json: bool,
    },
    /// A job's package arrived: the job becomes AtAWS.
    Receive {
        /// The job ID on the package.
        job_id: String,
        /// The bay its device goes into (a device there without a SIGNATURE file is then this
        /// job's MissingSignature).
        #[arg(long)]
        bay: Option<String>,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fail a job for what only a person can see.
    Fail {
        /// The job ID.
        job_id: String,
        /// MissingDevice, UnsupportedPowerSupply or UnsupportedDeviceType.
        #[arg(long)]
        code: String,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A job's device was shipped back: Returned, with carrier and tracking number.
    Ship {
        /// The job ID.
        job_id: String,
        /// The carrier.
        #[arg(long)]
        carrier: String,
        /// The tracking number.
        #[arg(long)]
        tracking: String,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The PIN-pad device in BAY has been unlocked with the PIN the console showed.
    Unlock {
        /// The bay.
        bay: String,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// A job, its device runs and every transition.
    Show {
        /// The job ID.
        job_id: String,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
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
            job_type,
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
                job_type,
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
                Ok(station::load::LoadResult::SuccessWithErrors { log, errors, .. }) => {
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
            password_file: None,
        } => inspect(&path, files, partition),
        Command::Inspect {
            path,
            files,
            password_file: Some(password_file),
            ..
        } => inspect_encrypted(&path, files, &password_file),
        Command::Status { json } => console(&cli.config, &Request::Status, json),
        Command::Watch { json } => watch(&cli.config, json),
        Command::Events { since, follow } => events(&cli.config, since, follow),
        Command::Scan { bay, barcode, json } => {
            let text = match barcode {
                Some(text) => text,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the barcode from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            console(&cli.config, &Request::Scan { bay, text }, json)
        }
        Command::Jobs { json } => console(&cli.config, &Request::Jobs, json),
        Command::Job {
            command: JobCommand::Show { job_id, json },
        } => console(&cli.config, &Request::JobShow { job_id }, json),
        Command::EraseRecords { json } => console(&cli.config, &Request::EraseRecords, json),
        Command::Receive { job_id, bay, json } => {
            console(&cli.config, &Request::Receive { job_id, bay }, json)
        }
        Command::Fail { job_id, code, json } => {
            console(&cli.config, &Request::Fail { job_id, code }, json)
        }
        Command::Ship {
            job_id,
            carrier,
            tracking,
            json,
        } => console(
            &cli.config,
            &Request::Ship {
                job_id,
                carrier,
                tracking,
            },
            json,
        ),
        Command::Unlock { bay, json } => console(&cli.config, &Request::Unlock { bay }, json),
    }
}

/// Connects to the daemon's console socket (from the configuration).
fn connect(config: &Path) -> anyhow::Result<UnixStream> {
    let config = Config::load(config)?;
    let path = &config.console.socket;
    UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach stationd on {} (is it running? `systemctl status stationd`)",
            path.display()
        )
    })
}

/// One request, one reply: prints it; exit 0 when the daemon did it, 1 when it refused.
fn console(config: &Path, request: &Request, json: bool) -> anyhow::Result<ExitCode> {
    let mut stream = connect(config)?;
    station::console::send(&mut stream, request)?;
    let reply: Reply = station::console::receive(&mut stream)?.ok_or_else(|| {
        anyhow::anyhow!("stationd closed the console connection without answering")
    })?;
    if json {
        println!("{}", reply.data);
    } else if reply.ok {
        print!("{}", reply.text);
    } else {
        eprintln!("stationctl: {}", reply.text);
    }
    Ok(if reply.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints the bays each time they change, until the daemon goes away.
fn watch(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut stream = connect(config)?;
    station::console::send(&mut stream, &Request::Watch)?;
    let terminal = std::io::stdout().is_terminal();
    while let Some(reply) = station::console::receive::<_, Reply>(&mut stream)? {
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", reply.data)?;
        } else {
            if terminal {
                // Clear the screen and go home: one live view, not a scroll.
                write!(out, "\x1b[2J\x1b[H")?;
            }
            write!(out, "{}", reply.text)?;
            if !terminal {
                writeln!(out)?;
            }
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints events as JSON lines until the daemon closes the stream.
fn events(config: &Path, since: i64, follow: bool) -> anyhow::Result<ExitCode> {
    let mut stream = connect(config)?;
    station::console::send(&mut stream, &Request::Events { since, follow })?;
    while let Some(reply) = station::console::receive::<_, Reply>(&mut stream)? {
        if !reply.ok {
            eprintln!("stationctl: {}", reply.text);
            return Ok(ExitCode::from(1));
        }
        let mut out = std::io::stdout().lock();
        write!(out, "{}", reply.text)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
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

/// `stationctl inspect --password-file`: what the TrueCrypt header says, and with `--files`
/// the decrypted filesystem's entries. Exit codes as `inspect`.
fn inspect_encrypted(path: &Path, files: bool, password_file: &Path) -> anyhow::Result<ExitCode> {
    let text =
        zeroize::Zeroizing::new(std::fs::read(password_file).with_context(|| {
            format!("cannot read the password file {}", password_file.display())
        })?);
    // The first line, as an editor or `echo` leaves it.
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let password = line.strip_suffix(b"\r").unwrap_or(line);
    let unlocked = station::unlock::open_volume(path, station::unlock::Container::Any, password)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let all_read = if files {
        let stderr = std::io::stderr();
        let mut problems = stderr.lock();
        station::inspect::list_files_on(unlocked.source, &mut out, &mut problems)?
    } else {
        writeln!(out, "{}: {}", unlocked.what, unlocked.info)
            .context("cannot write to standard output")?;
        true
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
