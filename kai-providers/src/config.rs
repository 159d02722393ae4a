//! Providers, models and agents built from a [`KaiConfig`] alone.

use std::sync::Arc;
use std::time::Duration;

use kai_core::config::{KaiConfig, ProviderConfig};
use kai_core::{Agent, ChatModel, EmbeddingModel, Error, ToolSet};

use crate::http::{HttpConfig, RateLimit};
use crate::registry::{ModelSpec, PROVIDERS, embedding_model_from_spec, model_from_spec};

/// The chat model of the provider named `provider` in `config.providers`: its kind, model, base URL,
/// API key (resolved from its reference), timeout, retries and rate limits.
///
/// An unknown name, or a kind that is not one of [`PROVIDERS`], is [`Error::InvalidConfig`] naming
/// the path; a key that cannot be resolved is [`Error::Config`].
///
/// ```
/// use kai_core::config::{ConfigFormat, KaiConfig};
///
/// let config = KaiConfig::parse(
///     "providers:\n  local: {kind: llamacpp, model: qwen, base_url: 'http://127.0.0.1:8080/v1'}\n",
///     ConfigFormat::Yaml,
///     [],
/// ).unwrap();
/// let model = kai_providers::model_from_config(&config, "local").unwrap();
/// assert_eq!(model.name(), "qwen");
/// ```
pub fn model_from_config(config: &KaiConfig, provider: &str) -> Result<Arc<dyn ChatModel>, Error> {
    let (spec, http) = spec_of(config, provider, None)?;
    model_from_spec(&spec, http)
}

/// The embedding model `config.memory.embedding` names, producing vectors of `memory.dimensions`.
/// A configuration without memory or without an embedding model is [`Error::InvalidConfig`].
pub fn embedding_model_from_config(config: &KaiConfig) -> Result<Arc<dyn EmbeddingModel>, Error> {
    let memory = config.memory.as_ref().ok_or_else(|| Error::InvalidConfig {
        path: "memory".into(),
        message: "the configuration has no memory section".into(),
    })?;
    let embedding = memory.embedding.as_ref().ok_or_else(|| Error::InvalidConfig {
        path: "memory.embedding".into(),
        message: "the memory section names no embedding model".into(),
    })?;
    let (spec, http) = spec_of(config, &embedding.provider, Some(&embedding.model))?;
    embedding_model_from_spec(&spec, memory.dimensions, http)
}

/// The agent `config.agents.definitions[name]`: its provider's model, the run limits of
/// `config.agents`, its instructions and settings, and of `tools` the ones it names.
pub fn agent_from_config(config: &KaiConfig, name: &str, tools: &ToolSet) -> Result<Agent, Error> {
    let definition = config
        .agents
        .definitions
        .get(name)
        .ok_or_else(|| Error::InvalidConfig {
            path: format!("agents.definitions.{name}"),
            message: "no agent of this name is defined".into(),
        })?;
    let model = model_from_config(config, &definition.provider)?;
    definition
        .apply(Agent::builder_shared(model).name(name), &config.agents, tools)?
        .build()
}

/// The spec and HTTP settings of `provider`, for `model` or its own model.
fn spec_of(config: &KaiConfig, provider: &str, model: Option<&str>) -> Result<(ModelSpec, HttpConfig), Error> {
    let settings: &ProviderConfig = config.providers.get(provider).ok_or_else(|| Error::InvalidConfig {
        path: format!("providers.{provider}"),
        message: "no provider of this name is configured".into(),
    })?;
    let kind = settings.kind.as_str();
    let known = PROVIDERS.contains(&kind) || matches!(kind, "claude" | "google" | "llama.cpp");
    if !known {
        return Err(Error::InvalidConfig {
            path: format!("providers.{provider}.kind"),
            message: format!("{kind:?} is not a provider kAI knows ({})", PROVIDERS.join(", ")),
        });
    }
    let mut http = HttpConfig::default();
    if let Some(timeout) = settings.timeout_ms {
        http.timeout = Some(Duration::from_millis(timeout));
    }
    if let Some(retries) = settings.max_retries {
        http.retry.max_retries = retries;
    }
    if let Some(limit) = settings.rate_limit {
        http.rate_limit = RateLimit {
            requests_per_minute: limit.requests_per_minute,
            tokens_per_minute: limit.tokens_per_minute,
        };
    }
    let mut spec = ModelSpec {
        provider: kind.to_owned(),
        model: model.unwrap_or(&settings.model).to_owned(),
        base_url: settings.base_url.clone(),
        api_key: None,
    };
    if let Some(key) = &settings.api_key {
        spec = spec.with_api_key(key.resolve()?.expose());
    }
    Ok((spec, http))
}
