//! Running the binaries and locating test data.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The output of one run of a binary.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The first line of standard output.
    pub fn first_line(&self) -> &str {
        self.stdout.lines().next().unwrap_or("")
    }
}

fn finish(output: Output) -> Run {
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `stationctl` with `args`, feeding `stdin`.
pub fn stationctl(args: &[&str], stdin: &[u8]) -> Run {
    run(env!("CARGO_BIN_EXE_stationctl"), args, stdin)
}

/// Runs `stationd` with `args`.
pub fn stationd(args: &[&str]) -> Run {
    run(env!("CARGO_BIN_EXE_stationd"), args, b"")
}

fn run(program: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin)
            .unwrap_or_else(|e| panic!("stdin: {e}"));
    }
    finish(
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{program}: {e}")),
    )
}

/// A guide example manifest from the pipelines crate's test data.
pub fn guide_manifest(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../pipelines/testdata/manifests/guide")
        .join(format!("{name}.yaml"))
}

/// A configuration path that does not exist, so the defaults apply without depending on
/// what this machine has in /etc.
pub fn no_config(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("stationd.yaml");
    std::fs::write(&path, "").unwrap_or_else(|e| panic!("{path:?}: {e}"));
    path.display().to_string()
}

/// Kills a server when the test ends, however it ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

pub fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python environment scripts/setup makes (awscli, boto3, moto).
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("STATION_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    assert!(
        venv.join("bin/aws").exists(),
        "{} has no awscli: run scripts/setup first",
        venv.display()
    );
    venv
}

/// A moto server (S3, Glacier, EBS) on a free port of 127.0.0.1, stopped when dropped.
pub fn start_moto() -> (Server, u16) {
    let port = free_port();
    let server = Server(
        Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("moto_server: {e}")),
    );
    wait_for_port(port, "moto");
    (server, port)
}

/// A single-node garage (a strict S3 store: it checks Content-MD5 and signatures) on free
/// ports of 127.0.0.1, with its data in a temporary directory; killed when dropped.
pub struct Garage {
    // Dropped in this order: the server is killed before its directory is removed.
    _server: Server,
    /// The directory with the configuration, the metadata, the data and garage's output.
    pub dir: tempfile::TempDir,
    /// The S3 API's port.
    pub port: u16,
    /// The access key ID allowed on every bucket.
    pub key_id: String,
    /// Its secret.
    pub secret: String,
}

impl Garage {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("garage.toml")
    }

    /// Runs the `garage` CLI against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        garage_cli(&self.config(), args)
    }

    /// Runs the `garage` CLI and panics (with garage's log) unless it succeeds.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}\n--- garage log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The end of the server's output, for failure messages.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// The `garage` binary: `$GARAGE_BIN`, else `garage` on the PATH (scripts/setup installs it).
pub fn garage_bin() -> PathBuf {
    std::env::var_os("GARAGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("garage"))
}

fn garage_cli(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(garage_bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("garage (run scripts/setup first): {e}"))
}

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// Starts a single-node garage (replication factor 1, SQLite, region us-east-1), applies its
/// layout, imports a key and creates `buckets` with read, write and owner rights for it.
/// Every step waits on a condition (the RPC answering, the command succeeding), never on a
/// fixed delay.
pub fn start_garage(buckets: &[&str]) -> Garage {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (s3, rpc) = (free_port(), free_port());
    let config = dir.path().join("garage.toml");
    let root = dir.path().display();
    std::fs::write(
        &config,
        format!(
            "metadata_dir = \"{root}/meta\"\n\
             data_dir = \"{root}/data\"\n\
             db_engine = \"sqlite\"\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             \n\
             [s3_api]\n\
             s3_region = \"us-east-1\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n",
            secret = random_hex(32),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let log =
        std::fs::File::create(dir.path().join("garage.log")).unwrap_or_else(|e| panic!("{e}"));
    let log2 = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(garage_bin())
        .arg("-c")
        .arg(&config)
        .arg("server")
        .env("RUST_LOG", "garage=warn")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .unwrap_or_else(|e| panic!("garage (run scripts/setup first): {e}"));
    let garage = Garage {
        _server: Server(child),
        dir,
        port: s3,
        key_id: format!("GK{}", random_hex(12)),
        secret: random_hex(32),
    };

    // The node is up once the CLI can reach it over RPC; its ID is the part before '@'.
    let start = Instant::now();
    loop {
        let out = garage.cli(&["status"]);
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "garage did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            garage.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = garage.cli_ok(&["node", "id", "-q"]);
    let node = id.trim().split('@').next().unwrap_or("").to_owned();
    garage.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "10G", &node]);
    garage.cli_ok(&["layout", "apply", "--version", "1"]);
    garage.cli_ok(&[
        "key",
        "import",
        "--yes",
        "-n",
        "station-tests",
        &garage.key_id,
        &garage.secret,
    ]);
    for bucket in buckets {
        // The new layout may take a moment to be in force: retry until the bucket exists.
        let start = Instant::now();
        loop {
            let out = garage.cli(&["bucket", "create", bucket]);
            if out.status.success() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "garage bucket create {bucket}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                garage.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        garage.cli_ok(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            &garage.key_id,
        ]);
    }
    wait_for_port(s3, "garage S3 API");
    garage
}

/// Runs the test environment's `aws` against `endpoint` (a local server, us-east-1, test
/// credentials); panics with its stderr when it fails, else returns its stdout.
pub fn aws(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(venv().join("bin/aws"))
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap_or_else(|e| panic!("aws: {e}"));
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where awscli v1 keeps its botocore models (for `AWS_DATA_PATH`: boto3's botocore lacks the
/// importexport model; awscli v1 ships it).
pub fn awscli_data_path() -> PathBuf {
    std::fs::read_dir(venv().join("lib"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.path().join("site-packages/awscli/botocore/data"))
        .unwrap_or_default()
}

/// The customer's TrueCrypt container: the ext4 filesystem of `src` (with its SIGNATURE)
/// written through our encrypting view into a TrueCrypt 7.1a container (AES, RIPEMD-160, the
/// guide's settings) opened with `password`, placed as `name` on a FAT32 image. Returns the
/// FAT image.
pub fn container_disk(dir: &Path, src: &Path, password: &str, names: &[&str]) -> PathBuf {
    use drivers::block_write::{WritableDevice, WriteAt};
    let plain = dir.join("plain.img");
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(src)
        .arg(&plain)
        .arg("8M")
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4: {e}"));
    assert!(mkfs.success());
    let bytes = std::fs::read(&plain).unwrap_or_else(|e| panic!("{e}"));
    let container = dir.join("container.tc");
    let size = bytes.len() as u64 + 2 * 131_072;
    std::fs::File::create(&container)
        .and_then(|f| f.set_len(size))
        .unwrap_or_else(|e| panic!("{e}"));
    let target = WritableDevice::open(&container).unwrap_or_else(|e| panic!("{e}"));
    let view = drivers::truecrypt::create(
        target,
        size,
        password.as_bytes(),
        &[],
        &drivers::truecrypt::CreateOptions::default(),
        &mut rand::rng(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    view.write_all_at(0, &bytes)
        .unwrap_or_else(|e| panic!("{e}"));
    view.flush().unwrap_or_else(|e| panic!("{e}"));
    drop(view);
    let fat = dir.join("fat.img");
    let files: Vec<(&Path, &str)> = names.iter().map(|n| (container.as_path(), *n)).collect();
    fat32_image(&fat, 40, &files);
    fat
}

/// A FAT32 image of `mib` MiB at `image` (replacing what was there) holding each (source
/// file, name in the root).
pub fn fat32_image(image: &Path, mib: u64, files: &[(&Path, &str)]) {
    let _ = std::fs::remove_file(image);
    let mkfs = Command::new("mkfs.vfat")
        .args(["-F", "32", "-C"])
        .arg(image)
        .arg((mib * 1024).to_string())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("mkfs.vfat: {e}"));
    assert!(mkfs.success());
    for (source, name) in files {
        let copied = Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(image)
            .arg(source)
            .arg(format!("::/{name}"))
            .status()
            .unwrap_or_else(|e| panic!("mcopy: {e}"));
        assert!(copied.success());
    }
}
