//! # kai-core
//!
//! The core of kAI, an embeddable agent SDK: the message types, the [`ChatModel`], [`EmbeddingModel`]
//! and [`Tool`] traits, and the [`Agent`] that runs a model and its tools in a loop until it answers.
//!
//! - **Messages** ([`Message`], [`ContentPart`], [`Usage`]) are provider-neutral and round-trip through
//!   serde; providers (in `kai-providers`) convert them to their wire formats.
//! - **Tools** take a `#[derive(Deserialize, JsonSchema)]` argument struct; the schema the model sees is
//!   generated from it ([`tool_fn`], [`TypedTool`]).
//! - **Agents** ([`Agent`]) call tools in parallel under a concurrency limit, obey step, time and
//!   deadline limits, stream typed [`AgentEvent`]s, and can be cancelled. Every failure of a tool goes
//!   back to the model; every failure of a run comes back as a [`RunError`] carrying the transcript.
//! - **Durable runs**: a run's [`RunState`] is serializable; it can be checkpointed after every step
//!   and resumed in another process, including after a human approved a tool call.
//! - **Hooks** ([`AgentHook`]) see and steer every model and tool call: approval, consent, audit,
//!   guardrails.
//! - **Structured output**: [`Agent::extract`] and [`ChatModelExt::extract`] parse answers into your
//!   types, repairing invalid ones.
//! - **Plans** ([`plan`]): a goal broken into subtasks by a model, run as a graph on worker agents
//!   with retries, re-plans and checkpoints.
//! - **Artifacts** ([`artifacts`], feature `artifacts`): what agents make, stored content-addressed
//!   with who made it, and tools to save and read them.
//! - **Configuration** ([`config`], feature `config`): `KaiConfig` from YAML, JSON or TOML with
//!   `KAI_*` overrides, checked, with hot reload.
//! - **Testing**: [`testing::ScriptedModel`] (feature `testing`) replays scripted answers.
//!
//! The same code builds for `wasm32-unknown-unknown`: async traits are `Send` on native targets and not
//! on wasm (see [`MaybeSend`]).
//!
//! ```
//! use kai_core::testing::ScriptedModel;
//! use kai_core::{Agent, ToolError, tool_fn};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct City {
//!     /// The city's name.
//!     name: String,
//! }
//!
//! # futures::executor::block_on(async {
//! let model = ScriptedModel::new() // or any provider's model
//!     .tool_call("weather", serde_json::json!({"name": "Oslo"}))
//!     .text("It is sunny in Oslo.");
//! let agent = Agent::builder(model)
//!     .instructions("Answer weather questions with the weather tool.")
//!     .tool(tool_fn("weather", "Current weather in a city.", |city: City| async move {
//!         Ok(format!("sunny in {}", city.name))
//!     }))
//!     .build()?;
//! let output = agent.run("How is the weather in Oslo?").await?;
//! println!("{} ({} tokens)", output.answer, output.usage.total_tokens());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate self as kai_core;

mod agent;
mod approval;
#[cfg(all(feature = "artifacts", not(target_arch = "wasm32")))]
pub mod artifacts;
mod cancel;
#[cfg(feature = "config")]
pub mod config;
mod error;
mod extract;
pub mod fs;
mod hook;
#[cfg(feature = "json-logs")]
pub mod logs;
mod marker;
#[cfg(all(feature = "mcp", not(target_arch = "wasm32")))]
pub mod mcp;
mod message;
#[cfg(feature = "metrics")]
pub mod metrics;
mod model;
#[cfg(all(feature = "otlp", not(target_arch = "wasm32")))]
pub mod otlp;
pub mod plan;
#[cfg(feature = "prompts")]
pub mod prompts;
mod request;
mod schema;
#[cfg(all(feature = "http-server", not(target_arch = "wasm32")))]
pub mod serve;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
#[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
pub mod tls;
mod tool;
mod tool_text;

pub use agent::{
    Agent, AgentBuilder, AgentEvent, AgentEventStream, AgentTool, Approval, ApprovalDecision, Conversation,
    NestedApproval, RunError, RunOptions, RunOutput, RunState, SuspendedCall,
};
pub use approval::ApprovalHook;
pub use cancel::{CancelOnDrop, CancellationToken};
pub use error::Error;
pub use extract::{ChatModelExt, Extracted, OUTPUT_NAME};
pub use hook::{AgentHook, HookContext, ToolDecision};
pub use kai_macros::{async_trait, tool, tool_args};
pub use marker::{BoxFuture, BoxStream, MaybeSend, MaybeSync, boxed, boxed_stream};
pub use message::{ContentPart, ImageSource, Message, Role, StopReason, ToolCall, ToolResult, Usage};
pub use model::{
    ChatModel, ChatStream, EmbeddingModel, Embeddings, ModelCapabilities, check_embeddings, collect_stream, embed_all,
    replay_stream,
};
pub use request::{ChatRequest, ChatResponse, ResponseFormat, ToolChoice, ToolDefinition};
pub use schema::schema_for;
pub use stream::{ChatDelta, ResponseAccumulator};
pub use time::sleep;
pub use tool::{
    DynamicTool, FnTool, Tool, ToolContext, ToolError, ToolFunction, ToolProgress, ToolSet, TypedTool, dynamic_tool,
    parse_arguments, tool_fn,
};
pub use tool_text::{recover_tool_calls, tool_calls_in_text};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

/// What the macros of `kai-macros` expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use {schemars, serde};
}
