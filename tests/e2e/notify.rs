//! Notifications end to end: stationd with a real SMTP server (aiosmtpd, tests/smtp/sink.py)
//! on 127.0.0.1, the daemon's Prometheus endpoint and `stationctl events`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{final_state, manifest, tstd_image, Dock, Loop, SERIAL};
use crate::helper::{free_port, repo, venv, wait_for_port, Server};

/// aiosmtpd writing one JSON line per message to `out`.
fn start_smtp(port: u16, out: &Path) -> Server {
    let server = Server(
        Command::new(venv().join("bin/python"))
            .arg(repo().join("tests/smtp/sink.py"))
            .arg(port.to_string())
            .arg(out)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("aiosmtpd (scripts/setup installs it): {e}")),
    );
    wait_for_port(port, "aiosmtpd");
    server
}

fn mails(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The messages once `n` arrived, within `secs`.
fn wait_mails(dock: &Dock, out: &Path, n: usize, secs: u64) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let got = mails(out);
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{} of {n} messages in {secs} s: {got:?}\n{}",
            got.len(),
            dock.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn notifications(smtp: u16, metrics: u16) -> String {
    format!(
        "metrics:\n  listen: 127.0.0.1:{metrics}\nnotifications:\n  smtp_server: 127.0.0.1\n  smtp_port: {smtp}\n  tls: none\n  sender: station@dock.test\n  operator_email: ops@dock.test\n  retry_max_secs: 2\n"
    )
}

/// GET /metrics: (name with labels, value) pairs.
fn scrape(port: u16) -> Vec<(String, f64)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut text = String::new();
    s.read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{e}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                name.to_owned(),
                value.parse().unwrap_or_else(|e| panic!("{l}: {e}")),
            )
        })
        .collect()
}

fn metric(all: &[(String, f64)], name: &str) -> f64 {
    all.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name} in {all:?}"))
}

fn file_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let meta = entry.metadata().unwrap_or_else(|e| panic!("{e}"));
        if meta.is_dir() {
            total += file_bytes(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

fn assert_no_secret(mail: &serde_json::Value) {
    let raw = mail.to_string();
    for secret in ["4321", "pinCode", "trueCryptPassword"] {
        assert!(!raw.contains(secret), "{secret} in {raw}");
    }
}

#[test]
fn a_completed_job_is_mailed_after_an_smtp_outage_and_a_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (smtp_port, metrics_port) = (free_port(), free_port());
    let mut dock = Dock::new(&notifications(smtp_port, metrics_port));
    let out: PathBuf = dock.dir.path().join("mail.jsonl");
    let (job_id, signature) = dock.create_job(&manifest());
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = tstd_image(work.path(), &signature);
    let device = Loop::attach(&image);
    // No SMTP server while the job completes.
    let view = dock.wait_bay(&device.bay(), 120, final_state);
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());

    let m = scrape(metrics_port);
    // Every file but the SIGNATURE file, which is not imported.
    let src = work.path().join("src");
    let signature_len = std::fs::metadata(src.join("SIGNATURE"))
        .unwrap_or_else(|e| panic!("{e}"))
        .len();
    let loaded = file_bytes(&src) - signature_len;
    assert_eq!(
        metric(&m, "station_loaded_bytes_total{kind=\"s3-import\"}") as u64,
        loaded,
        "{m:?}"
    );
    assert!(
        metric(&m, "station_loaded_files_total{kind=\"s3-import\"}") >= 1.0,
        "{m:?}"
    );
    assert_eq!(
        metric(&m, "station_job_results_total{code=\"Complete\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "station_erases_total{outcome=\"verified\"}"),
        1.0
    );
    assert_eq!(metric(&m, "station_bays_busy"), 0.0);
    // Two notificationEmail addresses, neither delivered yet.
    assert_eq!(metric(&m, "station_outbox_pending"), 2.0, "{m:?}");

    // The events: the run's transitions, the job's result, the erase.
    let events: Vec<serde_json::Value> = dock
        .stationctl(&["events"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let states: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "run" && e["bay"] == device.bay().as_str())
        .map(|e| e["state"].as_str().unwrap_or("").to_owned())
        .collect();
    for s in [
        "identified",
        "authenticated",
        "transferring",
        "logging",
        "erasing",
        "done",
    ] {
        assert!(states.iter().any(|x| x == s), "{s} not in {states:?}");
    }
    assert!(events
        .iter()
        .any(|e| e["kind"] == "device" && e["state"] == "arrived"));
    assert!(events
        .iter()
        .any(|e| e["kind"] == "job" && e["job_id"] == job_id.as_str() && e["state"] == "Complete"));
    assert!(events
        .iter()
        .any(|e| e["kind"] == "erase" && e["state"] == "verified"));
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let last = *seqs.last().unwrap_or(&0);
    assert_eq!(
        dock.stationctl(&["events", "--since", &last.to_string()]),
        ""
    );

    // A restart while the server is still down loses nothing.
    std::thread::sleep(Duration::from_secs(3));
    dock.kill();
    dock.start();
    let _smtp = start_smtp(smtp_port, &out);
    let got = wait_mails(&dock, &out, 2, 60);
    std::thread::sleep(Duration::from_secs(2));
    let got_all = mails(&out);
    assert_eq!(got_all.len(), 2, "each address exactly once: {got_all:?}");
    let mut to: Vec<String> = got
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap_or("").to_owned())
        .collect();
    to.sort();
    assert_eq!(to, ["jane.roe@example.com", "john.doe@example.com"]);
    for mail in &got {
        assert_eq!(mail["mail_from"], "station@dock.test");
        assert_eq!(mail["subject"], format!("Job {job_id} Complete"));
        let body = mail["body"].as_str().unwrap_or("");
        assert!(
            body.contains(&format!("s3://myawsbucket/import-log-{job_id}")),
            "{body}"
        );
        assert!(body.contains(&format!("Bytes loaded: {loaded}")), "{body}");
        assert!(body.contains("Errors: 0"), "{body}");
        assert_no_secret(mail);
    }
    let m = scrape(metrics_port);
    assert_eq!(metric(&m, "station_outbox_pending"), 0.0, "{m:?}");
}

#[test]
fn a_stalled_job_mails_the_customer_its_failure_and_the_operator_the_stuck_bay() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (smtp_port, metrics_port) = (free_port(), free_port());
    let dock = Dock::new(&format!(
        "bays:\n  stall_timeout_secs: 3\n{}",
        notifications(smtp_port, metrics_port)
    ));
    let out: PathBuf = dock.dir.path().join("mail.jsonl");
    let _smtp = start_smtp(smtp_port, &out);
    // A live follower from the start: it sees every event as it happens.
    let followed = dock.dir.path().join("follow.jsonl");
    let follower = Server(
        Command::new(env!("CARGO_BIN_EXE_stationctl"))
            .arg("--config")
            .arg(dock.config())
            .args(["events", "--follow"])
            .stdout(std::fs::File::create(&followed).unwrap_or_else(|e| panic!("{e}")))
            .spawn()
            .unwrap_or_else(|e| panic!("stationctl: {e}")),
    );
    let (job_id, signature) = dock.create_job(&manifest());
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = tstd_image(work.path(), &signature);
    let moto = dock._moto.0.id().to_string();
    let stop = Command::new("kill").args(["-STOP", &moto]).status();
    assert!(stop.is_ok_and(|s| s.success()));
    let device = Loop::attach(&image);
    let view = dock.wait_bay(&device.bay(), 120, final_state);
    let _ = Command::new("kill").args(["-CONT", &moto]).status();
    assert_eq!(view["state"], "done", "{view}\n{}", dock.log());
    let got = wait_mails(&dock, &out, 3, 30);
    std::thread::sleep(Duration::from_millis(500));
    drop(follower);
    let listed = dock.stationctl(&["events"]);
    let live = std::fs::read_to_string(&followed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(live, listed, "the follower saw exactly what the log holds");
    assert!(
        live.lines()
            .any(|l| l.contains("\"kind\":\"job\"") && l.contains("\"state\":\"DeviceError\"")),
        "{live}"
    );
    let operator: Vec<&serde_json::Value> = got
        .iter()
        .filter(|m| m["rcpt_tos"][0] == "ops@dock.test")
        .collect();
    assert_eq!(operator.len(), 1, "{got:?}");
    assert_eq!(
        operator[0]["subject"],
        format!(
            "Bay {} stuck: job {job_id} failed (DeviceError)",
            device.bay()
        )
    );
    let customers: Vec<&serde_json::Value> = got
        .iter()
        .filter(|m| m["rcpt_tos"][0] != "ops@dock.test")
        .collect();
    assert_eq!(customers.len(), 2, "{got:?}");
    for mail in &customers {
        assert_eq!(mail["subject"], format!("Job {job_id} failed: DeviceError"));
        let body = mail["body"].as_str().unwrap_or("");
        assert!(
            body.contains("Your device would not function properly."),
            "{body}"
        );
        assert!(body.contains("What to do:"), "{body}");
    }
    for mail in &got {
        assert_no_secret(mail);
    }
    let m = scrape(metrics_port);
    assert_eq!(
        metric(&m, "station_job_results_total{code=\"DeviceError\"}"),
        1.0,
        "{m:?}"
    );
    assert!(listed.contains("\"state\":\"stuck\""), "{listed}");
}

#[test]
fn a_device_that_cannot_be_erased_is_mailed_to_the_customer_and_the_operator() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (smtp_port, metrics_port) = (free_port(), free_port());
    let dock = Dock::new(&notifications(smtp_port, metrics_port));
    let out: PathBuf = dock.dir.path().join("mail.jsonl");
    let _smtp = start_smtp(smtp_port, &out);
    let (job_id, signature) = dock.create_job(&manifest());
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = tstd_image(work.path(), &signature);
    // Hold the transfer (the target stops answering) while the device turns read-only, as
    // a drive whose writes fail does: the load reads it, the erase cannot write it.
    let moto = dock._moto.0.id().to_string();
    let stop = Command::new("kill").args(["-STOP", &moto]).status();
    assert!(stop.is_ok_and(|s| s.success()));
    let device = Loop::attach(&image);
    dock.wait_bay(&device.bay(), 60, |v| v["state"] == "transferring");
    let ro = Command::new("blockdev")
        .args(["--setro", &device.0])
        .status();
    let _ = Command::new("kill").args(["-CONT", &moto]).status();
    assert!(ro.is_ok_and(|s| s.success()));
    let view = dock.wait_bay(&device.bay(), 120, final_state);
    let _ = Command::new("blockdev")
        .args(["--setrw", &device.0])
        .status();
    assert_eq!(view["state"], "failed", "{view}\n{}", dock.log());
    let subject =
        format!("Job {job_id}: the device could not be erased and is scheduled for destruction");
    let got = wait_mails(&dock, &out, 5, 30);
    let destruction: Vec<&serde_json::Value> = got
        .iter()
        .filter(|m| m["subject"] == subject.as_str())
        .collect();
    let mut to: Vec<&str> = destruction
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap_or(""))
        .collect();
    to.sort_unstable();
    assert_eq!(
        to,
        [
            "jane.roe@example.com",
            "john.doe@example.com",
            "ops@dock.test"
        ],
        "{got:?}"
    );
    let ops = destruction
        .iter()
        .find(|m| m["rcpt_tos"][0] == "ops@dock.test")
        .unwrap_or_else(|| panic!("{got:?}"));
    let body = ops["body"].as_str().unwrap_or("");
    assert!(body.contains("ERASE FAILED"), "{body}");
    assert!(body.contains("Do not return this device"), "{body}");
    assert_eq!(
        got.iter()
            .filter(|m| m["subject"] == format!("Job {job_id} Complete"))
            .count(),
        2,
        "{got:?}"
    );
    for mail in &got {
        assert_no_secret(mail);
    }
    let m = scrape(metrics_port);
    assert_eq!(
        metric(&m, "station_erases_total{outcome=\"failed\"}"),
        1.0,
        "{m:?}"
    );
}
