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

/// How long to wait for a remote agent's card or a non-streaming answer.
const TIMEOUT: Duration = Duration::from_secs(120);

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

fn transport(what: &str, error: impl std::fmt::Display) -> Error {
    Error::A2aTransport {
        message: format!("{what}: {error}"),
    }
}

/// Reads a response's body, at most `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Error> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(transport("the answer", format_args!("over {limit} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport("reading the answer", e))? {
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
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(1024)
                .collect(),
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
    /// JSON-RPC interface of protocol version 1.0.
    pub async fn connect(base_url: &str) -> Result<Self, Error> {
        let tls = kai_core::tls::client_config("A2A").map_err(|e| transport("TLS", e))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| transport("the HTTP client", e))?;
        let card_url = format!("{}{CARD_PATH}", base_url.trim_end_matches('/'));
        let response = http
            .get(&card_url)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| transport("fetching the Agent Card", e))?;
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
                    && (interface.url.starts_with("http://") || interface.url.starts_with("https://"))
            })
            .map(|interface| interface.url.clone())
            .ok_or_else(|| transport("the Agent Card", "it has no JSON-RPC interface of A2A 1.0"))?;
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
            .map_err(|e| transport(method, e))?;
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
            .map_err(|e| transport("SendStreamingMessage", e))?;
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
        let description = format!(
            "Asks the remote agent {:?}: {} Give it the whole request as `message`.",
            self.card.name, self.card.description
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
        let failed = |error: Error| ToolError::Failed {
            message: format!("the remote agent: {error}"),
        };
        let events = self
            .client
            .stream(Message::new(Role::User, vec![Part::text(text)]))
            .await
            .map_err(failed)?;
        let mut events = std::pin::pin!(events);
        let mut task: Option<Task> = None;
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = context.cancel.cancelled() => {
                    if let Some(task) = &task {
                        // Best effort: the call is cancelled whatever the peer answers.
                        let _ = self.client.cancel_task(&task.id).await;
                    }
                    return Err(ToolError::Cancelled);
                }
            };
            match event {
                None => break,
                Some(Err(error)) => return Err(failed(error)),
                Some(Ok(StreamResponse::Message(message))) => {
                    return Ok(json!(message.text().unwrap_or_default()));
                }
                Some(Ok(StreamResponse::Task(update))) => task = Some(update),
                Some(Ok(StreamResponse::StatusUpdate(update))) => {
                    if let Some(task) = &mut task {
                        task.status = update.status;
                    }
                }
                Some(Ok(StreamResponse::ArtifactUpdate(update))) => {
                    if let Some(task) = &mut task {
                        let artifacts = task.artifacts.get_or_insert_with(Vec::new);
                        match artifacts
                            .iter_mut()
                            .find(|artifact| artifact.artifact_id == update.artifact.artifact_id)
                        {
                            Some(artifact) if update.append == Some(true) => {
                                artifact.parts.extend(update.artifact.parts);
                            }
                            Some(artifact) => *artifact = update.artifact,
                            None => artifacts.push(update.artifact),
                        }
                    }
                }
            }
        }
        let task = task.ok_or_else(|| ToolError::Failed {
            message: "the remote agent sent no task".into(),
        })?;
        match &task.status.state {
            TaskState::Completed => Ok(json!(answer_of(&task))),
            TaskState::InputRequired | TaskState::AuthRequired => Err(ToolError::Failed {
                message: format!("the remote agent needs more input: {}", answer_of(&task)),
            }),
            state => Err(ToolError::Failed {
                message: format!("the remote task ended {state:?}: {}", answer_of(&task)),
            }),
        }
    }
}
