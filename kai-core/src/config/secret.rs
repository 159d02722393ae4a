//! Secrets in configuration: referenced (an environment variable, a file), never written in it.

use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Error;
use crate::fs::read_limited_following;

/// Where a secret (an API key, a database URL with its password) is: the configuration names the place,
/// never the secret. Written `{env: OPENAI_API_KEY}` or `{file: /run/secrets/openai}`.
///
/// A secret written in the configuration itself (a string where a reference belongs) is refused, and
/// the error does not repeat it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// An environment variable holding the secret.
    Env(String),
    /// A file holding the secret (a trailing newline is dropped); at most 64 KiB.
    File(PathBuf),
}

/// A secret's value. `Debug` shows `***`; read it with [`expose`](Self::expose).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl SecretRef {
    /// The largest secret file read.
    pub const MAX_FILE_BYTES: u64 = 64 * 1024;

    /// Reads the secret. An unset or empty variable, or a file that cannot be read, is
    /// [`Error::Config`] naming the variable or file (never the value).
    pub fn resolve(&self) -> Result<Secret, Error> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| Error::Config {
                message: format!("the environment variable {name} holding a secret is not set (or not UTF-8)"),
            })?,
            SecretRef::File(path) => {
                let bytes = read_limited_following(path, Self::MAX_FILE_BYTES).map_err(|error| Error::Config {
                    message: format!("the secret file {} cannot be read: {error}", path.display()),
                })?;
                String::from_utf8(bytes).map_err(|_| Error::Config {
                    message: format!("the secret file {} is not UTF-8", path.display()),
                })?
            }
        };
        let value = value.trim_end_matches(['\r', '\n']).to_owned();
        if value.is_empty() {
            return Err(Error::Config {
                message: format!("the secret in {self} is empty"),
            });
        }
        Ok(Secret(value))
    }
}

impl std::fmt::Display for SecretRef {
    /// Where the secret is, as a person would say it: `$OPENAI_API_KEY`, `/run/secrets/key`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "${name}"),
            SecretRef::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretRefVisitor)
    }
}

struct SecretRefVisitor;

const REFERENCE_ONLY: &str =
    "secrets are referenced, not written in the configuration: use {env: VARIABLE} or {file: PATH}";

impl<'de> Visitor<'de> for SecretRefVisitor {
    type Value = SecretRef;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("{env: VARIABLE} or {file: PATH}")
    }

    // Every scalar is refused without repeating it: it may be the secret itself.
    fn visit_str<E: de::Error>(self, _value: &str) -> Result<SecretRef, E> {
        Err(E::custom(REFERENCE_ONLY))
    }

    fn visit_i64<E: de::Error>(self, _value: i64) -> Result<SecretRef, E> {
        Err(E::custom(REFERENCE_ONLY))
    }

    fn visit_u64<E: de::Error>(self, _value: u64) -> Result<SecretRef, E> {
        Err(E::custom(REFERENCE_ONLY))
    }

    fn visit_f64<E: de::Error>(self, _value: f64) -> Result<SecretRef, E> {
        Err(E::custom(REFERENCE_ONLY))
    }

    fn visit_bool<E: de::Error>(self, _value: bool) -> Result<SecretRef, E> {
        Err(E::custom(REFERENCE_ONLY))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
        let mut reference = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "env" && key != "file" {
                // Not read as a string: an error about its type would repeat it.
                map.next_value::<de::IgnoredAny>()?;
                return Err(de::Error::custom(REFERENCE_ONLY));
            }
            let value: String = map
                .next_value()
                .map_err(|_: A::Error| de::Error::custom(format!("`{key}` must be a string")))?;
            if reference.is_some() {
                return Err(de::Error::custom("a secret reference names one place: env or file"));
            }
            reference = Some(match key.as_str() {
                "env" if is_variable_name(&value) => SecretRef::Env(value),
                "env" => {
                    return Err(de::Error::custom(
                        "`env` must name a variable (letters, digits and '_', not starting with a digit)",
                    ));
                }
                _ if !value.is_empty() => SecretRef::File(PathBuf::from(value)),
                _ => return Err(de::Error::custom("`file` is empty")),
            });
        }
        reference.ok_or_else(|| de::Error::custom(REFERENCE_ONLY))
    }
}

/// Whether `name` can be an environment variable's name (and so is not a secret written in its place).
fn is_variable_name(name: &str) -> bool {
    name.len() <= 256
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_written_secrets_are_refused_without_being_repeated() {
        let env: SecretRef = serde_json::from_str(r#"{"env": "KEY"}"#).unwrap();
        assert_eq!(env, SecretRef::Env("KEY".into()));
        assert_eq!(serde_json::to_value(&env).unwrap(), serde_json::json!({"env": "KEY"}));
        let file: SecretRef = serde_json::from_str(r#"{"file": "/run/key"}"#).unwrap();
        assert_eq!(file.to_string(), "/run/key");
        for written in [
            r#""sk-live-123""#,
            "12345",
            r#"{"value": "sk-live-123"}"#,
            r#"{"value": 12345}"#,
            r#"{"env": "sk-live-123"}"#,
            r#"{"env": 12345}"#,
            r#"{"env": "A", "file": "b"}"#,
            "{}",
        ] {
            let error = serde_json::from_str::<SecretRef>(written).unwrap_err().to_string();
            assert!(!error.contains("sk-live") && !error.contains("12345"), "{error}");
        }
    }

    #[test]
    fn secrets_resolve_from_files_and_never_show_in_debug() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("key");
        std::fs::write(&path, "sk-file\n").unwrap();
        let secret = SecretRef::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "sk-file");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        let missing = SecretRef::Env("KAI_TEST_SURELY_UNSET_VARIABLE".into())
            .resolve()
            .unwrap_err();
        assert!(missing.to_string().contains("KAI_TEST_SURELY_UNSET_VARIABLE"));
        let empty = directory.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(SecretRef::File(empty).resolve().is_err());
    }
}
