//! Records kept as numbered, immutable versions in a directory: what the prompt store and the
//! persona store share.
//!
//! Layout: `<root>/<name>/<version>.json`, one file per version. Saves take an exclusive lock on
//! `<root>/.lock`, so two writers (threads or processes) never give out one version twice; they write
//! a new file (never through a link left in its place), sync it and hard-link it into place, which
//! fails rather than replace a version already there, so a reader sees a version whole or not at all.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::fs::sync_directory;
use crate::prompts::{MAX_NOTE, check_name};

/// The largest version file read, in bytes: a huge file is refused without being read whole.
const MAX_RECORD: u64 = 16 << 20;

/// A record kept in [`Versions`].
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// The name it was saved under.
    fn name(&self) -> &str;
    /// Its version.
    fn version(&self) -> u32;
    /// Whether the hash it carries is its content's.
    fn hash_matches(&self) -> bool;
    /// Its content as text, to diff one version against another.
    fn diff_text(&self) -> Result<String, Error>;
}

/// A directory of versioned records.
#[derive(Debug, Clone)]
pub(crate) struct Versions {
    root: PathBuf,
}

impl Versions {
    /// The records in `root`, made if missing.
    pub(crate) fn open(root: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(root).map_err(|error| Error::storage(root, "making", &error))?;
        Ok(Versions { root: root.to_owned() })
    }

    /// Saves the record `make` builds for the next version of `name`, and returns it.
    pub(crate) fn save<R: Record>(
        &self,
        name: &str,
        author: &str,
        note: &str,
        make: impl FnOnce(u32) -> R,
    ) -> Result<R, Error> {
        check_name(name)?;
        for (what, text) in [("author", author), ("note", note)] {
            if text.len() > MAX_NOTE {
                return Err(Error::Config {
                    message: format!("the {what} of a version is at most {MAX_NOTE} bytes"),
                });
            }
        }
        let _lock = self.lock()?;
        let last = self.versions(name)?.last().copied().unwrap_or(0);
        let version = last.checked_add(1).ok_or_else(|| Error::Storage {
            message: format!("{name} has no version left after {last}"),
        })?;
        let saved = make(version);
        let directory = self.directory(name)?;
        if !directory.exists() {
            std::fs::create_dir(&directory).map_err(|error| Error::storage(&directory, "making", &error))?;
            sync_directory(&self.root).map_err(|error| Error::storage(&self.root, "syncing", &error))?;
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
        written.map_err(|error| Error::storage(&path, "writing", &error))?;
        // The version is there; a failed sync leaves it there, so it is not reported as a failed save.
        if let Err(error) = sync_directory(&directory) {
            tracing::warn!(path = %directory.display(), %error, "a saved version's directory was not synced");
        }
        Ok(saved)
    }

    /// A version of `name`: the one given, or the latest.
    pub(crate) fn get<R: Record>(&self, name: &str, version: Option<u32>) -> Result<R, Error> {
        check_name(name)?;
        let not_found = |version| Error::NotFound {
            name: name.to_owned(),
            version,
        };
        let version = match version {
            Some(0) => return Err(not_found(Some(0))),
            Some(version) => version,
            None => *self.versions(name)?.last().ok_or_else(|| not_found(None))?,
        };
        self.read(name, version)
    }

    /// Every version of `name`, oldest first.
    pub(crate) fn history<R: Record>(&self, name: &str) -> Result<Vec<R>, Error> {
        check_name(name)?;
        self.versions(name)?
            .into_iter()
            .map(|version| self.read(name, version))
            .collect()
    }

    /// A unified diff of version `from` to version `to` of `name`.
    pub(crate) fn diff<R: Record>(&self, name: &str, from: u32, to: u32) -> Result<String, Error> {
        let old = self.get::<R>(name, Some(from))?.diff_text()?;
        let new = self.get::<R>(name, Some(to))?.diff_text()?;
        Ok(similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .header(&format!("{name}@{from}"), &format!("{name}@{to}"))
            .to_string())
    }

    /// The names the directory holds, sorted.
    pub(crate) fn names(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(|error| Error::storage(&self.root, "listing", &error))? {
            let entry = entry.map_err(|error| Error::storage(&self.root, "listing", &error))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_ok() && entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The directory of `name`'s versions; one that is a link is refused, so that no save or read
    /// goes elsewhere.
    fn directory(&self, name: &str) -> Result<PathBuf, Error> {
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
        let directory = self.directory(name)?;
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::storage(&directory, "listing", &error)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| Error::storage(&directory, "listing", &error))?;
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
    fn read<R: Record>(&self, name: &str, version: u32) -> Result<R, Error> {
        let path = self.directory(name)?.join(format!("{version}.json"));
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
                return Err(Error::NotFound {
                    name: name.to_owned(),
                    version: Some(version),
                });
            }
            Err(error) => return Err(Error::storage(&path, "reading", &error)),
        };
        let corrupt = |why: String| Error::Storage {
            message: format!("{} is damaged: {why}", path.display()),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_RECORD + 1), &mut bytes)
            .map_err(|error| Error::storage(&path, "reading", &error))?;
        if bytes.len() as u64 > MAX_RECORD {
            return Err(corrupt(format!("it is over {MAX_RECORD} bytes")));
        }
        let stored: R = serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
        if stored.name() != name || stored.version() != version {
            return Err(corrupt(format!("it holds {}@{}", stored.name(), stored.version())));
        }
        if !stored.hash_matches() {
            return Err(corrupt("its content does not match its content hash".into()));
        }
        Ok(stored)
    }

    /// The write lock, held until dropped.
    fn lock(&self) -> Result<std::fs::File, Error> {
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| Error::storage(&path, "opening", &error))?;
        file.lock().map_err(|error| Error::storage(&path, "locking", &error))?;
        Ok(file)
    }
}

/// `sha256:` and the hex SHA-256 of `content`: it shows damage, not tampering (anyone who can write
/// the file can write a matching hash).
pub(crate) fn content_hash(content: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(content))
}
