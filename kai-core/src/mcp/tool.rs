//! An MCP server's tool as a kai [`Tool`].

use std::sync::Arc;

use rmcp::ServiceError;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam, ClientRequest, RequestId,
    ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RoleClient};
use serde_json::Value;

use crate::error::Error;
use crate::mcp::connection::{Connection, MAX_ERROR, json_size};
use crate::request::ToolDefinition;
use crate::tool::{Tool, ToolContext, ToolError};

/// The longest description passed on to the model, in bytes.
const MAX_DESCRIPTION: usize = 4096;

/// The largest input schema taken, in bytes of JSON.
const MAX_SCHEMA: usize = 64 << 10;

/// The largest result passed on to the model, in bytes of JSON; a larger one is a failure.
const MAX_RESULT: usize = 1 << 20;

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
    /// The tool, unless its input schema is over [`MAX_SCHEMA`] (logged at warn level).
    pub(crate) fn new(connection: Arc<Connection>, tool: rmcp::model::Tool) -> Option<Self> {
        let remote_name = tool.name.into_owned();
        let parameters = Value::Object((*tool.input_schema).clone());
        let schema_size = json_size(&parameters);
        if schema_size > MAX_SCHEMA {
            tracing::warn!(target: "kai_core::mcp", server = %connection.server, tool = %remote_name, schema_size, "MCP tool left out: its input schema is too large");
            return None;
        }
        let name = model_name(connection.options.tool_prefix.as_deref(), &remote_name);
        let mut description = tool.description.map(|d| d.into_owned()).unwrap_or_default();
        description.truncate(description.floor_char_boundary(MAX_DESCRIPTION));
        Some(Self {
            connection,
            remote_name,
            definition: ToolDefinition::new(name, description, parameters),
        })
    }

    /// The name the server knows the tool by (the model may see another, see
    /// [`McpClient::tools`](crate::mcp::McpClient::tools)).
    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }

    /// The server's result in kAI's terms: at most [`MAX_RESULT`] bytes of JSON, error messages cut
    /// to [`MAX_ERROR`].
    fn output(&self, result: rmcp::model::CallToolResult) -> Result<Value, ToolError> {
        let texts: Option<Vec<&str>> = result
            .content
            .iter()
            .map(|block| block.as_text().map(|text| text.text.as_str()))
            .collect();
        if result.is_error == Some(true) {
            let mut message = match texts {
                Some(texts) if !texts.is_empty() => texts.join("\n"),
                _ => serde_json::to_string(&result.content).unwrap_or_default(),
            };
            message.truncate(message.floor_char_boundary(MAX_ERROR));
            return Err(ToolError::failed(message));
        }
        let output = match (result.structured_content, texts) {
            (Some(structured), _) => structured,
            (None, Some(texts)) => Value::String(texts.join("\n")),
            (None, None) => serde_json::to_value(&result.content).map_err(ToolError::failed)?,
        };
        let size = json_size(&output);
        if size > MAX_RESULT {
            return Err(ToolError::failed(format!(
                "the MCP server {:?} answered with {size} bytes, over the {MAX_RESULT} a result may hold",
                self.connection.server
            )));
        }
        Ok(output)
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

impl McpTool {
    /// Sends the call and waits for its result, routing the server's progress reports on it to
    /// `context`. Dropped before the result comes (cancelled, out of time), it tells the server the
    /// call was abandoned.
    async fn send(&self, params: CallToolRequestParams, context: &ToolContext) -> Result<CallToolResult, ServiceError> {
        let peer = &self.connection.peer;
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let handle = peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await?;
        // rmcp sends every request with a progress token of its own: reports are routed by it.
        let _route = self.connection.progress.route(handle.progress_token.clone(), context);
        let mut abandoned = Abandoned::new(peer.clone(), handle.id.clone());
        let response = handle.await_response().await;
        abandoned.disarm();
        tool_result(response?).ok_or(ServiceError::UnexpectedResponse)
    }
}

/// The result of a `tools/call`, also one without content, which decodes as another kind of result
/// (as rmcp's own `call_tool` knows); `None` for anything else.
fn tool_result(response: ServerResult) -> Option<CallToolResult> {
    match response {
        ServerResult::CallToolResult(result) => Some(result),
        ServerResult::EmptyResult(_) => Some(CallToolResult::default()),
        ServerResult::TaskAckResult(ack) => {
            let mut result = CallToolResult::default();
            result.meta = ack.meta;
            Some(result)
        }
        ServerResult::CustomResult(custom)
            if custom
                .0
                .as_object()
                .is_some_and(|fields| fields.keys().all(|key| key == "_meta")) =>
        {
            Some(CallToolResult::default())
        }
        _ => None,
    }
}

/// Tells the server that the request `id` was abandoned, when dropped before [`disarm`](Self::disarm)
/// (on the runtime the call was made on: the drop may happen on a thread without one).
struct Abandoned {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
    runtime: tokio::runtime::Handle,
}

impl Abandoned {
    /// Armed for request `id`; made on the call's runtime.
    fn new(peer: Peer<RoleClient>, id: RequestId) -> Self {
        Abandoned {
            peer,
            id: Some(id),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The request has its answer: nothing to tell.
    fn disarm(&mut self) {
        self.id = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let peer = self.peer.clone();
        self.runtime.spawn(async move {
            let reason = Some("the caller abandoned the request".to_owned());
            let _ = peer
                .notify_cancelled(CancelledNotificationParam::new(Some(id), reason))
                .await;
        });
    }
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
        let request = self.send(
            CallToolRequestParams::new(self.remote_name.clone()).with_arguments(arguments),
            &context,
        );
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
                    error => {
                        let mut message = error.to_string();
                        message.truncate(message.floor_char_boundary(MAX_ERROR));
                        ToolError::failed(message)
                    }
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_without_content_are_results() {
        use rmcp::model::{CustomResult, EmptyResult};
        assert!(tool_result(ServerResult::EmptyResult(EmptyResult {})).is_some_and(|result| result.content.is_empty()));
        let meta_only = CustomResult(serde_json::json!({"_meta": {"k": 1}}));
        assert!(tool_result(ServerResult::CustomResult(meta_only)).is_some());
        let other = CustomResult(serde_json::json!({"answer": 42}));
        assert!(tool_result(ServerResult::CustomResult(other)).is_none());
    }

    #[test]
    fn names_are_made_fit_for_every_provider() {
        assert_eq!(model_name(None, "get-sum"), "get-sum");
        assert_eq!(model_name(Some("fs"), "files/read.all"), "fs_files_read_all");
        assert_eq!(model_name(None, "ünï"), "_n_");
        assert_eq!(model_name(None, &"x".repeat(200)).len(), 64);
    }
}
