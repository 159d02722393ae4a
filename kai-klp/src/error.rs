//! The crate's error type.

/// Everything that can go wrong in kai-klp.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The string is not a well-formed `did:key` for an Ed25519 key.
    #[error("invalid DID: {reason}")]
    InvalidDid {
        /// What is wrong with it.
        reason: String,
    },
    /// A call presented a token whose invoker is not the peer that presented it: a token is not a
    /// bearer credential, so someone else's token (found, leaked or lifted from a chain) grants nothing.
    #[error("the consent token was issued by {invoker}, not by the peer {peer} that presented it")]
    WrongInvoker {
        /// The token's issuer.
        invoker: String,
        /// The authenticated peer that presented it.
        peer: String,
    },
    /// A token presented as an invocation is not one (a delegation, or the invocation of another
    /// request), or an invocation was used as the proof of another token.
    #[error("not an invocation: {reason}")]
    NotAnInvocation {
        /// What is wrong.
        reason: String,
    },
    /// Every slot of the replay cache holds a nonce that has not expired: the token is refused rather
    /// than a live nonce forgotten (which would let its token be replayed).
    #[error("too many consent tokens in flight (the replay cache holds {capacity}); retry when some expire")]
    ReplayCacheFull {
        /// How many nonces the cache holds.
        capacity: usize,
    },
    /// The grant at the root of the token's chain already has as many tokens in the replay cache as
    /// one grant may hold: one grantee cannot fill the cache and lock everyone else out.
    #[error("the grant behind this token has {limit} tokens in flight; retry when some expire")]
    GrantBusy {
        /// How many live tokens one grant may have in the cache.
        limit: usize,
    },
    /// A delegation chain has more links than a verifier follows.
    #[error("delegation chains are limited to {max} links")]
    ChainTooDeep {
        /// The most links followed.
        max: usize,
    },
    /// A signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// Key material has the wrong size or is not a valid key.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A consent token is not a well-formed compact JWS carrying KLP claims.
    #[error("malformed consent token: {reason}")]
    TokenMalformed {
        /// What is wrong with it.
        reason: String,
    },
    /// A token's `exp` has passed (beyond the allowed clock skew).
    #[error("the consent token expired at {expired_at}")]
    Expired {
        /// Its `exp`, in seconds since the Unix epoch.
        expired_at: u64,
    },
    /// A token's `nbf` is still in the future (beyond the allowed clock skew).
    #[error("the consent token is not valid before {not_before}")]
    NotYetValid {
        /// Its `nbf`.
        not_before: u64,
    },
    /// The token was issued to someone else.
    #[error("the consent token is for {audience}, not for this agent")]
    WrongAudience {
        /// The token's `aud`.
        audience: String,
    },
    /// The token does not grant what is asked.
    #[error("the consent token does not grant {ability} on {resource}")]
    NotGranted {
        /// The resource asked for.
        resource: String,
        /// The ability asked for.
        ability: String,
    },
    /// A capability is not one a UCAN may carry: its resource is not a URI, or its ability is neither
    /// `*` nor namespaced (`namespace/ability`, ASCII).
    #[error("invalid capability {ability} on {resource}: {reason}")]
    InvalidCapability {
        /// The resource.
        resource: String,
        /// The ability.
        ability: String,
        /// What is wrong.
        reason: String,
    },
    /// The only capabilities that would grant the request carry a caveat this verifier cannot
    /// enforce; a caveat it does not understand refuses the invocation rather than being ignored.
    #[error(
        "the consent token's grant of {ability} on {resource} carries the caveat {caveat:?}, which is not enforced here"
    )]
    UnknownCaveat {
        /// The resource asked for.
        resource: String,
        /// The ability asked for.
        ability: String,
        /// The caveat's name.
        caveat: String,
    },
    /// A delegated token claims more than its proof granted (capability or time window).
    #[error("delegation escalates beyond its proof: {reason}")]
    Escalation {
        /// What was widened.
        reason: String,
    },
    /// A proof was not issued to the token's issuer.
    #[error("broken delegation chain: {reason}")]
    BrokenChain {
        /// Which link does not connect.
        reason: String,
    },
    /// A chain starts at an issuer this verifier does not trust to grant anything.
    #[error("the delegation chain starts at {issuer}, which is not a trusted root")]
    UntrustedRoot {
        /// The root issuer.
        issuer: String,
    },
    /// A token in the chain was revoked.
    #[error("a consent token in the chain was revoked ({token_id})")]
    Revoked {
        /// The revoked token's id.
        token_id: String,
    },
    /// The token's nonce was already used.
    #[error("the consent token was already used (replayed nonce)")]
    Replayed,
    /// An audit log failed verification.
    #[error("audit log invalid at line {line}: {fault:?}")]
    AuditInvalid {
        /// The first line found wrong (counted from 1).
        line: usize,
        /// What is wrong there.
        fault: crate::audit::Fault,
    },
    /// A sealed message was refused (not for us, altered, stale, future-dated, or malformed).
    #[error("message rejected: {reason}")]
    MessageRejected {
        /// Why.
        reason: String,
    },
    /// A Noise handshake failed (the peer is not who it claims, or the messages are wrong).
    #[error("session handshake failed: {reason}")]
    Handshake {
        /// Why.
        reason: String,
    },
    /// An established session received something it cannot accept (altered, replayed, reordered,
    /// oversized, or not from the peer); the session must be dropped.
    #[error("session broken: {reason}")]
    SessionBroken {
        /// Why.
        reason: String,
    },
    /// The other side closed the session.
    #[error("the session was closed")]
    SessionClosed,
    /// A presence record is forged, expired, future-dated or malformed.
    #[error("presence record rejected: {reason}")]
    PresenceInvalid {
        /// Why.
        reason: String,
    },
    /// The peer-to-peer layer failed (listening, dialling, or a query that reached nobody).
    #[error("discovery failed: {reason}")]
    Discovery {
        /// Why.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// The vault failed while storing or loading a key.
    #[cfg(feature = "vault")]
    #[error(transparent)]
    Vault(#[from] kai_memory::Error),
    /// An A2A peer answered a request with a JSON-RPC error (its code, such as -32001 for an unknown
    /// task, and message).
    #[error("the A2A agent refused the request ({code}): {message}")]
    A2aRefused {
        /// The JSON-RPC error code.
        code: i64,
        /// The peer's message (at most 1,024 characters).
        message: String,
    },
    /// An A2A peer could not be reached, or answered with something that is not A2A.
    #[error("A2A: {message}")]
    A2aTransport {
        /// What went wrong.
        message: String,
    },
    /// A remote agent did not answer a call in time.
    #[error("the remote agent did not answer within {millis} ms")]
    CallTimedOut {
        /// The time limit, in milliseconds.
        millis: u64,
    },
    /// The remote agent refused or failed a call: `kind` is its error's [`kind`](Error::kind) (such as
    /// `not_granted`, `wrong_invoker`, `expired`, or `agent_failed` when its run failed).
    #[error("the remote agent refused the call ({kind}): {message}")]
    Refused {
        /// What kind of refusal, in snake_case.
        kind: String,
        /// The remote side's explanation.
        message: String,
    },
}

impl Error {
    /// Whether this error is a consent token's refusal (expired, not granted, replayed, ...), as
    /// opposed to a malformed message, a broken session or an I/O failure.
    ///
    /// ```
    /// assert!(kai_klp::Error::Replayed.is_consent_refusal());
    /// assert!(!kai_klp::Error::SessionClosed.is_consent_refusal());
    /// ```
    pub fn is_consent_refusal(&self) -> bool {
        matches!(
            self,
            Error::WrongInvoker { .. }
                | Error::NotAnInvocation { .. }
                | Error::ReplayCacheFull { .. }
                | Error::GrantBusy { .. }
                | Error::ChainTooDeep { .. }
                | Error::BadSignature
                | Error::TokenMalformed { .. }
                | Error::Expired { .. }
                | Error::NotYetValid { .. }
                | Error::WrongAudience { .. }
                | Error::NotGranted { .. }
                | Error::InvalidCapability { .. }
                | Error::UnknownCaveat { .. }
                | Error::Escalation { .. }
                | Error::BrokenChain { .. }
                | Error::UntrustedRoot { .. }
                | Error::Revoked { .. }
                | Error::Replayed
        )
    }

    /// A stable snake_case name for this kind of error, as the protocol's error responses carry it.
    pub fn kind(&self) -> &str {
        match self {
            Error::InvalidDid { .. } => "invalid_did",
            Error::WrongInvoker { .. } => "wrong_invoker",
            Error::NotAnInvocation { .. } => "not_an_invocation",
            Error::ReplayCacheFull { .. } => "replay_cache_full",
            Error::GrantBusy { .. } => "grant_busy",
            Error::ChainTooDeep { .. } => "chain_too_deep",
            Error::BadSignature => "bad_signature",
            Error::InvalidKey(_) => "invalid_key",
            Error::TokenMalformed { .. } => "token_malformed",
            Error::Expired { .. } => "expired",
            Error::NotYetValid { .. } => "not_yet_valid",
            Error::WrongAudience { .. } => "wrong_audience",
            Error::NotGranted { .. } => "not_granted",
            Error::InvalidCapability { .. } => "invalid_capability",
            Error::UnknownCaveat { .. } => "unknown_caveat",
            Error::Escalation { .. } => "escalation",
            Error::BrokenChain { .. } => "broken_chain",
            Error::UntrustedRoot { .. } => "untrusted_root",
            Error::Revoked { .. } => "revoked",
            Error::Replayed => "replayed",
            Error::AuditInvalid { .. } => "audit_invalid",
            Error::MessageRejected { .. } => "message_rejected",
            Error::Handshake { .. } => "handshake",
            Error::SessionBroken { .. } => "session_broken",
            Error::SessionClosed => "session_closed",
            Error::PresenceInvalid { .. } => "presence_invalid",
            Error::Discovery { .. } => "discovery",
            Error::Io(_) => "io",
            #[cfg(feature = "vault")]
            Error::Vault(_) => "vault",
            Error::A2aRefused { .. } => "a2a_refused",
            Error::A2aTransport { .. } => "a2a_transport",
            Error::CallTimedOut { .. } => "call_timed_out",
            Error::Refused { kind, .. } => kind,
        }
    }

    pub(crate) fn did(reason: impl Into<String>) -> Self {
        Error::InvalidDid { reason: reason.into() }
    }
}
