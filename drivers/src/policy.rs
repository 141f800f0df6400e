//! Device policy: whether an identified device may be loaded at all, as a pure function of its
//! [`DeviceIdentity`] and the limits the station's config gives.
//!
//! Checks run in this order, and the first that fails is the refusal: not a storage device,
//! the system disk, a loop device without `allow_loop`, a bus the config does not allow,
//! mounted (or swapped on), held by another device (device-mapper, RAID), over the job type's
//! size limit. Each refusal names the device as an operator sees it and says what to do.
//! A refused device is never read further nor erased: it goes back as it came.

use std::path::PathBuf;

use crate::identity::{human_bytes, Bus, DeviceIdentity};

/// The guide's largest device for S3 import and EBS jobs: 16 TB (decimal).
pub const S3_EBS_MAX_BYTES: u64 = 16_000_000_000_000;
/// The guide's largest device for Glacier jobs: 4 TB (decimal).
pub const GLACIER_MAX_BYTES: u64 = 4_000_000_000_000;

/// A size limit and the jobs it applies to, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLimit {
    /// The largest capacity accepted, in bytes.
    pub max_bytes: u64,
    /// The jobs it is the limit for, as the message says it (`S3 and EBS jobs`).
    pub applies_to: String,
}

impl SizeLimit {
    /// The guide's 16 TB limit of S3 import and EBS jobs.
    pub fn s3_and_ebs() -> Self {
        Self {
            max_bytes: S3_EBS_MAX_BYTES,
            applies_to: "S3 and EBS jobs".into(),
        }
    }

    /// The guide's 4 TB limit of Glacier jobs.
    pub fn glacier() -> Self {
        Self {
            max_bytes: GLACIER_MAX_BYTES,
            applies_to: "Glacier jobs".into(),
        }
    }
}

/// What the config allows; the station maps its config onto this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Buses a device may be attached by (loop devices are governed by `allow_loop` alone).
    pub allowed_buses: Vec<Bus>,
    /// Accept loop devices (tests and demos only).
    pub allow_loop: bool,
    /// The size limit, when one applies (the job type is known, or the smallest of all).
    pub size_limit: Option<SizeLimit>,
}

/// Why a device is refused; `Display` is the operator message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a whole disk with a medium.
    #[error("{device}: not a storage device: {reason}; the station loads whole disks with a medium in them")]
    NotStorage {
        /// The device as the operator recognises it.
        device: String,
        /// What it is instead.
        reason: String,
    },
    /// The running system lives on it.
    #[error("{device}: this is the station's own system disk (it holds {uses}); it is never loaded or erased")]
    SystemDisk {
        /// The device.
        device: String,
        /// What the system uses it for (`/, swap (/dev/sda2)`).
        uses: String,
    },
    /// A loop device while loop devices are not allowed.
    #[error("{device}: loop devices are not allowed by the config (set allow_loop for tests and demos only); detach it with `losetup -d`")]
    LoopNotAllowed {
        /// The device.
        device: String,
    },
    /// Attached by a bus the config does not allow.
    #[error("{device}: bus {bus} is not allowed by the config (allowed: {allowed}); connect the device through an allowed interface or change the config")]
    BusNotAllowed {
        /// The device.
        device: String,
        /// Its bus.
        bus: String,
        /// The allowed buses, comma-separated.
        allowed: String,
    },
    /// It or one of its partitions is mounted or swapped on.
    #[error("{device}: mounted at {mounts}; unmount it (umount, swapoff) before loading: the station reads devices it alone has open")]
    Mounted {
        /// The device.
        device: String,
        /// Where: `/dev/sdb1 on /mnt`, comma-separated.
        mounts: String,
        /// The mount points.
        mount_points: Vec<PathBuf>,
    },
    /// Another block device is stacked on it (device-mapper, RAID, LVM).
    #[error("{device}: held by {holders} (device-mapper, LVM or RAID on it); close them (cryptsetup close, vgchange -an, mdadm --stop) before loading")]
    Held {
        /// The device.
        device: String,
        /// The holders, comma-separated.
        holders: String,
    },
    /// Bigger than the job type allows.
    #[error("{device}: {size} is over the {limit} limit for {applies_to}; the device goes back to the customer unloaded")]
    TooLarge {
        /// The device.
        device: String,
        /// Its capacity in words (`18.0 TB`).
        size: String,
        /// Its capacity in bytes.
        bytes: u64,
        /// The limit in words (`16 TB`).
        limit: String,
        /// The jobs the limit applies to.
        applies_to: String,
    },
}

impl Refusal {
    /// A short machine-readable kind: `not_storage`, `system_disk`, `loop_not_allowed`,
    /// `bus_not_allowed`, `mounted`, `held`, `too_large`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotStorage { .. } => "not_storage",
            Self::SystemDisk { .. } => "system_disk",
            Self::LoopNotAllowed { .. } => "loop_not_allowed",
            Self::BusNotAllowed { .. } => "bus_not_allowed",
            Self::Mounted { .. } => "mounted",
            Self::Held { .. } => "held",
            Self::TooLarge { .. } => "too_large",
        }
    }
}

/// Whether `identity` may be loaded under `limits`; the first failed check is the refusal.
///
/// # Errors
///
/// The device is refused; the [`Refusal`]'s message is for the operator.
pub fn check(identity: &DeviceIdentity, limits: &PolicyLimits) -> Result<(), Refusal> {
    let device = identity.describe();
    if let Some(reason) = &identity.not_storage {
        return Err(Refusal::NotStorage {
            device,
            reason: reason.clone(),
        });
    }
    if identity.is_system_disk() {
        return Err(Refusal::SystemDisk {
            device,
            uses: identity.system_uses.join(", "),
        });
    }
    if identity.bus == Bus::Loop {
        if !limits.allow_loop {
            return Err(Refusal::LoopNotAllowed { device });
        }
    } else if !limits.allowed_buses.contains(&identity.bus) {
        let allowed: Vec<&str> = limits
            .allowed_buses
            .iter()
            .filter(|b| **b != Bus::Loop)
            .map(Bus::as_str)
            .collect();
        return Err(Refusal::BusNotAllowed {
            device,
            bus: identity.bus.to_string(),
            allowed: if allowed.is_empty() {
                "none".into()
            } else {
                allowed.join(", ")
            },
        });
    }
    if !identity.mounts.is_empty() {
        let mounts: Vec<String> = identity
            .mounts
            .iter()
            .map(|m| {
                if m.device == identity.devnode {
                    m.mount_point.display().to_string()
                } else {
                    format!("{} ({})", m.mount_point.display(), m.device.display())
                }
            })
            .collect();
        return Err(Refusal::Mounted {
            device,
            mounts: mounts.join(", "),
            mount_points: identity
                .mounts
                .iter()
                .map(|m| m.mount_point.clone())
                .collect(),
        });
    }
    if !identity.holders.is_empty() {
        return Err(Refusal::Held {
            device,
            holders: identity.holders.join(", "),
        });
    }
    if let Some(limit) = &limits.size_limit {
        if identity.capacity_bytes > limit.max_bytes {
            return Err(Refusal::TooLarge {
                device,
                size: human_bytes(identity.capacity_bytes),
                bytes: identity.capacity_bytes,
                limit: whole_units(limit.max_bytes),
                applies_to: limit.applies_to.clone(),
            });
        }
    }
    Ok(())
}

/// `16 TB` for 16e12 bytes; falls back to one decimal.
fn whole_units(bytes: u64) -> String {
    for (unit, size) in [("TB", 1_000_000_000_000u64), ("GB", 1_000_000_000)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    human_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::identity::MountUse;

    fn disk() -> DeviceIdentity {
        DeviceIdentity {
            devnode: PathBuf::from("/dev/sdb"),
            syspath: PathBuf::from("/sys/devices/x/block/sdb"),
            name: "sdb".into(),
            devnum: (8, 16),
            is_partition: false,
            bus: Bus::Usb,
            vendor: Some("Kingston".into()),
            model: Some("DataTraveler 3.0".into()),
            serial: Some("0019E06B".into()),
            usb_speed_mbit: Some(5000.0),
            usb_id: Some(("0951".into(), "1666".into())),
            capacity_bytes: 32_000_000_000,
            logical_sector_size: 512,
            physical_sector_size: 512,
            removable: true,
            read_only: false,
            partition_table: None,
            volumes: Vec::new(),
            content_error: None,
            holders: Vec::new(),
            mounts: Vec::new(),
            system_uses: Vec::new(),
            loop_backing_file: None,
            not_storage: None,
            properties: BTreeMap::new(),
        }
    }

    fn limits() -> PolicyLimits {
        PolicyLimits {
            allowed_buses: vec![Bus::Usb, Bus::Sata],
            allow_loop: false,
            size_limit: Some(SizeLimit::s3_and_ebs()),
        }
    }

    #[test]
    fn accepts_a_plain_usb_disk() {
        assert_eq!(check(&disk(), &limits()), Ok(()));
    }

    #[test]
    fn messages_name_the_device_and_the_fix() {
        let mut d = disk();
        d.mounts = vec![MountUse {
            device: "/dev/sdb1".into(),
            mount_point: "/mnt".into(),
        }];
        let e = check(&d, &limits())
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.kind(), "mounted");
        assert_eq!(
            e.to_string(),
            "/dev/sdb (Kingston DataTraveler 3.0, serial 0019E06B, 32.0 GB): mounted at /mnt \
             (/dev/sdb1); unmount it (umount, swapoff) before loading: the station reads devices \
             it alone has open"
        );

        let mut d = disk();
        d.bus = Bus::Firewire;
        let e = check(&d, &limits())
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(
            e.to_string()
                .contains("bus firewire is not allowed by the config (allowed: usb, sata)"),
            "{e}"
        );

        let mut d = disk();
        d.capacity_bytes = 18_000_000_000_000;
        let e = check(&d, &limits())
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(
            e.to_string()
                .contains("18.0 TB is over the 16 TB limit for S3 and EBS jobs"),
            "{e}"
        );
        let glacier = PolicyLimits {
            size_limit: Some(SizeLimit::glacier()),
            ..limits()
        };
        d.capacity_bytes = 4_000_000_000_001;
        let e = check(&d, &glacier)
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(
            e.to_string()
                .contains("over the 4 TB limit for Glacier jobs"),
            "{e}"
        );
        d.capacity_bytes = GLACIER_MAX_BYTES;
        assert_eq!(check(&d, &glacier), Ok(()));
    }

    #[test]
    fn order_of_checks() {
        let mut d = disk();
        d.holders = vec!["dm-0".into()];
        d.system_uses = vec!["/".into()];
        d.bus = Bus::Loop;
        assert_eq!(
            check(&d, &limits()).map_err(|e| e.kind()),
            Err("system_disk")
        );
        d.system_uses.clear();
        assert_eq!(
            check(&d, &limits()).map_err(|e| e.kind()),
            Err("loop_not_allowed")
        );
        let loops = PolicyLimits {
            allow_loop: true,
            ..limits()
        };
        assert_eq!(check(&d, &loops).map_err(|e| e.kind()), Err("held"));
        d.holders.clear();
        assert_eq!(check(&d, &loops), Ok(()));
        d.not_storage = Some("a RAM disk".into());
        assert_eq!(check(&d, &loops).map_err(|e| e.kind()), Err("not_storage"));
    }
}
