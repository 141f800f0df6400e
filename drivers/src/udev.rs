//! The udev watcher: add, change and remove events of block devices, from systemd-udevd.
//!
//! A [`DeviceWatcher`] runs libudev's monitor (the `udev` netlink group, subsystem `block`) on
//! its own blocking thread, which waits for the socket with a timeout so that it notices a
//! shutdown request within one [`WatchOptions::poll_timeout`]. It first enumerates the block
//! devices already present (so a disk plugged in before the daemon started is seen) and then
//! forwards every event through a `std::sync::mpsc` channel. No async runtime is involved: the
//! daemon bridges the channel into its own.
//!
//! Events come from systemd-udevd after its rules ran (so `ID_*` properties are filled in); when
//! udevd is not running, the monitor is silent. The listening socket is opened before the
//! enumeration, so a device that appears in between is reported at least once (possibly as
//! both an enumerated [`DeviceAction::Add`] and a live event).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What happened to a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceAction {
    /// The device appeared (or, with [`DeviceEvent::initial`], was present at start).
    Add,
    /// The device changed: a medium inserted or removed, a loop device attached or detached,
    /// a partition table re-read.
    Change,
    /// The device went away.
    Remove,
}

impl DeviceAction {
    /// `add`, `change` or `remove`, as udev spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Change => "change",
            Self::Remove => "remove",
        }
    }
}

impl std::fmt::Display for DeviceAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of block device (udev's `DEVTYPE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DevType {
    /// A whole disk (including loop devices and media readers).
    Disk,
    /// A partition of a disk.
    Partition,
    /// Anything else udev reports, verbatim (empty when unset).
    Other(String),
}

impl DevType {
    fn parse(value: Option<&str>) -> Self {
        match value {
            Some("disk") => Self::Disk,
            Some("partition") => Self::Partition,
            other => Self::Other(other.unwrap_or_default().to_owned()),
        }
    }
}

/// One event about one block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    /// What happened.
    pub action: DeviceAction,
    /// Found by the enumeration at start rather than by a live event (always [`DeviceAction::Add`]).
    pub initial: bool,
    /// The device node, `/dev/sdb`.
    pub devnode: PathBuf,
    /// The sysfs path, `/sys/devices/.../block/sdb`.
    pub syspath: PathBuf,
    /// The kernel name, `sdb`.
    pub sysname: String,
    /// Disk or partition.
    pub devtype: DevType,
    /// Major and minor device numbers, when udev reports them.
    pub devnum: Option<(u32, u32)>,
    /// udev's sequence number (0 for enumerated devices).
    pub seqnum: u64,
    /// Every udev property (`ID_BUS`, `ID_SERIAL`, `DISK_SEQ`...), lossily converted to UTF-8.
    pub properties: BTreeMap<String, String>,
}

/// How a [`DeviceWatcher`] runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The longest the thread waits on the socket before it checks for shutdown again.
    pub poll_timeout: Duration,
    /// Report the block devices already present, as [`DeviceAction::Add`] with
    /// [`DeviceEvent::initial`] set, before any live event.
    pub enumerate_existing: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            poll_timeout: Duration::from_millis(250),
            enumerate_existing: true,
        }
    }
}

/// Why the watcher could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A libudev or poll call failed.
    #[error("udev watcher: {step}: {source} (is libudev installed and /sys mounted?)")]
    Udev {
        /// What was being done.
        step: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The watcher thread could not be started or ended by panicking.
    #[error("udev watcher thread: {0}")]
    Thread(String),
}

fn udev_error(step: &'static str) -> impl FnOnce(io::Error) -> WatchError {
    move |source| WatchError::Udev { step, source }
}

/// A running udev watcher; stopping it (or dropping it) ends its thread within one poll
/// timeout.
#[derive(Debug)]
pub struct DeviceWatcher {
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), WatchError>>>,
}

impl DeviceWatcher {
    /// Starts watching block devices, sending every event to `events`. Returns once the
    /// monitor socket listens (events from then on are not lost); the enumeration of existing
    /// devices then runs on the watcher thread. The thread also ends by itself when the
    /// receiver is dropped.
    ///
    /// # Errors
    ///
    /// libudev cannot create the monitor or the poller (no libudev, no netlink).
    pub fn start(events: Sender<DeviceEvent>, options: WatchOptions) -> Result<Self, WatchError> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&shutdown);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), WatchError>>(1);
        let thread = std::thread::Builder::new()
            .name("udev-watcher".into())
            .spawn(move || run(events, options, flag, ready_tx))
            .map_err(|e| WatchError::Thread(format!("spawn: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                shutdown,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(join(thread)
                .err()
                .unwrap_or_else(|| WatchError::Thread("ended before it was ready".into()))),
        }
    }

    /// The flag the thread polls; setting it has the same effect as [`DeviceWatcher::stop`]
    /// without waiting.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// Whether the watcher thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Asks the thread to stop and waits for it (at most about one poll timeout).
    ///
    /// # Errors
    ///
    /// The thread had stopped on an error (the poll failed) or panicked.
    pub fn stop(mut self) -> Result<(), WatchError> {
        self.shutdown.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(thread) => join(thread),
            None => Ok(()),
        }
    }
}

impl Drop for DeviceWatcher {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn join(thread: JoinHandle<Result<(), WatchError>>) -> Result<(), WatchError> {
    thread
        .join()
        .map_err(|_| WatchError::Thread("panicked".into()))?
}

const SOCKET: mio::Token = mio::Token(0);

fn run(
    events: Sender<DeviceEvent>,
    options: WatchOptions,
    shutdown: Arc<AtomicBool>,
    ready: mpsc::SyncSender<Result<(), WatchError>>,
) -> Result<(), WatchError> {
    let setup = || -> Result<(::udev::MonitorSocket, mio::Poll), WatchError> {
        let mut socket = ::udev::MonitorBuilder::new()
            .and_then(|b| b.match_subsystem("block"))
            .and_then(|b| b.listen())
            .map_err(udev_error("open the monitor socket"))?;
        let poll = mio::Poll::new().map_err(udev_error("create the poller"))?;
        poll.registry()
            .register(&mut socket, SOCKET, mio::Interest::READABLE)
            .map_err(udev_error("register the monitor socket"))?;
        Ok((socket, poll))
    };
    let (socket, mut poll) = match setup() {
        Ok(parts) => {
            let _ = ready.send(Ok(()));
            parts
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    if options.enumerate_existing {
        for event in enumerate()? {
            if events.send(event).is_err() {
                return Ok(());
            }
        }
    }
    let mut ready_events = mio::Events::with_capacity(8);
    while !shutdown.load(Ordering::SeqCst) {
        match poll.poll(&mut ready_events, Some(options.poll_timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(udev_error("wait for the monitor socket")(e)),
        }
        // Drained on every wake-up, timeout included: the readiness notification is
        // edge-triggered, and a receive that stopped early must not leave events stranded.
        for event in socket.iter() {
            let Some(action) = action(event.event_type()) else {
                continue;
            };
            let Some(event) = device_event(&event.device(), action, false, event.sequence_number())
            else {
                continue;
            };
            if events.send(event).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn action(event_type: ::udev::EventType) -> Option<DeviceAction> {
    match event_type {
        ::udev::EventType::Add => Some(DeviceAction::Add),
        ::udev::EventType::Change => Some(DeviceAction::Change),
        ::udev::EventType::Remove => Some(DeviceAction::Remove),
        // bind/unbind/move/online/offline say nothing about the medium.
        _ => None,
    }
}

/// The block devices present now, as initial [`DeviceAction::Add`] events (disks before
/// their partitions, in sysfs order).
///
/// # Errors
///
/// libudev cannot enumerate `/sys/class/block`.
pub fn enumerate() -> Result<Vec<DeviceEvent>, WatchError> {
    let mut enumerator = ::udev::Enumerator::new().map_err(udev_error("create the enumerator"))?;
    enumerator
        .match_subsystem("block")
        .map_err(udev_error("match subsystem block"))?;
    let devices = enumerator
        .scan_devices()
        .map_err(udev_error("scan block devices"))?;
    let mut out: Vec<DeviceEvent> = devices
        .filter_map(|device| device_event(&device, DeviceAction::Add, true, 0))
        .collect();
    out.sort_by_key(|e| e.devtype != DevType::Disk);
    Ok(out)
}

fn device_event(
    device: &::udev::Device,
    action: DeviceAction,
    initial: bool,
    seqnum: u64,
) -> Option<DeviceEvent> {
    let devnode = device.devnode().map(Path::to_path_buf).or_else(|| {
        device
            .property_value("DEVNAME")
            .map(|name| Path::new("/dev").join(name))
    })?;
    let properties = device
        .properties()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                p.value().to_string_lossy().into_owned(),
            )
        })
        .collect();
    Some(DeviceEvent {
        action,
        initial,
        devnode,
        syspath: device.syspath().to_path_buf(),
        sysname: device.sysname().to_string_lossy().into_owned(),
        devtype: DevType::parse(device.devtype().and_then(|t| t.to_str())),
        devnum: device.devnum().map(|d| (libc::major(d), libc::minor(d))),
        seqnum,
        properties,
    })
}
