//! The HTTP client every provider shares: timeouts, retries with backoff, rate limiting, bounded
//! bodies, and errors a caller can act on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use kai_core::{BoxStream, Error, boxed_stream};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::http::rate_limit::{RateLimit, RateLimiter};
use crate::http::retry::{RetryPolicy, is_retryable_status, retry_after};

/// Settings for a provider's HTTP client.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Longest wait for a response's headers (for streams) or whole body (otherwise). Default 10 min.
    pub timeout: Option<Duration>,
    /// Longest wait to connect (native targets). Default 10 s.
    pub connect_timeout: Duration,
    /// Longest silence between two chunks of a stream. Default 5 min.
    pub stream_idle_timeout: Option<Duration>,
    /// Retries for connection failures, 408, 409, 429 and 5xx.
    pub retry: RetryPolicy,
    /// Client-side limits, shared by every clone of the client.
    pub rate_limit: RateLimit,
    /// Largest response body accepted, streamed or not. Default 32 MiB.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(600)),
            connect_timeout: Duration::from_secs(10),
            stream_idle_timeout: Some(Duration::from_secs(300)),
            retry: RetryPolicy::default(),
            rate_limit: RateLimit::default(),
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A cheaply cloneable HTTP client; clones share connections and rate limits.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    config: HttpConfig,
    limiter: RateLimiter,
}

/// Turns a failed response (status, body text, asked-for wait) into the provider's error.
pub(crate) type Classify = fn(StatusCode, &str, Option<Duration>) -> Error;

/// A byte stream whose errors are already kai errors.
pub type ByteStream = BoxStream<'static, Result<Bytes, Error>>;

impl HttpClient {
    /// A client with these settings.
    pub(crate) fn new(config: HttpConfig) -> Result<Self, Error> {
        let builder = reqwest::Client::builder();
        #[cfg(not(target_arch = "wasm32"))]
        let builder = builder
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("kai/", env!("CARGO_PKG_VERSION")));
        let client = builder.build().map_err(|error| Error::Config {
            message: format!("could not build the HTTP client: {}", describe(&error)),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(config.rate_limit),
                client,
                config,
            }),
        })
    }

    /// Sends a request built by `build` (called again for each retry) until it succeeds, fails in a
    /// way that is not worth retrying, or the retries run out.
    pub(crate) async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
        estimated_tokens: u64,
        classify: Classify,
    ) -> Result<Response, Error> {
        let config = &self.inner.config;
        let mut retry = 0;
        loop {
            self.inner.limiter.acquire(estimated_tokens).await;
            let outcome = with_timeout(config.timeout, build().send()).await;
            let (error, wait) = match outcome {
                Ok(Ok(response)) if response.status().is_success() => return Ok(response),
                Ok(Ok(response)) => {
                    let status = response.status();
                    let asked = retry_after(response.headers());
                    // A server that sends the headers and then stalls must not hang us: the error body is
                    // read within the same timeout.
                    let body = with_timeout(config.timeout, self.bounded_text(response, 64 * 1024))
                        .await
                        .and_then(|read| read)
                        .unwrap_or_default();
                    let body = without_secrets(body, build());
                    let error = classify(status, &body, asked);
                    if !is_retryable_status(status) {
                        return Err(error);
                    }
                    (error, asked)
                }
                Ok(Err(error)) => (transport_error(&error), None),
                Err(timeout) => (timeout, None),
            };
            match config.retry.delay(retry, wait) {
                Some(delay) => {
                    tracing::debug!(retry, ?delay, %error, "retrying request");
                    kai_core::sleep(delay).await;
                    retry += 1;
                }
                None => return Err(error),
            }
        }
    }

    /// POSTs `body` as JSON to `url` with these extra headers, through [`send`](Self::send).
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        headers: &HeaderMap,
        classify: Classify,
    ) -> Result<Response, Error> {
        let bytes = Bytes::from(serde_json::to_vec(body).map_err(|error| Error::InvalidRequest {
            message: format!("the request could not be serialized: {error}"),
        })?);
        let estimated = estimate_tokens(&bytes);
        let build = || {
            self.inner
                .client
                .post(url)
                .header(CONTENT_TYPE, "application/json")
                .headers(headers.clone())
                .body(bytes.clone())
        };
        self.send(build, estimated, classify).await
    }

    /// Reads a whole body as JSON, within the body size bound and the timeout.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(&self, response: Response) -> Result<T, Error> {
        let limit = self.inner.config.max_body_bytes;
        let body = with_timeout(self.inner.config.timeout, self.bounded_bytes(response, limit)).await??;
        serde_json::from_slice(&body).map_err(|error| {
            Error::malformed(
                format!("the response is not the expected JSON: {error}"),
                &String::from_utf8_lossy(&body),
            )
        })
    }

    /// The body as a stream of chunks, failing when the server goes silent for longer than
    /// `stream_idle_timeout` or sends more than `max_body_bytes` in all.
    pub(crate) fn byte_stream(&self, response: Response) -> ByteStream {
        let idle = self.inner.config.stream_idle_timeout;
        let limit = self.inner.config.max_body_bytes;
        let chunks = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|error| transport_error(&error)));
        limit_stream(chunks, idle, limit)
    }

    async fn bounded_bytes(&self, response: Response, limit: usize) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| transport_error(&error))?;
            if body.len() + chunk.len() > limit {
                return Err(Error::malformed(
                    format!("the response body is larger than {limit} bytes"),
                    &String::from_utf8_lossy(&body),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn bounded_text(&self, response: Response, limit: usize) -> Result<String, Error> {
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| transport_error(&error))?;
            let room = limit.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= limit {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// Ends `chunks` with an error after the first failure, after `idle` without a chunk, or once more than
/// `limit` bytes have arrived (so a server that never stops cannot fill memory).
fn limit_stream<S>(chunks: S, idle: Option<Duration>, limit: usize) -> ByteStream
where
    S: futures::Stream<Item = Result<Bytes, Error>> + kai_core::MaybeSend + 'static,
{
    struct State<S> {
        chunks: std::pin::Pin<Box<S>>,
        received: usize,
        done: bool,
    }
    let state = State {
        chunks: Box::pin(chunks),
        received: 0,
        done: false,
    };
    boxed_stream(futures::stream::unfold(state, move |mut state| async move {
        if state.done {
            return None;
        }
        let item = match with_timeout(idle, state.chunks.next()).await {
            Ok(Some(Ok(chunk))) => {
                state.received = state.received.saturating_add(chunk.len());
                if state.received > limit {
                    Err(Error::malformed(
                        format!("the streamed response is larger than {limit} bytes"),
                        "",
                    ))
                } else {
                    Ok(chunk)
                }
            }
            Ok(Some(Err(error))) => Err(error),
            Ok(None) => return None,
            Err(_) => Err(Error::Transport {
                message: "the stream went silent for longer than the idle timeout".into(),
            }),
        };
        state.done = item.is_err();
        Some((item, state))
    }))
}

/// A rough token count for rate limiting before a request is sent: about four bytes per token.
pub(super) fn estimate_tokens(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

/// Builds a header map from name/value pairs, marking `secret` values sensitive (kept out of debug
/// output and HTTP/2 header compression tables).
pub(crate) fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str, bool)>) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    for (name, value, secret) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Error::Config {
            message: format!("invalid header name {name:?}"),
        })?;
        let mut value = HeaderValue::from_str(value).map_err(|_| Error::Config {
            message: format!("the value of header {name} has characters HTTP does not allow"),
        })?;
        value.set_sensitive(secret);
        map.insert(name, value);
    }
    Ok(map)
}

/// Races `future` against a timer; `Err(Error::Timeout)` when the timer wins.
pub(crate) async fn with_timeout<F: Future>(timeout: Option<Duration>, future: F) -> Result<F::Output, Error> {
    // No limit, or one too far away to represent (`Duration::MAX` for "never"), waits as long as it takes.
    let Some(timeout) = timeout.filter(|t| web_time::Instant::now().checked_add(*t).is_some()) else {
        return Ok(future.await);
    };
    let timer = kai_core::sleep(timeout);
    match futures::future::select(std::pin::pin!(future), std::pin::pin!(timer)).await {
        futures::future::Either::Left((output, _)) => Ok(output),
        futures::future::Either::Right(_) => Err(Error::Timeout),
    }
}

/// `body` with every secret the request carried (its sensitive headers: API keys, bearer tokens)
/// replaced by `***`: a server may echo the key in its error message, and that message goes into an
/// [`Error`] that callers log.
fn without_secrets(mut body: String, request: RequestBuilder) -> String {
    let Ok(request) = request.build() else {
        return body;
    };
    for value in request.headers().values().filter(|value| value.is_sensitive()) {
        let Ok(value) = value.to_str() else { continue };
        let secret = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        // A secret too short to be a key would turn ordinary words into stars.
        if secret.len() >= 8 && body.contains(secret) {
            body = body.replace(secret, "***");
        }
    }
    body
}

/// A reqwest error as a kai error, without the URL (which may carry a key) and with its causes.
pub(crate) fn transport_error(error: &reqwest::Error) -> Error {
    if error.is_timeout() {
        return Error::Timeout;
    }
    Error::Transport {
        message: describe(error),
    }
}

fn describe(error: &reqwest::Error) -> String {
    let mut message = String::new();
    let mut current: Option<&dyn std::error::Error> = Some(error);
    let mut first = true;
    while let Some(err) = current {
        let text = err.to_string();
        // reqwest's own message names the URL; the causes below it say what went wrong.
        let text = if first { strip_url(&text) } else { text };
        if !text.is_empty() && !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        first = false;
        current = err.source();
    }
    message
}

fn strip_url(text: &str) -> String {
    match text.find(" for url (") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// The generic mapping from an HTTP status and the provider's message to an error; providers with
/// typed error bodies refine it. A client error whose message says the prompt is too long is
/// [`Error::ContextTooLong`].
pub(crate) fn error_for_status(status: StatusCode, message: String, retry_after: Option<Duration>) -> Error {
    match status.as_u16() {
        401 => Error::Authentication { message },
        403 => Error::PermissionDenied { message },
        408 => Error::Timeout,
        413 => Error::ContextTooLong { message },
        429 => Error::RateLimited { message, retry_after },
        400..=499 if mentions_context_length(&message) => Error::ContextTooLong { message },
        400..=499 => Error::InvalidRequest { message },
        _ => Error::Server {
            status: Some(status.as_u16()),
            message,
        },
    }
}

/// Whether a provider's error message says the prompt is too long for the model.
pub(crate) fn mentions_context_length(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "context length",
        "context_length",
        "context window",
        "too many tokens",
        "prompt is too long",
        "maximum context",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// The message of an error body whose JSON holds it as a top-level string under `field` (bounded), or
/// the trimmed body itself when it does not.
pub(crate) fn body_message(body: &str, field: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get(field))
        .and_then(serde_json::Value::as_str);
    bounded_message(message.unwrap_or(body.trim()))
}

/// Bounds a message taken from an error body, so a huge body cannot flood logs.
pub(crate) fn bounded_message(message: &str) -> String {
    const MAX: usize = 1024;
    if message.len() <= MAX {
        return message.to_owned();
    }
    format!("{}…", &message[..message.floor_char_boundary(MAX)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> impl futures::Stream<Item = Result<Bytes, Error>> + Send + 'static {
        futures::stream::iter(
            sizes
                .iter()
                .map(|&n| Ok(Bytes::from(vec![b'x'; n])))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_stream_past_its_size_limit_ends_with_an_error() {
        let items: Vec<_> = futures::executor::block_on(limit_stream(chunks(&[4, 4, 4, 4]), None, 10).collect());
        assert_eq!(items.len(), 3, "two chunks, then the error, then nothing");
        assert!(items[..2].iter().all(Result::is_ok));
        assert!(matches!(items[2], Err(Error::MalformedResponse { .. })));
        let items: Vec<_> = futures::executor::block_on(limit_stream(chunks(&[4, 4]), None, 10).collect());
        assert!(items.iter().all(Result::is_ok) && items.len() == 2);
    }

    #[test]
    fn a_timeout_of_duration_max_means_none() {
        let out = futures::executor::block_on(with_timeout(Some(Duration::MAX), async { 7 }));
        assert_eq!(out, Ok(7));
    }

    #[test]
    fn statuses_map_to_actionable_errors() {
        let status = |code| StatusCode::from_u16(code).unwrap();
        let too_long = "This model's maximum context length is 8192 tokens".to_owned();
        assert!(matches!(
            error_for_status(status(400), too_long.clone(), None),
            Error::ContextTooLong { .. }
        ));
        assert!(matches!(
            error_for_status(status(400), "bad field".into(), None),
            Error::InvalidRequest { .. }
        ));
        assert!(matches!(
            error_for_status(status(401), too_long, None),
            Error::Authentication { .. }
        ));
        let limited = error_for_status(status(429), "slow".into(), Some(Duration::from_secs(2)));
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        assert!(matches!(
            error_for_status(status(503), "busy".into(), None),
            Error::Server { status: Some(503), .. }
        ));
    }
}
