//! The Model Context Protocol (feature `mcp`, native targets): tools, resources and prompts from any
//! MCP server, and kai tools served to any MCP client, on the official Rust SDK (`rmcp`).
//!
//! [`McpClient::stdio`] starts a server as a subprocess and speaks MCP over its stdin and stdout: the
//! current revision (2026-07-28, stateless) first, and the 2025-11-25 `initialize` handshake when the
//! server is older. Its tools become kai [`Tool`](crate::Tool)s ([`McpTool`]), ready for an agent:
//!
//! ```no_run
//! use kai_core::Agent;
//! use kai_core::mcp::McpClient;
//! # async fn demo(model: impl kai_core::ChatModel + 'static) -> Result<(), kai_core::Error> {
//! let mut server = std::process::Command::new("npx");
//! server.args(["-y", "@modelcontextprotocol/server-everything", "stdio"]);
//! let client = McpClient::stdio(server).await?;
//! let agent = Agent::builder(model).tools(&client.tool_set().await?).build()?;
//! # Ok(()) }
//! ```
//!
//! [`McpServer`] serves any [`ToolSet`](crate::ToolSet) (an agent among them, through
//! [`Agent::into_tool`](crate::Agent::into_tool)) to MCP clients over stdio or any byte stream.
//!
//! [`PluginHost`] runs the servers a configuration file declares as plugins: supervised, restarted
//! with backoff, and loaded or unloaded when the file changes.
//!
//! Everything a server sends is treated as hostile: messages are bounded in size, lists in length,
//! every request in time; a server that crashes, hangs or prints garbage makes the request fail with
//! a typed [`Error`](crate::Error) (an agent's tool call with a [`ToolError`](crate::ToolError) the
//! model sees), and the agent keeps running.

mod catalog;
mod changes;
mod client;
mod connection;
mod http;
mod offers;
mod options;
mod plugins;
mod progress;
mod server;
mod tool;

pub use changes::{McpChange, McpChanges};
pub use client::McpClient;
pub use offers::{McpPrompt, McpPromptArgument, McpResource, McpResourceContents, McpResourceTemplate};
pub use options::{McpOptions, Secret};
pub use plugins::{PluginHost, PluginState, PluginStatus};
pub use server::McpServer;
pub use tool::McpTool;
