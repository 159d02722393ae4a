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

/// Checks what only this crate knows of a configuration: that every provider's kind is one kAI has,
/// and that a key is not given to one that would not send it. Give it to
/// [`ConfigWatcher::watch_checked`](kai_core::config::ConfigWatcher::watch_checked) so a reload that
/// names an unknown provider is rejected, not accepted and then failing where it is used.
pub fn check_config(config: &KaiConfig) -> Result<(), Error> {
    config
        .providers
        .iter()
        .try_for_each(|(name, settings)| check_provider(name, settings))
}

fn check_provider(name: &str, settings: &ProviderConfig) -> Result<(), Error> {
    let kind = settings.kind.as_str();
    let known = PROVIDERS.contains(&kind) || matches!(kind, "claude" | "google" | "llama.cpp");
    if !known {
        return Err(Error::InvalidConfig {
            path: format!("providers.{name}.kind"),
            message: format!("{kind:?} is not a provider kAI knows ({})", PROVIDERS.join(", ")),
        });
    }
    if kind == "ollama" && settings.api_key.is_some() {
        return Err(Error::InvalidConfig {
            path: format!("providers.{name}.api_key"),
            message: "Ollama's native API takes no key; use the kind ollama-openai for a server behind one".into(),
        });
    }
    Ok(())
}

/// The spec and HTTP settings of `provider`, for `model` or its own model.
fn spec_of(config: &KaiConfig, provider: &str, model: Option<&str>) -> Result<(ModelSpec, HttpConfig), Error> {
    let settings: &ProviderConfig = config.providers.get(provider).ok_or_else(|| Error::InvalidConfig {
        path: format!("providers.{provider}"),
        message: "no provider of this name is configured".into(),
    })?;
    check_provider(provider, settings)?;
    let kind = settings.kind.as_str();
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

#[cfg(test)]
mod tests {
    use kai_core::config::ConfigFormat;

    use super::*;

    #[test]
    fn every_provider_setting_reaches_the_client() {
        let directory = tempfile::tempdir().unwrap();
        let key = directory.path().join("key");
        std::fs::write(&key, "sk-from-file\n").unwrap();
        let yaml = format!(
            "providers:\n  p: {{kind: openai-compatible, model: m, base_url: 'https://models.example/v1', \
             api_key: {{file: {}}}, timeout_ms: 1500, max_retries: 1, \
             rate_limit: {{requests_per_minute: 30, tokens_per_minute: 9000}}}}\n",
            key.display()
        );
        let config = KaiConfig::parse(&yaml, ConfigFormat::Yaml, []).unwrap();
        let (spec, http) = spec_of(&config, "p", None).unwrap();
        assert_eq!(spec.provider, "openai-compatible");
        assert_eq!(spec.model, "m");
        assert_eq!(spec.base_url.as_deref(), Some("https://models.example/v1"));
        assert_eq!(spec.api_key.as_ref().map(|key| key.expose()), Some("sk-from-file"));
        assert_eq!(http.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(http.retry.max_retries, 1);
        assert_eq!(http.rate_limit.requests_per_minute, Some(30));
        assert_eq!(http.rate_limit.tokens_per_minute, Some(9000));
        assert!(!format!("{spec:?}").contains("sk-from-file"));
    }

    #[test]
    fn unknown_kinds_and_keys_that_would_be_dropped_are_refused() {
        let config = KaiConfig::parse(
            "providers:\n  a: {kind: skynet, model: m}\n  b: {kind: ollama, model: m, api_key: {env: KEY}}\n",
            ConfigFormat::Yaml,
            [],
        )
        .unwrap();
        assert!(matches!(check_config(&config), Err(Error::InvalidConfig { path, .. }) if path == "providers.a.kind"));
        assert!(matches!(
            model_from_config(&config, "b"),
            Err(Error::InvalidConfig { path, .. }) if path == "providers.b.api_key"
        ));
        assert!(matches!(
            model_from_config(&config, "missing"),
            Err(Error::InvalidConfig { path, .. }) if path == "providers.missing"
        ));
    }
}
