//! The agent: a model, instructions, tools and hooks, run in a loop until the model answers.

mod constrained;
mod conversation;
mod delegate;
mod event;
pub(crate) mod run;
pub(crate) mod state;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

pub use conversation::Conversation;
pub use delegate::AgentTool;
pub use event::AgentEvent;
pub(crate) use state::new_run_id;
pub use state::{Approval, ApprovalDecision, NestedApproval, RunState, SuspendedCall};

use crate::CancellationToken;
use crate::approval::ApprovalHook;
use crate::error::Error;
use crate::hook::AgentHook;
use crate::marker::{BoxStream, boxed_stream};
use crate::message::{Message, Usage};
use crate::model::ChatModel;
use crate::request::{ChatRequest, ToolChoice};
use crate::tool::{Tool, ToolSet};

/// An agent: a model, instructions, tools, hooks and limits.
///
/// Cheap to clone (the configuration is shared). Build one with [`Agent::builder`].
///
/// ```
/// use kai_core::testing::ScriptedModel;
/// use kai_core::{Agent, ToolError, tool_fn};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add {
///     a: f64,
///     b: f64,
/// }
///
/// # futures::executor::block_on(async {
/// // A model that first calls `add`, then answers.
/// let model = ScriptedModel::new()
///     .tool_call("add", serde_json::json!({"a": 2, "b": 3}))
///     .text("2 + 3 = 5");
///
/// let agent = Agent::builder(model)
///     .instructions("You are a careful calculator.")
///     .tool(tool_fn("add", "Adds two numbers.", |x: Add| async move { Ok(x.a + x.b) }))
///     .build()
///     .unwrap();
///
/// let output = agent.run("What is 2 + 3?").await.unwrap();
/// assert_eq!(output.answer, "2 + 3 = 5");
/// assert_eq!(output.steps, 2);
/// # });
/// ```
#[derive(Clone)]
pub struct Agent {
    inner: Arc<AgentInner>,
}

struct AgentInner {
    model: Arc<dyn ChatModel>,
    config: AgentConfig,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.inner.config.name)
            .field("model", &self.inner.model.name())
            .field("tools", &self.inner.config.tools)
            .field("hooks", &self.inner.config.hooks.len())
            .field("limits", &self.inner.config.limits)
            .finish()
    }
}

#[derive(Clone)]
pub(crate) struct AgentConfig {
    pub(crate) name: Arc<str>,
    pub(crate) instructions: Option<String>,
    pub(crate) tools: ToolSet,
    pub(crate) hooks: Vec<Arc<dyn AgentHook>>,
    pub(crate) limits: Limits,
    /// Options copied into every request (temperature, max tokens, stop sequences, extras).
    pub(crate) request_template: ChatRequest,
    /// Each step may only produce one valid tool call or an answer (see [`AgentBuilder::constrained_steps`]).
    pub(crate) constrained_steps: bool,
}

/// The limits a run obeys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    pub(crate) max_steps: u32,
    pub(crate) step_timeout: Option<Duration>,
    pub(crate) tool_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) max_parallel_tools: usize,
    pub(crate) max_repairs: u32,
    pub(crate) answer_on_last_step: bool,
    pub(crate) max_tool_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 10,
            step_timeout: None,
            tool_timeout: None,
            deadline: None,
            max_parallel_tools: 8,
            max_repairs: 2,
            answer_on_last_step: false,
            max_tool_calls: 128,
        }
    }
}

/// Builds an [`Agent`].
#[must_use]
pub struct AgentBuilder {
    model: Arc<dyn ChatModel>,
    config: AgentConfig,
    approvals: ApprovalHook,
    error: Option<Error>,
}

impl AgentBuilder {
    /// The agent's name, used in traces, hooks and when it is a tool of another agent.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Arc::from(name.into());
        self
    }

    /// The system instructions, sent first in every request.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.config.instructions = Some(instructions.into());
        self
    }

    /// Adds a tool. A duplicate or invalid name makes [`build`](Self::build) fail.
    pub fn tool(self, tool: impl Tool + 'static) -> Self {
        self.shared_tool(Arc::new(tool))
    }

    /// Adds a tool that is already shared.
    pub fn shared_tool(mut self, tool: Arc<dyn Tool>) -> Self {
        if let Err(error) = self.config.tools.add_shared(tool) {
            self.error.get_or_insert(error);
        }
        self
    }

    /// Adds every tool of a set.
    pub fn tools(mut self, tools: &ToolSet) -> Self {
        if let Err(error) = self.config.tools.extend(tools) {
            self.error.get_or_insert(error);
        }
        self
    }

    /// Adds a hook; hooks run in the order they were added.
    pub fn hook(mut self, hook: impl AgentHook + 'static) -> Self {
        self.config.hooks.push(Arc::new(hook));
        self
    }

    /// Adds a hook that is already shared.
    pub fn shared_hook(mut self, hook: Arc<dyn AgentHook>) -> Self {
        self.config.hooks.push(hook);
        self
    }

    /// Every call of the tool named `tool` waits for a human's approval (see [`ApprovalHook`]); the
    /// human is told `reason`. These checks run after the agent's other hooks.
    pub fn needs_approval(mut self, tool: impl Into<String>, reason: impl Into<String>) -> Self {
        self.approvals = self.approvals.always(tool, reason);
        self
    }

    /// Calls of the tool named `tool` whose arguments satisfy `applies` wait for a human's approval.
    pub fn needs_approval_when(
        mut self,
        tool: impl Into<String>,
        reason: impl Into<String>,
        applies: impl Fn(&serde_json::Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.approvals = self.approvals.when(tool, reason, applies);
        self
    }

    /// The most model calls one run may make (default 10).
    pub fn max_steps(mut self, max_steps: u32) -> Self {
        self.config.limits.max_steps = max_steps;
        self
    }

    /// The longest one step (a model call and its tool calls) may take. Off by default.
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.config.limits.step_timeout = Some(timeout);
        self
    }

    /// The longest one tool call may take; a slower call becomes an error the model sees. Off by default.
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.config.limits.tool_timeout = Some(timeout);
        self
    }

    /// The longest a whole run (or resumption) may take. Off by default.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.limits.deadline = Some(deadline);
        self
    }

    /// How many tool calls of one step may run at once (default 8; 1 runs them one by one).
    pub fn max_parallel_tools(mut self, limit: usize) -> Self {
        self.config.limits.max_parallel_tools = limit;
        self
    }

    /// The most tool calls of one model answer that run (default 128); the model is told the others were
    /// not run. Bounds the work one answer can ask for.
    pub fn max_tool_calls_per_step(mut self, limit: usize) -> Self {
        self.config.limits.max_tool_calls = limit;
        self
    }

    /// How many times invalid structured output is sent back to the model for repair (default 2).
    pub fn max_repairs(mut self, repairs: u32) -> Self {
        self.config.limits.max_repairs = repairs;
        self
    }

    /// On the last allowed step, withhold the tools (`tool_choice: none`) so the model must answer
    /// with what it has, instead of the run ending in [`Error::MaxStepsExceeded`]. Off by default.
    pub fn answer_on_last_step(mut self, enabled: bool) -> Self {
        self.config.limits.answer_on_last_step = enabled;
        self
    }

    /// How the model must use its tools until it has called one in this turn (OpenAI's and Anthropic's
    /// `tool_choice`): [`ToolChoice::Required`] makes it look something up before answering, a
    /// [`ToolChoice::Tool`] names the tool to start with. After the first call the model chooses
    /// freely, so a required call cannot loop. Unset (the provider's default, free choice) by default.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.config.request_template.tool_choice = Some(choice);
        self
    }

    /// Holds the model, at every step, to one valid call of one of the agent's tools or an answer,
    /// through its JSON-Schema output (a grammar on llama.cpp), for small local models that otherwise
    /// write malformed calls, call tools that do not exist, or answer without calling a tool. The tools
    /// are then described in the instructions and earlier calls shown as text, so any chat template
    /// works; with [`answer_on_last_step`](Self::answer_on_last_step) the last step may only answer.
    /// Models without JSON-Schema output, and structured-output runs, take ordinary steps. Off by default.
    pub fn constrained_steps(mut self, enabled: bool) -> Self {
        self.config.constrained_steps = enabled;
        self
    }

    /// The sampling temperature for every request.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.config.request_template.temperature = Some(temperature);
        self
    }

    /// The maximum tokens per model call.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.config.request_template.max_tokens = Some(max_tokens);
        self
    }

    /// Whether the model may ask for several tool calls at once (left to the provider by default).
    pub fn parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.config.request_template.parallel_tool_calls = Some(parallel);
        self
    }

    /// A provider-specific request field, sent with every request.
    pub fn request_extra(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.config.request_template.extra.insert(key.into(), value);
        self
    }

    /// Finishes the agent, or reports the first configuration error.
    pub fn build(mut self) -> Result<Agent, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if !self.approvals.is_empty() {
            self.config.hooks.push(Arc::new(std::mem::take(&mut self.approvals)));
        }
        let limits = &self.config.limits;
        if limits.max_steps == 0 {
            return Err(Error::Config {
                message: "max_steps must be at least 1".into(),
            });
        }
        if limits.max_tool_calls == 0 {
            return Err(Error::Config {
                message: "max_tool_calls_per_step must be at least 1".into(),
            });
        }
        if limits.max_parallel_tools == 0 {
            return Err(Error::Config {
                message: "max_parallel_tools must be at least 1".into(),
            });
        }
        Ok(Agent {
            inner: Arc::new(AgentInner {
                model: self.model,
                config: self.config,
            }),
        })
    }
}

/// Per-run options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Cancels the run when triggered: in-flight model and tool calls are dropped and the run ends with
    /// [`Error::Cancelled`] and its state.
    pub cancel: Option<CancellationToken>,
}

impl RunOptions {
    /// Options with this cancellation token.
    pub fn cancel_on(token: CancellationToken) -> Self {
        Self { cancel: Some(token) }
    }
}

/// The result of a completed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutput {
    /// The final answer's text.
    pub answer: String,
    /// The whole transcript, the final answer included (the agent's instructions are not included).
    pub messages: Vec<Message>,
    /// Tokens used by every model call of the run, summed.
    pub usage: Usage,
    /// Model calls made.
    pub steps: u32,
}

/// A run that ended without an answer: the reason, and the state so far.
///
/// Nothing is lost: `state` holds the transcript up to the failure and can be stored, inspected or
/// (after approval, or with new limits) resumed.
///
/// It serializes with serde as `{"error": {"kind": …, …}, "state": {…}}`, so a binding can hand both to
/// another language and take the state back to resume.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{error}")]
pub struct RunError {
    /// Why the run stopped.
    #[source]
    pub error: Error,
    /// The run's state when it stopped.
    pub state: Box<RunState>,
}

impl RunError {
    /// The transcript up to the failure (the same field as [`RunOutput::messages`]).
    pub fn messages(&self) -> &[Message] {
        &self.state.messages
    }

    /// The stable snake_case name of the reason ([`Error::kind`]).
    pub fn kind(&self) -> &'static str {
        self.error.kind()
    }

    /// Whether resuming the state as it is may succeed ([`Error::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.error.is_retryable()
    }

    /// How long the provider asked to wait before retrying, when it said ([`Error::retry_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        self.error.retry_after()
    }
}

/// A stream of a run's events; the last item is [`AgentEvent::Finished`] or the run's error.
///
/// It owns what it needs (`'static`), so it can be held across threads and await points.
pub type AgentEventStream = BoxStream<'static, Result<AgentEvent, RunError>>;

impl Agent {
    /// Starts building an agent around a model.
    pub fn builder(model: impl ChatModel + 'static) -> AgentBuilder {
        Self::builder_shared(Arc::new(model))
    }

    /// Starts building an agent around a shared model.
    pub fn builder_shared(model: Arc<dyn ChatModel>) -> AgentBuilder {
        AgentBuilder {
            model,
            config: AgentConfig {
                name: Arc::from("agent"),
                instructions: None,
                tools: ToolSet::new(),
                hooks: Vec::new(),
                limits: Limits::default(),
                request_template: ChatRequest::default(),
                constrained_steps: false,
            },
            approvals: ApprovalHook::new(),
            error: None,
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The agent's tools.
    pub fn tools(&self) -> &ToolSet {
        &self.inner.config.tools
    }

    /// Runs the agent on one user message until the model gives a final answer.
    pub async fn run(&self, input: impl Into<String>) -> Result<RunOutput, RunError> {
        self.resume_with(RunState::new(input), RunOptions::default()).await
    }

    /// Continues a run from a stored state (after a restart, an approval, or to retry after an error).
    pub async fn resume(&self, state: RunState) -> Result<RunOutput, RunError> {
        self.resume_with(state, RunOptions::default()).await
    }

    /// Continues a run from a state, with options such as a cancellation token.
    pub async fn resume_with(&self, state: RunState, options: RunOptions) -> Result<RunOutput, RunError> {
        run::Run::new(self.config(), self.run_model(), state, options, None, None)
            .execute()
            .await
    }

    /// Runs the agent on one user message, streaming its events.
    pub fn stream(&self, input: impl Into<String>) -> AgentEventStream {
        self.stream_with(RunState::new(input), RunOptions::default())
    }

    /// Continues a run from a state, streaming its events.
    ///
    /// Dropping the stream drops the run, and with it every in-flight model and tool call (whose
    /// [`ToolContext::cancel`](crate::ToolContext) tokens are cancelled).
    pub fn stream_with(&self, state: RunState, options: RunOptions) -> AgentEventStream {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let events = sender.clone();
        let agent = self.clone();
        let driver = async move {
            let result = run::Run::new(agent.config(), agent.run_model(), state, options, Some(events), None)
                .execute()
                .await;
            // The receiver may be gone if the caller stopped listening; nothing is left to tell them.
            let _ = sender.unbounded_send(result.map(|output| AgentEvent::Finished {
                output: Box::new(output),
            }));
        };
        let driver = futures::stream::once(driver).filter_map(|()| std::future::ready(None));
        boxed_stream(futures::stream::select(receiver, driver))
    }

    /// A copy of this agent with one more hook, run after its own (for example a per-caller consent
    /// check). The model and tools are shared, not copied.
    pub fn with_hook(&self, hook: Arc<dyn AgentHook>) -> Agent {
        let mut config = self.inner.config.clone();
        config.hooks.push(hook);
        Agent {
            inner: Arc::new(AgentInner {
                model: Arc::clone(&self.inner.model),
                config,
            }),
        }
    }

    /// A copy of this agent with these tools instead of its own (for example a subset, from
    /// [`ToolSet::subset`]). The model, instructions, hooks and limits are shared.
    pub fn with_tools(&self, tools: ToolSet) -> Agent {
        let mut config = self.inner.config.clone();
        config.tools = tools;
        Agent {
            inner: Arc::new(AgentInner {
                model: Arc::clone(&self.inner.model),
                config,
            }),
        }
    }

    /// Wraps this agent as a tool another agent can delegate to. The tool takes one argument, `input`,
    /// and returns this agent's final answer; the run obeys this agent's own limits.
    pub fn into_tool(self, name: impl Into<String>, description: impl Into<String>) -> AgentTool {
        AgentTool::new(self, name.into(), description.into())
    }

    pub(crate) fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// The agent's model.
    pub fn model(&self) -> &dyn ChatModel {
        self.inner.model.as_ref()
    }

    /// The agent's model as a run holds it.
    pub(crate) fn run_model(&self) -> run::RunModel<'_> {
        run::RunModel::Shared(&self.inner.model)
    }
}

/// Runs and streams must be able to move between threads of a multi-threaded runtime, and streams must
/// outlive the call that made them: fail the build if any of them stops being `Send` on native targets,
/// or a stream stops being `'static`.
#[cfg(not(target_arch = "wasm32"))]
const _: () = {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_owned<T: Send + 'static>(_: T) {}
    #[allow(dead_code)]
    fn runs_are_send(agent: &Agent, model: Arc<dyn ChatModel>) {
        assert_send(&agent.run("input"));
        assert_send(&agent.resume(RunState::default()));
        assert_send(&agent.clone());
        assert_owned(agent.stream("input"));
        assert_owned(model.stream(crate::ChatRequest::default()));
    }
};
