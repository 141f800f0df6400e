//! Filesystem detection by signature (and the labels it reads on the way).
#![no_main]
#![forbid(unsafe_code)]

use drivers::source::MemorySource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = MemorySource::new("fuzz-input", data.to_vec());
    let _ = drivers::probe::probe(&source);
});
