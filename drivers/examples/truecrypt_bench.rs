//! Measures `drivers::truecrypt` for `bench/truecrypt.sh` (run it in release):
//!
//!   truecrypt_bench create PATH BYTES    a new AES / SHA-512 container of BYTES (encrypted zeros)
//!   truecrypt_bench read PATH            open it, read the whole data area through the view
//!   truecrypt_bench trial PATH           one full trial round with a wrong password
//!   truecrypt_bench read-direct PATH     as `read`, but as an import reads a device: through
//!                                        `BlockDevice` (`O_DIRECT`) into a `Vec` (not
//!                                        page-aligned); disk-bound, so compare CPU time
//!
//! The password is `bench password`. Figures go to stdout as `key: value` lines.

mod common;

use common::{cpu_seconds, mb_per_s};

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use drivers::block::BlockDevice;
use drivers::block_write::{WritableDevice, WriteAt};
use drivers::source::{ImageFile, ReadAt};
use drivers::truecrypt::{create, open, CreateOptions, CreatePrf, DataFill, OpenOptions};

const PASSWORD: &[u8] = b"bench password";
/// Read size: what the pipelines' reader thread issues.
const CHUNK: usize = 8 << 20;

fn main() {
    if let Err(e) = run() {
        eprintln!("truecrypt_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["create", path, bytes] => {
            let size: u64 = bytes.parse()?;
            let file = std::fs::File::create(path)?;
            file.set_len(size)?;
            drop(file);
            let device = WritableDevice::open(Path::new(path))?;
            let started = Instant::now();
            let options = CreateOptions {
                prf: CreatePrf::Sha512,
                fill: DataFill::Zeros,
            };
            let view = create(device, size, PASSWORD, &[], &options, &mut rand::rng())?;
            view.flush()?;
            let seconds = started.elapsed().as_secs_f64();
            println!("created: {} data bytes", view.size());
            println!("seconds: {seconds:.3}");
            println!("write MB/s: {:.0}", mb_per_s(view.size(), seconds));
        }
        [mode @ ("read" | "read-direct"), path] => {
            let source: Arc<dyn ReadAt> = if mode == "read" {
                Arc::new(ImageFile::open(Path::new(path))?)
            } else {
                Arc::new(BlockDevice::open(Path::new(path))?)
            };
            let source_alignment = source.buffer_alignment();
            let volume = open(source, PASSWORD, &[], &OpenOptions::default())?;
            let mut buf = vec![0u8; CHUNK];
            let size = volume.size();
            let cpu_start = cpu_seconds();
            let started = Instant::now();
            let mut at = 0;
            let mut zeros = true;
            while at < size {
                let n = CHUNK.min((size - at) as usize);
                volume.read_exact_at(at, &mut buf[..n])?;
                // The data area holds encrypted zeros: sample each chunk.
                zeros &= buf[..n].iter().step_by(4096).all(|&b| b == 0);
                at += n as u64;
            }
            let seconds = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu_start;
            println!("volume: {}", volume.info());
            println!("aes-xts: {}", drivers::truecrypt::aes_xts_backend());
            println!(
                "buffer: {} (source wants {}-byte alignment)",
                if buf.as_ptr().addr().is_multiple_of(4096) {
                    "page-aligned"
                } else {
                    "not page-aligned"
                },
                source_alignment
            );
            println!("read: {size} bytes");
            println!("plaintext zeros: {zeros}");
            println!("seconds: {seconds:.3}");
            println!("cpu seconds: {cpu:.3}");
            println!("MB/s: {:.0}", mb_per_s(size, seconds));
            println!("MB/s of cpu time: {:.0}", mb_per_s(size, cpu));
        }
        ["trial", path] => {
            let source: Arc<dyn ReadAt> = Arc::new(ImageFile::open(Path::new(path))?);
            let started = Instant::now();
            let result = open(source, b"not the password", &[], &OpenOptions::default());
            let seconds = started.elapsed().as_secs_f64();
            println!("opened: {}", result.is_ok());
            println!("trial seconds: {seconds:.3}");
        }
        _ => return Err(
            "usage: truecrypt_bench create PATH BYTES | read PATH | read-direct PATH | trial PATH"
                .into(),
        ),
    }
    Ok(())
}
