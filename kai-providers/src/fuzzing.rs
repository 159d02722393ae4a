//! Entry points for the fuzz targets into every parser of what a provider sends: error bodies with
//! their headers, and streamed events. Built only with `--cfg fuzzing` (cargo-fuzz sets it); not API.

use std::time::Duration;

use kai_core::{ChatResponse, Error, ResponseAccumulator};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::http::{Decoded, SseEvent};

/// The providers, by a fuzzer's byte.
const PROVIDERS: u8 = 5;

/// Maps an error response (status, headers, body) as the HTTP layer does: the wait it asks for, then the
/// provider's classification. Returns the error, which must not panic to make.
pub fn provider_error(provider: u8, status: u16, headers: &[(String, String)], body: &str) -> Error {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            map.append(name, value);
        }
    }
    let retry_after: Option<Duration> = crate::http::retry::retry_after(&map);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let classify = match provider % PROVIDERS {
        0 => crate::openai::classify,
        1 => crate::anthropic::classify,
        2 => crate::gemini::classify,
        3 => crate::cohere::classify,
        _ => crate::ollama::classify,
    };
    let error = classify(status, body, retry_after);
    // What a retry loop would do with it.
    let _ = crate::http::RetryPolicy::default().delay(0, error.retry_after());
    error
}

/// Feeds `events` (SSE `data:` payloads, or NDJSON lines for Ollama) to a provider's stream decoder and
/// assembles what it produced, as a streamed call does; `Err` is the first error it reported.
pub fn provider_stream(provider: u8, events: &[String]) -> Result<ChatResponse, Error> {
    let mut openai = crate::openai::stream::ChunkDecoder::default();
    let mut gemini = crate::gemini::stream::ChunkDecoder::default();
    let mut ollama = crate::ollama::stream::LineDecoder::default();
    let mut accumulator = ResponseAccumulator::new();
    for data in events {
        let event = SseEvent {
            event: String::new(),
            data: data.clone(),
            id: None,
            retry: None,
        };
        let decoded = match provider % PROVIDERS {
            0 => openai.decode(&event)?,
            1 => crate::anthropic::stream::decode(&event)?,
            2 => gemini.decode(&event)?,
            3 => crate::cohere::stream::decode(&event)?,
            _ => ollama.decode(data)?,
        };
        match decoded {
            Decoded::Deltas(deltas) => deltas.into_iter().for_each(|delta| accumulator.push(delta)),
            Decoded::Done => break,
        }
    }
    Ok(accumulator.finish())
}
