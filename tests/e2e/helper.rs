//! Running the binaries and locating test data.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
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
