//! Artifacts: what agents make (texts, JSON documents, files of any MIME type), kept content-addressed
//! in a directory with a record of the run, step, tool and call that made each one.
//!
//! - [`ArtifactStore`] saves, gets (checked against its SHA-256) and lists artifacts, within
//!   [`ArtifactLimits`] per artifact and per run ([`Error::LimitExceeded`](crate::Error::LimitExceeded)).
//! - [`artifact_tools`] gives an agent `save_artifact`, `read_artifact` and `list_artifacts`, which
//!   see only the calling run's artifacts.

mod store;
mod tools;

pub use store::{Artifact, ArtifactLimits, ArtifactStore, MAX_LISTED, NewArtifact, Producer};
pub use tools::{ListArgs, MAX_LIST_ENTRIES, MAX_READ_BYTES, ReadArgs, SaveArgs, artifact_tools};
