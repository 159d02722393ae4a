//! Rust futures as asyncio awaitables, and the rule that no thread of ours enters Python once the
//! interpreter starts to exit.
//!
//! A thread that takes or releases the GIL while the interpreter finalizes aborts the process. So every
//! entry into Python from a tokio thread goes through [`attach`], which counts itself in flight and
//! refuses once [`shutdown`] (registered with `atexit` by the `kai` package, which runs before
//! finalization) has begun; `shutdown` waits for the calls in flight to leave.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt as _;
use futures::channel::oneshot;
use pyo3::prelude::*;

/// Entries into Python from tokio threads that have not returned yet.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Set by [`shutdown`]: no new entries.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// Runs `f` holding the GIL, unless the interpreter is exiting (then `None`).
pub(crate) fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        }
    }
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let _leave = Leave;
    if SHUTTING_DOWN.load(Ordering::SeqCst) {
        return None;
    }
    // `try_attach` also refuses while the interpreter finalizes, where Python lets it tell.
    Python::try_attach(f)
}

/// A `KaiError` for work asked of kAI while the interpreter exits.
fn exiting() -> PyErr {
    crate::error::KaiError::new_err("the Python interpreter is exiting")
}

/// Stops new entries into Python from kAI's threads and new awaitables, and waits (without the GIL)
/// for the entries in flight, as Python waits for its own threads at exit: a sync tool still running
/// holds the exit until it returns or Ctrl-C interrupts the wait. The `kai` package registers it with
/// `atexit`.
#[pyfunction]
pub(crate) fn _shutdown(py: Python<'_>) -> PyResult<()> {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
        py.detach(|| std::thread::sleep(Duration::from_millis(1)));
        py.check_signals()?;
    }
    Ok(())
}

/// An asyncio future, on the running loop, for a Rust future run on the tokio runtime with the caller's
/// loop and context as its task locals; `convert` turns its output into the future's result (or
/// exception) with the GIL held. Cancelling the asyncio future drops the Rust future.
pub(crate) fn awaitable<'py, F, C>(py: Python<'py>, future: F, convert: C) -> PyResult<Bound<'py, PyAny>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    C: for<'a> FnOnce(Python<'a>, F::Output) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
{
    if SHUTTING_DOWN.load(Ordering::SeqCst) {
        return Err(exiting());
    }
    let locals = pyo3_async_runtimes::tokio::get_current_locals(py)?;
    let event_loop = locals.event_loop(py);
    let result = event_loop.call_method0("create_future")?;
    let (cancelled, on_cancel) = oneshot::channel();
    result.call_method1(
        "add_done_callback",
        (CancelOnDone {
            sender: Mutex::new(Some(cancelled)),
        },),
    )?;
    let target = result.clone().unbind();
    let event_loop = event_loop.unbind();
    pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        // A panic becomes the awaiting code's exception, never an awaitable that hangs.
        let future = std::panic::AssertUnwindSafe(pyo3_async_runtimes::tokio::scope(locals, future)).catch_unwind();
        let output = match futures::future::select(std::pin::pin!(future), on_cancel).await {
            futures::future::Either::Left((output, _)) => output,
            // The asyncio future was cancelled (or dropped): the Rust future is dropped with this task.
            futures::future::Either::Right(_) => return,
        };
        attach(|py| {
            let converted = output.map_err(panic_error).and_then(|output| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| convert(py, output)))
                    .map_err(panic_error)
                    .and_then(|converted| converted.map(Bound::unbind))
            });
            let (value, failed) = match converted {
                Ok(value) => (value, false),
                Err(error) => (error.into_value(py).into_any(), true),
            };
            let complete = Complete.into_pyobject(py)?;
            event_loop
                .bind(py)
                .call_method1("call_soon_threadsafe", (complete, target, value, failed))
                .map(drop)
        });
    });
    Ok(result)
}

/// A panic of kAI's code as the exception an awaiting caller sees.
fn panic_error(panic: Box<dyn std::any::Any + Send>) -> PyErr {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    pyo3::panic::PanicException::new_err(message)
}

/// Sends on a channel when its asyncio future is cancelled.
#[pyclass(module = "kai._kai", frozen)]
struct CancelOnDone {
    sender: Mutex<Option<oneshot::Sender<()>>>,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()?
            && let Some(sender) = self
                .sender
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        {
            let _ = sender.send(());
        }
        Ok(())
    }
}

/// Sets an asyncio future's result or exception on its loop, unless it is already done (cancelled).
#[pyclass(module = "kai._kai", frozen)]
struct Complete;

#[pymethods]
impl Complete {
    fn __call__(&self, future: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, failed: bool) -> PyResult<()> {
        if future.call_method0("done")?.is_truthy()? {
            return Ok(());
        }
        let method = if failed { "set_exception" } else { "set_result" };
        future.call_method1(method, (value,)).map(drop)
    }
}
