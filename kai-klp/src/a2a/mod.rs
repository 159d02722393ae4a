//! A2A (Agent2Agent protocol, v1.0): a kAI agent served to other vendors' agents and apps.
//!
//! [`A2aServer`] serves an [`Agent`](kai_core::Agent) over A2A's JSON-RPC binding on HTTP, with the
//! types of the official Rust SDK crate (`a2a-lf`): its Agent Card at
//! `/.well-known/agent-card.json`, and `SendMessage`, `SendStreamingMessage` (Server-Sent Events),
//! `GetTask` and `CancelTask` at `/`. Each message starts (or continues) a task run by the agent:
//! - the answer comes back as the task's `answer` artifact, streamed as the model writes it;
//! - a tool call a hook wants approved puts the task in `TASK_STATE_INPUT_REQUIRED`, with the calls
//!   waiting in the status message; a message on the same task decides them (a text starting with
//!   `approve` or `yes` approves them all, anything else rejects them with that text as the reason;
//!   or a data part `{"approve": true|false, "reason": "..."}`), and the run goes on;
//! - `CancelTask` cancels the run (its tools see it) and ends the task `TASK_STATE_CANCELED`;
//! - tasks of one `contextId` continue one conversation.
//!
//! [`A2aClient`] calls a remote A2A agent (its card, `SendMessage`, `SendStreamingMessage`,
//! `GetTask`, `CancelTask`), and [`A2aClient::tool`] makes it a kAI tool: the model's `message` goes
//! to the remote agent, the remote task's answer comes back, and a cancelled call cancels the
//! remote task.
//!
//! Requests must say `A2A-Version: 1.0`. Bodies are capped (1 MiB), as are connections (256), the
//! tasks kept (1,000; finished ones are forgotten oldest first, and while every task kept runs or
//! waits for input a new one is refused) and the conversations kept (1,000).
//!
//! The server does not authenticate its callers yet: anyone who reaches it can run the agent. Bind
//! it to loopback, or put it behind a proxy that does, until authorisation lands.

mod client;
mod server;
mod tasks;
mod wire;

/// The protocol's types (the official Rust SDK crate `a2a-lf`): `AgentCard`, `Task`, `Message`, ...
pub use a2a_lf as protocol;
pub use client::{A2aClient, A2aTool};
pub use server::{A2aServer, agent_card};
