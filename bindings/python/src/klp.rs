//! kai-klp from Python: identities and DIDs, consent tokens, sealed messages and the audit log.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kai_klp::consent::{self, Capability};
use kai_klp::sealed::{self, Envelope, MessageKind, Sealed};
use kai_klp::{Did, audit};
use pyo3::prelude::*;
use pyo3::sync::MutexExt as _;
use pyo3::types::PyBytes;

use crate::error::{config_error, klp_error};
use crate::memory::Vault;
use crate::state::{from_python, to_python};

/// A DID from its `did:key:z...` text; a malformed one raises `KlpError` with kind `invalid_did`.
fn did(text: &str) -> PyResult<Did> {
    text.parse().map_err(|error| klp_error(&error))
}

/// Capabilities from Python: `(resource, ability)` pairs, such as `("tool:search", "tool/call")`.
fn capabilities(pairs: Vec<(String, String)>) -> Vec<Capability> {
    pairs
        .into_iter()
        .map(|(resource, ability)| Capability::new(resource, ability))
        .collect()
}

/// An agent's identity: an Ed25519 key pair, named by its `did:key` DID.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Identity {
    inner: kai_klp::Identity,
}

#[pymethods]
impl Identity {
    /// A new identity from the operating system's random source.
    #[staticmethod]
    fn generate() -> Self {
        Self {
            inner: kai_klp::Identity::generate(),
        }
    }

    /// The identity of a 32-byte Ed25519 secret key.
    #[staticmethod]
    fn from_secret_bytes(secret: &[u8]) -> PyResult<Self> {
        let secret: &[u8; 32] = secret
            .try_into()
            .map_err(|_| config_error("an Ed25519 secret key is 32 bytes"))?;
        Ok(Self {
            inner: kai_klp::Identity::from_secret_bytes(secret),
        })
    }

    /// The identity stored in `vault` under `name`, or `None`.
    #[staticmethod]
    fn load(vault: &Bound<'_, Vault>, name: &str) -> PyResult<Option<Self>> {
        vault
            .get()
            .with_vault(|vault| kai_klp::Identity::load(vault, name).map_err(|error| klp_error(&error)))
            .map(|identity| identity.map(|inner| Self { inner }))
    }

    /// Stores the secret key in `vault` under `name`.
    fn store(&self, vault: &Bound<'_, Vault>, name: &str) -> PyResult<()> {
        vault
            .get()
            .with_vault(|vault| self.inner.store(vault, name).map_err(|error| klp_error(&error)))
    }

    /// The 32-byte secret key: keep it in a vault, never in a log. The copy Python holds is an ordinary
    /// `bytes` object, which Python never wipes; prefer `store` into a vault.
    fn secret_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.secret_bytes().as_slice())
    }

    /// The identity's DID (`did:key:z6Mk...`).
    #[getter]
    fn did(&self) -> String {
        self.inner.did().to_string()
    }

    /// An Ed25519 signature of `message` (64 bytes).
    fn sign<'py>(&self, py: Python<'py>, message: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.sign(message))
    }

    fn __repr__(&self) -> String {
        format!("Identity({})", self.inner.did())
    }
}

/// Checks an Ed25519 `signature` of `message` by the DID `signer`; raises `KlpError` if it is not one.
#[pyfunction]
pub(crate) fn verify_signature(signer: &str, message: &[u8], signature: &[u8]) -> PyResult<()> {
    did(signer)?
        .verify(message, signature)
        .map_err(|error| klp_error(&error))
}

/// The DID document of a DID, as a dict.
#[pyfunction]
pub(crate) fn did_document<'py>(py: Python<'py>, did: &str) -> PyResult<Bound<'py, PyAny>> {
    to_python(py, &self::did(did)?.document())
}

/// A consent token (a signed delegation) from `issuer` to the DID `audience` for `capabilities`
/// (`(resource, ability)` pairs), valid for `ttl` seconds; `proofs` are the tokens it delegates from.
#[pyfunction]
#[pyo3(signature = (issuer, audience, capabilities, *, ttl = 3600.0, proofs = Vec::new()))]
pub(crate) fn issue_token(
    issuer: &Identity,
    audience: &str,
    capabilities: Vec<(String, String)>,
    ttl: f64,
    proofs: Vec<String>,
) -> PyResult<String> {
    let ttl = crate::model::seconds_to_duration(ttl)?;
    consent::issue(
        &issuer.inner,
        &did(audience)?,
        &self::capabilities(capabilities),
        ttl,
        &proofs,
    )
    .map_err(|error| klp_error(&error))
}

/// An invocation: a token `issuer` presents to `audience` itself, for one request (`request_id`).
#[pyfunction]
#[pyo3(signature = (issuer, audience, capabilities, request_id, *, ttl = 60.0, proofs = Vec::new()))]
pub(crate) fn invoke_token(
    issuer: &Identity,
    audience: &str,
    capabilities: Vec<(String, String)>,
    request_id: &str,
    ttl: f64,
    proofs: Vec<String>,
) -> PyResult<String> {
    let ttl = crate::model::seconds_to_duration(ttl)?;
    consent::invoke(
        &issuer.inner,
        &did(audience)?,
        &self::capabilities(capabilities),
        ttl,
        &proofs,
        request_id,
    )
    .map_err(|error| klp_error(&error))
}

/// Checks consent tokens presented to one agent (`audience`), accepting chains rooted at
/// `trusted_roots`; a refusal raises `ConsentError` whose `kind` names it (`expired`, `not_granted`,
/// `untrusted_root`, `replayed`, ...).
///
/// Its replay cache and revocations live in this object: keep one verifier per agent for the life of
/// the program (not one per request), or invocations could be replayed.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Verifier {
    inner: consent::Verifier,
}

#[pymethods]
impl Verifier {
    #[new]
    #[pyo3(signature = (audience, trusted_roots, *, clock_skew = 60.0, replay_file = None))]
    fn new(
        py: Python<'_>,
        audience: &str,
        trusted_roots: Vec<String>,
        clock_skew: f64,
        replay_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let roots = trusted_roots
            .iter()
            .map(|root| did(root))
            .collect::<PyResult<Vec<_>>>()?;
        let skew: Duration = crate::model::seconds_to_duration(clock_skew)?;
        let mut inner = consent::Verifier::new(did(audience)?, roots).with_clock_skew(skew);
        if let Some(path) = replay_file {
            // Reading, rewriting and locking the file: without the GIL.
            inner = py
                .detach(|| inner.with_replay_file(path))
                .map_err(|error| klp_error(&error))?;
        }
        Ok(Self { inner })
    }

    /// The token's claims if it grants `ability` on `resource`.
    fn authorize<'py>(
        &self,
        py: Python<'py>,
        token: &str,
        resource: &str,
        ability: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let claims = self
            .inner
            .authorize(token, &Capability::new(resource, ability))
            .map_err(|error| klp_error(&error))?;
        to_python(py, &claims)
    }

    /// The invocation's claims if `invoker` (the authenticated peer presenting it) issued it for
    /// `request_id` and it grants `ability` on `resource`; each invocation is admitted once.
    fn admit_invocation<'py>(
        &self,
        py: Python<'py>,
        token: &str,
        invoker: &str,
        request_id: &str,
        resource: &str,
        ability: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (invoker, required) = (did(invoker)?, Capability::new(resource, ability));
        // With a replay file, admitting syncs it: without the GIL.
        let claims = py
            .detach(|| self.inner.admit_invocation(token, &invoker, request_id, &required))
            .map_err(|error| klp_error(&error))?;
        to_python(py, &claims)
    }

    /// Refuses this token (and every token delegated from it) from now on.
    fn revoke(&self, token: &str) {
        self.inner.revoke(consent::token_id(token));
    }

    /// Refuses the token with this id (see `token_id`), as a revocation list names it.
    fn revoke_id(&self, token_id: &str) {
        self.inner.revoke(token_id);
    }
}

/// A token's id: what revocation lists name.
#[pyfunction]
pub(crate) fn token_id(token: &str) -> String {
    consent::token_id(token)
}

/// Seals `body` (any JSON-like value) from `sender` to the DID `to` (HPKE, signed by the sender);
/// returns the sealed message as JSON text.
#[pyfunction]
#[pyo3(signature = (sender, to, body, *, kind = "direct"))]
pub(crate) fn seal(sender: &Identity, to: &str, body: &Bound<'_, PyAny>, kind: &str) -> PyResult<String> {
    let kind: MessageKind = serde_json::from_value(serde_json::Value::from(kind))
        .map_err(|_| config_error(format!("unknown message kind {kind:?}")))?;
    let envelope = Envelope::new(&sender.inner, &did(to)?, kind, from_python(body)?);
    let sealed = sealed::seal(&sender.inner, &envelope).map_err(|error| klp_error(&error))?;
    serde_json::to_string(&sealed).map_err(|error| config_error(error.to_string()))
}

/// Opens sealed messages addressed to one identity, refusing replays and stale messages.
///
/// The record of messages seen lives in this object: keep one mailbox per identity for the life of the
/// program, since a new one would open a replayed message again.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Mailbox {
    inner: Mutex<sealed::Mailbox>,
}

#[pymethods]
impl Mailbox {
    #[new]
    fn new(identity: &Identity) -> Self {
        Self {
            inner: Mutex::new(sealed::Mailbox::new(identity.inner.clone())),
        }
    }

    /// The envelope (`id`, `from`, `to`, `created`, `seq`, `kind`, `body`) of a sealed message's JSON
    /// text; `KlpError` with kind `message_rejected` when it is not one for this mailbox.
    fn open<'py>(&self, py: Python<'py>, sealed: &str) -> PyResult<Bound<'py, PyAny>> {
        let sealed = Sealed::from_json(sealed).map_err(|error| klp_error(&error))?;
        let envelope = self
            .inner
            .lock_py_attached(py)
            .unwrap_or_else(PoisonError::into_inner)
            .open(&sealed)
            .map_err(|error| klp_error(&error))?;
        to_python(py, &envelope)
    }

    /// Counts the DID `sender` as known: its messages find room that a flood from unknown senders
    /// cannot take.
    fn know(&self, py: Python<'_>, sender: &str) -> PyResult<()> {
        let sender = did(sender)?;
        self.inner
            .lock_py_attached(py)
            .unwrap_or_else(PoisonError::into_inner)
            .know(sender);
        Ok(())
    }
}

/// An append-only, hash-chained audit log signed by one identity.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct AuditLog {
    inner: audit::AuditLog,
}

#[pymethods]
impl AuditLog {
    #[new]
    fn new(path: PathBuf, identity: &Identity) -> PyResult<Self> {
        audit::AuditLog::open(path, identity.inner.clone())
            .map(|inner| Self { inner })
            .map_err(|error| klp_error(&error))
    }

    /// Appends an entry of `kind` with `data`; returns the new head (`seq`, `hash`).
    fn append<'py>(&self, py: Python<'py>, kind: &str, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let head = self
            .inner
            .append(kind, from_python(data)?)
            .map_err(|error| klp_error(&error))?;
        to_python(py, &head)
    }

    /// The last entry's `seq` and `hash`.
    #[getter]
    fn head<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.head())
    }
}

/// Checks a whole audit log against its signer's DID (and, given a head kept elsewhere, that nothing
/// was cut off); returns its head or raises `KlpError` with kind `audit_invalid`.
#[pyfunction]
#[pyo3(signature = (path, signer, *, expected = None))]
pub(crate) fn verify_audit_log<'py>(
    py: Python<'py>,
    path: PathBuf,
    signer: &str,
    expected: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let expected: Option<audit::Head> = expected.map(from_python).transpose()?;
    let head = audit::verify(path, &did(signer)?, expected.as_ref()).map_err(|error| klp_error(&error))?;
    to_python(py, &head)
}
