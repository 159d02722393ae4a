//! OpenAI Chat Completions and embeddings, and every server that speaks the same API (vLLM, LM Studio,
//! TGI's Messages API, llama.cpp's server, Ollama's `/v1`).

pub(crate) mod stream;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use kai_core::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, ChatStream, EmbeddingModel, Embeddings, Error, ModelCapabilities,
    ToolChoice, Usage, check_embeddings, replay_stream,
};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::http::{
    ApiKey, DEFAULT_MAX_EVENT_BYTES, HttpClient, HttpConfig, bounded_message, decode_events, error_for_status, headers,
    sse_events, stream_after,
};

/// The official OpenAI endpoint.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Which server is on the other end; each has its own small departures from OpenAI's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavor {
    /// api.openai.com.
    OpenAi,
    /// llama.cpp's server, or llama-cpp-python's (`--chat_format chatml-function-calling` for tools).
    LlamaCpp,
    /// vLLM's OpenAI-compatible server.
    Vllm,
    /// LM Studio's local server.
    LmStudio,
    /// Hugging Face Text Generation Inference's Messages API.
    Tgi,
    /// Ollama's OpenAI-compatible `/v1` endpoints.
    Ollama,
    /// Anything else: only the common subset is used.
    Generic,
}

/// Per-server differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quirks {
    pub(crate) name: &'static str,
    pub(crate) max_tokens_field: &'static str,
    pub(crate) stream_usage: bool,
    pub(crate) tools: bool,
    pub(crate) json_schema: bool,
    /// Whether a JSON Schema goes as `{"type": "json_object", "schema": …}` (llama.cpp's grammar form,
    /// which both its own server and llama-cpp-python's take) instead of OpenAI's `json_schema` form.
    pub(crate) schema_in_json_object: bool,
    /// Whether a JSON Schema response format and tools may go in one request.
    pub(crate) schema_with_tools: bool,
    pub(crate) parallel_tool_calls_param: bool,
    /// Whether it can stream a response when the model chooses freely between text and tool calls.
    pub(crate) streams_free_tool_choice: bool,
    /// Whether tools are ignored unless `tool_choice` is sent, so "auto" must be spelled out.
    pub(crate) needs_explicit_tool_choice: bool,
    /// Whether `tool_choice: "required"` works.
    pub(crate) supports_required_tool_choice: bool,
    /// Whether an assistant message with only tool calls may have `content: null` (else `""` is sent).
    pub(crate) accepts_null_content: bool,
    /// Whether models on it write tool calls into their text (a chat template the server does not
    /// parse), so an answer that is only calls of offered tools is read as those calls.
    pub(crate) tool_calls_in_text: bool,
}

impl Flavor {
    pub(crate) fn quirks(self) -> Quirks {
        let compatible = Quirks {
            name: "openai-compatible",
            max_tokens_field: "max_tokens",
            stream_usage: false,
            tools: true,
            json_schema: false,
            schema_in_json_object: false,
            schema_with_tools: true,
            parallel_tool_calls_param: false,
            streams_free_tool_choice: true,
            needs_explicit_tool_choice: false,
            supports_required_tool_choice: true,
            accepts_null_content: false,
            tool_calls_in_text: false,
        };
        match self {
            Flavor::OpenAi => Quirks {
                name: "openai",
                max_tokens_field: "max_completion_tokens",
                accepts_null_content: true,
                stream_usage: true,
                json_schema: true,
                parallel_tool_calls_param: true,
                ..compatible
            },
            Flavor::Vllm => Quirks {
                name: "vllm",
                stream_usage: true,
                json_schema: true,
                parallel_tool_calls_param: true,
                ..compatible
            },
            Flavor::LmStudio => Quirks {
                name: "lmstudio",
                json_schema: true,
                ..compatible
            },
            Flavor::Tgi => Quirks {
                name: "tgi",
                stream_usage: true,
                ..compatible
            },
            Flavor::Ollama => Quirks {
                name: "ollama",
                stream_usage: true,
                json_schema: true,
                ..compatible
            },
            // llama-cpp-python's function-calling chat format ignores tools unless `tool_choice` is sent,
            // fails an assertion on "required", rejects `content: null`, and fails a streamed request unless the tool is forced
            // ("Automatic streaming tool choice is not supported") after it has sent the 200 header. Its
            // tool calls come from a grammar of their own, which a response-format grammar would replace.
            // Under a model's own chat template (no `--chat_format`) calls arrive as text in the answer.
            Flavor::LlamaCpp => Quirks {
                name: "llama.cpp",
                json_schema: true,
                schema_in_json_object: true,
                schema_with_tools: false,
                streams_free_tool_choice: false,
                needs_explicit_tool_choice: true,
                supports_required_tool_choice: false,
                tool_calls_in_text: true,
                ..compatible
            },
            Flavor::Generic => compatible,
        }
    }

    /// The OpenTelemetry `gen_ai.provider.name` for this server.
    fn provider_name(self) -> &'static str {
        match self {
            Flavor::OpenAi => "openai",
            _ => self.quirks().name,
        }
    }
}

/// Settings for an OpenAI or OpenAI-compatible client.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The API's base URL, ending in `/v1` (no trailing slash needed).
    pub base_url: String,
    /// The bearer key; local servers usually need none.
    pub api_key: Option<ApiKey>,
    /// `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// `OpenAI-Project` header.
    pub project: Option<String>,
    /// Which server this is.
    pub flavor: Flavor,
    /// Whether the model takes tools (default true). A server or model without tool support refuses a
    /// request that has them: set this to `false` and such a request fails with
    /// [`Error::Unsupported`] before it is sent, and `capabilities()` says so.
    pub tools: bool,
    /// Timeouts, retries, rate limits.
    pub http: HttpConfig,
}

crate::http::config_setters!(OpenAiConfig);

impl OpenAiConfig {
    /// api.openai.com with this key.
    pub fn openai(api_key: impl Into<ApiKey>) -> Self {
        Self {
            base_url: OPENAI_BASE_URL.into(),
            api_key: Some(api_key.into()),
            organization: None,
            project: None,
            flavor: Flavor::OpenAi,
            tools: true,
            http: HttpConfig::default(),
        }
    }

    /// api.openai.com with the key, organization and project from `OPENAI_API_KEY`, `OPENAI_ORG_ID`,
    /// `OPENAI_PROJECT_ID` (and `OPENAI_BASE_URL` if set).
    pub fn from_env() -> Result<Self, Error> {
        let key = ApiKey::from_env("OPENAI_API_KEY").ok_or_else(|| Error::Config {
            message: "OPENAI_API_KEY is not set".into(),
        })?;
        let mut config = Self::openai(key);
        if let Ok(base_url) = std::env::var("OPENAI_BASE_URL") {
            config.base_url = base_url;
        }
        config.organization = std::env::var("OPENAI_ORG_ID").ok();
        config.project = std::env::var("OPENAI_PROJECT_ID").ok();
        Ok(config)
    }

    /// An OpenAI-compatible server at `base_url`.
    pub fn compatible(base_url: impl Into<String>, flavor: Flavor) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            organization: None,
            project: None,
            flavor,
            tools: true,
            http: HttpConfig::default(),
        }
    }

    /// Marks the model as taking no tools (see [`tools`](Self::tools)).
    pub fn without_tools(mut self) -> Self {
        self.tools = false;
        self
    }

    /// Sets the key.
    pub fn with_api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.api_key = Some(key.into());
        self
    }
}

/// A connection to an OpenAI-style API, from which chat and embedding models are made. Cheap to clone;
/// clones share connections and rate limits.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    http: HttpClient,
    config: OpenAiConfig,
    quirks: Quirks,
    headers: reqwest::header::HeaderMap,
}

impl OpenAiClient {
    /// A client with these settings.
    pub fn new(config: OpenAiConfig) -> Result<Self, Error> {
        let bearer = config.api_key.as_ref().map(|key| format!("Bearer {}", key.expose()));
        let pairs = [
            bearer.as_deref().map(|v| ("authorization", v, true)),
            config
                .organization
                .as_deref()
                .map(|v| ("openai-organization", v, false)),
            config.project.as_deref().map(|v| ("openai-project", v, false)),
        ];
        Ok(Self {
            inner: Arc::new(ClientInner {
                http: HttpClient::new(config.http.clone())?,
                quirks: Quirks {
                    tools: config.tools && config.flavor.quirks().tools,
                    ..config.flavor.quirks()
                },
                headers: headers(pairs.into_iter().flatten())?,
                config,
            }),
        })
    }

    /// A chat model of this API.
    pub fn chat(&self, model: impl Into<String>) -> OpenAiChat {
        OpenAiChat {
            client: self.clone(),
            model: model.into(),
        }
    }

    /// An embedding model of this API, producing vectors of `dimensions` (sent as the `dimensions`
    /// parameter only to OpenAI's own `text-embedding-3` models, whose vectors it shortens).
    pub fn embeddings(&self, model: impl Into<String>, dimensions: usize) -> OpenAiEmbeddings {
        OpenAiEmbeddings {
            client: self.clone(),
            model: model.into(),
            dimensions,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.inner.config.base_url.trim_end_matches('/'), path)
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::Response, Error> {
        let inner = &self.inner;
        inner
            .http
            .post_json(&self.url(path), body, &inner.headers, classify)
            .await
    }
}

/// Maps an OpenAI-style error response to a kai error.
pub(crate) fn classify(status: StatusCode, body: &str, retry_after: Option<Duration>) -> Error {
    let parsed: wire::ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let (message, code) = match parsed.error {
        Some(wire::ErrorDetail::Object { message, code }) => (message, code),
        Some(wire::ErrorDetail::Text(text)) => (Some(text), None),
        None => (parsed.message, None),
    };
    let message = bounded_message(message.as_deref().unwrap_or(body.trim()));
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        message
    };
    let code = code.as_ref().and_then(|c| c.as_str()).unwrap_or_default();
    if code == "context_length_exceeded" {
        return Error::ContextTooLong { message };
    }
    error_for_status(status, message, retry_after)
}

/// A chat model served by an OpenAI-style API.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    client: OpenAiClient,
    model: String,
}

#[kai_core::async_trait]
impl ChatModel for OpenAiChat {
    fn name(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &str {
        self.client.inner.config.flavor.provider_name()
    }

    fn capabilities(&self) -> ModelCapabilities {
        let quirks = self.client.inner.quirks;
        let flavor = self.client.inner.config.flavor;
        let json_schema = quirks.json_schema && (flavor != Flavor::OpenAi || has_strict_schemas(&self.model));
        ModelCapabilities {
            tools: quirks.tools,
            json_schema,
            json_schema_with_tools: json_schema && quirks.schema_with_tools,
            streaming: true,
            images: true,
        }
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let body = wire::request_body(&self.model, &request, false, &self.client.inner.quirks)?;
        let response = self.client.post("chat/completions", &body).await?;
        let raw: serde_json::Value = self.client.inner.http.json(response).await?;
        let text = raw.to_string();
        let completion: wire::Completion = serde_json::from_value(raw)
            .map_err(|error| Error::malformed(format!("unexpected completion: {error}"), &text))?;
        let mut response = wire::response(completion, &text)?;
        if self.client.inner.quirks.tool_calls_in_text {
            kai_core::recover_tool_calls(&mut response, &request);
        }
        Ok(response)
    }

    fn stream(self: Arc<Self>, request: ChatRequest) -> ChatStream<'static> {
        let free_choice = !matches!(request.tool_choice, Some(ToolChoice::Tool(_) | ToolChoice::None));
        if !request.tools.is_empty() && free_choice && !self.client.inner.quirks.streams_free_tool_choice {
            return replay_stream(async move { self.complete(request).await });
        }
        stream_after(async move {
            let body = wire::request_body(&self.model, &request, true, &self.client.inner.quirks)?;
            let response = self.client.post("chat/completions", &body).await?;
            Ok(decode(self.client.inner.http.byte_stream(response)))
        })
    }
}

/// Whether an api.openai.com model takes `json_schema` response formats: GPT-4o and every later
/// family do; GPT-3.5 and the GPT-4 models before 4o (`gpt-4`, `gpt-4-turbo`, `gpt-4-0613`, …) only
/// have JSON mode, so structured output goes through a forced tool call for them.
fn has_strict_schemas(model: &str) -> bool {
    let model = model.rsplit('/').next().unwrap_or(model);
    let legacy = model.starts_with("gpt-3.5") || model == "gpt-4" || model.starts_with("gpt-4-");
    !legacy
}

/// SSE bytes → deltas, ending at `[DONE]` (or the end of a stream that saw a finish reason).
fn decode(bytes: crate::http::ByteStream) -> impl futures::Stream<Item = Result<ChatDelta, Error>> {
    let mut decoder = stream::ChunkDecoder::default();
    decode_events(sse_events(bytes, DEFAULT_MAX_EVENT_BYTES), move |event| {
        decoder.decode(&event)
    })
}

/// An embedding model served by an OpenAI-style API.
#[derive(Debug, Clone)]
pub struct OpenAiEmbeddings {
    client: OpenAiClient,
    model: String,
    dimensions: usize,
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    usage: Option<EmbeddingUsage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct EmbeddingUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

#[kai_core::async_trait]
impl EmbeddingModel for OpenAiEmbeddings {
    fn name(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_batch_size(&self) -> usize {
        2048
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, Error> {
        let mut body = serde_json::json!({"model": self.model, "input": texts, "encoding_format": "float"});
        // Only the text-embedding-3 models take `dimensions`; ada-002 and older refuse it.
        if self.client.inner.config.flavor == Flavor::OpenAi && self.model.starts_with("text-embedding-3") {
            body["dimensions"] = serde_json::json!(self.dimensions);
        }
        let response = self.client.post("embeddings", &body).await?;
        let mut parsed: EmbeddingResponse = self.client.inner.http.json(response).await?;
        parsed.data.sort_by_key(|item| item.index);
        let vectors: Vec<Vec<f32>> = parsed.data.into_iter().map(|item| item.embedding).collect();
        check_embeddings(&vectors, texts.len(), self.dimensions)?;
        Ok(Embeddings {
            vectors,
            usage: Usage {
                input_tokens: parsed.usage.map_or(0, |u| u.prompt_tokens),
                ..Usage::default()
            },
        })
    }
}
