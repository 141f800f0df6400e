//! systemd's notify protocol (Type=notify): readiness and the watchdog keep-alive, sent as
//! datagrams to `$NOTIFY_SOCKET`. Outside systemd (no variable) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (`READY=1`, `WATCHDOG=1`, `STOPPING=1`) to systemd, if it listens.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket: the name after the `@`.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot notify systemd of {state}");
    }
}

/// Pets systemd's watchdog at half its interval (`$WATCHDOG_USEC`), forever; returns at once
/// when no watchdog is configured.
pub async fn watchdog() {
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&u| u > 0)
    else {
        return;
    };
    let every = Duration::from_micros(usec / 2);
    loop {
        notify("WATCHDOG=1");
        tokio::time::sleep(every).await;
    }
}
