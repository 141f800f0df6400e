//! `stationctl load` of a raw image into a Glacier archive: the strict Glacier test server
//! (tests/glacier/server.py) checks every part's range, content hash and tree hash and the
//! archive's tree hash; moto holds the log bucket.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::helper::{aws, free_port, repo, start_moto, venv, wait_for_port, Server};

fn start_glacier(store: &Path, flags: &[&str]) -> (Server, u16) {
    let port = free_port();
    let server = Server(
        Command::new(venv().join("bin/python"))
            .arg(repo().join("tests/glacier/server.py"))
            .args(["--port", &port.to_string(), "--store"])
            .arg(store)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("glacier server: {e}")),
    );
    wait_for_port(port, "glacier server");
    (server, port)
}

/// An image with random and all-zero regions, 10.5 MiB (11 parts of 1 MiB).
fn image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut bytes = vec![0u8; 10 * 1024 * 1024 + 512 * 1024];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for (i, b) in bytes.iter_mut().enumerate() {
        // Random for the first 5 MiB and the last 2.5 MiB; zeros between.
        if !(5 << 20..8 << 20).contains(&i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
    }
    let path = dir.join("disk.img");
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    (path, bytes)
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    manifest: PathBuf,
    store: PathBuf,
}

fn setup(moto: u16, glacier: u16, store: &Path) -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("stationd.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\ntargets:\n  us-east-1:\n    endpoint: http://127.0.0.1:{moto}\n    glacier_endpoint: http://127.0.0.1:{glacier}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let manifest = dir.path().join("glacier.yaml");
    let text = std::fs::read_to_string(
        repo().join("pipelines/testdata/manifests/guide/glacier-import-reference.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .replace("logBucket: myBucket", "logBucket: log-bucket");
    std::fs::write(&manifest, text).unwrap_or_else(|e| panic!("{e}"));
    Setup {
        dir,
        config,
        manifest,
        store: store.to_owned(),
    }
}

fn load(s: &Setup, image: &Path, job_id: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stationctl"))
        .args([
            "--config",
            &s.config.display().to_string(),
            "load",
            "--device",
        ])
        .arg(image)
        .arg("--manifest")
        .arg(&s.manifest)
        .args(["--job-id", job_id])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap_or_else(|e| panic!("stationctl: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The archives the server stored for the vault, as (id, bytes).
fn archives(store: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = store.join("MyGlacierVault");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.contains('.') {
            out.push((name, std::fs::read(entry.path()).unwrap_or_default()));
        }
    }
    out
}

fn create_vault(glacier: u16) {
    aws(
        &format!("http://127.0.0.1:{glacier}"),
        &[
            "glacier",
            "create-vault",
            "--account-id",
            "-",
            "--vault-name",
            "MyGlacierVault",
        ],
    );
}

#[test]
fn an_image_round_trips_byte_exact_and_the_log_is_written() {
    let (_moto, moto) = start_moto();
    let store_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The server refuses part 2 once (a flipped byte fails its tree hash); the station retries.
    let (_glacier, glacier) = start_glacier(store_dir.path(), &["--corrupt-part-once", "2"]);
    let s = setup(moto, glacier, store_dir.path());
    aws(
        &format!("http://127.0.0.1:{moto}"),
        &["s3", "mb", "s3://log-bucket"],
    );
    create_vault(glacier);
    let (path, bytes) = image(s.dir.path());
    let (code, stdout, stderr) = load(&s, &path, "GLC01");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("log-bucket/logsimport-log-GLC01")
    );
    let stored = archives(&s.store);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        Sha256::digest(&stored[0].1),
        Sha256::digest(&bytes),
        "the archive differs from the image"
    );
    let description = std::fs::read_to_string(
        s.store
            .join("MyGlacierVault")
            .join(format!("{}.description", stored[0].0)),
    )
    .unwrap_or_default();
    assert_eq!(description.trim(), "July 24, 2012 daily archive");
    let log = aws(
        &format!("http://127.0.0.1:{moto}"),
        &["s3", "cp", "s3://log-bucket/logsimport-log-GLC01", "-"],
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0],
        "DATE, VAULT, ARCHIVE ID, SIZE, TREE HASH, ARCHIVE COMMENT"
    );
    assert!(
        lines[1].contains(&format!("/vaults/MyGlacierVault/archives/{}", stored[0].0)),
        "{log}"
    );
    assert!(lines[1].contains(&format!(", {}, ", bytes.len())), "{log}");
    assert!(
        lines[1].ends_with("\"July 24, 2012 daily archive\""),
        "{log}"
    );
}

#[test]
fn an_interrupted_upload_resumes_from_its_stored_upload_id() {
    let (_moto, moto) = start_moto();
    let store_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The server fails every request after 4 parts: the first load stops with an error.
    let (glacier_server, glacier) = start_glacier(store_dir.path(), &["--fail-after-parts", "4"]);
    let s = setup(moto, glacier, store_dir.path());
    aws(
        &format!("http://127.0.0.1:{moto}"),
        &["s3", "mb", "s3://log-bucket"],
    );
    create_vault(glacier);
    let (path, bytes) = image(s.dir.path());
    let (code, stdout, stderr) = load(&s, &path, "GLC02");
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let state = s.dir.path().join("data/load-state/GLC02.glacier-upload");
    assert!(state.exists(), "the upload ID was not kept");
    // The same store, restarted without the fault on the port the config names.
    drop(glacier_server);
    let _glacier = Server(
        Command::new(venv().join("bin/python"))
            .arg(repo().join("tests/glacier/server.py"))
            .args(["--port", &glacier.to_string(), "--store"])
            .arg(store_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("glacier server: {e}")),
    );
    wait_for_port(glacier, "glacier server");
    let (code, stdout, stderr) = load(&s, &path, "GLC02");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let stored = archives(&s.store);
    assert_eq!(stored.len(), 1);
    assert_eq!(Sha256::digest(&stored[0].1), Sha256::digest(&bytes));
    assert!(!state.exists(), "the upload ID outlived the archive");
}
