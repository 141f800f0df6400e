//! The ext2/3/4 reader: open, walk, map and read every file, read every symlink.
#![no_main]
#![forbid(unsafe_code)]

use drivers::fs::ext::ExtFs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = station_fuzz::source(data);
    if let Ok(fs) = ExtFs::open(source.clone()) {
        station_fuzz::exercise(&fs, &*source);
    }
});
