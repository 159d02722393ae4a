//! The crate's error type.

use serde::{Deserialize, Serialize};

/// What can go wrong with a job queue.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Error {
    /// No job has this id.
    #[error("no job has the id {id:?}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The lease on this job ended (it expired and another worker took the job, or the job was
    /// cancelled): what this worker does with the job no longer counts.
    #[error("the lease on job {id:?} is lost")]
    LeaseLost {
        /// The job.
        id: String,
    },
    /// A job to enqueue is not valid (an empty input, an attempt budget of 0, an oversized field).
    #[error("invalid job: {message}")]
    InvalidJob {
        /// What is wrong.
        message: String,
    },
    /// A schedule is not valid (a cron expression or time zone that does not parse, an interval under a
    /// second).
    #[error("invalid schedule: {message}")]
    InvalidSchedule {
        /// What is wrong.
        message: String,
    },
    /// The queue's storage failed, or what it holds is damaged.
    #[error("job storage failed: {message}")]
    Storage {
        /// What failed.
        message: String,
    },
}

impl Error {
    /// The variant's stable snake_case name (the `kind` of its serde form).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::LeaseLost { .. } => "lease_lost",
            Error::InvalidJob { .. } => "invalid_job",
            Error::InvalidSchedule { .. } => "invalid_schedule",
            Error::Storage { .. } => "storage",
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Error::Storage {
            message: error.to_string(),
        }
    }
}
