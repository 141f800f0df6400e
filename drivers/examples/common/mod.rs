//! What the benchmark examples share: CPU-time clocks and rates.

/// CPU time of this thread (user and system), from the scheduler's nanosecond counter: the
/// machine may be shared, and `openssl speed` divides by CPU time too.
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e9
}

/// `bytes` over `seconds`, in MB/s (10^6 bytes).
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds
}
