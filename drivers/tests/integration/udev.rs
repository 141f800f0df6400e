//! The udev watcher, identification and policy against the real systemd-udevd and real loop
//! devices (root only: the tests attach images with losetup and mount them).
//!
//! Other tests on the machine may attach loop devices at the same time: every assertion about
//! events filters by the loop device this test attached.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use drivers::fs::FsType;
use drivers::identity::{identify, Bus, IdentityError};
use drivers::partition::Scheme;
use drivers::policy::{check, PolicyLimits, Refusal, SizeLimit};
use drivers::udev::{DevType, DeviceAction, DeviceEvent, DeviceWatcher, WatchOptions};

/// Serialises the tests of this module: each reads the event stream of one udevd.
static UDEV: Mutex<()> = Mutex::new(());

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn udevd_answers() -> bool {
    Command::new("udevadm")
        .args(["control", "--ping", "--timeout=2"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Starts systemd-udevd when it is not running (it daemonises and stays for later tests).
fn ensure_udevd() {
    if udevd_answers() {
        return;
    }
    run("/lib/systemd/systemd-udevd", &["--daemon"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !udevd_answers() {
        assert!(Instant::now() < deadline, "systemd-udevd does not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until udevd has handled every queued event, so later events are new ones.
fn settle() {
    run("udevadm", &["settle", "--timeout=10"]);
}

/// A loop device attached to an image; detached on drop.
struct Loop {
    devnode: PathBuf,
    attached: bool,
}

impl Loop {
    fn attach(image: &Path) -> Self {
        let image = image.to_str().unwrap_or_else(|| panic!("{image:?}"));
        let devnode = PathBuf::from(run("losetup", &["-f", "--show", image]));
        Self {
            devnode,
            attached: true,
        }
    }

    fn detach(&mut self) {
        if self.attached {
            run("losetup", &["-d", self.path()]);
            self.attached = false;
        }
    }

    fn path(&self) -> &str {
        self.devnode
            .to_str()
            .unwrap_or_else(|| panic!("{:?}", self.devnode))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if self.attached {
            let _ = Command::new("losetup")
                .arg("-d")
                .arg(&self.devnode)
                .status();
        }
    }
}

/// A read-only mount; unmounted on drop.
struct Mount {
    point: PathBuf,
    mounted: bool,
}

impl Mount {
    fn new(device: &str, point: &Path) -> Self {
        let at = point.to_str().unwrap_or_else(|| panic!("{point:?}"));
        run("mount", &["-o", "ro", device, at]);
        Self {
            point: point.to_owned(),
            mounted: true,
        }
    }

    fn unmount(&mut self) {
        if self.mounted {
            let at = self
                .point
                .to_str()
                .unwrap_or_else(|| panic!("{:?}", self.point));
            run("umount", &[at]);
            self.mounted = false;
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.point).status();
        }
    }
}

/// An ext4 image of `mib` MiB made by mkfs.ext4, labelled `STATIONTEST`.
fn ext4_image(dir: &Path, mib: u64) -> PathBuf {
    let image = dir.join("disk.img");
    let file = std::fs::File::create(&image).unwrap_or_else(|e| panic!("{image:?}: {e}"));
    file.set_len(mib << 20)
        .unwrap_or_else(|e| panic!("{image:?}: {e}"));
    let path = image.to_str().unwrap_or_else(|| panic!("{image:?}"));
    run("mkfs.ext4", &["-q", "-F", "-L", "STATIONTEST", path]);
    image
}

/// The first event for `devnode` with one of `actions`, within `timeout`.
fn wait_for(
    events: &Receiver<DeviceEvent>,
    devnode: &Path,
    actions: &[DeviceAction],
    timeout: Duration,
) -> DeviceEvent {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event)
                if event.devnode == devnode
                    && actions.contains(&event.action)
                    && !event.initial =>
            {
                return event
            }
            Ok(_) => {}
            Err(e) => panic!("no {actions:?} event for {devnode:?} within {timeout:?}: {e}"),
        }
    }
}

fn limits(allow_loop: bool) -> PolicyLimits {
    PolicyLimits {
        allowed_buses: vec![Bus::Usb, Bus::Sata],
        allow_loop,
        size_limit: Some(SizeLimit::s3_and_ebs()),
    }
}

#[test]
fn loop_attach_identify_policy_mount_detach() {
    let _serial = UDEV.lock().unwrap_or_else(|e| e.into_inner());
    ensure_udevd();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let image = ext4_image(dir.path(), 64);

    let (tx, rx) = mpsc::channel();
    let watcher = DeviceWatcher::start(
        tx,
        WatchOptions {
            enumerate_existing: false,
            ..WatchOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("watcher: {e}"));

    let mut lo = Loop::attach(&image);
    let attached = wait_for(
        &rx,
        &lo.devnode,
        &[DeviceAction::Add, DeviceAction::Change],
        Duration::from_secs(10),
    );
    assert_eq!(attached.devtype, DevType::Disk);
    assert!(attached.syspath.starts_with("/sys/devices/virtual/block/"));
    assert_eq!(
        Some(attached.sysname.as_str()),
        lo.devnode.file_name().and_then(|n| n.to_str())
    );
    assert_eq!(
        attached.properties.get("SUBSYSTEM").map(String::as_str),
        Some("block")
    );
    let meta = std::fs::metadata(&lo.devnode).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        attached.devnum,
        Some((libc::major(meta.rdev()), libc::minor(meta.rdev())))
    );
    settle();

    // Identification, by device node and by sysfs path.
    let id = identify(&lo.devnode).unwrap_or_else(|e| panic!("identify: {e}"));
    assert_eq!(id.bus, Bus::Loop);
    assert_eq!(id.capacity_bytes, 64 << 20);
    assert_eq!(id.logical_sector_size, 512);
    assert!(id.physical_sector_size >= 512);
    assert!(!id.is_partition && id.is_storage(), "{:?}", id.not_storage);
    assert!(!id.is_system_disk(), "{:?}", id.system_uses);
    assert!(id.mounts.is_empty() && id.holders.is_empty());
    assert!(!id.read_only);
    assert_eq!(id.loop_backing_file.as_deref(), Some(image.as_path()));
    let table = id
        .partition_table
        .as_ref()
        .unwrap_or_else(|| panic!("no table read: {:?}", id.content_error));
    assert_eq!(table.scheme, Scheme::None);
    assert_eq!(id.volumes.len(), 1, "{:?}", id.volumes);
    assert_eq!(id.volumes[0].fs_type, Some(FsType::Ext4));
    assert_eq!(id.volumes[0].label.as_deref(), Some("STATIONTEST"));
    assert_eq!(id.content_error, None);
    assert!(
        id.describe()
            .contains(&format!("loop device on {}", image.display())),
        "{}",
        id.describe()
    );
    let by_sysfs = identify(&attached.syspath).unwrap_or_else(|e| panic!("identify: {e}"));
    assert_eq!(by_sysfs.devnode, id.devnode);
    assert_eq!(by_sysfs.capacity_bytes, id.capacity_bytes);

    // Policy: loop devices only with the flag; the size limit applies.
    let refusal = check(&id, &limits(false)).err();
    assert!(
        matches!(refusal, Some(Refusal::LoopNotAllowed { .. })),
        "{refusal:?}"
    );
    assert_eq!(check(&id, &limits(true)), Ok(()));
    let small = PolicyLimits {
        size_limit: Some(SizeLimit {
            max_bytes: 32 << 20,
            applies_to: "test jobs".into(),
        }),
        ..limits(true)
    };
    let refusal = check(&id, &small)
        .err()
        .unwrap_or_else(|| panic!("64 MiB accepted under a 32 MiB limit"));
    assert!(
        refusal
            .to_string()
            .contains("67.1 MB is over the 33.6 MB limit for test jobs"),
        "{refusal}"
    );

    // Mounted: refused, naming the mount point.
    let point = dir.path().join("mnt");
    std::fs::create_dir(&point).unwrap_or_else(|e| panic!("{e}"));
    let mut mount = Mount::new(lo.path(), &point);
    let id = identify(&lo.devnode).unwrap_or_else(|e| panic!("identify: {e}"));
    assert_eq!(id.mounts.len(), 1, "{:?}", id.mounts);
    assert_eq!(id.mounts[0].mount_point, point);
    let refusal = check(&id, &limits(true))
        .err()
        .unwrap_or_else(|| panic!("a mounted device accepted"));
    assert_eq!(refusal.kind(), "mounted");
    let message = refusal.to_string();
    assert!(
        message.starts_with(&format!("{} (loop device on", lo.path()))
            && message.contains(&format!("mounted at {}; unmount it", point.display())),
        "{message}"
    );
    mount.unmount();
    let id = identify(&lo.devnode).unwrap_or_else(|e| panic!("identify: {e}"));
    assert!(id.mounts.is_empty(), "{:?}", id.mounts);
    assert_eq!(check(&id, &limits(true)), Ok(()));

    // Detach: a fresh event for the device.
    settle();
    while rx.try_recv().is_ok() {}
    lo.detach();
    wait_for(
        &rx,
        &lo.devnode,
        &[DeviceAction::Change, DeviceAction::Remove],
        Duration::from_secs(10),
    );
    // The detached loop device has no medium any more, unless another test re-used it.
    if let Ok(id) = identify(&lo.devnode) {
        if id.loop_backing_file.is_none() {
            assert_eq!(id.capacity_bytes, 0);
            let refusal = check(&id, &limits(true)).err();
            assert!(
                matches!(refusal, Some(Refusal::NotStorage { .. })),
                "{refusal:?}"
            );
        }
    }

    assert!(watcher.is_running());
    // The thread notices the shutdown within one poll timeout (250 ms).
    let asked = Instant::now();
    watcher.stop().unwrap_or_else(|e| panic!("stop: {e}"));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
}

/// The whole disk under the filesystem holding `/`, as a sysfs directory; `None` when `/` is
/// not on a block device (an overlay or a network root).
fn root_disk() -> Option<PathBuf> {
    let dev = std::fs::metadata("/").ok()?.dev();
    let dir = std::fs::canonicalize(format!(
        "/sys/dev/block/{}:{}",
        libc::major(dev),
        libc::minor(dev)
    ))
    .ok()?;
    if dir.join("partition").is_file() {
        return dir.parent().map(Path::to_path_buf);
    }
    if std::fs::read_dir(dir.join("slaves")).is_ok_and(|mut d| d.next().is_some()) {
        // A stacked root (LVM, dm-crypt): the identity resolves it; the test needs a disk.
        return None;
    }
    Some(dir)
}

#[test]
fn the_system_disk_is_refused() {
    let Some(disk) = root_disk() else {
        eprintln!("skipped: / is not on a plain block device here");
        return;
    };
    let id = identify(&disk).unwrap_or_else(|e| panic!("identify {disk:?}: {e}"));
    assert!(
        id.system_uses.iter().any(|u| u == "/"),
        "{:?}",
        id.system_uses
    );
    let all_buses = PolicyLimits {
        allowed_buses: vec![
            Bus::Usb,
            Bus::Sata,
            Bus::Nvme,
            Bus::Scsi,
            Bus::Virtio,
            Bus::Mmc,
        ],
        allow_loop: true,
        size_limit: None,
    };
    let refusal = check(&id, &all_buses)
        .err()
        .unwrap_or_else(|| panic!("the system disk {disk:?} accepted"));
    assert_eq!(refusal.kind(), "system_disk", "{refusal}");
    assert!(
        refusal.to_string().contains("system disk (it holds /"),
        "{refusal}"
    );
}

#[test]
fn initial_enumeration_reports_present_disks() {
    let _serial = UDEV.lock().unwrap_or_else(|e| e.into_inner());
    ensure_udevd();
    let (tx, rx) = mpsc::channel();
    let watcher = DeviceWatcher::start(tx, WatchOptions::default())
        .unwrap_or_else(|e| panic!("watcher: {e}"));
    // Every block device sysfs lists, as initial add events, disks before partitions.
    let mut want: Vec<String> = std::fs::read_dir("/sys/class/block")
        .unwrap_or_else(|e| panic!("/sys/class/block: {e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    want.sort();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(event) = rx.recv_timeout(left) else {
            break;
        };
        if event.initial {
            assert_eq!(event.action, DeviceAction::Add);
            assert_eq!(event.seqnum, 0);
            seen.push(event);
        }
    }
    let first_partition = seen.iter().position(|e| e.devtype == DevType::Partition);
    if let Some(i) = first_partition {
        assert!(
            seen[i..].iter().all(|e| e.devtype != DevType::Disk),
            "disks after partitions"
        );
    }
    let mut names: Vec<String> = seen.iter().map(|e| e.sysname.clone()).collect();
    names.sort();
    // Loop devices come and go under concurrent tests: compare the others exactly.
    let stable = |n: &String| !n.starts_with("loop");
    assert_eq!(
        names.iter().filter(|n| stable(n)).collect::<Vec<_>>(),
        want.iter().filter(|n| stable(n)).collect::<Vec<_>>()
    );
    for event in &seen {
        assert_eq!(
            event.devnode,
            Path::new("/dev").join(&event.sysname),
            "{event:?}"
        );
    }
    drop(watcher);
}

#[test]
fn identify_refuses_what_is_not_a_block_device() {
    for path in [
        "/etc/hostname",
        "/dev/null",
        "/sys/class/net/lo",
        "/nonexistent",
    ] {
        let e = identify(Path::new(path)).err();
        assert!(
            matches!(e, Some(IdentityError::NotBlockDevice { .. })),
            "{path}: {e:?}"
        );
    }
}

#[test]
fn virtual_devices_are_not_storage() {
    for name in ["zram0", "ram0", "loop7"] {
        let sys = Path::new("/sys/class/block").join(name);
        if !sys.exists() {
            continue;
        }
        let id = identify(&sys).unwrap_or_else(|e| panic!("identify {name}: {e}"));
        if name.starts_with("loop") {
            // An unattached loop device has no medium; an attached one is storage.
            assert_eq!(id.bus, Bus::Loop);
            assert_eq!(id.is_storage(), id.capacity_bytes > 0, "{id:?}");
        } else {
            assert_eq!(id.not_storage.as_deref(), Some("a RAM disk"), "{id:?}");
        }
    }
}

/// A loop device on a fixture image, with the given logical sector size.
fn attach_with_sector_size(image: &Path, sector_size: u32) -> Loop {
    let image = image.to_str().unwrap_or_else(|| panic!("{image:?}"));
    let size = sector_size.to_string();
    Loop {
        devnode: PathBuf::from(run("losetup", &["-f", "--show", "-b", &size, image])),
        attached: true,
    }
}

/// The kernels of the stations have no partition-table support: partitions are read in
/// userspace, and a partition mounted by offset goes through a second loop device.
#[test]
fn partitioned_loop_table_filesystems_and_offset_mounts() {
    let _serial = UDEV.lock().unwrap_or_else(|e| e.into_inner());
    ensure_udevd();
    let fx = crate::helper::build("disk-gpt.sh", &[]);
    let (tx, rx) = mpsc::channel();
    let watcher = DeviceWatcher::start(
        tx,
        WatchOptions {
            enumerate_existing: false,
            ..WatchOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("watcher: {e}"));
    let lo = Loop::attach(&fx.path("disk-gpt.img"));
    wait_for(
        &rx,
        &lo.devnode,
        &[DeviceAction::Add, DeviceAction::Change],
        Duration::from_secs(10),
    );
    settle();

    let id = identify(&lo.devnode).unwrap_or_else(|e| panic!("identify: {e}"));
    let table = id
        .partition_table
        .as_ref()
        .unwrap_or_else(|| panic!("no table: {:?}", id.content_error));
    assert_eq!(table.scheme, Scheme::Gpt);
    assert_eq!(table.partitions.len(), 3);
    let found: Vec<(Option<u32>, Option<FsType>, Option<&str>)> = id
        .volumes
        .iter()
        .map(|v| (v.partition, v.fs_type, v.label.as_deref()))
        .collect();
    assert_eq!(
        found,
        vec![
            (Some(1), Some(FsType::Ext4), Some("alpha")),
            (Some(2), Some(FsType::Ext3), Some("beta")),
            (Some(3), Some(FsType::Ext2), Some("gamma")),
        ]
    );
    assert_eq!(check(&id, &limits(true)), Ok(()));

    // Partition 2 mounted by offset: mount sets up a loop device on ours.
    let p2 = &id.volumes[1];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let at = dir.path().to_str().unwrap_or_else(|| panic!("{dir:?}"));
    let options = format!("ro,offset={},sizelimit={}", p2.start_bytes, p2.size_bytes);
    run("mount", &["-o", &options, lo.path(), at]);
    let mut mount = Mount {
        point: dir.path().to_owned(),
        mounted: true,
    };
    let id = identify(&lo.devnode).unwrap_or_else(|e| panic!("identify: {e}"));
    assert_eq!(id.mounts.len(), 1, "{:?}", id.mounts);
    assert_eq!(id.mounts[0].mount_point, dir.path());
    assert!(
        id.mounts[0]
            .device
            .to_string_lossy()
            .starts_with("/dev/loop"),
        "{:?}",
        id.mounts
    );
    let refusal = check(&id, &limits(true))
        .err()
        .unwrap_or_else(|| panic!("a disk with a mounted partition accepted"));
    assert!(
        refusal.to_string().contains(&format!(
            "mounted at {at} ({})",
            id.mounts[0].device.display()
        )),
        "{refusal}"
    );
    mount.unmount();
    settle();

    // A loop device on it, not mounted: held.
    let offset = p2.start_bytes.to_string();
    let mut over = Loop {
        devnode: PathBuf::from(run(
            "losetup",
            &["-f", "--show", "-r", "-o", &offset, lo.path()],
        )),
        attached: true,
    };
    let id = identify(&lo.devnode).unwrap_or_else(|e| panic!("identify: {e}"));
    let refusal = check(&id, &limits(true))
        .err()
        .unwrap_or_else(|| panic!("a held disk accepted"));
    assert_eq!(refusal.kind(), "held", "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains(&format!("held by {} (a loop device on it)", over.path())),
        "{refusal}"
    );
    over.detach();
    // Detaching a loop device udevd still has open (its rules probe new media) completes on
    // the last close.
    settle();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let id = identify(&lo.devnode).unwrap_or_else(|e| panic!("identify: {e}"));
        if id.holders.is_empty() && id.mounts.is_empty() {
            assert_eq!(check(&id, &limits(true)), Ok(()));
            break;
        }
        assert!(Instant::now() < deadline, "still held: {:?}", id.holders);
        std::thread::sleep(Duration::from_millis(100));
    }
    watcher.stop().unwrap_or_else(|e| panic!("stop: {e}"));
}

#[test]
fn loop_with_4096_byte_sectors() {
    let _serial = UDEV.lock().unwrap_or_else(|e| e.into_inner());
    let fx = crate::helper::build("disk-gpt.sh", &["4096"]);
    let lo = attach_with_sector_size(&fx.path("disk-gpt.img"), 4096);
    let id = identify(&lo.devnode).unwrap_or_else(|e| panic!("identify: {e}"));
    assert_eq!(id.logical_sector_size, 4096);
    assert_eq!(id.physical_sector_size, 4096);
    let table = id
        .partition_table
        .as_ref()
        .unwrap_or_else(|| panic!("no table: {:?}", id.content_error));
    assert_eq!((table.scheme, table.sector_size), (Scheme::Gpt, 4096));
    assert_eq!(id.volumes.len(), 3, "{:?}", id.volumes);
    assert!(
        id.volumes.iter().all(|v| v.fs_type.is_some()),
        "{:?}",
        id.volumes
    );
}
