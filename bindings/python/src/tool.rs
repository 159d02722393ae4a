//! Python functions as kai tools.

use std::sync::Arc;

use kai_core::{ToolContext as CoreContext, dynamic_tool};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::call::PythonFunction;
use crate::error::core_error;
use crate::state::{from_python, to_python};

/// A tool as the native layer takes it: a name, a description, a JSON Schema for the arguments and a
/// Python function called as `function(arguments: dict, context: ToolContext)`.
///
/// `kai.tool` and `kai.Agent(tools=[...])` build these from plain functions; this class is the
/// low-level form for schemas known only at run time.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Tool {
    pub(crate) inner: Arc<dyn kai_core::Tool>,
}

#[pymethods]
impl Tool {
    #[new]
    #[pyo3(signature = (name, description, parameters, function, *, is_async))]
    fn new(
        name: String,
        description: String,
        parameters: &Bound<'_, PyAny>,
        function: Py<PyAny>,
        is_async: bool,
    ) -> PyResult<Self> {
        let parameters: serde_json::Value = from_python(parameters)?;
        let function = PythonFunction::new(function, is_async);
        let tool = dynamic_tool(name, description, parameters, move |arguments, context: CoreContext| {
            let function = function.clone();
            async move {
                let cancel = context.cancel.clone();
                let arguments = tool_arguments(arguments, ToolContext::from(&context));
                function.call(arguments, cancel).await
            }
        })
        .map_err(|error| core_error(&error))?;
        Ok(Self { inner: Arc::new(tool) })
    }

    /// The tool's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.definition().name
    }

    /// The tool's description.
    #[getter]
    fn description(&self) -> String {
        self.inner.definition().description
    }

    /// The JSON Schema of the tool's arguments.
    #[getter]
    fn parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.definition().parameters)
    }

    fn __repr__(&self) -> String {
        format!("Tool({:?})", self.inner.definition().name)
    }
}

/// `(arguments, context)` for a tool function.
fn tool_arguments(
    arguments: serde_json::Value,
    context: ToolContext,
) -> impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>> + Send + 'static {
    move |py| {
        let arguments = pythonize::pythonize(py, &arguments)?;
        let context = Bound::new(py, context)?.into_any();
        PyTuple::new(py, [arguments, context])
    }
}

/// What a tool learns about the call it serves.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct ToolContext {
    /// The model's id for this call.
    #[pyo3(get)]
    call_id: String,
    /// The id of the run that made the call.
    #[pyo3(get)]
    run_id: String,
    /// The agent step of the call, counted from 1.
    #[pyo3(get)]
    step: u32,
    /// A key that is the same each time this call is retried or resumed, and differs between calls.
    #[pyo3(get)]
    idempotency_key: String,
    cancel: kai_core::CancellationToken,
}

#[pymethods]
impl ToolContext {
    /// Whether the run was cancelled or the call timed out: a long sync tool should check this and stop.
    #[getter]
    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

impl From<&CoreContext> for ToolContext {
    fn from(context: &CoreContext) -> Self {
        Self {
            call_id: context.call_id.clone(),
            run_id: context.run_id.clone(),
            step: context.step,
            idempotency_key: context.idempotency_key(),
            cancel: context.cancel.clone(),
        }
    }
}
