//! The partition-table parsers (MBR with logical partitions, GPT with its backup), with the
//! sector size guessed and forced to 512 and 4096 bytes, then a probe of every partition.
#![no_main]
#![forbid(unsafe_code)]

use drivers::partition::PartitionTable;
use drivers::source::MemorySource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = MemorySource::new("fuzz-input", data.to_vec());
    for sector_size in [None, Some(512), Some(4096)] {
        let Ok(table) = PartitionTable::read(&source, sector_size) else {
            continue;
        };
        for (i, p) in table.partitions.iter().enumerate() {
            assert_eq!(
                usize::try_from(p.number).ok(),
                i.checked_add(1),
                "partitions are numbered from 1 in table order: {table:?}"
            );
            // A partition that passes the end of the device is a corrupt table, never a
            // partition the station would read.
            let slice = table
                .slice(&source, p.number)
                .unwrap_or_else(|e| panic!("partition {} of {table:?}: {e}", p.number));
            let _ = drivers::probe::probe(&slice);
        }
    }
});
