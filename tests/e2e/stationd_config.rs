//! `stationd --config PATH check-config`.

use crate::helper::stationd;

#[test]
fn shipped_config_checks_ok() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd/stationd.yaml");
    let run = stationd(&["--config", path, "check-config"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, format!("OK {path}\n"));
}

#[test]
fn unknown_key_is_named_and_exits_1() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("stationd.yaml");
    std::fs::write(&path, "station_name: dock\ndevices:\n  allow_loop: true\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let run = stationd(&["--config", &path.display().to_string(), "check-config"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("unknown field `allow_loop`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&path.display().to_string()),
        "{}",
        run.stderr
    );
}

#[test]
fn missing_explicit_config_is_an_error() {
    let run = stationd(&["--config", "/nonexistent/stationd.yaml", "check-config"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("/nonexistent/stationd.yaml"),
        "{}",
        run.stderr
    );
}
