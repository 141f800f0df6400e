//! Erase against real loop devices: the kernel's view of the device afterwards is the oracle.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use drivers::block_write::{WritableDevice, WriteError};
use pipelines::erase::{erase, Checkpoint, ErasePlan, EraseResult, NoProgress, CHUNK};

/// A loop device over a file of random bytes, detached (and the file removed) on drop.
struct Loop {
    device: PathBuf,
    backing: PathBuf,
}

impl Loop {
    /// `len` random bytes in a file under the target's tmp dir (a real disk, not tmpfs),
    /// attached with `losetup` (plus `extra` flags).
    fn new(name: &str, len: usize, extra: &[&str]) -> Self {
        let backing = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("erase-{name}-{}.img", std::process::id()));
        let mut random = vec![0u8; len];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .unwrap_or_else(|e| panic!("/dev/urandom: {e}"));
        File::create(&backing)
            .and_then(|mut f| f.write_all(&random))
            .unwrap_or_else(|e| panic!("{}: {e}", backing.display()));
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .args(extra)
            .arg(&backing)
            .output()
            .unwrap_or_else(|e| panic!("losetup: {e}"));
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Self { device, backing }
    }

    /// The device's contents as the kernel reads them (buffered, through the page cache).
    fn read_back(&self) -> Vec<u8> {
        std::fs::read(&self.device).unwrap_or_else(|e| panic!("{}: {e}", self.device.display()))
    }

    fn backing_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.backing).unwrap_or_else(|e| panic!("{}: {e}", self.backing.display()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// Not a multiple of the 8 MiB chunk: the last write and read are short.
const SIZE: usize = 9 * CHUNK + 3 * 4096;

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

#[test]
fn erase_zeroes_a_loop_device_full_of_random_data() {
    let dev = Loop::new("full", SIZE, &[]);
    // Cache the random contents in the device's page cache first: the erase must not leave
    // stale cached pages for the read-back below.
    assert!(!all_zero(&dev.read_back()));
    let writable = WritableDevice::open(&dev.device).unwrap_or_else(|e| panic!("{e}"));
    assert!(writable.is_block_device() && writable.is_direct());
    assert_eq!(writable.logical_sector_size(), 512);
    let mut cps = Vec::new();
    let plan = ErasePlan {
        checkpoint_every: 2 * CHUNK as u64,
        ..ErasePlan::default()
    };
    let outcome = erase(
        &writable,
        &plan,
        &NoProgress,
        &AtomicBool::new(false),
        &mut |cp| cps.push(cp),
    );
    assert_eq!(outcome.result, EraseResult::Verified);
    assert_eq!(outcome.device, dev.device.display().to_string());
    assert_eq!(
        (outcome.bytes_written, outcome.bytes_verified),
        (SIZE as u64, SIZE as u64)
    );
    assert_eq!(outcome.method, "zero-overwrite, O_DIRECT 8 MiB, verify all");
    assert!(outcome.started <= outcome.ended);
    assert!(cps
        .windows(2)
        .all(|w| w[0].written_up_to <= w[1].written_up_to));
    assert_eq!(cps.last().map(|c| c.verified_up_to), Some(SIZE as u64));
    drop(writable);
    let back = dev.read_back();
    assert_eq!(back.len(), SIZE);
    assert!(all_zero(&back), "the kernel reads non-zero bytes back");
    assert!(
        all_zero(&dev.backing_bytes()),
        "the backing file is not zeroed"
    );
}

#[test]
fn erase_resumed_from_a_midway_checkpoint_gives_the_same_result() {
    let dev = Loop::new("resume", SIZE, &[]);
    let before = dev.read_back();
    let plan = ErasePlan {
        checkpoint_every: CHUNK as u64,
        ..ErasePlan::default()
    };
    // Stop at the first write checkpoint, as a kill would after persisting it.
    let stop = AtomicBool::new(false);
    let mut saved = Checkpoint::default();
    {
        let writable = WritableDevice::open(&dev.device).unwrap_or_else(|e| panic!("{e}"));
        let first = erase(&writable, &plan, &NoProgress, &stop, &mut |cp| {
            stop.store(true, Ordering::Relaxed);
            saved = cp;
        });
        assert_eq!(first.result, EraseResult::Cancelled);
    }
    let mid = usize::try_from(saved.written_up_to).unwrap_or_else(|e| panic!("{e}"));
    assert!(mid > 0 && mid < SIZE && mid % CHUNK == 0, "{saved:?}");
    let middle = dev.read_back();
    assert!(all_zero(&middle[..mid]));
    assert_eq!(middle[mid..], before[mid..], "written past the checkpoint");

    // A restarted daemon: a new descriptor, the persisted checkpoint; stop once in the verify
    // phase too, then finish.
    stop.store(false, Ordering::Relaxed);
    let writable = WritableDevice::open(&dev.device).unwrap_or_else(|e| panic!("{e}"));
    let second = erase(
        &writable,
        &ErasePlan {
            resume: Some(saved),
            ..plan.clone()
        },
        &NoProgress,
        &stop,
        &mut |cp| {
            if cp.verified_up_to > 0 {
                stop.store(true, Ordering::Relaxed);
            }
            saved = cp;
        },
    );
    assert_eq!(second.result, EraseResult::Cancelled);
    assert_eq!(saved.written_up_to, SIZE as u64);
    assert!(
        saved.verified_up_to > 0 && saved.verified_up_to < SIZE as u64,
        "{saved:?}"
    );
    let third = erase(
        &writable,
        &ErasePlan {
            resume: Some(saved),
            ..plan
        },
        &NoProgress,
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert_eq!(third.result, EraseResult::Verified);
    assert_eq!(
        (third.bytes_written, third.bytes_verified),
        (SIZE as u64, SIZE as u64)
    );
    drop(writable);
    assert!(all_zero(&dev.read_back()));
    assert!(all_zero(&dev.backing_bytes()));
}

#[test]
fn erase_refuses_a_read_only_loop_device_and_leaves_it_untouched() {
    let dev = Loop::new("ro", 4 * 1024 * 1024, &["-r"]);
    let before = dev.backing_bytes();
    let e = WritableDevice::open(&dev.device).err();
    assert!(
        matches!(e, Some(WriteError::ReadOnly { ref device, .. }) if Path::new(device) == dev.device),
        "{e:?}"
    );
    let text = e.map(|e| e.to_string()).unwrap_or_default();
    println!("{text}");
    assert!(
        text.starts_with(&format!(
            "{}: the device is read-only (",
            dev.device.display()
        )),
        "{text}"
    );
    assert_eq!(dev.read_back(), before);
    assert_eq!(dev.backing_bytes(), before);
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn run(cmd: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn erase_refuses_a_mounted_device() {
    let dev = Loop::new("mounted", 16 * 1024 * 1024, &[]);
    run("mkfs.ext4", &["-q".as_ref(), dev.device.as_os_str()]);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("erase-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    run("mount", &[dev.device.as_os_str(), dir.as_os_str()]);
    let mount = Mount(dir);
    let e = WritableDevice::open(&dev.device).err();
    assert!(matches!(e, Some(WriteError::Busy { .. })), "{e:?}");
    drop(mount);
    // Unmounted, the same device opens.
    WritableDevice::open(&dev.device).unwrap_or_else(|e| panic!("{e}"));
}
