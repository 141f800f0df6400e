//! `stationctl load` of the filesystems customers send besides ext4 and FAT: NTFS (read by our
//! reader, checked against ntfs-3g's mount of the same image) and HFS+ (an Apple-partitioned
//! xorriso image and a GPT disk, checked against the tree they were made from). Every regular
//! file becomes its object, byte for byte; symlinks and alternate data streams get log rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::helper::{aws, repo, start_moto};

fn md5_file(path: &Path) -> String {
    use md5::{Digest, Md5};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Md5::digest(&bytes))
}

/// Every regular file below `root` (symlinks and special files left out): path -> md5.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.insert(rel, md5_file(&path));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Loads `image` into a fresh bucket on moto; returns (the bucket downloaded into a directory,
/// the log's text).
fn load(image: &Path, dir: &Path, job: &str) -> (std::path::PathBuf, String) {
    let (_moto, port) = start_moto();
    let endpoint = format!("http://127.0.0.1:{port}");
    aws(&endpoint, &["s3", "mb", "s3://customer-bucket"]);
    let manifest = dir.join("manifest.yaml");
    std::fs::write(
        &manifest,
        std::fs::read_to_string(repo().join("pipelines/testdata/manifests/guide/tstd1.yaml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .replace("bucket: myawsbucket", "bucket: customer-bucket")
            .lines()
            .filter(|l| !l.starts_with("pinCode"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("stationd.yaml");
    std::fs::write(&config, "").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_stationctl"))
        .arg("--config")
        .arg(&config)
        .arg("load")
        .arg("--device")
        .arg(image)
        .arg("--manifest")
        .arg(&manifest)
        .args(["--job-id", job, "--endpoint-url", &endpoint])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap_or_else(|e| panic!("stationctl: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "load: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = dir.join(format!("bucket-{job}"));
    aws(
        &endpoint,
        &[
            "s3",
            "cp",
            "--recursive",
            "--quiet",
            "s3://customer-bucket",
            &got.display().to_string(),
        ],
    );
    let log = std::fs::read_to_string(got.join(format!("import-log-{job}")))
        .unwrap_or_else(|e| panic!("no log: {e}"));
    std::fs::remove_file(got.join(format!("import-log-{job}"))).unwrap_or_else(|e| panic!("{e}"));
    (got, log)
}

/// Unmounts a FUSE mount when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_ntfs_disk_loads_as_ntfs_3g_reads_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let built = Command::new(repo().join("hw-fixtures/ntfs.sh"))
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("ntfs.sh: {e}"));
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let image = dir.path().join("ntfs.img");
    let (got, log) = load(&image, dir.path(), "NTFS1");

    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap_or_else(|e| panic!("{e}"));
    let mounted = Command::new("ntfs-3g")
        .args(["-o", "ro"])
        .arg(&image)
        .arg(&mnt)
        .status()
        .unwrap_or_else(|e| panic!("ntfs-3g: {e}"));
    assert!(mounted.success());
    let _mount = Mount(mnt.clone());
    let mut want = tree(&mnt);
    want.remove("SIGNATURE");
    let got_tree = tree(&got);
    assert_eq!(
        got_tree.len(),
        want.len(),
        "objects: {:?}",
        got_tree.keys().collect::<Vec<_>>()
    );
    assert_eq!(got_tree, want);

    // The alternate data stream is not imported; the log says so, as does the symlinks' row.
    let ads = log
        .lines()
        .find(|l| l.contains("ads.txt:secret"))
        .unwrap_or_else(|| panic!("no row for the ADS:\n{log}"));
    assert!(ads.contains(",103,Ignored,"), "{ads}");
    assert!(
        log.lines()
            .any(|l| l.contains("link") && l.contains(",103,Ignored,")),
        "{log}"
    );
}

#[test]
fn hfs_plus_disks_load_with_their_names_as_stored() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let built = Command::new(repo().join("hw-fixtures/hfsplus.sh"))
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("hfsplus.sh: {e}"));
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    // Names stay as HFS+ stores them (NFD), so compare contents: the multiset of file MD5s.
    let contents = |t: BTreeMap<String, String>| {
        let mut v: Vec<String> = t.into_values().collect();
        v.sort();
        v
    };
    let want = contents(tree(&dir.path().join("src")));
    for (image, job) in [("hybrid.iso", "HFSP1"), ("gpt.img", "HFSP2")] {
        let (got, _log) = load(&dir.path().join(image), dir.path(), job);
        assert_eq!(contents(tree(&got)), want, "{image}");
    }
}
