//! Where a plan's state is kept after every change, so that it survives a crash.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::error::Error;
use crate::fs::{FileLock, off_thread, read_limited, write_atomic};
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

/// A plan's state in one JSON file, replaced atomically at every checkpoint (on a helper thread, so the
/// async runtime is not held up) and locked against a second writer (another process resuming the same
/// plan) for as long as this value lives.
///
/// A file holds one plan: once it has held a state, saving another plan's state (another run on the
/// same executor) is [`Error::Storage`] rather than an overwrite. A state over
/// [`MAX_BYTES`](Self::MAX_BYTES) is refused when saved ([`Error::LimitExceeded`]), so nothing is
/// written that could not be read back.
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
    /// The id of the plan this file holds, once known.
    plan_id: Mutex<Option<String>>,
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
        Ok(Self {
            path,
            plan_id: Mutex::new(None),
            _lock: lock,
        })
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
        let state: PlanState = serde_json::from_slice(&bytes).map_err(|error| Error::Storage {
            message: format!("{} does not hold a plan state: {error}", self.path.display()),
        })?;
        self.hold(&state.id)?;
        Ok(Some(state))
    }

    /// Binds this file to the plan `id`, or refuses it if the file holds another plan.
    fn hold(&self, id: &str) -> Result<(), Error> {
        let mut held = self.plan_id.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_deref() {
            Some(held) if held != id => Err(Error::Storage {
                message: format!(
                    "{} holds the plan {held}; the plan {id} needs a file of its own",
                    self.path.display()
                ),
            }),
            Some(_) => Ok(()),
            None => {
                *held = Some(id.to_owned());
                Ok(())
            }
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[crate::async_trait]
impl PlanCheckpoint for PlanFile {
    async fn save(&self, state: &PlanState) -> Result<(), Error> {
        self.hold(&state.id)?;
        let bytes = serde_json::to_vec(state).map_err(|error| Error::Storage {
            message: format!("serializing the plan state: {error}"),
        })?;
        if bytes.len() as u64 > Self::MAX_BYTES {
            return Err(Error::LimitExceeded {
                limit: "plan_state_bytes".into(),
                requested: bytes.len() as u64,
                max: Self::MAX_BYTES,
            });
        }
        let path = self.path.clone();
        off_thread(move || write_atomic(&path, &bytes))
            .await
            .and_then(|written| written)
            .map_err(|error| Error::storage(&self.path, "writing", &error))
    }
}
