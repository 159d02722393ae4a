//! The A2A client: a remote A2A agent reached over JSON-RPC, and as a kAI tool.

use std::sync::Arc;
use std::time::Duration;

use a2a_lf::{AgentCard, Message, Part, PartContent, Role, StreamResponse, Task, TaskState};
use futures::StreamExt as _;
use kai_core::{Tool, ToolContext, ToolDefinition, ToolError, async_trait};
use serde_json::{Value, json};

use super::wire::CARD_PATH;
use crate::error::Error;

/// The largest Agent Card read, in bytes.
const MAX_CARD_BYTES: usize = 256 * 1024;

/// The largest answer (or one streamed event) read, in bytes.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// How long to wait for a remote agent's card or a non-streaming answer, and at most between two
/// reads of a stream.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The longest a tool call lasts, however the remote agent behaves.
const TOOL_DEADLINE: Duration = Duration::from_secs(600);

/// The most answer text a tool call takes from the remote agent, in bytes.
const MAX_RESULT_BYTES: usize = 1 << 20;

/// The most events a tool call reads.
const MAX_EVENTS: usize = 100_000;

/// The longest text of the remote agent's a tool error or description carries, in characters.
const MAX_REMOTE_TEXT: usize = 1_024;

/// `text` without control characters, cut at `limit` characters.
fn tame(text: &str, limit: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(limit)
        .collect()
}

/// A remote A2A v1.0 agent, reached over its JSON-RPC interface.
#[derive(Clone)]
pub struct A2aClient {
    http: reqwest::Client,
    card: Arc<AgentCard>,
    endpoint: String,
}

impl std::fmt::Debug for A2aClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aClient")
            .field("agent", &self.card.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// A transport error; the text (which may quote the peer) is cut to a bounded length.
fn transport(what: &str, error: impl std::fmt::Display) -> Error {
    Error::A2aTransport {
        message: tame(&format!("{what}: {error}"), MAX_REMOTE_TEXT),
    }
}

/// A reqwest error without its URL (which may carry a token).
fn http_error(what: &str, error: reqwest::Error) -> Error {
    transport(what, error.without_url())
}

/// Reads a response's body, at most `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Error> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(transport("the answer", format_args!("over {limit} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| http_error("reading the answer", e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(transport("the answer", format_args!("over {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The result of a JSON-RPC response, or the peer's error.
fn result_of(body: &[u8]) -> Result<Value, Error> {
    let mut response: Value = serde_json::from_slice(body).map_err(|e| transport("the answer is not JSON", e))?;
    if let Some(error) = response.get("error") {
        return Err(Error::A2aRefused {
            code: error.get("code").and_then(Value::as_i64).unwrap_or_default(),
            message: tame(
                error.get("message").and_then(Value::as_str).unwrap_or_default(),
                MAX_REMOTE_TEXT,
            ),
        });
    }
    response
        .get_mut("result")
        .map(Value::take)
        .ok_or_else(|| transport("the answer", "no result and no error"))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| transport(what, e))
}

impl A2aClient {
    /// Reads the Agent Card at `base_url` (`/.well-known/agent-card.json` under it) and picks its
    /// JSON-RPC interface of protocol version 1.0, which must be on the same origin (scheme, host,
    /// port) as `base_url`: a card cannot send the calls elsewhere. Redirects are not followed.
    pub async fn connect(base_url: &str) -> Result<Self, Error> {
        let base = reqwest::Url::parse(base_url).map_err(|e| transport("the agent's URL", e))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(transport("the agent's URL", "not http or https"));
        }
        let tls = kai_core::tls::client_config("A2A").map_err(|e| transport("TLS", e))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| http_error("the HTTP client", e))?;
        let card_url = format!("{}{CARD_PATH}", base_url.trim_end_matches('/'));
        let response = http
            .get(&card_url)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| http_error("fetching the Agent Card", e))?;
        if !response.status().is_success() {
            return Err(transport("fetching the Agent Card", response.status()));
        }
        let card: AgentCard = serde_json::from_slice(&read_capped(response, MAX_CARD_BYTES).await?)
            .map_err(|e| transport("the Agent Card", e))?;
        let endpoint = card
            .supported_interfaces
            .iter()
            .find(|interface| {
                interface
                    .protocol_binding
                    .eq_ignore_ascii_case(a2a_lf::TRANSPORT_PROTOCOL_JSONRPC)
                    && interface.protocol_version == a2a_lf::VERSION
                    && reqwest::Url::parse(&interface.url).is_ok_and(|url| url.origin() == base.origin())
            })
            .map(|interface| interface.url.clone())
            .ok_or_else(|| {
                transport(
                    "the Agent Card",
                    "it has no JSON-RPC interface of A2A 1.0 on the agent's own origin",
                )
            })?;
        Ok(Self {
            http,
            card: Arc::new(card),
            endpoint,
        })
    }

    /// The remote agent's card.
    pub fn card(&self) -> &AgentCard {
        &self.card
    }

    fn request(&self, method: &str, params: Value) -> reqwest::RequestBuilder {
        let body = json!({"jsonrpc": "2.0", "id": a2a_lf::new_message_id(), "method": method, "params": params});
        self.http
            .post(&self.endpoint)
            .header(a2a_lf::SVC_PARAM_VERSION, a2a_lf::VERSION)
            .json(&body)
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, Error> {
        let response = self
            .request(method, params)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| http_error(method, e))?;
        result_of(&read_capped(response, MAX_ANSWER_BYTES).await?)
    }

    /// Sends `message` and waits for the task (or message) it ends with.
    pub async fn send(&self, message: Message) -> Result<StreamResponse, Error> {
        let result = self
            .call(a2a_lf::methods::SEND_MESSAGE, json!({"message": message}))
            .await?;
        parse("the SendMessage answer", result)
    }

    /// Sends `message` and streams the task's updates (Server-Sent Events) until the peer ends them.
    pub async fn stream(
        &self,
        message: Message,
    ) -> Result<impl futures::Stream<Item = Result<StreamResponse, Error>> + Send + use<>, Error> {
        let response = self
            .request(a2a_lf::methods::SEND_STREAMING_MESSAGE, json!({"message": message}))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| http_error("SendStreamingMessage", e))?;
        let is_events = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if !is_events {
            // An error answered as plain JSON-RPC.
            let body = read_capped(response, MAX_ANSWER_BYTES).await?;
            result_of(&body)?;
            return Err(transport("SendStreamingMessage", "the answer is not an event stream"));
        }
        let events = super::wire::sse_events(response.bytes_stream(), MAX_ANSWER_BYTES);
        Ok(events.map(|event| {
            let data = event?;
            parse::<StreamResponse>("a streamed event", result_of(&data)?)
        }))
    }

    /// The task with this id.
    pub async fn get_task(&self, id: &str) -> Result<Task, Error> {
        parse(
            "the task",
            self.call(a2a_lf::methods::GET_TASK, json!({"id": id})).await?,
        )
    }

    /// Cancels the task with this id.
    pub async fn cancel_task(&self, id: &str) -> Result<Task, Error> {
        parse(
            "the task",
            self.call(a2a_lf::methods::CANCEL_TASK, json!({"id": id})).await?,
        )
    }

    /// The remote agent as a tool named `name` that takes a `message` and answers with the remote
    /// task's answer. A cancelled call cancels the remote task.
    pub fn tool(&self, name: impl Into<String>) -> A2aTool {
        // The card is the remote agent's own word: cut short, and said to be its own.
        let description = format!(
            "Asks the remote agent {:?}, which describes itself as: {:?}. Give it the whole request as `message`.",
            tame(&self.card.name, 128),
            tame(&self.card.description, MAX_REMOTE_TEXT)
        );
        A2aTool {
            client: self.clone(),
            definition: ToolDefinition {
                name: name.into(),
                description,
                parameters: json!({
                    "type": "object",
                    "properties": {"message": {"type": "string", "description": "What to ask the remote agent."}},
                    "required": ["message"],
                    "additionalProperties": false
                }),
            },
        }
    }
}

/// A remote A2A agent as a kAI tool (see [`A2aClient::tool`]).
#[derive(Debug, Clone)]
pub struct A2aTool {
    client: A2aClient,
    definition: ToolDefinition,
}

/// The text of a task's artifacts, or else of its last agent message.
fn answer_of(task: &Task) -> String {
    let texts = |parts: &[Part]| -> Vec<String> {
        parts
            .iter()
            .filter_map(|part| match &part.content {
                PartContent::Text(text) => Some(text.clone()),
                PartContent::Data(value) => Some(value.to_string()),
                _ => None,
            })
            .collect()
    };
    let from_artifacts: Vec<String> = task
        .artifacts
        .iter()
        .flatten()
        .flat_map(|artifact| texts(&artifact.parts))
        .collect();
    if !from_artifacts.is_empty() {
        return from_artifacts.join("");
    }
    task.status
        .message
        .as_ref()
        .map(|message| texts(&message.parts).join("\n"))
        .unwrap_or_default()
}

#[async_trait]
impl Tool for A2aTool {
    fn definition(&self) -> ToolDefinition {
        self.definition.clone()
    }

    async fn call(&self, arguments: Value, context: ToolContext) -> Result<Value, ToolError> {
        let text = arguments
            .get("message")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::InvalidArguments {
                message: "`message` must be a string".into(),
            })?
            .to_owned();
        let message = Message::new(Role::User, vec![Part::text(text)]);
        let run = async {
            tokio::select! {
                answered = self.ask(message) => answered,
                () = context.cancel.cancelled() => Err(ToolError::Cancelled),
            }
        };
        tokio::time::timeout(TOOL_DEADLINE, run)
            .await
            .unwrap_or(Err(ToolError::Timeout { after: TOOL_DEADLINE }))
    }
}

/// Cancels a remote task when dropped armed (the call was cancelled, timed out, or dropped).
struct RemoteCancelOnDrop {
    client: A2aClient,
    task: Option<String>,
}

impl Drop for RemoteCancelOnDrop {
    fn drop(&mut self) {
        if let (Some(task), Ok(runtime)) = (self.task.take(), tokio::runtime::Handle::try_current()) {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), client.cancel_task(&task)).await;
            });
        }
    }
}

impl A2aTool {
    /// Asks the remote agent: streaming when its card says it streams, else one `SendMessage`.
    async fn ask(&self, message: Message) -> Result<Value, ToolError> {
        let failed = |error: Error| ToolError::Failed {
            message: format!("the remote agent: {error}"),
        };
        if self.client.card.capabilities.streaming != Some(true) {
            return match self.client.send(message).await.map_err(failed)? {
                StreamResponse::Message(message) => Ok(json!(tame(&message_text(&message), MAX_RESULT_BYTES))),
                StreamResponse::Task(task) => outcome(&task),
                _ => Err(ToolError::Failed {
                    message: "the remote agent answered with neither a task nor a message".into(),
                }),
            };
        }
        let events = self.client.stream(message).await.map_err(failed)?;
        let mut events = std::pin::pin!(events);
        let mut guard = RemoteCancelOnDrop {
            client: self.client.clone(),
            task: None,
        };
        let mut task: Option<Task> = None;
        let mut answer_bytes = 0usize;
        let mut count = 0usize;
        while let Some(event) = events.next().await {
            count += 1;
            if count > MAX_EVENTS {
                return Err(ToolError::Failed {
                    message: format!("the remote agent sent over {MAX_EVENTS} events"),
                });
            }
            match event.map_err(failed)? {
                StreamResponse::Message(message) => {
                    guard.task = None;
                    return Ok(json!(tame(&message_text(&message), MAX_RESULT_BYTES)));
                }
                StreamResponse::Task(update) => {
                    guard.task = Some(update.id.clone());
                    answer_bytes = artifact_bytes(&update);
                    task = Some(update);
                }
                StreamResponse::StatusUpdate(update) => {
                    if let Some(task) = task.as_mut().filter(|task| task.id == update.task_id) {
                        task.status = update.status;
                    }
                }
                StreamResponse::ArtifactUpdate(update) => {
                    let Some(task) = task.as_mut().filter(|task| task.id == update.task_id) else {
                        continue;
                    };
                    answer_bytes += artifact_bytes_of(&update.artifact.parts);
                    if answer_bytes > MAX_RESULT_BYTES {
                        return Err(ToolError::Failed {
                            message: format!("the remote agent's answer is over {MAX_RESULT_BYTES} bytes"),
                        });
                    }
                    let artifacts = task.artifacts.get_or_insert_with(Vec::new);
                    match artifacts
                        .iter_mut()
                        .find(|artifact| artifact.artifact_id == update.artifact.artifact_id)
                    {
                        Some(artifact) if update.append == Some(true) => artifact.parts.extend(update.artifact.parts),
                        Some(artifact) => *artifact = update.artifact,
                        None => artifacts.push(update.artifact),
                    }
                }
            }
            // A task that finished or stopped for input is the answer, whether or not the peer
            // closes the stream.
            if let Some(task) = &task
                && (task.status.state.is_terminal()
                    || matches!(task.status.state, TaskState::InputRequired | TaskState::AuthRequired))
            {
                break;
            }
        }
        let task = task.ok_or_else(|| ToolError::Failed {
            message: "the remote agent sent no task".into(),
        })?;
        if task.status.state.is_terminal() || task.status.state == TaskState::InputRequired {
            guard.task = None;
        }
        outcome(&task)
    }
}

/// The bytes of text in `parts`.
fn artifact_bytes_of(parts: &[Part]) -> usize {
    parts
        .iter()
        .map(|part| match &part.content {
            PartContent::Text(text) => text.len(),
            PartContent::Data(value) => value.to_string().len(),
            _ => 0,
        })
        .sum()
}

/// The bytes of text in a task's artifacts.
fn artifact_bytes(task: &Task) -> usize {
    task.artifacts
        .iter()
        .flatten()
        .map(|artifact| artifact_bytes_of(&artifact.parts))
        .sum()
}

/// The text of a message's text and data parts, a line each.
fn message_text(message: &Message) -> String {
    message
        .parts
        .iter()
        .filter_map(|part| match &part.content {
            PartContent::Text(text) => Some(text.clone()),
            PartContent::Data(value) => Some(value.to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a finished (or stopped) remote task means for the tool call.
fn outcome(task: &Task) -> Result<Value, ToolError> {
    let answer = tame(&answer_of(task), MAX_RESULT_BYTES);
    match &task.status.state {
        TaskState::Completed => Ok(json!(answer)),
        TaskState::InputRequired | TaskState::AuthRequired => Err(ToolError::Failed {
            message: format!("the remote agent needs more input: {}", tame(&answer, MAX_REMOTE_TEXT)),
        }),
        state => Err(ToolError::Failed {
            message: format!("the remote task ended {state:?}: {}", tame(&answer, MAX_REMOTE_TEXT)),
        }),
    }
}
