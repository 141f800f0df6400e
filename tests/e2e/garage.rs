//! `stationctl load` into garage, a strict S3 store: it refuses a wrong Content-MD5 and a bad
//! signature, so the loads that succeed here show the station's Content-MD5 and signatures are
//! right. Every object is fetched back and compared byte for byte; the log's MD5 and ETag
//! columns are compared with what garage reports, including a multipart upload's `-N` ETag.

use std::path::Path;
use std::process::{Command, Output};

use md5::{Digest, Md5};

use crate::helper::{repo, start_garage, venv, Garage};

const BUCKET: &str = "myawsbucket";
const PART: usize = 8 * 1024 * 1024;

/// Runs `aws` from the test environment against garage with `key`/`secret`.
fn aws_as(garage: &Garage, key: &str, secret: &str, args: &[&str]) -> Output {
    Command::new(venv().join("bin/aws"))
        .args(args)
        .args([
            "--endpoint-url",
            &garage.endpoint(),
            "--region",
            "us-east-1",
        ])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| panic!("aws: {e}"))
}

/// Runs `aws` with garage's key and returns its stdout; panics unless it succeeds.
fn aws(garage: &Garage, args: &[&str]) -> String {
    let out = aws_as(garage, &garage.key_id, &garage.secret, args);
    assert!(
        out.status.success(),
        "aws {args:?}: {}\n--- garage log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        garage.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Loaded {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `stationctl load` of `image` with `manifest` into garage, as `key`/`secret`.
fn load_as(
    garage: &Garage,
    key: &str,
    secret: &str,
    image: &Path,
    manifest: &str,
    job_id: &str,
    dir: &Path,
) -> Loaded {
    let manifest_path = dir.join(format!("{job_id}.yaml"));
    std::fs::write(&manifest_path, manifest).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("stationd.yaml");
    std::fs::write(&config, "").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_stationctl"))
        .arg("--config")
        .arg(&config)
        .args(["load", "--device"])
        .arg(image)
        .arg("--manifest")
        .arg(&manifest_path)
        .args(["--job-id", job_id, "--endpoint-url", &garage.endpoint()])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| panic!("stationctl: {e}"));
    Loaded {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn load(garage: &Garage, image: &Path, manifest: &str, job_id: &str, dir: &Path) -> Loaded {
    load_as(
        garage,
        &garage.key_id,
        &garage.secret,
        image,
        manifest,
        job_id,
        dir,
    )
}

fn tstd1() -> String {
    std::fs::read_to_string(repo().join("pipelines/testdata/manifests/guide/tstd1.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One row of the log: the columns DateTime, File, Status, Code, Key, MD5, Bytes,
/// Content-Type, ETag.
struct Row {
    file: String,
    status: String,
    key: String,
    md5: String,
    bytes: u64,
    etag: String,
}

fn rows(log: &str) -> Vec<Row> {
    log.lines()
        .skip(1)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 9, "{l}");
            Row {
                file: f[1].into(),
                status: f[2].into(),
                key: f[4].into(),
                md5: f[5].into(),
                bytes: f[6].parse().unwrap_or(0),
                etag: f[8].into(),
            }
        })
        .collect()
}

/// The value of `"Name": "..."` (or a number) in the aws CLI's JSON output.
fn json_field(json: &str, name: &str) -> String {
    let pattern = format!("\"{name}\": ");
    let start = json
        .find(&pattern)
        .map(|i| i + pattern.len())
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    let rest = &json[start..];
    let end = rest.find([',', '\n']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .replace("\\\"", "")
        .trim_matches('"')
        .to_owned()
}

/// The ETag S3 gives an object uploaded in `part`-byte parts: the MD5 of the parts' MD5s and
/// the number of parts.
fn multipart_etag(data: &[u8], part: usize) -> String {
    let mut md5s = Vec::new();
    for chunk in data.chunks(part) {
        md5s.extend_from_slice(&Md5::digest(chunk));
    }
    format!(
        "{}-{}",
        hex::encode(Md5::digest(&md5s)),
        data.len().div_ceil(part)
    )
}

/// Fetches every object the log says was loaded and checks it against the tree the image was
/// made from: the bytes, the log's MD5, and the log's ETag against garage's (HEAD and GET).
/// Returns the checked rows' files.
fn check_objects(garage: &Garage, log: &str, src: &Path, dir: &Path) -> Vec<String> {
    let mut checked = Vec::new();
    for row in rows(log).iter().filter(|r| r.status == "200") {
        let key = row
            .key
            .strip_prefix(&format!("{BUCKET}/"))
            .unwrap_or_else(|| panic!("{}: key {}", row.file, row.key));
        let want = std::fs::read(src.join(&row.file)).unwrap_or_else(|e| panic!("{e}"));
        let fetched = dir.join("fetched");
        let get = aws(
            garage,
            &[
                "s3api",
                "get-object",
                "--bucket",
                BUCKET,
                "--key",
                key,
                &fetched.display().to_string(),
            ],
        );
        let got = std::fs::read(&fetched).unwrap_or_else(|e| panic!("{e}"));
        assert!(got == want, "{}: the object's bytes differ", row.file);
        assert_eq!(row.bytes, want.len() as u64, "{}", row.file);
        assert_eq!(row.md5, hex::encode(Md5::digest(&want)), "{}", row.file);
        let head = aws(
            garage,
            &["s3api", "head-object", "--bucket", BUCKET, "--key", key],
        );
        assert_eq!(json_field(&head, "ETag"), row.etag, "{}: {head}", row.file);
        assert_eq!(json_field(&get, "ETag"), row.etag, "{}: {get}", row.file);
        assert_eq!(
            json_field(&head, "ContentLength"),
            want.len().to_string(),
            "{}",
            row.file
        );
        let expected_etag = if want.len() > PART {
            multipart_etag(&want, PART)
        } else {
            row.md5.clone()
        };
        assert_eq!(row.etag, expected_etag, "{}", row.file);
        checked.push(row.file.clone());
    }
    checked
}

#[test]
fn tstd1_into_garage_bytes_md5_and_etags_match() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let status = Command::new(repo().join("hw-fixtures/tstd.sh"))
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let garage = start_garage(&[BUCKET]);

    let run = load(
        &garage,
        &dir.path().join("tstd.img"),
        &tstd1(),
        "TSTD1",
        dir.path(),
    );
    assert_eq!(
        run.code,
        Some(0),
        "{}\n{}\n--- garage log:\n{}",
        run.stdout,
        run.stderr,
        garage.log()
    );
    assert_eq!(
        run.stdout.lines().last(),
        Some("myawsbucket/import-log-TSTD1")
    );
    let log = aws(
        &garage,
        &["s3", "cp", "s3://myawsbucket/import-log-TSTD1", "-"],
    );
    assert!(log.contains("# files=7 ok=6 errors=0 ignored=1"), "{log}");
    let mut checked = check_objects(&garage, &log, &dir.path().join("src"), dir.path());
    checked.sort();
    assert_eq!(
        checked,
        [
            "Notice.txt",
            "README.txt",
            "images/chewie.GIF",
            "images/chewie.TIF",
            "images/resources/chewie.psd",
            "images/wookie1.jpg"
        ],
        "{log}"
    );
}

#[test]
fn multipart_into_garage_has_the_dash_n_etag() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap_or_else(|e| panic!("{e}"));
    // 20 MiB and a bit: three 8 MiB parts, the last one short.
    let mut big = vec![0u8; 20 * 1024 * 1024 + 12345];
    rand::fill(&mut big[..]);
    std::fs::write(src.join("big.bin"), &big).unwrap_or_else(|e| panic!("{e}"));
    // Exactly one part: still a single PutObject.
    let mut one = vec![0u8; PART];
    rand::fill(&mut one[..]);
    std::fs::write(src.join("sub/one-part.bin"), &one).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("small.txt"), b"small\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("sub/empty.txt"), b"").unwrap_or_else(|e| panic!("{e}"));
    let image = dir.path().join("disk.img");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("64M")
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4: {e}"));
    assert!(status.success());
    let garage = start_garage(&[BUCKET]);

    let run = load(&garage, &image, &tstd1(), "MPU01", dir.path());
    assert_eq!(
        run.code,
        Some(0),
        "{}\n{}\n--- garage log:\n{}",
        run.stdout,
        run.stderr,
        garage.log()
    );
    let log = aws(
        &garage,
        &["s3", "cp", "s3://myawsbucket/import-log-MPU01", "-"],
    );
    let mut checked = check_objects(&garage, &log, &src, dir.path());
    checked.sort();
    assert_eq!(
        checked,
        ["big.bin", "small.txt", "sub/empty.txt", "sub/one-part.bin"],
        "{log}"
    );
    let all = rows(&log);
    let big_row = all
        .iter()
        .find(|r| r.file == "big.bin")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(big_row.etag.ends_with("-3"), "{log}");
    assert_eq!(big_row.etag, multipart_etag(&big, PART));
    let one_row = all
        .iter()
        .find(|r| r.file == "sub/one-part.bin")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(!one_row.etag.contains('-'), "{log}");
    // No multipart upload is left behind.
    let uploads = aws(
        &garage,
        &["s3api", "list-multipart-uploads", "--bucket", BUCKET],
    );
    assert!(!uploads.contains("UploadId"), "{uploads}");
}

#[test]
fn garage_refuses_a_wrong_content_md5_and_a_bad_signature() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let garage = start_garage(&[BUCKET]);
    let body = dir.path().join("body");
    std::fs::write(&body, b"the bytes that are sent").unwrap_or_else(|e| panic!("{e}"));
    let b64 = |data: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
    };
    let put = |md5: &str, key: &str, secret: &str| {
        aws_as(
            &garage,
            key,
            secret,
            &[
                "s3api",
                "put-object",
                "--bucket",
                BUCKET,
                "--key",
                "strict",
                "--body",
                &body.display().to_string(),
                "--content-md5",
                md5,
            ],
        )
    };

    // The MD5 of other bytes: refused, and nothing is stored.
    let out = put(&b64(b"other bytes"), &garage.key_id, &garage.secret);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong Content-MD5 was accepted");
    assert!(stderr.contains("BadDigest"), "{stderr}");
    let head = aws_as(
        &garage,
        &garage.key_id,
        &garage.secret,
        &[
            "s3api",
            "head-object",
            "--bucket",
            BUCKET,
            "--key",
            "strict",
        ],
    );
    assert!(!head.status.success(), "the object was stored");

    // The right MD5 with a wrong secret: the signature is refused.
    let wrong_secret = "0".repeat(64);
    let out = put(
        &b64(b"the bytes that are sent"),
        &garage.key_id,
        &wrong_secret,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad signature was accepted");
    assert!(stderr.contains("Invalid signature"), "{stderr}");

    // The right MD5, signed right: stored.
    let out = put(
        &b64(b"the bytes that are sent"),
        &garage.key_id,
        &garage.secret,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The station signing with a wrong secret stores nothing and fails the job.
    let status = Command::new(repo().join("hw-fixtures/tstd.sh"))
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let run = load_as(
        &garage,
        &garage.key_id,
        &wrong_secret,
        &dir.path().join("tstd.img"),
        &tstd1(),
        "BADSIG",
        dir.path(),
    );
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let listing = aws(&garage, &["s3api", "list-objects-v2", "--bucket", BUCKET]);
    assert!(!listing.contains("Notice.txt"), "{listing}");
    assert!(!listing.contains("import-log-BADSIG"), "{listing}");
}
