//! Python callables as agent hooks: allow, deny, rewrite or hold tool calls for approval, and
//! rewrite their results.

use std::sync::Arc;

use kai_core::{AgentHook, CancellationToken, HookContext, ToolCall, ToolDecision, ToolResult};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::call::PythonFunction;

/// Callables run around every tool call of an agent.
///
/// `before_tool(call)` gets `{"id", "name", "arguments"}` (the arguments parsed) and returns `None`
/// to allow the call or a decision dict: `{"decision": "deny", "reason": ...}`,
/// `{"decision": "rewrite", "arguments": {...}}` or `{"decision": "require_approval", "reason": ...}`.
/// `after_tool(call, result)` gets the call and `{"content", "is_error"}` and returns new content or
/// `None`. Either may be a coroutine function. A hook that raises, or returns something else, denies
/// the call (fails closed) or turns the result into an error.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Hook {
    pub(crate) inner: Arc<PythonHook>,
}

#[pymethods]
impl Hook {
    #[new]
    #[pyo3(signature = (*, before_tool = None, before_tool_is_async = false, after_tool = None, after_tool_is_async = false))]
    fn new(
        before_tool: Option<Py<PyAny>>,
        before_tool_is_async: bool,
        after_tool: Option<Py<PyAny>>,
        after_tool_is_async: bool,
    ) -> Self {
        Self {
            inner: Arc::new(PythonHook {
                before_tool: before_tool.map(|function| PythonFunction::new(function, before_tool_is_async)),
                after_tool: after_tool.map(|function| PythonFunction::new(function, after_tool_is_async)),
            }),
        }
    }
}

/// The [`AgentHook`] behind a [`Hook`].
pub(crate) struct PythonHook {
    before_tool: Option<PythonFunction>,
    after_tool: Option<PythonFunction>,
}

/// A tool call as hooks see it.
fn call_json(call: &ToolCall, arguments: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"id": call.id, "name": call.name, "arguments": arguments})
}

/// `(values...)` as the arguments of a Python call.
fn python_arguments(
    values: Vec<serde_json::Value>,
) -> impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>> + Send + 'static {
    move |py| {
        let values = values
            .iter()
            .map(|value| pythonize::pythonize(py, value))
            .collect::<Result<Vec<_>, _>>()?;
        PyTuple::new(py, values)
    }
}

#[kai_core::async_trait]
impl AgentHook for PythonHook {
    async fn before_tool(
        &self,
        _context: &HookContext,
        call: &ToolCall,
        arguments: &serde_json::Value,
    ) -> ToolDecision {
        let Some(function) = &self.before_tool else {
            return ToolDecision::Allow;
        };
        let arguments = python_arguments(vec![call_json(call, arguments)]);
        match function.call(arguments, CancellationToken::new()).await {
            Ok(serde_json::Value::Null) => ToolDecision::Allow,
            Ok(decision) => serde_json::from_value(decision).unwrap_or_else(|error| ToolDecision::Deny {
                reason: format!("the before_tool hook returned no valid decision: {error}"),
            }),
            Err(error) => ToolDecision::Deny {
                reason: format!("the before_tool hook failed: {error}"),
            },
        }
    }

    async fn after_tool(&self, _context: &HookContext, call: &ToolCall, result: &mut ToolResult) {
        let Some(function) = &self.after_tool else {
            return;
        };
        let arguments = serde_json::from_str(&call.arguments).unwrap_or(serde_json::Value::Null);
        let seen = serde_json::json!({"content": result.content, "is_error": result.is_error});
        let arguments = python_arguments(vec![call_json(call, &arguments), seen]);
        match function.call(arguments, CancellationToken::new()).await {
            Ok(serde_json::Value::Null) => {}
            Ok(serde_json::Value::String(content)) => result.content = content,
            Ok(other) => {
                result.content = format!("the after_tool hook returned {other} instead of text or None");
                result.is_error = true;
            }
            Err(error) => {
                result.content = format!("the after_tool hook failed: {error}");
                result.is_error = true;
            }
        }
    }
}
