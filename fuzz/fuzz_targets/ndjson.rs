//! The NDJSON reader never panics, and however the bytes are split, it yields the same lines.
#![no_main]

use futures::StreamExt as _;
use kai_core::Error;
use kai_providers::http::ndjson_lines;
use libfuzzer_sys::fuzz_target;

fn lines(chunks: Vec<Vec<u8>>) -> Vec<Result<String, String>> {
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, Error>));
    futures::executor::block_on(
        ndjson_lines(stream, 4096)
            .map(|line| line.map_err(|e| e.to_string()))
            .collect(),
    )
}

fuzz_target!(|input: (Vec<u8>, u8)| {
    let (bytes, step) = input;
    let whole = lines(vec![bytes.clone()]);
    let split = lines(bytes.chunks(usize::from(step.max(1))).map(<[u8]>::to_vec).collect());
    if whole.iter().all(Result::is_ok) && split.iter().all(Result::is_ok) {
        assert_eq!(whole, split);
    }
});
