//! `stationctl manifest check`: the output and exit-code contract.

use crate::helper::{guide_manifest, no_config, stationctl};

#[test]
fn guide_examples_print_ok_and_their_kind() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = no_config(&dir);
    for (name, job_type, kind) in [
        ("s3-import-required", "Import", "s3-import"),
        ("ebs-import-reference", "Import", "ebs-import"),
        ("glacier-import-reference", "import", "glacier-import"),
        ("s3-export-reference", "Export", "s3-export"),
        ("tstd3", "IMPORT", "s3-import"),
    ] {
        let path = guide_manifest(name);
        let run = stationctl(
            &[
                "--config",
                &config,
                "manifest",
                "check",
                "--job-type",
                job_type,
                &path.display().to_string(),
            ],
            b"",
        );
        assert_eq!(run.stdout, format!("OK {kind}\n"), "{name}: {}", run.stderr);
        assert_eq!(run.code, Some(0), "{name}");
    }
}

#[test]
fn invalid_manifest_prints_exception_first_and_exits_1() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = no_config(&dir);
    let text = std::fs::read_to_string(guide_manifest("tstd1")).unwrap_or_else(|e| panic!("{e}"));
    let bad = format!("{text}logPrefix: {}\nacl: everyone\n", "x".repeat(1020));
    let run = stationctl(
        &[
            "--config",
            &config,
            "manifest",
            "check",
            "--job-type",
            "Import",
            "-",
        ],
        bad.as_bytes(),
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.first_line().starts_with(
            "InvalidManifestFieldException: logPrefix: line 16: logPrefix + \"import-log-\""
        ),
        "{}",
        run.stdout
    );
    // The other problem is reported on the next line.
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert!(run
        .stdout
        .lines()
        .nth(1)
        .unwrap_or("")
        .starts_with("InvalidManifestFieldException: acl: line 17: "));
    // The PIN of the manifest never shows.
    assert!(!run.stdout.contains("4321"));
}

#[test]
fn malformed_and_missing_codes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = no_config(&dir);
    let run = stationctl(
        &[
            "--config",
            &config,
            "manifest",
            "check",
            "--job-type",
            "Export",
            "-",
        ],
        b"manifestVersion: 2.0\n\tdeviceId: x\n",
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.first_line()
            .starts_with("MalformedManifestException: line 2: "),
        "{}",
        run.stdout
    );

    let run = stationctl(
        &[
            "--config",
            &config,
            "manifest",
            "check",
            "--job-type",
            "Import",
            &guide_manifest("glacier-import-required")
                .display()
                .to_string(),
        ],
        b"",
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.first_line()
            .starts_with("MissingManifestFieldException: eraseDevice: "),
        "{}",
        run.stdout
    );
}

#[test]
fn facility_country_comes_from_the_config() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let irish = dir.path().join("ie.yaml");
    std::fs::write(&irish, "facility_country: IE\n").unwrap_or_else(|e| panic!("{e}"));
    // A return to the USA from an Irish facility needs customs; the TSTD1 manifest has none.
    let run = stationctl(
        &[
            "--config",
            &irish.display().to_string(),
            "manifest",
            "check",
            "--job-type",
            "Import",
            &guide_manifest("tstd1").display().to_string(),
        ],
        b"",
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.first_line()
            .starts_with("MissingCustomsException: customs: "),
        "{}",
        run.stdout
    );
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = no_config(&dir);
    let run = stationctl(
        &[
            "--config",
            &config,
            "manifest",
            "check",
            "--job-type",
            "Import",
            "/nonexistent/manifest.yaml",
        ],
        b"",
    );
    assert_eq!(run.code, Some(2));
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("/nonexistent/manifest.yaml"),
        "{}",
        run.stderr
    );

    let run = stationctl(&["manifest", "check", "--job-type", "Copy", "x"], b"");
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("use Import or Export"),
        "{}",
        run.stderr
    );
}
