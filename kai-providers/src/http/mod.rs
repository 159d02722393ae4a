//! The HTTP layer shared by every provider.

mod client;
mod decode;
mod ndjson;
mod rate_limit;
mod retry;
mod secret;
mod sse;

pub use client::{
    ByteStream, Classify, HttpClient, HttpConfig, body_message, bounded_message, error_for_status, estimate_tokens,
    headers, mentions_context_length,
};
pub(crate) use decode::{Decoded, decode_events, replay, stream_after};
pub use ndjson::ndjson_lines;
pub use rate_limit::{RateLimit, RateLimiter};
pub use retry::{RetryPolicy, is_retryable_status, retry_after};
pub use secret::ApiKey;
pub use sse::{DEFAULT_MAX_EVENT_BYTES, SseEvent, SseParser, sse_events};
