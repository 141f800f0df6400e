//! `stationctl load --job-type Export`: the guide's TSTDA and TSTDB exports from moto onto
//! image files the station formats itself, read back through our TrueCrypt reader, the
//! kernel's ext4 and ntfs-3g, and compared file by file with the objects; the remapping rules,
//! a versioned bucket and a device that fills up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use drivers::source::ReadAt;

use crate::helper::start_moto;
use crate::load::{aws, guide, load_as, rows, Loaded};

const PASSWORD: &str = "SimpleButEasilyCrackedEXAMPLE";

/// Random bytes of `len`, written to `dir/name` (a source the objects are uploaded from).
fn source(dir: &Path, name: &str, len: usize) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("src-{n}-{}", name.len()));
    let mut bytes = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Puts `len` random bytes as `bucket/key` (one PutObject, whatever the size); returns the
/// bytes.
fn put(port: u16, dir: &Path, bucket: &str, key: &str, len: usize) -> Vec<u8> {
    let file = source(dir, key, len);
    aws(
        port,
        &[
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--body",
            &file.display().to_string(),
        ],
    );
    std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"))
}

fn put_multipart(port: u16, dir: &Path, bucket: &str, key: &str, len: usize) -> Vec<u8> {
    let file = source(dir, key, len);
    aws(
        port,
        &[
            "s3",
            "cp",
            &file.display().to_string(),
            &format!("s3://{bucket}/{key}"),
        ],
    );
    std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"))
}

/// The guide's export example `name` as this station takes it: manifestVersion 2.0 and a
/// notificationEmail, which the guide's examples (written for version 1.2) leave out.
fn export_manifest(name: &str) -> String {
    guide(name)
        .replace("manifestVersion: 1.2\n", "manifestVersion: 2.0\n")
        .replace(
            "deviceId: 532404500021\n",
            "deviceId: 532404500021\nnotificationEmail: jane.roe@example.net\n",
        )
}

fn export(port: u16, image: &Path, manifest: &str, job_id: &str, dir: &Path) -> Loaded {
    load_as("Export", port, image, manifest, job_id, dir)
}

/// A sparse image file of `mib` MiB.
fn image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(mib << 20))
        .unwrap_or_else(|e| panic!("{e}"));
    path
}

/// A read-only mount (kernel ext4 on a loop device, or ntfs-3g), unmounted when dropped.
pub(crate) struct Mount(pub(crate) PathBuf);

impl Mount {
    pub(crate) fn new(image: &Path, at: &Path, ntfs: bool) -> Self {
        std::fs::create_dir_all(at).unwrap_or_else(|e| panic!("{e}"));
        let status = if ntfs {
            Command::new("ntfs-3g")
                .args(["-o", "ro"])
                .arg(image)
                .arg(at)
                .status()
        } else {
            Command::new("mount")
                .args(["-t", "ext4", "-o", "loop,ro"])
                .arg(image)
                .arg(at)
                .status()
        };
        assert!(
            status.unwrap_or_else(|e| panic!("mount: {e}")).success(),
            "mount {}",
            image.display()
        );
        Self(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every regular file below `root`, by path relative to it.
pub(crate) fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.insert(rel, std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out.retain(|k, _| !k.starts_with("lost+found"));
    out
}

/// The container `<JOB>.tc` on `image`, decrypted by our TrueCrypt reader into a plaintext
/// image file.
pub(crate) fn decrypt(image: &Path, job_id: &str, password: &str, out: &Path) -> PathBuf {
    let unlocked = station::unlock::open_encrypted(image, job_id, password.as_bytes())
        .unwrap_or_else(|e| panic!("our reader cannot open the container: {e}"));
    let plain = out.join(format!("{job_id}-plain.img"));
    let file = std::fs::File::create(&plain).unwrap_or_else(|e| panic!("{e}"));
    let size = unlocked.source.size();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = buf.len().min((size - at) as usize);
        unlocked
            .source
            .read_exact_at(at, &mut buf[..n])
            .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::FileExt::write_all_at(&file, &buf[..n], at)
            .unwrap_or_else(|e| panic!("{e}"));
        at += n as u64;
    }
    plain
}

fn log(port: u16, s3_path: &str) -> String {
    aws(port, &["s3", "cp", s3_path, "-"])
}

type Row = (String, String, String, String);

/// The log's rows as (File, Status, Code, Key).
fn log_rows(log: &str) -> Vec<Row> {
    rows(log)
        .into_iter()
        .map(|(file, status, code, key, _, _)| (file, status, code, key))
        .collect()
}

fn row(file: &str, status: &str, code: &str, key: &str) -> Row {
    (file.into(), status.into(), code.into(), key.into())
}

#[test]
fn tstda_into_a_truecrypt_container_on_ext4() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (_moto, port) = start_moto();
    aws(port, &["s3", "mb", "s3://myawsbucket"]);
    let mut objects = BTreeMap::new();
    for (key, len) in [
        ("README.txt", 1024),
        ("NOTICE.txt", 1024),
        ("images/wookie1.jpg", 4294),
        ("images/chewie.gif", 2460),
        ("images/resources/chewie.psd", 5248),
        ("/backup/images/chewie.gif", 9780),
    ] {
        objects.insert(key, put(port, d, "myawsbucket", key, len));
    }
    // Multipart on moto: the ETag is the MD5 of the parts' MD5s, and the export checks it.
    objects.insert(
        "images/big.tif",
        put_multipart(port, d, "myawsbucket", "images/big.tif", 21 << 20),
    );
    // The guide's TSTDA asks for FAT32, which the station does not write; EXT4 here, with
    // the password that puts the files in a TrueCrypt container.
    let manifest = export_manifest("tstda").replace(
        "fileSystem: FAT32",
        &format!("fileSystem: EXT4\ntrueCryptPassword: {PASSWORD}"),
    );
    let device = image(d, "device.img", 96);
    let run = export(port, &device, &manifest, "TSTDA", d);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.lines().last(),
        Some("myawsbucket/export-log-TSTDA"),
        "{}",
        run.stdout
    );
    let text = log(port, "s3://myawsbucket/export-log-TSTDA");
    assert_eq!(
        log_rows(&text),
        vec![
            // The guide's own row says `302 Remapped`; its status table says 301.
            row(
                "EXPORT-RECOVERY/0000/0000",
                "301",
                "InvalidFilename",
                "myawsbucket//backup/images/chewie.gif"
            ),
            row(
                "myawsbucket/NOTICE.txt",
                "200",
                "OK",
                "myawsbucket/NOTICE.txt"
            ),
            row(
                "myawsbucket/README.txt",
                "200",
                "OK",
                "myawsbucket/README.txt"
            ),
            row(
                "myawsbucket/images/big.tif",
                "200",
                "OK",
                "myawsbucket/images/big.tif"
            ),
            row(
                "myawsbucket/images/chewie.gif",
                "200",
                "OK",
                "myawsbucket/images/chewie.gif"
            ),
            row(
                "myawsbucket/images/resources/chewie.psd",
                "200",
                "OK",
                "myawsbucket/images/resources/chewie.psd"
            ),
            row(
                "myawsbucket/images/wookie1.jpg",
                "200",
                "OK",
                "myawsbucket/images/wookie1.jpg"
            ),
        ],
        "{text}"
    );
    assert!(text.contains("# files=7 ok=6 errors=1 ignored=0"), "{text}");
    assert!(
        text.contains("# last-exported=myawsbucket/images/wookie1.jpg"),
        "{text}"
    );

    // The outer ext4 holds only the container, and cryptsetup reads its header.
    {
        let outer = Mount::new(&device, &d.join("outer"), false);
        let on_outer: Vec<String> = files(&outer.0).into_keys().collect();
        assert_eq!(on_outer, vec!["TSTDA.tc".to_owned()]);
        let mut dump = Command::new("cryptsetup")
            .args(["tcryptDump", "--key-file", "-"])
            .arg(outer.0.join("TSTDA.tc"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cryptsetup: {e}"));
        if let Some(mut stdin) = dump.stdin.take() {
            std::io::Write::write_all(&mut stdin, PASSWORD.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let out = dump.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("aes"), "{text}");
    }

    // Decrypted by our reader, mounted by the kernel: every file is its object.
    let plain = decrypt(&device, "TSTDA", PASSWORD, d);
    let inner = Mount::new(&plain, &d.join("inner"), false);
    let on_disk = files(&inner.0);
    let mut want = BTreeMap::new();
    for (key, bytes) in &objects {
        let path = if key.starts_with('/') {
            "EXPORT-RECOVERY/0000/0000".to_owned()
        } else {
            format!("myawsbucket/{key}")
        };
        want.insert(path, bytes.clone());
    }
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(on_disk == want, "a file differs from its object");
}

#[test]
fn tstdb_onto_ntfs_without_a_container() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (_moto, port) = start_moto();
    aws(port, &["s3", "mb", "s3://myawsbucket"]);
    aws(port, &["s3", "mb", "s3://lostbucket"]);
    let mut want = BTreeMap::new();
    for key in [
        "images/wookie1.jpg",
        "images/chewie.gif",
        "images/chewie.tif",
        "images/resources/chewie.psd",
    ] {
        let bytes = put(port, d, "myawsbucket", key, 4510);
        want.insert(format!("starwars/image-backup/{key}"), bytes);
    }
    put(port, d, "myawsbucket", "notes.txt", 10); // outside the prefix
    for key in [
        "html/directory.html",
        "images/hurley.jpg",
        "images/john.jpg",
        "images/kate.jpg",
    ] {
        let bytes = put(port, d, "lostbucket", key, 6881);
        want.insert(format!("lostbucket/{key}"), bytes);
    }
    // The beginMarker itself, keys that merely start with the endMarker, and keys after it.
    for key in ["html/", "images/kate.jpg.bak", "index.html"] {
        put(port, d, "lostbucket", key, 0);
    }
    let manifest =
        export_manifest("tstdb").replace("fileSystem: NTFS", "fileSystem: NTFS\npinCode: 4321");
    let device = image(d, "device.img", 64);
    let run = export(port, &device, &manifest, "TSTDB", d);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.lines().last(),
        Some("myawsbucket/logs/export-log-TSTDB")
    );
    let text = log(port, "s3://myawsbucket/logs/export-log-TSTDB");
    let t = "starwars/image-backup/images";
    assert_eq!(
        log_rows(&text),
        vec![
            row(
                &format!("{t}/chewie.gif"),
                "200",
                "OK",
                "myawsbucket/images/chewie.gif"
            ),
            row(
                &format!("{t}/chewie.tif"),
                "200",
                "OK",
                "myawsbucket/images/chewie.tif"
            ),
            row(
                &format!("{t}/resources/chewie.psd"),
                "200",
                "OK",
                "myawsbucket/images/resources/chewie.psd"
            ),
            row(
                &format!("{t}/wookie1.jpg"),
                "200",
                "OK",
                "myawsbucket/images/wookie1.jpg"
            ),
            row(
                "lostbucket/html/directory.html",
                "200",
                "OK",
                "lostbucket/html/directory.html"
            ),
            row(
                "lostbucket/images/hurley.jpg",
                "200",
                "OK",
                "lostbucket/images/hurley.jpg"
            ),
            row(
                "lostbucket/images/john.jpg",
                "200",
                "OK",
                "lostbucket/images/john.jpg"
            ),
            row(
                "lostbucket/images/kate.jpg",
                "200",
                "OK",
                "lostbucket/images/kate.jpg"
            ),
        ],
        "{text}"
    );
    // NTFS straight on the device, read back by ntfs-3g.
    let mount = Mount::new(&device, &d.join("mnt"), true);
    let on_disk = files(&mount.0);
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(on_disk == want, "a file differs from its object");
}

#[test]
fn remaps_versions_and_a_full_device() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (_moto, port) = start_moto();
    aws(port, &["s3", "mb", "s3://bkt"]);
    aws(
        port,
        &[
            "s3api",
            "put-bucket-versioning",
            "--bucket",
            "bkt",
            "--versioning-configuration",
            "Status=Enabled",
        ],
    );
    aws(port, &["s3", "mb", "s3://bkt2"]);
    aws(port, &["s3", "mb", "s3://myawsbucket"]);
    let mut objects = BTreeMap::new();
    // At the device's root (targetDirectory /), a key inside the recovery directory.
    objects.insert(
        "RECOVERED/0000/0000".to_owned(),
        put(port, d, "bkt2", "RECOVERED/0000/0000", 100),
    );
    for key in [
        "../escape.txt",
        "a/b/../file1",
        "a/file1",
        "dup",
        "dup/inner",
    ] {
        objects.insert(key.to_owned(), put(port, d, "bkt", key, 100));
    }
    let long = "n".repeat(256);
    objects.insert(long.clone(), put(port, d, "bkt", &long, 100));
    // A versioned key: only the latest version is exported.
    put(port, d, "bkt", "v.txt", 50);
    objects.insert("v.txt".into(), put(port, d, "bkt", "v.txt", 60));
    // Eight objects of 6 and 10 MiB: a 32 MiB device holds some of them, not all. The 10 MiB
    // ones are two chunks each: their space is allocated whole before they are written (so
    // one that does not fit fails before any byte of it is), and they are written direct.
    let big: Vec<String> = (1..=8).map(|i| format!("z{i}")).collect();
    for (i, key) in big.iter().enumerate() {
        let len = if i % 2 == 0 { 6 << 20 } else { 10 << 20 };
        objects.insert(key.clone(), put(port, d, "bkt", key, len));
    }
    let manifest = export_manifest("tstda").replace(
        "fileSystem: FAT32\noperations:\n  - exportBucket: myawsbucket",
        "fileSystem: EXT4\npinCode: 4321\nrecoveryDirectory: RECOVERED\noperations:\n  \
         - exportBucket: bkt2\n    targetDirectory: /\n  - exportBucket: bkt\n    targetDirectory: out",
    );
    let device = image(d, "device.img", 32);
    let run = export(port, &device, &manifest, "FULL1", d);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    let text = log(port, "s3://myawsbucket/export-log-FULL1");
    let got = log_rows(&text);
    assert_eq!(
        got[..9].to_vec(),
        vec![
            row(
                "RECOVERED/0000/0000",
                "301",
                "MovedPermanently",
                "bkt2/RECOVERED/0000/0000"
            ),
            row(
                "RECOVERED/0000/0001",
                "301",
                "InvalidFilename",
                "bkt/../escape.txt"
            ),
            row("out/a/file1", "200", "OK", "bkt/a/b/../file1"),
            row(
                "RECOVERED/0000/0002",
                "301",
                "MovedPermanently",
                "bkt/a/file1"
            ),
            row("out/dup", "200", "OK", "bkt/dup"),
            row(
                "RECOVERED/0000/0003",
                "301",
                "MovedPermanently",
                "bkt/dup/inner"
            ),
            row(
                "RECOVERED/0000/0004",
                "301",
                "FilenameTooLong",
                &format!("bkt/{long}")
            ),
            row("out/v.txt", "200", "OK", "bkt/v.txt"),
            row("out/z1", "200", "OK", "bkt/z1"),
        ],
        "{text}"
    );
    // Then the z objects in order until one does not fit: it gets 499 and nothing follows.
    let tail = &got[9..];
    let full_at = tail
        .iter()
        .position(|r| r.1 == "499")
        .unwrap_or_else(|| panic!("no DiskFull row: {text}"));
    assert_eq!(
        full_at + 1,
        tail.len(),
        "rows after the DiskFull row: {text}"
    );
    assert!(full_at < 7, "the device held every object: {text}");
    for (i, r) in tail[..full_at].iter().enumerate() {
        assert_eq!(
            r,
            &row(
                &format!("out/z{}", i + 2),
                "200",
                "OK",
                &format!("bkt/z{}", i + 2)
            )
        );
    }
    assert_eq!(tail[full_at].3, format!("bkt/z{}", full_at + 2));
    let last = format!("bkt/z{}", full_at + 1);
    assert!(
        text.contains(&format!("# last-exported={last}\r\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "# DiskFull: the device is full; export the rest with a new job whose operation on \
             bkt has beginMarker: z{}\r\n",
            full_at + 1
        )),
        "{text}"
    );

    // On the device: exactly the logged files, each its object (the latest version of v.txt).
    let mount = Mount::new(&device, &d.join("mnt"), false);
    let on_disk = files(&mount.0);
    let mut want = BTreeMap::new();
    for (file, status, _, key) in &got {
        if status == "200" || status == "301" {
            let key = key.split_once('/').map_or(key.as_str(), |(_, k)| k);
            want.insert(file.clone(), objects[key].clone());
        }
    }
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(on_disk == want, "a file differs from its object");
}
