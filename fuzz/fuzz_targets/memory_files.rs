//! Everything kai-memory reads from a file a hostile party may have written — index files (flat and
//! HNSW), vault headers, hnsw_rs dumps — turns arbitrary bytes into an error, never a panic or an
//! allocation far beyond the input. Index files end in a checksum over the rest (SHA-256 in version
//! 1, CRC-32 in version 2): each input is tried as it is and with each valid checksum appended, so that
//! the structure behind the checksum is reached too. A dump is two files: the input's first byte says
//! where the graph file's bytes end and the data file's begin.
#![no_main]

use kai_memory::index::{FlatIndex, HnswIndex};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let _ = HnswIndex::from_bytes(data);
    let _ = FlatIndex::from_bytes(data);
    let mut checked = data.to_vec();
    checked.extend_from_slice(&Sha256::digest(data));
    let _ = HnswIndex::from_bytes(&checked);
    let _ = FlatIndex::from_bytes(&checked);
    let mut checked = data.to_vec();
    checked.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let _ = HnswIndex::from_bytes(&checked);
    let _ = FlatIndex::from_bytes(&checked);
    if let Some((&split, rest)) = data.split_first() {
        let (graph, points) = rest.split_at((usize::from(split) * 2).min(rest.len()));
        let _ = kai_memory::index::check_hnsw_rs_dump_for_fuzzing(graph, points);
    }

    let _ = kai_memory::vault::check_header_for_fuzzing(data);
});
