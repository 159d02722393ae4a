//! `kai.RunState`: a run's serializable state, for approvals and resuming in another process.

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::error::{config_error, core_error};

/// The state of an agent run: its transcript, usage and the tool calls waiting for approval.
///
/// `to_json()` and `RunState.from_json()` carry it across processes; `Agent.run(state)` resumes it.
#[pyclass(module = "kai._kai", from_py_object)]
#[derive(Clone)]
pub(crate) struct RunState {
    pub(crate) inner: kai_core::RunState,
}

impl From<kai_core::RunState> for RunState {
    fn from(inner: kai_core::RunState) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl RunState {
    /// A new run on one user message.
    #[new]
    fn new(input: String) -> Self {
        kai_core::RunState::new(input).into()
    }

    /// The next turn of a conversation: the transcript so far (`RunResult.messages`) and a new user
    /// message.
    #[staticmethod]
    fn continuing(messages: &Bound<'_, PyAny>, input: String) -> PyResult<Self> {
        Ok(kai_core::RunState::continuing(from_python(messages)?, input).into())
    }

    /// Reads a state written by `to_json` (in this process or another).
    ///
    /// A state is trusted as written: read states only from storage you trust. A forged one can approve
    /// its own pending calls, add calls to run with any arguments, put words in the transcript, and
    /// take another run's id (and so its tools' idempotency keys).
    #[staticmethod]
    fn from_json(json: &str) -> PyResult<Self> {
        serde_json::from_str::<kai_core::RunState>(json)
            .map(Self::from)
            .map_err(|error| config_error(format!("not a kAI run state: {error}")))
    }

    /// The state as JSON text.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(|error| config_error(error.to_string()))
    }

    /// The run's id, stable across resumes (tools use it for idempotency keys).
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }

    /// Model calls made so far.
    #[getter]
    fn steps(&self) -> u32 {
        self.inner.steps
    }

    /// The transcript so far, as message dicts.
    #[getter]
    fn messages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.messages)
    }

    /// Tokens used so far, as a dict.
    #[getter]
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.usage)
    }

    /// The tool calls waiting for a decision, as dicts with `call` (`id`, `name`, `arguments`) and
    /// `reason`.
    #[getter]
    fn pending_approvals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let pending = self
            .inner
            .pending_approvals()
            .map(|approval| to_python(py, approval))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, pending)
    }

    /// Approves one pending call by its id.
    fn approve(&mut self, call_id: &str) -> PyResult<()> {
        self.inner.approve(call_id).map_err(|error| core_error(&error))
    }

    /// Rejects one pending call by its id; the model sees the reason as the call's error.
    fn reject(&mut self, call_id: &str, reason: &str) -> PyResult<()> {
        self.inner.reject(call_id, reason).map_err(|error| core_error(&error))
    }

    /// Approves every pending call; returns how many.
    fn approve_all(&mut self) -> usize {
        self.inner.approve_all()
    }

    /// Rejects every pending call with one reason; returns how many.
    fn reject_all(&mut self, reason: &str) -> usize {
        self.inner.reject_all(reason)
    }

    /// Pickles as its JSON, so run errors carrying a state cross process pools and task queues.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = py.get_type::<Self>().getattr("from_json")?;
        Ok((from_json, (self.to_json()?,)))
    }

    fn __repr__(&self) -> String {
        format!(
            "RunState(id={:?}, steps={}, messages={}, pending_approvals={})",
            self.inner.id,
            self.inner.steps,
            self.inner.messages.len(),
            self.inner.pending_approvals().count()
        )
    }
}

/// A serde value as Python objects (dicts, lists, strings, numbers).
pub(crate) fn to_python<'py, T: serde::Serialize + ?Sized>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, value).map_err(|error| config_error(error.to_string()))
}

/// Python objects (dicts, lists, strings, numbers) as a serde value.
pub(crate) fn from_python<T: serde::de::DeserializeOwned>(value: &Bound<'_, PyAny>) -> PyResult<T> {
    pythonize::depythonize(value).map_err(|error| config_error(error.to_string()))
}
