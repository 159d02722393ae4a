//! Reading a configuration: a YAML, JSON or TOML file, `KAI_*` environment overrides, then the checks.

use std::path::Path;

use serde::Deserialize as _;

use crate::config::model::KaiConfig;
use crate::error::Error;
use crate::fs::read_limited_following;

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
        ConfigFormat::of_path(path)?;
        Self::from_file_bytes(path, &read_config(path)?, env)
    }

    /// The configuration in `bytes`, read from `path` (whose extension gives the format), with `env`;
    /// relative paths in it are taken from the file's directory.
    pub(crate) fn from_file_bytes(
        path: &Path,
        bytes: &[u8],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let format = ConfigFormat::of_path(path)?;
        let text = std::str::from_utf8(bytes).map_err(|_| Error::Config {
            message: format!("the configuration {} is not UTF-8", path.display()),
        })?;
        let mut config = Self::parse(text, format, env).map_err(|error| match error {
            Error::InvalidConfig { path: field, message } => Error::InvalidConfig {
                path: field,
                message: format!("{message} (in {})", path.display()),
            },
            error => error,
        })?;
        if let Some(directory) = path.parent() {
            config.resolve_paths(directory);
        }
        Ok(config)
    }

    /// Parses a configuration's text, applies the `KAI_*` variables among `env`, and checks the result.
    ///
    /// A variable `KAI_AGENTS__TIMEOUT_MS=5000` sets `agents.timeout_ms`: after the prefix, `__`
    /// separates the path's parts. Variables whose first part is not a section (`agents`, `providers`,
    /// `memory`, `klp`, `monitoring`) are other programs' and left alone; one naming no field of its
    /// section is an error (a typo is not ignored). Parts match names case-insensitively, so
    /// `KAI_PROVIDERS__OPENAI__MODEL` reaches a provider named `OpenAI`. A value is read as JSON when it
    /// is JSON (`5000`, `true`, `["a"]`) and the field it replaces is not a string; otherwise as a
    /// string (`KAI_PROVIDERS__LOCAL__MODEL=qwen2.5`). Quote it (`'"123"'`) to force a string.
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
            let parts: Vec<&str> = rest.split("__").collect();
            // Other programs' KAI_ variables (a cache directory, say) name no section.
            if parts.len() < 2 || !SECTIONS.iter().any(|section| section.eq_ignore_ascii_case(parts[0])) {
                continue;
            }
            if parts.iter().any(|part| part.is_empty()) {
                return Err(Error::InvalidConfig {
                    path: name.clone(),
                    message: "an override names a path such as KAI_AGENTS__TIMEOUT_MS".into(),
                });
            }
            let path = set(&mut tree, &parts, &value).map_err(|message| Error::InvalidConfig {
                path: parts.join(".").to_ascii_lowercase(),
                message: format!("{message} (set by {name})"),
            })?;
            overrides.push((path, name));
        }
        // Which variable, if any, set the value at (or above, or below) `path`.
        let set_by = |path: &str| {
            overrides
                .iter()
                .find(|(overridden, _)| related(path, overridden))
                .map(|(_, name)| format!(" (set by {name})"))
                .unwrap_or_default()
        };
        let config: KaiConfig = serde_path_to_error::deserialize(&tree).map_err(|error| {
            let path = error.path().to_string();
            Error::InvalidConfig {
                message: format!("{}{}", error.inner(), set_by(&path)),
                path,
            }
        })?;
        config.validate().map_err(|error| match error {
            Error::InvalidConfig { path, message } => Error::InvalidConfig {
                message: format!("{message}{}", set_by(&path)),
                path,
            },
            error => error,
        })?;
        Ok(config)
    }
}

/// Whether one path is the other or contains it (`providers.a` and `providers.a.kind`).
fn related(one: &str, other: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner == outer || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'.'))
    };
    within(one, other) || within(other, one)
}

/// The bytes of the configuration file at `path` (a link is followed), at most [`MAX_CONFIG_BYTES`].
pub(crate) fn read_config(path: &Path) -> Result<Vec<u8>, Error> {
    read_limited_following(path, MAX_CONFIG_BYTES).map_err(|error| Error::Config {
        message: format!("the configuration {} cannot be read: {error}", path.display()),
    })
}

/// The text as a JSON tree, whatever its format; a section left empty (`monitoring:` with every line
/// under it commented out) is an empty section.
fn parse_tree(text: &str, format: ConfigFormat) -> Result<serde_json::Value, Error> {
    let syntax = |message: String| Error::InvalidConfig {
        path: String::new(),
        message,
    };
    let tree = match format {
        ConfigFormat::Json => {
            serde_json::from_str::<StrictJson>(text)
                .map_err(|error| syntax(error.to_string()))?
                .0
        }
        ConfigFormat::Toml => {
            // Not the error's Display: it quotes the offending line, which may hold something private.
            let table: toml::Table = toml::from_str(text).map_err(|error| {
                let at = error
                    .span()
                    .map(|span| line_and_column(text, span.start))
                    .unwrap_or_default();
                syntax(format!("{}{at}", error.message().trim_end()))
            })?;
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
    let mut tree = match tree {
        // An empty document is an empty configuration.
        serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
        tree => tree,
    };
    if let Some(sections) = tree.as_object_mut() {
        for value in sections.values_mut().filter(|value| value.is_null()) {
            *value = serde_json::Value::Object(serde_json::Map::new());
        }
    }
    Ok(tree)
}

/// ` at line L, column C` of the byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> String {
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    format!(" at line {line}, column {column}")
}

/// Sets the path `parts` of `tree` to `value`, making sections on the way; a part matches an existing
/// name case-insensitively, and is lowercased when it makes a new one. Returns the path set.
fn set(tree: &mut serde_json::Value, parts: &[&str], value: &str) -> Result<String, String> {
    let (last, parents) = parts.split_last().ok_or("the path is empty")?;
    let mut node = tree;
    let mut path = Vec::with_capacity(parts.len());
    for part in parents {
        let object = node.as_object_mut().ok_or("a part of the path is not a section")?;
        let key = existing_key(object, part);
        path.push(key.clone());
        node = object
            .entry(key)
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
    let object = node.as_object_mut().ok_or("a part of the path is not a section")?;
    let key = existing_key(object, last);
    path.push(key.clone());
    let replaces_string = object.get(&key).is_some_and(serde_json::Value::is_string);
    let parsed = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(json) if !replaces_string || json.is_string() => json,
        _ => serde_json::Value::String(value.to_owned()),
    };
    object.insert(key, parsed);
    Ok(path.join("."))
}

/// The name in `object` that `part` means: an existing one equal but for case, or `part` lowercased.
fn existing_key(object: &serde_json::Map<String, serde_json::Value>, part: &str) -> String {
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(part))
        .cloned()
        .unwrap_or_else(|| part.to_ascii_lowercase())
}

/// A JSON document as a tree, refusing an object that names a key twice (serde_json keeps the last).
struct StrictJson(serde_json::Value);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictJsonVisitor).map(StrictJson)
    }
}

struct StrictJsonVisitor;

impl<'de> serde::de::Visitor<'de> for StrictJsonVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}
