//! The replay cache of a consent verifier: the nonces of the tokens it admitted, each kept until its
//! token expires, in memory and, optionally, in a file that outlives the process.
//!
//! The file (`Verifier::with_replay_file`) starts with the 8 bytes `KAIRPL1\n`; each admitted token
//! appends one record — its expiry (u64, little-endian), the 32-byte replay key, the number of grants it
//! draws on (u8) and their 32-byte digests, then the first 8 bytes of SHA-256 over all of that — and the
//! file is synced before the token is admitted. Opening reads the records up to the first incomplete
//! or damaged one (a crash mid-append), keeps those not yet expired, and rewrites the file with only
//! them (atomically, `kai_core::fs::write_atomic`); it is rewritten the same way whenever it holds
//! more than twice the live records. One verifier writes a file at a time (`<path>.lock`).

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;

/// The most grants one token may draw on: each is charged in the cache (and stored in its record).
pub(crate) const MAX_GRANTS: usize = 64;
/// The longest record: expiry, key, grant count, grants, check.
const MAX_RECORD_BYTES: usize = 41 + 32 * MAX_GRANTS + 8;
/// Records a file may hold beyond twice the live ones before it is rewritten.
const SPARE_RECORDS: usize = 1_000;

/// Nonces seen, each kept until its token expires; bounded in entries, in bytes (an entry is a digest of
/// issuer and nonce) and per grant. When it is full a new nonce is refused: forgetting a live nonce
/// would let its token be replayed.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    /// Expiry and grants (the roots of the token's chains) by digest of issuer and nonce.
    entries: HashMap<[u8; 32], (u64, Vec<[u8; 32]>)>,
    /// The same entries by expiry, so expired ones leave in order, in logarithmic time each.
    by_expiry: BTreeSet<(u64, [u8; 32])>,
    /// Live entries per grant (the digest of the token at the root of the chain).
    per_grant: HashMap<[u8; 32], usize>,
    pub(crate) capacity: usize,
    pub(crate) per_grant_limit: usize,
    /// The file the entries are kept in too, if any.
    log: Option<ReplayLog>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
            per_grant: HashMap::new(),
            capacity,
            per_grant_limit: (capacity / 100).max(1),
            log: None,
        }
    }

    /// Records the replay key `key` (a digest of a token's issuer and nonce), valid until `exp` under
    /// `grants` (every root its chains come from, each charged): `Ok(false)` if it was seen before, an
    /// error if the cache, or a grant's share of it, is full of nonces still live at `now`, or if the
    /// file could not record it (a nonce that would be forgotten by a restart is not admitted).
    pub(crate) fn insert(&mut self, key: [u8; 32], grants: &[[u8; 32]], exp: u64, now: u64) -> Result<bool, Error> {
        self.expire(now);
        if self.entries.contains_key(&key) {
            return Ok(false);
        }
        if self.entries.len() >= self.capacity {
            return Err(Error::ReplayCacheFull {
                capacity: self.capacity,
            });
        }
        if grants.iter().any(|grant| {
            self.per_grant
                .get(grant)
                .is_some_and(|&count| count >= self.per_grant_limit)
        }) {
            return Err(Error::GrantBusy {
                limit: self.per_grant_limit,
            });
        }
        if let Some(log) = &mut self.log {
            log.append(&record(key, grants, exp)?)?;
        }
        self.remember(key, grants, exp);
        self.compact_if_sparse()?;
        Ok(true)
    }

    fn remember(&mut self, key: [u8; 32], grants: &[[u8; 32]], exp: u64) {
        for grant in grants {
            *self.per_grant.entry(*grant).or_insert(0) += 1;
        }
        self.by_expiry.insert((exp, key));
        self.entries.insert(key, (exp, grants.to_vec()));
    }

    /// Drops the entries that expired before `now`.
    fn expire(&mut self, now: u64) {
        while self.by_expiry.first().is_some_and(|first| first.0 < now) {
            if let Some((_, key)) = self.by_expiry.pop_first()
                && let Some((_, grants)) = self.entries.remove(&key)
            {
                for grant in grants {
                    if let Some(count) = self.per_grant.get_mut(&grant) {
                        *count -= 1;
                        if *count == 0 {
                            self.per_grant.remove(&grant);
                        }
                    }
                }
            }
        }
    }
}

/// The magic bytes a replay file starts with.
const MAGIC: &[u8; 8] = b"KAIRPL1\n";

/// One record's bytes.
fn record(key: [u8; 32], grants: &[[u8; 32]], exp: u64) -> Result<Vec<u8>, Error> {
    let count = u8::try_from(grants.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_GRANTS)
        .ok_or_else(|| Error::TokenMalformed {
            reason: format!("a token may draw on at most {MAX_GRANTS} grants"),
        })?;
    let mut bytes = Vec::with_capacity(49 + 32 * grants.len());
    bytes.extend_from_slice(&exp.to_le_bytes());
    bytes.extend_from_slice(&key);
    bytes.push(count);
    for grant in grants {
        bytes.extend_from_slice(grant);
    }
    let check = Sha256::digest(&bytes);
    bytes.extend_from_slice(&check[..8]);
    Ok(bytes)
}

/// One record read back: the expiry, the replay key and the grants charged.
struct Record {
    exp: u64,
    key: [u8; 32],
    grants: Vec<[u8; 32]>,
}

/// The records in `bytes` (after the magic), up to the first incomplete or damaged one, and how many
/// bytes they took.
fn records(all: &[u8]) -> (Vec<Record>, usize) {
    let mut bytes = all;
    let mut found = Vec::new();
    while bytes.len() >= 41 {
        let count = usize::from(bytes[40]);
        let length = 41 + 32 * count + 8;
        if count > MAX_GRANTS || bytes.len() < length {
            break;
        }
        let (body, check) = (&bytes[..length - 8], &bytes[length - 8..length]);
        if Sha256::digest(body)[..8] != *check {
            break;
        }
        let exp = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        let key: [u8; 32] = body[8..40].try_into().unwrap_or_default();
        let grants = body[41..]
            .chunks_exact(32)
            .map(|grant| grant.try_into().unwrap_or_default())
            .collect();
        found.push(Record { exp, key, grants });
        bytes = &bytes[length..];
    }
    (found, all.len() - bytes.len())
}

/// Whether `rest` is the beginning of a record that a crash cut short: shorter than a record's fixed
/// part, or than the length its grant count makes it.
fn is_cut_short(rest: &[u8]) -> bool {
    match rest.get(40) {
        None => true,
        Some(&count) => usize::from(count) <= MAX_GRANTS && rest.len() < 41 + 32 * usize::from(count) + 8,
    }
}

/// A failure of the replay file at `path`.
fn file_error(path: &Path, error: std::io::Error) -> Error {
    Error::Io(format!("replay file {}: {error}", path.display()))
}

/// The file a replay cache is kept in.
#[derive(Debug)]
struct ReplayLog {
    path: PathBuf,
    file: std::fs::File,
    /// Records in the file, live or not.
    records: usize,
    /// Set when a write may have left the file without a record the cache holds (a failed append that
    /// could not be cut back, a rewrite that failed after the rename): no token is admitted until the
    /// file is opened again, since a restart would forget what it lacks.
    broken: bool,
    _lock: kai_core::fs::FileLock,
}

impl ReplayLog {
    /// Appends one record and syncs it; a failed write is cut back off, so the next record does not
    /// follow a partial one.
    fn append(&mut self, record: &[u8]) -> Result<(), Error> {
        let io = |e| file_error(&self.path, e);
        if self.broken {
            return Err(Error::Io(format!(
                "replay file {}: an earlier write failed; open the verifier again",
                self.path.display()
            )));
        }
        let length = self.file.metadata().map_err(io)?.len();
        if let Err(error) = self.file.write_all(record).and_then(|()| self.file.sync_data()) {
            self.broken = self.file.set_len(length).and_then(|()| self.file.sync_data()).is_err();
            return Err(io(error));
        }
        self.records += 1;
        Ok(())
    }
}

impl ReplayCache {
    /// Keeps this cache in the file at `path` too: loads the records there not expired at `now`, and
    /// rewrites the file with only them. Fails with [`Error::Io`] if another verifier has the file, or
    /// it cannot be read or written, or it is not a replay file.
    pub(crate) fn persist(&mut self, path: &Path, now: u64) -> Result<(), Error> {
        let io = |e| file_error(path, e);
        let lock = kai_core::fs::FileLock::acquire(path).map_err(io)?;
        // The most a file of this cache can hold before it is rewritten.
        let limit = MAGIC.len() + (2 * self.capacity + SPARE_RECORDS + 1) * MAX_RECORD_BYTES;
        let bytes = match std::fs::metadata(path) {
            Ok(metadata) if metadata.len() > limit as u64 => {
                return Err(Error::Io(format!(
                    "replay file {} is larger than a cache of {} could write",
                    path.display(),
                    self.capacity
                )));
            }
            Ok(_) => std::fs::read(path).map_err(io)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MAGIC.to_vec(),
            Err(e) => return Err(io(e)),
        };
        let Some(body) = bytes.strip_prefix(MAGIC) else {
            return Err(Error::Io(format!("{} is not a replay file", path.display())));
        };
        let (found, length) = records(body);
        // A crash cuts short only the last record: what follows the records read must be the start of
        // one. Anything else is damage, and reading on would lose the records after it.
        if !is_cut_short(&body[length..]) {
            return Err(Error::Io(format!(
                "replay file {} is damaged at byte {}",
                path.display(),
                MAGIC.len() + length
            )));
        }
        for Record { exp, key, grants } in found {
            if exp >= now && !self.entries.contains_key(&key) {
                self.remember(key, &grants, exp);
            }
        }
        let file = self.rewrite(path)?;
        self.log = Some(ReplayLog {
            path: path.to_owned(),
            file,
            records: self.entries.len(),
            broken: false,
            _lock: lock,
        });
        Ok(())
    }

    /// Writes the live entries to `path` atomically and opens it for appending.
    fn rewrite(&self, path: &Path) -> Result<std::fs::File, Error> {
        let io = |e| file_error(path, e);
        let mut bytes = MAGIC.to_vec();
        for (key, (exp, grants)) in &self.entries {
            bytes.extend_from_slice(&record(*key, grants, *exp)?);
        }
        kai_core::fs::write_atomic(path, &bytes).map_err(io)?;
        std::fs::OpenOptions::new().append(true).open(path).map_err(io)
    }

    /// Rewrites the file once it holds more than twice the live records (and at least a thousand).
    fn compact_if_sparse(&mut self) -> Result<(), Error> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        if log.records < SPARE_RECORDS || log.records <= 2 * self.entries.len() {
            return Ok(());
        }
        let path = log.path.clone();
        let rewritten = self.rewrite(&path);
        if let Some(log) = &mut self.log {
            match rewritten {
                Ok(file) => {
                    log.file = file;
                    log.records = self.entries.len();
                }
                // The rename may have happened: the old file may no longer be the one at `path`.
                Err(_) => log.broken = true,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(nonce: &str) -> [u8; 32] {
        Sha256::digest(nonce.as_bytes()).into()
    }

    /// Flooding the cache must not evict a live nonce (its token could then be replayed): a full cache
    /// refuses, and makes room only as nonces expire.
    #[test]
    fn a_full_replay_cache_refuses_instead_of_forgetting() {
        let mut cache = ReplayCache::new(2);
        cache.per_grant_limit = 2;
        let grant = [[7u8; 32]];
        assert!(cache.insert(key("a"), &grant, 100, 0).unwrap());
        assert!(!cache.insert(key("a"), &grant, 100, 0).unwrap());
        assert!(cache.insert(key("b"), &[[8u8; 32]], 200, 0).unwrap());
        assert!(matches!(
            cache.insert(key("c"), &grant, 300, 50),
            Err(Error::ReplayCacheFull { capacity: 2 })
        ));
        assert!(
            !cache.insert(key("a"), &grant, 100, 50).unwrap(),
            "a is still remembered"
        );
        // Once `a` has expired its slot is free again.
        assert!(cache.insert(key("c"), &grant, 300, 101).unwrap());
        assert_eq!(cache.entries.len(), 2);
        assert_eq!(cache.by_expiry.len(), 2);
        assert_eq!(cache.per_grant.get(&grant[0]), Some(&1));
    }

    /// The file keeps what the memory keeps: a restart forgets no live nonce, drops the expired ones,
    /// and a record cut short by a crash is dropped without losing those before it.
    #[test]
    fn the_file_outlives_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay");
        let grant = [[7u8; 32]];
        let mut cache = ReplayCache::new(100);
        cache.per_grant_limit = 100;
        cache.persist(&path, 0).unwrap();
        assert!(cache.insert(key("a"), &grant, 100, 0).unwrap());
        assert!(cache.insert(key("b"), &grant, 200, 0).unwrap());
        // One verifier writes the file at a time.
        assert!(matches!(ReplayCache::new(100).persist(&path, 0), Err(Error::Io(_))));
        drop(cache);
        // A crash mid-append leaves part of a record.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&record(key("c"), &grant, 300).unwrap()[..30]);
        std::fs::write(&path, &bytes).unwrap();

        let mut restarted = ReplayCache::new(100);
        restarted.per_grant_limit = 100;
        restarted.persist(&path, 150).unwrap();
        assert!(
            !restarted.insert(key("b"), &grant, 200, 150).unwrap(),
            "b survived the restart"
        );
        assert!(
            restarted.insert(key("a"), &grant, 400, 150).unwrap(),
            "a expired before the restart"
        );
        assert!(
            restarted.insert(key("c"), &grant, 300, 150).unwrap(),
            "c was never recorded whole"
        );
        drop(restarted);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(records(&bytes[MAGIC.len()..]).0.len(), 3);
    }

    #[test]
    fn damaged_or_foreign_files_are_refused_or_cut_at_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay");
        std::fs::write(&path, b"not a replay file").unwrap();
        assert!(matches!(ReplayCache::new(10).persist(&path, 0), Err(Error::Io(_))));
        let grant = [[1u8; 32]];
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&record(key("a"), &grant, 100).unwrap());
        let mut damaged = record(key("b"), &grant, 100).unwrap();
        damaged[3] ^= 1;
        bytes.extend_from_slice(&damaged);
        bytes.extend_from_slice(&record(key("c"), &grant, 100).unwrap());
        assert_eq!(records(&bytes[MAGIC.len()..]).0.len(), 1);
        // Damage before the last record would drop the records after it: the file is refused.
        std::fs::write(&path, &bytes).unwrap();
        let Err(Error::Io(reason)) = ReplayCache::new(10).persist(&path, 0) else {
            panic!("a file damaged in the middle was opened");
        };
        assert!(reason.contains("damaged"), "{reason}");
        // A file larger than the cache could have written is not read.
        std::fs::write(&path, vec![0u8; 8 + 1_021 * MAX_RECORD_BYTES + 1]).unwrap();
        let Err(Error::Io(reason)) = ReplayCache::new(0).persist(&path, 0) else {
            panic!("an oversized file was read");
        };
        assert!(reason.contains("larger"), "{reason}");
        // A huge grant count is not believed.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[0u8; 40]);
        huge.push(255);
        assert!(records(&huge[MAGIC.len()..]).0.is_empty());
    }

    #[test]
    fn a_sparse_file_is_rewritten_with_the_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay");
        let mut cache = ReplayCache::new(10_000);
        cache.per_grant_limit = 10_000;
        cache.persist(&path, 0).unwrap();
        for i in 0..3_000u64 {
            // Each nonce lives ten seconds; time moves a second per token.
            assert!(cache.insert(key(&i.to_string()), &[[1u8; 32]], i + 10, i).unwrap());
        }
        let kept = records(&std::fs::read(&path).unwrap()[MAGIC.len()..]).0.len();
        assert!(kept <= 1_000, "{kept} records for about 10 live nonces");
    }
}
