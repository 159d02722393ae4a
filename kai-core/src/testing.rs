//! Deterministic test doubles for agents (feature `testing`): [`ScriptedModel`] for chat and
//! [`HashEmbedder`] for embeddings.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;

use crate::error::Error;
use crate::marker::boxed_stream;
use crate::message::{ContentPart, Message, Role, StopReason, ToolCall, Usage};
use crate::model::{ChatModel, ChatStream, EmbeddingModel, Embeddings, ModelCapabilities, collect_stream};
use crate::request::{ChatRequest, ChatResponse};
use crate::stream::ChatDelta;
use crate::time::sleep;

/// A chat model that replays a script, for testing agents without a network or a real model.
///
/// Each call to [`complete`](ChatModel::complete) or [`stream`](ChatModel::stream) takes the next turn
/// of the script: a response (text and/or tool calls), a sequence of streamed deltas, or an error,
/// optionally after a delay. Every request is recorded. Clones share the script and the recording, so
/// a test can keep one clone and hand another to an agent.
///
/// ```
/// use kai_core::testing::ScriptedModel;
/// use kai_core::{ChatModel, ChatRequest, Message};
///
/// # futures::executor::block_on(async {
/// let model = ScriptedModel::new().text("Hello!");
/// let answer = model.complete(ChatRequest::new(vec![Message::user("Hi")])).await.unwrap();
/// assert_eq!(answer.text(), "Hello!");
/// assert_eq!(model.requests()[0].messages[0].text(), "Hi");
/// # });
/// ```
#[derive(Clone)]
pub struct ScriptedModel {
    name: String,
    capabilities: ModelCapabilities,
    repeat: bool,
    record: bool,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<ChatRequest>>,
}

#[derive(Default)]
struct Script {
    turns: VecDeque<Turn>,
    next: usize,
}

#[derive(Clone)]
struct Turn {
    delay: Option<Duration>,
    action: Action,
    /// Whether [`ScriptedModel::usage`] set the usage (otherwise it is estimated from the text).
    usage_set: bool,
}

#[derive(Clone)]
enum Action {
    Respond(ChatResponse),
    Stream { deltas: Vec<ChatDelta>, interval: Duration },
    Fail(Error),
}

impl std::fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedModel")
            .field("name", &self.name)
            .field("turns_left", &self.remaining())
            .finish()
    }
}

impl Default for ScriptedModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedModel {
    /// A model with an empty script; calling it fails until turns are added.
    pub fn new() -> Self {
        Self {
            name: "scripted".into(),
            capabilities: ModelCapabilities {
                tools: true,
                json_schema: false,
                json_schema_with_tools: false,
                streaming: true,
                images: true,
            },
            repeat: false,
            record: true,
            shared: Arc::default(),
        }
    }

    /// Sets the model's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether the model claims a JSON-schema response format (off by default, so structured output
    /// goes through a forced tool call).
    pub fn json_schema_support(mut self, supported: bool) -> Self {
        self.capabilities.json_schema = supported;
        self.capabilities.json_schema_with_tools = supported;
        self
    }

    /// Sets every capability the model claims at once.
    pub fn capabilities(mut self, capabilities: ModelCapabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Replays the script from the start whenever it runs out, instead of failing.
    pub fn repeat(mut self) -> Self {
        self.repeat = true;
        self
    }

    /// Whether to record requests (on by default; turn off for long benchmarks).
    pub fn record_requests(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Adds a turn answering with text.
    pub fn text(self, text: impl Into<String>) -> Self {
        let mut response = ChatResponse::new(Message::assistant(text));
        response.stop_reason = Some(StopReason::EndTurn);
        self.respond(response)
    }

    /// Adds a turn asking for one tool call.
    pub fn tool_call(self, name: impl Into<String>, arguments: serde_json::Value) -> Self {
        self.tool_calls([(name.into(), arguments)])
    }

    /// Adds a turn asking for several tool calls at once.
    pub fn tool_calls<N: Into<String>>(self, calls: impl IntoIterator<Item = (N, serde_json::Value)>) -> Self {
        let content = calls
            .into_iter()
            .map(|(name, arguments)| ContentPart::ToolCall(ToolCall::new(String::new(), name, &arguments)))
            .collect();
        self.raw_tool_calls(content)
    }

    /// Adds a turn asking for a tool call whose arguments are this exact text (for example invalid JSON).
    pub fn raw_tool_call(self, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        let call = ToolCall {
            id: String::new(),
            name: name.into(),
            arguments: arguments.into(),
            signature: None,
        };
        self.raw_tool_calls(vec![ContentPart::ToolCall(call)])
    }

    fn raw_tool_calls(self, content: Vec<ContentPart>) -> Self {
        let mut response = ChatResponse::new(Message::new(Role::Assistant, content));
        response.stop_reason = Some(StopReason::ToolCalls);
        self.respond(response)
    }

    /// Adds a turn with a complete response. Tool calls with an empty id get `call_<n>`.
    pub fn respond(self, response: ChatResponse) -> Self {
        self.push(Action::Respond(response))
    }

    /// Adds a turn that streams these deltas.
    pub fn stream(self, deltas: Vec<ChatDelta>) -> Self {
        self.stream_every(deltas, Duration::ZERO)
    }

    /// Adds a turn that streams these deltas, waiting `interval` before each one.
    pub fn stream_every(self, deltas: Vec<ChatDelta>, interval: Duration) -> Self {
        self.push(Action::Stream { deltas, interval })
    }

    /// Adds a turn that fails with this error.
    pub fn fail(self, error: Error) -> Self {
        self.push(Action::Fail(error))
    }

    /// Delays the last added turn.
    pub fn delayed(self, delay: Duration) -> Self {
        self.edit_last(|turn| turn.delay = Some(delay))
    }

    /// Sets the usage the last added response reports (for streamed turns, a usage delta is appended).
    ///
    /// Without it, a response reports an estimate: a token per four bytes of the request's messages
    /// and of the answer, rounded up.
    pub fn usage(self, usage: Usage) -> Self {
        self.edit_last(|turn| {
            turn.usage_set = true;
            match &mut turn.action {
                Action::Respond(response) => response.usage = usage,
                Action::Stream { deltas, .. } => deltas.push(ChatDelta::Usage(usage)),
                Action::Fail(_) => {}
            }
        })
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Turns not yet played.
    pub fn remaining(&self) -> usize {
        let script = self.shared.script.lock().unwrap_or_else(PoisonError::into_inner);
        script.turns.len().saturating_sub(script.next)
    }

    fn push(self, action: Action) -> Self {
        self.shared
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .turns
            .push_back(Turn {
                delay: None,
                action,
                usage_set: false,
            });
        self
    }

    fn edit_last(self, edit: impl FnOnce(&mut Turn)) -> Self {
        if let Some(turn) = self
            .shared
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .turns
            .back_mut()
        {
            edit(turn);
        }
        self
    }

    fn next_turn(&self, request: ChatRequest) -> Result<Turn, Error> {
        // Call ids follow the run, not the model: the n-th model call of a transcript names its calls
        // `call_<n>_<index>`, whichever runs the model served before.
        let step = 1 + request
            .messages
            .iter()
            .filter(|message| message.role == Role::Assistant)
            .count();
        let input_tokens = estimate_tokens(request.messages.iter().flat_map(|m| &m.content).map(part_len));
        if self.record {
            self.shared
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request);
        }
        let mut script = self.shared.script.lock().unwrap_or_else(PoisonError::into_inner);
        if script.next >= script.turns.len() && self.repeat {
            script.next = 0;
        }
        let Some(mut turn) = script.turns.get(script.next).cloned() else {
            return Err(Error::InvalidRequest {
                message: "ScriptedModel: the script has no turns left".into(),
            });
        };
        script.next += 1;
        let usage_set = turn.usage_set;
        match &mut turn.action {
            Action::Respond(response) => {
                for (index, part) in response.message.content.iter_mut().enumerate() {
                    if let ContentPart::ToolCall(tool_call) = part
                        && tool_call.id.is_empty()
                    {
                        tool_call.id = format!("call_{step}_{index}");
                    }
                }
                if !usage_set {
                    response.usage = Usage {
                        input_tokens,
                        output_tokens: estimate_tokens(response.message.content.iter().map(part_len)),
                        ..Usage::default()
                    };
                }
            }
            Action::Stream { deltas, .. } if !usage_set && !deltas.iter().any(|d| matches!(d, ChatDelta::Usage(_))) => {
                let output = deltas.iter().map(|delta| match delta {
                    ChatDelta::Text { text } => text.len(),
                    ChatDelta::ToolCallArguments { fragment, .. } => fragment.len(),
                    _ => 0,
                });
                let output_tokens = estimate_tokens(output);
                deltas.push(ChatDelta::Usage(Usage {
                    input_tokens,
                    output_tokens,
                    ..Usage::default()
                }));
            }
            Action::Stream { .. } | Action::Fail(_) => {}
        }
        Ok(turn)
    }
}

/// About four bytes a token, rounded up, from the lengths of the texts.
fn estimate_tokens(lengths: impl Iterator<Item = usize>) -> u64 {
    let bytes = lengths.fold(0usize, usize::saturating_add);
    (bytes as u64).div_ceil(4)
}

/// The bytes of text a part holds: its text, a call's arguments, a result's content.
fn part_len(part: &ContentPart) -> usize {
    match part {
        ContentPart::Text { text } => text.len(),
        ContentPart::ToolCall(call) => call.arguments.len(),
        ContentPart::ToolResult(result) => result.content.len(),
        _ => 0,
    }
}

#[crate::async_trait]
impl ChatModel for ScriptedModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &str {
        "kai.scripted"
    }

    fn capabilities(&self) -> ModelCapabilities {
        self.capabilities
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let turn = self.next_turn(request)?;
        if let Some(delay) = turn.delay {
            sleep(delay).await;
        }
        match turn.action {
            Action::Respond(response) => Ok(response),
            Action::Fail(error) => Err(error),
            Action::Stream { deltas, interval } => collect_stream(play(deltas, interval)).await,
        }
    }

    fn stream(self: Arc<Self>, request: ChatRequest) -> ChatStream<'static> {
        let turn = self.next_turn(request);
        let start = async move {
            let turn = match turn {
                Ok(turn) => turn,
                Err(error) => return boxed_stream(futures::stream::iter([Err(error)])),
            };
            if let Some(delay) = turn.delay {
                sleep(delay).await;
            }
            match turn.action {
                Action::Respond(response) => play(ChatDelta::replay(&response), Duration::ZERO),
                Action::Fail(error) => boxed_stream(futures::stream::iter([Err(error)])),
                Action::Stream { deltas, interval } => play(deltas, interval),
            }
        };
        boxed_stream(futures::stream::once(start).flatten())
    }
}

/// Plays deltas one by one, waiting `interval` before each.
fn play(deltas: Vec<ChatDelta>, interval: Duration) -> ChatStream<'static> {
    boxed_stream(futures::stream::iter(deltas).then(move |delta| async move {
        if !interval.is_zero() {
            sleep(interval).await;
        }
        Ok(delta)
    }))
}

/// A deterministic embedding model for tests: each word of three letters or more is hashed (FNV-1a)
/// into one of `dimensions` buckets, and the counts are normalised to unit length. Texts that share words
/// are close under cosine, with no network and no model file. Clones share their call counts.
///
/// ```
/// use kai_core::EmbeddingModel;
/// use kai_core::testing::HashEmbedder;
///
/// # futures::executor::block_on(async {
/// let embedder = HashEmbedder::new(64);
/// let texts = vec!["the cat sat".to_owned(), "a cat sat down".to_owned()];
/// let embeddings = embedder.embed(&texts).await.unwrap();
/// assert_eq!(embeddings.vectors[0].len(), 64);
/// assert_eq!(embedder.texts_embedded(), 2);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimensions: usize,
    max_batch_size: usize,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    texts: Arc<std::sync::atomic::AtomicUsize>,
}

impl HashEmbedder {
    /// An embedder of vectors with this many dimensions (at least 1).
    pub fn new(dimensions: usize) -> Self {
        Self {
            dimensions: dimensions.max(1),
            max_batch_size: 96,
            calls: Arc::default(),
            texts: Arc::default(),
        }
    }

    /// The largest batch one call takes (default 96).
    pub fn with_max_batch_size(mut self, size: usize) -> Self {
        self.max_batch_size = size.max(1);
        self
    }

    /// The vector of one text.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dimensions];
        let words = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| word.chars().count() > 2);
        for word in words {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in word.to_lowercase().bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            let bucket = usize::try_from(hash % self.dimensions as u64).unwrap_or(0);
            if let Some(count) = vector.get_mut(bucket) {
                *count += 1.0;
            }
        }
        // Never the zero vector, which has no direction.
        if let Some(last) = vector.last_mut() {
            *last += 0.01;
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|x| *x /= norm);
        vector
    }

    /// Calls of [`embed`](EmbeddingModel::embed) so far.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Texts embedded so far.
    pub fn texts_embedded(&self) -> usize {
        self.texts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[crate::async_trait]
impl EmbeddingModel for HashEmbedder {
    fn name(&self) -> &str {
        "kai.hash"
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, Error> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.texts.fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(Embeddings {
            vectors: texts.iter().map(|text| self.vector(text)).collect(),
            usage: Usage {
                input_tokens: estimate_tokens(texts.iter().map(String::len)),
                ..Usage::default()
            },
        })
    }
}
