//! Device identification: what a block device is, what it holds, and what uses it.
//!
//! Facts come from three places: udev properties (`ID_BUS`, `ID_SERIAL_SHORT`, ...; filled in
//! by systemd-udevd's rules), sysfs (size, sector sizes, removable and read-only flags,
//! holders, the loop backing file, and the USB speed of the USB device the disk hangs off:
//! `…/usbN/…/speed` gives the same fact `rusb` would, without libusb), and the device's content
//! read through our own stack (partition table, filesystems). Uses of the device by this
//! machine (mounts, swap, holders, the system disk) come from `/proc/self/mountinfo`,
//! `/proc/swaps` and sysfs, compared by major:minor number, partitions and device-mapper /
//! RAID stacks included.
//!
//! "Storage" means a whole disk with a medium: a block device of type `disk` with a non-zero
//! size that is not a RAM disk (`ram`, `zram`), a device-mapper or RAID volume (`dm-`, `md`),
//! a network block device (`nbd`), an optical drive (`sr`, `ID_CDROM`), a floppy, an eMMC
//! boot or RPMB area, or another virtual device. Loop devices are storage with bus
//! [`Bus::Loop`]; whether they may be loaded is policy ([`crate::policy`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::block::BlockDevice;
use crate::fs::FsType;
use crate::partition::PartitionTable;
use crate::probe;
use crate::source::ReadAt;

/// The transport a disk is attached by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bus {
    /// USB (mass storage or UAS), whatever bridge is inside.
    Usb,
    /// SATA, eSATA or PATA (the kernel's libata; eSATA looks like SATA to the kernel).
    Sata,
    /// NVMe.
    Nvme,
    /// SCSI or SAS (not behind USB or libata).
    Scsi,
    /// FireWire (IEEE 1394).
    Firewire,
    /// SD/MMC card readers on the host controller.
    Mmc,
    /// A virtio disk (virtual machines).
    Virtio,
    /// A loop device backed by a file.
    Loop,
    /// Anything else, by udev's `ID_BUS` or sysfs subsystem name (lower case).
    Other(String),
}

impl Bus {
    /// The name used in the config and messages: `usb`, `sata`, `nvme`, `scsi`, `firewire`,
    /// `mmc`, `virtio`, `loop`, or the other name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Usb => "usb",
            Self::Sata => "sata",
            Self::Nvme => "nvme",
            Self::Scsi => "scsi",
            Self::Firewire => "firewire",
            Self::Mmc => "mmc",
            Self::Virtio => "virtio",
            Self::Loop => "loop",
            Self::Other(name) => name,
        }
    }

    /// A bus from a config name, case-insensitive; `ata` and `esata` mean [`Bus::Sata`],
    /// `ieee1394` means [`Bus::Firewire`], `sd` means [`Bus::Mmc`].
    pub fn parse(name: &str) -> Self {
        match name.trim().to_ascii_lowercase().as_str() {
            "usb" => Self::Usb,
            "sata" | "ata" | "esata" | "pata" => Self::Sata,
            "nvme" => Self::Nvme,
            "scsi" | "sas" => Self::Scsi,
            "firewire" | "ieee1394" => Self::Firewire,
            "mmc" | "sd" => Self::Mmc,
            "virtio" => Self::Virtio,
            "loop" => Self::Loop,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One volume found on the device: the whole device or one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The partition number (from 1, table order), `None` for the whole device.
    pub partition: Option<u32>,
    /// Where it starts, in bytes from the start of the device.
    pub start_bytes: u64,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// The filesystem found by signature, `None` when none we know.
    pub fs_type: Option<FsType>,
    /// The volume label, when cheap to read.
    pub label: Option<String>,
}

/// A mount (or swap) of the device or one of its partitions on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountUse {
    /// The device node mounted (`/dev/sdb1`).
    pub device: PathBuf,
    /// Where (`/mnt/x`), or `[swap]` for an active swap area.
    pub mount_point: PathBuf,
}

/// Everything the station knows about a block device, for the device row and the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceIdentity {
    /// The device node, `/dev/sdb`.
    pub devnode: PathBuf,
    /// The sysfs path, `/sys/devices/.../block/sdb`.
    pub syspath: PathBuf,
    /// The kernel name, `sdb`.
    pub name: String,
    /// Major and minor device numbers.
    pub devnum: (u32, u32),
    /// A partition rather than a whole disk.
    pub is_partition: bool,
    /// How it is attached.
    pub bus: Bus,
    /// The vendor (SCSI inquiry, udev or the USB manufacturer string).
    pub vendor: Option<String>,
    /// The model (SCSI inquiry, udev, NVMe or the USB product string).
    pub model: Option<String>,
    /// The serial number (udev's `ID_SERIAL_SHORT`, the USB serial or sysfs `device/serial`).
    pub serial: Option<String>,
    /// The negotiated USB speed in Mbit/s (1.5, 12, 480, 5000, 10000, 20000) for USB disks.
    pub usb_speed_mbit: Option<f64>,
    /// USB vendor and product IDs (`0951`, `1666`) for USB disks.
    pub usb_id: Option<(String, String)>,
    /// Size in bytes.
    pub capacity_bytes: u64,
    /// Logical sector size (the unit of LBAs).
    pub logical_sector_size: u32,
    /// Physical sector size.
    pub physical_sector_size: u32,
    /// The kernel's removable flag (media readers, most USB sticks).
    pub removable: bool,
    /// The kernel's read-only flag (a write-protect switch, `losetup -r`).
    pub read_only: bool,
    /// The partition table (scheme `none` when there is none), when the content was read.
    pub partition_table: Option<PartitionTable>,
    /// The volumes found: the whole device when it has no table, else each partition.
    pub volumes: Vec<Volume>,
    /// Why the content (table, filesystems) could not be read, when it could not.
    pub content_error: Option<String>,
    /// Devices stacked on it or its partitions (`dm-0`, `md127`): it is in use.
    pub holders: Vec<String>,
    /// Where it or its partitions are mounted (or swapped on) on this machine.
    pub mounts: Vec<MountUse>,
    /// What the running system uses it for (`/`, `/boot`, `swap`): non-empty means it is the
    /// system disk (or part of it).
    pub system_uses: Vec<String>,
    /// The backing file of a loop device.
    pub loop_backing_file: Option<PathBuf>,
    /// Why it is not a storage device (`None`: it is one).
    pub not_storage: Option<String>,
    /// The udev properties of the device.
    pub properties: BTreeMap<String, String>,
}

impl DeviceIdentity {
    /// Whether this is a whole disk with a medium that the station could load.
    pub fn is_storage(&self) -> bool {
        self.not_storage.is_none()
    }

    /// Whether the running system lives on it.
    pub fn is_system_disk(&self) -> bool {
        !self.system_uses.is_empty()
    }

    /// How an operator recognises it: `/dev/sdb (Kingston DataTraveler 3.0, serial 0019E06B,
    /// 32.0 GB)` or `/dev/loop3 (loop device on /tmp/disk.img, 64.0 MB)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(file) = &self.loop_backing_file {
            parts.push(format!("loop device on {}", file.display()));
        } else {
            let name: Vec<&str> = [self.vendor.as_deref(), self.model.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            if name.is_empty() {
                parts.push(format!("{} disk", self.bus));
            } else {
                parts.push(name.join(" "));
            }
            if let Some(serial) = &self.serial {
                parts.push(format!("serial {serial}"));
            }
        }
        if self.capacity_bytes > 0 {
            parts.push(human_bytes(self.capacity_bytes));
        }
        if parts.is_empty() {
            self.devnode.display().to_string()
        } else {
            format!("{} ({})", self.devnode.display(), parts.join(", "))
        }
    }
}

/// A byte count in decimal units, as disk labels and the guide give them (`18.0 TB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Why a device could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The path is neither a block device node nor a block device's sysfs directory.
    #[error("{path}: not a block device ({reason}); give /dev/NAME or its /sys path")]
    NotBlockDevice {
        /// The path given.
        path: PathBuf,
        /// What it is instead, or the error reaching it.
        reason: String,
    },
    /// A sysfs or udev lookup failed (the device was probably removed meanwhile).
    #[error("{path}: {step}: {source} (was the device removed?)")]
    Lookup {
        /// The path given.
        path: PathBuf,
        /// What was being read.
        step: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// Identifies the block device at `path`: a device node (`/dev/sdb`) or its sysfs directory.
///
/// Reads the device's first sectors (partition table, filesystem signatures) read-only; a
/// device whose content cannot be read is still identified, with
/// [`DeviceIdentity::content_error`] set.
///
/// # Errors
///
/// `path` is not a block device, or it disappeared while its facts were read.
pub fn identify(path: &Path) -> Result<DeviceIdentity, IdentityError> {
    let lookup = |step: &'static str| {
        move |source: io::Error| IdentityError::Lookup {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let syspath = sysfs_dir(path)?;
    let device = ::udev::Device::from_syspath(&syspath).map_err(lookup("udev device"))?;
    if device.subsystem().and_then(|s| s.to_str()) != Some("block") {
        return Err(IdentityError::NotBlockDevice {
            path: path.to_owned(),
            reason: format!("{} is not in the block subsystem", syspath.display()),
        });
    }
    let name = device.sysname().to_string_lossy().into_owned();
    let devnum = device
        .devnum()
        .map(|d| (libc::major(d), libc::minor(d)))
        .ok_or_else(|| IdentityError::NotBlockDevice {
            path: path.to_owned(),
            reason: "udev reports no device number".into(),
        })?;
    let devnode = device
        .devnode()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new("/dev").join(&name));
    let properties: BTreeMap<String, String> = device
        .properties()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                p.value().to_string_lossy().into_owned(),
            )
        })
        .collect();
    let prop = |key: &str| {
        properties
            .get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let is_partition = syspath.join("partition").exists()
        || device.devtype().and_then(|t| t.to_str()) == Some("partition");
    // Queue limits live on the disk; a partition reads its parent's.
    let disk_dir = if is_partition {
        syspath.parent().unwrap_or(&syspath).to_path_buf()
    } else {
        syspath.clone()
    };

    let usb = device
        .parent_with_subsystem_devtype("usb", "usb_device")
        .ok()
        .flatten();
    let usb_attr = |attr: &str| -> Option<String> {
        usb.as_ref()
            .and_then(|u| u.attribute_value(attr))
            .map(|v| v.to_string_lossy().trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let bus = bus_of(&device, &name, &syspath, prop("ID_BUS").as_deref());
    // `device/vendor` and `device/model` are the SCSI inquiry strings (NVMe has a model);
    // a virtio or PCI `device/vendor` is a hex ID, not a name.
    let device_subsystem = fs::read_link(disk_dir.join("device/subsystem"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let inquiry = |attr: &str, subsystems: &[&str]| {
        subsystems
            .contains(&device_subsystem.as_str())
            .then(|| sysfs_text(&disk_dir.join("device").join(attr)))
            .flatten()
    };
    let vendor = inquiry("vendor", &["scsi"])
        .or_else(|| prop("ID_VENDOR_ENC").map(|v| decode_udev(&v).trim().to_owned()))
        .or_else(|| prop("ID_VENDOR"))
        .or_else(|| usb_attr("manufacturer"))
        .filter(|v| !v.is_empty());
    let model = inquiry("model", &["scsi", "nvme"])
        .or_else(|| prop("ID_MODEL_ENC").map(|v| decode_udev(&v).trim().to_owned()))
        .or_else(|| prop("ID_MODEL"))
        .or_else(|| usb_attr("product"))
        .filter(|v| !v.is_empty());
    let serial = prop("ID_SERIAL_SHORT")
        .or_else(|| usb_attr("serial"))
        .or_else(|| sysfs_text(&disk_dir.join("device/serial")));
    let usb_speed_mbit = usb_attr("speed").and_then(|s| s.parse::<f64>().ok());
    let usb_id = usb_attr("idVendor").zip(usb_attr("idProduct"));

    let sectors_512 = sysfs_u64(&syspath.join("size")).unwrap_or(0);
    let capacity_bytes = sectors_512.saturating_mul(512);
    let logical_sector_size = sysfs_u64(&disk_dir.join("queue/logical_block_size"))
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(512);
    let physical_sector_size = sysfs_u64(&disk_dir.join("queue/physical_block_size"))
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(logical_sector_size);
    let removable = sysfs_u64(&disk_dir.join("removable")) == Some(1);
    let read_only = sysfs_u64(&syspath.join("ro")) == Some(1);
    let loop_backing_file = loop_backing_file(&syspath);

    let not_storage = not_storage(
        &name,
        &syspath,
        is_partition,
        capacity_bytes,
        devnum.0,
        &properties,
    );

    // The device and its partitions, for mounts and holders.
    let mut members = vec![(devnode.clone(), devnum, syspath.clone())];
    if !is_partition {
        members.extend(partitions_of(&syspath));
    }
    // Loop devices set up on it (`losetup -o`, `mount -o offset=`: how a partition is
    // reached on kernels without partition support) do not show in `holders/`.
    let stacked_loops = loops_backed_by(&members);
    let mut holders = BTreeSet::new();
    for (_, _, dir) in &members {
        if let Ok(entries) = fs::read_dir(dir.join("holders")) {
            for entry in entries.flatten() {
                holders.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    for (node, _, _) in &stacked_loops {
        holders.insert(format!("{} (a loop device on it)", node.display()));
    }
    members.extend(stacked_loops);
    let mounts = mounts_of(&members);
    let whole_disk = disk_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.clone());
    let system_uses: Vec<String> = system_uses()
        .into_iter()
        .filter(|(_, disks)| disks.contains(&whole_disk))
        .map(|(usage, _)| usage)
        .collect();

    // The system disk is never loaded: its content is none of our business (and a
    // container may not even be allowed to read it).
    let (partition_table, volumes, content_error) =
        if not_storage.is_none() && system_uses.is_empty() {
            read_content(&devnode)
        } else {
            (None, Vec::new(), None)
        };

    Ok(DeviceIdentity {
        devnode,
        syspath,
        name,
        devnum,
        is_partition,
        bus,
        vendor,
        model,
        serial,
        usb_speed_mbit,
        usb_id,
        capacity_bytes,
        logical_sector_size,
        physical_sector_size,
        removable,
        read_only,
        partition_table,
        volumes,
        content_error,
        holders: holders.into_iter().collect(),
        mounts,
        system_uses,
        loop_backing_file,
        not_storage,
        properties,
    })
}

/// The canonical sysfs directory of a device node or sysfs path.
fn sysfs_dir(path: &Path) -> Result<PathBuf, IdentityError> {
    let not_block = |reason: String| IdentityError::NotBlockDevice {
        path: path.to_owned(),
        reason,
    };
    if path.starts_with("/sys") {
        let dir = fs::canonicalize(path).map_err(|e| not_block(e.to_string()))?;
        if !dir.join("dev").is_file() {
            return Err(not_block("no dev attribute in the sysfs directory".into()));
        }
        return Ok(dir);
    }
    let meta = fs::metadata(path).map_err(|e| not_block(e.to_string()))?;
    if !meta.file_type().is_block_device() {
        return Err(not_block("not a block device node".into()));
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    fs::canonicalize(format!("/sys/dev/block/{major}:{minor}"))
        .map_err(|e| not_block(format!("/sys/dev/block/{major}:{minor}: {e}")))
}

fn bus_of(device: &::udev::Device, name: &str, syspath: &Path, id_bus: Option<&str>) -> Bus {
    if name.starts_with("loop") {
        return Bus::Loop;
    }
    let mut subsystems = BTreeSet::new();
    let mut parent = device.parent();
    while let Some(p) = parent {
        if let Some(s) = p.subsystem().and_then(|s| s.to_str()) {
            subsystems.insert(s.to_owned());
        }
        parent = p.parent();
    }
    // libata ports show as `.../ataN/hostM/...` in the device path.
    let on_libata = syspath.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        c.strip_prefix("ata")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    // The outermost transport wins: a USB-SATA bridge is a USB disk.
    if subsystems.contains("usb") {
        Bus::Usb
    } else if subsystems.contains("firewire") || subsystems.contains("ieee1394") {
        Bus::Firewire
    } else if on_libata || id_bus == Some("ata") {
        Bus::Sata
    } else if subsystems.contains("nvme") || name.starts_with("nvme") {
        Bus::Nvme
    } else if subsystems.contains("mmc") {
        Bus::Mmc
    } else if subsystems.contains("scsi") {
        Bus::Scsi
    } else if subsystems.contains("virtio") {
        Bus::Virtio
    } else if let Some(bus) = id_bus {
        Bus::parse(bus)
    } else if let Some(first) = subsystems.into_iter().next() {
        Bus::Other(first)
    } else {
        Bus::Other("unknown".into())
    }
}

fn not_storage(
    name: &str,
    syspath: &Path,
    is_partition: bool,
    capacity_bytes: u64,
    major: u32,
    properties: &BTreeMap<String, String>,
) -> Option<String> {
    let starts = |prefix: &str| name.starts_with(prefix);
    let reason = if is_partition {
        "a partition; the station loads whole disks".to_owned()
    } else if starts("ram") || starts("zram") {
        "a RAM disk".to_owned()
    } else if starts("dm-") {
        "a device-mapper volume".to_owned()
    } else if starts("md") {
        "a software RAID array".to_owned()
    } else if starts("nbd") {
        "a network block device".to_owned()
    } else if starts("sr")
        || major == 11
        || properties.get("ID_CDROM").is_some_and(|v| v == "1")
        || properties.get("ID_TYPE").is_some_and(|v| v == "cd")
    {
        "an optical drive".to_owned()
    } else if starts("fd") {
        "a floppy drive".to_owned()
    } else if starts("mmcblk") && (name.contains("boot") || name.contains("rpmb")) {
        "an eMMC boot or RPMB area".to_owned()
    } else if !starts("loop") && syspath.starts_with("/sys/devices/virtual") {
        "a virtual block device".to_owned()
    } else if capacity_bytes == 0 {
        "no medium: size 0, an empty card reader or a detached loop device".to_owned()
    } else {
        return None;
    };
    Some(reason)
}

/// The partitions the kernel shows under a disk's sysfs directory.
fn partitions_of(disk: &Path) -> Vec<(PathBuf, (u32, u32), PathBuf)> {
    let Ok(entries) = fs::read_dir(disk) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.join("partition").is_file() {
            continue;
        }
        let Some(devnum) = sysfs_text(&dir.join("dev")).and_then(|d| parse_devnum(&d)) else {
            continue;
        };
        let devnode = Path::new("/dev").join(entry.file_name());
        out.push((devnode, devnum, dir));
    }
    out.sort();
    out
}

/// A loop device's backing file, from its sysfs directory (`/sys/class/block/loopN`); `None`
/// when it is not attached.
pub fn loop_backing_file(syspath: &Path) -> Option<PathBuf> {
    sysfs_text(&syspath.join("loop/backing_file")).map(PathBuf::from)
}

/// Every attached loop device: (device node, sysfs directory, backing file).
pub(crate) fn attached_loops() -> Vec<(PathBuf, PathBuf, PathBuf)> {
    let Ok(entries) = fs::read_dir("/sys/class/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter_map(|e| {
            let dir = e.path();
            let backing = loop_backing_file(&dir)?;
            Some((Path::new("/dev").join(e.file_name()), dir, backing))
        })
        .collect()
}

/// Loop devices whose backing file is one of `members` (compared as canonical paths).
fn loops_backed_by(
    members: &[(PathBuf, (u32, u32), PathBuf)],
) -> Vec<(PathBuf, (u32, u32), PathBuf)> {
    let nodes: Vec<PathBuf> = members
        .iter()
        .map(|(node, _, _)| fs::canonicalize(node).unwrap_or_else(|_| node.clone()))
        .collect();
    let mut out = Vec::new();
    for (node, dir, backing) in attached_loops() {
        let backing = fs::canonicalize(&backing).unwrap_or(backing);
        if !nodes.contains(&backing) {
            continue;
        }
        if let Some(devnum) = sysfs_text(&dir.join("dev")).and_then(|d| parse_devnum(&d)) {
            out.push((node, devnum, dir));
        }
    }
    out.sort();
    out
}

fn parse_devnum(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// One line of `/proc/self/mountinfo`: device number, mount point, source.
pub(crate) struct MountEntry {
    pub(crate) devnum: Option<(u32, u32)>,
    pub(crate) mount_point: PathBuf,
    pub(crate) source: PathBuf,
}

/// This process's mounts, in mount order.
pub(crate) fn mountinfo() -> Vec<MountEntry> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let devnum = parse_devnum(fields.get(2)?);
            let mount_point = PathBuf::from(unescape_octal(fields.get(4)?));
            let dash = fields.iter().position(|f| *f == "-")?;
            let source = PathBuf::from(unescape_octal(fields.get(dash + 2)?));
            Some(MountEntry {
                devnum,
                mount_point,
                source,
            })
        })
        .collect()
}

/// Active swap areas from `/proc/swaps`: the file or device path of each.
fn swaps() -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/swaps") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

/// `\040`-style escapes of mountinfo and /proc/swaps (the bytes as they are: paths need not
/// be UTF-8).
fn unescape_octal(s: &str) -> std::ffi::OsString {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    std::os::unix::ffi::OsStringExt::from_vec(out)
}

/// udev's `\xHH` escapes (`ID_MODEL_ENC`).
fn decode_udev(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') && i + 4 <= bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 2..i + 4])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts_of(members: &[(PathBuf, (u32, u32), PathBuf)]) -> Vec<MountUse> {
    let mut out = Vec::new();
    for entry in mountinfo() {
        // By number; by source path too, for filesystems (btrfs) that report an anonymous
        // device number.
        let hit = members
            .iter()
            .find(|(node, devnum, _)| entry.devnum == Some(*devnum) || entry.source == *node);
        if let Some((node, _, _)) = hit {
            out.push(MountUse {
                device: node.clone(),
                mount_point: entry.mount_point,
            });
        }
    }
    for swap in swaps() {
        let rdev = fs::metadata(&swap)
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .map(|m| (libc::major(m.rdev()), libc::minor(m.rdev())));
        if let Some((node, _, _)) = members.iter().find(|(_, devnum, _)| rdev == Some(*devnum)) {
            out.push(MountUse {
                device: node.clone(),
                mount_point: PathBuf::from("[swap]"),
            });
        }
    }
    out
}

/// What the running system needs (`/`, `/boot`, ..., `swap`), each with the whole disks it
/// lives on (through partitions, device-mapper and RAID).
fn system_uses() -> Vec<(String, BTreeSet<String>)> {
    const SYSTEM_MOUNTS: [&str; 6] = ["/", "/boot", "/boot/efi", "/efi", "/usr", "/var"];
    let mut out = Vec::new();
    for entry in mountinfo() {
        let Some(point) = entry.mount_point.to_str() else {
            continue;
        };
        if !SYSTEM_MOUNTS.contains(&point) {
            continue;
        }
        let mut disks = BTreeSet::new();
        if let Some(devnum) = entry.devnum {
            disks_under(devnum, &mut disks, 0);
        }
        if let Ok(meta) = fs::metadata(&entry.source) {
            if meta.file_type().is_block_device() {
                disks_under(
                    (libc::major(meta.rdev()), libc::minor(meta.rdev())),
                    &mut disks,
                    0,
                );
            }
        }
        if !disks.is_empty() {
            out.push((point.to_owned(), disks));
        }
    }
    for swap in swaps() {
        let Ok(meta) = fs::metadata(&swap) else {
            continue;
        };
        // A swap partition by its own number, a swap file by its filesystem's.
        let dev = if meta.file_type().is_block_device() {
            meta.rdev()
        } else {
            meta.dev()
        };
        let mut disks = BTreeSet::new();
        disks_under((libc::major(dev), libc::minor(dev)), &mut disks, 0);
        if !disks.is_empty() {
            out.push((format!("swap ({})", swap.display()), disks));
        }
    }
    out
}

/// The whole disks under the block device `devnum`: itself, the disk of a partition, or the
/// disks under every slave of a stacked device.
fn disks_under(devnum: (u32, u32), disks: &mut BTreeSet<String>, depth: u32) {
    let Ok(dir) = fs::canonicalize(format!("/sys/dev/block/{}:{}", devnum.0, devnum.1)) else {
        return;
    };
    disks_under_dir(&dir, disks, depth);
}

fn disks_under_dir(dir: &Path, disks: &mut BTreeSet<String>, depth: u32) {
    if depth > 8 {
        return;
    }
    if dir.join("partition").is_file() {
        if let Some(disk) = dir.parent().and_then(Path::file_name) {
            disks.insert(disk.to_string_lossy().into_owned());
        }
        return;
    }
    let slaves: Vec<PathBuf> = fs::read_dir(dir.join("slaves"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    if slaves.is_empty() {
        if let Some(name) = dir.file_name() {
            disks.insert(name.to_string_lossy().into_owned());
        }
        return;
    }
    for slave in slaves {
        if let Ok(slave) = fs::canonicalize(slave) {
            disks_under_dir(&slave, disks, depth + 1);
        }
    }
}

/// The partition table and the volumes of the device, read read-only through our own stack.
fn read_content(devnode: &Path) -> (Option<PartitionTable>, Vec<Volume>, Option<String>) {
    let device = match BlockDevice::open(devnode) {
        Ok(device) => device,
        Err(e) => return (None, Vec::new(), Some(e.to_string())),
    };
    let table = match PartitionTable::read(&device, Some(device.logical_sector_size())) {
        Ok(table) => table,
        Err(e) => return (None, Vec::new(), Some(e.to_string())),
    };
    let mut volumes = Vec::new();
    let mut errors = Vec::new();
    if table.partitions.is_empty() {
        match probe::probe(&device) {
            Ok(found) => volumes.push(volume(None, 0, device.size(), found)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for p in &table.partitions {
        match table.slice(&device, p.number) {
            Ok(slice) => match probe::probe(&slice) {
                Ok(found) => {
                    volumes.push(volume(Some(p.number), p.start_bytes, p.size_bytes, found))
                }
                Err(e) => errors.push(e.to_string()),
            },
            Err(e) => errors.push(e.to_string()),
        }
    }
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    (Some(table), volumes, error)
}

fn volume(
    partition: Option<u32>,
    start_bytes: u64,
    size_bytes: u64,
    found: Option<probe::Detected>,
) -> Volume {
    let (fs_type, label) = match found {
        Some(d) => (Some(d.fs_type), d.label),
        None => (None, None),
    };
    Volume {
        partition,
        start_bytes,
        size_bytes,
        fs_type,
        label,
    }
}

/// A sysfs attribute as trimmed text; `None` when missing, unreadable or empty. Attributes
/// are small, but the read is capped anyway.
fn sysfs_text(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    file.take(4096).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn sysfs_u64(path: &Path) -> Option<u64> {
    sysfs_text(path)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_names_and_aliases() {
        assert_eq!(Bus::parse("SATA"), Bus::Sata);
        assert_eq!(Bus::parse("esata"), Bus::Sata);
        assert_eq!(Bus::parse("ata"), Bus::Sata);
        assert_eq!(Bus::parse("ieee1394"), Bus::Firewire);
        assert_eq!(Bus::parse("thunderbolt"), Bus::Other("thunderbolt".into()));
        for bus in [Bus::Usb, Bus::Sata, Bus::Nvme, Bus::Loop, Bus::Firewire] {
            assert_eq!(Bus::parse(bus.as_str()), bus);
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape_octal(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_octal(r"/mnt/x\04"), r"/mnt/x\04");
        assert_eq!(unescape_octal(r"\"), r"\");
        assert_eq!(unescape_octal(r"/mnt/a\040b\134c"), "/mnt/a b\\c");
        assert_eq!(unescape_octal(r"/plain\x"), "/plain\\x");
        assert_eq!(decode_udev(r"Data\x20Traveler\x20"), "Data Traveler ");
        assert_eq!(decode_udev(r"bad\xZZ\x2"), r"bad\xZZ\x2");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(18_000_000_000_000), "18.0 TB");
        assert_eq!(human_bytes(64 << 20), "67.1 MB");
    }

    #[test]
    fn devnums() {
        assert_eq!(parse_devnum("254:0\n"), Some((254, 0)));
        assert_eq!(parse_devnum("x:0"), None);
    }
}
