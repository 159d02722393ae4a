//! Any kai [`ToolSet`] served to MCP clients.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::service::TowerToHyperService;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, GetPromptRequestParams,
    GetPromptResponse, Implementation, JsonObject, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, RequestParamsMeta,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::Value;

use crate::cancel::CancellationToken;
use crate::error::Error;
use crate::mcp::catalog::{Catalog, Reader, Renderer};
use crate::mcp::offers::{McpPrompt, McpResource, McpResourceContents, McpResourceTemplate};
use crate::mcp::progress::forward_progress;
use crate::message::Message;
use crate::request::ToolDefinition;
use crate::tool::{ToolContext, ToolError, ToolProgress, ToolSet};

/// Serves a [`ToolSet`] to MCP clients: every revision rmcp knows (2026-07-28 and the
/// `initialize` handshake of 2024-11-05 to 2025-11-25), over stdio or any byte stream.
///
/// Arguments are checked against each tool's schema before it runs; a tool's failure is a tool
/// result marked as an error (which the client's model sees), an unknown tool a protocol error.
/// A client's `notifications/cancelled` cancels the call's [`ToolContext::cancel`]. An agent is
/// served as one tool through [`Agent::into_tool`](crate::Agent::into_tool).
///
/// ```no_run
/// use kai_core::mcp::McpServer;
/// use kai_core::{ToolSet, tool_fn};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add {
///     a: i64,
///     b: i64,
/// }
///
/// # async fn demo() -> Result<(), kai_core::Error> {
/// let mut tools = ToolSet::new();
/// tools.add(tool_fn("add", "Adds two integers.", |args: Add| async move { Ok(args.a + args.b) }))?;
/// McpServer::new(tools).with_name("calculator", "1.0").serve_stdio().await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct McpServer {
    tools: Arc<ToolSet>,
    info: Implementation,
    instructions: Option<String>,
    /// Calls that may run at once; more are refused.
    calls: Arc<tokio::sync::Semaphore>,
    /// Hosts HTTP requests may be addressed to; loopback names when `None`.
    allowed_hosts: Option<Vec<String>>,
    /// Browser origins HTTP requests may come from; loopback ones when `None`.
    allowed_origins: Option<Vec<String>>,
    /// HTTP connections served at once.
    max_connections: usize,
    /// Resources, templates and prompts.
    catalog: Catalog,
}

/// Calls one client may have running at once, unless set otherwise.
const DEFAULT_MAX_CONCURRENT_CALLS: usize = 32;

/// How long a finished call's result waits for the progress reports still on their way to the client.
const PROGRESS_DRAIN: Duration = Duration::from_secs(1);

impl McpServer {
    /// A server of `tools`, calling itself `kai`.
    pub fn new(tools: ToolSet) -> Self {
        Self {
            tools: Arc::new(tools),
            info: Implementation::new("kai", env!("CARGO_PKG_VERSION")),
            instructions: None,
            calls: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_CONCURRENT_CALLS)),
            allowed_hosts: None,
            allowed_origins: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            catalog: Catalog::default(),
        }
    }

    /// This server letting at most `calls` tool calls, resource reads and prompts run at once (32
    /// unless set), counted over every connection it and its clones serve; one beyond them is
    /// refused at once (a tool call with a tool error), rather than queued without bound.
    pub fn with_max_concurrent_calls(mut self, calls: usize) -> Self {
        let calls = calls.min(tokio::sync::Semaphore::MAX_PERMITS);
        self.calls = Arc::new(tokio::sync::Semaphore::new(calls));
        self
    }

    /// This server under another name and version, as clients see it.
    pub fn with_name(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.info = Implementation::new(name, version);
        self
    }

    /// This server offering `resource`, whose contents are `contents`. Resources do not change, so a
    /// client's subscription to one is taken and never notified.
    pub fn with_resource(mut self, resource: McpResource, contents: McpResourceContents) -> Self {
        self.catalog.add_resource(resource, contents);
        self
    }

    /// This server offering the resources `template` describes, read by `read` from the URI asked
    /// for and the template's variables in it. Fails with [`Error::Config`] when the template does
    /// not parse ([`McpResourceTemplate`] says what it may hold).
    pub fn with_resource_template<F, Fut>(mut self, template: McpResourceTemplate, read: F) -> Result<Self, Error>
    where
        F: Fn(String, HashMap<String, String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<McpResourceContents>, ToolError>> + Send + 'static,
    {
        let reader: Reader = Arc::new(move |uri, variables| Box::pin(read(uri, variables)));
        self.catalog.add_template(template, reader)?;
        Ok(self)
    }

    /// This server offering `prompt`, filled in by `render` from the client's arguments (every
    /// argument the prompt requires is there) as user and assistant messages of text and images.
    pub fn with_prompt<F, Fut>(mut self, prompt: McpPrompt, render: F) -> Self
    where
        F: Fn(serde_json::Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Message>, ToolError>> + Send + 'static,
    {
        let renderer: Renderer = Arc::new(move |arguments| Box::pin(render(arguments)));
        self.catalog.add_prompt(prompt, renderer);
        self
    }

    /// A place among the requests that run at once (tool calls, resource reads, prompts), or the
    /// error that refuses one more.
    fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ErrorData> {
        self.calls.try_acquire().map_err(|_| {
            ErrorData::internal_error(
                "the server is running as many requests as it allows; try again soon",
                None,
            )
        })
    }

    /// This server with instructions for the client's model on how to use it.
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Serves on this process's stdin and stdout until the client closes them.
    ///
    /// Nothing else may write to stdout meanwhile: log to stderr.
    pub async fn serve_stdio(self) -> Result<(), Error> {
        self.serve(tokio::io::stdin(), tokio::io::stdout()).await
    }

    /// Serves one client on a byte stream (newline-delimited JSON-RPC, as stdio) until it closes.
    ///
    /// Fails with [`Error::Transport`] when the client breaks off the handshake.
    pub async fn serve<R, W>(self, read: R, write: W) -> Result<(), Error>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let running = ServiceExt::serve(self, (read, write))
            .await
            .map_err(|error| Error::Transport {
                message: format!("the MCP client broke off the handshake: {error}"),
            })?;
        running.waiting().await.map_err(|error| Error::Transport {
            message: format!("the MCP service stopped: {error}"),
        })?;
        Ok(())
    }

    /// Serves MCP over Streamable HTTP at `/mcp` (any path, in fact) on `listener` until `shutdown`
    /// is cancelled.
    ///
    /// Each request is served on its own (no sessions are kept, whatever revision the client
    /// speaks, so no client can pile up state); bodies are capped at 4 MiB; a connection has 10 s
    /// to send each request's headers (idle ones are closed after as long), and at most 256
    /// connections are served at once (`with_max_connections`; more wait to be accepted). Requests
    /// must be addressed (`Host`) to a loopback name and come from no browser page (`Origin`) but a
    /// loopback one, unless [`with_allowed_hosts`](Self::with_allowed_hosts) and
    /// [`with_allowed_origins`](Self::with_allowed_origins) say otherwise: this stops DNS-rebinding
    /// attacks from a browser.
    pub async fn serve_http(self, listener: tokio::net::TcpListener, shutdown: CancellationToken) -> Result<(), Error> {
        let mut config = StreamableHttpServerConfig::default();
        config.legacy_session_mode = false;
        config.json_response = true;
        if let Some(hosts) = &self.allowed_hosts {
            config = config.with_allowed_hosts(hosts.iter().cloned());
        }
        let origins = self.allowed_origins.clone().unwrap_or_else(|| {
            ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
                .map(String::from)
                .to_vec()
        });
        config = config.with_allowed_origins(origins).enforce_origin_validation();
        let server = self.clone();
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(NeverSessionManager::default()),
            config,
        );
        let service = TowerToHyperService::new(service);
        crate::serve::serve_http1(listener, shutdown, self.max_connections, service, "MCP").await;
        Ok(())
    }

    /// This server taking HTTP requests addressed to `hosts` (names, or `name:port`) rather than
    /// to loopback names only; for a server others reach through a real name. An empty list keeps
    /// the loopback names.
    pub fn with_allowed_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let hosts: Vec<String> = hosts.into_iter().map(Into::into).collect();
        self.allowed_hosts = (!hosts.is_empty()).then_some(hosts);
        self
    }

    /// This server taking HTTP requests from browser pages of these origins
    /// (`scheme://host:port`, `:*` for any port) rather than loopback ones only. Requests without
    /// an `Origin` (from anything but a browser) are taken either way.
    pub fn with_allowed_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// This server serving at most `connections` HTTP connections at once (256 unless set); more
    /// wait to be accepted.
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self
    }
}

/// HTTP connections served at once, unless set otherwise.
const DEFAULT_MAX_CONNECTIONS: usize = 256;

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_prompts()
            .build();
        if !self.catalog.has_resources() {
            capabilities.resources = None;
        }
        if !self.catalog.has_prompts() {
            capabilities.prompts = None;
        }
        let config = ServerConfig::new(capabilities).with_server_info(self.info.clone());
        match &self.instructions {
            Some(instructions) => config.with_instructions(instructions.clone()),
            None => config,
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.tools.definitions().iter().map(mcp_tool).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.catalog.resources()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(self.catalog.templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let _permit = self.permit()?;
        tokio::select! {
            result = self.catalog.read(&request.uri) => result.map(Into::into),
            () = context.ct.cancelled() => Err(ErrorData::internal_error("cancelled", None)),
        }
    }

    async fn subscribe(
        &self,
        _request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Resources never change: a subscription is taken, with nothing ever to notify.
        Ok(())
    }

    async fn unsubscribe(
        &self,
        _request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(self.catalog.prompts()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let _permit = self.permit()?;
        let arguments = request.arguments.unwrap_or_default();
        tokio::select! {
            result = self.catalog.prompt(&request.name, arguments) => result.map(Into::into),
            () = context.ct.cancelled() => Err(ErrorData::internal_error("cancelled", None)),
        }
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tools.definitions().iter().find(|d| d.name == name).map(mcp_tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.tools.get(&request.name) else {
            return Err(ErrorData::new(
                ErrorCode::INVALID_PARAMS,
                format!("no tool is named {:?}", request.name),
                None,
            ));
        };
        let Ok(_permit) = self.calls.try_acquire() else {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "the server is running as many tool calls as it allows; try again when one has finished",
            )])
            .into());
        };
        // A client that sent a progress token hears what the tool reports, in order, before the result.
        let token = request.progress_token().or_else(|| context.meta.get_progress_token());
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        if let Err(error) = self.tools.validate(&request.name, &arguments) {
            return Ok(failure(&error).into());
        }
        let cancel = CancellationToken::new();
        let call_id = serde_json::to_string(&context.id).unwrap_or_default();
        let mut tool_context = ToolContext::new(call_id).with_cancel(cancel.clone());
        // The latest report waits for the forwarder (reports it has not sent yet are replaced, so a
        // client that reads slowly costs one report of memory); the gate closes when the call ends.
        let mut gate = None;
        let forwarding = token.map(|token| {
            let (reports, latest) = tokio::sync::watch::channel(None::<ToolProgress>);
            let (gated, closes) = std::mem::take(&mut tool_context).with_gated_progress_listener(move |progress| {
                reports.send_replace(Some(progress));
            });
            (tool_context, gate) = (gated, Some(closes));
            tokio::spawn(forward_progress(token, latest, context.peer.clone()))
        });
        let call = tool.call(arguments, tool_context);
        let result = tokio::select! {
            result = call => result,
            () = context.ct.cancelled() => {
                cancel.cancel();
                Err(ToolError::Cancelled)
            }
        };
        // The call is over: no more reports, and the forwarder ends once it has sent the last one, before
        // the result; one that cannot send it in time is stopped.
        drop(gate);
        if let Some(mut forwarding) = forwarding
            && tokio::time::timeout(PROGRESS_DRAIN, &mut forwarding).await.is_err()
        {
            forwarding.abort();
        }
        Ok(match result {
            Ok(output) => success(output),
            Err(error) => failure(&error),
        }
        .into())
    }
}

/// A kai tool's definition as MCP's.
fn mcp_tool(definition: &ToolDefinition) -> rmcp::model::Tool {
    let schema = match &definition.parameters {
        Value::Object(schema) => schema.clone(),
        _ => JsonObject::new(),
    };
    rmcp::model::Tool::new(definition.name.clone(), definition.description.clone(), schema)
}

/// A tool's output as an MCP result: text (a string as it is, anything else as JSON), and an object
/// also as structured content.
fn success(output: Value) -> CallToolResult {
    let text = match &output {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    if output.is_object() {
        result.structured_content = Some(output);
    }
    result
}

/// A tool's failure as an MCP result marked as an error, for the client's model to read.
fn failure(error: &ToolError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(error.to_string())])
}
