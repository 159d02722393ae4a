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
    /// A signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// Key material has the wrong size or is not a valid key.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The vault failed while storing or loading a key.
    #[error(transparent)]
    Vault(#[from] kai_memory::Error),
}

impl Error {
    pub(crate) fn did(reason: impl Into<String>) -> Self {
        Error::InvalidDid { reason: reason.into() }
    }
}
