//! `stationctl load`: the guide's TSTD1-TSTD3 imports of a real ext4 image into moto, checked
//! object by object with the real AWS CLI, and the exit-code contract.

use std::path::Path;
use std::process::Command;

use crate::helper::{repo, start_moto};

/// Runs `aws` from the test environment against moto.
pub fn aws(port: u16, args: &[&str]) -> String {
    crate::helper::aws(&format!("http://127.0.0.1:{port}"), args)
}

/// What `stationctl load` did.
pub struct Loaded {
    /// Its exit code.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

fn load(port: u16, image: &Path, manifest: &str, job_id: &str, dir: &Path) -> Loaded {
    load_as("Import", port, image, manifest, job_id, dir)
}

/// `stationctl load --job-type JOB_TYPE` of `image` against moto on `port`, with an empty
/// configuration in `dir`.
pub fn load_as(
    job_type: &str,
    port: u16,
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
        .args([
            "--config",
            &config.display().to_string(),
            "load",
            "--device",
        ])
        .arg(image)
        .arg("--manifest")
        .arg(&manifest_path)
        .args([
            "--job-id",
            job_id,
            "--job-type",
            job_type,
            "--endpoint-url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap_or_else(|e| panic!("stationctl: {e}"));
    Loaded {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A manifest of the guide's examples, by name.
pub fn guide(name: &str) -> String {
    std::fs::read_to_string(repo().join(format!("pipelines/testdata/manifests/guide/{name}.yaml")))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The log's rows as (File, Status, Code, Key, Bytes, Content-Type).
pub fn rows(log: &str) -> Vec<(String, String, String, String, String, String)> {
    log.lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[1].into(),
                f[2].into(),
                f[3].into(),
                f[4].into(),
                f[6].into(),
                f[7].into(),
            )
        })
        .collect()
}

fn md5_hex(path: &Path) -> String {
    let out = Command::new("md5sum")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn tstd1_tstd2_tstd3_as_the_guide_shows() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let status = Command::new(repo().join("hw-fixtures/tstd.sh"))
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let image = dir.path().join("tstd.img");
    let src = dir.path().join("src");
    let (_moto, port) = start_moto();
    aws(port, &["s3", "mb", "s3://myawsbucket"]);

    // TSTD1: defaults. Keys are the paths; types from the IANA table.
    let run = load(port, &image, &guide("tstd1"), "TSTD1", dir.path());
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.lines().last(),
        Some("myawsbucket/import-log-TSTD1")
    );
    let log = aws(
        port,
        &["s3", "cp", "s3://myawsbucket/import-log-TSTD1", "-"],
    );
    let mut got = rows(&log);
    got.sort();
    let row = |f: &str, s: &str, c: &str, k: &str, b: &str, t: &str| {
        (
            f.to_owned(),
            s.to_owned(),
            c.to_owned(),
            k.to_owned(),
            b.to_owned(),
            t.to_owned(),
        )
    };
    let mut want = vec![
        row(
            "Notice.txt",
            "200",
            "OK",
            "myawsbucket/Notice.txt",
            "4325",
            "text/plain",
        ),
        row(
            "README.txt",
            "200",
            "OK",
            "myawsbucket/README.txt",
            "1000",
            "text/plain",
        ),
        row("SIGNATURE", "103", "Ignored", "", "", ""),
        row(
            "images/chewie.GIF",
            "200",
            "OK",
            "myawsbucket/images/chewie.GIF",
            "555",
            "image/gif",
        ),
        row(
            "images/chewie.TIF",
            "200",
            "OK",
            "myawsbucket/images/chewie.TIF",
            "1488",
            "image/tiff",
        ),
        row(
            "images/resources/chewie.psd",
            "200",
            "OK",
            "myawsbucket/images/resources/chewie.psd",
            "17118",
            "application/octet-stream",
        ),
        row(
            "images/wookie1.jpg",
            "200",
            "OK",
            "myawsbucket/images/wookie1.jpg",
            "10845",
            "image/jpeg",
        ),
    ];
    // The SIGNATURE row carries the file's size.
    let sig_len = std::fs::metadata(src.join("SIGNATURE"))
        .map(|m| m.len())
        .unwrap_or(0);
    want[2].4 = sig_len.to_string();
    want.sort();
    assert_eq!(got, want, "{log}");
    assert!(log.contains("# files=7 ok=6 errors=0 ignored=1"), "{log}");

    // The objects hold the files' bytes and the MD5 the log gives.
    let fetched = dir.path().join("fetched");
    aws(
        port,
        &[
            "s3",
            "cp",
            "s3://myawsbucket/images/resources/chewie.psd",
            &fetched.display().to_string(),
        ],
    );
    assert_eq!(
        md5_hex(&fetched),
        md5_hex(&src.join("images/resources/chewie.psd"))
    );
    assert!(log.contains(&md5_hex(&src.join("images/wookie1.jpg"))));

    // TSTD2: acl, prefix and logPrefix.
    let run = load(port, &image, &guide("tstd2"), "TSTD2", dir.path());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().last(),
        Some("myawsbucket/loadlogs-import-log-TSTD2")
    );
    let head = aws(
        port,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "myawsbucket",
            "--key",
            "images/images/wookie1.jpg",
        ],
    );
    assert!(head.contains("\"ContentLength\": 10845"), "{head}");
    let acl = aws(
        port,
        &[
            "s3api",
            "get-object-acl",
            "--bucket",
            "myawsbucket",
            "--key",
            "images/README.txt",
        ],
    );
    assert!(
        acl.contains("http://acs.amazonaws.com/groups/global/AllUsers"),
        "public-read: {acl}"
    );

    // TSTD3: contentTypes (case-insensitive here), prefix without a slash, ignore.
    let run = load(port, &image, &guide("tstd3"), "TSTD3", dir.path());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let log = aws(
        port,
        &["s3", "cp", "s3://myawsbucket/import-log-TSTD3", "-"],
    );
    let got = rows(&log);
    let find = |f: &str| {
        got.iter()
            .find(|r| r.0 == f)
            .cloned()
            .unwrap_or_else(|| panic!("{f}: {log}"))
    };
    assert_eq!(find("images/resources/chewie.psd").2, "Ignored");
    assert_eq!(
        find("images/wookie1.jpg").3,
        "myawsbucket/dropoffimages/wookie1.jpg"
    );
    assert_eq!(find("images/chewie.GIF").5, "application/octet-stream");
    assert_eq!(find("README.txt").5, "text/html");
    let head = aws(
        port,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "myawsbucket",
            "--key",
            "dropoffREADME.txt",
        ],
    );
    assert!(head.contains("\"ContentType\": \"text/html\""), "{head}");
}

#[test]
fn exit_codes_3_with_errors_and_1_on_failure() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("good.txt"), b"good").unwrap_or_else(|e| panic!("{e}"));
    // A name that is not UTF-8 is not imported: a 400 row, so SuccessWithErrors.
    std::fs::write(
        src.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9.txt")),
        b"x",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let image = dir.path().join("disk.img");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("8M")
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4: {e}"));
    assert!(status.success());
    let (_moto, port) = start_moto();
    aws(port, &["s3", "mb", "s3://myawsbucket"]);
    let run = load(port, &image, &guide("tstd1"), "ERR01", dir.path());
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.lines().last(),
        Some("myawsbucket/import-log-ERR01")
    );
    let log = aws(
        port,
        &["s3", "cp", "s3://myawsbucket/import-log-ERR01", "-"],
    );
    assert!(log.contains("caf\\xe9.txt,400,InvalidFileName"), "{log}");

    // No such bucket: the job fails.
    let manifest = guide("tstd1").replace("bucket: myawsbucket", "bucket: no-such-bucket");
    let run = load(port, &image, &manifest, "ERR02", dir.path());
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("NoSuchBucket"), "{}", run.stderr);
}

#[test]
fn uploads_left_by_an_interrupted_run_are_resumed_or_aborted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap_or_else(|e| panic!("{e}"));
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(src.join("big.bin"), &big).unwrap_or_else(|e| panic!("{e}"));
    let image = dir.path().join("disk.img");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&image)
        .arg("32M")
        .status()
        .unwrap_or_else(|e| panic!("mkfs.ext4: {e}"));
    assert!(status.success());
    let (_moto, port) = start_moto();
    aws(port, &["s3", "mb", "s3://myawsbucket"]);
    // What an interrupted run leaves: a stale upload, and a newer one holding part 1.
    let upload_id = |out: &str| {
        out.split("\"UploadId\": \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    let create = [
        "s3api",
        "create-multipart-upload",
        "--bucket",
        "myawsbucket",
        "--key",
        "big.bin",
    ];
    let _stale = upload_id(&aws(port, &create));
    let newer = upload_id(&aws(port, &create));
    let part1 = dir.path().join("part1");
    std::fs::write(&part1, &big[..8 * 1024 * 1024]).unwrap_or_else(|e| panic!("{e}"));
    aws(
        port,
        &[
            "s3api",
            "upload-part",
            "--bucket",
            "myawsbucket",
            "--key",
            "big.bin",
            "--part-number",
            "1",
            "--upload-id",
            &newer,
            "--body",
            &part1.display().to_string(),
        ],
    );
    let run = load(port, &image, &guide("tstd1"), "RES01", dir.path());
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let pending = aws(
        port,
        &["s3api", "list-multipart-uploads", "--bucket", "myawsbucket"],
    );
    assert!(
        !pending.contains("\"UploadId\""),
        "uploads left behind: {pending}"
    );
    let fetched = dir.path().join("fetched");
    aws(
        port,
        &[
            "s3",
            "cp",
            "s3://myawsbucket/big.bin",
            &fetched.display().to_string(),
        ],
    );
    assert_eq!(md5_hex(&fetched), md5_hex(&src.join("big.bin")));
}
