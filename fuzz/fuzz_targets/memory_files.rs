//! Everything kai-memory reads from a file a hostile party may have written — index files (flat and
//! HNSW), vault headers — turns arbitrary bytes into an error, never a panic or an allocation far beyond
//! the input. Index files end in a SHA-256 over the rest: each input is tried as it is and with a valid
//! checksum appended, so that the structure behind the checksum is reached too.
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

    let _ = kai_memory::vault::check_header_for_fuzzing(data);
});
