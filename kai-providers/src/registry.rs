//! Choosing a provider and model from a string or from configuration.

use std::sync::Arc;

use kai_core::{ChatModel, EmbeddingModel, Error};
use serde::{Deserialize, Serialize};

use crate::anthropic::{AnthropicClient, AnthropicConfig};
use crate::cohere::{CohereClient, CohereConfig};
use crate::gemini::{GeminiClient, GeminiConfig};
use crate::http::{ApiKey, HttpConfig};
use crate::ollama::{OllamaClient, OllamaConfig};
use crate::openai::{Flavor, OpenAiClient, OpenAiConfig};

/// Which provider and model to use, as configuration files and environment variables describe it.
///
/// ```
/// let spec: kai_providers::ModelSpec = "vllm:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1".parse().unwrap();
/// assert_eq!(spec.provider, "vllm");
/// assert_eq!(spec.model, "Qwen/Qwen2.5-7B-Instruct");
/// assert_eq!(spec.base_url.as_deref(), Some("http://127.0.0.1:8000/v1"));
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// One of [`PROVIDERS`].
    pub provider: String,
    /// The model's name at that provider.
    pub model: String,
    /// Overrides the provider's base URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The API key; when absent it comes from the provider's usual environment variable. Never
    /// serialized, and `Debug` shows it as `***`.
    #[serde(default, skip_serializing)]
    pub api_key: Option<ApiKey>,
}

impl std::fmt::Debug for ModelSpec {
    /// Shows no credential: the key as `***`, and a password in the base URL as `***` too.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSpec")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url.as_deref().map(without_password))
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// `url` with its credentials replaced by `***`: the whole user info (`https://user:password@host`, or
/// a token as the user name) and the values of query parameters that name a key, token, secret,
/// password or signature.
fn without_password(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    let redacted = format!("{scheme}://{authority}{tail}");
    if redacted == url { url.into() } else { redacted.into() }
}

/// Whether a query parameter's name says its value is a credential.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "token", "secret", "password", "sig"]
        .iter()
        .any(|word| name.contains(word))
}

impl ModelSpec {
    /// This spec with an API key given in code (instead of the provider's environment variable).
    ///
    /// ```
    /// let spec: kai_providers::ModelSpec = "openai:gpt-4o-mini".parse().unwrap();
    /// let spec = spec.with_api_key("sk-from-a-secret-store");
    /// assert!(!format!("{spec:?}").contains("sk-from"));
    /// let model = kai_providers::model_from_spec(&spec, Default::default()).unwrap();
    /// assert_eq!(model.name(), "gpt-4o-mini");
    /// ```
    pub fn with_api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.api_key = Some(key.into());
        self
    }
}

impl std::str::FromStr for ModelSpec {
    type Err = Error;

    /// Parses `provider:model`, optionally followed by `@base-url`.
    fn from_str(text: &str) -> Result<Self, Error> {
        let (provider, rest) = text.split_once(':').ok_or_else(|| Error::Config {
            message: format!("{text:?} is not of the form provider:model"),
        })?;
        // The URL starts at the first `@http://` or `@https://`: a URL may itself hold an `@`.
        let at = ["@http://", "@https://"]
            .iter()
            .filter_map(|marker| rest.find(marker))
            .min();
        let (model, base_url) = match at {
            Some(at) => (&rest[..at], Some(rest[at + 1..].to_owned())),
            None => (rest, None),
        };
        if provider.is_empty() || model.is_empty() {
            return Err(Error::Config {
                message: format!("{text:?} is not of the form provider:model"),
            });
        }
        Ok(Self {
            provider: provider.to_ascii_lowercase(),
            model: model.to_owned(),
            base_url,
            api_key: None,
        })
    }
}

/// The providers [`model_from_str`] knows (`claude`, `google` and `llama.cpp` are accepted as other
/// names of `anthropic`, `gemini` and `llamacpp`).
pub const PROVIDERS: &[&str] = &[
    "openai",
    "openai-compatible",
    "anthropic",
    "gemini",
    "cohere",
    "ollama",
    "ollama-openai",
    "llamacpp",
    "vllm",
    "lmstudio",
    "tgi",
];

/// A chat model from a string such as `openai:gpt-4o-mini` or `ollama:llama3.2`.
///
/// Keys and addresses come from the usual environment variables: `OPENAI_API_KEY` (and
/// `OPENAI_BASE_URL`), `ANTHROPIC_API_KEY`, `GEMINI_API_KEY` (or `GOOGLE_API_KEY`), `COHERE_API_KEY`,
/// and `OLLAMA_HOST` (default `127.0.0.1:11434`; `ollama` uses Ollama's native API). Other local servers
/// default to their usual ports: llama.cpp 8080, vLLM 8000, LM Studio 1234, TGI 8080.
///
/// A key from the environment goes only to the provider's own address (for `openai-compatible`, the
/// one `OPENAI_BASE_URL` names): a spec with `@url` of its own needs its key given with it
/// ([`ModelSpec::with_api_key`]), so a spec from a configuration file cannot send the key elsewhere.
pub fn model_from_str(text: &str) -> Result<Arc<dyn ChatModel>, Error> {
    model_from_spec(&text.parse()?, HttpConfig::default())
}

/// A chat model from a [`ModelSpec`], with these HTTP settings.
pub fn model_from_spec(spec: &ModelSpec, http: HttpConfig) -> Result<Arc<dyn ChatModel>, Error> {
    Ok(match Client::from_spec(spec, http)? {
        Client::OpenAi(client) => Arc::new(client.chat(&spec.model)),
        Client::Anthropic(client) => Arc::new(client.chat(&spec.model)),
        Client::Gemini(client) => Arc::new(client.chat(&spec.model)),
        Client::Cohere(client) => Arc::new(client.chat(&spec.model)),
        Client::Ollama(client) => Arc::new(client.chat(&spec.model)),
    })
}

/// An embedding model from a string such as `openai:text-embedding-3-small` or `ollama:nomic-embed-text`,
/// producing vectors of `dimensions`; keys and addresses as for [`model_from_str`].
///
/// ```
/// let model = kai_providers::embedding_model_from_str("ollama:nomic-embed-text", 768).unwrap();
/// assert_eq!(model.dimensions(), 768);
/// ```
pub fn embedding_model_from_str(text: &str, dimensions: usize) -> Result<Arc<dyn EmbeddingModel>, Error> {
    embedding_model_from_spec(&text.parse()?, dimensions, HttpConfig::default())
}

/// An embedding model from a [`ModelSpec`], producing vectors of `dimensions`, with these HTTP settings.
/// Anthropic has no embedding API: asking for one is [`Error::Unsupported`].
pub fn embedding_model_from_spec(
    spec: &ModelSpec,
    dimensions: usize,
    http: HttpConfig,
) -> Result<Arc<dyn EmbeddingModel>, Error> {
    Ok(match Client::from_spec(spec, http)? {
        Client::OpenAi(client) => Arc::new(client.embeddings(&spec.model, dimensions)),
        Client::Gemini(client) => Arc::new(client.embeddings(&spec.model, dimensions)),
        Client::Cohere(client) => Arc::new(client.embeddings(&spec.model, dimensions)),
        Client::Ollama(client) => Arc::new(client.embeddings(&spec.model, dimensions)),
        Client::Anthropic(_) => {
            return Err(Error::Unsupported {
                message: "Anthropic has no embedding API".into(),
            });
        }
    })
}

/// A provider's client, made from a spec; chat and embedding models come from it.
enum Client {
    OpenAi(OpenAiClient),
    Anthropic(AnthropicClient),
    Gemini(GeminiClient),
    Cohere(CohereClient),
    Ollama(OllamaClient),
}

impl Client {
    fn from_spec(spec: &ModelSpec, http: HttpConfig) -> Result<Self, Error> {
        let key = spec.api_key.clone();
        let base = spec.base_url.clone();
        let local = |default: &str, flavor: Flavor| {
            let mut config = OpenAiConfig::compatible(base.clone().unwrap_or_else(|| default.to_owned()), flavor);
            config.api_key = key.clone();
            config
        };
        // A key from the environment goes only to the provider's own address: a spec, which may come
        // from a configuration file, cannot send it to another one. A spec naming an address brings
        // its own key.
        let foreign_address = || Error::Config {
            message: format!(
                "{}:{} names its own address, so it needs its own API key (ModelSpec::with_api_key); \
                 keys from the environment go only to the provider's address",
                spec.provider, spec.model
            ),
        };
        // A hosted API: the spec's key or the provider's environment variable, and the spec's base URL.
        macro_rules! hosted {
            ($config:ident, $client:ident, $variant:ident) => {{
                let mut config = match key {
                    Some(key) => $config::new(key),
                    None if base.is_some() => return Err(foreign_address()),
                    None => $config::from_env()?,
                };
                if let Some(base) = base {
                    config.base_url = base;
                }
                return Ok(Client::$variant($client::new(config.with_http(http))?));
            }};
        }
        let openai = match spec.provider.as_str() {
            "anthropic" | "claude" => hosted!(AnthropicConfig, AnthropicClient, Anthropic),
            "gemini" | "google" => hosted!(GeminiConfig, GeminiClient, Gemini),
            "cohere" => hosted!(CohereConfig, CohereClient, Cohere),
            "ollama" => {
                let config = OllamaConfig::new(base.unwrap_or_else(ollama_host));
                return Ok(Client::Ollama(OllamaClient::new(config.with_http(http))?));
            }
            "openai" => {
                let mut config = match key {
                    Some(key) => OpenAiConfig::openai(key),
                    None if base.is_some() => return Err(foreign_address()),
                    None => OpenAiConfig::from_env()?,
                };
                if let Some(base) = base {
                    config.base_url = base;
                }
                config
            }
            "openai-compatible" => {
                // `OPENAI_API_KEY` goes with `OPENAI_BASE_URL`; a server the spec names gets the spec's
                // key or none.
                let (base, key) = match base {
                    Some(base) => (base, key),
                    None => {
                        let base = std::env::var("OPENAI_BASE_URL").map_err(|_| Error::Config {
                            message: "openai-compatible needs a base URL (provider:model@url, or OPENAI_BASE_URL)"
                                .into(),
                        })?;
                        (base, key.or_else(|| ApiKey::from_env("OPENAI_API_KEY")))
                    }
                };
                let mut config = OpenAiConfig::compatible(base, Flavor::Generic);
                config.api_key = key;
                config
            }
            "llamacpp" | "llama.cpp" => local("http://127.0.0.1:8080/v1", Flavor::LlamaCpp),
            "vllm" => local("http://127.0.0.1:8000/v1", Flavor::Vllm),
            "lmstudio" => local("http://127.0.0.1:1234/v1", Flavor::LmStudio),
            "tgi" => local("http://127.0.0.1:8080/v1", Flavor::Tgi),
            "ollama-openai" => {
                let default = format!("{}/v1", ollama_host());
                local(&default, Flavor::Ollama)
            }
            other => {
                return Err(Error::Config {
                    message: format!("unknown provider {other:?}; known: {}", PROVIDERS.join(", ")),
                });
            }
        };
        Ok(Client::OpenAi(OpenAiClient::new(openai.with_http(http))?))
    }
}

/// Ollama's base URL from `OLLAMA_HOST`, which may omit the scheme and the port.
pub(crate) fn ollama_host() -> String {
    let host = std::env::var("OLLAMA_HOST").unwrap_or_default();
    normalize_ollama_host(&host)
}

fn normalize_ollama_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if host.is_empty() {
        return "http://127.0.0.1:11434".into();
    }
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", host),
    };
    let rest = if rest.starts_with("0.0.0.0") {
        rest.replacen("0.0.0.0", "127.0.0.1", 1)
    } else {
        rest.to_owned()
    };
    // Like Ollama's own clients: the default port is filled in only when the scheme is missing too;
    // `http://host` means port 80.
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
    if has_port || host.contains("://") {
        format!("{scheme}://{rest}")
    } else {
        format!("{scheme}://{rest}:11434")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let spec: ModelSpec = "openai:gpt-4o-mini".parse().unwrap();
        assert_eq!(
            (spec.provider.as_str(), spec.model.as_str(), spec.base_url),
            ("openai", "gpt-4o-mini", None)
        );
        let spec: ModelSpec = "ollama:llama3.2:1b".parse().unwrap();
        assert_eq!(spec.model, "llama3.2:1b");
        let spec: ModelSpec = "tgi:org/model@http://h:1/v1".parse().unwrap();
        assert_eq!(spec.base_url.as_deref(), Some("http://h:1/v1"));
        let spec: ModelSpec = "vllm:m@https://user:token@h/v1".parse().unwrap();
        assert_eq!(
            (spec.model.as_str(), spec.base_url.as_deref()),
            ("m", Some("https://user:token@h/v1"))
        );
        assert!("nocolon".parse::<ModelSpec>().is_err());
        assert!(":model".parse::<ModelSpec>().is_err());
    }

    #[test]
    fn unknown_providers_are_config_errors_that_name_every_known_one() {
        let Err(error) = model_from_str("nope:model") else {
            panic!("accepted")
        };
        let Error::Config { message } = error else {
            panic!("{error:?}")
        };
        for provider in ["anthropic", "gemini", "cohere", "ollama", "openai"] {
            assert!(message.contains(provider), "{message}");
        }
    }

    #[test]
    fn every_listed_provider_is_accepted() {
        for provider in PROVIDERS {
            let spec: ModelSpec = format!("{provider}:m@http://127.0.0.1:9/v1").parse().unwrap();
            let model = model_from_spec(&spec.with_api_key("k"), HttpConfig::default());
            assert!(model.is_ok(), "{provider}: {:?}", model.err());
        }
    }

    #[test]
    fn embedding_models_come_from_specs_too() {
        for text in [
            "openai:text-embedding-3-small",
            "gemini:text-embedding-004",
            "cohere:embed-v4.0",
            "ollama:nomic-embed-text",
            "vllm:bge@http://127.0.0.1:9/v1",
        ] {
            let spec: ModelSpec = text.parse().unwrap();
            let model = embedding_model_from_spec(&spec.with_api_key("k"), 256, HttpConfig::default()).unwrap();
            assert_eq!(model.dimensions(), 256, "{text}");
            assert_eq!(model.name(), text.split_once(':').unwrap().1.split('@').next().unwrap());
        }
        let spec: ModelSpec = "anthropic:claude-sonnet-4-5".parse().unwrap();
        let error = embedding_model_from_spec(&spec.with_api_key("k"), 256, HttpConfig::default())
            .err()
            .unwrap();
        assert!(matches!(error, Error::Unsupported { .. }));
    }

    #[test]
    fn a_spec_never_shows_or_writes_its_key() {
        let spec: ModelSpec =
            serde_json::from_str(r#"{"provider": "openai", "model": "m", "api_key": "sk-secret"}"#).unwrap();
        assert_eq!(spec.api_key, Some(ApiKey::new("sk-secret")));
        assert!(!format!("{spec:?}").contains("sk-secret"));
        assert!(!serde_json::to_string(&spec).unwrap().contains("sk-secret"));
    }

    #[test]
    fn a_password_in_the_base_url_is_not_shown() {
        let spec: ModelSpec = "vllm:m@https://user:hunter2@h:8000/v1?x=1".parse().unwrap();
        let shown = format!("{spec:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("https://***@h:8000/v1?x=1"), "{shown}");
        assert_eq!(
            without_password("https://sk-abc@h/v1"),
            "https://***@h/v1",
            "a token as the user name"
        );
        assert_eq!(
            without_password("https://h/v1?api_key=sk-1&model=m#top"),
            "https://h/v1?api_key=***&model=m#top"
        );
        assert_eq!(
            without_password("http://h/v1@x"),
            "http://h/v1@x",
            "an @ in the path is not user info"
        );
    }

    /// A spec string may come from a configuration file an attacker wrote: naming an address must not
    /// send the user's environment key there.
    #[test]
    fn a_spec_naming_its_own_address_does_not_get_the_environment_key() {
        for provider in ["openai", "anthropic", "gemini", "cohere"] {
            let Err(error) = model_from_str(&format!("{provider}:m@https://collector.invalid/v1")) else {
                panic!("{provider}: accepted without a key of its own")
            };
            assert!(
                matches!(&error, Error::Config { message } if message.contains("with_api_key")),
                "{provider}: {error:?}"
            );
        }
    }

    #[test]
    fn local_servers_need_no_key() {
        let model = model_from_str("llamacpp:smollm2@http://127.0.0.1:9/v1").unwrap();
        assert_eq!(model.name(), "smollm2");
        assert_eq!(model.provider(), "llama.cpp");
    }

    #[test]
    fn ollama_host_forms() {
        assert_eq!(normalize_ollama_host(""), "http://127.0.0.1:11434");
        assert_eq!(normalize_ollama_host("0.0.0.0"), "http://127.0.0.1:11434");
        assert_eq!(normalize_ollama_host("example.com:8000"), "http://example.com:8000");
        assert_eq!(normalize_ollama_host("https://example.com/"), "https://example.com");
        assert_eq!(normalize_ollama_host("example.com"), "http://example.com:11434");
        assert_eq!(normalize_ollama_host("http://[::1]:1234"), "http://[::1]:1234");
    }
}
