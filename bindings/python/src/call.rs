//! Calling Python functions from a run, in the `contextvars` context of the code that started it.
//!
//! A coroutine function becomes a task on the loop of the `await` that started the run (or, for
//! `run_sync`, on kAI's own background loop); when the run is cancelled or dropped the task is
//! cancelled, so the coroutine sees `asyncio.CancelledError`. A sync function runs on a thread of the
//! runtime's blocking pool in a copy of the context, holding the GIL only while it runs (a hop through
//! an asyncio loop and its executor cost about ten times as much); it runs to its end, and can poll
//! `ToolContext.cancelled`. Both enter Python through [`attach`], so none starts once the interpreter
//! exits.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use futures::channel::oneshot;
use kai_core::{CancellationToken, ToolError as CoreToolError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3_async_runtimes::TaskLocals;

use crate::bridge::attach;
use crate::error::ToolError;

/// A Python function and how to call it.
#[derive(Clone)]
pub(crate) struct PythonFunction {
    function: Arc<Py<PyAny>>,
    is_async: bool,
}

impl PythonFunction {
    /// `function`, a coroutine function when `is_async`.
    pub(crate) fn new(function: Py<PyAny>, is_async: bool) -> Self {
        Self {
            function: Arc::new(function),
            is_async,
        }
    }

    /// Calls the function with the arguments `arguments` builds and returns its result as JSON.
    ///
    /// An exception becomes a [`CoreToolError::Failed`] (see [`python_error`]); `cancel`, or dropping
    /// the future, cancels the call's task.
    pub(crate) async fn call<A>(
        &self,
        arguments: A,
        cancel: CancellationToken,
    ) -> Result<serde_json::Value, CoreToolError>
    where
        A: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>> + Send + 'static,
    {
        if self.is_async {
            self.call_async(arguments, cancel).await
        } else {
            self.call_sync(arguments).await
        }
    }

    async fn call_sync<A>(&self, arguments: A) -> Result<serde_json::Value, CoreToolError>
    where
        A: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>> + Send + 'static,
    {
        // The context of the code that started the run; each call runs in a copy of its own, since one
        // context cannot be entered by two threads at once.
        let context = attach(|py| {
            pyo3_async_runtimes::tokio::get_current_locals(py)
                .and_then(|locals| locals.context(py).call_method0("copy"))
                .map(Bound::unbind)
                .map_err(|error| python_error(py, &error))
        })
        .unwrap_or(Err(CoreToolError::Cancelled))?;
        let function = Arc::clone(&self.function);
        let call = tokio::task::spawn_blocking(move || {
            attach(|py| {
                let mut call = vec![function.bind(py).clone()];
                let output = arguments(py)
                    .and_then(|arguments| {
                        call.extend(arguments.iter());
                        context.bind(py).call_method1("run", PyTuple::new(py, call)?)
                    })
                    .map_err(|error| python_error(py, &error))?;
                json_output(&output)
            })
            .unwrap_or(Err(CoreToolError::Cancelled))
        });
        call.await
            .map_err(|error| CoreToolError::failed(format!("the Python function's thread failed: {error}")))?
    }

    async fn call_async<A>(&self, arguments: A, cancel: CancellationToken) -> Result<serde_json::Value, CoreToolError>
    where
        A: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let scheduled = attach(|py| {
            let schedule = || -> PyResult<Py<PyAny>> {
                // The loop and context the run was started with (`awaitable` and `run_sync` set them).
                let locals = pyo3_async_runtimes::tokio::get_current_locals(py)?;
                let asyncio = py.import("asyncio")?;
                let coroutine = self.function.bind(py).call1(arguments(py)?)?;
                // Scheduled from inside the caller's context, so the task runs in a copy of it.
                let future = locals.context(py).call_method1(
                    "run",
                    (
                        asyncio.getattr("run_coroutine_threadsafe")?,
                        coroutine,
                        locals.event_loop(py),
                    ),
                )?;
                let done = TaskDone {
                    sender: Mutex::new(Some(sender)),
                };
                future.call_method1("add_done_callback", (done,))?;
                Ok(future.unbind())
            };
            schedule().map_err(|error| python_error(py, &error))
        });
        let task = scheduled.unwrap_or(Err(CoreToolError::Cancelled))?;
        let _cancel_on_drop = CancelTask(task);
        tokio::select! {
            result = receiver => result.unwrap_or(Err(CoreToolError::Cancelled)),
            () = cancel.cancelled() => Err(CoreToolError::Cancelled),
        }
    }
}

/// Cancels an asyncio task (through its `concurrent.futures.Future`) when dropped.
struct CancelTask(Py<PyAny>);

impl Drop for CancelTask {
    fn drop(&mut self) {
        // Cancelling a finished future does nothing; a failure here has no one to report to. While the
        // interpreter exits there is nothing left to cancel.
        let _ = attach(|py| self.0.bind(py).call_method0("cancel").map(drop));
    }
}

/// The done callback of a coroutine's task: sends its result, converted, to the waiting run.
#[pyclass(module = "kai._kai", frozen)]
struct TaskDone {
    sender: Mutex<Option<oneshot::Sender<Result<serde_json::Value, CoreToolError>>>>,
}

#[pymethods]
impl TaskDone {
    fn __call__(&self, py: Python<'_>, future: &Bound<'_, PyAny>) {
        let Some(sender) = self.sender.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let result = match future.call_method0("result") {
            Ok(output) => json_output(&output),
            Err(error) => Err(python_error(py, &error)),
        };
        // The run may be gone (cancelled); then no one waits for the result.
        let _ = sender.send(result);
    }
}

/// The loop and context for a run started by `run_sync`: kAI's background loop (the calling thread
/// may be inside a running loop, which `run_sync` blocks) and a copy of the caller's context.
pub(crate) fn background_locals(py: Python<'_>) -> PyResult<TaskLocals> {
    TaskLocals::new(background_loop(py)?).copy_context(py)
}

/// An asyncio loop running forever on a daemon thread of its own, started on first use.
fn background_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static LOOP: OnceLock<Py<PyAny>> = OnceLock::new();
    if let Some(event_loop) = LOOP.get() {
        return Ok(event_loop.bind(py).clone());
    }
    let event_loop = py.import("asyncio")?.call_method0("new_event_loop")?;
    let options = PyDict::new(py);
    options.set_item("target", event_loop.getattr("run_forever")?)?;
    options.set_item("name", "kai-asyncio")?;
    options.set_item("daemon", true)?;
    let thread = py.import("threading")?.getattr("Thread")?.call((), Some(&options))?;
    thread.call_method0("start")?;
    // Another thread may have won the race: use its loop and stop ours.
    let winner = LOOP.get_or_init(|| event_loop.clone().unbind());
    if !winner.bind(py).is(&event_loop) {
        event_loop.call_method1("call_soon_threadsafe", (event_loop.getattr("stop")?,))?;
    }
    Ok(winner.bind(py).clone())
}

/// A Python value as JSON; `None` is `null`, a `str` is a JSON string.
fn json_output(output: &Bound<'_, PyAny>) -> Result<serde_json::Value, CoreToolError> {
    pythonize::depythonize(output).map_err(|error| {
        CoreToolError::failed(format!(
            "the function returned a value that is not JSON (dict, list, str, int, float, bool or None): {error}"
        ))
    })
}

/// An exception raised by a Python function as the error the model sees: a `kai.ToolError`'s message
/// as it is, any other exception as `TypeName: message`.
pub(crate) fn python_error(py: Python<'_>, error: &PyErr) -> CoreToolError {
    if error.is_instance_of::<ToolError>(py) {
        return CoreToolError::failed(error.value(py));
    }
    let type_name = error
        .get_type(py)
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    CoreToolError::failed(format!("{type_name}: {}", error.value(py)))
}
