//! The one place where Rust errors become Python exceptions.
//!
//! Every exception is a `kai.KaiError` whose class follows the Rust error's `kind`; it carries `kind`,
//! `details` (the Rust error's serde fields as a dict) and each field as an attribute (durations in
//! seconds), and, when it ended a run, `state`: the run's `RunState`, ready to be resumed. The classes
//! live in the `kai` package (`kai.KaiError`, ...), so exceptions pickle by reference.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{PyTypeInfo, create_exception};

use crate::state::RunState;

create_exception!(kai, KaiError, PyException, "Every error kAI raises.");
create_exception!(
    kai,
    ConfigError,
    KaiError,
    "The agent, tools or request were set up wrongly."
);
create_exception!(
    kai,
    ProviderError,
    KaiError,
    "The model provider failed or refused the request."
);
create_exception!(
    kai,
    AuthenticationError,
    ProviderError,
    "The provider rejected the credentials (HTTP 401)."
);
create_exception!(
    kai,
    PermissionDeniedError,
    ProviderError,
    "The credentials may not do this (HTTP 403)."
);
create_exception!(
    kai,
    RateLimitError,
    ProviderError,
    "Too many requests; `retry_after` says how long to wait."
);
create_exception!(
    kai,
    ContextTooLongError,
    ProviderError,
    "The prompt does not fit the model's context."
);
create_exception!(
    kai,
    InvalidRequestError,
    ProviderError,
    "The provider rejected the request as invalid."
);
create_exception!(
    kai,
    ServerError,
    ProviderError,
    "The provider failed (HTTP 5xx); `status` says which."
);
create_exception!(
    kai,
    ProviderTimeoutError,
    ProviderError,
    "A request to the provider timed out."
);
create_exception!(
    kai,
    TransportError,
    ProviderError,
    "The connection to the provider failed or broke."
);
create_exception!(
    kai,
    MalformedResponseError,
    ProviderError,
    "The provider answered with something undocumented."
);
create_exception!(
    kai,
    UnsupportedError,
    ProviderError,
    "The model or provider cannot do what was asked."
);
create_exception!(
    kai,
    RunError,
    KaiError,
    "A run stopped without an answer; `state` holds it for resuming."
);
create_exception!(
    kai,
    ApprovalRequired,
    RunError,
    "Tool calls wait for approval; approve them in `state`."
);
create_exception!(kai, RunCancelled, RunError, "The run was cancelled.");
create_exception!(
    kai,
    MaxStepsExceeded,
    RunError,
    "The run used all its steps without an answer."
);
create_exception!(
    kai,
    DeadlineExceeded,
    RunError,
    "The run's deadline or a step's timeout passed."
);
create_exception!(
    kai,
    InvalidOutputError,
    RunError,
    "Structured output did not match its schema."
);
create_exception!(kai, HookError, RunError, "A hook stopped the run.");
create_exception!(
    kai,
    VaultError,
    KaiError,
    "A vault operation failed; `kind` says why (wrong_passphrase, locked, tampered, ...)."
);
create_exception!(
    kai,
    StoreError,
    KaiError,
    "A vector store or index operation failed; `kind` says why (dimension_mismatch, locked, ...)."
);
create_exception!(
    kai,
    KlpError,
    KaiError,
    "A KLP operation failed; `kind` says why (invalid_did, message_rejected, audit_invalid, ...)."
);
create_exception!(
    kai,
    ConsentError,
    KlpError,
    "A consent token was refused; `kind` names the rejection (expired, not_granted, replayed, ...)."
);
create_exception!(
    kai,
    ToolError,
    KaiError,
    "Raised in a tool: the model sees the message as the tool's error."
);

/// Registers the exception classes on the module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    for (name, class) in [
        ("KaiError", KaiError::type_object(py)),
        ("ConfigError", ConfigError::type_object(py)),
        ("ProviderError", ProviderError::type_object(py)),
        ("AuthenticationError", AuthenticationError::type_object(py)),
        ("PermissionDeniedError", PermissionDeniedError::type_object(py)),
        ("RateLimitError", RateLimitError::type_object(py)),
        ("ContextTooLongError", ContextTooLongError::type_object(py)),
        ("InvalidRequestError", InvalidRequestError::type_object(py)),
        ("ServerError", ServerError::type_object(py)),
        ("ProviderTimeoutError", ProviderTimeoutError::type_object(py)),
        ("TransportError", TransportError::type_object(py)),
        ("MalformedResponseError", MalformedResponseError::type_object(py)),
        ("UnsupportedError", UnsupportedError::type_object(py)),
        ("RunError", RunError::type_object(py)),
        ("ApprovalRequired", ApprovalRequired::type_object(py)),
        ("RunCancelled", RunCancelled::type_object(py)),
        ("MaxStepsExceeded", MaxStepsExceeded::type_object(py)),
        ("DeadlineExceeded", DeadlineExceeded::type_object(py)),
        ("InvalidOutputError", InvalidOutputError::type_object(py)),
        ("HookError", HookError::type_object(py)),
        ("ToolError", ToolError::type_object(py)),
        ("VaultError", VaultError::type_object(py)),
        ("StoreError", StoreError::type_object(py)),
        ("KlpError", KlpError::type_object(py)),
        ("ConsentError", ConsentError::type_object(py)),
    ] {
        module.add(name, class)?;
    }
    Ok(())
}

/// The exception class for an error's kind.
fn class_for<'py>(py: Python<'py>, kind: &str) -> Bound<'py, pyo3::types::PyType> {
    match kind {
        "authentication" => AuthenticationError::type_object(py),
        "permission_denied" => PermissionDeniedError::type_object(py),
        "rate_limited" => RateLimitError::type_object(py),
        "context_too_long" => ContextTooLongError::type_object(py),
        "invalid_request" => InvalidRequestError::type_object(py),
        "server" => ServerError::type_object(py),
        "timeout" => ProviderTimeoutError::type_object(py),
        "transport" => TransportError::type_object(py),
        "malformed_response" => MalformedResponseError::type_object(py),
        "unsupported" => UnsupportedError::type_object(py),
        "cancelled" => RunCancelled::type_object(py),
        "max_steps_exceeded" => MaxStepsExceeded::type_object(py),
        "deadline_exceeded" | "step_timeout" => DeadlineExceeded::type_object(py),
        "approval_required" => ApprovalRequired::type_object(py),
        "invalid_output" => InvalidOutputError::type_object(py),
        "config" => ConfigError::type_object(py),
        "hook" => HookError::type_object(py),
        _ => KaiError::type_object(py),
    }
}

/// A kai-core error as a Python exception (without a run state).
pub(crate) fn core_error(error: &kai_core::Error) -> PyErr {
    Python::attach(|py| build(py, error, None).unwrap_or_else(|_| KaiError::new_err(error.to_string())))
}

/// A failed run as a Python exception carrying the run's state.
///
/// A run that stopped before its first step (a bad configuration) still raises its own class
/// (`ConfigError`), so callers catch what they expect; its `state` is set all the same.
pub(crate) fn run_error(error: kai_core::RunError) -> PyErr {
    Python::attach(|py| {
        let state = RunState::from(*error.state);
        build(py, &error.error, Some(state)).unwrap_or_else(|_| KaiError::new_err(error.error.to_string()))
    })
}

fn build(py: Python<'_>, error: &kai_core::Error, state: Option<RunState>) -> PyResult<PyErr> {
    let kind = error.kind();
    let class = class_for(py, kind);
    let instance = class.call1((error.to_string(),))?;
    let details = match pythonize::pythonize(py, error) {
        Ok(details) => details.cast_into::<PyDict>()?,
        Err(_) => PyDict::new(py),
    };
    details.del_item("kind").ok();
    for (name, value) in details.iter() {
        let name: String = name.extract()?;
        // A field never hides what every exception has (`args`, ...) or what this module sets.
        if name.starts_with('_') || instance.hasattr(name.as_str())? || ["details", "state"].contains(&name.as_str()) {
            continue;
        }
        match name.strip_suffix("_ms") {
            // Durations cross as seconds, as Python's time APIs take them.
            Some(stem) => {
                let seconds = value.extract::<Option<f64>>()?.map(|millis| millis / 1000.0);
                instance.setattr(stem, seconds)?;
            }
            None => instance.setattr(name.as_str(), value)?,
        }
    }
    instance.setattr("kind", kind)?;
    instance.setattr("details", details)?;
    match state {
        Some(state) => instance.setattr("state", Py::new(py, state)?)?,
        None => instance.setattr("state", py.None())?,
    }
    Ok(PyErr::from_value(instance))
}

/// A kai-memory error as a Python exception: a model's or a run's error as those map, anything else as
/// a `VaultError` (for vault operations) or a `StoreError` with the error's `kind`.
pub(crate) fn memory_error(error: &kai_memory::Error, vault: bool) -> PyErr {
    match error {
        kai_memory::Error::Model(error) => core_error(error),
        kai_memory::Error::Agent(error) => run_error((**error).clone()),
        error => Python::attach(|py| {
            let class = if vault {
                VaultError::type_object(py)
            } else {
                StoreError::type_object(py)
            };
            tagged(py, &class, error.kind(), &error.to_string())
                .unwrap_or_else(|_| KaiError::new_err(error.to_string()))
        }),
    }
}

/// A kai-klp error as a Python exception: `ConsentError` for a refused token, a vault's error as
/// vault errors map, any other as `KlpError`, each with the error's `kind`.
pub(crate) fn klp_error(error: &kai_klp::Error) -> PyErr {
    if let kai_klp::Error::Vault(error) = error {
        return memory_error(error, true);
    }
    Python::attach(|py| {
        let kind = error.kind();
        let class = if error.is_consent_refusal() {
            ConsentError::type_object(py)
        } else {
            KlpError::type_object(py)
        };
        tagged(py, &class, kind, &error.to_string()).unwrap_or_else(|_| KaiError::new_err(error.to_string()))
    })
}

/// An exception of `class` with `message`, its `kind`, empty `details` and no `state`.
fn tagged(py: Python<'_>, class: &Bound<'_, pyo3::types::PyType>, kind: &str, message: &str) -> PyResult<PyErr> {
    let instance = class.call1((message,))?;
    instance.setattr("kind", kind)?;
    instance.setattr("details", PyDict::new(py))?;
    instance.setattr("state", py.None())?;
    Ok(PyErr::from_value(instance))
}

/// A [`ConfigError`] for a bad argument from Python.
pub(crate) fn config_error(message: impl Into<String>) -> PyErr {
    core_error(&kai_core::Error::Config {
        message: message.into(),
    })
}
