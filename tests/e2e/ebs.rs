//! `stationctl load` of a raw image into an EBS snapshot through the EBS direct API: moto holds
//! the snapshot (and the log bucket), and the strict proxy tests/ebs/proxy.py in front of it
//! checks every block's length and SHA-256, and the completion's ChangedBlocksCount and LINEAR
//! aggregate checksum (moto checks none of them). The snapshot is read back block by block.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::helper::{repo, start_moto, venv, Server};

const BLOCK: usize = 512 * 1024;

/// The strict proxy in front of moto, on a port it picks; its stderr (one line per refusal and
/// per completed snapshot) goes to `log`.
fn start_proxy(moto: u16, flags: &[&str], log: &Path) -> (Server, u16) {
    let stderr = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let mut child = Command::new(venv().join("bin/python"))
        .arg(repo().join("tests/ebs/proxy.py"))
        .args([
            "--port",
            "0",
            "--upstream",
            &format!("http://127.0.0.1:{moto}"),
        ])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("ebs proxy: {e}"));
    let stdout = child.stdout.take();
    let server = Server(child);
    let mut line = String::new();
    if let Some(out) = stdout {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let port = line
        .trim()
        .strip_prefix("LISTENING 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the ebs proxy did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    (server, port)
}

fn aws_output(port: u16, args: &[&str]) -> Output {
    Command::new(venv().join("bin/aws"))
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
        .unwrap_or_else(|e| panic!("aws: {e}"))
}

fn aws(port: u16, args: &[&str]) -> String {
    let out = aws_output(port, args);
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `aws` that must fail with the proxy's ValidationException.
fn aws_refused(port: u16, args: &[&str], why: &str) {
    let out = aws_output(port, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "aws {args:?} was accepted ({why})");
    assert!(
        stderr.contains("ValidationException"),
        "aws {args:?} ({why}): {stderr}"
    );
}

/// 6 MiB + 100 KiB: blocks 0-3 random, 4-7 zeros (not sent), 8-11 random, a partial last block.
fn image(dir: &Path) -> (PathBuf, Vec<u8>) {
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
    let path = dir.join("disk.img");
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    (path, bytes)
}

/// Loads the image with the guide's EBS manifest: S3 (the log) straight to moto, the EBS
/// direct API through the proxy (the region's `ebs_endpoint`). Returns the snapshot ID from
/// the log.
fn load_through_proxy(dir: &Path, moto: u16, proxy: u16, image: &Path, job_id: &str) -> String {
    let config = dir.join("stationd.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\ntargets:\n  us-east-1:\n    endpoint: http://127.0.0.1:{moto}\n    ebs_endpoint: http://127.0.0.1:{proxy}\n",
            dir.join("data").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_stationctl"))
        .args([
            "--config",
            &config.display().to_string(),
            "load",
            "--device",
        ])
        .arg(image)
        .arg("--manifest")
        .arg(repo().join("pipelines/testdata/manifests/guide/ebs-import-reference.yaml"))
        .args(["--job-id", job_id])
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
    let key = format!("logsimport-log-{job_id}");
    assert_eq!(
        stdout.lines().last(),
        Some(format!("iemanifest-bucket/{key}").as_str())
    );
    let log = aws(
        moto,
        &["s3", "cp", &format!("s3://iemanifest-bucket/{key}"), "-"],
    );
    let row: Vec<&str> = log.lines().nth(1).unwrap_or("").split(',').collect();
    assert_eq!(row[2..4], ["200", "OK"], "{log}");
    assert!(row[4].starts_with("snap-"), "{log}");
    row[4].to_owned()
}

/// Reads the snapshot back from moto with the AWS CLI: the written blocks are the non-zero
/// ones and each holds the image's bytes (the last one padded with zeros).
fn assert_snapshot_holds(moto: u16, dir: &Path, snapshot: &str, bytes: &[u8]) {
    let listed = aws(
        moto,
        &["ebs", "list-snapshot-blocks", "--snapshot-id", snapshot],
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
    for (index, token) in &parsed {
        let out_file = dir.join(format!("block-{index}"));
        aws(
            moto,
            &[
                "ebs",
                "get-snapshot-block",
                "--snapshot-id",
                snapshot,
                "--block-index",
                &index.to_string(),
                "--block-token",
                token,
                &out_file.display().to_string(),
            ],
        );
        let got = std::fs::read(&out_file).unwrap_or_else(|e| panic!("{e}"));
        let start = usize::try_from(*index).unwrap_or(0) * BLOCK;
        let mut want = bytes[start..bytes.len().min(start + BLOCK)].to_vec();
        want.resize(BLOCK, 0);
        assert!(got == want, "block {index} differs");
    }
}

#[test]
fn an_image_with_zero_regions_becomes_a_snapshot() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (path, bytes) = image(dir.path());
    let (_moto, moto) = start_moto();
    let proxy_log = dir.path().join("proxy.log");
    let (_proxy, proxy) = start_proxy(moto, &["--require-aggregate"], &proxy_log);
    aws(moto, &["s3", "mb", "s3://iemanifest-bucket"]);
    let snapshot = load_through_proxy(dir.path(), moto, proxy, &path, "EBS01");
    // The proxy checked every block and the completion: nothing refused, the 9 non-zero
    // blocks counted and their LINEAR aggregate matched.
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(!log.contains("refused"), "{log}");
    assert!(
        log.contains(&format!("completed {snapshot}: blocks=9 aggregate=ok")),
        "{log}"
    );
    assert_snapshot_holds(moto, dir.path(), &snapshot, &bytes);
}

#[test]
fn a_block_refused_for_its_checksum_is_sent_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (path, bytes) = image(dir.path());
    let (_moto, moto) = start_moto();
    let proxy_log = dir.path().join("proxy.log");
    // The proxy flips a byte of block 9 the first time it arrives: its checksum check fails,
    // the station's per-block retry sends it again.
    let (_proxy, proxy) = start_proxy(
        moto,
        &["--require-aggregate", "--corrupt-block-once", "9"],
        &proxy_log,
    );
    aws(moto, &["s3", "mb", "s3://iemanifest-bucket"]);
    let snapshot = load_through_proxy(dir.path(), moto, proxy, &path, "EBS02");
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert_eq!(log.matches("refused").count(), 1, "{log}");
    assert!(
        log.contains(&format!(
            "refused PUT /snapshots/{snapshot}/blocks/9: INVALID_BLOCK"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("completed {snapshot}: blocks=9 aggregate=ok")),
        "{log}"
    );
    assert_snapshot_holds(moto, dir.path(), &snapshot, &bytes);
}

/// The proxy itself, driven with the AWS CLI: it refuses what moto would accept.
#[test]
fn the_ebs_proxy_refuses_wrong_checksums_and_counts() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_moto, moto) = start_moto();
    let proxy_log = dir.path().join("proxy.log");
    let (_proxy, proxy) = start_proxy(moto, &[], &proxy_log);
    let started = aws(
        proxy,
        &[
            "ebs",
            "start-snapshot",
            "--volume-size",
            "1",
            "--query",
            "[SnapshotId, BlockSize]",
            "--output",
            "text",
        ],
    );
    let fields: Vec<&str> = started.split_whitespace().collect();
    // moto says BlockSize 512; the proxy answers EBS's 524288 (bytes).
    assert_eq!(fields.get(1), Some(&"524288"), "{started}");
    let snapshot = fields[0].to_owned();
    assert!(snapshot.starts_with("snap-"), "{snapshot}");

    let blocks: Vec<(PathBuf, [u8; 32])> = [0x11u8, 0x22]
        .iter()
        .enumerate()
        .map(|(n, fill)| {
            let data = vec![*fill; BLOCK];
            let path = dir.path().join(format!("block{n}"));
            std::fs::write(&path, &data).unwrap_or_else(|e| panic!("{e}"));
            (path, Sha256::digest(&data).into())
        })
        .collect();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let put = |index: &str, block: usize, checksum: &str, length: &str| -> Vec<String> {
        [
            "ebs",
            "put-snapshot-block",
            "--snapshot-id",
            &snapshot,
            "--block-index",
            index,
            "--block-data",
            &blocks[block].0.display().to_string(),
            "--data-length",
            length,
            "--checksum",
            checksum,
            "--checksum-algorithm",
            "SHA256",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let (sum0, sum1) = (b64(&blocks[0].1), b64(&blocks[1].1));

    // Block 0 with block 1's checksum, and with a wrong length: refused.
    aws_refused(
        proxy,
        &strs(&put("0", 0, &sum1, "524288")),
        "a wrong checksum",
    );
    aws_refused(
        proxy,
        &strs(&put("0", 0, &sum0, "1000")),
        "a wrong x-amz-Data-Length",
    );
    // A block beyond the 1 GiB volume: refused.
    aws_refused(
        proxy,
        &strs(&put("2048", 0, &sum0, "524288")),
        "a block beyond the volume",
    );
    // The right ones pass; block 7 is written twice and counts once.
    aws(proxy, &strs(&put("0", 0, &sum0, "524288")));
    aws(proxy, &strs(&put("7", 0, &sum0, "524288")));
    aws(proxy, &strs(&put("7", 1, &sum1, "524288")));

    let linear = |first: &[u8; 32], second: &[u8; 32]| {
        let mut h = Sha256::new();
        h.update(first);
        h.update(second);
        b64(&h.finalize())
    };
    let aggregate = linear(&blocks[0].1, &blocks[1].1);
    let complete = |count: &str, checksum: &str| -> Vec<String> {
        [
            "ebs",
            "complete-snapshot",
            "--snapshot-id",
            &snapshot,
            "--changed-blocks-count",
            count,
            "--checksum",
            checksum,
            "--checksum-algorithm",
            "SHA256",
            "--checksum-aggregation-method",
            "LINEAR",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    aws_refused(
        proxy,
        &strs(&complete("3", &aggregate)),
        "a wrong ChangedBlocksCount",
    );
    // The aggregate of the blocks in the wrong order.
    aws_refused(
        proxy,
        &strs(&complete("2", &linear(&blocks[1].1, &blocks[0].1))),
        "a wrong aggregate checksum",
    );
    let status = aws(proxy, &strs(&complete("2", &aggregate)));
    assert!(status.contains("completed"), "{status}");
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert_eq!(log.matches("refused").count(), 5, "{log}");
    assert!(
        log.contains(&format!("completed {snapshot}: blocks=2 aggregate=ok")),
        "{log}"
    );
    // moto holds what was accepted, and only that.
    let listed = aws(
        moto,
        &[
            "ebs",
            "list-snapshot-blocks",
            "--snapshot-id",
            &snapshot,
            "--query",
            "Blocks[].BlockIndex",
            "--output",
            "text",
        ],
    );
    assert_eq!(listed.split_whitespace().collect::<Vec<_>>(), ["0", "7"]);
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
