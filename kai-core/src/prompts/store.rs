//! A directory of prompts, each save a new immutable version (see [`Versions`] for how).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::prompts::versioned::{Record, Versions, content_hash};
use crate::prompts::{PromptRef, PromptTemplates, check_name};
use crate::time::now_ms;

/// One version of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptVersion {
    /// The prompt's name.
    pub name: String,
    /// The version, counted from 1.
    pub version: u32,
    /// Who saved it.
    pub author: String,
    /// Why, in a few words.
    pub note: String,
    /// When, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// `sha256:` and the hex SHA-256 of the source.
    pub content_hash: String,
    /// The template.
    pub source: String,
}

/// Prompts kept in a directory; see the [module](crate::prompts) for what it offers.
///
/// ```
/// use kai_core::prompts::PromptStore;
/// use serde_json::json;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = PromptStore::open(dir.path()).unwrap();
/// store.save("greeting", "Hello, {{ name }}.", "ada", "first").unwrap();
/// store.save("greeting", "Hi, {{ name }}!", "ada", "friendlier").unwrap();
/// assert_eq!(store.render(&"prompt://greeting".parse().unwrap(), &json!({"name": "Bo"})).unwrap(), "Hi, Bo!");
/// assert_eq!(store.render(&"prompt://greeting@1".parse().unwrap(), &json!({"name": "Bo"})).unwrap(), "Hello, Bo.");
/// ```
#[derive(Debug, Clone)]
pub struct PromptStore {
    versions: Versions,
}

impl Record for PromptVersion {
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn hash_matches(&self) -> bool {
        self.content_hash == content_hash(self.source.as_bytes())
    }
    fn diff_text(&self) -> Result<String, Error> {
        Ok(self.source.clone())
    }
}

impl PromptStore {
    /// The store in `root`, made if missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, Error> {
        Ok(PromptStore {
            versions: Versions::open(root.as_ref())?,
        })
    }

    /// Saves `source` as the next version of `name` (checking its syntax first) and returns it.
    /// Author and note are at most [`MAX_NOTE`](crate::prompts::MAX_NOTE) bytes each.
    pub fn save(&self, name: &str, source: &str, author: &str, note: &str) -> Result<PromptVersion, Error> {
        check_name(name)?;
        // A template that does not parse, or includes itself, is refused before it becomes a version.
        PromptTemplates::new().add(name, source)?;
        self.versions.save(name, author, note, |version| PromptVersion {
            name: name.to_owned(),
            version,
            author: author.to_owned(),
            note: note.to_owned(),
            created_at_ms: now_ms(),
            content_hash: content_hash(source.as_bytes()),
            source: source.to_owned(),
        })
    }

    /// A version of `name`: the one given, or the latest.
    pub fn get(&self, name: &str, version: Option<u32>) -> Result<PromptVersion, Error> {
        self.versions.get(name, version)
    }

    /// Every version of `name`, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<PromptVersion>, Error> {
        self.versions.history(name)
    }

    /// The prompts the store holds, sorted.
    pub fn names(&self) -> Result<Vec<String>, Error> {
        self.versions.names()
    }

    /// A unified diff of version `from` to version `to` of `name`.
    pub fn diff(&self, name: &str, from: u32, to: u32) -> Result<String, Error> {
        self.versions.diff::<PromptVersion>(name, from, to)
    }

    /// Makes version `to`'s source the latest again, as a new version; history is never rewritten.
    pub fn roll_back(&self, name: &str, to: u32, author: &str) -> Result<PromptVersion, Error> {
        let old = self.get(name, Some(to))?;
        self.save(name, &old.source, author, &format!("roll back to version {to}"))
    }

    /// Renders the prompt `reference` names with `variables`. It can include the latest version of
    /// any other prompt of the store (only those it includes are read, so a damaged prompt fails only
    /// the renders that include it).
    pub fn render(&self, reference: &PromptRef, variables: &serde_json::Value) -> Result<String, Error> {
        let mut templates = PromptTemplates::new();
        let prompt = self.get(&reference.name, reference.version)?;
        templates.add(&reference.name, &prompt.source)?;
        let mut pending = templates.includes_of(&reference.name);
        while let Some(name) = pending.pop() {
            if templates.contains(&name) || check_name(&name).is_err() {
                continue;
            }
            match self.get(&name, None) {
                Ok(included) => templates.add(&name, &included.source)?,
                // Tera says which include is missing when it renders.
                Err(Error::NotFound { .. }) => continue,
                Err(error) => return Err(error),
            }
            pending.extend(templates.includes_of(&name));
        }
        templates.render(&reference.name, variables)
    }

    /// An agent's instructions: `instructions` rendered from the store when it is a reference
    /// (`prompt://support@3`), or as they are otherwise.
    pub fn resolve_instructions(&self, instructions: &str, variables: &serde_json::Value) -> Result<String, Error> {
        if PromptRef::is_reference(instructions) {
            self.render(&instructions.trim().parse()?, variables)
        } else {
            Ok(instructions.to_owned())
        }
    }
}
