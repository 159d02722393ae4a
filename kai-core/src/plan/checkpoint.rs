//! Where a plan's state is kept after every change, so that it survives a crash.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::fs::{FileLock, read_limited, write_atomic};
use crate::marker::{MaybeSend, MaybeSync};
use crate::plan::state::PlanState;

/// Keeps a plan's state: the executor hands it the state after every change (a plan made, a subtask
/// done, failed or suspended, a re-plan). An error stops the plan, since what it did could not be
/// kept.
#[crate::async_trait]
pub trait PlanCheckpoint: MaybeSend + MaybeSync {
    /// Stores `state`, replacing what was stored before.
    async fn save(&self, state: &PlanState) -> Result<(), Error>;
}

/// A plan's state in one JSON file, replaced atomically at every checkpoint and locked against a
/// second writer (another process resuming the same plan) for as long as this value lives.
///
/// ```
/// use kai_core::plan::{Plan, PlanFile, PlanState, Subtask};
///
/// let directory = tempfile::tempdir().unwrap();
/// let file = PlanFile::open(directory.path().join("plan.json")).unwrap();
/// assert!(file.load().unwrap().is_none());
/// ```
#[derive(Debug)]
pub struct PlanFile {
    path: PathBuf,
    _lock: FileLock,
}

impl PlanFile {
    /// The largest state file read back (16 MiB).
    pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

    /// Takes the file at `path` (which need not exist yet), failing with [`Error::Storage`] if another
    /// writer holds it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let lock = FileLock::acquire(&path).map_err(|error| Error::storage(&path, "locking", &error))?;
        Ok(Self { path, _lock: lock })
    }

    /// The state stored last, or `None` if nothing was stored yet.
    ///
    /// A file over [`MAX_BYTES`](Self::MAX_BYTES), or one that does not hold a plan state, is
    /// [`Error::Storage`]. What the state says is checked again when the plan resumes.
    pub fn load(&self) -> Result<Option<PlanState>, Error> {
        let bytes = match read_limited(&self.path, Self::MAX_BYTES) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::storage(&self.path, "reading", &error)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| Error::Storage {
                message: format!("{} does not hold a plan state: {error}", self.path.display()),
            })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[crate::async_trait]
impl PlanCheckpoint for PlanFile {
    async fn save(&self, state: &PlanState) -> Result<(), Error> {
        let bytes = serde_json::to_vec(state).map_err(|error| Error::Storage {
            message: format!("serializing the plan state: {error}"),
        })?;
        write_atomic(&self.path, &bytes).map_err(|error| Error::storage(&self.path, "writing", &error))
    }
}
