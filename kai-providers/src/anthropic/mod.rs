//! Anthropic's Messages API.

pub(crate) mod stream;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use kai_core::{ChatModel, ChatRequest, ChatResponse, ChatStream, Error, ModelCapabilities};
use reqwest::StatusCode;

use crate::http::{
    ApiKey, DEFAULT_MAX_EVENT_BYTES, HttpClient, HttpConfig, decode_events, error_for_status, headers, sse_events,
    stream_after,
};

/// The official endpoint.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
/// The `anthropic-version` header this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Settings for the Anthropic client.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// The API key (`x-api-key`).
    pub api_key: ApiKey,
    /// The base URL, ending in `/v1`.
    pub base_url: String,
    /// `max_tokens` for requests that do not set it (the API requires one). Default 4096.
    pub default_max_tokens: u32,
    /// `anthropic-beta` features to enable, if any.
    pub beta: Vec<String>,
    /// Timeouts, retries, rate limits.
    pub http: HttpConfig,
}

crate::http::config_setters!(AnthropicConfig);

impl AnthropicConfig {
    /// The official API with this key.
    pub fn new(api_key: impl Into<ApiKey>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: ANTHROPIC_BASE_URL.into(),
            default_max_tokens: 4096,
            beta: Vec::new(),
            http: HttpConfig::default(),
        }
    }

    /// The key from `ANTHROPIC_API_KEY` (and `ANTHROPIC_BASE_URL` if set).
    pub fn from_env() -> Result<Self, Error> {
        let key = ApiKey::from_env("ANTHROPIC_API_KEY").ok_or_else(|| Error::Config {
            message: "ANTHROPIC_API_KEY is not set".into(),
        })?;
        let mut config = Self::new(key);
        if let Ok(base) = std::env::var("ANTHROPIC_BASE_URL") {
            config.base_url = base;
        }
        Ok(config)
    }
}

/// A connection to the Anthropic API. Cheap to clone; clones share connections and rate limits.
#[derive(Debug, Clone)]
pub struct AnthropicClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient,
    config: AnthropicConfig,
    headers: reqwest::header::HeaderMap,
}

impl AnthropicClient {
    /// A client with these settings.
    pub fn new(config: AnthropicConfig) -> Result<Self, Error> {
        let beta = config.beta.join(",");
        let mut pairs = vec![
            ("x-api-key", config.api_key.expose(), true),
            ("anthropic-version", ANTHROPIC_VERSION, false),
        ];
        if !beta.is_empty() {
            pairs.push(("anthropic-beta", beta.as_str(), false));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http: HttpClient::new(config.http.clone())?,
                headers: headers(pairs)?,
                config,
            }),
        })
    }

    /// A chat model of this API, such as `claude-sonnet-4-5`.
    pub fn chat(&self, model: impl Into<String>) -> AnthropicChat {
        AnthropicChat {
            client: self.clone(),
            model: model.into(),
        }
    }

    async fn post(&self, body: &serde_json::Value) -> Result<reqwest::Response, Error> {
        let url = format!("{}/messages", self.inner.config.base_url.trim_end_matches('/'));
        self.inner
            .http
            .post_json(&url, body, &self.inner.headers, classify)
            .await
    }
}

pub(crate) fn classify(status: StatusCode, body: &str, retry_after: Option<Duration>) -> Error {
    let parsed: wire::ErrorBody = serde_json::from_str(body).unwrap_or_default();
    match parsed.error {
        Some(detail) if !detail.kind.is_empty() => wire::error_of(detail, Some(status.as_u16()), retry_after),
        _ => error_for_status(status, crate::http::bounded_message(body.trim()), retry_after),
    }
}

/// A Claude model.
#[derive(Debug, Clone)]
pub struct AnthropicChat {
    client: AnthropicClient,
    model: String,
}

#[kai_core::async_trait]
impl ChatModel for AnthropicChat {
    fn name(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &str {
        "anthropic"
    }

    fn capabilities(&self) -> ModelCapabilities {
        // Structured outputs came with the Claude 4.5 generation; Claude 3 and the first Claude 4
        // models answer through a forced tool call instead.
        let legacy = [
            "claude-3",
            "claude-2",
            "claude-instant",
            "claude-sonnet-4-0",
            "claude-opus-4-0",
            "claude-sonnet-4-2025",
            "claude-opus-4-2025",
        ];
        let json_schema = !legacy.iter().any(|prefix| self.model.starts_with(prefix));
        ModelCapabilities {
            json_schema,
            json_schema_with_tools: json_schema,
            ..ModelCapabilities::ALL
        }
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let body = wire::request_body(
            &self.model,
            &request,
            false,
            self.client.inner.config.default_max_tokens,
        );
        let response = self.client.post(&body).await?;
        let message: wire::WireMessage = self.client.inner.http.json(response).await?;
        Ok(wire::response(message))
    }

    fn stream(self: Arc<Self>, request: ChatRequest) -> ChatStream<'static> {
        stream_after(async move {
            let body = wire::request_body(&self.model, &request, true, self.client.inner.config.default_max_tokens);
            let response = self.client.post(&body).await?;
            let events = sse_events(self.client.inner.http.byte_stream(response), DEFAULT_MAX_EVENT_BYTES);
            Ok(decode_events(events, |event| stream::decode(&event)))
        })
    }
}
