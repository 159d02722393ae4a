//! Consent: signed, expiring, attenuable capability tokens (UCAN-style claims in an EdDSA JWS).
//!
//! A token says: `iss` lets `aud` do these things (`att`) between `nbf` and `exp`. A token can be
//! delegated: its holder issues a narrower token to someone else, embedding the one it holds in `prf`.
//! A verifier accepts a chain only if it starts at an issuer it trusts, every link was issued by the
//! audience of the link before, and no link grants more, or for longer, than its proof.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use kai_core::{AgentHook, HookContext, ToolCall, ToolDecision};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::AuditLog;
use crate::clock::now_seconds;
use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;
use crate::jws;

/// The UCAN claim-layout version these tokens follow.
pub const UCAN_VERSION: &str = "0.10.0";
/// The longest delegation chain accepted.
pub const MAX_CHAIN_DEPTH: usize = 8;

/// A thing that may be done: an ability on a resource, such as `call` on `tool:web_search` or `read`
/// on `memory:notes`. A resource ending in `*` covers every resource with that prefix; the ability `*`
/// covers every ability, and `a/*` covers `a/…`. Serialised (in presence records) as
/// `{"with": resource, "can": ability}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Capability {
    /// The resource URI.
    #[serde(rename = "with")]
    pub resource: String,
    /// The ability.
    #[serde(rename = "can")]
    pub ability: String,
}

impl Capability {
    /// A capability.
    pub fn new(resource: impl Into<String>, ability: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            ability: ability.into(),
        }
    }

    /// Calling the tool `name` (`call` on `tool:<name>`).
    pub fn call_tool(name: &str) -> Self {
        Self::new(format!("tool:{name}"), "call")
    }

    /// Whether holding `self` allows `other`.
    pub fn covers(&self, other: &Capability) -> bool {
        let resource = match self.resource.strip_suffix('*') {
            Some(prefix) => other.resource.starts_with(prefix),
            None => self.resource == other.resource,
        };
        let ability = self.ability == "*"
            || self.ability == other.ability
            || self
                .ability
                .strip_suffix("/*")
                .is_some_and(|p| other.ability.starts_with(&format!("{p}/")));
        resource && ability
    }
}

/// The claims of a consent token (UCAN 0.10 names; proofs are embedded tokens rather than CIDs, so a
/// chain verifies on its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The claim-layout version.
    pub ucv: String,
    /// Who grants.
    pub iss: Did,
    /// Who receives.
    pub aud: Did,
    /// Not valid before (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry (seconds since the Unix epoch).
    pub exp: u64,
    /// A random nonce, so that replays can be detected.
    pub nnc: String,
    /// Granted abilities by resource: `{"tool:x": {"call": [{}]}}` (caveat lists are kept, unused).
    pub att: BTreeMap<String, BTreeMap<String, Vec<serde_json::Value>>>,
    /// The tokens this one is delegated from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prf: Vec<String>,
}

impl Claims {
    /// The capabilities granted.
    pub fn capabilities(&self) -> impl Iterator<Item = Capability> + '_ {
        self.att
            .iter()
            .flat_map(|(resource, abilities)| abilities.keys().map(move |ability| Capability::new(resource, ability)))
    }
}

/// Issues a token from `issuer` to `audience` granting `capabilities` for `ttl`, delegated from
/// `proofs` (empty for a root grant).
pub fn issue(
    issuer: &Identity,
    audience: &Did,
    capabilities: &[Capability],
    ttl: Duration,
    proofs: &[String],
) -> Result<String, Error> {
    issue_at(issuer, audience, capabilities, now_seconds(), ttl, proofs)
}

/// [`issue`] with an explicit issuing time (seconds since the Unix epoch).
pub fn issue_at(
    issuer: &Identity,
    audience: &Did,
    capabilities: &[Capability],
    now: u64,
    ttl: Duration,
    proofs: &[String],
) -> Result<String, Error> {
    let mut att: BTreeMap<String, BTreeMap<String, Vec<serde_json::Value>>> = BTreeMap::new();
    for capability in capabilities {
        att.entry(capability.resource.clone())
            .or_default()
            .insert(capability.ability.clone(), vec![serde_json::json!({})]);
    }
    let mut nonce = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let claims = Claims {
        ucv: UCAN_VERSION.into(),
        iss: issuer.did(),
        aud: *audience,
        nbf: Some(now),
        exp: now.saturating_add(ttl.as_secs()),
        nnc: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce),
        att,
        prf: proofs.to_vec(),
    };
    jws::sign(issuer, &claims)
}

/// The id of a token, for revocation lists: base64url SHA-256 of its compact form.
pub fn token_id(token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// Checks tokens presented to one agent (`audience`).
#[derive(Debug)]
pub struct Verifier {
    audience: Did,
    trusted_roots: HashSet<Did>,
    clock_skew: u64,
    revoked: RwLock<HashSet<String>>,
    seen: Mutex<ReplayCache>,
    audit: Option<Arc<AuditLog>>,
}

/// Nonces seen, each kept until its token expires; bounded in size.
#[derive(Debug)]
struct ReplayCache {
    entries: HashMap<(Did, String), u64>,
    capacity: usize,
}

impl ReplayCache {
    /// Records a nonce; false if it was seen before. When full, expired entries are dropped first, then
    /// the entries closest to expiry.
    fn insert(&mut self, issuer: Did, nonce: String, exp: u64, now: u64) -> bool {
        if self.entries.contains_key(&(issuer, nonce.clone())) {
            return false;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| *e >= now);
            while self.entries.len() >= self.capacity {
                let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) else {
                    break;
                };
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert((issuer, nonce), exp);
        true
    }
}

impl Verifier {
    /// A verifier for tokens addressed to `audience`, accepting chains rooted at `trusted_roots`
    /// (usually the agent itself, which grants access to its own tools). Clock skew 60 s; replay cache
    /// of 100,000 nonces.
    pub fn new(audience: Did, trusted_roots: impl IntoIterator<Item = Did>) -> Self {
        Self {
            audience,
            trusted_roots: trusted_roots.into_iter().collect(),
            clock_skew: 60,
            revoked: RwLock::default(),
            seen: Mutex::new(ReplayCache {
                entries: HashMap::new(),
                capacity: 100_000,
            }),
            audit: None,
        }
    }

    /// Records every decision in `log` as a `consent` entry: `admit` or `authorize`, the token's id,
    /// the issuer, the capability asked for, whether it was allowed, and why not. A decision that
    /// cannot be recorded is a refusal: an agent that cannot keep its record should not act.
    pub fn with_audit(mut self, log: Arc<AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// Sets the clock skew tolerated on `nbf` and `exp`.
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew.as_secs();
        self
    }

    /// Sets how many nonces the replay cache holds.
    pub fn with_replay_capacity(self, capacity: usize) -> Self {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).capacity = capacity.max(1);
        self
    }

    /// Revokes a token (by [`token_id`]); chains through it are refused from now on.
    pub fn revoke(&self, token_id: impl Into<String>) {
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token_id.into());
    }

    /// Admits a token presented with a request: checks the chain and records its nonce, so the same
    /// token cannot be presented twice.
    pub fn admit(&self, token: &str) -> Result<Claims, Error> {
        self.admit_at(token, now_seconds())
    }

    /// [`admit`](Self::admit) at an explicit time.
    pub fn admit_at(&self, token: &str, now: u64) -> Result<Claims, Error> {
        let decision = self.admit_unrecorded(token, now);
        self.record("admit", token, None, decision)
    }

    fn admit_unrecorded(&self, token: &str, now: u64) -> Result<Claims, Error> {
        let claims = self.check_at(token, now)?;
        let fresh = self.seen.lock().unwrap_or_else(PoisonError::into_inner).insert(
            claims.iss,
            claims.nnc.clone(),
            claims.exp.saturating_add(self.clock_skew),
            now,
        );
        if !fresh {
            return Err(Error::Replayed);
        }
        Ok(claims)
    }

    /// Checks that `token` grants `required` now (without consuming its nonce).
    pub fn authorize(&self, token: &str, required: &Capability) -> Result<Claims, Error> {
        self.authorize_at(token, required, now_seconds())
    }

    /// [`authorize`](Self::authorize) at an explicit time.
    pub fn authorize_at(&self, token: &str, required: &Capability, now: u64) -> Result<Claims, Error> {
        let decision = self.authorize_unrecorded(token, required, now);
        self.record("authorize", token, Some(required), decision)
    }

    /// Writes a decision to the audit log, if there is one; a decision allowed but not recorded is
    /// refused.
    fn record(
        &self,
        action: &str,
        token: &str,
        required: Option<&Capability>,
        decision: Result<Claims, Error>,
    ) -> Result<Claims, Error> {
        let Some(log) = &self.audit else {
            return decision;
        };
        let data = serde_json::json!({
            "action": action,
            "token": token_id(token),
            "issuer": decision.as_ref().ok().map(|claims| claims.iss.to_string()),
            "capability": required,
            "allowed": decision.is_ok(),
            "reason": decision.as_ref().err().map(ToString::to_string),
        });
        match (log.append("consent", data), decision) {
            (Ok(_), decision) => decision,
            (Err(error), Ok(_)) => Err(error),
            (Err(error), Err(refusal)) => {
                tracing::error!(%error, "audit log append failed for a refusal");
                Err(refusal)
            }
        }
    }

    fn authorize_unrecorded(&self, token: &str, required: &Capability, now: u64) -> Result<Claims, Error> {
        let claims = self.check_at(token, now)?;
        if !claims.capabilities().any(|c| c.covers(required)) {
            return Err(Error::NotGranted {
                resource: required.resource.clone(),
                ability: required.ability.clone(),
            });
        }
        Ok(claims)
    }

    fn check_at(&self, token: &str, now: u64) -> Result<Claims, Error> {
        let claims = self.chain(token, now, 0)?;
        if claims.aud != self.audience {
            return Err(Error::WrongAudience {
                audience: claims.aud.to_string(),
            });
        }
        Ok(claims)
    }

    /// Verifies one link and, recursively, its proofs.
    fn chain(&self, token: &str, now: u64, depth: usize) -> Result<Claims, Error> {
        if depth >= MAX_CHAIN_DEPTH {
            return Err(Error::TokenMalformed {
                reason: format!("delegation chains are limited to {MAX_CHAIN_DEPTH} links"),
            });
        }
        let unverified = jws::decode::<Claims>(token)?;
        unverified.verify(&unverified.claims.iss)?;
        let claims = unverified.claims;
        let id = token_id(token);
        if self
            .revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
        {
            return Err(Error::Revoked { token_id: id });
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(self.clock_skew) < nbf
        {
            return Err(Error::NotYetValid { not_before: nbf });
        }
        if now >= claims.exp.saturating_add(self.clock_skew) {
            return Err(Error::Expired { expired_at: claims.exp });
        }
        if claims.prf.is_empty() {
            if !self.trusted_roots.contains(&claims.iss) {
                return Err(Error::UntrustedRoot {
                    issuer: claims.iss.to_string(),
                });
            }
            return Ok(claims);
        }
        let mut parents = Vec::with_capacity(claims.prf.len());
        for proof in &claims.prf {
            let parent = self.chain(proof, now, depth + 1)?;
            if parent.aud != claims.iss {
                return Err(Error::BrokenChain {
                    reason: format!(
                        "a proof was issued to {}, not to the delegator {}",
                        parent.aud, claims.iss
                    ),
                });
            }
            parents.push(parent);
        }
        for capability in claims.capabilities() {
            let covered = parents.iter().any(|parent| {
                parent.capabilities().any(|p| p.covers(&capability))
                    && claims.exp <= parent.exp
                    && parent.nbf.is_none_or(|p| claims.nbf.is_some_and(|c| c >= p))
            });
            if !covered {
                return Err(Error::Escalation {
                    reason: format!(
                        "{} on {} is not granted by any proof for the same or a longer time",
                        capability.ability, capability.resource
                    ),
                });
            }
        }
        Ok(claims)
    }
}

/// An [`AgentHook`] that lets a tool run only if the caller's consent token grants calling it
/// (`call` on `tool:<name>`). A refused call goes back to the model with the reason.
#[derive(Debug, Clone)]
pub struct ConsentHook {
    verifier: Arc<Verifier>,
    token: String,
}

impl ConsentHook {
    /// A hook checking `token` (the caller's) with `verifier` before every tool call.
    pub fn new(verifier: Arc<Verifier>, token: impl Into<String>) -> Self {
        Self {
            verifier,
            token: token.into(),
        }
    }
}

#[kai_core::async_trait]
impl AgentHook for ConsentHook {
    async fn before_tool(&self, _: &HookContext, call: &ToolCall, _: &serde_json::Value) -> ToolDecision {
        match self.verifier.authorize(&self.token, &Capability::call_tool(&call.name)) {
            Ok(_) => ToolDecision::Allow,
            Err(error) => ToolDecision::Deny {
                reason: format!("no consent: {error}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_coverage() {
        let any_tool = Capability::new("tool:*", "call");
        assert!(any_tool.covers(&Capability::call_tool("search")));
        assert!(!any_tool.covers(&Capability::new("memory:notes", "call")));
        assert!(Capability::new("memory:notes", "*").covers(&Capability::new("memory:notes", "read")));
        assert!(Capability::new("memory:notes", "crud/*").covers(&Capability::new("memory:notes", "crud/read")));
        assert!(!Capability::new("memory:notes", "crud/*").covers(&Capability::new("memory:notes", "crudx")));
        assert!(!Capability::call_tool("search").covers(&Capability::new("tool:*", "call")));
    }

    #[test]
    fn the_replay_cache_is_bounded() {
        let did = Identity::generate().did();
        let mut cache = ReplayCache {
            entries: HashMap::new(),
            capacity: 2,
        };
        assert!(cache.insert(did, "a".into(), 100, 0));
        assert!(!cache.insert(did, "a".into(), 100, 0));
        assert!(cache.insert(did, "b".into(), 200, 0));
        assert!(cache.insert(did, "c".into(), 300, 0));
        assert_eq!(cache.entries.len(), 2);
    }
}
