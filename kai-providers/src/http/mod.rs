//! The HTTP layer shared by every provider.

mod client;
mod ndjson;
mod rate_limit;
mod retry;
mod secret;
mod sse;

pub(crate) use client::require_complete;
pub use client::{
    ByteStream, Classify, HttpClient, HttpConfig, bounded_message, error_for_status, mentions_context_length,
};
pub use ndjson::ndjson_lines;
pub use rate_limit::{RateLimit, RateLimiter};
pub use retry::{RetryPolicy, is_retryable_status, retry_after};
pub use secret::ApiKey;
pub use sse::{DEFAULT_MAX_EVENT_BYTES, SseEvent, SseParser, sse_events};

/// A rough token count for rate limiting before a request is sent: about four bytes per token.
pub fn estimate_tokens(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}
