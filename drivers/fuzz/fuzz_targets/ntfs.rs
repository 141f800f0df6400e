//! The NTFS reader: open, walk, map and read every file, read every symlink, list streams.
#![no_main]
#![forbid(unsafe_code)]

use drivers::fs::ntfs::NtfsFs;
use drivers::fs::FileSystem;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = station_fuzz::source(data);
    if let Ok(fs) = NtfsFs::open(source.clone()) {
        station_fuzz::exercise(&fs, &*source);
        // Alternate data streams are not part of the walk: ask for the root's and its
        // entries'.
        if let Ok(entries) = fs.read_dir(fs.root()) {
            for e in entries.iter().take(64) {
                let _ = fs.streams(e.id);
            }
        }
    }
});
