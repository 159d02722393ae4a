//! Configuration: [`KaiConfig`] (agents, providers, memory, KLP, monitoring) from YAML, JSON or TOML,
//! with `KAI_*` environment overrides, checked with errors that name the path
//! (`agents.timeout_ms: invalid type: string "soon", expected u64`), secrets referenced
//! ([`SecretRef`]) and never written in it, and hot reload ([`ConfigWatcher`]).
//!
//! Agents are built from it with [`AgentDefinition::apply`] (and, with their models, by
//! `kai_providers::agent_from_config`); providers by `kai_providers::model_from_config`; the memory
//! store by `kai_memory::store_from_config`.

mod load;
mod model;
mod secret;
#[cfg(not(target_arch = "wasm32"))]
mod watch;

pub use load::{ConfigFormat, ENV_PREFIX, MAX_CONFIG_BYTES};
pub use model::{
    AgentDefinition, AgentsConfig, EmbeddingConfig, KaiConfig, KlpConfig, LogFormat, MemoryConfig, MetricName,
    MonitoringConfig, ProviderConfig, RateLimitConfig, StoreKind,
};
pub use secret::{Secret, SecretRef};
#[cfg(not(target_arch = "wasm32"))]
pub use watch::{ConfigEvent, ConfigWatcher, DEBOUNCE};
