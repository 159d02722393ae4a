//! Google's Gemini API (`generativelanguage.googleapis.com`): chat with function calling, streaming,
//! and embeddings.

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
    ApiKey, DEFAULT_MAX_EVENT_BYTES, HttpClient, HttpConfig, decode_events, error_for_status, headers, sse_events,
    stream_after,
};

/// The official endpoint.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

/// Settings for the Gemini client.
#[derive(Debug, Clone)]
pub struct GeminiConfig {
    /// The API key, sent as the `x-goog-api-key` header (never in the URL).
    pub api_key: ApiKey,
    /// The base URL, ending in `/v1beta`.
    pub base_url: String,
    /// Timeouts, retries, rate limits.
    pub http: HttpConfig,
}

crate::http::config_setters!(GeminiConfig);

impl GeminiConfig {
    /// The official API with this key.
    pub fn new(api_key: impl Into<ApiKey>) -> Self {
        Self {
            api_key: api_key.into(),
            base_url: GEMINI_BASE_URL.into(),
            http: HttpConfig::default(),
        }
    }

    /// The key from `GEMINI_API_KEY` (or `GOOGLE_API_KEY`).
    pub fn from_env() -> Result<Self, Error> {
        let key = ApiKey::from_env("GEMINI_API_KEY")
            .or_else(|| ApiKey::from_env("GOOGLE_API_KEY"))
            .ok_or_else(|| Error::Config {
                message: "GEMINI_API_KEY is not set".into(),
            })?;
        Ok(Self::new(key))
    }
}

/// A connection to the Gemini API. Cheap to clone; clones share connections and rate limits.
#[derive(Debug, Clone)]
pub struct GeminiClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient,
    config: GeminiConfig,
    headers: reqwest::header::HeaderMap,
}

impl GeminiClient {
    /// A client with these settings.
    pub fn new(config: GeminiConfig) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                http: HttpClient::new(config.http.clone())?,
                headers: headers([("x-goog-api-key", config.api_key.expose(), true)])?,
                config,
            }),
        })
    }

    /// A chat model, such as `gemini-2.5-flash`.
    pub fn chat(&self, model: impl Into<String>) -> GeminiChat {
        GeminiChat {
            client: self.clone(),
            model: model.into(),
        }
    }

    /// An embedding model, such as `gemini-embedding-001`, returning vectors of `dimensions`
    /// (`outputDimensionality`).
    pub fn embeddings(&self, model: impl Into<String>, dimensions: usize) -> GeminiEmbeddings {
        GeminiEmbeddings {
            client: self.clone(),
            model: model.into(),
            dimensions,
            task_type: None,
        }
    }

    fn url(&self, model: &str, method: &str) -> String {
        let model = model.strip_prefix("models/").unwrap_or(model);
        format!(
            "{}/models/{model}:{method}",
            self.inner.config.base_url.trim_end_matches('/')
        )
    }

    async fn post(&self, url: &str, body: &serde_json::Value) -> Result<reqwest::Response, Error> {
        self.inner
            .http
            .post_json(url, body, &self.inner.headers, classify)
            .await
    }
}

pub(crate) fn classify(status: StatusCode, body: &str, retry_after: Option<Duration>) -> Error {
    let parsed: wire::ErrorBody = serde_json::from_str(body).unwrap_or_default();
    match parsed.error {
        Some(detail) if !detail.status.is_empty() || !detail.message.is_empty() => {
            wire::error_of(detail, Some(status.as_u16()), retry_after)
        }
        _ => error_for_status(status, crate::http::bounded_message(body.trim()), retry_after),
    }
}

/// A Gemini chat model.
#[derive(Debug, Clone)]
pub struct GeminiChat {
    client: GeminiClient,
    model: String,
}

#[kai_core::async_trait]
impl ChatModel for GeminiChat {
    fn name(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &str {
        "gcp.gemini"
    }

    /// Gemini 2.0 and later constrain output to a JSON Schema, but not in a request that also declares
    /// functions ("Function calling with a response mime type: 'application/json' is unsupported").
    /// Gemma models served by the same API have neither JSON mode nor function calling.
    fn capabilities(&self) -> ModelCapabilities {
        let model = self.model.strip_prefix("models/").unwrap_or(&self.model);
        let gemma = model.starts_with("gemma");
        let legacy = ["gemini-1.", "gemini-pro"]
            .iter()
            .any(|prefix| model.starts_with(prefix));
        ModelCapabilities {
            tools: !gemma,
            json_schema: !gemma && !legacy,
            json_schema_with_tools: false,
            ..ModelCapabilities::ALL
        }
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let url = self.client.url(&self.model, "generateContent");
        let response = self.client.post(&url, &wire::request_body(&request)).await?;
        let parsed: wire::WireResponse = self.client.inner.http.json(response).await?;
        wire::response(parsed)
    }

    fn stream(self: Arc<Self>, request: ChatRequest) -> ChatStream<'static> {
        stream_after(async move {
            let url = format!("{}?alt=sse", self.client.url(&self.model, "streamGenerateContent"));
            let response = self.client.post(&url, &wire::request_body(&request)).await?;
            let events = sse_events(self.client.inner.http.byte_stream(response), DEFAULT_MAX_EVENT_BYTES);
            let mut decoder = stream::ChunkDecoder::default();
            Ok(decode_events(events, move |event| decoder.decode(&event)))
        })
    }
}

/// A Gemini embedding model.
#[derive(Debug, Clone)]
pub struct GeminiEmbeddings {
    client: GeminiClient,
    model: String,
    dimensions: usize,
    task_type: Option<String>,
}

impl GeminiEmbeddings {
    /// Sets the `taskType` (`RETRIEVAL_DOCUMENT`, `RETRIEVAL_QUERY`, `SEMANTIC_SIMILARITY`, …).
    pub fn with_task_type(mut self, task_type: impl Into<String>) -> Self {
        self.task_type = Some(task_type.into());
        self
    }
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(default)]
    embeddings: Vec<Values>,
}

#[derive(Deserialize)]
struct Values {
    #[serde(default)]
    values: Vec<f32>,
}

#[kai_core::async_trait]
impl EmbeddingModel for GeminiEmbeddings {
    fn name(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_batch_size(&self) -> usize {
        100
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, Error> {
        let model = format!("models/{}", self.model.strip_prefix("models/").unwrap_or(&self.model));
        let requests: Vec<_> = texts
            .iter()
            .map(|text| {
                let mut request = json!({
                    "model": model, "content": {"parts": [{"text": text}]}, "outputDimensionality": self.dimensions
                });
                if let Some(task) = &self.task_type {
                    request["taskType"] = json!(task);
                }
                request
            })
            .collect();
        let url = self.client.url(&self.model, "batchEmbedContents");
        let response = self.client.post(&url, &json!({"requests": requests})).await?;
        let parsed: BatchResponse = self.client.inner.http.json(response).await?;
        let vectors: Vec<Vec<f32>> = parsed.embeddings.into_iter().map(|e| e.values).collect();
        check_embeddings(&vectors, texts.len(), self.dimensions)?;
        Ok(Embeddings {
            vectors,
            usage: Usage::default(),
        })
    }
}
