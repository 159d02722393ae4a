//! The settings of a connection to an MCP server.

use std::time::Duration;

/// Settings of a connection to an MCP server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct McpOptions {
    /// How long the server may take to start and agree on a protocol revision (default 30 s).
    pub startup_timeout: Duration,
    /// How long any one request, a tool call included, may take (default 60 s). A request that
    /// takes longer is cancelled on the server (`notifications/cancelled`).
    pub request_timeout: Duration,
    /// The most tools, resources or prompts one listing may return (default 1,000); a server that
    /// offers more, or pages without end, gets an error.
    pub max_items: usize,
    /// Put before each tool's name with `_` (`fs` makes `read` into `fs_read`), so that the tools
    /// of several servers can share an agent.
    pub tool_prefix: Option<String>,
    /// Sent as `Authorization: Bearer ...` to a server over HTTP.
    pub bearer_token: Option<Secret>,
}

/// A credential, kept out of `Debug` output and logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            startup_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_items: 1_000,
            tool_prefix: None,
            bearer_token: None,
        }
    }
}

impl McpOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// These options with another start-up timeout.
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// These options with another request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// These options with another cap on the length of a listing.
    pub fn with_max_items(mut self, max_items: usize) -> Self {
        self.max_items = max_items;
        self
    }

    /// These options with a bearer token for a server over HTTP.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(Secret::new(token));
        self
    }

    /// These options with tool names prefixed by `prefix` and `_`.
    pub fn with_tool_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.tool_prefix = Some(prefix.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_stay_out_of_debug_output() {
        let options = McpOptions::new().with_bearer_token("sk-very-secret");
        let printed = format!("{options:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("Secret(..)"), "{printed}");
    }
}
