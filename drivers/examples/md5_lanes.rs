//! Measures `drivers::md5_lanes` for `bench/md5.sh` (run it in release, pinned to one core):
//!
//!   md5_lanes single BYTES          md-5 (RustCrypto) over one message of BYTES
//!   md5_lanes stream BYTES          `md5_lanes::digest` (single stream) over one message of BYTES
//!   md5_lanes messages IMPL BYTES   one message of BYTES at a time, as `openssl speed` does,
//!                                   repeated until at least 512 MiB has been hashed; IMPL is
//!                                   `md-5`, `digest` (`md5_lanes::digest`) or `lane`
//!                                   (`Md5Lane::update` and `finalize`)
//!   md5_lanes lanes COUNT BYTES     `digest_many` over COUNT messages of BYTES each, repeated
//!                                   until at least 1 GiB has been hashed
//!
//! Each is three timed trials, the median reported; our digests are checked against md-5 once
//! before the clock starts.
//!
//! The messages are pseudo-random bytes written before the clock starts. Figures go to stdout
//! as `key: value` lines; rates are MB/s (10^6 bytes per second) of this thread's CPU time and,
//! beside them, of wall-clock time.

mod common;

use common::{cpu_seconds, mb_per_s};

use std::time::Instant;

use md5::{Digest, Md5};

/// The least a `lanes` run hashes, so small groups are timed over many repetitions.
const MIN_TOTAL: u64 = 1 << 30;

/// Timed trials of a `lanes` run; the median is reported.
const TRIALS: usize = 3;

fn main() {
    if let Err(e) = run() {
        eprintln!("md5_lanes: {e}");
        std::process::exit(1);
    }
}

/// `len` pseudo-random bytes (xorshift), different for each `seed`.
fn message(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The least a `messages` run hashes.
const MIN_TOTAL_MESSAGES: u64 = 512 << 20;

/// Runs `pass` `TRIALS` times and returns the median trial's (CPU, wall-clock) seconds.
fn median_trial(mut pass: impl FnMut()) -> (f64, f64) {
    let mut trials: Vec<(f64, f64)> = (0..TRIALS)
        .map(|_| {
            let cpu_start = cpu_seconds();
            let started = Instant::now();
            pass();
            (cpu_seconds() - cpu_start, started.elapsed().as_secs_f64())
        })
        .collect();
    trials.sort_by(|a, b| a.0.total_cmp(&b.0));
    trials[TRIALS / 2]
}

/// The single-stream MD5 implementations a `messages` run can time.
#[derive(Clone, Copy)]
enum Single {
    /// md-5 (RustCrypto), `Md5::digest`.
    Md5Crate,
    /// `drivers::md5_lanes::digest`.
    Digest,
    /// `drivers::md5_lanes::Md5Lane`: one `update`, `finalize`.
    Lane,
}

impl Single {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "md-5" => Ok(Self::Md5Crate),
            "digest" => Ok(Self::Digest),
            "lane" => Ok(Self::Lane),
            _ => Err(format!(
                "unknown implementation {name:?} (md-5, digest, lane)"
            )),
        }
    }

    fn digest(self, data: &[u8]) -> [u8; 16] {
        match self {
            Self::Md5Crate => Md5::digest(data).into(),
            Self::Digest => drivers::md5_lanes::digest(data),
            Self::Lane => {
                let mut lane = drivers::md5_lanes::Md5Lane::new();
                lane.update(data);
                lane.finalize()
            }
        }
    }
}

/// Prints the rates of `bytes` hashed in `cpu` and `wall` seconds.
fn report(bytes: u64, cpu: f64, wall: f64) {
    println!("bytes: {bytes}");
    println!("cpu seconds: {cpu:.3}");
    println!("MB/s of cpu time: {:.0}", mb_per_s(bytes, cpu));
    println!("MB/s: {:.0}", mb_per_s(bytes, wall));
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [mode @ ("single" | "stream"), bytes] => {
            let data = message(bytes.parse()?, 1);
            let want: [u8; 16] = Md5::digest(&data).into();
            let single = if mode == "single" {
                Single::Md5Crate
            } else {
                Single::Digest
            };
            if single.digest(&data) != want {
                return Err("md5_lanes::digest disagrees with md-5".into());
            }
            let (cpu, wall) = median_trial(|| {
                std::hint::black_box(single.digest(std::hint::black_box(&data)));
            });
            println!("md5: {}", hex(&want));
            println!("median of {TRIALS} trials");
            report(data.len() as u64, cpu, wall);
        }
        ["messages", single, bytes] => {
            let single = Single::parse(single)?;
            let data = message(bytes.parse()?, 1);
            if single.digest(&data) != <[u8; 16]>::from(Md5::digest(&data)) {
                return Err("disagrees with md-5".into());
            }
            let passes = MIN_TOTAL_MESSAGES.div_ceil(data.len().max(1) as u64);
            let (cpu, wall) = median_trial(|| {
                for _ in 0..passes {
                    std::hint::black_box(single.digest(std::hint::black_box(&data)));
                }
            });
            println!(
                "messages: {} bytes, {passes} one after another, median of {TRIALS} trials",
                data.len()
            );
            report(data.len() as u64 * passes, cpu, wall);
        }
        ["lanes", count, bytes] => {
            let count: usize = count.parse()?;
            let bytes: usize = bytes.parse()?;
            let messages: Vec<Vec<u8>> = (0..count).map(|i| message(bytes, i as u64 + 1)).collect();
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let per_pass = (count * bytes) as u64;
            let passes = MIN_TOTAL.div_ceil(per_pass.max(1)).max(1);
            // One pass that is checked against md-5 and not timed: it also warms the pages.
            let digests = drivers::md5_lanes::digest_many(&refs);
            for (m, d) in messages.iter().zip(&digests) {
                if Md5::digest(m)[..] != d[..] {
                    return Err("digest_many disagrees with md-5".into());
                }
            }
            // The median of three timed trials, so one disturbed trial does not decide the figure.
            let (cpu, wall) = median_trial(|| {
                for _ in 0..passes {
                    std::hint::black_box(drivers::md5_lanes::digest_many(std::hint::black_box(
                        &refs,
                    )));
                }
            });
            println!("lanes: {count} x {bytes} bytes, {passes} passes, median of {TRIALS} trials");
            println!("checked against md-5: true");
            report(per_pass * passes, cpu, wall);
        }
        _ => {
            return Err(
                "usage: md5_lanes single BYTES | stream BYTES | messages IMPL BYTES \
                        | lanes COUNT BYTES"
                    .into(),
            )
        }
    }
    Ok(())
}
