//! Cohere's v2 API: chat with tools and streaming, and embeddings.

pub(crate) mod stream;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use kai_core::{
    ChatModel, ChatRequest, ChatResponse, ChatStream, EmbeddingModel, Embeddings, Error, ModelCapabilities, Usage,
    check_embeddings,
};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::http::{
    ApiKey, DEFAULT_MAX_EVENT_BYTES, HttpClient, HttpConfig, body_message, decode_events, error_for_status, headers,
    sse_events, stream_after,
};

/// The official endpoint.
pub const COHERE_BASE_URL: &str = "https://api.cohere.com/v2";

/// Settings for the Cohere client.
#[derive(Debug, Clone)]
pub struct CohereConfig {
    /// The bearer key.
    pub api_key: ApiKey,
    /// The base URL, ending in `/v2`.
    pub base_url: String,
    /// Timeouts, retries, rate limits.
    pub http: HttpConfig,
}

crate::http::config_setters!(CohereConfig);

impl CohereConfig {
    /// The official API with this key.
    pub fn new(api_key: impl Into<ApiKey>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: COHERE_BASE_URL.into(),
            http: HttpConfig::default(),
        }
    }

    /// The key from `COHERE_API_KEY` (or `CO_API_KEY`).
    pub fn from_env() -> Result<Self, Error> {
        let key = ApiKey::from_env("COHERE_API_KEY")
            .or_else(|| ApiKey::from_env("CO_API_KEY"))
            .ok_or_else(|| Error::Config {
                message: "COHERE_API_KEY is not set".into(),
            })?;
        Ok(Self::new(key))
    }
}

/// A connection to the Cohere API. Cheap to clone; clones share connections and rate limits.
#[derive(Debug, Clone)]
pub struct CohereClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient,
    config: CohereConfig,
    headers: reqwest::header::HeaderMap,
}

impl CohereClient {
    /// A client with these settings.
    pub fn new(config: CohereConfig) -> Result<Self, Error> {
        let bearer = format!("Bearer {}", config.api_key.expose());
        Ok(Self {
            inner: Arc::new(Inner {
                http: HttpClient::new(config.http.clone())?,
                headers: headers([("authorization", bearer.as_str(), true)])?,
                config,
            }),
        })
    }

    /// A chat model, such as `command-a-03-2025`.
    pub fn chat(&self, model: impl Into<String>) -> CohereChat {
        CohereChat {
            client: self.clone(),
            model: model.into(),
        }
    }

    /// An embedding model, such as `embed-v4.0`, with `input_type` `search_document` by default.
    pub fn embeddings(&self, model: impl Into<String>, dimensions: usize) -> CohereEmbeddings {
        CohereEmbeddings {
            client: self.clone(),
            model: model.into(),
            dimensions,
            input_type: "search_document".into(),
        }
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::Response, Error> {
        let url = format!("{}/{path}", self.inner.config.base_url.trim_end_matches('/'));
        self.inner
            .http
            .post_json(&url, body, &self.inner.headers, classify)
            .await
    }
}

pub(crate) fn classify(status: StatusCode, body: &str, retry_after: Option<Duration>) -> Error {
    error_for_status(status, body_message(body, "message"), retry_after)
}

/// A Cohere chat model.
#[derive(Debug, Clone)]
pub struct CohereChat {
    client: CohereClient,
    model: String,
}

#[kai_core::async_trait]
impl ChatModel for CohereChat {
    fn name(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &str {
        "cohere"
    }

    /// Command A and the Command R models of August 2024 and later constrain output to a JSON Schema,
    /// but not in a request with tools ("not supported when used in combination with the documents or
    /// tools parameters"), so an agent with tools answers through a tool call.
    fn capabilities(&self) -> ModelCapabilities {
        ModelCapabilities {
            tools: true,
            json_schema: has_structured_outputs(&self.model),
            json_schema_with_tools: false,
            streaming: true,
            images: true,
        }
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let response = self
            .client
            .post("chat", &wire::request_body(&self.model, &request, false))
            .await?;
        let parsed: wire::WireResponse = self.client.inner.http.json(response).await?;
        Ok(wire::response(parsed))
    }

    fn stream(self: Arc<Self>, request: ChatRequest) -> ChatStream<'static> {
        stream_after(async move {
            let response = self
                .client
                .post("chat", &wire::request_body(&self.model, &request, true))
                .await?;
            let events = sse_events(self.client.inner.http.byte_stream(response), DEFAULT_MAX_EVENT_BYTES);
            Ok(decode_events(events, |event| stream::decode(&event)))
        })
    }
}

/// Whether a Cohere chat model takes a JSON Schema in `response_format`: the Command A family and the
/// Command R and R+ models (the `command-r` and `command-r-plus` aliases and their August 2024
/// releases), not Command R7B, the older Command models or Aya.
fn has_structured_outputs(model: &str) -> bool {
    model.starts_with("command-a")
        || ["command-r", "command-r-plus"].contains(&model)
        || (model.starts_with("command-r") && model.ends_with("08-2024"))
}

/// A Cohere embedding model.
#[derive(Debug, Clone)]
pub struct CohereEmbeddings {
    client: CohereClient,
    model: String,
    dimensions: usize,
    input_type: String,
}

impl CohereEmbeddings {
    /// Sets `input_type`: `search_document`, `search_query`, `classification` or `clustering`.
    pub fn with_input_type(mut self, input_type: impl Into<String>) -> Self {
        self.input_type = input_type.into();
        self
    }
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: EmbeddingsByType,
    #[serde(default)]
    meta: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct EmbeddingsByType {
    #[serde(default)]
    float: Vec<Vec<f32>>,
}

#[kai_core::async_trait]
impl EmbeddingModel for CohereEmbeddings {
    fn name(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_batch_size(&self) -> usize {
        96
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, Error> {
        let body = json!({
            "model": self.model, "texts": texts, "input_type": self.input_type, "embedding_types": ["float"]
        });
        let response = self.client.post("embed", &body).await?;
        let parsed: EmbedResponse = self.client.inner.http.json(response).await?;
        check_embeddings(&parsed.embeddings.float, texts.len(), self.dimensions)?;
        let input_tokens = parsed
            .meta
            .as_ref()
            .and_then(|m| m.pointer("/billed_units/input_tokens"))
            .and_then(serde_json::Value::as_f64)
            .map_or(0, |n| n.max(0.0) as u64);
        Ok(Embeddings {
            vectors: parsed.embeddings.float,
            usage: Usage {
                input_tokens,
                ..Usage::default()
            },
        })
    }
}
