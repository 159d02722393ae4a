//! Calling Python functions from the run: sync ones on the blocking pool, coroutine functions as
//! tasks on an asyncio loop.
//!
//! A sync function runs on a worker thread of the blocking pool, holding the GIL only while Python
//! code runs. A coroutine function runs as a task on the caller's asyncio loop (when the run was
//! awaited) or on kAI's own background loop (when it was started by `run_sync`); when the run is
//! cancelled or dropped, that task is cancelled, so the function sees `asyncio.CancelledError`.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use futures::channel::oneshot;
use kai_core::{CancellationToken, ToolError as CoreToolError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

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
    /// An exception becomes a [`CoreToolError::Failed`] (see [`python_error`]); `cancel` (or dropping
    /// the future) stops a coroutine function's task.
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
        let function = Arc::clone(&self.function);
        let call = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let output = arguments(py)
                    .and_then(|arguments| function.bind(py).call1(arguments))
                    .map_err(|error| python_error(py, &error))?;
                json_output(&output)
            })
        });
        call.await
            .map_err(|error| CoreToolError::failed(format!("the Python function's thread failed: {error}")))?
    }

    async fn call_async<A>(&self, arguments: A, cancel: CancellationToken) -> Result<serde_json::Value, CoreToolError>
    where
        A: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let task = Python::attach(|py| {
            let schedule = || -> PyResult<Py<PyAny>> {
                let event_loop = coroutine_loop(py)?;
                let coroutine = self.function.bind(py).call1(arguments(py)?)?;
                let asyncio = py.import("asyncio")?;
                let future = asyncio.call_method1("run_coroutine_threadsafe", (coroutine, event_loop))?;
                let done = TaskDone {
                    sender: Mutex::new(Some(sender)),
                };
                future.call_method1("add_done_callback", (done,))?;
                Ok(future.unbind())
            };
            schedule().map_err(|error| python_error(py, &error))
        })?;
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
        Python::attach(|py| {
            // Cancelling a finished future does nothing; a failure here has no one to report to.
            let _ = self.0.bind(py).call_method0("cancel");
        });
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

/// The asyncio loop coroutines run on: the loop of the `await` that started the run, else kAI's
/// background loop.
fn coroutine_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    match pyo3_async_runtimes::tokio::get_current_locals(py) {
        Ok(locals) => Ok(locals.event_loop(py)),
        Err(_) => background_loop(py),
    }
}

/// An asyncio loop running forever on a daemon thread of its own, started on first use; coroutines
/// of runs started by `run_sync` run there.
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
