//! `stationctl load` of a raw image into an EBS snapshot through the EBS direct API (moto),
//! read back block by block.

use std::process::Command;

use crate::helper::{repo, start_moto, venv};

fn aws(port: u16, args: &[&str]) -> String {
    let out = Command::new(venv().join("bin/aws"))
        .args(args)
        .args([
            "--endpoint-url",
            &format!("http://127.0.0.1:{port}"),
            "--region",
            "us-east-1",
        ])
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

#[test]
fn an_image_with_zero_regions_becomes_a_snapshot() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // 6 MiB + 100 KiB: blocks 0-3 random, 4-7 zeros (not sent), 8-11 random, a partial last block.
    let mut bytes = vec![0u8; 6 * 1024 * 1024 + 100 * 1024];
    let mut x: u64 = 0xDEAD_BEEF_1234_5678;
    for (i, b) in bytes.iter_mut().enumerate() {
        if !(2 << 20..4 << 20).contains(&i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
    }
    let image = dir.path().join("disk.img");
    std::fs::write(&image, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let (_moto, port) = start_moto();
    aws(port, &["s3", "mb", "s3://iemanifest-bucket"]);
    let config = dir.path().join("stationd.yaml");
    std::fs::write(
        &config,
        format!("data_dir: {}\n", dir.path().join("data").display()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_stationctl"))
        .args([
            "--config",
            &config.display().to_string(),
            "load",
            "--device",
        ])
        .arg(&image)
        .arg("--manifest")
        .arg(repo().join("pipelines/testdata/manifests/guide/ebs-import-reference.yaml"))
        .args([
            "--job-id",
            "EBS01",
            "--endpoint-url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap_or_else(|e| panic!("stationctl: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().last(),
        Some("iemanifest-bucket/logsimport-log-EBS01")
    );
    let log = aws(
        port,
        &[
            "s3",
            "cp",
            "s3://iemanifest-bucket/logsimport-log-EBS01",
            "-",
        ],
    );
    let row: Vec<&str> = log.lines().nth(1).unwrap_or("").split(',').collect();
    assert_eq!(row[2..4], ["200", "OK"], "{log}");
    let snapshot = row[4].to_owned();
    assert!(snapshot.starts_with("snap-"), "{log}");
    assert_eq!(row[6], bytes.len().to_string());

    // Read the snapshot back with the AWS CLI: the written blocks are the non-zero ones and
    // each holds the image's bytes (the last one padded with zeros).
    let listed = aws(
        port,
        &["ebs", "list-snapshot-blocks", "--snapshot-id", &snapshot],
    );
    let mut parsed: Vec<(i64, String)> = listed
        .split("\"BlockIndex\": ")
        .skip(1)
        .filter_map(|s| {
            let index = s.split(',').next()?.trim().parse().ok()?;
            let token = s
                .split("\"BlockToken\": \"")
                .nth(1)?
                .split('"')
                .next()?
                .to_owned();
            Some((index, token))
        })
        .collect();
    parsed.sort();
    let indexes: Vec<i64> = parsed.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, vec![0, 1, 2, 3, 8, 9, 10, 11, 12], "{listed}");
    let block = 512 * 1024;
    for (index, token) in &parsed {
        let out_file = dir.path().join(format!("block-{index}"));
        aws(
            port,
            &[
                "ebs",
                "get-snapshot-block",
                "--snapshot-id",
                &snapshot,
                "--block-index",
                &index.to_string(),
                "--block-token",
                token,
                &out_file.display().to_string(),
            ],
        );
        let got = std::fs::read(&out_file).unwrap_or_else(|e| panic!("{e}"));
        let start = usize::try_from(*index).unwrap_or(0) * block;
        let mut want = bytes[start..bytes.len().min(start + block)].to_vec();
        want.resize(block, 0);
        assert!(got == want, "block {index} differs");
    }
}
