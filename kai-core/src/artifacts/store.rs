//! The file-backed, content-addressed artifact store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::fs::{FileLock, create_atomic, read_limited, write_atomic};
use crate::time::now_ms;

/// What an agent made: a text, a JSON document or bytes of any kind, with a MIME type and a record of
/// who made it.
///
/// The name and MIME type come from whoever saved it, often a model: a host that serves artifacts to
/// browsers must not serve active types (`text/html`, `image/svg+xml`) as they are, or anything from
/// its own origin without `Content-Disposition: attachment` and `X-Content-Type-Options: nosniff`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// The artifact's id: 64 lowercase hex characters.
    pub id: String,
    /// A name for people, such as `report.md`.
    pub name: String,
    /// The MIME type, such as `text/markdown` or `image/png`.
    pub mime_type: String,
    /// The content's length in bytes.
    pub size: u64,
    /// The content's SHA-256, lowercase hex; artifacts with the same content share one stored copy.
    pub sha256: String,
    /// When it was saved, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Who made it.
    pub producer: Producer,
    /// The caller's own metadata.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Where an artifact came from: the run, its step, the tool and the call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    /// The run's id ([`RunState::id`](crate::RunState)). Limits per run count by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The step of the run, counted from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The tool that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The tool call's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

impl Producer {
    /// The call `context` describes, by the tool named `tool`.
    pub fn of_call(context: &crate::ToolContext, tool: impl Into<String>) -> Self {
        Self {
            run_id: Some(context.run_id.clone()).filter(|id| !id.is_empty()),
            step: Some(context.step),
            tool: Some(tool.into()),
            call_id: Some(context.call_id.clone()),
        }
    }
}

/// An artifact to save.
#[derive(Debug, Clone, PartialEq)]
pub struct NewArtifact {
    /// A name for people, 1 to 255 bytes without control characters.
    pub name: String,
    /// The MIME type: `type/subtype`, parameters allowed (`text/plain; charset=utf-8`).
    pub mime_type: String,
    /// The content.
    pub content: Vec<u8>,
    /// Who made it.
    pub producer: Producer,
    /// The caller's own metadata, up to 16 KiB as JSON.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl NewArtifact {
    /// Bytes of a MIME type.
    pub fn binary(name: impl Into<String>, mime_type: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            mime_type: mime_type.into(),
            content: content.into(),
            producer: Producer::default(),
            metadata: serde_json::Map::new(),
        }
    }

    /// A UTF-8 text (`text/plain; charset=utf-8`).
    pub fn text(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self::binary(name, "text/plain; charset=utf-8", text.into().into_bytes())
    }

    /// A JSON document (`application/json`).
    pub fn json(name: impl Into<String>, value: &serde_json::Value) -> Self {
        Self::binary(name, "application/json", value.to_string().into_bytes())
    }

    /// This artifact, made by `producer`.
    pub fn produced_by(mut self, producer: Producer) -> Self {
        self.producer = producer;
        self
    }

    /// This artifact with one more metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }
}

/// How much a store takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactLimits {
    /// The largest artifact, in bytes (16 MiB by default).
    pub max_artifact_bytes: u64,
    /// The most bytes of artifacts one run may save (256 MiB by default).
    pub max_run_bytes: u64,
    /// The most artifacts one run may save (1,000 by default).
    pub max_run_artifacts: u64,
}

impl Default for ArtifactLimits {
    fn default() -> Self {
        Self {
            max_artifact_bytes: 16 << 20,
            max_run_bytes: 256 << 20,
            max_run_artifacts: 1_000,
        }
    }
}

/// Artifacts in a directory: each content stored once under its SHA-256 (`blobs/<sha256>`), each
/// artifact's record under its run (`runs/<run key>/<id>.json`), every file written atomically. The
/// store holds a lock on the directory while it lives, so a second process cannot write beside it.
///
/// Its methods do blocking file I/O; the [tools](crate::artifacts::artifact_tools) run them off the
/// async runtime's threads.
///
/// ```
/// use kai_core::artifacts::{ArtifactStore, NewArtifact};
///
/// let directory = tempfile::tempdir().unwrap();
/// let store = ArtifactStore::open(directory.path()).unwrap();
/// let saved = store.save(NewArtifact::text("notes.txt", "Buy milk.")).unwrap();
/// let (artifact, content) = store.get(&saved.id).unwrap();
/// assert_eq!((artifact.mime_type.as_str(), content.as_slice()), ("text/plain; charset=utf-8", &b"Buy milk."[..]));
/// ```
#[derive(Debug)]
pub struct ArtifactStore {
    root: PathBuf,
    limits: ArtifactLimits,
    /// Each run's artifacts so far (count, bytes), read from disk the first time a run saves.
    runs: Mutex<HashMap<String, (u64, u64)>>,
    /// Held shared while a save writes, exclusively while contents are removed: a content a save is
    /// about to use is never removed under it.
    contents: RwLock<()>,
    _lock: FileLock,
}

/// The most runs whose totals a store keeps in memory before it forgets them all.
const MAX_RUNS_REMEMBERED: usize = 10_000;
/// The most records [`ArtifactStore::list`] reads.
pub const MAX_LISTED: usize = 10_000;
/// The longest artifact record read back.
const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// The most metadata, as JSON.
const MAX_METADATA_BYTES: usize = 16 * 1024;

impl ArtifactStore {
    /// Opens (making it if need be) the store in `root`, with the default limits. Another process
    /// holding it is [`Error::Storage`].
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        for directory in [root.join("blobs"), root.join("runs")] {
            std::fs::create_dir_all(&directory).map_err(|error| Error::storage(&directory, "making", &error))?;
        }
        let lock_path = root.join("store");
        let lock = FileLock::acquire(&lock_path).map_err(|error| Error::storage(&lock_path, "locking", &error))?;
        Ok(Self {
            root,
            limits: ArtifactLimits::default(),
            runs: Mutex::default(),
            contents: RwLock::new(()),
            _lock: lock,
        })
    }

    /// This store with other limits.
    pub fn with_limits(mut self, limits: ArtifactLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The store's limits.
    pub fn limits(&self) -> ArtifactLimits {
        self.limits
    }

    /// Saves an artifact and returns its record.
    ///
    /// Refused, with nothing written: a content over the artifact limit or beyond its run's limits
    /// ([`Error::LimitExceeded`]); a name, MIME type or metadata that is not what [`NewArtifact`] says,
    /// a `text/*` content that is not UTF-8, or a JSON one (`application/json`, `+json`) that does not
    /// parse ([`Error::InvalidArtifact`]). A crash part-way can leave a stored content no record uses;
    /// [`collect_garbage`](Self::collect_garbage) removes it.
    ///
    /// Saves of different runs, and the hashing and writing of one run's saves, go on at once; only
    /// the accounting of a run's limits is serialised.
    pub fn save(&self, artifact: NewArtifact) -> Result<Artifact, Error> {
        let size = artifact.content.len() as u64;
        if size > self.limits.max_artifact_bytes {
            return Err(Error::LimitExceeded {
                limit: "artifact_bytes".into(),
                requested: size,
                max: self.limits.max_artifact_bytes,
            });
        }
        check(&artifact)?;
        let sha256 = format!("{:x}", Sha256::digest(&artifact.content));
        let run_key = run_key(artifact.producer.run_id.as_deref());
        self.reserve(&run_key, size)?;
        let saved = self.write(artifact, sha256, &run_key);
        if saved.is_err() {
            self.release(&run_key, size);
        }
        saved
    }

    /// Counts an artifact of `size` against its run's limits, or refuses it.
    fn reserve(&self, run_key: &str, size: u64) -> Result<(), Error> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let (count, bytes) = match runs.get(run_key) {
            Some(totals) => *totals,
            None => self.run_totals(run_key)?,
        };
        if count.saturating_add(1) > self.limits.max_run_artifacts {
            return Err(Error::LimitExceeded {
                limit: "run_artifacts".into(),
                requested: count.saturating_add(1),
                max: self.limits.max_run_artifacts,
            });
        }
        if bytes.saturating_add(size) > self.limits.max_run_bytes {
            return Err(Error::LimitExceeded {
                limit: "run_bytes".into(),
                requested: bytes.saturating_add(size),
                max: self.limits.max_run_bytes,
            });
        }
        // A long-lived store forgets the totals of many runs rather than growing without bound; a
        // run that saves again has its totals counted from its records again.
        if runs.len() >= MAX_RUNS_REMEMBERED {
            runs.clear();
        }
        runs.insert(run_key.to_owned(), (count + 1, bytes + size));
        Ok(())
    }

    /// Gives back a reservation whose save failed.
    fn release(&self, run_key: &str, size: u64) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((count, bytes)) = runs.get_mut(run_key) {
            *count = count.saturating_sub(1);
            *bytes = bytes.saturating_sub(size);
        }
    }

    /// Writes the content (unless an intact copy is there) and then the record.
    fn write(&self, artifact: NewArtifact, sha256: String, run_key: &str) -> Result<Artifact, Error> {
        let _writing = self.contents.read().unwrap_or_else(PoisonError::into_inner);
        let size = artifact.content.len() as u64;
        let blob = self.root.join("blobs").join(&sha256);
        match create_atomic(&blob, &artifact.content) {
            // The same content is stored already, unless the copy there was damaged: then it is replaced.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let intact = read_limited(&blob, size).is_ok_and(|stored| stored == artifact.content);
                if !intact {
                    write_atomic(&blob, &artifact.content).map_err(|error| Error::storage(&blob, "writing", &error))?;
                }
            }
            result => result.map_err(|error| Error::storage(&blob, "writing", &error))?,
        }
        let record = Artifact {
            id: format!("{run_key}{}", random_hex()),
            name: artifact.name,
            mime_type: artifact.mime_type,
            size,
            sha256,
            created_ms: now_ms(),
            producer: artifact.producer,
            metadata: artifact.metadata,
        };
        let directory = self.root.join("runs").join(run_key);
        std::fs::create_dir_all(&directory).map_err(|error| Error::storage(&directory, "making", &error))?;
        let path = directory.join(format!("{}.json", record.id));
        let json = serde_json::to_vec(&record).map_err(|error| Error::Storage {
            message: format!("serializing an artifact record: {error}"),
        })?;
        create_atomic(&path, &json).map_err(|error| Error::storage(&path, "writing", &error))?;
        Ok(record)
    }

    /// The record of the artifact with this id; an id of no artifact is [`Error::NotFound`].
    pub fn artifact(&self, id: &str) -> Result<Artifact, Error> {
        if !valid_id(id) {
            return Err(not_found(id));
        }
        let path = self.record_path(id);
        let record = self.read_record(&path).map_err(|error| match error {
            Error::NotFound { .. } => not_found(id),
            error => error,
        })?;
        if record.id != id {
            return Err(damaged(&path, "it holds another artifact's record"));
        }
        Ok(record)
    }

    /// The artifact with this id and its content, checked against its size and SHA-256.
    pub fn get(&self, id: &str) -> Result<(Artifact, Vec<u8>), Error> {
        let record = self.artifact(id)?;
        let content = self.content(&record)?;
        Ok((record, content))
    }

    /// The content of the artifact `record` describes, checked against its size and SHA-256.
    fn content(&self, record: &Artifact) -> Result<Vec<u8>, Error> {
        let blob = self.root.join("blobs").join(&record.sha256);
        let content = read_limited(&blob, record.size).map_err(|error| Error::storage(&blob, "reading", &error))?;
        if content.len() as u64 != record.size || format!("{:x}", Sha256::digest(&content)) != record.sha256 {
            return Err(damaged(&blob, "its content does not match its SHA-256"));
        }
        Ok(content)
    }

    /// The records of the artifacts a run saved (`None`: those saved outside any run), oldest first.
    /// A damaged record is an error; at most [`MAX_LISTED`] records are read.
    pub fn list(&self, run_id: Option<&str>) -> Result<Vec<Artifact>, Error> {
        let mut records = Vec::new();
        for path in self.record_paths(&run_key(run_id))? {
            if records.len() >= MAX_LISTED {
                break;
            }
            let record = self.read_record(&path)?;
            if path.file_stem() != Some(std::ffi::OsStr::new(&record.id)) {
                return Err(damaged(&path, "it holds another artifact's record"));
            }
            records.push(record);
        }
        records.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(records)
    }

    /// Deletes the artifact with this id: its record, and its content unless another artifact has
    /// the same. An id of no artifact is [`Error::NotFound`].
    pub fn delete(&self, id: &str) -> Result<(), Error> {
        let record = self.artifact(id)?;
        let path = self.record_path(id);
        let run_key = &id[..32];
        // Under the accounting lock, so a save of this run counts what is left.
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        std::fs::remove_file(&path).map_err(|error| Error::storage(&path, "removing", &error))?;
        if let Some((count, bytes)) = runs.get_mut(run_key) {
            *count = count.saturating_sub(1);
            *bytes = bytes.saturating_sub(record.size);
        }
        drop(runs);
        let _removing = self.contents.write().unwrap_or_else(PoisonError::into_inner);
        if !self.blob_in_use(&record.sha256)? {
            let blob = self.root.join("blobs").join(&record.sha256);
            match std::fs::remove_file(&blob) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::storage(&blob, "removing", &error));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes every stored content no record uses (left by a crash between a content and its
    /// record, or by a record removed by hand); returns how many. Reads every record.
    pub fn collect_garbage(&self) -> Result<usize, Error> {
        let _removing = self.contents.write().unwrap_or_else(PoisonError::into_inner);
        let used = self.blobs_in_use()?;
        let directory = self.root.join("blobs");
        let mut removed = 0;
        for entry in std::fs::read_dir(&directory).map_err(|error| Error::storage(&directory, "listing", &error))? {
            let entry = entry.map_err(|error| Error::storage(&directory, "listing", &error))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporary files of writes under way are left alone; `fs` removes stale ones.
            if name.starts_with('.') || used.contains(&name) {
                continue;
            }
            std::fs::remove_file(entry.path()).map_err(|error| Error::storage(&entry.path(), "removing", &error))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Whether any record uses the content `sha256`.
    fn blob_in_use(&self, sha256: &str) -> Result<bool, Error> {
        Ok(self.blobs_in_use()?.contains(sha256))
    }

    /// The contents every record uses.
    fn blobs_in_use(&self) -> Result<std::collections::HashSet<String>, Error> {
        let runs = self.root.join("runs");
        let mut used = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&runs).map_err(|error| Error::storage(&runs, "listing", &error))? {
            let entry = entry.map_err(|error| Error::storage(&runs, "listing", &error))?;
            let key = entry.file_name().to_string_lossy().into_owned();
            if !is_hex(&key, 32) {
                continue;
            }
            for path in self.record_paths(&key)? {
                used.insert(self.read_record(&path)?.sha256);
            }
        }
        Ok(used)
    }

    /// Where the record of `id` (a valid id) is.
    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("runs").join(&id[..32]).join(format!("{id}.json"))
    }

    /// The record files of a run (not the leftovers of interrupted writes).
    fn record_paths(&self, run_key: &str) -> Result<Vec<PathBuf>, Error> {
        let directory = self.root.join("runs").join(run_key);
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::storage(&directory, "listing", &error)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| Error::storage(&directory, "listing", &error))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.strip_suffix(".json").is_some_and(valid_id) {
                paths.push(entry.path());
            }
        }
        Ok(paths)
    }

    /// Reads a record and checks what it says against where it is: its id names its run's directory,
    /// its producer's run hashes to it, its hash is a hash, its size within the store's limit.
    fn read_record(&self, path: &Path) -> Result<Artifact, Error> {
        let bytes = match read_limited(path, MAX_RECORD_BYTES) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    name: path.display().to_string(),
                    version: None,
                });
            }
            Err(error) => return Err(Error::storage(path, "reading", &error)),
        };
        let record: Artifact = serde_json::from_slice(&bytes).map_err(|error| damaged(path, &error.to_string()))?;
        if !is_hex(&record.sha256, 64) {
            return Err(damaged(path, "its SHA-256 is not 64 lowercase hex characters"));
        }
        if record.size > self.limits.max_artifact_bytes {
            return Err(damaged(path, "its size is over the store's artifact limit"));
        }
        let directory = path
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        let key = run_key(record.producer.run_id.as_deref());
        if !valid_id(&record.id) || record.id[..32] != key || directory.as_deref() != Some(key.as_str()) {
            return Err(damaged(path, "it is not where its run keeps its records"));
        }
        Ok(record)
    }

    /// A run's artifacts and their bytes, counted from its records.
    fn run_totals(&self, run_key: &str) -> Result<(u64, u64), Error> {
        let mut totals = (0u64, 0u64);
        for path in self.record_paths(run_key)? {
            let record = self.read_record(&path)?;
            totals = (totals.0 + 1, totals.1.saturating_add(record.size));
        }
        Ok(totals)
    }
}

/// Whether `text` is `length` lowercase hex characters.
fn is_hex(text: &str, length: usize) -> bool {
    text.len() == length && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `id` has the form of an artifact id (so it can become a path).
fn valid_id(id: &str) -> bool {
    is_hex(id, 64)
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        name: id[..id.floor_char_boundary(64)].to_owned(),
        version: None,
    }
}

/// The directory of a run's records: the first 128 bits of the SHA-256 of its id, so any id makes a
/// safe file name. Artifacts saved outside a run share the key of the empty id.
pub(super) fn run_key(run_id: Option<&str>) -> String {
    let digest = Sha256::digest(run_id.unwrap_or_default().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// 128 random bits, lowercase hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // Without an entropy source the clock and a counter still make ids distinct in this store.
    if getrandom::getrandom(&mut bytes).is_err() {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&now_ms().to_le_bytes());
        bytes[8..].copy_from_slice(&next.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn damaged(path: &Path, why: &str) -> Error {
    Error::Storage {
        message: format!("{} is damaged: {why}", path.display()),
    }
}

/// Checks what [`NewArtifact`] promises about its fields.
fn check(artifact: &NewArtifact) -> Result<(), Error> {
    let invalid = |message: String| Err(Error::InvalidArtifact { message });
    let name = &artifact.name;
    // A host may save an artifact under its name: no separators, no `.`/`..`, and nothing that hides
    // or reorders what a person sees (bidirectional overrides, zero-width characters).
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    if name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(hidden)
    {
        return invalid(format!(
            "the name {:?} must have 1 to 255 bytes, no '/' or '\\', not be '.' or '..', and no control or invisible characters",
            &name[..name.floor_char_boundary(64)]
        ));
    }
    let mime = artifact.mime_type.to_ascii_lowercase();
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let valid_mime = mime.len() <= 255
        && mime.is_ascii()
        && !mime.chars().any(|c| c.is_ascii_control())
        && essence
            .split_once('/')
            .is_some_and(|(kind, subtype)| token(kind) && token(subtype));
    if !valid_mime {
        return invalid(format!(
            "{:?} is not a MIME type (type/subtype)",
            &artifact.mime_type[..artifact.mime_type.floor_char_boundary(64)]
        ));
    }
    if essence.starts_with("text/") && std::str::from_utf8(&artifact.content).is_err() {
        return invalid(format!("a {essence} artifact must be UTF-8 text"));
    }
    if (essence == "application/json" || essence.ends_with("+json"))
        && serde_json::from_slice::<serde::de::IgnoredAny>(&artifact.content).is_err()
    {
        return invalid(format!("a {essence} artifact must be one JSON document"));
    }
    let metadata = serde_json::to_vec(&artifact.metadata).map_or(usize::MAX, |json| json.len());
    if metadata > MAX_METADATA_BYTES {
        return invalid(format!("the metadata is over {MAX_METADATA_BYTES} bytes as JSON"));
    }
    Ok(())
}
