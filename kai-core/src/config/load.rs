//! Reading a configuration: a YAML, JSON or TOML file, `KAI_*` environment overrides, then the checks.

use std::path::Path;

use serde::Deserialize as _;

use crate::config::model::KaiConfig;
use crate::error::Error;
use crate::fs::read_limited;

/// The format of a configuration's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// YAML 1.2.
    Yaml,
    /// JSON.
    Json,
    /// TOML 1.0.
    Toml,
}

impl ConfigFormat {
    /// The format a file's extension says (`.yaml`/`.yml`, `.json`, `.toml`).
    pub fn of_path(path: &Path) -> Result<Self, Error> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("yaml" | "yml") => Ok(ConfigFormat::Yaml),
            Some("json") => Ok(ConfigFormat::Json),
            Some("toml") => Ok(ConfigFormat::Toml),
            _ => Err(Error::Config {
                message: format!("{} is not a .yaml, .yml, .json or .toml file", path.display()),
            }),
        }
    }
}

/// The process's `KAI_*` environment variables (those that are UTF-8), sorted by name.
pub(crate) fn kai_variables() -> Vec<(String, String)> {
    let mut variables: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    variables.sort();
    variables
}

/// The sections of a configuration, which overrides must start with.
const SECTIONS: &[&str] = &["agents", "providers", "memory", "klp", "monitoring"];

/// The prefix of environment variables that override the configuration.
pub const ENV_PREFIX: &str = "KAI_";

/// The largest configuration file read (1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl KaiConfig {
    /// Reads the configuration at `path` (its format from its extension), applies the `KAI_*`
    /// variables of this process's environment, and checks the result.
    ///
    /// Errors: an unreadable or oversized file is [`Error::Config`]; text that does not parse, a field
    /// of the wrong type, an unknown field or a failed check is [`Error::InvalidConfig`] naming the
    /// path (`agents.timeout_ms`), the file, and the variable that set it if one did.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::load_with_env(path, kai_variables())
    }

    /// [`load`](Self::load) with these environment variables instead of the process's.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        Self::from_file_bytes(path, &read_config(path)?, env)
    }

    /// The configuration in `bytes`, read from `path` (whose extension gives the format), with `env`.
    pub(crate) fn from_file_bytes(
        path: &Path,
        bytes: &[u8],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let format = ConfigFormat::of_path(path)?;
        let text = std::str::from_utf8(bytes).map_err(|_| Error::Config {
            message: format!("the configuration {} is not UTF-8", path.display()),
        })?;
        Self::parse(text, format, env).map_err(|error| match error {
            Error::InvalidConfig { path: field, message } => Error::InvalidConfig {
                path: field,
                message: format!("{message} (in {})", path.display()),
            },
            error => error,
        })
    }

    /// Parses a configuration's text, applies the `KAI_*` variables among `env`, and checks the result.
    ///
    /// A variable `KAI_AGENTS__TIMEOUT_MS=5000` sets `agents.timeout_ms`: after the prefix, `__`
    /// separates the path's parts, lowercased. Only variables naming a field of a section (`agents`,
    /// `providers`, `memory`, `klp`, `monitoring`) are overrides; other `KAI_` variables are left alone. Its value is read as JSON when it is JSON (`5000`,
    /// `true`, `["a"]`) and the field it replaces is not a string; otherwise as a string
    /// (`KAI_PROVIDERS__LOCAL__MODEL=qwen2.5`). Quote it (`'"123"'`) to force a string.
    ///
    /// ```
    /// use kai_core::config::{ConfigFormat, KaiConfig};
    ///
    /// let yaml = "agents:\n  timeout_ms: 1000\nproviders:\n  local: {kind: llamacpp, model: qwen}\n";
    /// let env = [("KAI_AGENTS__TIMEOUT_MS".to_owned(), "5000".to_owned())];
    /// let config = KaiConfig::parse(yaml, ConfigFormat::Yaml, env).unwrap();
    /// assert_eq!(config.agents.timeout_ms, Some(5000));
    ///
    /// let wrong = KaiConfig::parse("agents:\n  timeout_ms: soon\n", ConfigFormat::Yaml, []).unwrap_err();
    /// assert!(wrong.to_string().starts_with("agents.timeout_ms: invalid type: string \"soon\""), "{wrong}");
    /// ```
    pub fn parse(
        text: &str,
        format: ConfigFormat,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let mut tree = parse_tree(text, format)?;
        let mut overrides = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            // Other programs' KAI_ variables (a cache directory, say) name no section's field.
            if parts.len() < 2 || !SECTIONS.contains(&parts[0].as_str()) {
                continue;
            }
            if parts.iter().any(String::is_empty) {
                return Err(Error::InvalidConfig {
                    path: name.clone(),
                    message: "an override names a path such as KAI_AGENTS__TIMEOUT_MS".into(),
                });
            }
            set(&mut tree, &parts, &value).map_err(|message| Error::InvalidConfig {
                path: parts.join("."),
                message: format!("{message} (set by {name})"),
            })?;
            overrides.push((parts.join("."), name));
        }
        let config = serde_path_to_error::deserialize(&tree).map_err(|error| {
            let path = error.path().to_string();
            let set_by = overrides
                .iter()
                .find(|(overridden, _)| path == *overridden || path.starts_with(&format!("{overridden}.")))
                .map(|(_, name)| format!(" (set by {name})"))
                .unwrap_or_default();
            Error::InvalidConfig {
                message: format!("{}{set_by}", error.inner()),
                path,
            }
        })?;
        KaiConfig::validate(&config)?;
        Ok(config)
    }
}

/// The bytes of the configuration file at `path`, at most [`MAX_CONFIG_BYTES`].
pub(crate) fn read_config(path: &Path) -> Result<Vec<u8>, Error> {
    read_limited(path, MAX_CONFIG_BYTES).map_err(|error| Error::Config {
        message: format!("the configuration {} cannot be read: {error}", path.display()),
    })
}

/// The text as a JSON tree, whatever its format.
fn parse_tree(text: &str, format: ConfigFormat) -> Result<serde_json::Value, Error> {
    let syntax = |message: String| Error::InvalidConfig {
        path: String::new(),
        message,
    };
    let tree = match format {
        ConfigFormat::Json => serde_json::from_str(text).map_err(|error| syntax(error.to_string()))?,
        ConfigFormat::Toml => {
            let table: toml::Table = toml::from_str(text).map_err(|error| syntax(error.to_string()))?;
            serde_json::Value::deserialize(toml::Value::Table(table)).map_err(|error| syntax(error.to_string()))?
        }
        ConfigFormat::Yaml => {
            // Budgets (aliases, depth, nodes) bound what a document can expand to; duplicate keys are
            // errors. YAML 1.2 booleans only (`model: n` is the string "n", not false), and errors
            // without a snippet of the file, which could show a line holding something private.
            let mut options = serde_saphyr::Options::default();
            options.strict_booleans = true;
            options.with_snippet = false;
            serde_saphyr::from_str_with_options(text, options).map_err(|error| syntax(error.to_string()))?
        }
    };
    match tree {
        // An empty document is an empty configuration.
        serde_json::Value::Null => Ok(serde_json::Value::Object(serde_json::Map::new())),
        tree => Ok(tree),
    }
}

/// Sets `parts` (a path into objects) of `tree` to `value`, making objects on the way.
fn set(tree: &mut serde_json::Value, parts: &[String], value: &str) -> Result<(), String> {
    let (last, parents) = parts.split_last().ok_or("the path is empty")?;
    let mut node = tree;
    for part in parents {
        let object = node.as_object_mut().ok_or("a part of the path is not a section")?;
        node = object
            .entry(part.clone())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
    let object = node.as_object_mut().ok_or("a part of the path is not a section")?;
    let replaces_string = object.get(last).is_some_and(serde_json::Value::is_string);
    let parsed = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(json) if !replaces_string || json.is_string() => json,
        _ => serde_json::Value::String(value.to_owned()),
    };
    object.insert(last.clone(), parsed);
    Ok(())
}
