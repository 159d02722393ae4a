//! The HTTP layer shared by every provider.

mod client;
mod decode;
mod ndjson;
mod rate_limit;
pub(crate) mod retry;
mod secret;
mod sse;

pub use client::{ByteStream, HttpConfig};
pub(crate) use client::{HttpClient, body_message, bounded_message, error_for_status, headers};
pub(crate) use decode::{Decoded, decode_events, stream_after};
pub use ndjson::ndjson_lines;
pub use rate_limit::RateLimit;
pub use retry::RetryPolicy;
pub use secret::ApiKey;
pub use sse::{DEFAULT_MAX_EVENT_BYTES, SseEvent, SseParser, sse_events};

/// The setters every provider's configuration shares: `with_base_url` and `with_http`.
macro_rules! config_setters {
    ($config:ty) => {
        impl $config {
            /// Sets the API's base URL (a proxy, a gateway, a local server).
            pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
                self.base_url = base_url.into();
                self
            }

            /// Sets the HTTP settings: timeouts, retries, rate limits, body bounds.
            pub fn with_http(mut self, http: $crate::http::HttpConfig) -> Self {
                self.http = http;
                self
            }
        }
    };
}
pub(crate) use config_setters;
