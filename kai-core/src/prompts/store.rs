//! A directory of prompts, each save a new immutable version.
//!
//! Layout: `<root>/<name>/<version>.json`, one file per version holding its metadata and source.
//! Saves take an exclusive lock on `<root>/.lock`, so two writers (threads or processes) never give
//! out one version twice, and write a new file that is synced and then renamed into place, so a
//! reader sees a version whole or not at all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::prompts::{MAX_NOTE, MAX_TEMPLATE, PromptRef, PromptTemplates, check_name};

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
    root: PathBuf,
}

impl PromptStore {
    /// The store in `root`, made if missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref().to_owned();
        std::fs::create_dir_all(&root).map_err(|error| storage(&root, "making", error))?;
        Ok(PromptStore { root })
    }

    /// Saves `source` as the next version of `name` (checking its syntax first) and returns it.
    pub fn save(&self, name: &str, source: &str, author: &str, note: &str) -> Result<PromptVersion, Error> {
        check_name(name)?;
        for (what, text) in [("author", author), ("note", note)] {
            if text.len() > MAX_NOTE {
                return Err(Error::Config {
                    message: format!("the {what} of a prompt version is at most {MAX_NOTE} bytes"),
                });
            }
        }
        // A template that does not parse, or includes itself, is refused before it becomes a version.
        PromptTemplates::new().add(name, source)?;
        let _lock = self.lock()?;
        let last = self.versions(name)?.last().copied().unwrap_or(0);
        let version = last.checked_add(1).ok_or_else(|| Error::Storage {
            message: format!("{name} has no version left after {last}"),
        })?;
        let saved = PromptVersion {
            name: name.to_owned(),
            version,
            author: author.to_owned(),
            note: note.to_owned(),
            created_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
            content_hash: content_hash(source),
            source: source.to_owned(),
        };
        let directory = self.prompt_directory(name)?;
        if !directory.exists() {
            std::fs::create_dir(&directory).map_err(|error| storage(&directory, "making", error))?;
            sync_directory(&self.root).map_err(|error| storage(&self.root, "syncing", error))?;
        }
        let path = directory.join(format!("{version}.json"));
        let temporary = directory.join(format!(".{version}.json.partial"));
        let bytes = serde_json::to_vec_pretty(&saved).map_err(|error| Error::Storage {
            message: format!("encoding {name} version {version}: {error}"),
        })?;
        // A partial file a crash left (or a link put in its place) is removed, not written through.
        let _ = std::fs::remove_file(&temporary);
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            // A link, not a rename: it fails rather than replace a version already there.
            std::fs::hard_link(&temporary, &path)
        })();
        let _ = std::fs::remove_file(&temporary);
        written.map_err(|error| storage(&path, "writing", error))?;
        // The version is there; a failed sync leaves it there, so it is not reported as a failed save.
        if let Err(error) = sync_directory(&directory) {
            tracing::warn!(path = %directory.display(), %error, "a saved prompt version's directory was not synced");
        }
        Ok(saved)
    }

    /// A version of `name`: the one given, or the latest.
    pub fn get(&self, name: &str, version: Option<u32>) -> Result<PromptVersion, Error> {
        check_name(name)?;
        let version = match version {
            Some(0) => {
                return Err(Error::PromptNotFound {
                    name: name.to_owned(),
                    version: Some(0),
                });
            }
            Some(version) => version,
            None => *self.versions(name)?.last().ok_or_else(|| Error::PromptNotFound {
                name: name.to_owned(),
                version: None,
            })?,
        };
        self.read(name, version)
    }

    /// Every version of `name`, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<PromptVersion>, Error> {
        check_name(name)?;
        self.versions(name)?
            .into_iter()
            .map(|version| self.read(name, version))
            .collect()
    }

    /// The prompts the store holds, sorted.
    pub fn names(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(|error| storage(&self.root, "listing", error))? {
            let entry = entry.map_err(|error| storage(&self.root, "listing", error))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_ok() && entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// A unified diff of version `from` to version `to` of `name`.
    pub fn diff(&self, name: &str, from: u32, to: u32) -> Result<String, Error> {
        let (old, new) = (self.get(name, Some(from))?, self.get(name, Some(to))?);
        Ok(similar::TextDiff::from_lines(&old.source, &new.source)
            .unified_diff()
            .header(&format!("{name}@{from}"), &format!("{name}@{to}"))
            .to_string())
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
                Err(Error::PromptNotFound { .. }) => continue,
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

    /// The directory of `name`'s versions; one that is a link is refused, so that no save or read
    /// goes elsewhere.
    fn prompt_directory(&self, name: &str) -> Result<PathBuf, Error> {
        let directory = self.root.join(name);
        match std::fs::symlink_metadata(&directory) {
            Ok(metadata) if !metadata.is_dir() => Err(Error::Storage {
                message: format!("{} is not a directory", directory.display()),
            }),
            _ => Ok(directory),
        }
    }

    /// The versions of `name` on disk, ascending.
    fn versions(&self, name: &str) -> Result<Vec<u32>, Error> {
        let directory = self.prompt_directory(name)?;
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(storage(&directory, "listing", error)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| storage(&directory, "listing", error))?;
            let file_name = entry.file_name();
            // Only the name a version is saved under: `01.json` or `+1.json` are not version 1.
            if let Some(version) = file_name
                .to_str()
                .and_then(|file| file.strip_suffix(".json"))
                .and_then(|stem| {
                    stem.parse::<u32>()
                        .ok()
                        .filter(|version| *version > 0 && version.to_string() == stem)
                })
            {
                versions.push(version);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// Reads one version, checking that it is what its file name and hash say.
    fn read(&self, name: &str, version: u32) -> Result<PromptVersion, Error> {
        let path = self.prompt_directory(name)?.join(format!("{version}.json"));
        // Only a regular file: a FIFO would block the open, a link lead elsewhere.
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if !metadata.is_file() => {
                return Err(Error::Storage {
                    message: format!("{} is not a regular file", path.display()),
                });
            }
            _ => {}
        }
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::PromptNotFound {
                    name: name.to_owned(),
                    version: Some(version),
                });
            }
            Err(error) => return Err(storage(&path, "reading", error)),
        };
        let corrupt = |why: String| Error::Storage {
            message: format!("{} is damaged: {why}", path.display()),
        };
        // The source, author and note escaped as JSON (at most six bytes a byte), plus the rest; read
        // no more than that whatever the file's size, so a huge file costs nothing.
        let limit = 6 * (MAX_TEMPLATE + 2 * MAX_NOTE) as u64 + 64 * 1024;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)
            .map_err(|error| storage(&path, "reading", error))?;
        if bytes.len() as u64 > limit {
            return Err(corrupt(format!("it is over {limit} bytes")));
        }
        let stored: PromptVersion = serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
        if stored.name != name || stored.version != version {
            return Err(corrupt(format!("it holds {}@{}", stored.name, stored.version)));
        }
        if stored.content_hash != content_hash(&stored.source) {
            return Err(corrupt("its source does not match its content hash".into()));
        }
        Ok(stored)
    }

    /// The store's write lock, held until dropped.
    fn lock(&self) -> Result<std::fs::File, Error> {
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| storage(&path, "opening", error))?;
        file.lock().map_err(|error| storage(&path, "locking", error))?;
        Ok(file)
    }
}

/// Syncs a directory, so that an entry just made in it survives a power loss.
fn sync_directory(directory: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        std::fs::File::open(directory)?.sync_all()
    } else {
        Ok(())
    }
}

/// `sha256:` and the hex SHA-256 of `source`: it shows damage, not tampering (anyone who can write the
/// file can write a matching hash).
fn content_hash(source: &str) -> String {
    format!("sha256:{:x}", Sha256::digest(source.as_bytes()))
}

fn storage(path: &Path, doing: &str, error: std::io::Error) -> Error {
    Error::Storage {
        message: format!("{doing} {}: {error}", path.display()),
    }
}
