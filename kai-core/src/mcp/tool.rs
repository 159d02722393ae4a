//! An MCP server's tool as a kai [`Tool`].

use std::sync::Arc;

use rmcp::model::CallToolRequestParams;
use serde_json::Value;

use crate::error::Error;
use crate::mcp::client::Connection;
use crate::request::ToolDefinition;
use crate::tool::{Tool, ToolContext, ToolError};

/// The longest description passed on to the model, in bytes.
const MAX_DESCRIPTION: usize = 4096;

/// A tool of an MCP server; calling it calls the server. Made by
/// [`McpClient::tools`](crate::mcp::McpClient::tools).
///
/// A call fails with [`ToolError::Timeout`] after the connection's request timeout and with
/// [`ToolError::Cancelled`] when the run cancels it (the server is told either way), with
/// [`ToolError::Failed`] when the server reports an error or goes away; the model sees each.
pub struct McpTool {
    connection: Arc<Connection>,
    /// The name the server knows it by.
    remote_name: String,
    definition: ToolDefinition,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool")
            .field("server", &self.connection.server)
            .field("name", &self.definition.name)
            .finish()
    }
}

impl McpTool {
    pub(crate) fn new(connection: Arc<Connection>, tool: rmcp::model::Tool) -> Self {
        let remote_name = tool.name.into_owned();
        let name = model_name(connection.options.tool_prefix.as_deref(), &remote_name);
        let mut description = tool.description.map(|d| d.into_owned()).unwrap_or_default();
        if description.len() > MAX_DESCRIPTION {
            let mut end = MAX_DESCRIPTION;
            while !description.is_char_boundary(end) {
                end -= 1;
            }
            description.truncate(end);
        }
        let parameters = Value::Object((*tool.input_schema).clone());
        Self {
            connection,
            remote_name,
            definition: ToolDefinition::new(name, description, parameters),
        }
    }

    /// The name the server knows the tool by (the model may see another, see
    /// [`McpClient::tools`](crate::mcp::McpClient::tools)).
    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }

    /// The server's result in kAI's terms.
    fn output(&self, result: rmcp::model::CallToolResult) -> Result<Value, ToolError> {
        let texts: Option<Vec<&str>> = result
            .content
            .iter()
            .map(|block| block.as_text().map(|text| text.text.as_str()))
            .collect();
        if result.is_error == Some(true) {
            let message = match texts {
                Some(texts) if !texts.is_empty() => texts.join("\n"),
                _ => serde_json::to_string(&result.content).unwrap_or_default(),
            };
            return Err(ToolError::failed(message));
        }
        if let Some(structured) = result.structured_content {
            return Ok(structured);
        }
        match texts {
            Some(texts) => Ok(Value::String(texts.join("\n"))),
            None => serde_json::to_value(&result.content).map_err(ToolError::failed),
        }
    }
}

/// `remote`, prefixed, with every character a provider may refuse made `_`, cut to 64 characters.
fn model_name(prefix: Option<&str>, remote: &str) -> String {
    let joined = match prefix {
        Some(prefix) => format!("{prefix}_{remote}"),
        None => remote.to_owned(),
    };
    joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

#[crate::async_trait]
impl Tool for McpTool {
    fn definition(&self) -> ToolDefinition {
        self.definition.clone()
    }

    async fn call(&self, arguments: Value, context: ToolContext) -> Result<Value, ToolError> {
        let arguments = match arguments {
            Value::Object(arguments) => arguments,
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(ToolError::invalid_arguments(format!(
                    "MCP tools take an object of arguments, not {other}"
                )));
            }
        };
        let connection = &self.connection;
        let request = connection
            .peer
            .call_tool(CallToolRequestParams::new(self.remote_name.clone()).with_arguments(arguments));
        let timeout = connection.options.request_timeout;
        // Dropping the request (cancelled, or out of time) tells the server to stop it.
        let result = tokio::select! {
            biased;
            () = context.cancel.cancelled() => return Err(ToolError::Cancelled),
            result = tokio::time::timeout(timeout, request) => match result {
                Ok(result) => result,
                Err(_) => return Err(ToolError::Timeout { after: timeout }),
            },
        };
        match result {
            Ok(result) => self.output(result),
            Err(error) => Err(
                match connection.error(&format!("tools/call {:?}", self.remote_name), error) {
                    Error::Timeout => ToolError::Timeout { after: timeout },
                    Error::Cancelled => ToolError::Cancelled,
                    Error::InvalidRequest { message } => ToolError::InvalidArguments { message },
                    error => ToolError::failed(error),
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_fit_for_every_provider() {
        assert_eq!(model_name(None, "get-sum"), "get-sum");
        assert_eq!(model_name(Some("fs"), "files/read.all"), "fs_files_read_all");
        assert_eq!(model_name(None, "ünï"), "_n_");
        assert_eq!(model_name(None, &"x".repeat(200)).len(), 64);
    }
}
