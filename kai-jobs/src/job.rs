//! Jobs: what a job does, how it is retried, and where it stands.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobKind {
    /// A run of the worker's agent of this name on an input; the result is the run's `RunOutput`.
    Agent {
        /// The agent's name, as the worker knows it.
        agent: String,
        /// The user message the run starts with.
        input: String,
    },
    /// A plan of a goal, made and run by the worker's plan executor; the result is the `PlanOutput`.
    Plan {
        /// The goal.
        goal: String,
    },
}

/// A job to enqueue: what it does, and how it is scheduled and retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// What it does.
    pub kind: JobKind,
    /// Jobs of higher priority are leased first; equal ones in the order they were enqueued.
    #[serde(default)]
    pub priority: i32,
    /// Runs allowed, the first included; after the last fails the job is dead-lettered.
    pub max_attempts: u32,
    /// How long one run may take, in milliseconds; then it is stopped and counts as a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The wait before the first retry, in milliseconds; it doubles for each retry after it.
    pub backoff_ms: u64,
    /// Enqueueing again with the same key gives back the first job instead of a second one, whatever
    /// its spec and wherever it stands (done, failed or cancelled too): the key is spent for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The longest first backoff a job takes (a day), in milliseconds.
pub const MAX_BACKOFF_MS: u64 = 24 * 60 * 60 * 1000;

/// The longest agent name, input, goal or idempotency key a job takes, in bytes.
pub const MAX_FIELD_BYTES: usize = 1 << 20;

impl JobSpec {
    /// A run of the agent `agent` on `input`: priority 0, 3 attempts, 1 s backoff, no timeout.
    pub fn agent(agent: impl Into<String>, input: impl Into<String>) -> Self {
        Self::of(JobKind::Agent {
            agent: agent.into(),
            input: input.into(),
        })
    }

    /// A plan of `goal`, with the same defaults.
    pub fn plan(goal: impl Into<String>) -> Self {
        Self::of(JobKind::Plan { goal: goal.into() })
    }

    fn of(kind: JobKind) -> Self {
        Self {
            kind,
            priority: 0,
            max_attempts: 3,
            timeout_ms: None,
            backoff_ms: 1_000,
            idempotency_key: None,
        }
    }

    /// This job with another priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// This job with another attempt budget.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// This job with a timeout per run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// This job with another first backoff.
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// This job with an idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Checks what a queue must not take: no attempts, empty or oversized fields.
    pub fn check(&self) -> Result<(), Error> {
        let invalid = |message: &str| {
            Err(Error::InvalidJob {
                message: message.to_owned(),
            })
        };
        if self.max_attempts == 0 {
            return invalid("a job needs at least 1 attempt");
        }
        if self.timeout_ms == Some(0) {
            return invalid("a timeout of 0 would stop every run at once");
        }
        if self.backoff_ms > MAX_BACKOFF_MS {
            return invalid("a backoff over a day would leave the job waiting for ever");
        }
        let fields: Vec<&str> = match &self.kind {
            JobKind::Agent { agent, input } => vec![agent, input],
            JobKind::Plan { goal } => vec![goal],
        };
        if fields.iter().any(|field| field.trim().is_empty()) {
            return invalid("an agent name, input or goal is empty");
        }
        if self.idempotency_key.as_deref().is_some_and(str::is_empty) {
            return invalid("an idempotency key is empty");
        }
        if fields
            .iter()
            .chain(self.idempotency_key.as_deref().iter())
            .any(|field| field.len() > MAX_FIELD_BYTES)
        {
            return invalid("a field is over 1 MiB");
        }
        Ok(())
    }

    /// The wait before attempt `attempt + 1`, after attempt `attempt` failed.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 2u64.saturating_pow(attempt.saturating_sub(1));
        Duration::from_millis(self.backoff_ms.saturating_mul(factor))
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobStatus {
    /// Waiting for a worker (again, after a failed attempt, once its backoff has passed).
    Queued,
    /// A worker holds its lease and runs it.
    Running,
    /// Done; its result is kept.
    Succeeded,
    /// Dead-lettered: its last attempt failed (or it failed in a way no retry mends).
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobStatus {
    /// Its name in storage.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        Ok(match text {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            other => {
                return Err(Error::Storage {
                    message: format!("a job has the unknown status {other:?}"),
                });
            }
        })
    }

    /// Whether the job is over (succeeded, failed or cancelled).
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// A job and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// What it does and how it is retried.
    pub spec: JobSpec,
    /// Where it stands.
    pub status: JobStatus,
    /// Runs started, the one under way included.
    pub attempts: u32,
    /// Its result, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why its last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<kai_core::Error>,
    /// Whether a cancel was asked for while it ran.
    pub cancel_requested: bool,
    /// When it was enqueued, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it last changed.
    pub updated_ms: u64,
}

/// A worker's hold on a running job: until `expires_ms`, no other worker takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The job, as it stood when leased.
    pub job: Job,
    /// The worker holding it.
    pub worker: String,
    /// Proves the hold: a worker whose lease expired and was taken over cannot finish the job.
    pub token: String,
    /// When the lease ends unless renewed, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// Something that happened while a job ran (an agent's or a plan's event, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Its position among the job's events, from 1.
    pub seq: u64,
    /// The attempt it happened in.
    pub attempt: u32,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The event.
    pub event: serde_json::Value,
}

/// What renewing a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    /// The lease's new end.
    pub expires_ms: u64,
    /// Whether a cancel was asked for: the worker should stop the job.
    pub cancel_requested: bool,
}

/// A job as a backend stores it: JSON text for the spec, result and error, checked when parsed.
pub(crate) struct StoredJob {
    pub(crate) id: String,
    pub(crate) spec: String,
    pub(crate) status: String,
    pub(crate) attempts: u32,
    pub(crate) result: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) cancel_requested: bool,
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
}

impl StoredJob {
    /// The job, or [`Error::Storage`] naming what is damaged.
    pub(crate) fn parse(self) -> Result<Job, Error> {
        let id = self.id;
        let damaged = |what: &str, error: serde_json::Error| Error::Storage {
            message: format!("job {id}'s {what} is damaged: {error}"),
        };
        Ok(Job {
            spec: serde_json::from_str(&self.spec).map_err(|e| damaged("spec", e))?,
            status: JobStatus::parse(&self.status)?,
            attempts: self.attempts,
            result: self
                .result
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| damaged("result", e))?,
            error: self
                .error
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| damaged("error", e))?,
            cancel_requested: self.cancel_requested,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            id,
        })
    }
}

/// 128 random bits, hex: job ids and lease tokens.
pub(crate) fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|error| Error::Storage {
        message: format!("no randomness for an id: {error}"),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
