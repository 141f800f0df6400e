//! Running the binaries and locating test data.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

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
