//! `kai._kai.Agent`: the agent loop of kai-core, run from asyncio or from sync code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kai_core::{AgentEventStream, CancellationToken, RunOptions, ToolChoice};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::{attach, awaitable};
use crate::call::{background_locals, python_error};
use crate::error::{config_error, run_error};
use crate::hook::Hook;
use crate::model::{ModelArg, seconds_to_duration};
use crate::state::{RunState, from_python, to_python};
use crate::tool::Tool;

/// An agent: a model, instructions and tools, run in a loop until the model answers.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Agent {
    inner: kai_core::Agent,
}

/// What a run starts from: a user message, or a stored state to resume.
#[derive(FromPyObject)]
enum RunInput {
    Text(String),
    State(RunState),
}

impl RunInput {
    fn into_state(self) -> kai_core::RunState {
        match self {
            RunInput::Text(text) => kai_core::RunState::new(text),
            RunInput::State(state) => state.inner,
        }
    }
}

#[pymethods]
impl Agent {
    #[new]
    #[pyo3(signature = (
        model, *, instructions = None, tools = Vec::new(), hooks = Vec::new(), name = None, needs_approval = None,
        max_steps = None, step_timeout = None, tool_timeout = None, deadline = None,
        max_parallel_tools = None, max_repairs = None, temperature = None, max_tokens = None,
        tool_choice = None, constrained_steps = false, answer_on_last_step = false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        model: ModelArg<'_>,
        instructions: Option<String>,
        tools: Vec<Bound<'_, Tool>>,
        hooks: Vec<Bound<'_, Hook>>,
        name: Option<String>,
        needs_approval: Option<&Bound<'_, PyDict>>,
        max_steps: Option<u32>,
        step_timeout: Option<f64>,
        tool_timeout: Option<f64>,
        deadline: Option<f64>,
        max_parallel_tools: Option<usize>,
        max_repairs: Option<u32>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
        tool_choice: Option<String>,
        constrained_steps: bool,
        answer_on_last_step: bool,
    ) -> PyResult<Self> {
        let mut builder = kai_core::Agent::builder_shared(model.into_model()?)
            .constrained_steps(constrained_steps)
            .answer_on_last_step(answer_on_last_step);
        if let Some(name) = name {
            builder = builder.name(name);
        }
        if let Some(instructions) = instructions {
            builder = builder.instructions(instructions);
        }
        for tool in &tools {
            builder = builder.shared_tool(Arc::clone(&tool.get().inner));
        }
        for hook in &hooks {
            builder = builder.shared_hook(Arc::clone(&hook.get().inner) as Arc<dyn kai_core::AgentHook>);
        }
        if let Some(needs_approval) = needs_approval {
            for (tool, reason) in needs_approval.iter() {
                builder = builder.needs_approval(tool.extract::<String>()?, reason.extract::<String>()?);
            }
        }
        if let Some(steps) = max_steps {
            builder = builder.max_steps(steps);
        }
        if let Some(seconds) = step_timeout {
            builder = builder.step_timeout(seconds_to_duration(seconds)?);
        }
        if let Some(seconds) = tool_timeout {
            builder = builder.tool_timeout(seconds_to_duration(seconds)?);
        }
        if let Some(seconds) = deadline {
            builder = builder.deadline(seconds_to_duration(seconds)?);
        }
        if let Some(limit) = max_parallel_tools {
            builder = builder.max_parallel_tools(limit);
        }
        if let Some(repairs) = max_repairs {
            builder = builder.max_repairs(repairs);
        }
        if let Some(temperature) = temperature {
            builder = builder.temperature(temperature);
        }
        if let Some(tokens) = max_tokens {
            builder = builder.max_tokens(tokens);
        }
        if let Some(choice) = tool_choice {
            builder = builder.tool_choice(parse_tool_choice(&choice));
        }
        let inner = builder.build().map_err(|error| crate::error::core_error(&error))?;
        Ok(Self { inner })
    }

    /// The agent's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Runs the agent (or resumes a state) until the model answers; an awaitable of the output dict.
    ///
    /// With `output_schema` (a JSON Schema) the answer is structured output checked against it, and
    /// the dict holds it under `value`; `output_check(value)` may check it further (an exception's
    /// message goes back to the model for repair). Cancelling the awaiting task cancels the run and
    /// its tools.
    #[pyo3(signature = (input, *, output_schema = None, output_check = None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        input: RunInput,
        output_schema: Option<&Bound<'py, PyAny>>,
        output_check: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let run = self.start(input, output_schema, output_check, RunOptions::default())?;
        awaitable(py, run, |py, output| output.map_err(run_error)?.into_python(py))
    }

    /// Runs the agent to its answer in the calling thread, releasing the GIL while it waits.
    ///
    /// Ctrl-C (or any signal handler that raises) cancels the run and its tools.
    #[pyo3(signature = (input, *, output_schema = None, output_check = None))]
    fn run_sync<'py>(
        &self,
        py: Python<'py>,
        input: RunInput,
        output_schema: Option<&Bound<'py, PyAny>>,
        output_check: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cancel = CancellationToken::new();
        let run = self.start(
            input,
            output_schema,
            output_check,
            RunOptions::cancel_on(cancel.clone()),
        )?;
        let output = wait_interruptibly(py, run, &cancel)?;
        output.map_err(run_error)?.into_python(py)
    }

    /// Runs the agent (or resumes a state), streaming its events: an async iterator of event dicts
    /// (`{"type": "text_delta", "text": ...}`, ..., `{"type": "finished", "output": {...}}`).
    ///
    /// Closing the iterator (`aclose`), or dropping it, cancels the run and its tools.
    fn stream(&self, input: RunInput) -> EventStream {
        let cancel = CancellationToken::new();
        let events = self
            .inner
            .stream_with(input.into_state(), RunOptions::cancel_on(cancel.clone()));
        EventStream {
            events: Arc::new(tokio::sync::Mutex::new(Some(events))),
            cancel,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Agent(name={:?}, model={:?})",
            self.inner.name(),
            self.inner.model().name()
        )
    }
}

/// Drives `future` to its end on the calling thread without the GIL, with kAI's background loop as
/// the loop of its Python functions (the calling thread may be inside a running loop, which this call
/// blocks). It wakes every [`SIGNAL_CHECK_INTERVAL`] to run Python's signal handlers: one that raises
/// (Ctrl-C) cancels `cancel`, drops the future and raises.
fn wait_interruptibly<F>(py: Python<'_>, future: F, cancel: &CancellationToken) -> PyResult<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut future = Box::pin(pyo3_async_runtimes::tokio::scope(background_locals(py)?, future));
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    loop {
        let waited =
            py.detach(|| runtime.block_on(async { tokio::time::timeout(SIGNAL_CHECK_INTERVAL, &mut future).await }));
        match waited {
            Ok(output) => return Ok(output),
            Err(_elapsed) => {
                if let Err(interrupt) = py.check_signals() {
                    cancel.cancel();
                    drop(future);
                    return Err(interrupt);
                }
            }
        }
    }
}

/// A conversation with an agent: each message is sent with the history so far, which it keeps (as
/// Rust data, not Python objects) with the usage summed.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Conversation {
    inner: Arc<tokio::sync::Mutex<kai_core::Conversation>>,
}

#[pymethods]
impl Conversation {
    #[new]
    fn new(agent: &Bound<'_, Agent>) -> Self {
        Self {
            inner: Arc::new(tokio::sync::Mutex::new(kai_core::Conversation::new(
                agent.get().inner.clone(),
            ))),
        }
    }

    /// Sends a message and runs the agent to its answer; an awaitable of the output dict. Messages
    /// sent at once wait for each other.
    fn send<'py>(&self, py: Python<'py>, input: String) -> PyResult<Bound<'py, PyAny>> {
        let conversation = Arc::clone(&self.inner);
        let send = async move { conversation.lock().await.send(input).await };
        awaitable(py, send, |py, output| to_python(py, &output.map_err(run_error)?))
    }

    /// `send` from sync code, without the GIL while it waits; Ctrl-C cancels it.
    fn send_sync<'py>(&self, py: Python<'py>, input: String) -> PyResult<Bound<'py, PyAny>> {
        let conversation = Arc::clone(&self.inner);
        let cancel = CancellationToken::new();
        let options = RunOptions::cancel_on(cancel.clone());
        let send = async move { conversation.lock().await.send_with(input, options).await };
        let output = wait_interruptibly(py, send, &cancel)?;
        to_python(py, &output.map_err(run_error)?)
    }

    /// The messages so far, as dicts.
    #[getter]
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let conversation = py.detach(|| Arc::clone(&self.inner).blocking_lock_owned());
        to_python(py, conversation.history())
    }

    /// Tokens used by every message so far, as a dict.
    #[getter]
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let conversation = py.detach(|| Arc::clone(&self.inner).blocking_lock_owned());
        to_python(py, &conversation.usage())
    }
}

/// How often `run_sync` wakes to let Python run its signal handlers.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// A run in flight, owning what it needs.
type PendingRun = Pin<Box<dyn Future<Output = Result<Output, kai_core::RunError>> + Send>>;

/// A finished run: the output, and the structured value when a schema was given.
struct Output {
    output: kai_core::RunOutput,
    value: Option<serde_json::Value>,
}

impl Output {
    fn into_python<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let dict = to_python(py, &self.output)?;
        if let Some(value) = self.value {
            dict.set_item("value", to_python(py, &value)?)?;
        }
        Ok(dict)
    }
}

impl Agent {
    /// The run (plain or structured) as a future that owns the agent.
    fn start(
        &self,
        input: RunInput,
        output_schema: Option<&Bound<'_, PyAny>>,
        output_check: Option<Py<PyAny>>,
        options: RunOptions,
    ) -> PyResult<PendingRun> {
        let agent = self.inner.clone();
        let state = input.into_state();
        Ok(match output_schema {
            None => Box::pin(async move {
                let output = agent.resume_with(state, options).await?;
                Ok(Output { output, value: None })
            }),
            Some(schema) => {
                let schema: serde_json::Value = from_python(schema)?;
                if !schema.is_object() {
                    return Err(config_error("output_schema must be a JSON Schema (a dict)"));
                }
                Box::pin(async move {
                    let extracted = match output_check {
                        None => agent.resume_extract_json(state, schema, options).await,
                        Some(check) => {
                            let check = move |value: &serde_json::Value| check_output(&check, value);
                            agent.resume_extract_json_checked(state, schema, check, options).await
                        }
                    }?;
                    Ok(Output {
                        output: extracted.output,
                        value: Some(extracted.value),
                    })
                })
            }
        })
    }
}

/// Runs a Python output check on a structured answer, in the run's contextvars context; its exception
/// is the repair message. The worker thread is handed off while Python runs, so the runtime keeps going.
fn check_output(check: &Py<PyAny>, value: &serde_json::Value) -> Result<(), String> {
    let run_check = || {
        attach(|py| {
            let value = pythonize::pythonize(py, value).map_err(|error| error.to_string())?;
            let locals = pyo3_async_runtimes::tokio::get_current_locals(py).map_err(|error| error.to_string())?;
            match locals.context(py).call_method1("run", (check.bind(py), value)) {
                Ok(_) => Ok(()),
                Err(error) => Err(python_error(py, &error).to_string()),
            }
        })
        .unwrap_or_else(|| Err("the Python interpreter is exiting".to_owned()))
    };
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(run_check),
        Err(_) => run_check(),
    }
}

/// `"auto"`, `"required"`, `"none"`, or the name of the tool the model must call first.
fn parse_tool_choice(choice: &str) -> ToolChoice {
    match choice {
        "auto" => ToolChoice::Auto,
        "required" => ToolChoice::Required,
        "none" => ToolChoice::None,
        tool => ToolChoice::Tool(tool.to_owned()),
    }
}

/// The events of a streamed run, as an async iterator of dicts.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct EventStream {
    events: Arc<tokio::sync::Mutex<Option<AgentEventStream>>>,
    /// Cancels the run at once, even while an `__anext__` holds the stream.
    cancel: CancellationToken,
}

#[pymethods]
impl EventStream {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = Arc::clone(&self.events);
        let next = async move {
            let mut guard = events.lock().await;
            let next = match guard.as_mut() {
                Some(stream) => stream.next().await,
                None => None,
            };
            if !matches!(next, Some(Ok(_))) {
                *guard = None;
            }
            next
        };
        let closed = self.cancel.clone();
        awaitable(py, next, move |py, next| match next {
            Some(Ok(event)) => to_python(py, &event),
            // Closed by `aclose`: iteration ends, as it does for a closed async generator.
            Some(Err(error)) if matches!(error.error, kai_core::Error::Cancelled) && closed.is_cancelled() => {
                Err(PyStopAsyncIteration::new_err(()))
            }
            Some(Err(error)) => Err(run_error(error)),
            None => Err(PyStopAsyncIteration::new_err(())),
        })
    }

    /// Stops the run: in-flight model and tool calls are dropped and coroutine tools cancelled.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.cancel.cancel();
        let events = Arc::clone(&self.events);
        let close = async move { drop(events.lock().await.take()) };
        awaitable(py, close, |py, ()| Ok(py.None().into_bound(py)))
    }
}
