//! tracing setup shared by the binaries: `-v` raises the level, `RUST_LOG` overrides it.

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber at `warn`, `info`, `debug` or `trace` for 0, 1, 2 or more `-v`.
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // fuser warns when its session's own unmount finds the export's FUSE file already
    // unmounted by us, which is the normal order of the teardown.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},fuser::mnt=error")));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
