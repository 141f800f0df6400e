//! stationd end to end: the real systemd-udevd, loop devices, moto, the real `aws importexport`
//! for the job, and `stationctl` over the console socket. A job's device is attached as a loop
//! device; the daemon notices it, authenticates it by its SIGNATURE file, loads it, erases it.
//!
//! These tests share the machine's udev and loop devices, so they run one at a time (and every
//! daemon ignores devices that do not carry its own jobs' signatures).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::helper::{
    aws, awscli_data_path, container_disk, free_port, repo, start_moto, venv, wait_for_port, Server,
};

pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

/// Makes sure systemd-udevd is running (the daemon's device events come from it).
fn ensure_udevd() {
    let ping = Command::new("udevadm").args(["control", "--ping"]).output();
    if ping.is_ok_and(|o| o.status.success()) {
        return;
    }
    let started = Command::new("/lib/systemd/systemd-udevd")
        .arg("--daemon")
        .status()
        .unwrap_or_else(|e| panic!("systemd-udevd (Debian package udev): {e}"));
    assert!(started.success(), "systemd-udevd did not start");
    let _ = Command::new("udevadm").args(["settle"]).status();
}

/// A loop device, detached when dropped.
pub(crate) struct Loop(pub(crate) String);

impl Loop {
    pub(crate) fn attach(image: &Path) -> Self {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .output()
            .unwrap_or_else(|e| panic!("losetup: {e}"));
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The next free loop device's node (attach to it with [`Loop::attach_at`]).
    fn next_free() -> String {
        let out = Command::new("losetup")
            .arg("-f")
            .output()
            .unwrap_or_else(|e| panic!("losetup: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn attach_at(node: &str, image: &Path) -> Self {
        let ok = Command::new("losetup")
            .arg(node)
            .arg(image)
            .status()
            .unwrap_or_else(|e| panic!("losetup: {e}"));
        assert!(ok.success(), "losetup {node}");
        Self(node.to_owned())
    }

    pub(crate) fn bay(&self) -> String {
        self.0.trim_start_matches("/dev/").to_owned()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A station under test: moto, one account, and stationd (restartable).
pub(crate) struct Dock {
    pub(crate) dir: tempfile::TempDir,
    moto_port: u16,
    pub(crate) _moto: Server,
    api_port: u16,
    keys: (String, String),
    stationd: Option<Server>,
}

impl Dock {
    pub(crate) fn new(extra_config: &str) -> Self {
        ensure_udevd();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (moto, moto_port) = start_moto();
        let api_port = free_port();
        let config = format!(
            "station_name: dock-test\ndata_dir: {data}\nconsole:\n  socket: {sock}\napi:\n  listen: 127.0.0.1:{api_port}\ndevices:\n  allow_loop_devices: true\n{extra_config}",
            data = dir.path().join("data").display(),
            sock = dir.path().join("console.sock").display(),
        );
        std::fs::write(dir.path().join("stationd.yaml"), config).unwrap_or_else(|e| panic!("{e}"));
        let mut dock = Self {
            dir,
            moto_port,
            _moto: moto,
            api_port,
            keys: (String::new(), String::new()),
            stationd: None,
        };
        let out = dock.stationctl(&["account", "create", "acme"]);
        let line = out.trim().to_owned();
        let (id, secret) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("account create printed {line}"));
        dock.keys = (id.to_owned(), secret.to_owned());
        dock.start();
        dock.s3(&["s3", "mb", "s3://myawsbucket"]);
        dock
    }

    pub(crate) fn config(&self) -> String {
        self.dir.path().join("stationd.yaml").display().to_string()
    }

    pub(crate) fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stationd.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let server = Server(
            Command::new(env!("CARGO_BIN_EXE_stationd"))
                .args([
                    "--config",
                    &self.config(),
                    "--endpoint-url",
                    &format!("http://127.0.0.1:{}", self.moto_port),
                    "run",
                ])
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("stationd: {e}")),
        );
        wait_for_port(self.api_port, "stationd");
        self.stationd = Some(server);
    }

    /// kill -9: no shutdown, no cleanup.
    pub(crate) fn kill(&mut self) {
        if let Some(mut server) = self.stationd.take() {
            let _ = server.0.kill();
            let _ = server.0.wait();
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stationd.log")).unwrap_or_default()
    }

    pub(crate) fn stationctl(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_stationctl"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("stationctl: {e}"));
        assert!(
            out.status.success(),
            "stationctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.stationctl(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    pub(crate) fn s3(&self, args: &[&str]) -> String {
        aws(&format!("http://127.0.0.1:{}", self.moto_port), args)
    }

    /// `aws importexport ARGS` as the customer runs it against the station; its JSON reply.
    fn importexport(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(venv().join("bin/aws"))
            .arg("importexport")
            .args(args)
            .args([
                "--endpoint-url",
                &format!("http://127.0.0.1:{}", self.api_port),
                "--region",
                "us-east-1",
            ])
            .env("AWS_DATA_PATH", awscli_data_path())
            .env("AWS_ACCESS_KEY_ID", &self.keys.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.keys.1)
            .output()
            .unwrap_or_else(|e| panic!("aws importexport: {e}"));
        assert!(
            out.status.success(),
            "aws importexport {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `aws importexport get-status` as the customer sees it.
    fn get_status(&self, job_id: &str) -> serde_json::Value {
        self.importexport(&["get-status", "--job-id", job_id])
    }

    /// `aws importexport create-job` of an import against the station: (job ID, SIGNATURE
    /// file contents).
    pub(crate) fn create_job(&self, manifest: &str) -> (String, String) {
        self.create_job_of("Import", manifest)
    }

    /// `aws importexport create-job --job-type JOB_TYPE`: (job ID, SIGNATURE file contents).
    pub(crate) fn create_job_of(&self, job_type: &str, manifest: &str) -> (String, String) {
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, manifest).unwrap_or_else(|e| panic!("{e}"));
        let manifest_arg = format!("file://{}", path.display());
        let reply = self.importexport(&[
            "create-job",
            "--job-type",
            job_type,
            "--manifest",
            &manifest_arg,
            "--no-validate-only",
        ]);
        let job = reply["JobId"]
            .as_str()
            .unwrap_or_else(|| panic!("{reply}"))
            .to_owned();
        let signature = reply["SignatureFileContents"]
            .as_str()
            .unwrap_or_else(|| panic!("{reply}"))
            .to_owned();
        (job, signature)
    }

    /// The bay's view once `done` holds for it, within `secs`.
    pub(crate) fn wait_bay(
        &self,
        bay: &str,
        secs: u64,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let status = self.json(&["status"]);
            let view = status["bays"]
                .as_array()
                .and_then(|bays| bays.iter().find(|b| b["bay"] == bay).cloned());
            if let Some(view) = view {
                if done(&view) {
                    return view;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "bay {bay} did not get there in {secs} s: {status}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn job(&self, job_id: &str) -> serde_json::Value {
        self.json(&["job", "show", job_id])
    }
}

pub(crate) fn final_state(view: &serde_json::Value) -> bool {
    matches!(view["state"].as_str(), Some("done" | "failed" | "refused"))
}

/// The guide's TSTD1 manifest, without the PIN (the loop device has no PIN pad).
pub(crate) fn manifest() -> String {
    std::fs::read_to_string(repo().join("pipelines/testdata/manifests/guide/tstd1.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .filter(|l| !l.starts_with("pinCode"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Builds the TSTD ext4 image with `signature` as its SIGNATURE file.
pub(crate) fn tstd_image(dir: &Path, signature: &str) -> PathBuf {
    let sig = dir.join("SIGNATURE.in");
    std::fs::write(&sig, signature).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(repo().join("hw-fixtures/tstd.sh"))
        .arg(dir)
        .arg(&sig)
        .output()
        .unwrap_or_else(|e| panic!("tstd.sh: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("tstd.img")
}

fn md5_file(path: &Path) -> String {
    use md5::{Digest, Md5};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Md5::digest(&bytes))
}

/// Whether every byte of `path` (a device) reads as zero.
fn all_zero(path: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes.iter().all(|&b| b == 0)
}

/// Every source file is its object, byte for byte (the bucket is fetched in one `aws s3 cp
/// --recursive`, then compared file by file).
fn assert_objects(dock: &Dock, src: &Path, files: &[&str]) {
    let got = dock.dir.path().join("bucket");
    let _ = std::fs::remove_dir_all(&got);
    dock.s3(&[
        "s3",
        "cp",
        "--recursive",
        "--quiet",
        "s3://myawsbucket",
        &got.display().to_string(),
    ]);
    for rel in files {
        assert_eq!(md5_file(&got.join(rel)), md5_file(&src.join(rel)), "{rel}");
    }
}

#[test]
fn a_device_with_its_signature_is_loaded_verified_and_erased() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dock = Dock::new("");
    let (job_id, signature) = dock.create_job(&manifest());
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = tstd_image(work.path(), &signature);
    let device = Loop::attach(&image);

    let view = dock.wait_bay(&device.bay(), 120, final_state);
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
    assert_eq!(view["job_id"], job_id.as_str());

    let job = dock.job(&job_id);
    assert_eq!(job["progress"], "Complete", "{job}");
    assert_eq!(job["location"], "AtAWS", "{job}");
    let states: Vec<&str> = job["runs"][0]["transitions"]
        .as_array()
        .unwrap_or_else(|| panic!("{job}"))
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(
        states,
        [
            "detected",
            "identified",
            "authenticated",
            "transferring",
            "logging",
            "erasing",
            "done"
        ],
        "{job}"
    );
    assert_objects(
        &dock,
        &work.path().join("src"),
        &[
            "Notice.txt",
            "README.txt",
            "images/wookie1.jpg",
            "images/chewie.GIF",
            "images/resources/chewie.psd",
            "images/chewie.TIF",
        ],
    );
    let log = dock.s3(&[
        "s3",
        "cp",
        &format!("s3://myawsbucket/import-log-{job_id}"),
        "-",
    ]);
    assert!(log.contains(",200,OK,"), "{log}");

    // The erase: every byte of the device reads back as zero, and the record says so.
    assert!(all_zero(&device.0), "the device was not zeroed");
    let records = dock.json(&["erase-records"]);
    let record = &records["erase_records"][0];
    assert_eq!(record["result"], "verified", "{records}");
    assert_eq!(record["job_id"], job_id.as_str());
    let size = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
    assert_eq!(record["bytes_written"], size);
    assert_eq!(record["bytes_verified"], size);
    let certificate = record["certificate"].as_str().unwrap_or_default();
    assert!(
        certificate.starts_with("{\"algorithm\":\"HMAC-SHA256\""),
        "{certificate}"
    );
    assert!(
        certificate.contains(&format!("\"job_id\":\"{job_id}\"")),
        "{certificate}"
    );

    // `watch` streams the bays: its first JSON line shows this one.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_stationctl"))
        .args(["--config", &dock.config(), "watch", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("stationctl watch: {e}"));
    let first = watch.stdout.take().map(|out| {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        line
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let first: serde_json::Value = serde_json::from_str(first.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        first["bays"].as_array().is_some_and(|b| b
            .iter()
            .any(|v| v["bay"] == device.bay().as_str() && v["state"] == "done")),
        "{first}"
    );

    // A second daemon does not take over a live one's console socket.
    let second = Command::new(env!("CARGO_BIN_EXE_stationd"))
        .args(["--config", &dock.config(), "run"])
        .output()
        .unwrap_or_else(|e| panic!("stationd: {e}"));
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another stationd is answering"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // The dock's manual step: shipping it back.
    dock.stationctl(&[
        "ship",
        &job_id,
        "--carrier",
        "UPS",
        "--tracking",
        "1Z999AA10123456784",
    ]);
    let job = dock.job(&job_id);
    assert_eq!(job["location"], "Returned");
    assert_eq!(job["carrier"], "UPS");
    // What the customer sees.
    let status = dock.get_status(&job_id);
    assert_eq!(status["LocationCode"], "Returned", "{status}");
    assert_eq!(status["ProgressCode"], "Complete", "{status}");
    assert_eq!(status["Carrier"], "UPS", "{status}");
    assert_eq!(status["TrackingNumber"], "1Z999AA10123456784", "{status}");
}

#[test]
fn devices_without_a_valid_signature_are_refused_and_untouched() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dock = Dock::new("bays:\n  scan_timeout_secs: 2\n");
    let (job_id, signature) = dock.create_job(&manifest());

    // A SIGNATURE whose signature is not the job's.
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let forged = signature
        .lines()
        .map(|l| {
            if l.starts_with("signature:") {
                "signature:AAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let image = tstd_image(work.path(), &forged);
    let before = md5_file(&image);
    {
        let device = Loop::attach(&image);
        let view = dock.wait_bay(&device.bay(), 60, final_state);
        assert_eq!(view["state"], "refused", "{view}");
        let message = view["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("InvalidSignature"), "{message}");
        assert!(message.contains("not loaded and not erased"), "{message}");
    }
    assert_eq!(md5_file(&image), before, "a refused device was written to");
    assert_eq!(dock.job(&job_id)["progress"], "InvalidSignature");

    // No SIGNATURE at all, and no barcode scanned: MissingSignature, untouched.
    let bare = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = bare.path().join("src");
    std::fs::create_dir_all(&src).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("data.txt"), b"customer data").unwrap_or_else(|e| panic!("{e}"));
    let image = bare.path().join("bare.img");
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("8M")
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4: {e}"));
    assert!(mkfs.success());
    let before = md5_file(&image);
    {
        let device = Loop::attach(&image);
        let waiting = dock.wait_bay(&device.bay(), 30, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("scan the job's barcode"))
        });
        assert_eq!(waiting["state"], "identified", "{waiting}");
        let view = dock.wait_bay(&device.bay(), 30, final_state);
        assert_eq!(view["state"], "refused", "{view}");
        assert!(
            view["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("MissingSignature"),
            "{view}"
        );
    }
    assert_eq!(md5_file(&image), before, "a refused device was written to");
    let records = dock.json(&["erase-records"]);
    assert_eq!(
        records["erase_records"].as_array().map(Vec::len),
        Some(0),
        "{records}"
    );

    // Every operator action is audited; a scan for a bay that waits for nothing is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_stationctl"))
        .args([
            "--config",
            &dock.config(),
            "scan",
            "nosuchbay",
            "--barcode",
            "1.0:ABCDE:xyz",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no device in bay nosuchbay"));
}

/// A deterministic pseudo-random generator for the kill points (seeded from the clock, and
/// printed, so a failure can be replayed by hand).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn kill_9_at_random_points_resumes_to_byte_exact_objects_and_an_erased_device() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut dock = Dock::new("transfer:\n  memory_cap_mib: 64\n");
    let (job_id, signature) = dock.create_job(&manifest());

    // A bigger disk than TSTD: multipart files and many small ones, so kills land in every
    // phase: authentication, parts of multipart uploads, small uploads, verification, erase.
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("small")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("SIGNATURE"), &signature).unwrap_or_else(|e| panic!("{e}"));
    let mut files = Vec::new();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("kill-point seed {seed}");
    for (name, size) in [("big1.bin", 40 << 20), ("big2.bin", 27 << 20)] {
        let data: Vec<u8> = (0..size)
            .map(|i: usize| (next(&mut seed) as u8) ^ (i as u8))
            .collect();
        std::fs::write(src.join(name), data).unwrap_or_else(|e| panic!("{e}"));
        files.push(name.to_owned());
    }
    for i in 0..150 {
        let size = 1000 + (next(&mut seed) % 60_000) as usize;
        let data: Vec<u8> = (0..size).map(|_| next(&mut seed) as u8).collect();
        let name = format!("small/file{i:03}.dat");
        std::fs::write(src.join(&name), data).unwrap_or_else(|e| panic!("{e}"));
        files.push(name);
    }
    let image = work.path().join("disk.img");
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("160M")
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4: {e}"));
    assert!(mkfs.success());
    let device = Loop::attach(&image);
    let bay = device.bay();

    let mut kills = 0;
    let mut phases = Vec::new();
    let state_of = |dock: &Dock| {
        let status = dock.json(&["status"]);
        status["bays"]
            .as_array()
            .and_then(|b| b.iter().find(|v| v["bay"] == bay.as_str()).cloned())
            .map(|v| v["state"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    // Nine kills at random moments, then three the moment the erase is running.
    while kills < 12 {
        let state = if kills < 9 {
            let delay = 100 + next(&mut seed) % 500;
            std::thread::sleep(Duration::from_millis(delay));
            format!("{}@{delay}ms", state_of(&dock))
        } else {
            let start = Instant::now();
            loop {
                let state = state_of(&dock);
                if state == "erasing" || matches!(state.as_str(), "done" | "failed" | "refused") {
                    break state;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(300),
                    "never reached the erase\n{}",
                    dock.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        if ["done", "failed", "refused"]
            .iter()
            .any(|f| state.starts_with(f))
        {
            break;
        }
        dock.kill();
        kills += 1;
        phases.push(state);
        dock.start();
    }
    eprintln!("killed {kills} times, in: {phases:?}");
    assert!(
        kills >= 10,
        "the job finished before 10 kills ({phases:?}): make the disk bigger"
    );
    assert!(
        phases.iter().filter(|p| p.as_str() == "erasing").count() >= 2,
        "fewer than 2 kills landed in the erase: {phases:?}"
    );

    let view = dock.wait_bay(&bay, 300, final_state);
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
    let job = dock.job(&job_id);
    assert_eq!(job["progress"], "Complete", "{job}");
    let file_refs: Vec<&str> = files.iter().map(String::as_str).collect();
    assert_objects(&dock, &src, &file_refs);
    let uploads = dock.s3(&["s3api", "list-multipart-uploads", "--bucket", "myawsbucket"]);
    assert!(
        !uploads.contains("UploadId"),
        "multipart uploads left open: {uploads}"
    );
    assert!(all_zero(&device.0), "the device was not zeroed");
    let records = dock.json(&["erase-records"]);
    assert_eq!(
        records["erase_records"][0]["result"], "verified",
        "{records}"
    );
}

/// Sends a synthetic udev event for `devnode` (as a pulled or reinserted device makes).
fn trigger(action: &str, devnode: &str) {
    let ok = Command::new("udevadm")
        .args(["trigger", &format!("--action={action}"), devnode])
        .status()
        .unwrap_or_else(|e| panic!("udevadm: {e}"));
    assert!(ok.success(), "udevadm trigger --action={action} {devnode}");
}

#[test]
fn a_device_pulled_mid_transfer_resumes_when_plugged_in_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dock = Dock::new("transfer:\n  memory_cap_mib: 16\n");
    let (job_id, signature) = dock.create_job(&manifest());
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("SIGNATURE"), &signature).unwrap_or_else(|e| panic!("{e}"));
    let data: Vec<u8> = (0..(90u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("video.bin"), &data).unwrap_or_else(|e| panic!("{e}"));
    let image = work.path().join("disk.img");
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("128M")
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4: {e}"));
    assert!(mkfs.success());
    let device = Loop::attach(&image);
    let bay = device.bay();
    dock.wait_bay(&bay, 60, |v| v["state"] == "transferring");

    // Pulled: the bay empties, the run keeps its state and says how to resume.
    trigger("remove", &device.0);
    let start = Instant::now();
    loop {
        let status = dock.json(&["status"]);
        let present = status["bays"]
            .as_array()
            .is_some_and(|b| b.iter().any(|v| v["bay"] == bay.as_str()));
        if !present {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the bay did not empty: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = Instant::now();
    let job = loop {
        let job = dock.job(&job_id);
        if job["runs"][0]["run"]["message"] == "the device was pulled; plug it in again to resume" {
            break job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run did not stop: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["runs"][0]["run"]["state"], "transferring", "{job}");
    assert_eq!(job["progress"], "InProgress", "{job}");

    // Plugged in again: the same run resumes and finishes.
    trigger("add", &device.0);
    let view = dock.wait_bay(&bay, 180, final_state);
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
    let job = dock.job(&job_id);
    assert_eq!(job["progress"], "Complete", "{job}");
    assert_eq!(
        job["runs"].as_array().map(Vec::len),
        Some(1),
        "one run, resumed: {job}"
    );
    assert_objects(&dock, &src, &["video.bin"]);
}

#[test]
fn a_stalled_transfer_fails_with_device_error_and_the_device_is_still_erased() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dock = Dock::new("bays:\n  stall_timeout_secs: 3\n");
    let (job_id, signature) = dock.create_job(&manifest());
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = tstd_image(work.path(), &signature);
    // The target stops answering (its process is stopped): uploads hang, progress stops.
    let moto = dock._moto.0.id().to_string();
    let stop = Command::new("kill").args(["-STOP", &moto]).status();
    assert!(stop.is_ok_and(|s| s.success()));
    let device = Loop::attach(&image);
    let view = dock.wait_bay(&device.bay(), 120, final_state);
    let _ = Command::new("kill").args(["-CONT", &moto]).status();
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
    let job = dock.job(&job_id);
    assert_eq!(job["progress"], "DeviceError", "{job}");
    let messages: Vec<&str> = job["runs"][0]["transitions"]
        .as_array()
        .unwrap_or_else(|| panic!("{job}"))
        .iter()
        .filter_map(|t| t["message"].as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("no progress for 3 s (DeviceError)")),
        "{messages:?}"
    );
    assert!(
        all_zero(&device.0),
        "a failed import's device is erased too"
    );
}

#[test]
fn an_ebs_device_is_authenticated_by_the_scanned_barcode() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dock = Dock::new("bays:\n  scan_timeout_secs: 60\n");
    let manifest: String = std::fs::read_to_string(
        repo().join("pipelines/testdata/manifests/guide/ebs-import-required.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .replace("logBucket: myBucket", "logBucket: myawsbucket");
    let (job_id, signature_file) = dock.create_job(&manifest);
    let signature = signature_file
        .lines()
        .find_map(|l| l.strip_prefix("signature:"))
        .unwrap_or_else(|| panic!("{signature_file}"));

    // A raw disk (EBS imports never read a filesystem): random and all-zero stretches.
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = work.path().join("volume.img");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = vec![0u8; 6 << 20];
    for (i, b) in bytes.iter_mut().enumerate() {
        if !(2 << 20..4 << 20).contains(&i) {
            *b = next(&mut seed) as u8;
        }
    }
    std::fs::write(&image, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let device = Loop::attach(&image);
    let bay = device.bay();
    dock.wait_bay(&bay, 30, |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("scan the job's barcode"))
    });

    // A scan that is not a job barcode is refused; the bay keeps waiting.
    let scan = |line: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stationctl"))
            .args(["--config", &dock.config(), "scan", &bay])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(line.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
    };
    let out = scan("4006381333931\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dock.wait_bay(&bay, 30, |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a job barcode"))
    });
    // The scanner types the barcode and Enter, as `stationctl scan` reads it.
    let out = scan(&format!("1.0:{job_id}:{signature}\r\n"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let view = dock.wait_bay(&bay, 120, final_state);
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
    let job = dock.job(&job_id);
    assert_eq!(job["progress"], "Complete", "{job}");
    let transitions = job["runs"][0]["transitions"].to_string();
    assert!(transitions.contains("barcode verified"), "{transitions}");
    let log = dock.s3(&[
        "s3",
        "cp",
        &format!("s3://myawsbucket/import-log-{job_id}"),
        "-",
    ]);
    assert!(!log.is_empty());
    assert!(all_zero(&device.0), "the device was not zeroed");
}

#[test]
fn truecrypt_containers_are_opened_with_the_manifest_password_or_erased_unloaded() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dock = Dock::new("");
    let manifest = format!("{}trueCryptPassword: correct horse battery\n", manifest());
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    // The container named after the job, opened with the manifest's password: loaded.
    let (job_id, signature) = dock.create_job(&manifest);
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("SIGNATURE"), &signature).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("ledger.csv"), b"2009-02-03,42\n".repeat(5000))
        .unwrap_or_else(|e| panic!("{e}"));
    let disk = container_disk(
        work.path(),
        &src,
        "correct horse battery",
        &[&format!("{job_id}.tc")],
    );
    {
        let device = Loop::attach(&disk);
        let view = dock.wait_bay(&device.bay(), 180, final_state);
        assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
        assert_eq!(dock.job(&job_id)["progress"], "Complete");
        let transitions = dock.job(&job_id)["runs"][0]["transitions"].to_string();
        assert!(
            transitions.contains("SIGNATURE file in the TrueCrypt volume verified"),
            "{transitions}"
        );
        assert_objects(&dock, &src, &["ledger.csv"]);
        assert!(all_zero(&device.0), "the device was not zeroed");
    }

    // The job's container, but the manifest's password does not open it; then two
    // containers: no import, UnsupportedFileFormat, and the device is erased all the same.
    for (password, names) in [
        ("another password", vec!["{job}.tc"]),
        ("correct horse battery", vec!["{job}.tc", "spare.tc"]),
    ] {
        let (job_id, signature) = dock.create_job(&manifest);
        std::fs::write(src.join("SIGNATURE"), &signature).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = names.iter().map(|n| n.replace("{job}", &job_id)).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let disk = container_disk(work.path(), &src, password, &refs);
        let device = Loop::attach(&disk);
        let view = dock.wait_bay(&device.bay(), 180, final_state);
        assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
        let job = dock.job(&job_id);
        assert_eq!(job["progress"], "UnsupportedFileFormat", "{job}");
        let transitions = job["runs"][0]["transitions"].to_string();
        assert!(
            transitions.contains("no import: the device will be erased"),
            "{transitions}"
        );
        assert!(all_zero(&device.0), "the device was not zeroed");
    }
}

#[test]
fn a_pin_pad_device_waits_for_the_operator_to_unlock_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dock = Dock::new("bays:\n  unlock_timeout_secs: 8\n");
    // The guide's TSTD1 manifest as it is, with its pinCode.
    let manifest =
        std::fs::read_to_string(repo().join("pipelines/testdata/manifests/guide/tstd1.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
    let (job_id, signature) = dock.create_job(&manifest);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = tstd_image(work.path(), &signature);

    // The package arrives; the operator says which bay the device goes into. Until it is
    // unlocked the device shows udev nothing, and the console shows the PIN.
    let node = Loop::next_free();
    let bay = node.trim_start_matches("/dev/").to_owned();
    dock.stationctl(&["receive", &job_id, "--bay", &bay]);
    let locked = dock.wait_bay(&bay, 10, |v| v["job_id"] == job_id.as_str());
    let message = locked["message"].as_str().unwrap_or_default();
    assert!(message.contains("type PIN 4321 on its keypad"), "{locked}");
    dock.stationctl(&["unlock", &bay]);
    // Unlocked: the device appears.
    let device = Loop::attach_at(&node, &image);
    let view = dock.wait_bay(&bay, 120, final_state);
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
    let job = dock.job(&job_id);
    assert_eq!(job["progress"], "Complete", "{job}");
    let states = job["runs"][0]["transitions"].to_string();
    assert!(
        states.contains("the operator unlocked the PIN-pad device"),
        "{states}"
    );
    drop(device);

    // Never unlocked: DeviceError when the time is up, and nothing else happens.
    let (job_id, _) = dock.create_job(&manifest);
    dock.stationctl(&["receive", &job_id, "--bay", "usb-dock-7"]);
    let view = dock.wait_bay("usb-dock-7", 30, |v| v["state"] == "failed");
    assert!(
        view["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("DeviceError"),
        "{view}"
    );
    assert_eq!(dock.job(&job_id)["progress"], "DeviceError");
}

/// The guide's TSTDA export of myawsbucket onto `file_system`, in a TrueCrypt container.
fn export_manifest(file_system: &str) -> String {
    crate::load::guide("tstda")
        .replace("manifestVersion: 1.2\n", "manifestVersion: 2.0\n")
        .replace(
            "fileSystem: FAT32\n",
            &format!("fileSystem: {file_system}\ntrueCryptPassword: correct horse battery\nnotificationEmail: jane@example.net\n"),
        )
}

/// The customer's export device: FAT32 (any filesystem would do) with the SIGNATURE file in
/// its root, `mib` MiB.
fn signed_disk(dir: &Path, signature: &str, mib: u64) -> PathBuf {
    let disk = dir.join("disk.img");
    let sig = dir.join("SIGNATURE");
    std::fs::write(&sig, signature).unwrap_or_else(|e| panic!("{e}"));
    crate::helper::fat32_image(&disk, mib, &[(&sig, "SIGNATURE")]);
    disk
}

/// Puts objects of patterned bytes into myawsbucket (`aws s3 cp`: multipart past 8 MiB), one
/// (key, length) each; returns `bucket/key` -> bytes.
fn put_objects(
    dock: &Dock,
    dir: &Path,
    objects: &[(&str, usize)],
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for &(key, len) in objects {
        let file = dir.join(key.replace('/', "_"));
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
        dock.s3(&[
            "s3",
            "cp",
            &file.display().to_string(),
            &format!("s3://myawsbucket/{key}"),
        ]);
        out.insert(format!("myawsbucket/{key}"), bytes);
    }
    out
}

/// Mount points under `dir`, and loop devices on files under it.
fn export_plumbing(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    let mut found: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&dir)))
        .map(str::to_owned)
        .collect();
    let losetup = Command::new("losetup")
        .arg("-a")
        .output()
        .unwrap_or_else(|e| panic!("losetup: {e}"));
    found.extend(
        String::from_utf8_lossy(&losetup.stdout)
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_owned),
    );
    found
}

#[test]
fn an_export_killed_mid_transfer_starts_again_and_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut dock = Dock::new("");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let objects = put_objects(
        &dock,
        work.path(),
        &[("a.bin", 12usize << 20), ("b.txt", 5000)],
    );
    let (job_id, signature) = dock.create_job_of("Export", &export_manifest("EXT4"));
    let disk = signed_disk(work.path(), &signature, 64);
    let plumbing_dir = dock.dir.path().join("data").join("export");

    // The store stops answering: the device is formatted and mounted, the export waits.
    let moto = dock._moto.0.id().to_string();
    let stop = Command::new("kill").args(["-STOP", &moto]).status();
    assert!(stop.is_ok_and(|s| s.success()));
    let device = Loop::attach(&disk);
    let start = Instant::now();
    // Outer ext4, the FUSE plaintext, the inner ext4 and its loop device.
    while export_plumbing(&plumbing_dir).len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the export never mounted its layers: {:?}\n{}",
            export_plumbing(&plumbing_dir),
            dock.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    dock.kill();
    let _ = Command::new("kill").args(["-CONT", &moto]).status();
    assert!(!export_plumbing(&plumbing_dir).is_empty());

    // A new daemon takes the leftovers down, formats again and exports.
    dock.start();
    let view = dock.wait_bay(&device.bay(), 180, final_state);
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
    assert_eq!(dock.job(&job_id)["progress"], "Complete");
    assert_eq!(export_plumbing(&plumbing_dir), Vec::<String>::new());
    drop(device);
    let plain = crate::export::decrypt(&disk, &job_id, "correct horse battery", work.path());
    let mount = crate::export::Mount::new(&plain, &work.path().join("mnt"), false);
    assert!(
        crate::export::files(&mount.0) == objects,
        "the files are not the objects"
    );
}

#[test]
fn an_export_device_is_formatted_written_and_not_erased() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dock = Dock::new("");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let objects = put_objects(
        &dock,
        work.path(),
        &[
            ("docs/a.txt", 3000usize),
            ("docs/b.bin", 9 << 20),
            ("z.txt", 10),
        ],
    );
    let (job_id, signature) = dock.create_job_of("Export", &export_manifest("NTFS"));

    let disk = signed_disk(work.path(), &signature, 64);

    {
        let device = Loop::attach(&disk);
        let view = dock.wait_bay(&device.bay(), 300, final_state);
        assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
        assert!(
            view["message"]
                .as_str()
                .unwrap_or("")
                .contains("export written"),
            "{view}"
        );
        let job = dock.job(&job_id);
        assert_eq!(job["progress"], "Complete", "{job}");
        let transitions = job["runs"][0]["transitions"].to_string();
        assert!(
            transitions.contains("formatting the device (NTFS, TrueCrypt container inside)"),
            "{transitions}"
        );
        // The container's plaintext is a loop device on a file in the data directory: the
        // daemon leaves it alone (no run identifies it).
        let events = dock.stationctl(&["events"]);
        let plumbing = dock.dir.path().join("data").join("export");
        let plumbing = plumbing.display().to_string();
        assert!(
            !events.contains(&plumbing),
            "the export's own loop device became a bay: {events}"
        );
        let records = dock.json(&["erase-records"]);
        assert_eq!(
            records["erase_records"].as_array().map(Vec::len),
            Some(0),
            "an export device was erased: {records}"
        );
        let log = dock.s3(&[
            "s3",
            "cp",
            &format!("s3://myawsbucket/export-log-{job_id}"),
            "-",
        ]);
        assert!(log.contains("# files=3 ok=3 errors=0"), "{log}");
    }

    // The delivery: NTFS holding <JOBID>.tc, whose NTFS holds the objects.
    let plain = crate::export::decrypt(&disk, &job_id, "correct horse battery", work.path());
    let mount = crate::export::Mount::new(&plain, &work.path().join("mnt"), true);
    assert!(
        crate::export::files(&mount.0) == objects,
        "the files are not the objects"
    );
}
