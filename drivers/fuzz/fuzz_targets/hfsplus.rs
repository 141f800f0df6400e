//! The HFS+/HFSX reader: open, walk, map and read every file, read every symlink.
#![no_main]
#![forbid(unsafe_code)]

use drivers::fs::hfsplus::HfsFs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = station_fuzz::source(data);
    if let Ok(fs) = HfsFs::open(source.clone()) {
        station_fuzz::exercise(&fs, &*source);
    }
});
