//! A2A tasks: each one a run of the agent, kept in memory with its status, answer and (while it waits
//! for approval) its suspended run.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use a2a_lf::{
    A2AError, Artifact, Message, Part, Role, StreamResponse, Task, TaskArtifactUpdateEvent, TaskState, TaskStatus,
    TaskStatusUpdateEvent,
};
use futures::StreamExt as _;
use kai_core::{Agent, AgentEvent, CancellationToken, RunOptions, RunState};
use tokio::sync::{mpsc, oneshot, watch};

use super::wire::{self, Decision};

/// The id of the artifact that holds a task's answer.
const ANSWER: &str = "answer";

/// A task and what its run needs.
struct Entry {
    task: Task,
    /// While it waits for approval: the suspended run.
    suspended: Option<RunState>,
    /// While it runs: cancels the run.
    cancel: Option<CancellationToken>,
    /// Changes each time the task's status does.
    changed: watch::Sender<TaskState>,
}

/// The longest id (task, context, message) taken from a peer, in bytes.
const MAX_ID_BYTES: usize = 128;

/// The largest transcript a conversation keeps, in bytes of JSON; past it the next task starts the
/// conversation afresh.
const MAX_TRANSCRIPT_BYTES: usize = 1 << 20;

/// How long `CancelTask` waits for a cancelled run to stop.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The tasks and conversations of one server, bounded.
pub(crate) struct Tasks {
    agent: Agent,
    inner: Mutex<Inner>,
    max_tasks: usize,
    max_contexts: usize,
    /// The parent of every run's token: cancelled when the server stops.
    runs: CancellationToken,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Entry>,
    /// Task ids, oldest first, to forget finished ones when there are too many.
    order: VecDeque<String>,
    /// Each conversation's transcript after its last finished task, and the order they were made.
    contexts: HashMap<String, Vec<kai_core::Message>>,
    context_order: VecDeque<String>,
}

/// Where a started (or continued) task's updates go.
pub(crate) struct Started {
    /// The task as it stood when its run started.
    pub(crate) task: Task,
    /// Its updates, until its run stops (done, failed, cancelled, or waiting for input).
    pub(crate) updates: mpsc::Receiver<StreamResponse>,
    /// The task as its run left it.
    pub(crate) finished: oneshot::Receiver<Task>,
}

fn status(state: TaskState, message: Option<Message>) -> TaskStatus {
    TaskStatus {
        state,
        message,
        timestamp: Some(chrono::Utc::now()),
    }
}

fn agent_message(task: &Task, parts: Vec<Part>) -> Message {
    let mut message = Message::new(Role::Agent, parts);
    message.task_id = Some(task.id.clone());
    message.context_id = Some(task.context_id.clone());
    message
}

fn interrupted(state: &TaskState) -> bool {
    state.is_terminal() || matches!(state, TaskState::InputRequired | TaskState::AuthRequired)
}

impl Tasks {
    pub(crate) fn new(agent: Agent, max_tasks: usize, max_contexts: usize) -> Self {
        Self {
            agent,
            inner: Mutex::new(Inner::default()),
            max_tasks,
            max_contexts,
            runs: CancellationToken::new(),
        }
    }

    /// The parent of every run's token: cancelling it cancels every run under way.
    pub(crate) fn runs(&self) -> &CancellationToken {
        &self.runs
    }

    /// The agent the tasks run.
    pub(crate) fn agent(&self) -> &Agent {
        &self.agent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The task with this id.
    pub(crate) fn get(&self, id: &str) -> Result<Task, A2AError> {
        self.lock()
            .tasks
            .get(id)
            .map(|entry| entry.task.clone())
            .ok_or_else(|| A2AError::task_not_found(id))
    }

    /// Starts a task for `message`, or continues the task it names (one waiting for input: the
    /// message decides its approvals).
    pub(crate) fn send(self: &Arc<Self>, mut message: Message) -> Result<Started, A2AError> {
        let ids = [
            Some(&message.message_id),
            message.task_id.as_ref(),
            message.context_id.as_ref(),
        ];
        if ids.into_iter().flatten().any(|id| id.len() > MAX_ID_BYTES) {
            return Err(A2AError::invalid_params(format!(
                "ids are at most {MAX_ID_BYTES} bytes"
            )));
        }
        // What the task keeps of a peer's message: its ids, role and parts, without metadata.
        message.metadata = None;
        message.extensions = None;
        message.reference_task_ids = None;
        message.role = a2a_lf::Role::User;
        for part in &mut message.parts {
            part.metadata = None;
        }
        let (state, task, token) = {
            let mut inner = self.lock();
            match message.task_id.clone() {
                Some(id) => self.continue_task(&mut inner, &id, &message)?,
                None => self.new_task(&mut inner, message)?,
            }
        };
        let (sender, updates) = mpsc::channel(64);
        let (done, finished) = oneshot::channel();
        let tasks = Arc::clone(self);
        let id = task.id.clone();
        tokio::spawn(async move {
            // A panic in the model or a hook (tools' are caught by the run) fails the task, rather
            // than leave it working for ever.
            let run = std::panic::AssertUnwindSafe(tasks.drive(id.clone(), state, token, sender));
            let task = match futures::FutureExt::catch_unwind(run).await {
                Ok(task) => task,
                Err(_) => {
                    tracing::warn!(task = %id, "an A2A task's run panicked");
                    tasks.update(&id, |entry| {
                        entry.cancel = None;
                        entry.task.status = status(TaskState::Failed, None);
                    })
                }
            };
            if let Some(task) = task {
                let _ = done.send(task);
            }
        });
        Ok(Started {
            task,
            updates,
            finished,
        })
    }

    fn new_task(&self, inner: &mut Inner, message: Message) -> Result<(RunState, Task, CancellationToken), A2AError> {
        let input = wire::input_text(&message)?;
        // A conversation goes on only under an id this server gave out (122 random bits); any other
        // id starts a new conversation under a new id, so no peer can name its way into another's.
        let context_id = message
            .context_id
            .clone()
            .filter(|id| inner.contexts.contains_key(id))
            .map_or_else(new_context_id, Ok)?;
        let history = inner.contexts.get(&context_id).cloned().unwrap_or_default();
        let id = a2a_lf::new_task_id();
        let mut user = message;
        user.task_id = Some(id.clone());
        user.context_id = Some(context_id.clone());
        let task = Task {
            id: id.clone(),
            context_id,
            status: status(TaskState::Submitted, None),
            artifacts: None,
            history: Some(vec![user]),
            metadata: None,
        };
        self.forget_finished(inner);
        if inner.tasks.len() >= self.max_tasks {
            // Every task kept is running or waiting for input: no room for another.
            return Err(A2AError::internal(format!(
                "{} tasks are under way or waiting for input; try again later",
                inner.tasks.len()
            )));
        }
        let token = self.runs.child_token();
        let (changed, _) = watch::channel(TaskState::Submitted);
        inner.tasks.insert(
            id.clone(),
            Entry {
                task: task.clone(),
                suspended: None,
                cancel: Some(token.clone()),
                changed,
            },
        );
        inner.order.push_back(id);
        Ok((RunState::continuing(history, input), task, token))
    }

    fn continue_task(
        &self,
        inner: &mut Inner,
        id: &str,
        message: &Message,
    ) -> Result<(RunState, Task, CancellationToken), A2AError> {
        let entry = inner.tasks.get_mut(id).ok_or_else(|| A2AError::task_not_found(id))?;
        if message
            .context_id
            .as_ref()
            .is_some_and(|context| *context != entry.task.context_id)
        {
            return Err(A2AError::invalid_params("the message's contextId is not its task's"));
        }
        if entry.task.status.state != TaskState::InputRequired {
            return Err(A2AError::invalid_params(
                "the task is not waiting for input: send a message without a taskId to start another",
            ));
        }
        let decision = wire::decision(message)?;
        let mut state = entry
            .suspended
            .take()
            .ok_or_else(|| A2AError::internal("the task lost its suspended run"))?;
        match decision {
            Decision::Approve => state.approve_all(),
            Decision::Reject(reason) => state.reject_all(reason),
        };
        let mut user = message.clone();
        user.context_id = Some(entry.task.context_id.clone());
        entry.task.history.get_or_insert_with(Vec::new).push(user);
        entry.task.status = status(TaskState::Submitted, None);
        entry.changed.send_replace(TaskState::Submitted);
        let token = self.runs.child_token();
        entry.cancel = Some(token.clone());
        Ok((state, entry.task.clone(), token))
    }

    /// Forgets the oldest finished tasks beyond the limit (running and waiting ones are kept).
    fn forget_finished(&self, inner: &mut Inner) {
        while inner.tasks.len() >= self.max_tasks {
            let Some(position) = inner.order.iter().position(|id| {
                inner
                    .tasks
                    .get(id)
                    .is_none_or(|entry| entry.task.status.state.is_terminal())
            }) else {
                break;
            };
            if let Some(id) = inner.order.remove(position) {
                inner.tasks.remove(&id);
            }
        }
    }

    /// Sets a task's status (and answer), telling whoever waits on it; returns the task.
    fn update(&self, id: &str, change: impl FnOnce(&mut Entry)) -> Option<Task> {
        let mut inner = self.lock();
        let entry = inner.tasks.get_mut(id)?;
        change(entry);
        let state = entry.task.status.state.clone();
        entry.changed.send_replace(state);
        Some(entry.task.clone())
    }

    /// Runs a task's agent run to its stop, recording it and sending its updates.
    async fn drive(
        &self,
        id: String,
        state: RunState,
        token: CancellationToken,
        updates: mpsc::Sender<StreamResponse>,
    ) -> Option<Task> {
        // A client that stopped listening, or reads too slowly to keep up, does not hold the run up:
        // its stream is ended (the task can still be read).
        let updates = Mutex::new(Some(updates));
        let send = |update: StreamResponse| {
            let mut updates = updates.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(sender) = updates.as_ref()
                && sender.try_send(update).is_err()
            {
                *updates = None;
            }
            std::future::ready(())
        };
        let status_update = |task: &Task| {
            StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id: task.id.clone(),
                context_id: task.context_id.clone(),
                status: task.status.clone(),
                metadata: None,
            })
        };
        let task = self.update(&id, |entry| entry.task.status = status(TaskState::Working, None))?;
        send(StreamResponse::Task(task.clone())).await;
        send(status_update(&task)).await;
        let context_id = task.context_id.clone();
        let mut events = self.agent.stream_with(state, RunOptions::cancel_on(token));
        // The answer streams as chunks of one artifact; one chunk is held back so that the last can
        // say it is the last.
        let mut answer = String::new();
        let mut held: Option<String> = None;
        let chunk = |text: String, append: bool, last: bool| {
            StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: id.clone(),
                context_id: context_id.clone(),
                artifact: Artifact {
                    artifact_id: ANSWER.into(),
                    name: Some(ANSWER.into()),
                    description: None,
                    parts: vec![Part::text(text)],
                    metadata: None,
                    extensions: None,
                },
                append: Some(append),
                last_chunk: Some(last),
                metadata: None,
            })
        };
        let mut chunks_sent = 0usize;
        let mut ended = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(AgentEvent::TextDelta { text }) => {
                    answer.push_str(&text);
                    if let Some(previous) = held.replace(text) {
                        send(chunk(previous, chunks_sent > 0, false)).await;
                        chunks_sent += 1;
                    }
                }
                Ok(AgentEvent::ToolCallStarted { call }) => {
                    // The answer so far was the model's preamble to a call: it is not the answer, and
                    // the next chunk replaces what was sent of it.
                    answer.clear();
                    held = None;
                    chunks_sent = 0;
                    let note = format!("Calling the tool `{}`.", call.name);
                    if let Some(task) = self.update(&id, |entry| {
                        entry.task.status = status(
                            TaskState::Working,
                            Some(agent_message(&entry.task, vec![Part::text(note)])),
                        );
                    }) {
                        send(status_update(&task)).await;
                    }
                }
                Ok(AgentEvent::Finished { output }) => {
                    ended = Some(Ok(output));
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    ended = Some(Err(error));
                    break;
                }
            }
        }
        let task = match ended {
            Some(Ok(output)) => {
                let last = held.take().unwrap_or_else(|| {
                    // Nothing streamed (the model answered at once, or only after a tool's preamble).
                    answer = output.answer.clone();
                    output.answer.clone()
                });
                if chunks_sent > 0 || !last.is_empty() {
                    send(chunk(last, chunks_sent > 0, true)).await;
                }
                let answer_text = output.answer.clone();
                let transcript = output.messages.clone();
                self.remember(&context_id, transcript);
                self.update(&id, |entry| {
                    entry.cancel = None;
                    if entry.task.status.state == TaskState::Canceled {
                        return;
                    }
                    entry.task.artifacts = Some(vec![Artifact {
                        artifact_id: ANSWER.into(),
                        name: Some(ANSWER.into()),
                        description: None,
                        parts: vec![Part::text(answer_text.clone())],
                        metadata: None,
                        extensions: None,
                    }]);
                    let reply = agent_message(&entry.task, vec![Part::text(answer_text)]);
                    entry.task.history.get_or_insert_with(Vec::new).push(reply);
                    entry.task.status = status(TaskState::Completed, None);
                })
            }
            Some(Err(run_error)) => {
                let kai_core::RunError { error, state } = run_error;
                self.update(&id, |entry| {
                    entry.cancel = None;
                    if entry.task.status.state == TaskState::Canceled {
                        return;
                    }
                    match &error {
                        kai_core::Error::ApprovalRequired { .. } => {
                            let waiting: Vec<serde_json::Value> = state
                                .pending_approvals()
                                .map(|approval| {
                                    serde_json::json!({
                                        "callId": approval.call.id,
                                        "tool": approval.call.name,
                                        // The arguments as JSON, as the model wrote them (or as text when
                                        // they are not JSON).
                                        "arguments": serde_json::from_str::<serde_json::Value>(&approval.call.arguments)
                                            .unwrap_or_else(|_| serde_json::Value::String(approval.call.arguments.clone())),
                                        "reason": approval.reason,
                                    })
                                })
                                .collect();
                            let text = format!(
                                "Approval needed for {} tool call(s); answer \"approve\" or say why not.",
                                waiting.len()
                            );
                            let parts = vec![Part::text(text), Part::data(serde_json::json!({ "approvals": waiting }))];
                            entry.task.status =
                                status(TaskState::InputRequired, Some(agent_message(&entry.task, parts)));
                            entry.suspended = Some(*state);
                        }
                        kai_core::Error::Cancelled => entry.task.status = status(TaskState::Canceled, None),
                        other => {
                            // The kind only: the error's text may hold a provider's answer or an
                            // internal address.
                            tracing::debug!(task = %entry.task.id, error = %other, "an A2A task's run failed");
                            let text = format!("The run failed ({}).", other.kind());
                            entry.task.status =
                                status(TaskState::Failed, Some(agent_message(&entry.task, vec![Part::text(text)])));
                        }
                    }
                })
            }
            // The run's stream ended without its end: treat as a failure.
            None => self.update(&id, |entry| {
                entry.cancel = None;
                entry.task.status = status(TaskState::Failed, None);
            }),
        };
        if let Some(task) = &task {
            send(status_update(task)).await;
        }
        task
    }

    /// Keeps a conversation's transcript for its next task, forgetting the oldest conversation
    /// beyond the limit.
    fn remember(&self, context_id: &str, transcript: Vec<kai_core::Message>) {
        let size = serde_json::to_vec(&transcript).map_or(usize::MAX, |json| json.len());
        let transcript = if size > MAX_TRANSCRIPT_BYTES {
            Vec::new()
        } else {
            transcript
        };
        let mut inner = self.lock();
        if inner.contexts.insert(context_id.to_owned(), transcript).is_none() {
            inner.context_order.push_back(context_id.to_owned());
            while inner.contexts.len() > self.max_contexts {
                let Some(oldest) = inner.context_order.pop_front() else {
                    break;
                };
                inner.contexts.remove(&oldest);
            }
        }
    }

    /// Cancels a task: a running one's run is cancelled and this waits for it to stop; one waiting
    /// for input ends at once. A finished task is not cancelable.
    pub(crate) async fn cancel(&self, id: &str) -> Result<Task, A2AError> {
        let mut changed = {
            let mut inner = self.lock();
            let entry = inner.tasks.get_mut(id).ok_or_else(|| A2AError::task_not_found(id))?;
            if entry.task.status.state.is_terminal() {
                return Err(A2AError::task_not_cancelable(id));
            }
            if entry.task.status.state == TaskState::InputRequired {
                entry.suspended = None;
                entry.task.status = status(TaskState::Canceled, None);
                entry.changed.send_replace(TaskState::Canceled);
                return Ok(entry.task.clone());
            }
            if let Some(token) = &entry.cancel {
                token.cancel();
            }
            entry.changed.subscribe()
        };
        // The run stops at its next await; the driver then records how it ended.
        let _ = tokio::time::timeout(CANCEL_WAIT, changed.wait_for(interrupted)).await;
        let mut inner = self.lock();
        let entry = inner.tasks.get_mut(id).ok_or_else(|| A2AError::task_not_found(id))?;
        match entry.task.status.state {
            TaskState::Canceled => Ok(entry.task.clone()),
            // It ended some other way before the cancel reached it.
            ref state if state.is_terminal() => Err(A2AError::task_not_cancelable(id)),
            // It stopped to wait for input as the cancel came, or has not stopped yet: cancelled
            // now, whatever its run does next.
            _ => {
                entry.suspended = None;
                entry.task.status = status(TaskState::Canceled, None);
                entry.changed.send_replace(TaskState::Canceled);
                Ok(entry.task.clone())
            }
        }
    }
}

/// A new conversation id: a version-4 UUID (122 random bits).
fn new_context_id() -> Result<String, A2AError> {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut bytes)
        .map_err(|_| A2AError::internal("no randomness for an id"))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}
