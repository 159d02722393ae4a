//! Consent: signed, expiring, attenuable capability tokens — UCAN 0.8.1 in an EdDSA JWT (RFC 8037).
//!
//! A token says: `iss` lets `aud` do these things (`att`) until `exp` (and not before `nbf`, if set).
//! A token can be delegated: its holder issues a narrower token to someone else, embedding the one it
//! holds in `prf`. A verifier accepts a chain only if it starts at an issuer it trusts, every link was
//! issued by the audience of the link before, and no link grants more, or for longer, than its proof.
//!
//! The tokens follow [UCAN 0.8.1](https://github.com/ucan-wg/spec/blob/c69763c/README.md) exactly:
//! header `{"alg":"EdDSA","typ":"JWT","ucv":"0.8.1"}`; `att` an array of `{"with": <URI>, "can":
//! <namespace/ability>}`; abilities compared without regard to case; `fct` an array of objects;
//! proofs embedded whole in `prf`. They verify with other UCAN 0.8.1 implementations, and theirs here
//! (the test suite checks both ways against `@ucans/ucans`).
//!
//! Caveats travel in a capability's `nb` object (the name later UCAN versions give them). A caveat
//! narrows: a delegation must keep every caveat of the capability it comes from, with a value at least
//! as narrow; and a caveat this crate cannot enforce refuses the request instead of being ignored. The
//! one it enforces is [`ARGUMENTS_CAVEAT`]: the tool may only be called with those argument values.
//!
//! An *invocation* is the token a caller presents to have something done: issued by the caller
//! ([`invoke`]), it names the request it authorizes in the fact [`INVOCATION_FACT`]. A server admits it
//! with [`Verifier::admit_invocation`], which requires that its issuer is the authenticated peer that
//! presented it, so a token is never a bearer credential; an invocation is never accepted as the proof
//! of another token, and a delegation is never accepted as an invocation.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use kai_core::{AgentHook, HookContext, ToolCall, ToolDecision};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::AuditLog;
use crate::clock::now_seconds;
use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;
use crate::jws;
use crate::replay::{MAX_GRANTS, ReplayCache};

/// The UCAN version these tokens follow (their header's `ucv`); any 0.8.x token is read.
pub const UCAN_VERSION: &str = jws::UCAN_VERSION;
/// The longest delegation chain accepted.
pub const MAX_CHAIN_DEPTH: usize = 8;
/// The most proofs one token may name.
pub const MAX_PROOFS: usize = 8;
/// The fact (an entry of a UCAN `fct` object) that makes a token an invocation: its value is the id
/// of the request the invocation authorizes.
pub const INVOCATION_FACT: &str = "kai/invocation";
/// The longest an invocation may be valid, in seconds: its nonce holds a replay-cache slot that long.
pub const MAX_INVOCATION_SECONDS: u64 = 300;
/// The longest nonce accepted, in characters: the replay cache keeps nonces, so their size is bounded.
pub const MAX_NONCE_CHARS: usize = 64;
/// The caveat that limits a tool call's arguments: `{"nb": {"arguments": {"path": "notes.md"}}}` on
/// `tool/call` allows the call only when its argument `path` is exactly `"notes.md"` (an object or
/// array value must be equal as a whole). Arguments it does not name are free: name every argument
/// that matters.
pub const ARGUMENTS_CAVEAT: &str = "arguments";

/// A thing that may be done: an ability on a resource, such as `tool/call` on `tool:web_search` or
/// `memory/read` on `memory:notes`, optionally narrowed by caveats. Serialised as UCAN 0.8.1 writes a
/// capability: `{"with": resource, "can": ability, "nb": caveats}` (`nb` only when there are some).
///
/// The resource is a URI; one ending in `:*` or `/*` covers every resource below that prefix
/// (`tool:*` covers `tool:web_search`; `tool:web*` covers nothing but itself, so a grant cannot spill
/// into `tool:webhook_delete`). The ability is `*` (every ability) or `namespace/ability`, compared
/// without regard to ASCII case; `namespace/*` covers every ability in the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Map<String, Value>")]
pub struct Capability {
    /// The resource URI.
    #[serde(rename = "with")]
    pub resource: String,
    /// The ability.
    #[serde(rename = "can")]
    pub ability: String,
    /// Caveats by name (UCAN `nb`): conditions every use must meet.
    #[serde(rename = "nb", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caveats: BTreeMap<String, Value>,
}

/// A capability is read from a JSON object only (a derived reading would also take an array, which
/// other implementations refuse), with no members but `with`, `can` and `nb`: kAI does not guess what
/// an unknown member allows.
impl TryFrom<serde_json::Map<String, Value>> for Capability {
    type Error = String;

    fn try_from(mut object: serde_json::Map<String, Value>) -> Result<Self, String> {
        let mut text = |name: &str| match object.remove(name) {
            Some(Value::String(text)) => Ok(text),
            _ => Err(format!("a capability's `{name}` is a string")),
        };
        let (resource, ability) = (text("with")?, text("can")?);
        let caveats = match object.remove("nb") {
            None => BTreeMap::new(),
            Some(Value::Object(caveats)) => caveats.into_iter().collect(),
            Some(_) => return Err("a capability's `nb` is an object".into()),
        };
        if let Some(other) = object.keys().next() {
            return Err(format!("a capability has no member `{other}`"));
        }
        Ok(Self {
            resource,
            ability,
            caveats,
        })
    }
}

impl Capability {
    /// A capability without caveats.
    pub fn new(resource: impl Into<String>, ability: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            ability: ability.into(),
            caveats: BTreeMap::new(),
        }
    }

    /// Calling the tool `name` (`tool/call` on `tool:<name>`).
    pub fn call_tool(name: &str) -> Self {
        Self::new(format!("tool:{name}"), "tool/call")
    }

    /// The same capability with the caveat `name` set to `value`.
    #[must_use]
    pub fn with_caveat(mut self, name: impl Into<String>, value: Value) -> Self {
        self.caveats.insert(name.into(), value);
        self
    }

    /// Checks that this is a capability a UCAN may carry: the resource is a URI (a scheme, `:`, and
    /// more) and the ability is `*` or `namespace/ability` in printable ASCII.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| Error::InvalidCapability {
            resource: self.resource.clone(),
            ability: self.ability.clone(),
            reason: reason.into(),
        };
        let is_uri = self.resource.split_once(':').is_some_and(|(scheme, rest)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
        });
        if !is_uri {
            return Err(invalid("the resource must be a URI (scheme:rest)"));
        }
        if self.ability == "*" {
            return Ok(());
        }
        if !self.ability.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("an ability is printable ASCII"));
        }
        match self.ability.split_once('/') {
            Some((namespace, rest))
                if !namespace.is_empty() && !rest.is_empty() && rest.split('/').all(|s| !s.is_empty()) =>
            {
                Ok(())
            }
            _ => Err(invalid("an ability is `*` or namespaced: `namespace/ability`")),
        }
    }

    /// Whether holding `self` allows `other`: the resource and ability cover `other`'s, and `other`
    /// keeps each of `self`'s caveats, at least as narrow ([`narrows`]). This is the attenuation rule
    /// for delegation; [`permits`](Self::permits) is the one for a request.
    pub fn covers(&self, other: &Capability) -> bool {
        let resource = match self.resource.strip_suffix('*') {
            Some(prefix) if prefix.ends_with([':', '/']) => same_resource_prefix(prefix, &other.resource),
            _ => same_resource(&self.resource, &other.resource),
        };
        let ability = self.ability == "*"
            || self.ability.eq_ignore_ascii_case(&other.ability)
            || self.ability.strip_suffix("/*").is_some_and(|namespace| {
                other.ability.len() > namespace.len() + 1
                    && other.ability.is_char_boundary(namespace.len())
                    && other.ability[..namespace.len()].eq_ignore_ascii_case(namespace)
                    && other.ability[namespace.len()..].starts_with('/')
            });
        resource
            && ability
            && self
                .caveats
                .iter()
                .all(|(name, value)| other.caveats.get(name).is_some_and(|narrower| narrows(narrower, value)))
    }

    /// Whether holding `self` allows the request `required` (a capability whose caveats describe the
    /// request, such as the call's [`ARGUMENTS_CAVEAT`]): `Err` with the caveat's name if `self` carries
    /// a caveat this crate does not enforce, which refuses rather than being ignored.
    pub fn permits(&self, required: &Capability) -> Result<bool, String> {
        if let Some(unknown) = self.caveats.keys().find(|name| name.as_str() != ARGUMENTS_CAVEAT) {
            return Err(unknown.clone());
        }
        Ok(self.covers(required))
    }
}

/// Whether `narrower` is at least as narrow a caveat value as `wider`: equal, or both objects and
/// `narrower` holds each of `wider`'s entries with an equal value (it may name more). One level only:
/// an object nested inside is compared whole, since a field added deeper down (a query's `$or`, say)
/// can widen what a value allows rather than narrow it.
pub fn narrows(narrower: &Value, wider: &Value) -> bool {
    match (narrower, wider) {
        (Value::Object(narrower), Value::Object(wider)) => {
            wider.iter().all(|(key, value)| narrower.get(key) == Some(value))
        }
        _ => narrower == wider,
    }
}

/// Whether two resource URIs are the same: the scheme compared without regard to case (RFC 3986
/// section 3.1), the rest exactly.
fn same_resource(a: &str, b: &str) -> bool {
    match (a.split_once(':'), b.split_once(':')) {
        (Some((scheme_a, rest_a)), Some((scheme_b, rest_b))) => {
            scheme_a.eq_ignore_ascii_case(scheme_b) && rest_a == rest_b
        }
        _ => a == b,
    }
}

/// Whether `resource` starts with `prefix` (which ends in `:` or `/`), the scheme without regard to case.
fn same_resource_prefix(prefix: &str, resource: &str) -> bool {
    match (prefix.split_once(':'), resource.split_once(':')) {
        (Some((scheme_p, rest_p)), Some((scheme_r, rest_r))) => {
            scheme_p.eq_ignore_ascii_case(scheme_r) && rest_r.starts_with(rest_p)
        }
        _ => false,
    }
}

/// The claims of a consent token: a UCAN 0.8.1 payload, with no other members (a member this crate
/// ignored might be what another reader acts on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Who grants.
    pub iss: Did,
    /// Who receives.
    pub aud: Did,
    /// Not valid before (seconds since the Unix epoch); valid from the epoch when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry (seconds since the Unix epoch).
    pub exp: u64,
    /// A nonce, so that replays can be detected (tokens issued here always have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nnc: Option<String>,
    /// Facts: signed data outside the capabilities. An invocation carries [`INVOCATION_FACT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fct: Vec<serde_json::Map<String, Value>>,
    /// The tokens this one is delegated from, embedded whole.
    pub prf: Vec<String>,
    /// The capabilities granted (UCAN "attenuations").
    pub att: Vec<Capability>,
}

impl Claims {
    /// The request this token is an invocation of, if it is one.
    pub fn invocation(&self) -> Option<&str> {
        self.fct
            .iter()
            .find_map(|fact| fact.get(INVOCATION_FACT))
            .and_then(Value::as_str)
    }

    /// Whether this token claims to be an invocation (whatever the form of its request id).
    pub fn is_invocation(&self) -> bool {
        self.fct.iter().any(|fact| fact.contains_key(INVOCATION_FACT))
    }

    /// The capabilities granted.
    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> + '_ {
        self.att.iter()
    }

    /// Whether these claims allow the request `required`: `Ok` if one capability permits it;
    /// [`Error::UnknownCaveat`] if only capabilities with caveats not enforced here would;
    /// [`Error::NotGranted`] otherwise.
    pub fn grant(&self, required: &Capability) -> Result<(), Error> {
        let mut unknown = None;
        for capability in &self.att {
            match capability.permits(required) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(caveat) => {
                    let plain = Capability {
                        caveats: BTreeMap::new(),
                        ..capability.clone()
                    };
                    if plain.covers(required) {
                        unknown.get_or_insert(caveat);
                    }
                }
            }
        }
        Err(match unknown {
            Some(caveat) => Error::UnknownCaveat {
                resource: required.resource.clone(),
                ability: required.ability.clone(),
                caveat,
            },
            None => Error::NotGranted {
                resource: required.resource.clone(),
                ability: required.ability.clone(),
            },
        })
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
    let exp = now.saturating_add(ttl.as_secs());
    sign_claims(issuer, audience, capabilities, None, exp, proofs, Vec::new())
}

/// Issues a token valid only from `not_before` until `expires` (seconds since the Unix epoch): access
/// provisioned ahead of time. A delegation of it must start no earlier.
pub fn issue_window(
    issuer: &Identity,
    audience: &Did,
    capabilities: &[Capability],
    not_before: u64,
    expires: u64,
    proofs: &[String],
) -> Result<String, Error> {
    sign_claims(
        issuer,
        audience,
        capabilities,
        Some(not_before),
        expires,
        proofs,
        Vec::new(),
    )
}

/// Issues the invocation of request `request_id`: a token from `issuer` (the caller) to `audience`
/// (the agent asked) for `capabilities`, proven by `proofs`. Only `issuer`, over its own session,
/// can present it, and only with that request.
pub fn invoke(
    issuer: &Identity,
    audience: &Did,
    capabilities: &[Capability],
    ttl: Duration,
    proofs: &[String],
    request_id: &str,
) -> Result<String, Error> {
    invoke_at(issuer, audience, capabilities, now_seconds(), ttl, proofs, request_id)
}

/// [`invoke`] with an explicit issuing time (seconds since the Unix epoch).
pub fn invoke_at(
    issuer: &Identity,
    audience: &Did,
    capabilities: &[Capability],
    now: u64,
    ttl: Duration,
    proofs: &[String],
    request_id: &str,
) -> Result<String, Error> {
    let fact = serde_json::Map::from_iter([(INVOCATION_FACT.to_owned(), Value::from(request_id))]);
    let exp = now.saturating_add(ttl.as_secs());
    sign_claims(issuer, audience, capabilities, None, exp, proofs, vec![fact])
}

/// Signs the claims. Tokens are issued without `nbf` unless a window is asked for: such a token is
/// valid from when it is made, and a chain of them verifies with other implementations too (one,
/// `@ucans/ucans` 0.12, refuses every chain whose proof has an `nbf`).
#[allow(clippy::too_many_arguments)]
fn sign_claims(
    issuer: &Identity,
    audience: &Did,
    capabilities: &[Capability],
    nbf: Option<u64>,
    exp: u64,
    proofs: &[String],
    fct: Vec<serde_json::Map<String, Value>>,
) -> Result<String, Error> {
    for capability in capabilities {
        capability.validate()?;
    }
    let mut nonce = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let claims = Claims {
        iss: issuer.did(),
        aud: *audience,
        nbf,
        exp,
        nnc: Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce)),
        fct,
        prf: proofs.to_vec(),
        att: capabilities.to_vec(),
    };
    jws::sign(issuer, jws::Kind::Ucan, &claims)
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
            seen: Mutex::new(ReplayCache::new(100_000)),
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

    /// Keeps the replay cache in the file at `path` as well as in memory, so that a token admitted
    /// before a restart is still refused after it (invocations live at most five minutes, but a token
    /// admitted with [`admit`](Self::admit) may live for days). Loads the nonces still live from the
    /// file, and from then on syncs each one to it before its token is admitted. One verifier uses a
    /// file at a time: another one's, or a file that is not a replay file, is [`Error::Io`].
    pub fn with_replay_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .persist(path.as_ref(), now_seconds())?;
        Ok(self)
    }

    /// Sets how many nonces the replay cache holds (and, as a hundredth of that, at least one, how many
    /// one grant may hold).
    pub fn with_replay_capacity(self, capacity: usize) -> Self {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.capacity = capacity.max(1);
        seen.per_grant_limit = (capacity / 100).max(1);
        drop(seen);
        self
    }

    /// Sets how many live nonces the tokens of one grant (the token at the root of their chains, and
    /// all its delegations) may hold in the replay cache.
    pub fn with_per_grant_limit(self, limit: usize) -> Self {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).per_grant_limit = limit.max(1);
        self
    }

    /// Revokes a token (by [`token_id`]); chains through it are refused from now on.
    pub fn revoke(&self, token_id: impl Into<String>) {
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token_id.into());
    }

    /// Admits a token: checks the chain and records its nonce, so the same token cannot be presented
    /// twice. This binds the token to nobody: a server answering a peer uses
    /// [`admit_invocation`](Self::admit_invocation).
    pub fn admit(&self, token: &str) -> Result<Claims, Error> {
        self.admit_at(token, now_seconds())
    }

    /// [`admit`](Self::admit) at an explicit time.
    pub fn admit_at(&self, token: &str, now: u64) -> Result<Claims, Error> {
        let decision = self
            .check_rooted_at(token, now)
            .and_then(|(claims, grants)| self.consume_nonce(token, claims, &grants, now));
        self.record("admit", token, None, None, decision)
    }

    /// Admits the invocation `token` that the authenticated peer `invoker` presented with request
    /// `request_id`, for `required`: the chain checks of [`admit`](Self::admit), and the token must be
    /// an invocation ([`invoke`]) of exactly that request, issued by `invoker` itself, valid for at most
    /// [`MAX_INVOCATION_SECONDS`], granting `required`. Someone else's token, a delegation, or an
    /// invocation of another request is refused; only a token that passes every check takes a slot in
    /// the replay cache; the audit log records the peer.
    pub fn admit_invocation(
        &self,
        token: &str,
        invoker: &Did,
        request_id: &str,
        required: &Capability,
    ) -> Result<Claims, Error> {
        self.admit_invocation_at(token, invoker, request_id, required, now_seconds())
    }

    /// [`admit_invocation`](Self::admit_invocation) at an explicit time.
    pub fn admit_invocation_at(
        &self,
        token: &str,
        invoker: &Did,
        request_id: &str,
        required: &Capability,
        now: u64,
    ) -> Result<Claims, Error> {
        let decision = self.check_rooted_at(token, now).and_then(|(claims, grants)| {
            if claims.iss != *invoker {
                return Err(Error::WrongInvoker {
                    invoker: claims.iss.to_string(),
                    peer: invoker.to_string(),
                });
            }
            match claims.invocation() {
                Some(id) if id == request_id => {}
                Some(_) => {
                    return Err(Error::NotAnInvocation {
                        reason: "it is the invocation of another request".into(),
                    });
                }
                None => {
                    return Err(Error::NotAnInvocation {
                        reason: "it is a delegation; a call needs a token issued for it".into(),
                    });
                }
            }
            if claims.exp.saturating_sub(now) > MAX_INVOCATION_SECONDS {
                return Err(Error::NotAnInvocation {
                    reason: format!("an invocation may be valid for at most {MAX_INVOCATION_SECONDS} s"),
                });
            }
            claims.grant(required)?;
            self.consume_nonce(token, claims, &grants, now)
        });
        self.record("admit", token, Some(required), Some(invoker), decision)
    }

    /// Takes the token's replay-cache slot: keyed by issuer and nonce, or, for a token without a
    /// nonce (which other UCAN implementations may issue), by the token itself.
    fn consume_nonce(&self, token: &str, claims: Claims, grants: &[[u8; 32]], now: u64) -> Result<Claims, Error> {
        let key: [u8; 32] = match &claims.nnc {
            Some(nonce) => Sha256::new()
                .chain_update(b"nonce\0")
                .chain_update(claims.iss.public_key().as_bytes())
                .chain_update(nonce.as_bytes())
                .finalize()
                .into(),
            None => Sha256::new()
                .chain_update(b"token\0")
                .chain_update(token)
                .finalize()
                .into(),
        };
        let fresh = self.seen.lock().unwrap_or_else(PoisonError::into_inner).insert(
            key,
            grants,
            claims.exp.saturating_add(self.clock_skew),
            now,
        )?;
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
        self.record("authorize", token, Some(required), None, decision)
    }

    /// Writes a decision to the audit log, if there is one; a decision allowed but not recorded is
    /// refused.
    fn record(
        &self,
        action: &str,
        token: &str,
        required: Option<&Capability>,
        peer: Option<&Did>,
        decision: Result<Claims, Error>,
    ) -> Result<Claims, Error> {
        let Some(log) = &self.audit else {
            return decision;
        };
        let data = serde_json::json!({
            "action": action,
            "token": token_id(token),
            "issuer": decision.as_ref().ok().map(|claims| claims.iss.to_string()),
            "peer": peer.map(ToString::to_string),
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
        claims.grant(required)?;
        Ok(claims)
    }

    fn check_at(&self, token: &str, now: u64) -> Result<Claims, Error> {
        self.check_rooted_at(token, now).map(|(claims, _)| claims)
    }

    /// The checks, and the digests of the tokens at the roots of the token's chains (the grants it
    /// comes from).
    fn check_rooted_at(&self, token: &str, now: u64) -> Result<(Claims, Vec<[u8; 32]>), Error> {
        let (claims, grants) = self.chain(token, now, 0)?;
        if claims.aud != self.audience {
            return Err(Error::WrongAudience {
                audience: claims.aud.to_string(),
            });
        }
        Ok((claims, grants))
    }

    /// Verifies one link and, recursively, its proofs; with the digests of the chains' root tokens.
    fn chain(&self, token: &str, now: u64, depth: usize) -> Result<(Claims, Vec<[u8; 32]>), Error> {
        if depth >= MAX_CHAIN_DEPTH {
            return Err(Error::ChainTooDeep { max: MAX_CHAIN_DEPTH });
        }
        let unverified = jws::decode(token, jws::Kind::Ucan)?;
        let issuer: Issuer = unverified.claimed_signer()?;
        let claims: Claims = unverified.verify(&issuer.iss)?;
        if claims.iss != issuer.iss {
            return Err(Error::TokenMalformed {
                reason: "the claims name two issuers".into(),
            });
        }
        for capability in &claims.att {
            capability.validate()?;
        }
        if claims
            .nnc
            .as_ref()
            .is_some_and(|nonce| nonce.chars().count() > MAX_NONCE_CHARS)
        {
            return Err(Error::TokenMalformed {
                reason: format!("the nonce is longer than {MAX_NONCE_CHARS} characters"),
            });
        }
        if depth > 0 && claims.is_invocation() {
            return Err(Error::NotAnInvocation {
                reason: "an invocation cannot be the proof of another token".into(),
            });
        }
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
            return Ok((claims, vec![Sha256::digest(token.as_bytes()).into()]));
        }
        let mut parents = Vec::with_capacity(claims.prf.len());
        if claims.prf.len() > MAX_PROOFS {
            return Err(Error::TokenMalformed {
                reason: format!("a token may have at most {MAX_PROOFS} proofs"),
            });
        }
        let mut grants = Vec::new();
        for proof in &claims.prf {
            let (parent, roots) = self.chain(proof, now, depth + 1)?;
            grants.extend(roots);
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
                parent.capabilities().any(|p| p.covers(capability))
                    && claims.exp <= parent.exp
                    && parent.nbf.is_none_or(|p| claims.nbf.is_some_and(|c| c >= p))
            });
            if !covered {
                return Err(Error::Escalation {
                    reason: format!(
                        "{} on {} (with its caveats) is not granted by any proof for the same or a longer time",
                        capability.ability, capability.resource
                    ),
                });
            }
        }
        grants.sort_unstable();
        grants.dedup();
        if grants.len() > MAX_GRANTS {
            return Err(Error::TokenMalformed {
                reason: format!("a token may draw on at most {MAX_GRANTS} grants"),
            });
        }
        Ok((claims, grants))
    }
}

/// The claim that names a token's signer, read before the signature is checked.
#[derive(Deserialize)]
struct Issuer {
    iss: Did,
}

/// An [`AgentHook`] that lets a tool run only if the caller's consent token grants calling it
/// (`tool/call` on `tool:<name>`) with these arguments ([`ARGUMENTS_CAVEAT`]). A refused call goes back
/// to the model with the reason. Add it after every hook that rewrites arguments (as
/// [`serve`](crate::calls::serve) does, adding it last): it checks the arguments as the hooks before it
/// left them.
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
    async fn before_tool(&self, _: &HookContext, call: &ToolCall, arguments: &Value) -> ToolDecision {
        let required = Capability::call_tool(&call.name).with_caveat(ARGUMENTS_CAVEAT, arguments.clone());
        match self.verifier.authorize(&self.token, &required) {
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
        let any_tool = Capability::new("tool:*", "tool/call");
        assert!(any_tool.covers(&Capability::call_tool("search")));
        assert!(!any_tool.covers(&Capability::new("memory:notes", "tool/call")));
        assert!(Capability::new("memory:notes", "*").covers(&Capability::new("memory:notes", "crud/read")));
        assert!(Capability::new("memory:notes", "crud/*").covers(&Capability::new("memory:notes", "crud/read")));
        assert!(!Capability::new("memory:notes", "crud/*").covers(&Capability::new("memory:notes", "crudx/read")));
        assert!(!Capability::new("memory:notes", "crud/*").covers(&Capability::new("memory:notes", "crud/")));
        assert!(!Capability::call_tool("search").covers(&Capability::new("tool:*", "tool/call")));
    }

    /// UCAN 0.8.1: abilities are not case-sensitive, and neither is a URI's scheme; the rest of the
    /// resource is.
    #[test]
    fn abilities_and_schemes_ignore_case() {
        let granted = Capability::call_tool("search");
        assert!(granted.covers(&Capability::new("TOOL:search", "Tool/CALL")));
        assert!(!granted.covers(&Capability::new("tool:Search", "tool/call")));
        assert!(Capability::new("Memory:notes/*", "CRUD/*").covers(&Capability::new("memory:notes/a", "crud/read")));
    }

    #[test]
    fn capabilities_must_be_ucan_shaped() {
        for (resource, ability) in [
            ("*", "tool/call"),
            ("search", "tool/call"),
            ("1tool:x", "tool/call"),
            ("tool:", "tool/call"),
            ("tool:x", "call"),
            ("tool:x", "/call"),
            ("tool:x", "tool/"),
            ("tool:x", "tool//call"),
            ("tool:x", "tool/c all"),
            ("tool:x", "tool/cäll"),
        ] {
            let capability = Capability::new(resource, ability);
            assert!(
                matches!(capability.validate(), Err(Error::InvalidCapability { .. })),
                "{resource} {ability}"
            );
        }
        for (resource, ability) in [
            ("tool:x", "*"),
            ("tool:*", "tool/call"),
            ("mailto:a@b.c", "msg/send/now"),
        ] {
            Capability::new(resource, ability).validate().unwrap();
        }
    }

    /// A caveat narrows: a capability with one covers only capabilities that keep it, as narrow or
    /// narrower; one without covers both.
    #[test]
    fn caveats_must_be_kept_or_narrowed() {
        let notes = Capability::call_tool("read").with_caveat(ARGUMENTS_CAVEAT, serde_json::json!({"dir": "notes"}));
        let plain = Capability::call_tool("read");
        assert!(plain.covers(&notes));
        assert!(!notes.covers(&plain), "dropping a caveat widens the grant");
        assert!(notes.covers(&notes));
        let narrower = Capability::call_tool("read")
            .with_caveat(ARGUMENTS_CAVEAT, serde_json::json!({"dir": "notes", "file": "a.md"}));
        assert!(notes.covers(&narrower));
        assert!(!narrower.covers(&notes));
        let elsewhere = Capability::call_tool("read").with_caveat(ARGUMENTS_CAVEAT, serde_json::json!({"dir": "/etc"}));
        assert!(!notes.covers(&elsewhere));
        assert!(narrows(
            &serde_json::json!({"a": 1, "b": 2}),
            &serde_json::json!({"a": 1})
        ));
        assert!(!narrows(
            &serde_json::json!({"a": {"b": 2}}),
            &serde_json::json!({"a": {"b": 1}})
        ));
        assert!(!narrows(&serde_json::json!([1, 2]), &serde_json::json!([1])));
        // A field added inside a named argument can widen it (a query's `$or`): nested values are equal
        // or not at all.
        let owned = serde_json::json!({"filter": {"owner": "me"}});
        assert!(!narrows(
            &serde_json::json!({"filter": {"owner": "me", "$or": [{}]}}),
            &owned
        ));
        assert!(narrows(&owned, &owned));
    }

    /// A capability is a JSON object with `with`, `can` and, optionally, `nb`; an array (which serde
    /// would read into a struct) or an unknown member is refused.
    #[test]
    fn capabilities_are_objects_with_known_members() {
        let read = |json: serde_json::Value| serde_json::from_value::<Capability>(json);
        assert_eq!(
            read(serde_json::json!({"with": "tool:x", "can": "tool/call", "nb": {"arguments": {}}})).unwrap(),
            Capability::call_tool("x").with_caveat(ARGUMENTS_CAVEAT, serde_json::json!({}))
        );
        assert!(read(serde_json::json!(["tool:x", "tool/call"])).is_err());
        assert!(read(serde_json::json!({"with": "tool:x", "can": "tool/call", "max": 1})).is_err());
        assert!(read(serde_json::json!({"with": "tool:x", "can": "tool/call", "nb": 1})).is_err());
        assert!(read(serde_json::json!({"with": "tool:x"})).is_err());
        let claims = |extra: &str| {
            let did = Identity::generate().did();
            serde_json::from_str::<Claims>(&format!(
                r#"{{"iss":"{did}","aud":"{did}","exp":1,"prf":[],"att":[]{extra}}}"#
            ))
        };
        assert!(claims("").is_ok());
        assert!(claims(r#","ATT":[{"with":"tool:x","can":"*"}]"#).is_err());
    }

    #[test]
    fn unknown_caveats_refuse_the_request() {
        let limited = Capability::call_tool("pay").with_caveat("max_amount", serde_json::json!(10));
        let request = Capability::call_tool("pay").with_caveat(ARGUMENTS_CAVEAT, serde_json::json!({"amount": 1000}));
        assert_eq!(limited.permits(&request), Err("max_amount".to_owned()));
        assert_eq!(Capability::call_tool("pay").permits(&request), Ok(true));
        let capped = Capability::call_tool("pay").with_caveat(ARGUMENTS_CAVEAT, serde_json::json!({"amount": 1}));
        assert_eq!(capped.permits(&request), Ok(false));
    }

    #[test]
    fn resource_wildcards_stop_at_a_segment_boundary() {
        assert!(Capability::new("tool:*", "tool/call").covers(&Capability::call_tool("webhook_delete")));
        assert!(Capability::new("memory:notes/*", "crud/read").covers(&Capability::new("memory:notes/a", "crud/read")));
        // `tool:web*` was meant for web_search; it must not reach webhook_delete.
        let sloppy = Capability::new("tool:web*", "tool/call");
        assert!(!sloppy.covers(&Capability::call_tool("webhook_delete")));
        assert!(!sloppy.covers(&Capability::call_tool("web_search")));
        assert!(sloppy.covers(&Capability::new("tool:web*", "tool/call")));
    }
}
