//! Signed presence records: where an agent accepts sessions and what it offers, valid until an expiry.
//!
//! A record is a compact JWS (EdDSA) signed by the agent it describes, so anyone can pass it on and
//! every receiver checks it: a record signed by another key, expired, issued in the future or valid
//! for longer than [`MAX_PRESENCE_TTL`] is refused. A [`Directory`] keeps the newest valid record per
//! agent (by `seq`), so a replayed older record never replaces a newer one.
//!
//! ```
//! use std::time::Duration;
//! use kai_klp::presence::{Directory, Presence};
//! use kai_klp::{Capability, Identity};
//!
//! let bob = Identity::generate();
//! let record = Presence::new(&bob, ["tcp://127.0.0.1:7000"], [Capability::call_tool("weather")], Duration::from_secs(300));
//! let token = record.sign(&bob)?;
//!
//! let mut directory = Directory::new();
//! assert!(directory.offer(&token)?);
//! assert_eq!(directory.get(&bob.did()).map(|p| p.addrs.clone()), Some(vec!["tcp://127.0.0.1:7000".to_owned()]));
//! # Ok::<(), kai_klp::Error>(())
//! ```

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{now_millis, now_seconds};
use crate::consent::Capability;
use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;
use crate::jws;

/// The longest validity a record may claim; longer-lived records are refused.
pub const MAX_PRESENCE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How far in the future a record's issue time may be (clock skew between peers).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// At most this many addresses or capabilities in one record.
pub const MAX_ENTRIES: usize = 64;
/// The largest signed record accepted: it must fit in one Kademlia message and one gossip message.
pub const MAX_PRESENCE_BYTES: usize = 8 * 1024;
/// How many agents a [`Directory`] holds records for unless told otherwise.
pub const DEFAULT_DIRECTORY_CAPACITY: usize = 4096;

/// Where an agent can be reached and what it offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The agent; the record must be signed by its key.
    pub did: Did,
    /// Where it accepts KLP sessions, as URLs: `tcp://host:port`, `ws://host:port/path`, `wss://…`.
    pub addrs: Vec<String>,
    /// What it offers (what a caller may ask it to grant).
    pub caps: Vec<Capability>,
    /// Orders one agent's records: a receiver keeps the highest. Milliseconds since the Unix epoch at
    /// signing, by default.
    pub seq: u64,
    /// When it was issued (seconds since the Unix epoch).
    pub iat: u64,
    /// When it stops being valid (seconds since the Unix epoch).
    pub exp: u64,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::PresenceInvalid { reason: reason.into() }
}

impl Presence {
    /// A record for `identity`, valid for `ttl` from now.
    pub fn new(
        identity: &Identity,
        addrs: impl IntoIterator<Item = impl Into<String>>,
        caps: impl IntoIterator<Item = Capability>,
        ttl: Duration,
    ) -> Self {
        let iat = now_seconds();
        Self {
            did: identity.did(),
            addrs: addrs.into_iter().map(Into::into).collect(),
            caps: caps.into_iter().collect(),
            seq: now_millis(),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
        }
    }

    /// Signs the record as a compact JWS. `identity` must be the agent the record describes, and the
    /// signed record must fit in [`MAX_PRESENCE_BYTES`].
    pub fn sign(&self, identity: &Identity) -> Result<String, Error> {
        if identity.did() != self.did {
            return Err(invalid("a presence record is signed by the agent it describes"));
        }
        self.check_shape()?;
        let token = jws::sign(identity, jws::Kind::Presence, self)?;
        if token.len() > MAX_PRESENCE_BYTES {
            return Err(invalid(format!("the signed record exceeds {MAX_PRESENCE_BYTES} bytes")));
        }
        Ok(token)
    }

    /// Checks a signed record now: see [`Presence::verify_at`].
    pub fn verify(token: &str) -> Result<Self, Error> {
        Self::verify_at(token, now_seconds())
    }

    /// Checks a signed record at `now` (seconds since the Unix epoch): well formed and at most
    /// [`MAX_PRESENCE_BYTES`], signed by the key of the DID it names, valid for no longer than
    /// [`MAX_PRESENCE_TTL`], not expired, and not issued more than [`CLOCK_SKEW`] ahead.
    pub fn verify_at(token: &str, now: u64) -> Result<Self, Error> {
        let record = Self::authentic(token)?;
        record.check_time(now)?;
        Ok(record)
    }

    /// The checks of [`Presence::verify_at`] that do not depend on the clock: a record that fails them
    /// is forged or malformed, whereas one that fails only [`Presence::check_time`] may just have been
    /// delayed or come from a peer whose clock is off.
    pub(crate) fn authentic(token: &str) -> Result<Self, Error> {
        let unverified =
            jws::decode_within(token, MAX_PRESENCE_BYTES, jws::Kind::Presence).map_err(|e| invalid(e.to_string()))?;
        let signer: Signer = unverified.claimed_signer().map_err(|e| invalid(e.to_string()))?;
        let record: Presence = unverified.verify(&signer.did)?;
        if record.did != signer.did {
            return Err(invalid("the record names two agents"));
        }
        record.check_shape()?;
        Ok(record)
    }

    /// Whether the record is current at `now`.
    pub(crate) fn check_time(&self, now: u64) -> Result<(), Error> {
        if self.exp <= now {
            return Err(invalid(format!("expired at {}", self.exp)));
        }
        if self.iat > now.saturating_add(CLOCK_SKEW.as_secs()) {
            return Err(invalid(format!("issued in the future ({})", self.iat)));
        }
        Ok(())
    }

    fn check_shape(&self) -> Result<(), Error> {
        if self.exp <= self.iat || self.exp - self.iat > MAX_PRESENCE_TTL.as_secs() {
            return Err(invalid(format!(
                "the validity must be positive and at most {} s",
                MAX_PRESENCE_TTL.as_secs()
            )));
        }
        if self.addrs.len() > MAX_ENTRIES || self.caps.len() > MAX_ENTRIES {
            return Err(invalid(format!("more than {MAX_ENTRIES} addresses or capabilities")));
        }
        Ok(())
    }
}

/// The newest valid presence record per agent, for at most a fixed number of agents (anyone can make
/// new identities and sign records for them, so the number must be bounded).
///
/// When the directory is full, expired records go first; then a newcomer takes the place of the oldest
/// record of the source (the relaying peer) that brought the most, so a flood relayed by a few peers
/// loses its own records before anyone else's. Records of *known* agents
/// ([`mark_known`](Self::mark_known): peers the application deals with) and records this node learned
/// itself (no source) are never pushed out by others; each source may fill at most a share of the
/// directory ([`with_per_source_limit`](Self::with_per_source_limit)).
#[derive(Debug)]
pub struct Directory {
    records: HashMap<Did, Held>,
    /// Agents marked known, at most as many as the directory holds.
    known: std::collections::HashSet<Did>,
    /// Records held per source that passed them on.
    per_source: HashMap<String, usize>,
    capacity: usize,
    per_source_limit: usize,
}

/// A record held, with its signed text, who passed it on (none for this node's own knowledge), and
/// when its agent was first held.
#[derive(Debug)]
struct Held {
    record: Presence,
    token: String,
    source: Option<String>,
    since: u64,
}

impl Default for Directory {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_DIRECTORY_CAPACITY)
    }
}

impl Directory {
    /// An empty directory holding up to [`DEFAULT_DIRECTORY_CAPACITY`] agents.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty directory holding up to `capacity` agents (at least one), of which one source may
    /// bring at most a sixteenth (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            records: HashMap::new(),
            known: std::collections::HashSet::new(),
            per_source: HashMap::new(),
            capacity,
            per_source_limit: (capacity / 16).max(1),
        }
    }

    /// Sets how many records one source may have brought into the directory.
    pub fn with_per_source_limit(mut self, limit: usize) -> Self {
        self.per_source_limit = limit.max(1);
        self
    }

    /// Marks `did` as known (a peer the application deals with: one it had a session with, or
    /// configured): its records are never pushed out by others. At most as many agents as the directory
    /// holds can be known; beyond that this does nothing.
    pub fn mark_known(&mut self, did: Did) {
        if self.known.len() < self.capacity {
            self.known.insert(did);
        }
    }

    /// Checks a signed record now and keeps it if it is newer than the one held for its agent. Returns
    /// whether it was kept; an invalid record is an error and changes nothing.
    pub fn offer(&mut self, token: &str) -> Result<bool, Error> {
        self.offer_at(token, now_seconds())
    }

    /// [`Directory::offer`] at `now` (seconds since the Unix epoch).
    pub fn offer_at(&mut self, token: &str, now: u64) -> Result<bool, Error> {
        let record = Presence::verify_at(token, now)?;
        Ok(self.keep(record, token, now))
    }

    /// [`Directory::offer_at`] for a record that `source` (a peer's id) passed on.
    pub fn offer_from_at(&mut self, token: &str, source: &str, now: u64) -> Result<bool, Error> {
        let record = Presence::verify_at(token, now)?;
        Ok(self.keep_from(record, token, Some(source), now))
    }

    /// Keeps a record already verified at `now` if it is newer than the one held for its agent.
    pub(crate) fn keep(&mut self, record: Presence, token: &str, now: u64) -> bool {
        self.keep_from(record, token, None, now)
    }

    /// [`keep`](Self::keep) for a record `source` passed on (`None`: this node's own knowledge).
    pub(crate) fn keep_from(&mut self, record: Presence, token: &str, source: Option<&str>, now: u64) -> bool {
        if self.newest_seq(&record.did, now).is_some_and(|seq| seq >= record.seq) {
            return false;
        }
        let newcomer = !self.records.contains_key(&record.did);
        if newcomer
            && let Some(source) = source
            && self
                .per_source
                .get(source)
                .is_some_and(|&count| count >= self.per_source_limit)
        {
            return false;
        }
        if newcomer && self.records.len() >= self.capacity {
            self.drop_expired(now);
            if self.records.len() >= self.capacity {
                // The source holding the most records gives up its oldest one; a newcomer relayed by
                // that very source competes only with that source's own records.
                let Some(heaviest) = self
                    .per_source
                    .iter()
                    .max_by_key(|(_, count)| **count)
                    .map(|(source, _)| source.clone())
                else {
                    return false;
                };
                let Some(victim) = self
                    .records
                    .iter()
                    .filter(|(did, held)| held.source.as_ref() == Some(&heaviest) && !self.known.contains(did))
                    .min_by_key(|(_, held)| held.since)
                    .map(|(did, _)| *did)
                else {
                    return false;
                };
                self.remove(&victim);
            }
        }
        let since = self.records.get(&record.did).map_or(now, |held| held.since);
        self.remove(&record.did);
        if let Some(source) = source {
            *self.per_source.entry(source.to_owned()).or_insert(0) += 1;
        }
        self.records.insert(
            record.did,
            Held {
                record,
                token: token.to_owned(),
                source: source.map(str::to_owned),
                since,
            },
        );
        true
    }

    /// Removes every record expired at `now`.
    fn drop_expired(&mut self, now: u64) {
        let expired: Vec<Did> = self
            .records
            .iter()
            .filter(|(_, held)| held.record.exp <= now)
            .map(|(did, _)| *did)
            .collect();
        for did in expired {
            self.remove(&did);
        }
    }

    /// Removes `did`'s record, and its count against its source.
    fn remove(&mut self, did: &Did) {
        let Some(held) = self.records.remove(did) else {
            return;
        };
        if let Some(source) = held.source
            && let Some(count) = self.per_source.get_mut(&source)
        {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// The `seq` of the unexpired record held for `did`.
    pub(crate) fn newest_seq(&self, did: &Did, now: u64) -> Option<u64> {
        self.get_at(did, now).map(|record| record.seq)
    }

    /// The unexpired record held for `did`.
    pub fn get(&self, did: &Did) -> Option<&Presence> {
        self.get_at(did, now_seconds())
    }

    /// [`Directory::get`] at `now`.
    pub fn get_at(&self, did: &Did, now: u64) -> Option<&Presence> {
        self.records
            .get(did)
            .map(|held| &held.record)
            .filter(|record| record.exp > now)
    }

    /// The signed form of the unexpired record held for `did`, to pass on.
    pub fn token(&self, did: &Did) -> Option<&str> {
        let now = now_seconds();
        self.records
            .get(did)
            .filter(|held| held.record.exp > now)
            .map(|held| held.token.as_str())
    }

    /// Every unexpired record, dropping the expired ones.
    pub fn current(&mut self) -> Vec<Presence> {
        self.drop_expired(now_seconds());
        self.records.values().map(|held| held.record.clone()).collect()
    }
}

/// The claim that names a presence record's signer, read before the signature is checked.
#[derive(serde::Deserialize)]
struct Signer {
    did: Did,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signs through the JWS layer directly, not `Presence::sign`: the tests need records that
    /// `sign` refuses (overlong, expired), as a hostile peer would make them.
    fn signed(identity: &Identity, seq: u64, iat: u64, exp: u64) -> String {
        let record = Presence {
            did: identity.did(),
            addrs: vec![format!("tcp://127.0.0.1:{seq}")],
            caps: vec![Capability::call_tool("weather")],
            seq,
            iat,
            exp,
        };
        jws::sign(identity, jws::Kind::Presence, &record).unwrap()
    }

    #[test]
    fn forged_expired_future_and_overlong_records_are_refused() {
        let (bob, mallory) = (Identity::generate(), Identity::generate());
        let mut forged = Presence::new(&mallory, ["tcp://10.0.0.1:1"], [], Duration::from_secs(60));
        forged.did = bob.did();
        let forged = jws::sign(&mallory, jws::Kind::Presence, &forged).unwrap();
        assert!(matches!(Presence::verify(&forged), Err(Error::BadSignature)));
        let mallorys = Presence::new(&mallory, ["tcp://10.0.0.1:1"], [], Duration::from_secs(60));
        assert!(matches!(mallorys.sign(&bob), Err(Error::PresenceInvalid { .. })));

        let cases = [
            (signed(&bob, 1, 1000, 1100), 1100, "expired"),
            (signed(&bob, 1, 1100, 1200), 1000, "future"),
            (signed(&bob, 1, 1000, 1000 + 2 * 86_400), 1001, "validity"),
        ];
        for (token, now, reason) in cases {
            match Presence::verify_at(&token, now) {
                Err(Error::PresenceInvalid { reason: r }) => assert!(r.contains(reason), "{r}"),
                other => panic!("expected {reason}, got {other:?}"),
            }
        }
        let mut directory = Directory::new();
        assert!(directory.offer_at("not.a.token", 1000).is_err());
        assert!(directory.current().is_empty());
    }
}
