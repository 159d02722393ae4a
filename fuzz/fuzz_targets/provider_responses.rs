//! Whatever a provider sends back, headers and numbers included, parsing it never panics: error
//! responses (a `retry-after-ms` of `1e23`, a Gemini `retryDelay` of `"1e20s"`, overflowing token
//! counts) and streamed events (tool-call indices across the whole `u32` range) become values or typed
//! errors.
#![no_main]

use arbitrary::Arbitrary;
use kai_providers::fuzzing::{provider_error, provider_stream};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Error {
        provider: u8,
        status: u16,
        headers: Vec<(HeaderName, Number)>,
        body: Body,
    },
    Stream {
        provider: u8,
        events: Vec<Event>,
    },
}

#[derive(Arbitrary, Debug)]
enum HeaderName {
    RetryAfter,
    RetryAfterMs,
    Other(String),
}

/// Numbers as servers write them, huge and odd ones included.
#[derive(Arbitrary, Debug)]
enum Number {
    Integer(u64),
    Float(f64),
    Exponent(u16),
    Text(String),
}

impl Number {
    fn text(&self) -> String {
        match self {
            Number::Integer(n) => n.to_string(),
            Number::Float(x) => x.to_string(),
            Number::Exponent(e) => format!("1e{e}"),
            Number::Text(text) => text.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(String),
    /// A Gemini-style quota error asking for a delay.
    GeminiRetry(Number),
    /// An error body with a usage block (some servers attach one).
    Usage(Number, Number),
}

#[derive(Arbitrary, Debug)]
enum Event {
    Raw(String),
    /// An OpenAI-style tool-call fragment at any index.
    OpenAiCall { index: u32, id: String, name: String, arguments: String },
    /// An Anthropic-style tool-use block start at any index.
    AnthropicCall { index: u32, id: String, name: String },
    /// Usage counts, to be added up.
    Usage(u64, u64, u64),
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fuzz_target!(|input: Input| {
    match input {
        Input::Error {
            provider,
            status,
            headers,
            body,
        } => {
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(name, value)| {
                    let name = match name {
                        HeaderName::RetryAfter => "retry-after".to_owned(),
                        HeaderName::RetryAfterMs => "retry-after-ms".to_owned(),
                        HeaderName::Other(name) => name.clone(),
                    };
                    (name, value.text())
                })
                .collect();
            let body = match body {
                Body::Raw(text) => text,
                Body::GeminiRetry(delay) => format!(
                    r#"{{"error": {{"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", "details": [{{"retryDelay": {}}}]}}}}"#,
                    json_string(&format!("{}s", delay.text()))
                ),
                Body::Usage(a, b) => format!(
                    r#"{{"error": {{"message": "x"}}, "usage": {{"input_tokens": {}, "output_tokens": {}}}}}"#,
                    a.text(),
                    b.text()
                ),
            };
            let _ = provider_error(provider, status, &headers, &body);
        }
        Input::Stream { provider, events } => {
            let events: Vec<String> = events
                .iter()
                .map(|event| match event {
                    Event::Raw(text) => text.clone(),
                    Event::OpenAiCall { index, id, name, arguments } => format!(
                        r#"{{"choices": [{{"index": 0, "delta": {{"tool_calls": [{{"index": {index}, "id": {}, "function": {{"name": {}, "arguments": {}}}}}]}}}}]}}"#,
                        json_string(id),
                        json_string(name),
                        json_string(arguments)
                    ),
                    Event::AnthropicCall { index, id, name } => format!(
                        r#"{{"type": "content_block_start", "index": {index}, "content_block": {{"type": "tool_use", "id": {}, "name": {}, "input": {{}}}}}}"#,
                        json_string(id),
                        json_string(name)
                    ),
                    Event::Usage(a, b, c) => format!(
                        r#"{{"type": "message_delta", "delta": {{}}, "usage": {{"input_tokens": {a}, "output_tokens": {b}, "cache_read_input_tokens": {c}, "cache_creation_input_tokens": {c}}}, "usageMetadata": {{"promptTokenCount": {a}, "candidatesTokenCount": {b}, "thoughtsTokenCount": {c}}}, "choices": []}}"#
                    ),
                })
                .collect();
            if let Ok(response) = provider_stream(provider, &events) {
                // Every assembled call has an id, whatever indices the stream used.
                assert!(response.tool_calls().all(|call| !call.id.is_empty()));
            }
        }
    }
});
