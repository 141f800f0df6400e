//! Erases a device with the erase pipeline and prints the write and verify rates, for
//! `bench/erase.sh`. DESTROYS THE DEVICE'S CONTENTS.
//!
//! Usage: `erase DEVICE [--sampled N]`. Prints one line of `key=value` pairs:
//! `write_bytes`, `write_secs` (writes and their flushes), `verify_bytes`, `verify_secs`,
//! `result`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use drivers::block_write::WritableDevice;
use drivers::source::ReadAt;
use pipelines::erase::{erase, ErasePlan, NoProgress, Verify};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let device = PathBuf::from(args.next().ok_or("usage: erase DEVICE [--sampled N]")?);
    let mut plan = ErasePlan::default();
    if let Some(flag) = args.next() {
        let n = args.next().filter(|_| flag == "--sampled");
        let every_n = n.ok_or("usage: erase DEVICE [--sampled N]")?.parse()?;
        plan.verify = Verify::Sampled { every_n };
    }
    let dev = WritableDevice::open(&device)?;
    let size = ReadAt::size(&dev);
    let mut written_at = None;
    let start = Instant::now();
    let outcome = erase(
        &dev,
        &plan,
        &NoProgress,
        &AtomicBool::new(false),
        &mut |cp| {
            // The checkpoint that ends the write phase comes after its flush; verifying starts
            // right after it.
            if cp.verified_up_to == 0 && cp.written_up_to == size {
                written_at.get_or_insert_with(Instant::now);
            }
        },
    );
    let end = Instant::now();
    let written_at = written_at.unwrap_or(end);
    println!(
        "write_bytes={} write_secs={:.6} verify_bytes={} verify_secs={:.6} result={:?}",
        outcome.bytes_written,
        (written_at - start).as_secs_f64(),
        outcome.bytes_verified,
        (end - written_at).as_secs_f64(),
        outcome.result
    );
    Ok(())
}
