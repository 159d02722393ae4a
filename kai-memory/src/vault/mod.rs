//! An encrypted vault for secrets (API keys, tokens, private keys) and private records.
//!
//! Everything is sealed with AES-256-GCM under a random data key; the data key is sealed under a key
//! derived from the passphrase (PBKDF2-HMAC-SHA256 with 600,000 iterations by default, or Argon2id).
//! Changing the passphrase re-seals only the data key. Every change rewrites the file atomically, so a
//! crash leaves the old vault or the new one. The format is described in `format.rs`.
//!
//! ```
//! use kai_memory::{Kdf, Vault};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("agent.vault");
//! let fast = Kdf::Pbkdf2Sha256 { iterations: 1_000 }; // use Kdf::default() in real code
//! let mut vault = Vault::create(&path, "correct horse battery staple", fast)?;
//! vault.put_secret("openai", "sk-...")?;
//! drop(vault); // one writer at a time: while a vault is open, opening it again is `Error::Locked`
//!
//! let vault = Vault::open(&path, "correct horse battery staple")?;
//! assert_eq!(vault.secret("openai")?.unwrap().expose(), "sk-...");
//! drop(vault);
//! assert!(matches!(Vault::open(&path, "wrong"), Err(kai_memory::Error::WrongPassphrase)));
//! # Ok::<(), kai_memory::Error>(())
//! ```
//!
//! The key derivation is slow on purpose (about 0.3 s optimised), and far slower unoptimised: a
//! dependent crate's debug build takes seconds per open unless its `Cargo.toml` optimises the crypto
//! crates, as this workspace does:
//!
//! ```toml
//! [profile.dev.package.sha2]
//! opt-level = 3
//! [profile.dev.package.hmac]
//! opt-level = 3
//! [profile.dev.package.pbkdf2]
//! opt-level = 3
//! [profile.dev.package.argon2]
//! opt-level = 3
//! [profile.dev.package.blake2]
//! opt-level = 3
//! ```
//!
//! In async code, [`Vault::open_async`] and [`Vault::create_async`] derive the key on a thread of
//! their own, so the executor awaiting them is not blocked.

mod format;
mod kdf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

pub use kdf::Kdf;

use crate::error::Error;
use format::{Body, Entry, Header, KdfRecord, Kind, Sealed};
use kai_core::fs::{FileLock, create_atomic, write_atomic};

/// A secret's value. `Debug` prints `Secret(***)`; the memory is wiped when it is dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An open vault. Entries stay sealed in memory and are opened one at a time on request.
pub struct Vault {
    path: PathBuf,
    header: Header,
    data_key: Zeroizing<[u8; 32]>,
    entries: BTreeMap<(Kind, String), Sealed>,
    /// Held while the vault is open: a second writer would lose this one's entries, or this one its.
    _lock: FileLock,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("kdf", &self.header.kdf.kdf)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// [`open`](Self::open) on a thread of its own (the key derivation takes a while): the executor
    /// awaiting it keeps running. Any executor will do.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn open_async(path: impl AsRef<Path>, passphrase: &str) -> Result<Self, Error> {
        let (path, passphrase) = (path.as_ref().to_owned(), Zeroizing::new(passphrase.to_owned()));
        off_the_executor(&path.clone(), move || Self::open(&path, &passphrase)).await
    }

    /// [`create`](Self::create) on a thread of its own, as [`open_async`](Self::open_async).
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn create_async(path: impl AsRef<Path>, passphrase: &str, kdf: Kdf) -> Result<Self, Error> {
        let (path, passphrase) = (path.as_ref().to_owned(), Zeroizing::new(passphrase.to_owned()));
        off_the_executor(&path.clone(), move || Self::create(&path, &passphrase, kdf)).await
    }

    /// Creates a new, empty vault at `path`, readable by its owner only; fails with
    /// [`Error::AlreadyExists`] if a file is already there (even one another process creates at the
    /// same moment).
    pub fn create(path: impl AsRef<Path>, passphrase: &str, kdf: Kdf) -> Result<Self, Error> {
        let path = path.as_ref();
        if path.exists() {
            // Checked first too, to fail before the slow key derivation.
            return Err(Error::AlreadyExists {
                path: path.display().to_string(),
            });
        }
        let lock = FileLock::acquire(path).map_err(|e| Error::file(path, e))?;
        let data_key = Zeroizing::new(format::random::<32>());
        let vault_id = format::random::<16>().to_vec();
        let header = seal_header(vault_id, &data_key, passphrase, kdf)?;
        let vault = Self {
            path: path.to_owned(),
            header,
            data_key,
            entries: BTreeMap::new(),
            _lock: lock,
        };
        create_atomic(path, &format::encode(&vault.header, &vault.body(), &vault.data_key)?)
            .map_err(|e| Error::file(path, e))?;
        Ok(vault)
    }

    /// Opens the vault at `path`.
    ///
    /// Fails with [`Error::WrongPassphrase`], [`Error::Tampered`], [`Error::Truncated`],
    /// [`Error::UnsupportedVersion`] or [`Error::NotAVault`], each for exactly that case, and with
    /// [`Error::Locked`] while another `Vault` (in this process or another) has it open: the vault holds
    /// an exclusive lock on `<path>.lock` until it is dropped, so two writers never lose each other's
    /// entries.
    pub fn open(path: impl AsRef<Path>, passphrase: &str) -> Result<Self, Error> {
        let path = path.as_ref();
        let lock = FileLock::acquire(path).map_err(|e| Error::file(path, e))?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (header, data_key, body) = unlock(&bytes, passphrase)?;
        let entries = body
            .entries
            .into_iter()
            .map(|entry| ((entry.kind, entry.name), entry.sealed))
            .collect();
        let vault = Self {
            path: path.to_owned(),
            header,
            data_key,
            entries,
            _lock: lock,
        };
        // An older format (version 1 shows the entries' names) is rewritten in the current one at once.
        if !format::is_current(&bytes)
            && let Err(error) = vault.save()
        {
            tracing::warn!(%error, path = %path.display(), "could not upgrade the vault file; it stays in its older format");
        }
        Ok(vault)
    }

    /// Stores a secret under `name`, replacing any previous value, and saves.
    pub fn put_secret(&mut self, name: &str, value: &str) -> Result<(), Error> {
        self.put(Kind::Secret, name, value.as_bytes())
    }

    /// The secret stored under `name`.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>, Error> {
        let Some(plaintext) = self.get(Kind::Secret, name)? else {
            return Ok(None);
        };
        let text = String::from_utf8(plaintext.to_vec()).map_err(|_| Error::tampered(format!("entry {name}")))?;
        Ok(Some(Secret(Zeroizing::new(text))))
    }

    /// Stores a private record (any serde value) under `name`, and saves.
    pub fn put_record<T: Serialize>(&mut self, name: &str, record: &T) -> Result<(), Error> {
        let json = Zeroizing::new(serde_json::to_vec(record).map_err(|e| record_error(name, &e))?);
        self.put(Kind::Record, name, &json)
    }

    /// The private record stored under `name`.
    pub fn record<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        let Some(plaintext) = self.get(Kind::Record, name)? else {
            return Ok(None);
        };
        serde_json::from_slice(&plaintext)
            .map(Some)
            .map_err(|e| record_error(name, &e))
    }

    /// Removes the secret and the record named `name`; returns whether anything was removed.
    pub fn remove(&mut self, name: &str) -> Result<bool, Error> {
        let key = |kind| (kind, name.to_owned());
        if !self.entries.contains_key(&key(Kind::Secret)) && !self.entries.contains_key(&key(Kind::Record)) {
            return Ok(false);
        }
        self.change(|entries| {
            entries.remove(&key(Kind::Secret));
            entries.remove(&key(Kind::Record));
        })?;
        Ok(true)
    }

    /// The names of the stored secrets.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.names(Kind::Secret)
    }

    /// The names of the stored records.
    pub fn record_names(&self) -> impl Iterator<Item = &str> {
        self.names(Kind::Record)
    }

    /// Re-seals the data key under a new passphrase (entries are not touched) and saves.
    pub fn change_passphrase(&mut self, new_passphrase: &str, kdf: Kdf) -> Result<(), Error> {
        let header = seal_header(self.header.vault_id.clone(), &self.data_key, new_passphrase, kdf)?;
        let previous = std::mem::replace(&mut self.header, header);
        self.save().inspect_err(|_| self.header = previous)
    }

    /// Writes an encrypted copy of this vault to `path`, openable with `passphrase`.
    ///
    /// The copy has a data key and an id of its own, and every entry is sealed again under them: the
    /// backup's passphrase (often a weaker one, written down) opens the backup and nothing else, not
    /// this vault nor what is added to it later.
    pub fn export(&self, path: impl AsRef<Path>, passphrase: &str, kdf: Kdf) -> Result<(), Error> {
        let data_key = Zeroizing::new(format::random::<32>());
        let vault_id = format::random::<16>().to_vec();
        let mut entries = Vec::with_capacity(self.entries.len());
        for ((kind, name), sealed) in &self.entries {
            let plaintext = format::open(
                &self.data_key,
                sealed,
                &format::entry_aad(&self.header.vault_id, *kind, name),
            )
            .ok_or_else(|| Error::tampered(format!("entry {name}")))?;
            entries.push(Entry {
                kind: *kind,
                name: name.clone(),
                sealed: format::seal(&data_key, &plaintext, &format::entry_aad(&vault_id, *kind, name))?,
            });
        }
        let header = seal_header(vault_id, &data_key, passphrase, kdf)?;
        write_atomic(path.as_ref(), &format::encode(&header, &Body { entries }, &data_key)?)
            .map_err(|e| Error::file(path.as_ref(), e))
    }

    /// Copies every entry of the backup at `path` into this vault (same names are replaced), and saves.
    /// Returns how many entries were imported.
    pub fn import(&mut self, path: impl AsRef<Path>, passphrase: &str) -> Result<usize, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (header, data_key, body) = unlock(&bytes, passphrase)?;
        // Every entry is re-sealed before any is taken in, so a bad one leaves this vault as it was.
        let mut resealed = Vec::with_capacity(body.entries.len());
        for entry in body.entries {
            let aad = format::entry_aad(&header.vault_id, entry.kind, &entry.name);
            let plaintext = format::open(&data_key, &entry.sealed, &aad)
                .ok_or_else(|| Error::tampered(format!("entry {}", entry.name)))?;
            let sealed = format::seal(
                &self.data_key,
                &plaintext,
                &format::entry_aad(&self.header.vault_id, entry.kind, &entry.name),
            )?;
            resealed.push(((entry.kind, entry.name), sealed));
        }
        let count = resealed.len();
        self.change(|entries| entries.extend(resealed))?;
        Ok(count)
    }

    fn put(&mut self, kind: Kind, name: &str, plaintext: &[u8]) -> Result<(), Error> {
        let sealed = format::seal(
            &self.data_key,
            plaintext,
            &format::entry_aad(&self.header.vault_id, kind, name),
        )?;
        self.change(|entries| {
            entries.insert((kind, name.to_owned()), sealed);
        })
    }

    /// Applies `change` to the entries and saves; if the save fails, the entries are as they were, so
    /// what is in memory never differs from what a reopen would read.
    fn change(&mut self, change: impl FnOnce(&mut BTreeMap<(Kind, String), Sealed>)) -> Result<(), Error> {
        let before = self.entries.clone();
        change(&mut self.entries);
        self.save().inspect_err(|_| self.entries = before)
    }

    fn get(&self, kind: Kind, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        let Some(sealed) = self.entries.get(&(kind, name.to_owned())) else {
            return Ok(None);
        };
        let aad = format::entry_aad(&self.header.vault_id, kind, name);
        format::open(&self.data_key, sealed, &aad)
            .map(Some)
            .ok_or_else(|| Error::tampered(format!("entry {name}")))
    }

    fn names(&self, kind: Kind) -> impl Iterator<Item = &str> {
        self.entries
            .keys()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, name)| name.as_str())
    }

    fn body(&self) -> Body {
        Body {
            entries: self
                .entries
                .iter()
                .map(|((kind, name), sealed)| Entry {
                    kind: *kind,
                    name: name.clone(),
                    sealed: sealed.clone(),
                })
                .collect(),
        }
    }

    fn save(&self) -> Result<(), Error> {
        write_atomic(&self.path, &format::encode(&self.header, &self.body(), &self.data_key)?)
            .map_err(|e| Error::file(&self.path, e))
    }
}

/// A header sealing `data_key` under a key derived from `passphrase` with a fresh salt.
fn seal_header(vault_id: Vec<u8>, data_key: &[u8; 32], passphrase: &str, kdf: Kdf) -> Result<Header, Error> {
    let record = KdfRecord {
        kdf,
        salt: format::random::<16>().to_vec(),
    };
    let kek = kdf.derive(passphrase.as_bytes(), &record.salt)?;
    let key = format::seal(&kek, data_key, &format::key_aad(&vault_id, &record))?;
    Ok(Header {
        check: format::check_value(&kek),
        vault_id,
        kdf: record,
        key,
    })
}

/// What opening a file checks before deriving any key (its layout, header and key-derivation
/// settings): the part a hostile file reaches without a passphrase, for the fuzz targets.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn check_header_for_fuzzing(bytes: &[u8]) -> Result<(), Error> {
    format::parse(bytes)?.header.kdf.kdf.validate()
}

/// Runs `work` (on the vault at `path`) on a thread of its own and resolves to its result.
#[cfg(not(target_arch = "wasm32"))]
async fn off_the_executor<R: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<R, Error> + Send + 'static,
) -> Result<R, Error> {
    let worker = crate::worker::Worker::spawn("kai-vault-kdf").map_err(|e| Error::io(path, e))?;
    worker.run(move |_| work()).await
}

/// Parses a file and opens its data key and body, telling each kind of failure apart.
fn unlock(bytes: &[u8], passphrase: &str) -> Result<(Header, Zeroizing<[u8; 32]>, Body), Error> {
    let parsed = format::parse(bytes)?;
    let header = parsed.header.clone();
    let kek = header.kdf.kdf.derive(passphrase.as_bytes(), &header.kdf.salt)?;
    let check = format::check_value(&kek);
    if !constant_time_eq(&check, &header.check) {
        return Err(Error::WrongPassphrase);
    }
    let plaintext = format::open(&kek, &header.key, &format::key_aad(&header.vault_id, &header.kdf))
        .ok_or_else(|| Error::tampered("key"))?;
    // Copied straight into wiped memory: a plain `[u8; 32]` moved into `Zeroizing` leaves a copy behind.
    let mut data_key = Zeroizing::new([0u8; 32]);
    if plaintext.len() != data_key.len() {
        return Err(Error::tampered("key"));
    }
    data_key.copy_from_slice(&plaintext);
    let body = parsed.body(&data_key)?;
    Ok((header, data_key, body))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A record error that says what kind of failure and where, without serde's message: that can quote
/// the record's decrypted contents (`invalid type: string "sk-…"`), which must not reach logs.
fn record_error(name: &str, error: &serde_json::Error) -> Error {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "an I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "a value of another shape than the type asked for",
        serde_json::error::Category::Eof => "JSON that ends early",
    };
    let place = if error.line() > 0 {
        format!(" at line {}, column {}", error.line(), error.column())
    } else {
        String::new()
    };
    Error::Record {
        name: name.to_owned(),
        message: format!("{kind}{place}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Kdf = Kdf::Pbkdf2Sha256 { iterations: 1_000 };

    /// A backup's passphrase once unlocked the live vault's own data key: whoever held the backup and
    /// its (often weaker) passphrase could read the live vault, and everything added to it later. The
    /// key a backup's passphrase yields now opens none of the live vault's entries.
    #[test]
    fn a_backups_passphrase_opens_nothing_of_the_live_vault() {
        let dir = tempfile::tempdir().unwrap();
        let (live_path, backup_path) = (dir.path().join("live.vault"), dir.path().join("backup.vault"));
        let mut live = Vault::create(&live_path, "strong live passphrase", FAST).unwrap();
        live.put_secret("before", "exported").unwrap();
        live.export(&backup_path, "weak", FAST).unwrap();
        live.put_secret("after", "added later").unwrap();

        let (backup_header, backup_key, _) = unlock(&std::fs::read(&backup_path).unwrap(), "weak").unwrap();
        assert_ne!(backup_header.vault_id, live.header.vault_id);
        assert_ne!(*backup_key, *live.data_key);
        for ((kind, name), sealed) in &live.entries {
            let aad = format::entry_aad(&live.header.vault_id, *kind, name);
            assert!(format::open(&backup_key, sealed, &aad).is_none(), "{name}");
        }
        let backup = Vault::open(&backup_path, "weak").unwrap();
        assert_eq!(backup.secret("before").unwrap().unwrap().expose(), "exported");
        assert!(backup.secret("after").unwrap().is_none());
    }
}
