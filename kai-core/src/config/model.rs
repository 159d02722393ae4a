//! What a kAI configuration holds, and the checks beyond its types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::AgentBuilder;
use crate::config::secret::SecretRef;
use crate::error::Error;
use crate::tool::ToolSet;

/// A kAI configuration: agents, providers, memory, KLP and monitoring.
///
/// Every section is optional; unknown fields are refused (a misspelt `timeout_ms` is an error, not a
/// silent default). Secrets are [`SecretRef`]s. Load one with [`KaiConfig::load`] or
/// [`KaiConfig::parse`], or watch a file with [`ConfigWatcher`](crate::config::ConfigWatcher).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KaiConfig {
    /// Limits for agent runs, and named agents.
    pub agents: AgentsConfig,
    /// Model providers, by a name of your choosing that agents and memory refer to.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The document store and its embeddings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryConfig>,
    /// The Kind Link Protocol: identity, audit log and clock tolerances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub klp: Option<KlpConfig>,
    /// Logs and metrics.
    pub monitoring: MonitoringConfig,
}

/// Limits for agent runs, and named agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    /// Agent runs at once where kAI schedules them (a plan's subtasks). At least 1; 4 by default.
    pub max_concurrent: u32,
    /// Memory each sandboxed command of an agent may use, in MiB (`kai-exec`'s address-space limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_mb: Option<u64>,
    /// A run's deadline, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A step's timeout (a model call and its tool calls), in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_timeout_ms: Option<u64>,
    /// A tool call's timeout, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_timeout_ms: Option<u64>,
    /// Model calls per run. At least 1; 10 by default.
    pub max_steps: u32,
    /// Named agents.
    pub definitions: BTreeMap<String, AgentDefinition>,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 4,
            memory_limit_mb: None,
            timeout_ms: None,
            step_timeout_ms: None,
            tool_timeout_ms: None,
            max_steps: 10,
            definitions: BTreeMap::new(),
        }
    }
}

/// A named agent: its provider, instructions, tools and settings (each unset one from
/// [`AgentsConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDefinition {
    /// The name of its provider in [`KaiConfig::providers`].
    pub provider: String,
    /// Its instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The names of its tools, among those the program offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Model calls per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// A run's deadline, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Most tokens per answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// A model provider: which API, which model, where, with which key and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider: `openai`, `anthropic`, `gemini`, `cohere`, `ollama`, `llamacpp`,
    /// `openai-compatible`, … (`kai_providers::PROVIDERS`).
    pub kind: String,
    /// The model's name at the provider.
    pub model: String,
    /// The API's base URL, when not the provider's usual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Where the API key is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretRef>,
    /// A request's timeout, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retries of failed requests (connection failures, 429, 5xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Client-side rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
}

/// Client-side rate limits of a provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
}

/// The document store and its embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Which store.
    pub store: StoreKind,
    /// The embedded store's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Where the Postgres URL is (it holds the password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretRef>,
    /// The Postgres table (`kai_documents` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Connections in the Postgres pool (8 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
    /// How closeness is measured.
    #[serde(default)]
    pub metric: MetricName,
    /// The embeddings' dimensions, 1 to 65,536.
    pub dimensions: usize,
    /// The embedding model: a provider's name in [`KaiConfig::providers`] and the model there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingConfig>,
}

/// Which document store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// SQLite and an HNSW index in a directory (`path`).
    Embedded,
    /// Postgres with pgvector (`url`).
    Postgres,
}

/// How closeness of embeddings is measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// Cosine distance.
    #[default]
    Cosine,
    /// Negative dot product.
    Dot,
    /// Euclidean distance.
    L2,
}

/// The embedding model of the memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// The provider's name in [`KaiConfig::providers`].
    pub provider: String,
    /// The embedding model at that provider.
    pub model: String,
}

/// The Kind Link Protocol's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KlpConfig {
    /// The vault file holding the identity's key.
    pub vault: PathBuf,
    /// Where the vault's passphrase is.
    pub vault_passphrase: SecretRef,
    /// The identity's name in the vault.
    #[serde(default = "default_identity")]
    pub identity: String,
    /// The signed audit log's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
    /// How far peers' clocks may be off when tokens are checked, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_ms: Option<u64>,
    /// The oldest sealed message accepted, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_max_age_ms: Option<u64>,
}

fn default_identity() -> String {
    "default".into()
}

/// Logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// A `tracing` filter such as `info` or `kai_core=debug,info`.
    pub log_level: String,
    /// How logs are written.
    pub log_format: LogFormat,
    /// Where a Prometheus scrape endpoint listens (`127.0.0.1:9464`), if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: LogFormat::Text,
            metrics_address: None,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// An [`Error::InvalidConfig`] at `path`.
fn invalid(path: String, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        path,
        message: message.into(),
    }
}

fn at_least_one<T: PartialOrd + From<u8> + Copy>(path: String, value: T) -> Result<(), Error> {
    if value < T::from(1) {
        return Err(invalid(path, "must be at least 1"));
    }
    Ok(())
}

/// Checks a provider's base URL: `http(s)://`, no credentials in it (they belong in `api_key`), and
/// `https://` unless it is on this machine when a key is sent to it. The URL is never repeated: it may
/// hold what it should not.
fn base_url(path: String, url: &str, sends_key: bool) -> Result<(), Error> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid(path, "must be an http:// or https:// URL"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(invalid(path, "must be an http:// or https:// URL"));
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let query = rest.split_once('?').map_or("", |(_, query)| query);
    let secret_parameter = query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default().to_ascii_lowercase();
        ["key", "token", "secret", "password", "sig"]
            .iter()
            .any(|word| name.contains(word))
    });
    if authority.contains('@') || secret_parameter {
        return Err(invalid(
            path,
            "must not hold credentials (user:password@, a key or token parameter): reference them in api_key",
        ));
    }
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.");
    if sends_key && scheme == "http" && !loopback {
        return Err(invalid(
            path,
            "an API key is sent only over https://, or to this machine",
        ));
    }
    Ok(())
}

impl KaiConfig {
    /// Checks what the types cannot: limits of at least 1, names that refer to something, URLs,
    /// required fields of each store. The error names the path (`agents.definitions.support.provider`).
    pub fn validate(&self) -> Result<(), Error> {
        let agents = &self.agents;
        at_least_one("agents.max_concurrent".into(), agents.max_concurrent)?;
        at_least_one("agents.max_steps".into(), agents.max_steps)?;
        for (field, value) in [
            ("memory_limit_mb", agents.memory_limit_mb),
            ("timeout_ms", agents.timeout_ms),
            ("step_timeout_ms", agents.step_timeout_ms),
            ("tool_timeout_ms", agents.tool_timeout_ms),
        ] {
            if let Some(value) = value {
                at_least_one(format!("agents.{field}"), value)?;
            }
        }
        let provider_names = || self.providers.keys().cloned().collect::<Vec<_>>().join(", ");
        let known_provider = |path: String, name: &str| {
            if self.providers.contains_key(name) {
                Ok(())
            } else {
                Err(invalid(
                    path,
                    format!("no provider is named {name:?} (providers: {})", provider_names()),
                ))
            }
        };
        for (name, definition) in &agents.definitions {
            let path = |field: &str| format!("agents.definitions.{name}.{field}");
            known_provider(path("provider"), &definition.provider)?;
            if let Some(steps) = definition.max_steps {
                at_least_one(path("max_steps"), steps)?;
            }
            if let Some(timeout) = definition.timeout_ms {
                at_least_one(path("timeout_ms"), timeout)?;
            }
        }
        for (name, provider) in &self.providers {
            let path = |field: &str| format!("providers.{name}.{field}");
            if provider.kind.is_empty() {
                return Err(invalid(path("kind"), "must name a provider"));
            }
            if provider.model.is_empty() {
                return Err(invalid(path("model"), "must name a model"));
            }
            if let Some(url) = &provider.base_url {
                base_url(path("base_url"), url, provider.api_key.is_some())?;
            }
            if let Some(timeout) = provider.timeout_ms {
                at_least_one(path("timeout_ms"), timeout)?;
            }
            if provider.max_retries.is_some_and(|retries| retries > MAX_RETRIES) {
                return Err(invalid(path("max_retries"), format!("must be at most {MAX_RETRIES}")));
            }
            if let Some(limit) = provider.rate_limit {
                for (field, value) in [
                    ("requests_per_minute", limit.requests_per_minute),
                    ("tokens_per_minute", limit.tokens_per_minute),
                ] {
                    if let Some(value) = value {
                        at_least_one(path(&format!("rate_limit.{field}")), value)?;
                    }
                }
            }
        }
        if let Some(memory) = &self.memory {
            if !(1..=65_536).contains(&memory.dimensions) {
                return Err(invalid("memory.dimensions".into(), "must be 1 to 65536"));
            }
            match memory.store {
                StoreKind::Embedded => {
                    if memory.path.is_none() {
                        return Err(invalid("memory.path".into(), "the embedded store needs a directory"));
                    }
                    for (field, set) in [
                        ("url", memory.url.is_some()),
                        ("table", memory.table.is_some()),
                        ("pool_size", memory.pool_size.is_some()),
                    ] {
                        if set {
                            return Err(invalid(format!("memory.{field}"), "only the Postgres store takes it"));
                        }
                    }
                }
                StoreKind::Postgres => {
                    if memory.url.is_none() {
                        return Err(invalid("memory.url".into(), "the Postgres store needs a URL reference"));
                    }
                    if memory.path.is_some() {
                        return Err(invalid("memory.path".into(), "only the embedded store takes it"));
                    }
                    // pgvector's `vector` type holds at most 16,000 dimensions.
                    if memory.dimensions > 16_000 {
                        return Err(invalid("memory.dimensions".into(), "pgvector holds at most 16000"));
                    }
                }
            }
            if let Some(pool) = memory.pool_size {
                at_least_one("memory.pool_size".into(), pool)?;
            }
            if let Some(embedding) = &memory.embedding {
                known_provider("memory.embedding.provider".into(), &embedding.provider)?;
            }
        }
        if self.monitoring.log_level.trim().is_empty() {
            return Err(invalid("monitoring.log_level".into(), "must not be empty"));
        }
        if let Some(address) = &self.monitoring.metrics_address
            && address.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(
                "monitoring.metrics_address".into(),
                "must be an IP address and port, such as 127.0.0.1:9464",
            ));
        }
        Ok(())
    }

    /// Takes the relative paths in this configuration (the memory's directory, the KLP vault and
    /// audit log, secret files) from `directory`, the configuration file's, instead of the current one.
    pub fn resolve_paths(&mut self, directory: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = directory.join(&*path);
            }
        };
        let resolve_secret = |secret: &mut SecretRef| {
            if let SecretRef::File(path) = secret {
                resolve(path);
            }
        };
        for provider in self.providers.values_mut() {
            provider.api_key.iter_mut().for_each(resolve_secret);
        }
        if let Some(memory) = &mut self.memory {
            memory.path.iter_mut().for_each(resolve);
            memory.url.iter_mut().for_each(resolve_secret);
        }
        if let Some(klp) = &mut self.klp {
            resolve(&mut klp.vault);
            resolve_secret(&mut klp.vault_passphrase);
            klp.audit_log.iter_mut().for_each(resolve);
        }
    }
}

/// The most retries a provider may be configured with.
const MAX_RETRIES: u32 = 10;

impl AgentsConfig {
    /// The run limits of this configuration on `builder`: deadline, step and tool timeouts, steps.
    pub fn apply(&self, builder: AgentBuilder) -> AgentBuilder {
        let mut builder = builder.max_steps(self.max_steps);
        if let Some(timeout) = self.timeout_ms {
            builder = builder.deadline(Duration::from_millis(timeout));
        }
        if let Some(timeout) = self.step_timeout_ms {
            builder = builder.step_timeout(Duration::from_millis(timeout));
        }
        if let Some(timeout) = self.tool_timeout_ms {
            builder = builder.tool_timeout(Duration::from_millis(timeout));
        }
        builder
    }
}

impl AgentDefinition {
    /// `builder` made into this agent: the limits of `agents`, then its own instructions, settings and,
    /// of `tools`, the ones it names (each must be there, or [`Error::Config`]).
    pub fn apply(&self, builder: AgentBuilder, agents: &AgentsConfig, tools: &ToolSet) -> Result<AgentBuilder, Error> {
        let mut builder = agents
            .apply(builder)
            .tools(&tools.subset(self.tools.iter().map(String::as_str))?);
        if let Some(instructions) = &self.instructions {
            builder = builder.instructions(instructions.clone());
        }
        if let Some(steps) = self.max_steps {
            builder = builder.max_steps(steps);
        }
        if let Some(timeout) = self.timeout_ms {
            builder = builder.deadline(Duration::from_millis(timeout));
        }
        if let Some(temperature) = self.temperature {
            builder = builder.temperature(temperature);
        }
        if let Some(max_tokens) = self.max_tokens {
            builder = builder.max_tokens(max_tokens);
        }
        Ok(builder)
    }
}
