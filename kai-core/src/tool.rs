//! Tools: functions a model can call.
//!
//! [`Tool`] is the object-safe trait the agent works with (`Arc<dyn Tool>`); it takes and returns JSON.
//! [`TypedTool`] and [`tool_fn`] are the typed conveniences on top: arguments are a
//! `#[derive(Deserialize, JsonSchema)]` struct whose schema is generated, never hand-written.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::agent::RunState;
use crate::cancel::CancellationToken;
use crate::error::Error;
use crate::marker::{BoxFuture, MaybeSend, MaybeSync};
use crate::message::Usage;
use crate::request::ToolDefinition;
use crate::schema::{SchemaValidator, schema_for};

/// Why a tool call failed. The agent sends the message back to the model, which can then recover.
///
/// It serializes with serde, tagged by a snake_case `kind`, so a tool written in another language can
/// report any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments did not parse or did not match the tool's schema.
    #[error("invalid arguments: {message}")]
    InvalidArguments {
        /// What is wrong with them.
        message: String,
    },
    /// The tool ran and failed.
    #[error("{message}")]
    Failed {
        /// Why, for the model.
        message: String,
    },
    /// The tool did not finish in time.
    #[error("the tool did not finish within {after:?}")]
    Timeout {
        /// The limit it exceeded.
        #[serde(rename = "after_ms", with = "crate::error::millis")]
        after: Duration,
    },
    /// The call was cancelled before it finished.
    #[error("the tool call was cancelled")]
    Cancelled,
    /// The call is suspended until a human decides on approvals it asked for; made by
    /// [`ToolContext::suspend`]. The run that made the call suspends too.
    #[error("the tool call is waiting for approval")]
    Suspended,
}

impl ToolError {
    /// A [`ToolError::Failed`] from anything displayable.
    pub fn failed(error: impl std::fmt::Display) -> Self {
        ToolError::Failed {
            message: error.to_string(),
        }
    }

    /// A [`ToolError::InvalidArguments`] from anything displayable.
    pub fn invalid_arguments(error: impl std::fmt::Display) -> Self {
        ToolError::InvalidArguments {
            message: error.to_string(),
        }
    }
}

/// What a tool learns about the call it is serving.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ToolContext {
    /// The model's id for this call. It is unique within a run and stays the same when a suspended run
    /// is resumed; another run may have a call with the same id (providers that give none get
    /// `call_0`, ...), so an idempotency key is [`idempotency_key`](Self::idempotency_key).
    pub call_id: String,
    /// The id of the run that made the call ([`RunState::id`]); empty outside a run.
    pub run_id: String,
    /// The agent step the call belongs to, counted from 1.
    pub step: u32,
    /// Cancelled when the run is cancelled or dropped, or when this call times out: a tool that hands
    /// work elsewhere (a thread, another runtime) should stop it then.
    pub cancel: CancellationToken,
    usage: UsageSink,
    suspension: SuspensionSlot,
    resumed: Option<Box<RunState>>,
    progress: ProgressListener,
}

/// How far a running tool call has come, as the tool reports it with [`ToolContext::report_progress`]:
/// a streamed run passes it on as [`AgentEvent::ToolProgress`](crate::AgentEvent::ToolProgress), an
/// MCP server as a progress notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolProgress {
    /// Work done so far, in any unit; it should grow with each report.
    pub progress: f64,
    /// The work there is in all, in the same unit, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// What is happening, for a person watching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ToolProgress {
    /// `progress` done, of an unknown total.
    pub fn new(progress: f64) -> Self {
        ToolProgress {
            progress,
            total: None,
            message: None,
        }
    }

    /// This report with the total known.
    pub fn with_total(mut self, total: f64) -> Self {
        self.total = Some(total);
        self
    }

    /// This report with a message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Whether its numbers are finite, as JSON needs them.
    pub fn is_finite(&self) -> bool {
        self.progress.is_finite() && self.total.is_none_or(f64::is_finite)
    }
}

/// A listener that a [`ProgressGate`] can take away.
type GatedListener = Arc<Mutex<Option<Box<dyn Fn(ToolProgress) + Send + Sync>>>>;

/// Closes a gated progress listener when dropped; see [`ToolContext::with_gated_progress_listener`].
pub(crate) struct ProgressGate(GatedListener);

impl Drop for ProgressGate {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// Who hears a call's progress reports, if anyone.
#[derive(Clone, Default)]
struct ProgressListener(Option<Arc<dyn Fn(ToolProgress) + Send + Sync>>);

impl std::fmt::Debug for ProgressListener {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

/// Where a tool leaves the state of its suspended run; see [`ToolContext::suspend`].
#[derive(Debug, Clone, Default)]
pub(crate) struct SuspensionSlot {
    state: Arc<Mutex<Option<RunState>>>,
    /// Told the call's id each time progress is recorded, so the outer run can checkpoint it.
    progress: Option<(String, futures::channel::mpsc::UnboundedSender<String>)>,
}

impl SuspensionSlot {
    /// A slot that tells `progress` the call id whenever a run started by the call records progress.
    pub(crate) fn reporting_to(call_id: String, progress: futures::channel::mpsc::UnboundedSender<String>) -> Self {
        Self {
            state: Arc::default(),
            progress: Some((call_id, progress)),
        }
    }

    /// The state a tool left, if it suspended.
    pub(crate) fn take(&self) -> Option<RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// A copy of the state recorded last, leaving it in place.
    pub(crate) fn latest(&self) -> Option<RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Collects the usage tools report through [`ToolContext::report_usage`]. Clones share one total.
#[derive(Debug, Clone, Default)]
pub(crate) struct UsageSink {
    total: Arc<Mutex<Usage>>,
}

impl UsageSink {
    fn add(&self, usage: Usage) {
        *self.total.lock().unwrap_or_else(PoisonError::into_inner) += usage;
    }

    /// The usage reported since the last call, leaving zero behind.
    pub(crate) fn take(&self) -> Usage {
        std::mem::take(&mut *self.total.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ToolContext {
    /// The context of a call with this id, at step 1, with a token of its own.
    pub fn new(call_id: impl Into<String>) -> Self {
        Self {
            call_id: call_id.into(),
            run_id: String::new(),
            step: 1,
            cancel: CancellationToken::new(),
            usage: UsageSink::default(),
            suspension: SuspensionSlot::default(),
            resumed: None,
            progress: ProgressListener::default(),
        }
    }

    /// This context in the run with this id.
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = run_id.into();
        self
    }

    /// A key for this call that stays the same when the run is resumed (in this process or another)
    /// and that no other call of any run shares: `<run id>/<call id>`. Give it to a payment, a
    /// booking or a message send so a call that runs again after a crash does not act twice.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.run_id, self.call_id)
    }

    /// This context with another step number.
    pub fn with_step(mut self, step: u32) -> Self {
        self.step = step;
        self
    }

    /// This context with another cancellation token.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    pub(crate) fn with_usage_sink(mut self, usage: UsageSink) -> Self {
        self.usage = usage;
        self
    }

    pub(crate) fn with_suspension(mut self, suspension: SuspensionSlot, resumed: Option<RunState>) -> Self {
        self.suspension = suspension;
        self.resumed = resumed.map(Box::new);
        self
    }

    /// Suspends this call (and the run that made it) until a human has decided on the approvals that
    /// `state`, a run this tool started, waits for. Return the error it gives back. When the outer run
    /// is resumed, the call runs again with `state`, the decisions applied, in
    /// [`take_resumed`](Self::take_resumed). [`Agent::into_tool`](crate::Agent::into_tool) does this.
    pub fn suspend(&self, state: RunState) -> ToolError {
        *self.suspension.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
        ToolError::Suspended
    }

    /// Records the progress of a run this tool started. The outer run checkpoints with it (so after a
    /// crash a resume continues from there), and if the call is cancelled or times out before it
    /// finishes, the outer run keeps the last state recorded here, and a resume of the outer run hands it
    /// back through [`take_resumed`](Self::take_resumed), so the inner run continues instead of
    /// starting over (and its finished tools do not run again). [`Agent::into_tool`](crate::Agent::into_tool)
    /// records each of its checkpoints.
    pub fn record_progress(&self, state: RunState) {
        *self.suspension.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
        if let Some((call_id, progress)) = &self.suspension.progress {
            // The outer run checkpoints it too, so it survives a crash; a run that stopped listening
            // has nothing left to checkpoint.
            let _ = progress.unbounded_send(call_id.clone());
        }
    }

    /// The run this call suspended earlier, with the human's decisions applied, when the call is being
    /// resumed.
    pub fn take_resumed(&mut self) -> Option<RunState> {
        self.resumed.take().map(|state| *state)
    }

    /// Adds tokens this call spent on models (an agent used as a tool reports its run's usage) to the
    /// usage of the run that called it.
    pub fn report_usage(&self, usage: Usage) {
        self.usage.add(usage);
    }

    /// Tells whoever watches this call how far it has come (see [`ToolProgress`]); nothing happens when
    /// no one does, and a report whose numbers are not finite (they have no JSON form) is dropped. Not
    /// to be confused with [`record_progress`](Self::record_progress), which checkpoints a run the tool
    /// started.
    pub fn report_progress(&self, progress: ToolProgress) {
        if let (Some(listener), true) = (&self.progress.0, progress.is_finite()) {
            listener(progress);
        }
    }

    /// Whether anyone hears [`report_progress`](Self::report_progress): a tool whose progress costs
    /// something to learn can skip it when no one does.
    pub fn progress_is_heard(&self) -> bool {
        self.progress.0.is_some()
    }

    /// This context with `listener` hearing the call's progress reports, in place of any listener it
    /// had.
    pub fn with_progress_listener(mut self, listener: impl Fn(ToolProgress) + Send + Sync + 'static) -> Self {
        self.progress = ProgressListener(Some(Arc::new(listener)));
        self
    }

    /// This context with `listener` hearing the call's progress reports until the gate returned is
    /// dropped: then reports go nowhere, and what `listener` holds is released, even if the tool keeps
    /// its context.
    pub(crate) fn with_gated_progress_listener(
        self,
        listener: impl Fn(ToolProgress) + Send + Sync + 'static,
    ) -> (Self, ProgressGate) {
        let slot: GatedListener = Arc::new(Mutex::new(Some(Box::new(listener))));
        let gate = ProgressGate(Arc::clone(&slot));
        let context = self.with_progress_listener(move |progress| {
            // Under the lock, so no report gets past a gate closing.
            if let Some(listener) = slot.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                listener(progress);
            }
        });
        (context, gate)
    }
}

/// A tool an agent can call. Object-safe: agents hold tools as `Arc<dyn Tool>`.
///
/// Most tools are easier to write with [`tool_fn`], [`TypedTool`], or, for a schema known only at run
/// time, [`dynamic_tool`]. Implement it directly with [`async_trait`](crate::async_trait):
///
/// ```
/// use kai_core::{Tool, ToolContext, ToolDefinition, ToolError, async_trait};
///
/// struct Clock;
///
/// #[async_trait]
/// impl Tool for Clock {
///     fn definition(&self) -> ToolDefinition {
///         ToolDefinition::new("clock", "The current Unix time.", serde_json::json!({"type": "object"}))
///     }
///
///     async fn call(&self, _arguments: serde_json::Value, _context: ToolContext) -> Result<serde_json::Value, ToolError> {
///         let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(ToolError::failed)?;
///         Ok(now.as_secs().into())
///     }
/// }
/// ```
#[crate::async_trait]
pub trait Tool: MaybeSend + MaybeSync {
    /// The name, description and argument schema the model sees.
    fn definition(&self) -> ToolDefinition;

    /// Runs the tool on arguments the model produced, already parsed as JSON and, when the tool runs
    /// inside an agent, validated against its schema.
    ///
    /// A string result is passed to the model as it is; any other value as JSON text.
    async fn call(&self, arguments: serde_json::Value, context: ToolContext) -> Result<serde_json::Value, ToolError>;
}

/// A tool with typed arguments and output. Every `TypedTool` is a [`Tool`].
///
/// This is the shape for a tool with state (a connection pool, a client, an index): `call` borrows
/// `self`, so nothing is cloned per call, unlike the captures of a [`tool_fn`] closure, which its
/// `'static` future has to own.
///
/// ```
/// use kai_core::{ToolContext, ToolError, TypedTool};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add {
///     a: f64,
///     b: f64,
/// }
///
/// struct Adder;
///
/// impl TypedTool for Adder {
///     type Args = Add;
///     type Output = f64;
///
///     fn name(&self) -> String {
///         "add".into()
///     }
///     fn description(&self) -> String {
///         "Adds two numbers.".into()
///     }
///     async fn call(&self, args: Add, _context: ToolContext) -> Result<f64, ToolError> {
///         Ok(args.a + args.b)
///     }
/// }
/// ```
pub trait TypedTool: MaybeSend + MaybeSync {
    /// The arguments; their JSON Schema is what the model sees.
    type Args: DeserializeOwned + JsonSchema + MaybeSend;
    /// The result, serialized to JSON for the model.
    type Output: Serialize;

    /// The name the model calls it by.
    fn name(&self) -> String;

    /// What it does and when to use it.
    fn description(&self) -> String;

    /// Runs the tool. The context carries the call's idempotency key (which survives a resume) and
    /// the call's cancellation token.
    fn call(
        &self,
        args: Self::Args,
        context: ToolContext,
    ) -> impl Future<Output = Result<Self::Output, ToolError>> + MaybeSend;
}

#[crate::async_trait]
impl<T: TypedTool> Tool for T {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: self.name(),
            description: self.description(),
            parameters: schema_for::<T::Args>(),
        }
    }

    async fn call(&self, arguments: serde_json::Value, context: ToolContext) -> Result<serde_json::Value, ToolError> {
        let args = parse_arguments::<T::Args>(arguments)?;
        let output = TypedTool::call(self, args, context).await?;
        to_json(&output)
    }
}

/// Deserializes tool arguments, turning a mismatch into [`ToolError::InvalidArguments`] with serde's
/// explanation (which names the offending field).
pub fn parse_arguments<A: DeserializeOwned>(arguments: serde_json::Value) -> Result<A, ToolError> {
    serde_json::from_value(arguments).map_err(ToolError::invalid_arguments)
}

fn to_json<O: Serialize>(output: &O) -> Result<serde_json::Value, ToolError> {
    serde_json::to_value(output)
        .map_err(|error| ToolError::failed(format_args!("could not serialize the tool's output: {error}")))
}

/// A tool made from an async function or closure; see [`tool_fn`].
pub struct FnTool<A, F, M> {
    definition: ToolDefinition,
    function: F,
    args: PhantomData<fn(A, M)>,
}

impl<A, F, M> std::fmt::Debug for FnTool<A, F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnTool").field("name", &self.definition.name).finish()
    }
}

/// An async function a [`tool_fn`] can wrap: `Fn(A) -> impl Future<Output = Result<O, ToolError>>`, or
/// the same taking the call's [`ToolContext`] as a second argument. `M` tells the two apart; callers
/// never name it.
pub trait ToolFunction<A, M>: MaybeSend + MaybeSync {
    /// What the function returns on success, serialized to JSON for the model.
    type Output: Serialize;

    /// Calls the function.
    fn invoke(
        &self,
        args: A,
        context: ToolContext,
    ) -> impl Future<Output = Result<Self::Output, ToolError>> + MaybeSend;
}

/// Marks a [`ToolFunction`] that takes only the arguments.
#[doc(hidden)]
pub enum ArgsOnly {}

/// Marks a [`ToolFunction`] that takes the arguments and the [`ToolContext`].
#[doc(hidden)]
pub enum WithContext {}

impl<A, O, F, Fut> ToolFunction<A, ArgsOnly> for F
where
    F: Fn(A) -> Fut + MaybeSend + MaybeSync,
    Fut: Future<Output = Result<O, ToolError>> + MaybeSend,
    O: Serialize,
{
    type Output = O;

    fn invoke(&self, args: A, _context: ToolContext) -> impl Future<Output = Result<O, ToolError>> + MaybeSend {
        self(args)
    }
}

impl<A, O, F, Fut> ToolFunction<A, WithContext> for F
where
    F: Fn(A, ToolContext) -> Fut + MaybeSend + MaybeSync,
    Fut: Future<Output = Result<O, ToolError>> + MaybeSend,
    O: Serialize,
{
    type Output = O;

    fn invoke(&self, args: A, context: ToolContext) -> impl Future<Output = Result<O, ToolError>> + MaybeSend {
        self(args, context)
    }
}

/// Makes a tool from an async closure taking a `#[derive(Deserialize, JsonSchema)]` argument struct
/// and, optionally, the call's [`ToolContext`] (its id, for idempotency, and its cancellation token).
///
/// ```
/// use kai_core::{Tool, ToolContext, ToolError, tool_fn};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Weather {
///     /// City name, in English.
///     city: String,
/// }
///
/// let weather = tool_fn("weather", "Current weather for a city.", |args: Weather| async move {
///     Ok(format!("Sunny in {}", args.city))
/// });
/// assert_eq!(weather.definition().parameters["required"][0], "city");
///
/// let booking = tool_fn("book", "Books a table.", |args: Weather, context: ToolContext| async move {
///     // The key stays the same if the run is resumed, and no other call of any run has it.
///     Ok(format!("booked in {} under {}", args.city, context.idempotency_key()))
/// });
/// ```
pub fn tool_fn<A, M, F>(name: impl Into<String>, description: impl Into<String>, function: F) -> FnTool<A, F, M>
where
    A: DeserializeOwned + JsonSchema + MaybeSend,
    F: ToolFunction<A, M>,
{
    FnTool {
        definition: ToolDefinition {
            name: name.into(),
            description: description.into(),
            parameters: schema_for::<A>(),
        },
        function,
        args: PhantomData,
    }
}

#[crate::async_trait]
impl<A, M, F> Tool for FnTool<A, F, M>
where
    A: DeserializeOwned + JsonSchema + MaybeSend,
    F: ToolFunction<A, M>,
    F::Output: MaybeSend,
    M: 'static,
{
    fn definition(&self) -> ToolDefinition {
        self.definition.clone()
    }

    async fn call(&self, arguments: serde_json::Value, context: ToolContext) -> Result<serde_json::Value, ToolError> {
        let parsed = parse_arguments::<A>(arguments)?;
        let output = self.function.invoke(parsed, context).await?;
        to_json(&output)
    }
}

/// A tool whose schema is known only at run time; made by [`dynamic_tool`].
pub struct DynamicTool {
    definition: ToolDefinition,
    function: Box<dyn JsonFunction>,
}

impl std::fmt::Debug for DynamicTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicTool")
            .field("name", &self.definition.name)
            .finish()
    }
}

/// The callback of a [`DynamicTool`], boxed.
trait JsonFunction: MaybeSend + MaybeSync {
    fn invoke(
        &self,
        arguments: serde_json::Value,
        context: ToolContext,
    ) -> BoxFuture<'static, Result<serde_json::Value, ToolError>>;
}

impl<F, Fut> JsonFunction for F
where
    F: Fn(serde_json::Value, ToolContext) -> Fut + MaybeSend + MaybeSync,
    Fut: Future<Output = Result<serde_json::Value, ToolError>> + MaybeSend + 'static,
{
    fn invoke(
        &self,
        arguments: serde_json::Value,
        context: ToolContext,
    ) -> BoxFuture<'static, Result<serde_json::Value, ToolError>> {
        crate::marker::boxed(self(arguments, context))
    }
}

/// Makes a tool from a name, a description, a JSON Schema for its arguments and an async callback
/// taking the arguments as JSON: the one place where a function of another language, or a tool found at
/// run time (MCP, A2A), becomes a [`Tool`].
///
/// Fails with [`Error::Config`] when the schema is not a JSON Schema for an object. Inside an agent the
/// arguments are validated against the schema before the callback runs, so it sees only valid ones.
///
/// ```
/// use kai_core::{Tool, ToolContext, dynamic_tool};
///
/// let schema = serde_json::json!({
///     "type": "object",
///     "properties": {"text": {"type": "string"}},
///     "required": ["text"],
/// });
/// let shout = dynamic_tool("shout", "Upper-cases a text.", schema, |args: serde_json::Value, _context: ToolContext| async move {
///     Ok(args["text"].as_str().unwrap_or_default().to_uppercase().into())
/// })
/// .unwrap();
/// assert_eq!(shout.definition().name, "shout");
/// ```
pub fn dynamic_tool<F, Fut>(
    name: impl Into<String>,
    description: impl Into<String>,
    parameters: serde_json::Value,
    function: F,
) -> Result<DynamicTool, Error>
where
    F: Fn(serde_json::Value, ToolContext) -> Fut + MaybeSend + MaybeSync + 'static,
    Fut: Future<Output = Result<serde_json::Value, ToolError>> + MaybeSend + 'static,
{
    let name = name.into();
    if parameters.get("type").and_then(serde_json::Value::as_str) != Some("object") {
        return Err(Error::Config {
            message: format!("the parameters of tool {name:?} must be a JSON Schema with \"type\": \"object\""),
        });
    }
    SchemaValidator::new(&parameters).map_err(|problem| Error::Config {
        message: format!("the parameters of tool {name:?} are not a valid JSON Schema: {problem}"),
    })?;
    Ok(DynamicTool {
        definition: ToolDefinition {
            name,
            description: description.into(),
            parameters,
        },
        function: Box::new(function),
    })
}

#[crate::async_trait]
impl Tool for DynamicTool {
    fn definition(&self) -> ToolDefinition {
        self.definition.clone()
    }

    async fn call(&self, arguments: serde_json::Value, context: ToolContext) -> Result<serde_json::Value, ToolError> {
        self.function.invoke(arguments, context).await
    }
}

/// The tools an agent may call, by name.
///
/// Definitions are computed once, when a tool is added, so each agent step reuses them.
#[derive(Clone, Default)]
pub struct ToolSet {
    tools: Vec<Arc<dyn Tool>>,
    definitions: Vec<ToolDefinition>,
    validators: Vec<Arc<SchemaValidator>>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.definitions.iter().map(|d| &d.name))
            .finish()
    }
}

impl ToolSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool.
    ///
    /// Fails with [`Error::Config`] when the name is already taken or is not 1–64 characters of
    /// `a-z A-Z 0-9 _ -` (the names every major provider accepts).
    pub fn add(&mut self, tool: impl Tool + 'static) -> Result<(), Error> {
        self.add_shared(Arc::new(tool))
    }

    /// Adds a tool that is already shared.
    pub fn add_shared(&mut self, tool: Arc<dyn Tool>) -> Result<(), Error> {
        let definition = tool.definition();
        let name = &definition.name;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::Config {
                message: format!("invalid tool name {name:?}: use 1-64 characters of a-z, A-Z, 0-9, '_' and '-'"),
            });
        }
        if self.by_name.contains_key(name) {
            return Err(Error::Config {
                message: format!("two tools are named {name:?}"),
            });
        }
        let validator = SchemaValidator::new(&definition.parameters).map_err(|problem| Error::Config {
            message: format!("the parameters of tool {name:?} are not a valid JSON Schema: {problem}"),
        })?;
        self.by_name.insert(name.clone(), self.tools.len());
        self.tools.push(tool);
        self.definitions.push(definition);
        self.validators.push(Arc::new(validator));
        Ok(())
    }

    /// Adds every tool of `other`, its schemas as they were already compiled there.
    ///
    /// Fails with [`Error::Config`] at the first name this set already has (the tools before it
    /// are added).
    pub fn extend(&mut self, other: &ToolSet) -> Result<(), Error> {
        for ((tool, definition), validator) in other.tools.iter().zip(&other.definitions).zip(&other.validators) {
            if self.by_name.contains_key(&definition.name) {
                return Err(Error::Config {
                    message: format!("two tools are named {:?}", definition.name),
                });
            }
            self.by_name.insert(definition.name.clone(), self.tools.len());
            self.tools.push(Arc::clone(tool));
            self.definitions.push(definition.clone());
            self.validators.push(Arc::clone(validator));
        }
        Ok(())
    }

    /// A set of this set's tools with these names, in the order given, their schemas as they were
    /// already compiled here. A name this set lacks is [`Error::Config`].
    pub fn subset<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<ToolSet, Error> {
        let mut subset = ToolSet::new();
        for name in names {
            let index = *self.by_name.get(name).ok_or_else(|| Error::Config {
                message: format!("there is no tool named {name:?}"),
            })?;
            if subset.by_name.contains_key(name) {
                continue;
            }
            subset.by_name.insert(name.to_owned(), subset.tools.len());
            subset.tools.push(Arc::clone(&self.tools[index]));
            subset.definitions.push(self.definitions[index].clone());
            subset.validators.push(Arc::clone(&self.validators[index]));
        }
        Ok(subset)
    }

    /// Checks arguments against the schema of the tool with this name: `Ok` when they fit (or no such
    /// tool exists), otherwise [`ToolError::InvalidArguments`] naming every place that does not fit.
    pub fn validate(&self, name: &str, arguments: &serde_json::Value) -> Result<(), ToolError> {
        match self.by_name.get(name).and_then(|&index| self.validators.get(index)) {
            Some(validator) => validator.check(arguments).map_err(ToolError::invalid_arguments),
            None => Ok(()),
        }
    }

    /// The tool with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.by_name.get(name).and_then(|&index| self.tools.get(index))
    }

    /// Every tool's definition, in the order they were added.
    pub fn definitions(&self) -> &[ToolDefinition] {
        &self.definitions
    }

    /// The tools' names, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.definitions.iter().map(|d| d.name.as_str())
    }

    /// The number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

const _: Option<&dyn Tool> = None;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    struct Add {
        a: i64,
        b: i64,
    }

    fn adder() -> impl Tool {
        tool_fn("add", "Adds.", |args: Add| async move { Ok(args.a + args.b) })
    }

    #[tokio::test]
    async fn typed_closure_tool_parses_and_serializes() {
        let tool = adder();
        let out = tool
            .call(serde_json::json!({"a": 2, "b": 3}), ToolContext::default())
            .await
            .unwrap();
        assert_eq!(out, serde_json::json!(5));
    }

    #[tokio::test]
    async fn arguments_that_fail_the_schema_are_invalid_arguments() {
        let tool = adder();
        let err = tool
            .call(serde_json::json!({"a": "two", "b": 3}), ToolContext::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ToolError::InvalidArguments { message: ref m } if m.contains("invalid type")),
            "{err}"
        );
        let err = tool
            .call(serde_json::json!({"a": 1}), ToolContext::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ToolError::InvalidArguments { message: ref m } if m.contains("missing field `b`")),
            "{err}"
        );
    }

    #[test]
    fn schema_comes_from_the_type() {
        let def = adder().definition();
        assert_eq!(def.parameters["type"], "object");
        assert_eq!(def.parameters["properties"]["a"]["type"], "integer");
    }

    #[test]
    fn duplicate_and_invalid_names_are_rejected() {
        let mut set = ToolSet::new();
        set.add(adder()).unwrap();
        assert!(matches!(set.add(adder()), Err(Error::Config { .. })));
        let bad = tool_fn("no spaces", "x", |args: Add| async move { Ok(args.a) });
        assert!(matches!(set.add(bad), Err(Error::Config { .. })));
        assert_eq!(set.names().collect::<Vec<_>>(), ["add"]);
    }

    #[test]
    fn a_set_extends_another_and_keeps_its_names_unique() {
        let mut first = ToolSet::new();
        first.add(adder()).unwrap();
        let mut second = ToolSet::new();
        second
            .add(tool_fn(
                "sub",
                "Subtracts.",
                |args: Add| async move { Ok(args.a - args.b) },
            ))
            .unwrap();
        second.extend(&first).unwrap();
        assert_eq!(second.names().collect::<Vec<_>>(), ["sub", "add"]);
        assert!(second.validate("add", &serde_json::json!({"a": 1})).is_err());
        assert!(matches!(second.extend(&first), Err(Error::Config { .. })));
    }
}
