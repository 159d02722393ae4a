//! A connection to one MCP server: start-up, listing, resources, prompts, and the errors of each.

use std::process::Stdio;
use std::sync::Arc;

use rmcp::model::{ClientRequest, GetPromptRequestParams, PingRequest, ReadResourceRequestParams};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use crate::error::Error;
use crate::mcp::changes::McpChanges;
use crate::mcp::connection::{Connection, ServerProcess, log_stderr};
use crate::mcp::http::{HttpClient, is_loopback_url, without_credentials};
use crate::mcp::offers::{McpPrompt, McpResource, McpResourceContents, McpResourceTemplate, convert, message_from_mcp};
use crate::mcp::options::McpOptions;
use crate::mcp::tool::McpTool;
use crate::message::Message;
use crate::tool::ToolSet;

/// A connection to one MCP server. Cheap to clone; clones share the connection, and the tools it
/// made keep it open until they are dropped too (or [`close`](Self::close) is called).
///
/// Needs a Tokio runtime.
#[derive(Clone)]
pub struct McpClient {
    connection: Arc<Connection>,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("server", &self.connection.server)
            .field("protocol", &self.protocol_version())
            .finish()
    }
}

impl McpClient {
    /// Starts `command` as an MCP server speaking over its stdin and stdout, with the default
    /// [`McpOptions`]. Its stderr goes to `tracing` (target `kai_core::mcp`, level debug); the
    /// process is killed when the connection is closed or dropped.
    ///
    /// Fails with [`Error::Transport`] when the program does not start or quits, [`Error::Timeout`]
    /// when it does not finish the handshake within the start-up timeout, and
    /// [`Error::Unsupported`] when it speaks no protocol revision kAI knows.
    pub async fn stdio(command: std::process::Command) -> Result<Self, Error> {
        Self::stdio_with(command, McpOptions::default()).await
    }

    /// [`stdio`](Self::stdio) with these options.
    pub async fn stdio_with(command: std::process::Command, options: McpOptions) -> Result<Self, Error> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut command = tokio::process::Command::from(command);
        command
            .kill_on_drop(true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group, so that closing the connection stops what it started too (`npx`
        // and `sh -c` start the real server as a child of theirs).
        #[cfg(unix)]
        command.process_group(0);
        let spawn = || {
            let spawn_error = |error: std::io::Error| Error::Transport {
                message: format!("could not start MCP server {program:?}: {error}"),
            };
            let mut process = ServerProcess(command.spawn().map_err(spawn_error)?);
            let child = &mut process.0;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(spawn_error(std::io::Error::other("no pipes to the process")));
            };
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(log_stderr(program.clone(), stderr));
            }
            Ok(((stdout, stdin), Some(process)))
        };
        Self::over(Connection::open_afresh(spawn, program.clone(), options).await)
    }

    /// Connects to the MCP server at `url` over Streamable HTTP (TLS by rustls with the webpki
    /// roots), with the default [`McpOptions`]. A session the server forgot (HTTP 404) is
    /// re-established once, transparently.
    pub async fn http(url: &str) -> Result<Self, Error> {
        Self::http_with(url, McpOptions::default()).await
    }

    /// [`http`](Self::http) with these options; [`McpOptions::with_bearer_token`] authorises.
    pub async fn http_with(url: &str, options: McpOptions) -> Result<Self, Error> {
        let http = HttpClient::new()?;
        let mut config = StreamableHttpClientTransportConfig::with_uri(url).reinit_on_expired_session(true);
        if let Some(token) = &options.bearer_token {
            if url.starts_with("http://") && !is_loopback_url(url) {
                tracing::warn!(target: "kai_core::mcp", server = %without_credentials(url), "a bearer token sent over plain HTTP");
            }
            config = config.auth_header(token.expose());
        }
        let connect = || {
            Ok((
                StreamableHttpClientTransport::with_client(http.clone(), config.clone()),
                None,
            ))
        };
        Self::over(Connection::open_afresh(connect, without_credentials(url), options).await)
    }

    /// Speaks MCP with a server already connected through `read` and `write` (newline-delimited
    /// JSON-RPC, as over stdio): a socket, a pipe, or an in-process [`McpServer`](crate::mcp::McpServer)
    /// over [`tokio::io::duplex`]. `name` stands for the server in messages until it names itself.
    pub async fn connect<R, W>(read: R, write: W, name: impl Into<String>, options: McpOptions) -> Result<Self, Error>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        Self::over(Connection::open((read, write), name.into(), options).await)
    }

    /// A client over `connection`, if it opened.
    fn over(connection: Result<Connection, Error>) -> Result<Self, Error> {
        Ok(Self {
            connection: Arc::new(connection?),
        })
    }

    /// The server's name: what it calls itself, or the program started.
    pub fn server_name(&self) -> &str {
        &self.connection.server
    }

    /// The protocol revision agreed on (`"2026-07-28"`, or `"2025-11-25"` with an older server).
    pub fn protocol_version(&self) -> Option<String> {
        self.connection
            .peer
            .peer_info()
            .map(|info| info.protocol_version.to_string())
    }

    /// The server's tools, as kai tools whose calls go to the server.
    ///
    /// Names are made fit for every provider (characters other than `a-z A-Z 0-9 _ -` become `_`,
    /// cut to 64), prefixed when the options say; descriptions are cut to 4 KiB. A tool whose input
    /// schema is over 64 KiB of JSON is left out (and logged at warn level).
    pub async fn tools(&self) -> Result<Vec<McpTool>, Error> {
        let peer = &self.connection.peer;
        let tools = self
            .connection
            .list_all("tools/list", |params| async move {
                peer.list_tools(params).await.map(|page| (page.tools, page.next_cursor))
            })
            .await?;
        Ok(tools
            .into_iter()
            .filter_map(|tool| McpTool::new(Arc::clone(&self.connection), tool))
            .collect())
    }

    /// The server's tools in a [`ToolSet`], for [`AgentBuilder::tools`](crate::AgentBuilder::tools).
    ///
    /// A tool the set cannot take (its name, once made fit, is another's, or its input schema is
    /// not a valid JSON Schema) is left out and logged at warn level, so that one bad tool does
    /// not cost the others.
    pub async fn tool_set(&self) -> Result<ToolSet, Error> {
        let mut set = ToolSet::new();
        for tool in self.tools().await? {
            let remote = tool.remote_name().to_owned();
            if let Err(error) = set.add(tool) {
                tracing::warn!(target: "kai_core::mcp", server = %self.connection.server, tool = %remote, %error, "MCP tool left out");
            }
        }
        Ok(set)
    }

    /// The resources the server offers.
    pub async fn resources(&self) -> Result<Vec<McpResource>, Error> {
        let peer = &self.connection.peer;
        self.connection
            .list_as("resources/list", |params| async move {
                peer.list_resources(params)
                    .await
                    .map(|page| (page.resources, page.next_cursor))
            })
            .await
    }

    /// The contents of the resource at `uri`.
    pub async fn read_resource(&self, uri: &str) -> Result<Vec<McpResourceContents>, Error> {
        let peer = &self.connection.peer;
        let result = self
            .connection
            .request(
                "resources/read",
                peer.read_resource(ReadResourceRequestParams::new(uri)),
            )
            .await?;
        result
            .contents
            .iter()
            .map(|contents| convert(&self.connection.server, contents))
            .collect()
    }

    /// The prompt templates the server offers.
    pub async fn prompts(&self) -> Result<Vec<McpPrompt>, Error> {
        let peer = &self.connection.peer;
        self.connection
            .list_as("prompts/list", |params| async move {
                peer.list_prompts(params)
                    .await
                    .map(|page| (page.prompts, page.next_cursor))
            })
            .await
    }

    /// The prompt `name` filled in with `arguments`, as messages to put before a run's input.
    /// Text parts become text and images images; any other part (an embedded resource, audio) is
    /// given as its JSON in text.
    pub async fn prompt(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<Message>, Error> {
        let peer = &self.connection.peer;
        let mut params = GetPromptRequestParams::new(name);
        params.arguments = Some(arguments);
        let result = self.connection.request("prompts/get", peer.get_prompt(params)).await?;
        result
            .messages
            .iter()
            .map(|message| message_from_mcp(&self.connection.server, message))
            .collect()
    }

    /// The resource templates the server offers.
    pub async fn resource_templates(&self) -> Result<Vec<McpResourceTemplate>, Error> {
        let peer = &self.connection.peer;
        self.connection
            .list_as("resources/templates/list", |params| async move {
                peer.list_resource_templates(params)
                    .await
                    .map(|page| (page.resource_templates, page.next_cursor))
            })
            .await
    }

    /// The lists the server announces as changed from now on. Under the 2026-07-28 revision this
    /// opens a `subscriptions/listen` stream for the lists whose changes the server says it
    /// announces (once per connection); older servers announce without being asked.
    pub async fn changes(&self) -> Result<McpChanges, Error> {
        self.connection.changes().await
    }

    /// Asks the server whether it is there (`ping`), within the request timeout.
    pub async fn ping(&self) -> Result<(), Error> {
        let peer = &self.connection.peer;
        let request = peer.send_request(ClientRequest::PingRequest(PingRequest::default()));
        self.connection.request("ping", request).await.map(|_| ())
    }

    /// Whether the connection has ended (closed here, or by the server, or its process died).
    pub fn is_closed(&self) -> bool {
        self.connection.peer.is_transport_closed()
    }

    /// Completes when the connection has ended (checked every 200 ms).
    pub async fn closed(&self) {
        while !self.is_closed() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Ends the connection and stops the server (the tools made from it fail from then on).
    pub async fn close(&self) {
        self.connection.close().await;
    }
}
