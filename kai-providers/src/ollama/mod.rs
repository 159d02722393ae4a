//! Ollama's native API: `/api/chat` (NDJSON streaming, tools) and `/api/embed`.

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

use crate::http::{HttpClient, HttpConfig, body_message, decode_events, error_for_status, ndjson_lines, stream_after};

/// The longest line accepted from a stream: 16 MiB.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Settings for the Ollama client.
#[derive(Debug, Clone)]
pub struct OllamaConfig {
    /// The server, such as `http://127.0.0.1:11434`.
    pub base_url: String,
    /// Timeouts, retries, rate limits.
    pub http: HttpConfig,
}

crate::http::config_setters!(OllamaConfig);

impl OllamaConfig {
    /// The server named by `OLLAMA_HOST` (default `http://127.0.0.1:11434`).
    pub fn from_env() -> Self {
        Self::new(crate::registry::ollama_host())
    }

    /// The server at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            http: HttpConfig::default(),
        }
    }
}

/// A connection to an Ollama server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient,
    config: OllamaConfig,
    headers: reqwest::header::HeaderMap,
}

impl OllamaClient {
    /// A client with these settings.
    pub fn new(config: OllamaConfig) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                http: HttpClient::new(config.http.clone())?,
                headers: reqwest::header::HeaderMap::new(),
                config,
            }),
        })
    }

    /// A chat model, such as `llama3.2`.
    pub fn chat(&self, model: impl Into<String>) -> OllamaChat {
        OllamaChat {
            client: self.clone(),
            model: model.into(),
        }
    }

    /// An embedding model, such as `all-minilm` (384 dimensions).
    pub fn embeddings(&self, model: impl Into<String>, dimensions: usize) -> OllamaEmbeddings {
        OllamaEmbeddings {
            client: self.clone(),
            model: model.into(),
            dimensions,
        }
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::Response, Error> {
        let url = format!("{}/api/{path}", self.inner.config.base_url.trim_end_matches('/'));
        self.inner
            .http
            .post_json(&url, body, &self.inner.headers, classify)
            .await
    }
}

pub(crate) fn classify(status: StatusCode, body: &str, retry_after: Option<Duration>) -> Error {
    error_for_status(status, body_message(body, "error"), retry_after)
}

/// A model served by Ollama.
#[derive(Debug, Clone)]
pub struct OllamaChat {
    client: OllamaClient,
    model: String,
}

#[kai_core::async_trait]
impl ChatModel for OllamaChat {
    fn name(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &str {
        "ollama"
    }

    fn capabilities(&self) -> ModelCapabilities {
        ModelCapabilities::ALL
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let body = wire::request_body(&self.model, &request, false)?;
        let response = self.client.post("chat", &body).await?;
        let line: wire::ChatLine = self.client.inner.http.json(response).await?;
        wire::response(line)
    }

    fn stream(self: Arc<Self>, request: ChatRequest) -> ChatStream<'static> {
        stream_after(async move {
            let body = wire::request_body(&self.model, &request, true)?;
            let response = self.client.post("chat", &body).await?;
            let lines = ndjson_lines(self.client.inner.http.byte_stream(response), MAX_LINE_BYTES);
            let mut decoder = stream::LineDecoder::default();
            Ok(decode_events(lines, move |line| decoder.decode(&line)))
        })
    }
}

/// An embedding model served by Ollama.
#[derive(Debug, Clone)]
pub struct OllamaEmbeddings {
    client: OllamaClient,
    model: String,
    dimensions: usize,
}

#[derive(Deserialize)]
struct EmbedResponse {
    #[serde(default)]
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
}

#[kai_core::async_trait]
impl EmbeddingModel for OllamaEmbeddings {
    fn name(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, Error> {
        let response = self
            .client
            .post("embed", &json!({"model": self.model, "input": texts}))
            .await?;
        let parsed: EmbedResponse = self.client.inner.http.json(response).await?;
        check_embeddings(&parsed.embeddings, texts.len(), self.dimensions)?;
        Ok(Embeddings {
            vectors: parsed.embeddings,
            usage: Usage {
                input_tokens: parsed.prompt_eval_count.unwrap_or(0),
                ..Usage::default()
            },
        })
    }
}
