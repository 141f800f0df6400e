//! `drivers::export_fs` with the real parts (root, loop devices, FUSE): for ext4 and NTFS, with
//! and without a TrueCrypt container, on a sparse image file, files written with `std::fs` are
//! read back without mounting, through our own filesystem readers (and `truecrypt::open` for
//! the container), and `cryptsetup tcryptDump` accepts the container. After `finish` nothing
//! may stay mounted under the work directory and no loop device may point at the image.
//! Skipped (with the reason printed) when not root or without /dev/fuse or loop devices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::export_fs::{ContainerSpec, ExportFsError, ExportFsKind, ExportVolume};
use drivers::fs::file_source::FileSource;
use drivers::fs::{open_filesystem, FileSystem};
use drivers::source::{ImageFile, ReadAt};
use drivers::truecrypt::{self, OpenOptions, Prf};

use crate::helper;

const JOB_FILE: &str = "JOB1234.tc";
const PASSWORD: &[u8] = b"Export password 1";
const IMAGE_SIZE: u64 = 96 << 20;

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (mount, losetup, FUSE)");
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing");
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control is missing (no loop devices)");
    }
    None
}

/// A sparse image file of `size` bytes.
fn image(dir: &Path, size: u64) -> PathBuf {
    let path = dir.join("device.img");
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    file.set_len(size).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// The files an export writes: small, empty, 3 MiB, nested, a space and non-ASCII in names.
fn write_files(root: &Path) {
    let mut rng = helper::Rng(0x5eed_0001);
    let big: Vec<u8> = (0..3 << 20).map(|_| rng.next() as u8).collect();
    let files: [(&str, &[u8]); 6] = [
        ("hello.txt", b"hello, export\n"),
        ("empty", b""),
        ("big.bin", &big),
        ("nested/deeper/part-0001.csv", b"a,b,c\n1,2,3\n"),
        ("nested/with space.txt", b"spaces are fine\n"),
        (
            "nested/\u{fc}nicode \u{e9}t\u{e9}.txt",
            "caf\u{e9}\n".as_bytes(),
        ),
    ];
    for (name, bytes) in files {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{parent:?}: {e}"));
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    }
}

/// Every mount point under `dir` in this process's mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p.starts_with(&prefix))
        .collect()
}

/// `losetup -a` lines that mention `needle`.
fn loops_mentioning(needle: &Path) -> Vec<String> {
    let out = Command::new("losetup")
        .arg("-a")
        .output()
        .unwrap_or_else(|e| panic!("losetup: {e}"));
    let needle = needle.to_string_lossy().into_owned();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

fn assert_all_gone(dir: &Path, image: &Path) {
    assert_eq!(mounts_under(dir), Vec::<String>::new(), "left mounted");
    assert_eq!(loops_mentioning(image), Vec::<String>::new(), "loop left");
    assert_eq!(loops_mentioning(dir), Vec::<String>::new(), "loop left");
}

/// The tree a reader shows, without ext4's lost+found.
fn reader_tree(fs: &dyn FileSystem) -> BTreeMap<Vec<u8>, helper::Seen> {
    helper::reader_tree(fs)
        .into_iter()
        .filter(|(path, _)| !path.starts_with(b"lost+found"))
        .collect()
}

fn round_trip(name: &str, kind: ExportFsKind, container: bool) {
    if let Some(why) = skip_reason() {
        eprintln!("{name}: skipped, {why}");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = image(dir.path(), IMAGE_SIZE);
    let work = dir.path().join("work");
    let src = dir.path().join("src");
    write_files(&src);

    let spec = container.then_some(ContainerSpec {
        file_name: JOB_FILE,
        password: PASSWORD,
    });
    let volume = ExportVolume::create(&image, kind, "StationExport", spec, &work)
        .unwrap_or_else(|e| panic!("create: {e}"));
    let created = started.elapsed();
    assert!(volume
        .root()
        .starts_with(work.canonicalize().unwrap_or_default()));
    let max = match kind {
        ExportFsKind::Ext4 => (1 << 44) - 4096,
        ExportFsKind::Ntfs => (1 << 63) - 4096,
    };
    assert_eq!(volume.max_file_size(), max);
    let free = volume.free_bytes().unwrap_or_else(|e| panic!("{e}"));
    assert!(free > 16 << 20 && free < IMAGE_SIZE, "{free} bytes free");
    write_files(volume.root());
    volume.finish().unwrap_or_else(|e| panic!("finish: {e}"));
    let finished = started.elapsed();
    assert_all_gone(&work, &image);
    assert_eq!(
        std::fs::read_dir(&work)
            .map(|d| d.count())
            .unwrap_or_default(),
        0,
        "work directory not emptied"
    );

    // Read back without mounting.
    let outer: Arc<dyn FileSystem> = Arc::from(
        open_filesystem(Arc::new(
            ImageFile::open(&image).unwrap_or_else(|e| panic!("{e}")),
        ))
        .unwrap_or_else(|e| panic!("outer filesystem: {e}")),
    );
    assert_eq!(outer.label().as_deref(), Some("StationExport"));
    let want = helper::source_tree(&src);
    if container {
        let entries = outer
            .read_dir(outer.root())
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name.to_bytes()).into_owned())
            .filter(|n| n != "lost+found")
            .collect();
        assert_eq!(names, [JOB_FILE]);
        let entry = entries
            .into_iter()
            .find(|e| e.name.to_bytes() == JOB_FILE.as_bytes())
            .unwrap_or_else(|| panic!("{JOB_FILE} not found"));
        assert!(
            entry.size > IMAGE_SIZE / 2 && entry.size % 4096 == 0,
            "container of {} bytes",
            entry.size
        );
        let file: Arc<dyn ReadAt> = Arc::new(FileSource::new(
            Arc::clone(&outer),
            entry.id,
            entry.size,
            format!("device.img:/{JOB_FILE}"),
        ));
        let plain = truecrypt::open(Arc::clone(&file), PASSWORD, &[], &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.info().prf, Prf::Ripemd160);
        assert_eq!(plain.info().chain.name(), "AES");
        let inner = open_filesystem(Arc::new(plain)).unwrap_or_else(|e| panic!("inner: {e}"));
        assert_eq!(inner.label().as_deref(), Some("StationExport"));
        helper::assert_same_tree(&want, &reader_tree(&*inner), false);

        // cryptsetup reads the container as TrueCrypt 7.1a made it.
        let copy = dir.path().join(JOB_FILE);
        let mut bytes = vec![0u8; entry.size as usize];
        file.read_exact_at(0, &mut bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&copy, &bytes).unwrap_or_else(|e| panic!("{e}"));
        drop(bytes);
        let (ok, dump) = helper::tcrypt_dump(&copy, "ripemd160", PASSWORD, &[]);
        assert!(ok, "cryptsetup tcryptDump: {dump}");
        helper::assert_created_header(&dump);
    } else {
        helper::assert_same_tree(&want, &reader_tree(&*outer), false);
    }
    eprintln!(
        "{name}: create {:.1}s, finish {:.1}s, total with checks {:.1}s",
        created.as_secs_f64(),
        (finished - created).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn loop_ext4_round_trips() {
    round_trip("loop_ext4_round_trips", ExportFsKind::Ext4, false);
}

#[test]
fn loop_ext4_in_truecrypt_round_trips() {
    round_trip(
        "loop_ext4_in_truecrypt_round_trips",
        ExportFsKind::Ext4,
        true,
    );
}

#[test]
fn loop_ntfs_round_trips() {
    round_trip("loop_ntfs_round_trips", ExportFsKind::Ntfs, false);
}

#[test]
fn loop_ntfs_in_truecrypt_round_trips() {
    round_trip(
        "loop_ntfs_in_truecrypt_round_trips",
        ExportFsKind::Ntfs,
        true,
    );
}

/// A device too small for a container: the error says so, and what was set up is gone.
#[test]
fn loop_no_room_for_a_container_leaves_nothing_behind() {
    if let Some(why) = skip_reason() {
        eprintln!("loop_no_room_for_a_container_leaves_nothing_behind: skipped, {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = image(dir.path(), 16 << 20);
    let work = dir.path().join("work");
    let spec = ContainerSpec {
        file_name: JOB_FILE,
        password: PASSWORD,
    };
    let e = ExportVolume::create(&image, ExportFsKind::Ext4, "Small", Some(spec), &work)
        .err()
        .unwrap_or_else(|| panic!("a container fitted on 16 MiB"));
    assert!(matches!(e, ExportFsError::NoRoom { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("/{JOB_FILE}: container: only "))
            && text.ends_with("use a larger device"),
        "{text}"
    );
    assert!(!text.contains("Export password"), "{text}");
    assert_all_gone(&work, &image);
}

/// Dropping a volume without `finish` unmounts lazily and detaches, without panicking.
#[test]
fn loop_drop_without_finish_unmounts() {
    if let Some(why) = skip_reason() {
        eprintln!("loop_drop_without_finish_unmounts: skipped, {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = image(dir.path(), 64 << 20);
    let work = dir.path().join("work");
    let volume = ExportVolume::create(&image, ExportFsKind::Ext4, "Dropped", None, &work)
        .unwrap_or_else(|e| panic!("create: {e}"));
    std::fs::write(volume.root().join("a.txt"), b"a").unwrap_or_else(|e| panic!("{e}"));
    drop(volume);
    assert_eq!(mounts_under(&work), Vec::<String>::new());
    // The detach completes when the lazily unmounted filesystem lets go.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !loops_mentioning(&image).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(loops_mentioning(&image), Vec::<String>::new());
}

/// Detaches a loop device on drop, so a failed assertion leaves none behind.
struct LoopDevice(PathBuf);

impl LoopDevice {
    fn attach(image: &Path) -> LoopDevice {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .unwrap_or_else(|e| panic!("losetup: {e}"));
        assert!(out.status.success(), "losetup: {out:?}");
        LoopDevice(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        ))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// On a block device (a loop device of ours): no loop device of its own for ext4, ntfs-3g as
/// `fuseblk`; while the export is mounted, a second export of the same device is refused
/// before anything is written.
#[test]
fn loop_block_device_round_trips_and_is_held_while_mounted() {
    if let Some(why) = skip_reason() {
        eprintln!("loop_block_device_round_trips_and_is_held_while_mounted: skipped, {why}");
        return;
    }
    for kind in [ExportFsKind::Ext4, ExportFsKind::Ntfs] {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let image = image(dir.path(), 64 << 20);
        let device = LoopDevice::attach(&image);
        let work = dir.path().join("work");
        let src = dir.path().join("src");
        write_files(&src);
        let volume = ExportVolume::create(&device.0, kind, "BlockDevice", None, &work)
            .unwrap_or_else(|e| panic!("{kind}: create: {e}"));
        write_files(volume.root());
        let e = ExportVolume::create(&device.0, ExportFsKind::Ext4, "Again", None, &work)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            format!(
                "{}: check: the device is in use (mounted, or held by device-mapper, md or \
                 another program); unmount or release it first; fix the job's settings",
                device.0.display()
            ),
            "{kind}"
        );
        volume
            .finish()
            .unwrap_or_else(|e| panic!("{kind}: finish: {e}"));
        assert_eq!(mounts_under(&work), Vec::<String>::new(), "{kind}");
        // Only our own loop device is left, and that one is ours to detach.
        assert_eq!(loops_mentioning(&image).len(), 1, "{kind}");
        let fs = open_filesystem(Arc::new(
            ImageFile::open(&image).unwrap_or_else(|e| panic!("{e}")),
        ))
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        helper::assert_same_tree(&helper::source_tree(&src), &reader_tree(&*fs), false);
        eprintln!(
            "loop_block_device_round_trips_and_is_held_while_mounted: {kind} {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
}
