//! The model traits: [`ChatModel`] and [`EmbeddingModel`].

use std::sync::Arc;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::marker::{BoxStream, MaybeSend, MaybeSync, boxed_stream};
use crate::message::{ContentPart, Usage};
use crate::request::{ChatRequest, ChatResponse};
use crate::stream::{ChatDelta, ResponseAccumulator};

/// A stream of deltas from a chat model. Errors arrive as items; the stream ends after the last delta.
pub type ChatStream<'a> = BoxStream<'a, Result<ChatDelta, Error>>;

/// What a chat model can do, so that callers pick the best way to ask it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCapabilities {
    /// It accepts tool definitions and answers with tool calls.
    pub tools: bool,
    /// It can be constrained to a JSON Schema ([`ResponseFormat::JsonSchema`](crate::ResponseFormat)).
    pub json_schema: bool,
    /// It takes a JSON Schema constraint and tool definitions in one request (some providers refuse the
    /// pair; structured output from an agent with tools then goes through a forced tool call).
    #[serde(default)]
    pub json_schema_with_tools: bool,
    /// It streams natively (otherwise [`ChatModel::stream`] replays the complete answer).
    pub streaming: bool,
    /// It accepts images.
    pub images: bool,
}

impl ModelCapabilities {
    /// Tools, JSON Schema output (beside tools too), native streaming and images.
    pub const ALL: Self = Self {
        tools: true,
        json_schema: true,
        json_schema_with_tools: true,
        streaming: true,
        images: true,
    };
}

/// A chat model: one completion, or a stream of deltas.
///
/// Providers implement this, with [`async_trait`](crate::async_trait); agents use it through
/// `Arc<dyn ChatModel>`. Implementations must not panic on anything the provider sends: bad data becomes
/// an [`Error`].
///
/// ```
/// use kai_core::{ChatModel, ChatRequest, ChatResponse, Error, Message, async_trait};
///
/// /// Answers every request with the last user message, reversed.
/// struct Mirror;
///
/// #[async_trait]
/// impl ChatModel for Mirror {
///     fn name(&self) -> &str {
///         "mirror"
///     }
///
///     async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
///         let last = request.messages.last().map(Message::text).unwrap_or_default();
///         Ok(ChatResponse::new(Message::assistant(last.chars().rev().collect::<String>())))
///     }
/// }
/// # futures::executor::block_on(async {
/// let answer = Mirror.complete(ChatRequest::new(vec![Message::user("abc")])).await.unwrap();
/// assert_eq!(answer.text(), "cba");
/// # });
/// ```
#[crate::async_trait]
pub trait ChatModel: MaybeSend + MaybeSync + 'static {
    /// The model's name, as the provider knows it (for example `gpt-4o-mini`).
    fn name(&self) -> &str;

    /// The provider's name, following the OpenTelemetry `gen_ai.provider.name` values where one exists
    /// (`openai`, `anthropic`, `gcp.gemini`, `cohere`, …).
    fn provider(&self) -> &str {
        "unknown"
    }

    /// What the model can do. The default claims tool support and nothing else.
    fn capabilities(&self) -> ModelCapabilities {
        ModelCapabilities {
            tools: true,
            ..ModelCapabilities::default()
        }
    }

    /// Asks for one complete answer.
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error>;

    /// Asks for an answer as a stream of deltas.
    ///
    /// The stream owns the model through the `Arc`, so it is `'static`: it can be held across threads
    /// and await points, or handed to another language. Call it on a shared model with
    /// `Arc::clone(&model).stream(request)`.
    ///
    /// The default calls [`complete`](ChatModel::complete) and replays the answer as deltas, so every
    /// model can be streamed; providers with native streaming override it.
    fn stream(self: Arc<Self>, request: ChatRequest) -> ChatStream<'static> {
        replay_stream(async move { self.complete(request).await })
    }
}

/// A stream that waits for one complete answer and replays it as deltas (an error becomes the stream's
/// only item): how a model without native streaming, or a request a server cannot stream, is streamed.
pub fn replay_stream<'a, F>(answer: F) -> ChatStream<'a>
where
    F: std::future::Future<Output = Result<ChatResponse, Error>> + MaybeSend + 'a,
{
    boxed_stream(futures::stream::once(answer).flat_map(|result| match result {
        Ok(response) => futures::stream::iter(ChatDelta::replay(&response).into_iter().map(Ok)).left_stream(),
        Err(error) => futures::stream::iter([Err(error)]).right_stream(),
    }))
}

/// Drains a stream of deltas into a complete response.
///
/// ```
/// use kai_core::{ChatDelta, collect_stream};
///
/// # futures::executor::block_on(async {
/// let deltas = futures::stream::iter([Ok(ChatDelta::text("Hel")), Ok(ChatDelta::text("lo"))]);
/// let response = collect_stream(deltas).await.unwrap();
/// assert_eq!(response.text(), "Hello");
/// # });
/// ```
pub async fn collect_stream<S>(stream: S) -> Result<ChatResponse, Error>
where
    S: futures::Stream<Item = Result<ChatDelta, Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut accumulator = ResponseAccumulator::new();
    while let Some(delta) = stream.next().await {
        accumulator.push(delta?);
    }
    Ok(accumulator.finish())
}

#[crate::async_trait]
impl<T: ChatModel + ?Sized> ChatModel for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn provider(&self) -> &str {
        (**self).provider()
    }
    fn capabilities(&self) -> ModelCapabilities {
        (**self).capabilities()
    }
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        (**self).complete(request).await
    }
    fn stream(self: Arc<Self>, request: ChatRequest) -> ChatStream<'static> {
        T::stream(Arc::clone(&*self), request)
    }
}

/// Vectors for a batch of texts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    /// One vector per input text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens used, when the provider reports them.
    #[serde(default)]
    pub usage: Usage,
}

/// A text embedding model.
#[crate::async_trait]
pub trait EmbeddingModel: MaybeSend + MaybeSync {
    /// The model's name, as the provider knows it.
    fn name(&self) -> &str;

    /// The length of every vector it returns.
    fn dimensions(&self) -> usize;

    /// The largest batch one call accepts; callers split larger inputs.
    fn max_batch_size(&self) -> usize {
        96
    }

    /// Embeds a batch of texts, returning one vector per text in order.
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, Error>;
}

#[crate::async_trait]
impl<T: EmbeddingModel + ?Sized> EmbeddingModel for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn dimensions(&self) -> usize {
        (**self).dimensions()
    }
    fn max_batch_size(&self) -> usize {
        (**self).max_batch_size()
    }
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, Error> {
        (**self).embed(texts).await
    }
}

#[crate::async_trait]
impl<T: EmbeddingModel + ?Sized> EmbeddingModel for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn dimensions(&self) -> usize {
        (**self).dimensions()
    }
    fn max_batch_size(&self) -> usize {
        (**self).max_batch_size()
    }
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, Error> {
        (**self).embed(texts).await
    }
}

/// Embeds any number of texts, splitting them into batches of the model's `max_batch_size`, and checks
/// that the model returned one vector of the right length per text.
pub async fn embed_all<M: EmbeddingModel + ?Sized>(model: &M, texts: &[String]) -> Result<Embeddings, Error> {
    let mut all = Embeddings::default();
    let batch = model.max_batch_size().max(1);
    for chunk in texts.chunks(batch) {
        let part = model.embed(chunk).await?;
        check_embeddings(&part.vectors, chunk.len(), model.dimensions())?;
        all.vectors.extend(part.vectors);
        all.usage += part.usage;
    }
    Ok(all)
}

/// Checks what an embedding API returned: one vector per text, each of `dimensions` finite numbers.
/// Anything else is an [`Error::MalformedResponse`], so a bad vector never reaches an index.
pub fn check_embeddings(vectors: &[Vec<f32>], texts: usize, dimensions: usize) -> Result<(), Error> {
    if vectors.len() != texts {
        return Err(Error::malformed(
            format!("asked for {texts} embeddings, got {}", vectors.len()),
            "",
        ));
    }
    for (index, vector) in vectors.iter().enumerate() {
        if vector.len() != dimensions {
            return Err(Error::malformed(
                format!(
                    "embedding {index} has {} dimensions, expected {dimensions}",
                    vector.len()
                ),
                "",
            ));
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(Error::malformed(format!("embedding {index} holds NaN or infinity"), ""));
        }
    }
    Ok(())
}

impl ChatDelta {
    /// The deltas that, accumulated, give back `response` (text, tool calls, usage, stop reason).
    pub fn replay(response: &ChatResponse) -> Vec<ChatDelta> {
        let mut deltas = Vec::new();
        let reasoning = response.message.content.iter().filter_map(|part| match part {
            ContentPart::Reasoning { text, signature } => Some((Some(text), signature.as_ref(), None)),
            ContentPart::RedactedReasoning { data } => Some((None, None, Some(data))),
            _ => None,
        });
        for (index, (text, signature, data)) in reasoning.enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if let Some(text) = text {
                deltas.push(ChatDelta::Reasoning {
                    index,
                    text: text.clone(),
                });
            }
            if let Some(signature) = signature {
                deltas.push(ChatDelta::ReasoningSignature {
                    index,
                    signature: signature.clone(),
                });
            }
            if let Some(data) = data {
                deltas.push(ChatDelta::RedactedReasoning {
                    index,
                    data: data.clone(),
                });
            }
        }
        let text = response.text();
        if !text.is_empty() {
            deltas.push(ChatDelta::Text { text });
        }
        for (index, call) in response.tool_calls().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            deltas.push(ChatDelta::ToolCallStart {
                index,
                id: call.id.clone(),
                name: call.name.clone(),
            });
            deltas.push(ChatDelta::ToolCallArguments {
                index,
                fragment: call.arguments.clone(),
            });
            if let Some(signature) = &call.signature {
                deltas.push(ChatDelta::ToolCallSignature {
                    index,
                    signature: signature.clone(),
                });
            }
        }
        if response.usage != Usage::default() {
            deltas.push(ChatDelta::Usage(response.usage));
        }
        if response.id.is_some() || response.model.is_some() {
            deltas.push(ChatDelta::Metadata {
                id: response.id.clone(),
                model: response.model.clone(),
            });
        }
        if let Some(stop_reason) = &response.stop_reason {
            deltas.push(ChatDelta::Finish {
                stop_reason: stop_reason.clone(),
                provider_reason: response.provider_stop_reason.clone(),
            });
        }
        deltas
    }
}

// Both traits are used as trait objects: fail the build if either stops being dyn-compatible.
const _: Option<(&dyn ChatModel, &dyn EmbeddingModel)> = None;
