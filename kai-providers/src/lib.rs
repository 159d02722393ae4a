//! # kai-providers
//!
//! Real clients for the model APIs kAI agents talk to, implementing `kai-core`'s [`ChatModel`] and
//! [`EmbeddingModel`](kai_core::EmbeddingModel):
//!
//! - [`openai`]: OpenAI Chat Completions and embeddings, and the OpenAI-compatible servers (vLLM,
//!   LM Studio, TGI, llama.cpp, Ollama's `/v1`) with their quirks handled.
//! - [`anthropic`]: the Messages API.
//! - [`gemini`]: Google's Gemini API (`generateContent`, streaming, embeddings).
//! - [`cohere`]: Cohere's v2 chat and embed.
//! - [`ollama`]: Ollama's native `/api/chat` and `/api/embed`.
//!
//! All of them share one HTTP layer ([`http`]): retries with backoff and jitter that honour
//! `Retry-After`, client-side rate limits, timeouts, a standards-following SSE parser, bounded bodies,
//! and typed errors. API keys never appear in `Debug` output, errors or logs.
//!
//! [`model_from_str`] picks a provider from a string such as `openai:gpt-4o-mini`
//! ([`embedding_model_from_str`] an embedding model);
//! [`pricing::PriceTable`] turns usage into an estimated cost.
//!
//! [`ChatModel`]: kai_core::ChatModel

pub mod anthropic;
pub mod cohere;
#[cfg(feature = "config")]
mod config;
mod convert;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod gemini;
pub mod http;
mod json_schema;
mod media;
pub mod ollama;
pub mod openai;
pub mod pricing;
mod registry;

pub use anthropic::{AnthropicChat, AnthropicClient, AnthropicConfig};
pub use cohere::{CohereChat, CohereClient, CohereConfig, CohereEmbeddings};
#[cfg(feature = "config")]
pub use config::{agent_from_config, check_config, embedding_model_from_config, model_from_config};
pub use gemini::{GeminiChat, GeminiClient, GeminiConfig, GeminiEmbeddings};
pub use http::{ApiKey, HttpConfig, RateLimit, RetryPolicy};
pub use ollama::{OllamaChat, OllamaClient, OllamaConfig, OllamaEmbeddings};
pub use openai::{Flavor, OpenAiChat, OpenAiClient, OpenAiConfig, OpenAiEmbeddings};
pub use registry::{
    ModelSpec, PROVIDERS, embedding_model_from_spec, embedding_model_from_str, model_from_spec, model_from_str,
};
