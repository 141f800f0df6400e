//! The control-plane API with the real `aws importexport` (awscli v1) and boto3, against a
//! real stationd whose buckets and vaults live on a moto server. The client-side checks are in
//! tests/api/clients.py; this module starts the servers and runs it.

use std::process::Command;

use crate::helper::{
    awscli_data_path, free_port, repo, start_moto, stationctl, venv, wait_for_port, Server,
};

#[test]
fn aws_cli_and_boto3_against_stationd_and_moto() {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("stationd.yaml");
    let socket = dir.path().join("console.sock");
    std::fs::write(
        &config,
        format!(
            "station_name: test-dock\nconsole:\n  socket: {}\n",
            socket.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let config_arg = config.display().to_string();

    let (_moto, moto_port) = start_moto();

    let mut keys = Vec::new();
    for name in ["acme", "other", "quota"] {
        let run = stationctl(
            &[
                "--config",
                &config_arg,
                "account",
                "create",
                name,
                "--data-dir",
                &data_arg,
            ],
            b"",
        );
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let line = run.stdout.trim_end().to_owned();
        // The contract: access key ID and secret on one line, one space between.
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 2, "{line}");
        assert!(
            parts[0].starts_with("AKIA") && parts[1].len() == 40,
            "{line}"
        );
        keys.push(line);
    }

    let api_port = free_port();
    let _stationd = Server(
        Command::new(env!("CARGO_BIN_EXE_stationd"))
            .args([
                "--config",
                &config_arg,
                "--data-dir",
                &data_arg,
                "--api-listen",
                &format!("127.0.0.1:{api_port}"),
                "--endpoint-url",
                &format!("http://127.0.0.1:{moto_port}"),
                "run",
            ])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .spawn()
            .unwrap_or_else(|e| panic!("stationd: {e}")),
    );
    wait_for_port(api_port, "stationd");

    let data_path = awscli_data_path();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/api/clients.py"))
        .env("PATH", path)
        // boto3's botocore lacks the importexport model; awscli v1 ships it.
        .env("AWS_DATA_PATH", data_path)
        .env("STATION_ENDPOINT", format!("http://127.0.0.1:{api_port}"))
        .env("MOTO_ENDPOINT", format!("http://127.0.0.1:{moto_port}"))
        .env("STATION_DB", data.join("station.db"))
        .env("ACME_KEYS", &keys[0])
        .env("OTHER_KEYS", &keys[1])
        .env("QUOTA_KEYS", &keys[2])
        .env(
            "GUIDE_MANIFESTS",
            repo().join("pipelines/testdata/manifests/guide"),
        )
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| panic!("python: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
}
