//! The crate's error type.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything that can go wrong in kai-core, and in the providers that implement its traits.
///
/// Model and provider failures have variants a caller can act on (retry, shorten the prompt, fix the
/// key). Agent runs wrap this in [`RunError`](crate::RunError), which also carries the run's state so
/// the transcript is never lost.
///
/// Messages never contain API keys or full prompts.
///
/// It serializes with serde as an object tagged by a stable snake_case `kind` (the same string
/// [`kind`](Error::kind) returns) beside every field, durations in milliseconds, so that bindings in
/// other languages can rebuild it:
///
/// ```
/// use kai_core::Error;
///
/// let error = Error::RateLimited { message: "slow down".into(), retry_after: Some(std::time::Duration::from_millis(1500)) };
/// let json = serde_json::to_value(&error).unwrap();
/// assert_eq!(json, serde_json::json!({"kind": "rate_limited", "message": "slow down", "retry_after_ms": 1500}));
/// assert_eq!(serde_json::from_value::<Error>(json).unwrap(), error);
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Error {
    /// The provider rejected the credentials (HTTP 401).
    #[error("authentication failed: {message}")]
    Authentication {
        /// The provider's explanation.
        message: String,
    },
    /// The credentials are valid but not allowed to do this (HTTP 403).
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// The provider's explanation.
        message: String,
    },
    /// Too many requests or tokens; try again later.
    #[error("rate limited: {message}")]
    RateLimited {
        /// The provider's explanation.
        message: String,
        /// How long the provider asked us to wait, when it said.
        #[serde(rename = "retry_after_ms", default, with = "millis::option")]
        retry_after: Option<Duration>,
    },
    /// The prompt does not fit the model's context window.
    #[error("context too long: {message}")]
    ContextTooLong {
        /// The provider's explanation.
        message: String,
    },
    /// The provider rejected the request as invalid.
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// The provider's explanation.
        message: String,
    },
    /// The provider failed (HTTP 5xx, or an error event in a stream).
    #[error("server error{}: {message}", status.map(|s| format!(" {s}")).unwrap_or_default())]
    Server {
        /// The HTTP status, when there was one.
        #[serde(default)]
        status: Option<u16>,
        /// The provider's explanation.
        message: String,
    },
    /// A request took longer than its timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection failed or broke.
    #[error("transport error: {message}")]
    Transport {
        /// What failed.
        message: String,
    },
    /// The provider answered with something that is not what its API documents.
    #[error("malformed response: {message} (body starts: {snippet:?})")]
    MalformedResponse {
        /// What was wrong.
        message: String,
        /// The start of the offending body, bounded in length.
        #[serde(default)]
        snippet: String,
    },
    /// The model or provider cannot do what was asked (for example streaming or embeddings).
    #[error("unsupported: {message}")]
    Unsupported {
        /// What is not supported.
        message: String,
    },
    /// The run was cancelled through its cancellation token.
    #[error("cancelled")]
    Cancelled,
    /// The run used all its steps without the model giving a final answer.
    #[error("the run used all {max_steps} steps without a final answer")]
    MaxStepsExceeded {
        /// The limit that was reached.
        max_steps: u32,
    },
    /// The run's overall deadline passed.
    #[error("the run's deadline passed")]
    DeadlineExceeded,
    /// One step (a model call and its tool calls) took longer than the per-step timeout.
    #[error("step {step} took longer than the step timeout")]
    StepTimeout {
        /// The step that timed out, counted from 1.
        step: u32,
    },
    /// A hook asked for approval of these tool calls; the run is suspended until the approval arrives.
    #[error("approval required for tool call(s): {}", call_ids.join(", "))]
    ApprovalRequired {
        /// The ids of the tool calls waiting for a decision.
        call_ids: Vec<String>,
    },
    /// Structured output still did not match its schema after every allowed repair.
    #[error("output did not match the schema after {attempts} attempt(s): {message}")]
    InvalidOutput {
        /// The last validation failure.
        message: String,
        /// How many answers were tried.
        attempts: u32,
    },
    /// The agent, tool set or request was set up wrongly (for example two tools with one name).
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// A hook stopped the run.
    #[error("hook stopped the run: {message}")]
    Hook {
        /// The hook's reason.
        message: String,
    },
    /// A prompt template did not parse or render.
    #[error("the template {template:?} failed: {message}")]
    Template {
        /// The template's name.
        template: String,
        /// What went wrong, as the template engine says it.
        message: String,
    },
    /// A template used a variable its context lacks.
    #[error("the template {template:?} uses {variable:?}, which is not among its variables")]
    UndefinedVariable {
        /// The template rendered.
        template: String,
        /// The variable, as written in the template (`user.name`).
        variable: String,
    },
    /// Nothing of this name (a prompt, a template, a persona), or no such version of it, exists.
    #[error("nothing is named {name:?}{}", version.map(|v| format!(" in version {v}")).unwrap_or_default())]
    NotFound {
        /// The name asked for.
        name: String,
        /// The version asked for; `None` for the latest.
        version: Option<u32>,
    },
    /// A configuration does not parse or does not pass its checks.
    #[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    InvalidConfig {
        /// Where in the configuration (`agents.timeout_ms`); empty for the whole text (a syntax error).
        path: String,
        /// What is wrong, and where it came from (the file, the `KAI_*` variable).
        message: String,
    },
    /// A size or count limit would be passed (an artifact too big, a run's artifacts too many).
    #[error("the {limit} limit is {max}; this needs {requested}")]
    LimitExceeded {
        /// Which limit, in snake_case (`artifact_bytes`, `run_bytes`, `run_artifacts`).
        limit: String,
        /// What was asked for, counted as the limit counts.
        requested: u64,
        /// The limit.
        max: u64,
    },
    /// An artifact to save is not what it says it is (a MIME type that is none, text that is not
    /// UTF-8, JSON that does not parse, a name or metadata out of bounds).
    #[error("invalid artifact: {message}")]
    InvalidArtifact {
        /// What is wrong.
        message: String,
    },
    /// A plan cannot run: a cycle, a dependency on nothing, no subtasks, an unknown worker or tool.
    #[error("invalid plan: {problem}")]
    InvalidPlan {
        /// What is wrong with it.
        problem: crate::plan::PlanProblem,
    },
    /// A subtask of a plan failed for good: its retries and the plan's re-plans are used up.
    #[error("subtask {subtask:?} failed after {attempts} attempt(s): {error}")]
    SubtaskFailed {
        /// The subtask's id.
        subtask: String,
        /// Runs started for it.
        attempts: u32,
        /// Why its last attempt failed.
        error: Box<Error>,
    },
    /// Reading or writing a store on disk failed, or what it holds is damaged.
    #[error("storage error: {message}")]
    Storage {
        /// What failed, and where.
        message: String,
    },
}

impl Error {
    /// The variant's stable snake_case name: the `kind` field of its serde form, and the
    /// OpenTelemetry `error.type` of a failed span.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Authentication { .. } => "authentication",
            Error::PermissionDenied { .. } => "permission_denied",
            Error::RateLimited { .. } => "rate_limited",
            Error::ContextTooLong { .. } => "context_too_long",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::Server { .. } => "server",
            Error::Timeout => "timeout",
            Error::Transport { .. } => "transport",
            Error::MalformedResponse { .. } => "malformed_response",
            Error::Unsupported { .. } => "unsupported",
            Error::Cancelled => "cancelled",
            Error::MaxStepsExceeded { .. } => "max_steps_exceeded",
            Error::DeadlineExceeded => "deadline_exceeded",
            Error::StepTimeout { .. } => "step_timeout",
            Error::ApprovalRequired { .. } => "approval_required",
            Error::InvalidOutput { .. } => "invalid_output",
            Error::Config { .. } => "config",
            Error::Hook { .. } => "hook",
            Error::Template { .. } => "template",
            Error::UndefinedVariable { .. } => "undefined_variable",
            Error::NotFound { .. } => "not_found",
            Error::Storage { .. } => "storage",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::InvalidArtifact { .. } => "invalid_artifact",
            Error::InvalidPlan { .. } => "invalid_plan",
            Error::SubtaskFailed { .. } => "subtask_failed",
        }
    }

    /// Whether retrying the same request may succeed (rate limits, timeouts, transport and server errors).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Timeout | Error::Transport { .. } | Error::Server { .. }
        )
    }

    /// How long the provider asked to wait before retrying, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A [`Storage`](Error::Storage) error: `doing` (`"reading"`) the file at `path` failed with `error`.
    pub(crate) fn storage(path: &std::path::Path, doing: &str, error: &std::io::Error) -> Self {
        Error::Storage {
            message: format!("{doing} {}: {error}", path.display()),
        }
    }

    /// A [`MalformedResponse`](Error::MalformedResponse) whose snippet is the start of `body`, cut at
    /// 256 bytes on a character boundary.
    pub fn malformed(message: impl Into<String>, body: &str) -> Self {
        const MAX_SNIPPET: usize = 256;
        Error::MalformedResponse {
            message: message.into(),
            snippet: body[..body.floor_char_boundary(MAX_SNIPPET)].to_owned(),
        }
    }
}

/// Durations as whole milliseconds in serde forms, saturating at `u64::MAX`.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    fn to_millis(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
    }

    /// `Duration` as milliseconds.
    pub(crate) fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(to_millis(*duration))
    }

    /// Milliseconds as a `Duration`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }

    /// `Option<Duration>` as optional milliseconds.
    pub(crate) mod option {
        use super::*;

        /// `Option<Duration>` as optional milliseconds.
        pub(crate) fn serialize<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
            match duration {
                Some(duration) => serializer.serialize_some(&to_millis(*duration)),
                None => serializer.serialize_none(),
            }
        }

        /// Optional milliseconds as `Option<Duration>`.
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_serde_with_its_kind_tag() {
        let errors = [
            Error::Authentication { message: "a".into() },
            Error::PermissionDenied { message: "b".into() },
            Error::RateLimited {
                message: "c".into(),
                retry_after: None,
            },
            Error::ContextTooLong { message: "d".into() },
            Error::InvalidRequest { message: "e".into() },
            Error::Server {
                status: Some(502),
                message: "f".into(),
            },
            Error::Timeout,
            Error::Transport { message: "g".into() },
            Error::MalformedResponse {
                message: "h".into(),
                snippet: "{".into(),
            },
            Error::Unsupported { message: "i".into() },
            Error::Cancelled,
            Error::MaxStepsExceeded { max_steps: 3 },
            Error::DeadlineExceeded,
            Error::StepTimeout { step: 2 },
            Error::ApprovalRequired {
                call_ids: vec!["c1".into()],
            },
            Error::InvalidOutput {
                message: "j".into(),
                attempts: 3,
            },
            Error::Config { message: "k".into() },
            Error::Hook { message: "l".into() },
            Error::LimitExceeded {
                limit: "run_bytes".into(),
                requested: 11,
                max: 10,
            },
            Error::InvalidArtifact { message: "m".into() },
            Error::InvalidConfig {
                path: "agents.timeout_ms".into(),
                message: "n".into(),
            },
            Error::InvalidPlan {
                problem: crate::plan::PlanProblem::Cycle {
                    subtasks: vec!["a".into(), "b".into()],
                },
            },
            Error::SubtaskFailed {
                subtask: "a".into(),
                attempts: 2,
                error: Box::new(Error::Timeout),
            },
        ];
        for error in errors {
            let json = serde_json::to_value(&error).unwrap();
            assert_eq!(json["kind"], error.kind(), "{json}");
            assert_eq!(serde_json::from_value::<Error>(json).unwrap(), error);
        }
    }

    #[test]
    fn a_huge_retry_after_saturates_instead_of_failing() {
        let error = Error::RateLimited {
            message: "x".into(),
            retry_after: Some(Duration::MAX),
        };
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(json["retry_after_ms"], u64::MAX);
    }

    #[test]
    fn retryable_kinds() {
        assert!(Error::Timeout.is_retryable());
        assert!(
            Error::Server {
                status: Some(503),
                message: "busy".into()
            }
            .is_retryable()
        );
        assert!(
            !Error::Authentication {
                message: "bad key".into()
            }
            .is_retryable()
        );
        let limited = Error::RateLimited {
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn malformed_snippet_is_bounded_and_cut_on_a_char_boundary() {
        let body = "é".repeat(1000);
        let Error::MalformedResponse { snippet, .. } = Error::malformed("bad", &body) else {
            panic!("wrong variant");
        };
        assert!(snippet.len() <= 256);
        assert!(snippet.chars().all(|c| c == 'é'));
    }

    #[test]
    fn server_error_display() {
        let e = Error::Server {
            status: Some(502),
            message: "bad gateway".into(),
        };
        assert_eq!(e.to_string(), "server error 502: bad gateway");
    }
}
