//! The crate's error type.

/// Everything that can go wrong in kai-memory. Each failure a caller may handle differently has its
/// own variant; none of them carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The passphrase does not open this vault.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The file was modified: a part failed its authentication check.
    #[error("the vault's {part} failed its integrity check (the file was modified or corrupted)")]
    Tampered {
        /// Which part failed: `header`, `key`, `contents`, or `entry <name>`.
        part: String,
    },
    /// The file ends before its declared end.
    #[error("the file is truncated")]
    Truncated,
    /// The file was written by an incompatible version of the format.
    #[error("file format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The file is not a kAI vault at all.
    #[error("not a kAI vault file")]
    NotAVault,
    /// A vector has the wrong number of dimensions for its index.
    #[error("expected a vector of {expected} dimensions, got {found}")]
    DimensionMismatch {
        /// The index's dimensions.
        expected: usize,
        /// The vector's.
        found: usize,
    },
    /// A vector cannot be indexed (NaN or infinite components, or zero length under cosine).
    #[error("invalid vector: {reason}")]
    InvalidVector {
        /// What is wrong with it.
        reason: String,
    },
    /// Index settings outside what the index supports.
    #[error("invalid index configuration: {0}")]
    InvalidConfig(String),
    /// The file is not a kAI vector index.
    #[error("not a kAI vector index file")]
    NotAnIndex,
    /// An index file's contents are inconsistent (a checksum or structural check failed).
    #[error("the index file is corrupt: {what}")]
    Corrupt {
        /// What was found wrong.
        what: String,
    },
    /// A model (embedding or summarising) failed or returned something unusable.
    #[error("model call failed: {0}")]
    Model(#[source] kai_core::Error),
    /// An agent run failed; the error carries its state.
    #[error("agent run failed: {0}")]
    Agent(#[source] Box<kai_core::RunError>),
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
    /// A vault already exists where one was to be created.
    #[error("a file already exists at {path}")]
    AlreadyExists {
        /// The path.
        path: String,
    },
    /// Another handle (in this process or another) has the file open for writing.
    #[error("{path} is in use by another writer")]
    Locked {
        /// The file.
        path: String,
    },
    /// Key-derivation parameters outside the accepted range.
    #[error("invalid key-derivation parameters: {0}")]
    InvalidParameters(String),
    /// A record could not be serialized or deserialized.
    #[error("record {name:?} could not be (de)serialized: {message}")]
    Record {
        /// The record's name.
        name: String,
        /// What went wrong and where (never the record's contents).
        message: String,
    },
    /// A call took longer than its limit (the database did not answer); nothing is known of whether
    /// a write it made was committed.
    #[error("{0} timed out")]
    TimedOut(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The variant's stable snake_case name, by which bindings in other languages tell errors apart.
    ///
    /// ```
    /// assert_eq!(kai_memory::Error::WrongPassphrase.kind(), "wrong_passphrase");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Error::WrongPassphrase => "wrong_passphrase",
            Error::Tampered { .. } => "tampered",
            Error::Truncated => "truncated",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::NotAVault => "not_a_vault",
            Error::DimensionMismatch { .. } => "dimension_mismatch",
            Error::InvalidVector { .. } => "invalid_vector",
            Error::InvalidConfig(_) => "invalid_config",
            Error::NotAnIndex => "not_an_index",
            Error::Corrupt { .. } => "corrupt",
            Error::Model(_) => "model",
            Error::Agent(_) => "agent",
            Error::Database(_) => "database",
            Error::AlreadyExists { .. } => "already_exists",
            Error::Locked { .. } => "locked",
            Error::InvalidParameters(_) => "invalid_parameters",
            Error::Record { .. } => "record",
            Error::TimedOut(_) => "timed_out",
            Error::Io { .. } => "io",
        }
    }

    /// A failure of [`kai_core::fs`] on `path`: a file there already ([`Error::AlreadyExists`]), one
    /// another writer holds ([`Error::Locked`]), or an I/O error.
    pub(crate) fn file(path: &std::path::Path, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                path: path.display().to_string(),
            },
            std::io::ErrorKind::WouldBlock => Error::Locked {
                path: path.display().to_string(),
            },
            _ => Error::io(path, source),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn tampered(part: impl Into<String>) -> Self {
        Error::Tampered { part: part.into() }
    }
}
