//! The FAT12/16/32 and exFAT reader: open, walk, map and read every file.
#![no_main]
#![forbid(unsafe_code)]

use drivers::fs::fat::FatFs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = station_fuzz::source(data);
    if let Ok(fs) = FatFs::open(source.clone()) {
        station_fuzz::exercise(&fs, &*source);
    }
});
