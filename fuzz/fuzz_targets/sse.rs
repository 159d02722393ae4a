//! The SSE parser never panics, and however the bytes are split, it yields the same events.
#![no_main]

use kai_providers::http::{SseEvent, SseParser};
use libfuzzer_sys::fuzz_target;

fn events(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, String> {
    let mut parser = SseParser::new(4096);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk).map_err(|e| e.to_string())?;
        while let Some(event) = parser.next_event() {
            out.push(event);
        }
    }
    Ok(out)
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (bytes, cuts) = input;
    let whole = events(&[&bytes]);
    let mut pieces = Vec::new();
    let mut rest = bytes.as_slice();
    for cut in cuts {
        if rest.is_empty() {
            break;
        }
        let at = usize::from(cut) % rest.len();
        let (head, tail) = rest.split_at(at);
        pieces.push(head);
        rest = tail;
    }
    pieces.push(rest);
    let split = events(&pieces);
    // Size errors may surface at different points, but complete events must agree.
    if let (Ok(whole), Ok(split)) = (&whole, &split) {
        assert_eq!(whole, split);
    }
});
