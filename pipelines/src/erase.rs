//! Erasing a customer's device after its job: a zero overwrite of every block, a flush, then a
//! read-back that proves the zeros are on the medium; and the signed certificate that says so.
//!
//! The pipeline writes the device in large `O_DIRECT` chunks from one reused zero buffer, a few
//! requests in flight at once, so the rate is the device's and the page cache is untouched. It reports checkpoints (how far
//! writing and verifying have come) for the caller to persist, so a restarted daemon resumes
//! where the last checkpoint left off instead of starting over; a checkpoint in the write phase
//! is only reported after a flush, so it never claims more than is on the medium. A write
//! error or a byte that reads back non-zero fails the erase with its offset: the caller flags
//! the device for destruction. Whether a device may be erased at all (it passed policy) is the
//! caller's decision.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use drivers::block::AlignedBuf;
use drivers::block_write::WriteAt;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The size of each write and read-back: large enough for full device throughput.
pub const CHUNK: usize = 8 << 20;

/// How often (in bytes) a checkpoint is reported by default.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 256 << 20;

/// How much of the device is read back after the overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Every byte (the default).
    All,
    /// One chunk in every `every_n` (chunks 0, n, 2n, ...) plus the last chunk; 0 or 1 means
    /// every chunk.
    Sampled {
        /// The stride, in chunks.
        every_n: u64,
    },
}

impl Verify {
    /// Whether chunk `index` of `count` is read back.
    fn includes(self, index: u64, count: u64) -> bool {
        match self {
            Verify::All | Verify::Sampled { every_n: 0 | 1 } => true,
            Verify::Sampled { every_n } => index.is_multiple_of(every_n) || index + 1 == count,
        }
    }
}

/// How far an erase has come: what the caller persists to resume after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// When the erase first started (unix seconds), kept across resumes for the certificate.
    pub started: u64,
    /// Bytes from offset 0 that are written with zeros and flushed.
    pub written_up_to: u64,
    /// Bytes from offset 0 that the verify phase has passed (read back, or skipped by
    /// sampling); 0 until writing is complete.
    pub verified_up_to: u64,
    /// Bytes actually read back and found zero so far.
    pub bytes_verified: u64,
}

/// What to do: where to resume, how much to verify, and the I/O and checkpoint sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasePlan {
    /// The last persisted checkpoint of an interrupted erase of this device, if any.
    pub resume: Option<Checkpoint>,
    /// How much to read back.
    pub verify: Verify,
    /// Bytes per write and read ([`CHUNK`]); a multiple of the device's sector size.
    pub chunk: usize,
    /// Bytes between checkpoints ([`DEFAULT_CHECKPOINT_EVERY`]).
    pub checkpoint_every: u64,
}

impl Default for ErasePlan {
    fn default() -> Self {
        Self {
            resume: None,
            verify: Verify::All,
            chunk: CHUNK,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        }
    }
}

impl ErasePlan {
    /// The method as the erase record and certificate state it.
    pub fn method(&self) -> String {
        let verify = match self.verify {
            Verify::All | Verify::Sampled { every_n: 0 | 1 } => "verify all".to_owned(),
            Verify::Sampled { every_n } => {
                format!("verify sampled (1 chunk in {every_n}, and the last)")
            }
        };
        let chunk = if self.chunk.is_multiple_of(1 << 20) {
            format!("{} MiB", self.chunk >> 20)
        } else {
            format!("{} bytes", self.chunk)
        };
        format!("zero-overwrite, O_DIRECT {chunk}, {verify}")
    }
}

/// The phase an erase is in, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasePhase {
    /// Writing zeros.
    Write,
    /// Reading back.
    Verify,
}

/// Where an erase reports progress (the console's live view).
pub trait EraseProgress: Sync {
    /// `done` of `total` bytes of `phase` are passed.
    fn progress(&self, phase: ErasePhase, done: u64, total: u64);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl EraseProgress for NoProgress {
    fn progress(&self, _phase: ErasePhase, _done: u64, _total: u64) {}
}

/// How an erase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseResult {
    /// Every byte was written and flushed, and the read-back found only zeros.
    Verified,
    /// A write, flush or read failed, or a byte read back non-zero: flag for destruction.
    Failed {
        /// The byte offset of the failed request, or of the first non-zero byte.
        offset: u64,
        /// What failed, naming the device.
        reason: String,
    },
    /// The stop flag was raised; resume from [`EraseOutcome::checkpoint`].
    Cancelled,
}

/// What an erase did: the erase record's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraseOutcome {
    /// The device, as it describes itself.
    pub device: String,
    /// The device's size in bytes.
    pub size: u64,
    /// Bytes written with zeros and flushed, over all runs of this erase.
    pub bytes_written: u64,
    /// Bytes read back and found zero, over all runs of this erase.
    pub bytes_verified: u64,
    /// The method, from [`ErasePlan::method`].
    pub method: String,
    /// When the erase first started (unix seconds).
    pub started: u64,
    /// When it ended (unix seconds).
    pub ended: u64,
    /// How it ended.
    pub result: EraseResult,
    /// The last state reached (also reported to the checkpoint callback when cancelled).
    pub checkpoint: Checkpoint,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The byte index of the first non-zero byte of `buf`, if any.
///
/// ORs each 4 KiB block together (which the compiler vectorises) and looks for the byte only
/// in a block that is not all zero.
pub fn first_nonzero(buf: &[u8]) -> Option<usize> {
    const BLOCK: usize = 4096;
    buf.chunks(BLOCK).enumerate().find_map(|(i, block)| {
        if block.iter().fold(0u8, |acc, &b| acc | b) == 0 {
            None
        } else {
            block.iter().position(|&b| b != 0).map(|p| i * BLOCK + p)
        }
    })
}

/// Where a resumed erase starts: a checkpoint that does not fit this device or plan is
/// rounded down to a chunk boundary (rewriting more is harmless), and verifying starts over
/// unless writing had finished.
fn sanitize(resume: Option<Checkpoint>, size: u64, chunk: u64) -> Checkpoint {
    let Some(mut cp) = resume else {
        return Checkpoint {
            started: now(),
            ..Checkpoint::default()
        };
    };
    let round = |at: u64| {
        if at >= size {
            size
        } else {
            at - at % chunk
        }
    };
    cp.written_up_to = round(cp.written_up_to);
    cp.verified_up_to = round(cp.verified_up_to);
    if cp.written_up_to < size || cp.bytes_verified > cp.verified_up_to {
        cp.verified_up_to = 0;
        cp.bytes_verified = 0;
    }
    if cp.started == 0 {
        cp.started = now();
    }
    cp
}

/// Zero-overwrites `device` from the plan's resume point, flushes, and reads it back.
///
/// Checks `stop` before every chunk; reports a checkpoint every `plan.checkpoint_every` bytes,
/// at the end of writing (after the flush), when cancelled and at the end. Errors are not
/// returned but recorded in [`EraseOutcome::result`], since a failed erase is an outcome the
/// job records (and certifies) like a successful one.
pub fn erase(
    device: &dyn WriteAt,
    plan: &ErasePlan,
    progress: &dyn EraseProgress,
    stop: &AtomicBool,
    checkpoint: &mut dyn FnMut(Checkpoint),
) -> EraseOutcome {
    let size = device.size();
    let chunk = plan.chunk.max(4096);
    let chunk64 = chunk as u64;
    let every = plan.checkpoint_every.max(chunk64);
    let mut cp = sanitize(plan.resume, size, chunk64);
    let finish = |cp: Checkpoint, result| EraseOutcome {
        device: device.describe(),
        size,
        bytes_written: cp.written_up_to,
        bytes_verified: cp.bytes_verified,
        method: plan.method(),
        started: cp.started,
        ended: now(),
        result,
        checkpoint: cp,
    };
    let failed = |offset, reason: String| EraseResult::Failed { offset, reason };

    // Write phase: one zero buffer, reused by every request.
    let zeros = AlignedBuf::new(chunk);
    let mut since = 0u64;
    while cp.written_up_to < size {
        if stop.load(Ordering::Relaxed) {
            if let Err(e) = device.flush() {
                return finish(cp, failed(cp.written_up_to, e.to_string()));
            }
            checkpoint(cp);
            return finish(cp, EraseResult::Cancelled);
        }
        let round = spans(cp.written_up_to, size, chunk64);
        let results = in_parallel(round.clone(), &|(at, len): (u64, usize)| {
            device.write_all_at(at, &zeros[..len])
        });
        for ((at, len), result) in round.into_iter().zip(results) {
            if let Err(e) = result {
                return finish(cp, failed(at, e.to_string()));
            }
            cp.written_up_to = at + len as u64;
            progress.progress(ErasePhase::Write, cp.written_up_to, size);
            since += len as u64;
        }
        if since >= every && cp.written_up_to < size {
            // Flushed first: a checkpoint never claims writes that are not on the medium.
            if let Err(e) = device.flush() {
                return finish(cp, failed(cp.written_up_to, e.to_string()));
            }
            checkpoint(cp);
            since = 0;
        }
    }
    if cp.verified_up_to == 0 {
        if let Err(e) = device.flush() {
            return finish(cp, failed(size, e.to_string()));
        }
        checkpoint(cp);
    }

    // Verify phase: one buffer per request in flight.
    let count = size.div_ceil(chunk64);
    let mut bufs: Vec<AlignedBuf> = (0..IN_FLIGHT).map(|_| AlignedBuf::new(chunk)).collect();
    let mut since = 0u64;
    while cp.verified_up_to < size {
        if stop.load(Ordering::Relaxed) {
            checkpoint(cp);
            return finish(cp, EraseResult::Cancelled);
        }
        let round = spans(cp.verified_up_to, size, chunk64);
        let requests = round
            .iter()
            .zip(bufs.iter_mut())
            .map(|(&(at, len), buf)| (at, len, plan.verify.includes(at / chunk64, count), buf))
            .collect();
        let results = in_parallel(requests, &|(at, len, include, buf)| {
            read_back(device, at, include.then_some(&mut buf[..len]))
        });
        for ((at, len), result) in round.into_iter().zip(results) {
            match result {
                Ok(verified) => cp.bytes_verified += verified,
                Err((offset, reason)) => return finish(cp, failed(offset, reason)),
            }
            cp.verified_up_to = at + len as u64;
            progress.progress(ErasePhase::Verify, cp.verified_up_to, size);
            since += len as u64;
        }
        if since >= every && cp.verified_up_to < size {
            checkpoint(cp);
            since = 0;
        }
    }
    checkpoint(cp);
    finish(cp, EraseResult::Verified)
}

/// Requests in flight at once. A single synchronous loop leaves the device idle between one
/// request's completion and the next submission; more requests keep its queue busy (on the
/// bench's loop device 4 wrote clearly faster than 2; reads were device-bound with either).
/// The verify phase holds one [`CHUNK`] buffer per request: 32 MiB.
const IN_FLIGHT: usize = 4;

/// The next (up to [`IN_FLIGHT`]) chunks from `at`, as (offset, length).
fn spans(at: u64, size: u64, chunk: u64) -> Vec<(u64, usize)> {
    let mut out = Vec::with_capacity(IN_FLIGHT);
    let mut at = at;
    while at < size && out.len() < IN_FLIGHT {
        let len = chunk.min(size - at);
        // `len` is at most `chunk`, which came from a usize.
        out.push((at, usize::try_from(len).unwrap_or(usize::MAX)));
        at += len;
    }
    out
}

/// Runs `work` on every item at once (the first on this thread) and returns the results in
/// the items' order.
fn in_parallel<T: Send, R: Send>(items: Vec<T>, work: &(dyn Fn(T) -> R + Sync)) -> Vec<R> {
    std::thread::scope(|scope| {
        let mut items = items.into_iter();
        let first = items.next();
        let others: Vec<_> = items.map(|item| scope.spawn(move || work(item))).collect();
        let mut results = Vec::with_capacity(others.len() + 1);
        results.extend(first.map(work));
        for handle in others {
            match handle.join() {
                Ok(result) => results.push(result),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
}

/// Reads one chunk back into `buf` (none when sampling skips it) and checks it is all zero:
/// the bytes verified, or the failing offset and why.
fn read_back(device: &dyn WriteAt, at: u64, buf: Option<&mut [u8]>) -> Result<u64, (u64, String)> {
    let Some(buf) = buf else {
        return Ok(0);
    };
    device
        .read_exact_at(at, buf)
        .map_err(|e| (at, e.to_string()))?;
    match first_nonzero(buf) {
        None => Ok(buf.len() as u64),
        Some(i) => {
            let offset = at + i as u64;
            Err((
                offset,
                format!(
                    "{}: byte offset {offset} reads back as 0x{:02x}, not zero, after the \
                     overwrite and flush",
                    device.describe(),
                    buf[i]
                ),
            ))
        }
    }
}

/// Who and what was erased, as the certificate names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceIdentity {
    /// The device node erased (`/dev/sdb`).
    pub path: String,
    /// The serial number.
    pub serial: String,
    /// The model.
    pub model: String,
    /// The vendor.
    pub vendor: String,
    /// The bus (`usb`, `ata`, `nvme`...).
    pub bus: String,
    /// The capacity in bytes.
    pub capacity: u64,
    /// The logical sector size in bytes.
    pub logical_sector_size: u32,
    /// The physical sector size in bytes.
    pub physical_sector_size: u32,
}

/// The certificate format's version, in its `version` field.
pub const CERTIFICATE_VERSION: u64 = 1;

/// The signature algorithm named in a signed certificate.
pub const SIGNATURE_ALGORITHM: &str = "HMAC-SHA256";

/// A JSON value with canonical serialisation (RFC 8785 for the values used here: object keys
/// sorted, no whitespace, integers only, minimal string escapes).
enum Json {
    Str(String),
    Int(u64),
    Obj(BTreeMap<&'static str, Json>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Str(s) => write_string(s, out),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Obj(map) => {
                out.push('{');
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The certificate body for an erase of `identity` done for `job_id`, as canonical JSON (keys
/// sorted, no whitespace): the same inputs always give the same bytes, which is what is signed.
pub fn certificate_body(job_id: &str, identity: &DeviceIdentity, outcome: &EraseOutcome) -> String {
    let s = |v: &str| Json::Str(v.to_owned());
    let device = BTreeMap::from([
        ("bus", s(&identity.bus)),
        ("capacity", Json::Int(identity.capacity)),
        (
            "logical_sector_size",
            Json::Int(u64::from(identity.logical_sector_size)),
        ),
        ("model", s(&identity.model)),
        ("path", s(&identity.path)),
        (
            "physical_sector_size",
            Json::Int(u64::from(identity.physical_sector_size)),
        ),
        ("serial", s(&identity.serial)),
        ("vendor", s(&identity.vendor)),
    ]);
    let mut body = BTreeMap::from([
        ("bytes_verified", Json::Int(outcome.bytes_verified)),
        ("bytes_written", Json::Int(outcome.bytes_written)),
        ("device", Json::Obj(device)),
        ("ended", Json::Int(outcome.ended)),
        ("job_id", s(job_id)),
        ("method", s(&outcome.method)),
        ("started", Json::Int(outcome.started)),
        ("version", Json::Int(CERTIFICATE_VERSION)),
    ]);
    let result = match &outcome.result {
        EraseResult::Verified => "verified",
        EraseResult::Cancelled => "cancelled",
        EraseResult::Failed { offset, reason } => {
            body.insert(
                "failure",
                Json::Obj(BTreeMap::from([
                    ("offset", Json::Int(*offset)),
                    ("reason", s(reason)),
                ])),
            );
            "failed"
        }
    };
    body.insert("result", s(result));
    let mut out = String::new();
    Json::Obj(body).write(&mut out);
    out
}

type HmacSha256 = Hmac<Sha256>;

/// What the signature covers: a prefix keeps it from being valid for any other use of the
/// station key.
fn certificate_mac(key: &[u8], body: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(b"station-erase-certificate:");
    mac.update(body.as_bytes());
    mac
}

/// The hex HMAC-SHA256 of a certificate body under `key`.
pub fn certificate_signature(key: &[u8], body: &str) -> String {
    hex::encode(certificate_mac(key, body).finalize().into_bytes())
}

const SIGNED_PREFIX: &str = "{\"algorithm\":\"HMAC-SHA256\",\"certificate\":";
const SIGNATURE_FIELD: &str = ",\"signature\":\"";

/// The signed certificate: `{"algorithm":"HMAC-SHA256","certificate":BODY,"signature":HEX}`,
/// canonical JSON like its body.
pub fn sign_certificate(key: &[u8], body: &str) -> String {
    format!(
        "{SIGNED_PREFIX}{body}{SIGNATURE_FIELD}{}\"}}",
        certificate_signature(key, body)
    )
}

/// Why a signed certificate does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The text is not a certificate as [`sign_certificate`] writes it.
    #[error("not a signed erase certificate: {0}")]
    Malformed(&'static str),
    /// The signature does not match the body under this key: altered, or another station's.
    #[error(
        "the erase certificate's signature does not match its contents under this station's \
         key: it was altered or signed by another station"
    )]
    BadSignature,
}

/// Checks a signed certificate under `key` and returns its body.
///
/// # Errors
///
/// The text is not in [`sign_certificate`]'s form, or the signature does not match.
pub fn verify_certificate<'a>(
    key: &[u8],
    certificate: &'a str,
) -> Result<&'a str, CertificateError> {
    let rest = certificate
        .strip_prefix(SIGNED_PREFIX)
        .ok_or(CertificateError::Malformed("no HMAC-SHA256 header"))?;
    let rest = rest
        .strip_suffix("\"}")
        .ok_or(CertificateError::Malformed("no closing signature field"))?;
    let (body, signature) = rest
        .rsplit_once(SIGNATURE_FIELD)
        .ok_or(CertificateError::Malformed("no signature field"))?;
    if signature.len() != 64 {
        return Err(CertificateError::Malformed(
            "the signature is not 64 hex digits",
        ));
    }
    let signature = hex::decode(signature)
        .map_err(|_| CertificateError::Malformed("the signature is not 64 hex digits"))?;
    certificate_mac(key, body)
        .verify_slice(&signature)
        .map_err(|_| CertificateError::BadSignature)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::block_write::WriteError;
    use drivers::source::{IoError, ReadAt};
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    /// An in-memory device whose writes can fail at one offset or leave one byte unchanged
    /// (a sector the device silently does not write).
    struct Fake {
        data: Mutex<Vec<u8>>,
        fail_write_at: Option<u64>,
        stuck_byte: Option<u64>,
        reads: AtomicU64,
        flushes: AtomicU64,
    }

    impl Fake {
        fn new(size: usize) -> Self {
            Self {
                data: Mutex::new((0..size).map(|i| (i % 250) as u8 + 1).collect()),
                fail_write_at: None,
                stuck_byte: None,
                reads: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
            }
        }
        fn bytes(&self) -> Vec<u8> {
            self.data.lock().unwrap_or_else(|e| panic!("{e}")).clone()
        }
    }

    impl ReadAt for Fake {
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let data = self.data.lock().unwrap_or_else(|e| panic!("{e}"));
            let at = offset as usize;
            buf.copy_from_slice(&data[at..at + buf.len()]);
            Ok(())
        }
        fn size(&self) -> u64 {
            self.data.lock().unwrap_or_else(|e| panic!("{e}")).len() as u64
        }
        fn describe(&self) -> String {
            "/dev/fake".into()
        }
    }

    impl WriteAt for Fake {
        fn write_all_at(&self, offset: u64, buf: &[u8]) -> Result<(), WriteError> {
            let end = offset + buf.len() as u64;
            if self
                .fail_write_at
                .is_some_and(|f| (offset..end).contains(&f))
            {
                return Err(WriteError::Write {
                    device: self.describe(),
                    offset,
                    len: buf.len(),
                    // EIO, as a failing sector gives.
                    source: std::io::Error::from_raw_os_error(5),
                });
            }
            let mut data = self.data.lock().unwrap_or_else(|e| panic!("{e}"));
            let at = offset as usize;
            let keep = self.stuck_byte.filter(|s| (offset..end).contains(s));
            let old = keep.map(|s| data[s as usize]);
            data[at..at + buf.len()].copy_from_slice(buf);
            if let (Some(s), Some(old)) = (keep, old) {
                data[s as usize] = old;
            }
            Ok(())
        }
        fn flush(&self) -> Result<(), WriteError> {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    const K: usize = 4096;

    fn plan(chunk: usize, every: u64) -> ErasePlan {
        ErasePlan {
            chunk,
            checkpoint_every: every,
            ..ErasePlan::default()
        }
    }

    fn run(dev: &Fake, plan: &ErasePlan, stop: &AtomicBool) -> (EraseOutcome, Vec<Checkpoint>) {
        let mut cps = Vec::new();
        let outcome = erase(dev, plan, &NoProgress, stop, &mut |cp| cps.push(cp));
        (outcome, cps)
    }

    #[test]
    fn erase_zeroes_every_byte_and_checkpoints_as_it_goes() {
        // 10 chunks and a short one.
        let dev = Fake::new(10 * K + 512);
        struct Seen(Mutex<Vec<(ErasePhase, u64, u64)>>);
        impl EraseProgress for Seen {
            fn progress(&self, phase: ErasePhase, done: u64, total: u64) {
                self.0
                    .lock()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .push((phase, done, total));
            }
        }
        let seen = Seen(Mutex::new(Vec::new()));
        let mut cps = Vec::new();
        let outcome = erase(
            &dev,
            &plan(K, 4 * K as u64),
            &seen,
            &AtomicBool::new(false),
            &mut |cp| cps.push(cp),
        );
        assert_eq!(outcome.result, EraseResult::Verified);
        assert!(dev.bytes().iter().all(|&b| b == 0));
        let size = (10 * K + 512) as u64;
        assert_eq!(
            (outcome.bytes_written, outcome.bytes_verified),
            (size, size)
        );
        assert_eq!(
            outcome.method,
            "zero-overwrite, O_DIRECT 4096 bytes, verify all"
        );
        let marks: Vec<(u64, u64)> = cps
            .iter()
            .map(|c| (c.written_up_to, c.verified_up_to))
            .collect();
        let k = K as u64;
        assert_eq!(
            marks,
            [
                (4 * k, 0),
                (8 * k, 0),
                (size, 0),
                (size, 4 * k),
                (size, 8 * k),
                (size, size)
            ]
        );
        // Three checkpoint flushes in the write phase, each before its checkpoint.
        assert_eq!(dev.flushes.load(Ordering::Relaxed), 3);
        let seen = seen.0.into_inner().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seen.len(), 22);
        assert_eq!(seen[10], (ErasePhase::Write, size, size));
        assert_eq!(seen[21], (ErasePhase::Verify, size, size));
    }

    #[test]
    fn erase_write_error_fails_at_the_chunk_offset() {
        let mut dev = Fake::new(8 * K);
        dev.fail_write_at = Some(5 * K as u64 + 100);
        let (outcome, _) = run(&dev, &plan(K, u64::MAX), &AtomicBool::new(false));
        assert_eq!(
            outcome.result,
            EraseResult::Failed {
                offset: 5 * K as u64,
                reason: "/dev/fake: cannot write 4096 bytes at byte offset 20480: \
                         Input/output error (os error 5)"
                    .into()
            }
        );
        assert_eq!(outcome.bytes_written, 5 * K as u64);
        assert_eq!(outcome.bytes_verified, 0);
    }

    #[test]
    fn erase_finds_a_byte_that_reads_back_non_zero() {
        let mut dev = Fake::new(8 * K);
        dev.stuck_byte = Some(6 * K as u64 + 77);
        let (outcome, _) = run(&dev, &plan(K, u64::MAX), &AtomicBool::new(false));
        let offset = 6 * K as u64 + 77;
        let value = dev.bytes()[offset as usize];
        assert_eq!(
            outcome.result,
            EraseResult::Failed {
                offset,
                reason: format!(
                    "/dev/fake: byte offset 24653 reads back as 0x{value:02x}, not zero, after \
                     the overwrite and flush"
                )
            }
        );
        assert_eq!(outcome.bytes_verified, 6 * K as u64);
    }

    #[test]
    fn erase_sampled_verify_reads_the_first_last_and_every_nth_chunk() {
        let dev = Fake::new(10 * K);
        let plan = ErasePlan {
            verify: Verify::Sampled { every_n: 4 },
            ..plan(K, u64::MAX)
        };
        let (outcome, _) = run(&dev, &plan, &AtomicBool::new(false));
        assert_eq!(outcome.result, EraseResult::Verified);
        // Chunks 0, 4, 8 and 9 (the last).
        assert_eq!(dev.reads.load(Ordering::Relaxed), 4);
        assert_eq!(outcome.bytes_verified, 4 * K as u64);
        assert_eq!(
            outcome.method,
            "zero-overwrite, O_DIRECT 4096 bytes, verify sampled (1 chunk in 4, and the last)"
        );
        // A bad byte in a sampled chunk is found; one elsewhere is not (that is sampling).
        for (stuck, found) in [(4 * K + 1, true), (9 * K + 5, true), (5 * K, false)] {
            let mut dev = Fake::new(10 * K);
            dev.stuck_byte = Some(stuck as u64);
            let (outcome, _) = run(&dev, &plan, &AtomicBool::new(false));
            assert_eq!(
                matches!(outcome.result, EraseResult::Failed { offset, .. } if offset == stuck as u64),
                found,
                "{stuck}: {:?}",
                outcome.result
            );
        }
    }

    #[test]
    fn erase_cancelled_and_resumed_in_either_phase_gives_the_same_result() {
        let k = K as u64;
        for stop_at in [(3 * k, 0), (10 * k, 4 * k)] {
            let dev = Fake::new(10 * K);
            let stop = AtomicBool::new(false);
            let mut cps = Vec::new();
            let first = erase(&dev, &plan(K, 2 * k), &NoProgress, &stop, &mut |cp| {
                if (cp.written_up_to, cp.verified_up_to) >= stop_at {
                    stop.store(true, Ordering::Relaxed);
                }
                cps.push(cp);
            });
            assert_eq!(first.result, EraseResult::Cancelled, "{stop_at:?}");
            let last = *cps.last().unwrap_or_else(|| panic!("no checkpoint"));
            assert_eq!(first.checkpoint, last);
            if stop_at.1 == 0 {
                // Nothing past the checkpoint was written.
                assert!(dev.bytes()[4 * K..].iter().all(|&b| b != 0));
            }
            let resumed = ErasePlan {
                resume: Some(last),
                ..plan(K, 2 * k)
            };
            let reads_before = dev.reads.load(Ordering::Relaxed);
            let (outcome, _) = run(&dev, &resumed, &AtomicBool::new(false));
            assert_eq!(outcome.result, EraseResult::Verified);
            assert_eq!(outcome.started, first.started);
            assert_eq!(
                (outcome.bytes_written, outcome.bytes_verified),
                (10 * k, 10 * k)
            );
            // A resume in the verify phase reads only what was not verified yet.
            let reads = dev.reads.load(Ordering::Relaxed) - reads_before;
            assert_eq!(reads, (10 * k - last.verified_up_to) / k);
            assert!(dev.bytes().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn erase_resume_from_a_checkpoint_that_does_not_fit_is_rounded_down() {
        let size = 10 * K as u64;
        let k = K as u64;
        let cp = |w, v, b| Checkpoint {
            started: 7,
            written_up_to: w,
            verified_up_to: v,
            bytes_verified: b,
        };
        assert_eq!(
            sanitize(Some(cp(3 * k + 5, 0, 0)), size, k),
            cp(3 * k, 0, 0)
        );
        assert_eq!(sanitize(Some(cp(size + 1, 0, 0)), size, k), cp(size, 0, 0));
        // Verified before writing finished is impossible: verify again.
        assert_eq!(
            sanitize(Some(cp(4 * k, 2 * k, 2 * k)), size, k),
            cp(4 * k, 0, 0)
        );
        assert_eq!(
            sanitize(Some(cp(size, 2 * k + 1, 2 * k)), size, k),
            cp(size, 2 * k, 2 * k)
        );
    }

    #[test]
    fn first_nonzero_finds_the_first_set_byte() {
        let mut buf = vec![0u8; 3 * 4096 + 10];
        assert_eq!(first_nonzero(&buf), None);
        buf[3 * 4096 + 9] = 1;
        assert_eq!(first_nonzero(&buf), Some(3 * 4096 + 9));
        buf[4097] = 0x80;
        assert_eq!(first_nonzero(&buf), Some(4097));
        assert_eq!(first_nonzero(&[]), None);
    }

    fn outcome(result: EraseResult) -> EraseOutcome {
        EraseOutcome {
            device: "/dev/sdb".into(),
            size: 1 << 30,
            bytes_written: 1 << 30,
            bytes_verified: 1 << 30,
            method: ErasePlan::default().method(),
            started: 1_700_000_000,
            ended: 1_700_000_100,
            result,
            checkpoint: Checkpoint::default(),
        }
    }

    fn identity() -> DeviceIdentity {
        DeviceIdentity {
            path: "/dev/sdb".into(),
            serial: "WD-\"42\"\\\n\u{1}é".into(),
            model: "My Passport".into(),
            vendor: "WD".into(),
            bus: "usb".into(),
            capacity: 1 << 30,
            logical_sector_size: 512,
            physical_sector_size: 4096,
        }
    }

    #[test]
    fn erase_certificate_body_is_canonical_json() {
        let body = certificate_body("JOB1", &identity(), &outcome(EraseResult::Verified));
        assert_eq!(
            body,
            "{\"bytes_verified\":1073741824,\"bytes_written\":1073741824,\"device\":{\"bus\":\"usb\",\
             \"capacity\":1073741824,\"logical_sector_size\":512,\"model\":\"My Passport\",\
             \"path\":\"/dev/sdb\",\"physical_sector_size\":4096,\
             \"serial\":\"WD-\\\"42\\\"\\\\\\n\\u0001é\",\"vendor\":\"WD\"},\"ended\":1700000100,\
             \"job_id\":\"JOB1\",\"method\":\"zero-overwrite, O_DIRECT 8 MiB, verify all\",\
             \"result\":\"verified\",\"started\":1700000000,\"version\":1}"
        );
        let failed = certificate_body(
            "JOB1",
            &identity(),
            &outcome(EraseResult::Failed {
                offset: 4096,
                reason: "EIO".into(),
            }),
        );
        assert!(failed.contains(
            "\"ended\":1700000100,\"failure\":{\"offset\":4096,\"reason\":\"EIO\"},\"job_id\""
        ));
        assert!(failed.contains("\"result\":\"failed\""));
    }

    #[test]
    fn erase_certificate_signature_checks_and_detects_changes() {
        let body = certificate_body("JOB1", &identity(), &outcome(EraseResult::Verified));
        let signed = sign_certificate(b"station key", &body);
        assert!(signed.starts_with("{\"algorithm\":\"HMAC-SHA256\",\"certificate\":{"));
        assert_eq!(
            verify_certificate(b"station key", &signed),
            Ok(body.as_str())
        );
        assert_eq!(
            verify_certificate(b"other key", &signed),
            Err(CertificateError::BadSignature)
        );
        let altered = signed.replace(
            "\"bytes_verified\":1073741824",
            "\"bytes_verified\":1073741825",
        );
        assert_eq!(
            verify_certificate(b"station key", &altered),
            Err(CertificateError::BadSignature)
        );
        assert_eq!(
            verify_certificate(b"station key", &signed[..signed.len() - 3]),
            Err(CertificateError::Malformed("no closing signature field"))
        );
        assert_eq!(
            CertificateError::BadSignature.to_string(),
            "the erase certificate's signature does not match its contents under this \
             station's key: it was altered or signed by another station"
        );
        assert_eq!(certificate_signature(b"station key", &body).len(), 64);
    }
}
