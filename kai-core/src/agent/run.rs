//! The agent loop.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::channel::mpsc::UnboundedSender;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::agent::{AgentConfig, AgentEvent, Approval, ApprovalDecision, RunError, RunOptions, RunOutput, RunState};
use crate::cancel::{CancelOnDrop, CancellationToken};
use crate::error::Error;
use crate::extract::Validate;
use crate::hook::{HookContext, ToolDecision};
use crate::message::{Message, Role, StopReason, ToolCall, ToolResult, Usage};
use crate::model::ChatModel;
use crate::request::{ChatRequest, ChatResponse, ResponseFormat, ToolChoice, ToolDefinition};
use crate::stream::{ChatDelta, ResponseAccumulator};
use crate::time::{Instant, guarded, sleep};
use crate::tool::{SuspensionSlot, Tool, ToolContext, ToolError, UsageSink};

pub(crate) type EventSender = UnboundedSender<Result<AgentEvent, RunError>>;

/// How a run must shape its final answer (structured output).
pub(crate) struct OutputSpec {
    /// The schema's name; in tool mode also the name of the tool the model answers through.
    pub(crate) name: String,
    pub(crate) schema: serde_json::Value,
    /// Answer through a forced tool call instead of the provider's JSON-schema response format.
    pub(crate) via_tool: bool,
    /// Checks an answer, returning the normalized JSON text or why it does not fit.
    pub(crate) validate: Validate,
}

/// The model a run asks: an agent's shared model, which a streamed run needs (a model's stream owns its
/// model), or a borrowed one for structured output straight from a model, which never streams.
#[derive(Clone, Copy)]
pub(crate) enum RunModel<'a> {
    /// An agent's model.
    Shared(&'a Arc<dyn ChatModel>),
    /// A model the caller holds by reference.
    Borrowed(&'a dyn ChatModel),
}

impl std::ops::Deref for RunModel<'_> {
    type Target = dyn ChatModel;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Shared(model) => model.as_ref(),
            Self::Borrowed(model) => *model,
        }
    }
}

/// One run of an agent, from a state to an answer or an error.
pub(crate) struct Run<'a> {
    config: &'a AgentConfig,
    model: RunModel<'a>,
    state: RunState,
    /// The run's own token: a child of the caller's, cancelled when the run ends or is dropped.
    cancel: CancellationToken,
    _cancel_on_drop: CancelOnDrop,
    events: Option<EventSender>,
    /// The calls running now, with where each records the progress of a run it started.
    in_flight: InFlight,
    /// Every tool call id of the transcript, gathered at the first model answer and kept up to date.
    call_ids: Option<CallIds>,
    output: Option<OutputSpec>,
    deadline: Option<Instant>,
    step_deadline: Option<Instant>,
    step_usage: Usage,
}

/// What running a tool call needs from its run; borrowed apart from the run's state, so results can be
/// recorded in the state while other calls still run.
struct ToolRunner<'a> {
    config: &'a AgentConfig,
    events: Option<&'a EventSender>,
    cancel: &'a CancellationToken,
    /// Usage that tools reported (an agent used as a tool reports its run's).
    usage: &'a UsageSink,
    in_flight: &'a InFlight,
    run_id: &'a str,
    /// Told a call's id when a run it started records progress.
    progress: UnboundedSender<String>,
}

/// The calls of a batch still running, by id, with their progress slots. Shared with the runner, so the
/// run can still read them after the batch's future was dropped (cancel, timeout).
type InFlight = std::sync::Arc<std::sync::Mutex<Vec<(String, SuspensionSlot)>>>;

/// What to do with one tool call once the hooks have decided.
enum Plan {
    /// Answered without running anything (unknown tool, bad arguments, denial).
    Answered(ToolCall, ToolResult),
    /// Run this tool with these arguments (continuing its suspended run, if it has one).
    Execute {
        tool: Arc<dyn Tool>,
        call: ToolCall,
        arguments: serde_json::Value,
        resumed: Option<RunState>,
    },
}

/// How one planned call ended.
enum Outcome {
    /// With a result for the model.
    Answered(ToolResult),
    /// Suspended: the run it started waits for approvals.
    Suspended { call_id: String, state: RunState },
    /// Stopped by the run's cancellation, with the progress of the run it started, if any.
    Cancelled {
        call_id: String,
        progress: Option<RunState>,
    },
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        config: &'a AgentConfig,
        model: RunModel<'a>,
        state: RunState,
        options: RunOptions,
        events: Option<EventSender>,
        output: Option<OutputSpec>,
    ) -> Self {
        let cancel = options
            .cancel
            .as_ref()
            .map_or_else(CancellationToken::new, CancellationToken::child_token);
        Self {
            config,
            model,
            state,
            _cancel_on_drop: cancel.clone().cancel_on_drop(),
            cancel,
            events,
            in_flight: InFlight::default(),
            call_ids: None,
            output,
            deadline: config.limits.deadline.and_then(after),
            step_deadline: None,
            step_usage: Usage::default(),
        }
    }

    /// Drives the run to its end.
    pub(crate) async fn execute(mut self) -> Result<RunOutput, RunError> {
        let span = tracing::info_span!(
            "invoke_agent",
            otel.name = %format_args!("invoke_agent {}", self.config.name),
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.name = %self.config.name,
            gen_ai.provider.name = %self.model.provider(),
            gen_ai.request.model = %self.model.name(),
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            kai.steps = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        let result = self.drive().instrument(span.clone()).await;
        span.record("gen_ai.usage.input_tokens", attribute(self.state.usage.input_tokens));
        span.record("gen_ai.usage.output_tokens", attribute(self.state.usage.output_tokens));
        span.record("kai.steps", i64::from(self.state.steps));
        match result {
            Ok(answer) => Ok(RunOutput {
                answer,
                usage: self.state.usage,
                steps: self.state.steps,
                messages: self.state.messages,
            }),
            Err(error) => {
                span.record("error.type", error.kind());
                span.record("otel.status_code", "ERROR");
                Err(RunError {
                    error,
                    state: Box::new(self.state),
                })
            }
        }
    }

    async fn drive(&mut self) -> Result<String, Error> {
        // A state checkpointed after its final answer (a crash before the answer was delivered) is
        // finished: resuming gives that answer again instead of asking the model for another.
        if let Some(answer) = self.answer_in_state() {
            return Ok(answer);
        }
        loop {
            self.check_stop()?;
            if !self.state.pending_tool_calls.is_empty() {
                let step_deadline = match self.step_deadline {
                    Some(at) => Some(at),
                    None => self.config.limits.step_timeout.and_then(after),
                };
                let limit = self.limit(step_deadline, self.state.steps);
                let cancel = self.cancel.clone();
                let answer = match guarded(self.execute_tools(), Some(&cancel), limit).await {
                    Ok(Ok(answer)) => answer,
                    // Stopped, or failed (a checkpoint that could not be written): calls still running
                    // were dropped, and what they had done is kept with them.
                    Ok(Err(error)) | Err(error) => {
                        self.keep_progress_of_dropped_calls();
                        return Err(error);
                    }
                };
                self.finish_step().await?;
                if let Some(answer) = answer {
                    return Ok(answer);
                }
            }
            if self.state.steps >= self.config.limits.max_steps {
                return Err(Error::MaxStepsExceeded {
                    max_steps: self.config.limits.max_steps,
                });
            }
            self.step_deadline = self.config.limits.step_timeout.and_then(after);
            let limit = self.limit(self.step_deadline, self.state.steps.saturating_add(1));
            let cancel = self.cancel.clone();
            let response = guarded(self.call_model(), Some(&cancel), limit).await??;
            self.state.steps = self.state.steps.saturating_add(1);
            self.state.usage += response.usage;
            self.step_usage = response.usage;
            let mut response = response;
            let messages = &self.state.messages;
            let ids = self
                .call_ids
                .get_or_insert_with(|| CallIds::new(messages.iter().flat_map(Message::tool_calls)));
            ids.make_unique(&mut response.message);
            let calls: Vec<ToolCall> = response.tool_calls().cloned().collect();
            let text = response.text();
            self.state.messages.push(response.message);
            if !calls.is_empty() {
                self.state.pending_tool_calls = calls;
                self.checkpoint().await?;
                continue;
            }
            match self.check_text_answer(&text) {
                Ok(answer) => {
                    self.finish_step().await?;
                    return Ok(answer);
                }
                Err(problem) => {
                    self.repair(problem)?;
                    self.finish_step().await?;
                }
            }
        }
    }

    /// The final answer, when the transcript already ends with one: an assistant message without tool
    /// calls that passes the structured-output check, or (structured output through a tool) the last
    /// step's output-tool call, answered as accepted.
    fn answer_in_state(&self) -> Option<String> {
        if !self.state.pending_tool_calls.is_empty() {
            return None;
        }
        let messages = &self.state.messages;
        let last = messages.last()?;
        if last.role == Role::Assistant && last.tool_calls().next().is_none() {
            return self.check_text_answer(&last.text()).ok();
        }
        let output = self.output.as_ref().filter(|output| output.via_tool)?;
        let asked = messages.iter().rposition(|m| m.role == Role::Assistant)?;
        let call = messages[asked].tool_calls().find(|call| call.name == output.name)?;
        let accepted = messages[asked + 1..]
            .iter()
            .flat_map(Message::tool_results)
            .any(|result| result.call_id == call.id && !result.is_error);
        if !accepted {
            return None;
        }
        output.validate.check(&call.arguments).ok()
    }

    /// Fails fast when the run was cancelled or is past its deadline.
    fn check_stop(&self) -> Result<(), Error> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        if self.deadline.is_some_and(|at| Instant::now() >= at) {
            return Err(Error::DeadlineExceeded);
        }
        Ok(())
    }

    /// The earliest of the run's deadline and a step's deadline, with the error each one means.
    fn limit(&self, step_deadline: Option<Instant>, step: u32) -> Option<(Instant, Error)> {
        match (self.deadline, step_deadline) {
            (Some(run), Some(step_at)) if step_at < run => Some((step_at, Error::StepTimeout { step })),
            (Some(run), _) => Some((run, Error::DeadlineExceeded)),
            (None, Some(step_at)) => Some((step_at, Error::StepTimeout { step })),
            (None, None) => None,
        }
    }

    async fn finish_step(&mut self) -> Result<(), Error> {
        self.checkpoint().await?;
        self.step_deadline = None;
        let usage = std::mem::take(&mut self.step_usage);
        self.emit(AgentEvent::StepFinished {
            step: self.state.steps,
            usage,
        });
        Ok(())
    }

    /// Hands the state to every checkpoint hook. While calls run, the state handed over includes the
    /// progress of every run they started (agents used as tools), as suspended calls: whichever call
    /// finishes or reports first, a checkpoint never drops what the others have done, and after a crash
    /// a resume continues those runs instead of starting them over.
    async fn checkpoint(&self) -> Result<(), Error> {
        if self.config.hooks.is_empty() {
            return Ok(());
        }
        let progress: Vec<(String, RunState)> = lock(&self.in_flight)
            .iter()
            .filter(|(id, _)| self.state.pending_tool_calls.iter().any(|call| call.id == *id))
            .filter_map(|(id, slot)| slot.latest().map(|state| (id.clone(), state)))
            .collect();
        let snapshot;
        let state = if progress.is_empty() {
            &self.state
        } else {
            let mut with_progress = self.state.clone();
            for (call_id, state) in progress {
                with_progress.suspended.retain(|suspended| suspended.call_id != call_id);
                with_progress.suspended.push(crate::agent::SuspendedCall {
                    call_id,
                    state: Box::new(state),
                });
            }
            snapshot = with_progress;
            &snapshot
        };
        for hook in &self.config.hooks {
            hook.checkpoint(state).await?;
        }
        Ok(())
    }

    fn emit(&self, event: AgentEvent) {
        send_event(self.events.as_ref(), event);
    }

    /// After a batch was dropped (cancel, timeout): the calls that were still running and had recorded
    /// the progress of a run they started keep it, as suspended calls a resume continues.
    fn keep_progress_of_dropped_calls(&mut self) {
        let dropped = std::mem::take(&mut *lock(&self.in_flight));
        for (call_id, slot) in dropped {
            if let Some(state) = slot.take()
                && self.state.pending_tool_calls.iter().any(|call| call.id == call_id)
            {
                self.state.suspended.retain(|suspended| suspended.call_id != call_id);
                self.state.suspended.push(crate::agent::SuspendedCall {
                    call_id,
                    state: Box::new(state),
                });
            }
        }
    }

    fn hook_context(&self, step: u32) -> HookContext {
        HookContext {
            agent: Arc::clone(&self.config.name),
            step,
        }
    }

    /// The request for the next step, and for a constrained step the tools it may call.
    fn build_request(&self) -> (ChatRequest, Option<Vec<String>>) {
        let config = self.config;
        let mut request = config.request_template.clone();
        request.messages.reserve(self.state.messages.len() + 1);
        if let Some(instructions) = &config.instructions {
            request.messages.push(Message::system(instructions.as_str()));
        }
        request.messages.extend(self.state.messages.iter().cloned());
        request.tools = config.tools.definitions().to_vec();
        if request.tool_choice.is_some() && self.called_a_tool_this_turn() {
            // The agent's tool choice holds until the model has called a tool; then it may answer.
            request.tool_choice = None;
        }
        let limits = &config.limits;
        let last_step = self.state.steps.saturating_add(1) >= limits.max_steps;
        if limits.answer_on_last_step && last_step && !request.tools.is_empty() {
            request.tool_choice = Some(ToolChoice::None);
        }
        if let Some(output) = &self.output {
            if output.via_tool {
                request.tools.push(ToolDefinition {
                    name: output.name.clone(),
                    description: "Give your final answer by calling this tool with it as the arguments.".into(),
                    parameters: output.schema.clone(),
                });
                request.tool_choice = Some(ToolChoice::Required);
            } else {
                request.response_format = Some(ResponseFormat::JsonSchema {
                    name: output.name.clone(),
                    schema: output.schema.clone(),
                    strict: true,
                });
            }
        }
        if !self.constrained() {
            return (request, None);
        }
        if self.repeated_a_call() {
            // A model that asks again for what it already has is stuck: it must answer now.
            request.tool_choice = Some(ToolChoice::None);
        }
        let allowed = super::constrained::constrain(&mut request);
        (request, Some(allowed))
    }

    /// Whether the model's latest calls all repeat calls (same tool, same arguments) that it made
    /// earlier in this turn and that succeeded: it asks again for what it already has.
    fn repeated_a_call(&self) -> bool {
        let turn: Vec<&Message> = self.this_turn().collect();
        let Some(at) = turn.iter().position(|message| message.role == Role::Assistant) else {
            return false;
        };
        let succeeded = |call: &ToolCall| {
            turn.iter()
                .flat_map(|message| message.tool_results())
                .any(|result| result.call_id == call.id && !result.is_error)
        };
        let earlier: Vec<&ToolCall> = turn[at + 1..]
            .iter()
            .flat_map(|message| message.tool_calls())
            .filter(|call| succeeded(call))
            .collect();
        let mut latest = turn[at].tool_calls().peekable();
        latest.peek().is_some()
            && latest.all(|call| {
                earlier
                    .iter()
                    .any(|before| before.name == call.name && before.arguments == call.arguments)
            })
    }

    /// Whether the model has called a tool in this turn.
    fn called_a_tool_this_turn(&self) -> bool {
        self.this_turn().any(|message| message.tool_calls().next().is_some())
    }

    /// This turn's messages, newest first: those after the last user message (a repair request is the
    /// run's own, not the user's, and does not start a turn).
    fn this_turn(&self) -> impl Iterator<Item = &Message> {
        self.state
            .messages
            .iter()
            .rev()
            .take_while(|message| message.role != Role::User || message.text().starts_with(REPAIR_REQUEST))
    }

    /// Whether this run's steps are constrained to one tool call or an answer: the agent asks for it,
    /// the model can follow a schema, there are tools to call and no structured output to give.
    fn constrained(&self) -> bool {
        self.config.constrained_steps
            && self.output.is_none()
            && !self.config.tools.definitions().is_empty()
            && self.model.capabilities().json_schema
    }

    async fn call_model(&self) -> Result<ChatResponse, Error> {
        let context = self.hook_context(self.state.steps.saturating_add(1));
        let (mut request, constrained) = self.build_request();
        for hook in &self.config.hooks {
            hook.before_model(&context, &mut request).await?;
        }
        let span = tracing::info_span!(
            "chat",
            otel.name = %format_args!("chat {}", self.model.name()),
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = %self.model.provider(),
            gen_ai.request.model = %self.model.name(),
            gen_ai.request.max_tokens = request.max_tokens.map(i64::from),
            gen_ai.request.temperature = request.temperature,
            gen_ai.response.model = Empty,
            gen_ai.response.id = Empty,
            gen_ai.response.finish_reasons = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            kai.step = i64::from(context.step),
            error.type = Empty,
            otel.status_code = Empty,
        );
        let mut response = async {
            match (&self.events, self.model) {
                (Some(_), RunModel::Shared(model)) => {
                    let mut deltas = Arc::clone(model).stream(request);
                    let mut accumulator = ResponseAccumulator::new();
                    while let Some(delta) = deltas.next().await {
                        let delta = delta?;
                        match &delta {
                            // A constrained step's text is JSON; its answer is sent once decoded.
                            ChatDelta::Text { text } if constrained.is_none() => {
                                self.emit(AgentEvent::TextDelta { text: text.clone() });
                            }
                            ChatDelta::Reasoning { text, .. } if !text.is_empty() => {
                                self.emit(AgentEvent::ReasoningDelta { text: text.clone() });
                            }
                            _ => {}
                        }
                        accumulator.push(delta);
                    }
                    Ok(accumulator.finish())
                }
                _ => self.model.complete(request).await,
            }
        }
        .instrument(span.clone())
        .await
        .inspect_err(|error| {
            span.record("error.type", error.kind());
            span.record("otel.status_code", "ERROR");
        })?;
        if let Some(allowed) = &constrained {
            super::constrained::decode(&mut response, allowed);
            let answer = response.text();
            if response.tool_calls().next().is_none() && !answer.is_empty() {
                self.emit(AgentEvent::TextDelta { text: answer });
            }
        }
        span.record("gen_ai.usage.input_tokens", attribute(response.usage.input_tokens));
        span.record("gen_ai.usage.output_tokens", attribute(response.usage.output_tokens));
        if let Some(model) = &response.model {
            span.record("gen_ai.response.model", model.as_str());
        }
        if let Some(id) = &response.id {
            span.record("gen_ai.response.id", id.as_str());
        }
        if let Some(reason) = response
            .provider_stop_reason
            .as_deref()
            .or(response.stop_reason.as_ref().map(StopReason::as_str))
        {
            span.record("gen_ai.response.finish_reasons", reason);
        }
        for hook in &self.config.hooks {
            hook.after_model(&context, &mut response).await?;
        }
        Ok(response)
    }

    /// Answers every pending tool call. Each result is added to the transcript, and the state
    /// checkpointed, the moment it is ready, so a run cancelled or timed out mid-batch keeps the
    /// results it has and a resumed run does not call those tools again. Returns the final answer when
    /// a structured-output call carried a valid one.
    async fn execute_tools(&mut self) -> Result<Option<String>, Error> {
        let limit = self.config.limits.max_tool_calls;
        if self.state.pending_tool_calls.len() > limit {
            let asked = self.state.pending_tool_calls.len();
            for call in self.state.pending_tool_calls.split_off(limit) {
                let message = format!("not run: {asked} tool calls in one step are more than the {limit} allowed");
                self.state
                    .messages
                    .push(Message::tool_result(ToolResult::error(&call, message)));
            }
        }
        if self.state.pending_approvals().next().is_some() {
            return Err(approval_required(&self.state.approvals));
        }
        let context = self.hook_context(self.state.steps);
        let calls = self.state.pending_tool_calls.clone();
        let mut plans = Vec::with_capacity(calls.len());
        let mut approvals = Vec::new();
        let mut final_answer = None;
        let mut output_problem = None;
        for call in calls {
            if let Some(output) = self.output.as_ref().filter(|o| o.via_tool && o.name == call.name) {
                let result = match output.validate.check(&call.arguments) {
                    Ok(answer) => {
                        final_answer = Some(answer);
                        ToolResult::success(&call, "Final answer received.")
                    }
                    Err(problem) => {
                        let result =
                            ToolResult::error(&call, format!("The answer does not match the schema: {problem}"));
                        output_problem = Some(problem);
                        result
                    }
                };
                plans.push(Plan::Answered(call, result));
                continue;
            }
            match self.plan(&context, call).await {
                Ok(plan) => plans.push(plan),
                Err(approval) => approvals.push(approval),
            }
        }
        if !approvals.is_empty() {
            let previous = std::mem::take(&mut self.state.approvals);
            let decided = previous.into_iter().filter(|a| a.decision.is_some());
            self.state.approvals = decided.chain(approvals).collect();
            self.checkpoint().await?;
            return Err(approval_required(&self.state.approvals));
        }

        for plan in &mut plans {
            match plan {
                Plan::Execute { call, resumed, .. } => *resumed = self.state.take_suspended(&call.id),
                // A suspended call answered without running (denied, rejected) leaves its run behind.
                Plan::Answered(call, _) => drop(self.state.take_suspended(&call.id)),
            }
        }

        let reported = UsageSink::default();
        let run_id = self.state.id.clone();
        let (progress, mut progress_made) = futures::channel::mpsc::unbounded();
        let runner = ToolRunner {
            config: self.config,
            events: self.events.as_ref(),
            cancel: &self.cancel,
            usage: &reported,
            in_flight: &self.in_flight,
            run_id: &run_id,
            progress,
        };
        let context = &context;
        let runner = &runner;
        let mut results = futures::stream::iter(plans)
            .map(|plan| runner.answer(context, plan))
            .buffer_unordered(self.config.limits.max_parallel_tools);
        let mut suspended = false;
        let mut cancelled = false;
        loop {
            // The runner keeps a sender, so the progress channel stays open as long as calls run.
            let outcome = match futures::future::select(results.next(), progress_made.next()).await {
                futures::future::Either::Left((Some(outcome), _)) => outcome,
                futures::future::Either::Left((None, _)) => break,
                futures::future::Either::Right((Some(_), _)) => {
                    // One checkpoint covers every report waiting now, and every call's progress.
                    while progress_made.try_recv().is_ok() {}
                    self.checkpoint().await?;
                    continue;
                }
                futures::future::Either::Right((None, _)) => match results.next().await {
                    Some(outcome) => outcome,
                    None => break,
                },
            };
            self.state.usage += reported.take();
            match outcome {
                Outcome::Answered(result) => {
                    // Only this call leaves the list: a model may give two calls one id.
                    let answered = self
                        .state
                        .pending_tool_calls
                        .iter()
                        .position(|c| c.id == result.call_id);
                    if let Some(answered) = answered {
                        self.state.pending_tool_calls.remove(answered);
                    }
                    self.state.messages.push(Message::tool_result(result));
                    // The last result is checkpointed when the step finishes.
                    if !self.state.pending_tool_calls.is_empty() {
                        self.checkpoint().await?;
                    }
                }
                Outcome::Suspended { call_id, state } => {
                    self.state.suspend(&call_id, state);
                    suspended = true;
                }
                // The call stays pending; a resume continues the run it started from its progress.
                Outcome::Cancelled { call_id, progress } => {
                    if let Some(state) = progress {
                        self.state.suspended.push(crate::agent::SuspendedCall {
                            call_id,
                            state: Box::new(state),
                        });
                    }
                    cancelled = true;
                }
            }
        }
        drop(results);
        if cancelled {
            self.checkpoint().await?;
            return Err(Error::Cancelled);
        }
        if suspended {
            // The finished calls are recorded; the suspended ones stay pending until their approvals.
            // Decisions on calls that finished are spent; those on the suspended calls themselves and
            // inside their runs remain, so nothing is asked twice.
            let pending = &self.state.pending_tool_calls;
            self.state
                .approvals
                .retain(|a| a.nested.is_some() || pending.iter().any(|call| call.id == a.call.id));
            self.checkpoint().await?;
            return Err(approval_required(&self.state.approvals));
        }
        self.state.pending_tool_calls.clear();
        self.state.approvals.clear();
        self.state.suspended.clear();
        if final_answer.is_none()
            && let Some(problem) = output_problem
        {
            self.repair_counted(problem)?;
        }
        Ok(final_answer)
    }

    /// Decides what to do with one call: parse its arguments, find the tool, ask the hooks, check the
    /// arguments against the tool's schema. `Err` means a human must approve it first.
    async fn plan(&self, context: &HookContext, call: ToolCall) -> Result<Plan, Approval> {
        let mut arguments = match parse_tool_arguments(&call.arguments) {
            Ok(arguments) => arguments,
            Err(problem) => {
                let result = ToolResult::error(&call, problem);
                return Ok(Plan::Answered(call, result));
            }
        };
        let Some(tool) = self.config.tools.get(&call.name) else {
            let available: Vec<&str> = self.config.tools.names().collect();
            let message = format!(
                "unknown tool {:?}; the available tools are: {}",
                call.name,
                available.join(", ")
            );
            let result = ToolResult::error(&call, message);
            return Ok(Plan::Answered(call, result));
        };
        // Every hook has its say first, so an approval covers the arguments that will run, whatever a
        // hook after the one asking for it rewrites.
        let mut needs_approval = None;
        for hook in &self.config.hooks {
            match hook.before_tool(context, &call, &arguments).await {
                ToolDecision::Allow => {}
                ToolDecision::Rewrite { arguments: rewritten } => arguments = rewritten,
                ToolDecision::Deny { reason } => {
                    let result = ToolResult::error(&call, format!("the call was denied: {reason}"));
                    return Ok(Plan::Answered(call, result));
                }
                ToolDecision::RequireApproval { reason } => {
                    needs_approval.get_or_insert(reason);
                }
            }
        }
        if let Some(reason) = needs_approval {
            match self.state.approval_for(&call.id) {
                // Approved as it now stands: the arguments the human saw are the ones that run.
                Some(Approval {
                    decision: Some(ApprovalDecision::Approved),
                    call: approved,
                    ..
                }) if parse_tool_arguments(&approved.arguments).ok().as_ref() == Some(&arguments) => {}
                Some(Approval {
                    decision: Some(ApprovalDecision::Rejected { reason }),
                    ..
                }) => {
                    let result = ToolResult::error(&call, format!("the call was rejected: {reason}"));
                    return Ok(Plan::Answered(call, result));
                }
                _ => {
                    // The human sees the arguments the call would run with.
                    let call = ToolCall {
                        arguments: arguments.to_string(),
                        ..call
                    };
                    return Err(Approval {
                        call,
                        reason,
                        decision: None,
                        nested: None,
                    });
                }
            }
        }
        if let Err(error) = self.config.tools.validate(&call.name, &arguments) {
            let result = ToolResult::error(
                &call,
                format!("{error}; call the tool again with arguments that match its schema"),
            );
            return Ok(Plan::Answered(call, result));
        }
        Ok(Plan::Execute {
            tool: Arc::clone(tool),
            call,
            arguments,
            resumed: None,
        })
    }
}

impl ToolRunner<'_> {
    fn emit(&self, event: AgentEvent) {
        send_event(self.events, event);
    }

    /// Runs a planned call (or takes its ready answer), then lets the hooks see the result.
    async fn answer(&self, context: &HookContext, plan: Plan) -> Outcome {
        let (call, mut result) = match plan {
            Plan::Answered(call, result) => (call, result),
            Plan::Execute {
                tool,
                call,
                arguments,
                resumed,
            } => {
                // The call as it runs, with the arguments hooks rewrote: what the events and
                // `after_tool` see (the transcript keeps what the model asked for).
                let effective = ToolCall {
                    arguments: arguments.to_string(),
                    ..call.clone()
                };
                self.emit(AgentEvent::ToolCallStarted {
                    call: effective.clone(),
                });
                match self.invoke(context, tool.as_ref(), &call, arguments, resumed).await {
                    Outcome::Answered(result) => (effective, result),
                    stopped @ (Outcome::Suspended { .. } | Outcome::Cancelled { .. }) => return stopped,
                }
            }
        };
        for hook in &self.config.hooks {
            hook.after_tool(context, &call, &mut result).await;
        }
        // A hook may change what a result says, not which call it answers: the run's bookkeeping and
        // the provider both go by this id.
        result.call_id = call.id;
        self.emit(AgentEvent::ToolCallFinished { result: result.clone() });
        Outcome::Answered(result)
    }

    async fn invoke(
        &self,
        context: &HookContext,
        tool: &dyn Tool,
        call: &ToolCall,
        arguments: serde_json::Value,
        resumed: Option<RunState>,
    ) -> Outcome {
        let span = tracing::info_span!(
            "execute_tool",
            otel.name = %format_args!("execute_tool {}", call.name),
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = %call.name,
            gen_ai.tool.call.id = %call.id,
            gen_ai.tool.type = "function",
            error.type = Empty,
            otel.status_code = Empty,
        );
        // The call's own token: cancelled with the run, and when this call ends or is dropped.
        let cancel = self.cancel.child_token();
        let _cancel_on_drop = cancel.clone().cancel_on_drop();
        let suspension = SuspensionSlot::reporting_to(call.id.clone(), self.progress.clone());
        let slots = std::sync::Arc::clone(self.in_flight);
        let watched = (call.id.clone(), suspension.clone());
        lock(&slots).push(watched);
        // Leaves the list when the call finishes; a dropped call stays listed for the run to read.
        let finished = FinishedCall {
            slots,
            id: call.id.clone(),
        };
        let call_cancel = cancel.clone();
        let tool_context = ToolContext::new(call.id.clone())
            .with_run_id(self.run_id)
            .with_step(context.step)
            .with_cancel(cancel)
            .with_usage_sink(self.usage.clone())
            .with_suspension(suspension.clone(), resumed);
        // The call's progress goes to the run's events until the call ends (or is dropped): a tool
        // that keeps its context can neither report after its result nor hold the stream open.
        let (tool_context, progress_gate) = match self.events {
            Some(events) => {
                let (events, call_id) = (events.clone(), call.id.clone());
                let (context, gate) = tool_context.with_gated_progress_listener(move |progress| {
                    send_event(
                        Some(&events),
                        AgentEvent::ToolProgress {
                            call_id: call_id.clone(),
                            progress,
                        },
                    );
                });
                (context, Some(gate))
            }
            None => (tool_context, None),
        };
        let running = AssertUnwindSafe(tool.call(arguments, tool_context)).catch_unwind();
        let timeout = self.config.limits.tool_timeout.filter(|t| after(*t).is_some());
        let outcome = async move {
            match timeout {
                None => running.await.map_err(panic_message),
                Some(timeout) => {
                    let timer = sleep(timeout);
                    match futures::future::select(std::pin::pin!(running), std::pin::pin!(timer)).await {
                        futures::future::Either::Left((finished, _)) => finished.map_err(panic_message),
                        futures::future::Either::Right(((), _)) => Ok(Err(ToolError::Timeout { after: timeout })),
                    }
                }
            }
        }
        .instrument(span.clone())
        .await;
        drop(progress_gate);
        finished.remove();
        let result = match outcome {
            Ok(Ok(value)) => ToolResult::success(call, render(value)),
            Ok(Err(ToolError::Suspended)) if let Some(state) = suspension.take() => {
                return Outcome::Suspended {
                    call_id: call.id.clone(),
                    state,
                };
            }
            Ok(Err(ToolError::Cancelled)) if call_cancel.is_cancelled() && self.cancel.is_cancelled() => {
                return Outcome::Cancelled {
                    call_id: call.id.clone(),
                    progress: suspension.take(),
                };
            }
            Ok(Err(error)) => {
                span.record("error.type", tool_error_type(&error));
                span.record("otel.status_code", "ERROR");
                ToolResult::error(call, error.to_string())
            }
            Err(panic) => {
                span.record("error.type", "panic");
                span.record("otel.status_code", "ERROR");
                // A panic message can hold anything (an unwrapped secret, a path): it goes to the debug
                // log only, never to the model. Both are logged in the tool call's span.
                span.in_scope(|| {
                    tracing::warn!(tool = %call.name, "tool panicked");
                    tracing::debug!(tool = %call.name, "tool panic message: {panic}");
                });
                ToolResult::error(call, "the tool failed unexpectedly")
            }
        };
        Outcome::Answered(result)
    }
}

/// A count as a span attribute: OpenTelemetry's integers are signed 64-bit, and a `u64` field would
/// be exported as text.
fn attribute(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl Run<'_> {
    /// Checks a text answer against the structured-output spec, if any.
    fn check_text_answer(&self, text: &str) -> Result<String, String> {
        match &self.output {
            None => Ok(text.to_owned()),
            Some(output) if output.via_tool => {
                Err(format!("answer by calling the {} tool, not with text", output.name))
            }
            Some(output) => output.validate.check(text),
        }
    }

    /// Sends an invalid structured answer back for repair, or fails when the repairs are used up.
    fn repair(&mut self, problem: String) -> Result<(), Error> {
        self.repair_counted(problem.clone())?;
        self.state.messages.push(Message::user(format!(
            "{REPAIR_REQUEST}{problem}. Answer again, with only the answer in the required form."
        )));
        Ok(())
    }

    fn repair_counted(&mut self, problem: String) -> Result<(), Error> {
        if self.state.repairs >= self.config.limits.max_repairs {
            return Err(Error::InvalidOutput {
                message: problem,
                attempts: self.state.repairs.saturating_add(1),
            });
        }
        self.state.repairs = self.state.repairs.saturating_add(1);
        Ok(())
    }
}

/// How a message asking the model to repair its answer begins.
const REPAIR_REQUEST: &str = "Your answer is not valid: ";

/// Parses a model's tool arguments; an empty string means no arguments.
fn parse_tool_arguments(raw: &str) -> Result<serde_json::Value, String> {
    if raw.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(raw).map_err(|error| {
        format!(
            "the arguments are not valid JSON ({error}); call the tool again with a JSON object that matches its schema"
        )
    })
}

/// A string result goes to the model as it is; anything else as JSON text.
fn render(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic".to_owned()
    }
}

fn approval_required(approvals: &[Approval]) -> Error {
    Error::ApprovalRequired {
        call_ids: approvals
            .iter()
            .filter(|a| a.decision.is_none())
            .map(|a| a.call.id.clone())
            .collect(),
    }
}

fn tool_error_type(error: &ToolError) -> &'static str {
    match error {
        ToolError::InvalidArguments { .. } => "invalid_arguments",
        ToolError::Failed { .. } => "tool_error",
        ToolError::Timeout { .. } => "timeout",
        ToolError::Cancelled => "cancelled",
        ToolError::Suspended => "suspended",
    }
}

/// The instant `duration` from now, or `None` when that is too far away to represent (a limit of
/// `Duration::MAX` means no limit, not a panic).
fn after(duration: std::time::Duration) -> Option<Instant> {
    Instant::now().checked_add(duration)
}

fn send_event(events: Option<&EventSender>, event: AgentEvent) {
    if let Some(events) = events {
        // A closed channel means nobody listens any more; the run itself goes on until dropped.
        let _ = events.unbounded_send(Ok(event));
    }
}

/// The tool call ids of a run, so that each new call gets one no earlier call has: a model may repeat
/// ids, or leave them empty, and approvals, resumption and idempotency keys all go by id.
struct CallIds {
    used: HashSet<String>,
    /// The next suffix to try per base id, so renaming stays linear however many calls repeat one id.
    next: std::collections::HashMap<String, u64>,
}

impl CallIds {
    fn new<'a>(calls: impl Iterator<Item = &'a ToolCall>) -> Self {
        Self {
            used: calls.map(|call| call.id.clone()).collect(),
            next: std::collections::HashMap::new(),
        }
    }

    /// Gives every call of `message` an unused id. A repeated id gets a suffix (`id-2`; letters, digits,
    /// `_` and `-` are what every provider accepts); the message is stored with it, so the provider sees
    /// the same ids in the results.
    fn make_unique(&mut self, message: &mut Message) {
        for part in &mut message.content {
            let crate::message::ContentPart::ToolCall(call) = part else {
                continue;
            };
            if call.id.is_empty() || self.used.contains(&call.id) {
                let base = if call.id.is_empty() { "call" } else { call.id.as_str() };
                let next = self.next.entry(base.to_owned()).or_insert(2);
                // Each failed try is an id already used, so all tries together stay linear in the ids.
                let mut candidate = format!("{base}-{next}");
                while self.used.contains(&candidate) {
                    *next = next.saturating_add(1);
                    candidate = format!("{base}-{next}");
                }
                *next = next.saturating_add(1);
                call.id = candidate;
            }
            self.used.insert(call.id.clone());
        }
    }
}

/// Takes the in-flight list's lock, whatever a panicking holder left.
fn lock(slots: &InFlight) -> std::sync::MutexGuard<'_, Vec<(String, SuspensionSlot)>> {
    slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A call in the in-flight list, removed when it finishes.
struct FinishedCall {
    slots: InFlight,
    id: String,
}

impl FinishedCall {
    fn remove(self) {
        let mut slots = lock(&self.slots);
        if let Some(position) = slots.iter().position(|(id, _)| *id == self.id) {
            slots.remove(position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ContentPart, Role};

    #[test]
    fn empty_and_repeated_ids_get_fresh_ones() {
        let call = |id: &str| ContentPart::ToolCall(ToolCall::new(id, "t", &serde_json::json!({})));
        let earlier = [Message::new(Role::Assistant, vec![call("a"), call("a-2")])];
        let mut message = Message::new(Role::Assistant, vec![call(""), call("a"), call(""), call("b")]);
        let mut ids = CallIds::new(earlier.iter().flat_map(Message::tool_calls));
        ids.make_unique(&mut message);
        let renamed: Vec<&str> = message.tool_calls().map(|c| c.id.as_str()).collect();
        assert_eq!(renamed, ["call-2", "a-3", "call-3", "b"]);
    }

    #[test]
    fn renaming_many_repeats_of_one_id_is_linear() {
        // A hostile server answering with 200,000 calls all named "x": quadratic renaming would take
        // minutes; this finishes at once.
        let call = ContentPart::ToolCall(ToolCall::new("x", "t", &serde_json::json!({})));
        let mut message = Message::new(Role::Assistant, vec![call; 200_000]);
        let mut ids = CallIds::new(std::iter::empty());
        let started = std::time::Instant::now();
        ids.make_unique(&mut message);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let last = message.tool_calls().last().map(|c| c.id.clone());
        assert_eq!(last.as_deref(), Some("x-200000"));
        assert_eq!(ids.used.len(), 200_000);
    }
}
