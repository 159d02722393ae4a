//! `prompt://name@version`: a reference to a stored prompt.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A reference to a prompt of a [`PromptStore`](crate::prompts::PromptStore): `prompt://name` for
/// its latest version, `prompt://name@3` for version 3.
///
/// ```
/// use kai_core::prompts::PromptRef;
///
/// let pinned: PromptRef = "prompt://support@3".parse().unwrap();
/// assert_eq!((pinned.name.as_str(), pinned.version), ("support", Some(3)));
/// assert_eq!(pinned.to_string(), "prompt://support@3");
/// assert!("support@3".parse::<PromptRef>().is_err());
/// // In serde forms it is the reference's text, checked when read.
/// assert_eq!(serde_json::to_value(&pinned).unwrap(), "prompt://support@3");
/// assert!(serde_json::from_value::<PromptRef>("prompt://../etc@1".into()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PromptRef {
    /// The prompt's name.
    pub name: String,
    /// The version, counted from 1; the latest when `None`.
    pub version: Option<u32>,
}

/// The scheme of a prompt reference.
const SCHEME: &str = "prompt://";

impl FromStr for PromptRef {
    type Err = Error;

    fn from_str(reference: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::Config {
            message: format!("{reference:?} is not a prompt reference (prompt://name or prompt://name@version): {why}"),
        };
        let rest = reference
            .strip_prefix(SCHEME)
            .ok_or_else(|| invalid("it does not start with prompt://"))?;
        let (name, version) = match rest.split_once('@') {
            Some((name, version)) => {
                let number: u32 = version.parse().map_err(|_| invalid("the version is not a number"))?;
                if number == 0 {
                    return Err(invalid("versions count from 1"));
                }
                if number.to_string() != version {
                    return Err(invalid("the version is written with a sign or leading zeros"));
                }
                let version = number;
                (name, Some(version))
            }
            None => (rest, None),
        };
        crate::prompts::check_name(name)?;
        Ok(PromptRef {
            name: name.to_owned(),
            version,
        })
    }
}

impl fmt::Display for PromptRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(version) => write!(formatter, "{SCHEME}{}@{version}", self.name),
            None => write!(formatter, "{SCHEME}{}", self.name),
        }
    }
}

impl TryFrom<String> for PromptRef {
    type Error = Error;

    fn try_from(reference: String) -> Result<Self, Error> {
        reference.parse()
    }
}

impl From<PromptRef> for String {
    fn from(reference: PromptRef) -> String {
        reference.to_string()
    }
}

impl PromptRef {
    /// Whether `text` is a prompt reference rather than instructions themselves.
    pub fn is_reference(text: &str) -> bool {
        text.trim_start().starts_with(SCHEME)
    }
}
