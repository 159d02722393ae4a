//! A connection to one MCP server: start-up, listing, resources, prompts, and the errors of each.

use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, GetPromptRequestParams, Implementation, PaginatedRequestParams, ProtocolVersion,
    ReadResourceRequestParams, SubscriptionFilter,
};
use rmcp::service::{
    ClientCacheConfig, ClientInitializeError, ClientLifecycleMode, ClientServiceExt, NotificationContext, Peer,
    RoleClient, RunningService,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ServiceError};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::process::Child;

use crate::error::Error;
use crate::mcp::changes::{Announcements, McpChange, McpChanges, announce, forward};
use crate::mcp::http::HttpClient;
use crate::mcp::tool::McpTool;
use crate::message::Message;
use crate::tool::ToolSet;

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

    fn expose(&self) -> &str {
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

/// What the client and its tools share.
pub(crate) struct Connection {
    /// The server's name, for messages: what it calls itself, or the program started.
    pub(crate) server: String,
    pub(crate) peer: Peer<RoleClient>,
    /// The running service; taken out by `close`.
    service: Mutex<Option<RunningService<RoleClient, Handler>>>,
    /// The server's process, when the client started it; killed when dropped or closed.
    child: Mutex<Option<Child>>,
    /// The counts of announced changes, which the handler (and a listen stream) keep.
    announcements: Weak<Announcements>,
    counts: tokio::sync::watch::Receiver<[u64; 3]>,
    /// Whether a `subscriptions/listen` stream forwards the server's announcements.
    listening: tokio::sync::Mutex<bool>,
    pub(crate) options: McpOptions,
}

impl Connection {
    /// `request` under the request timeout; its error in kAI's terms, naming `what` was asked.
    pub(crate) async fn request<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, Error> {
        // Dropping the request on timeout tells the server it was abandoned.
        match tokio::time::timeout(self.options.request_timeout, request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(self.error(what, error)),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// `error`, from a request for `what`, in kAI's terms.
    pub(crate) fn error(&self, what: &str, error: ServiceError) -> Error {
        let server = &self.server;
        match error {
            ServiceError::McpError(error) => {
                let message = format!(
                    "MCP server {server:?} refused {what}: {} ({})",
                    error.message, error.code.0
                );
                // -32602 invalid params, -32601 method not found: the request was wrong, not the server.
                if matches!(error.code.0, -32602 | -32601) {
                    Error::InvalidRequest { message }
                } else {
                    Error::Server { status: None, message }
                }
            }
            ServiceError::TransportSend(error) => Error::Transport {
                message: format!("could not send {what} to MCP server {server:?}: {error}"),
            },
            ServiceError::TransportClosed => Error::Transport {
                message: format!("MCP server {server:?} closed the connection during {what}"),
            },
            ServiceError::Timeout { .. } => Error::Timeout,
            ServiceError::Cancelled { .. } => Error::Cancelled,
            ServiceError::UnexpectedResponse => Error::malformed(
                format!("MCP server {server:?} answered {what} with the wrong kind of result"),
                "",
            ),
            other => Error::Unsupported {
                message: format!("MCP server {server:?} during {what}: {other}"),
            },
        }
    }

    /// Every item of a paginated listing, pages fetched by `page` from a cursor: at most
    /// `max_items` items and [`MAX_LISTING_BYTES`] of JSON in all, within one request timeout.
    async fn list_all<T: Serialize, Fut>(
        &self,
        what: &str,
        mut page: impl FnMut(Option<PaginatedRequestParams>) -> Fut,
    ) -> Result<Vec<T>, Error>
    where
        Fut: Future<Output = Result<(Vec<T>, Option<String>), ServiceError>>,
    {
        let listing = async {
            let mut items = Vec::new();
            let mut bytes = 0;
            let mut cursor = None;
            loop {
                let params = cursor.map(|cursor| PaginatedRequestParams::default().with_cursor(Some(cursor)));
                let (batch, next) = page(params).await.map_err(|error| self.error(what, error))?;
                bytes += json_size(&batch);
                // A server that pages without end, or with empty pages, is stopped by the same cap.
                if items.len() + batch.len().max(1) > self.options.max_items || bytes > MAX_LISTING_BYTES {
                    return Err(Error::malformed(
                        format!(
                            "MCP server {:?} lists more than {} items or {MAX_LISTING_BYTES} bytes in {what}",
                            self.server, self.options.max_items
                        ),
                        "",
                    ));
                }
                items.extend(batch);
                match next {
                    Some(next) if !next.is_empty() => cursor = Some(next),
                    _ => return Ok(items),
                }
            }
        };
        tokio::time::timeout(self.options.request_timeout, listing)
            .await
            .unwrap_or(Err(Error::Timeout))
    }
}

/// The most JSON one listing may hold, in bytes.
const MAX_LISTING_BYTES: usize = 16 << 20;

/// The length of `value` as JSON, counted without keeping it.
pub(crate) fn json_size(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Values the server sent serialize; a failure counts as nothing.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The first process is killed as it drops (`kill_on_drop`); the rest of its group here.
        if let Some(child) = self.child.get_mut().unwrap_or_else(PoisonError::into_inner) {
            kill_process_group(child);
        }
    }
}

/// Kills the process group `child` leads (the server's, started in a group of its own).
fn kill_process_group(child: &Child) {
    #[cfg(unix)]
    if let Some(group) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// The client's side of the protocol: who it is, and the lists the server announces as changed (it
/// serves no requests of the server's).
#[derive(Clone)]
pub(crate) struct Handler {
    announcements: Arc<Announcements>,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        announce(&self.announcements, McpChange::Tools);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        announce(&self.announcements, McpChange::Resources);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        announce(&self.announcements, McpChange::Prompts);
    }

    fn get_info(&self) -> ClientConfig {
        // The revision an `initialize` handshake asks for; the current one goes by `server/discover`.
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("kai", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// A resource an MCP server offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpResource {
    /// Where it is, as the server names it.
    pub uri: String,
    /// Its name.
    pub name: String,
    /// What it holds, when the server says.
    #[serde(default)]
    pub description: Option<String>,
    /// Its media type, when the server says.
    #[serde(default)]
    pub mime_type: Option<String>,
}

/// One part of a resource, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpResourceContents {
    /// The part's URI.
    pub uri: String,
    /// Its media type, when the server says.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Its text, for a text part.
    #[serde(default)]
    pub text: Option<String>,
    /// Its bytes in base64, for a binary part.
    #[serde(default)]
    pub blob: Option<String>,
}

/// A prompt template an MCP server offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpPrompt {
    /// Its name.
    pub name: String,
    /// What it is for, when the server says.
    #[serde(default)]
    pub description: Option<String>,
    /// The arguments it takes.
    #[serde(default)]
    pub arguments: Vec<McpPromptArgument>,
}

/// An argument of an [`McpPrompt`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct McpPromptArgument {
    /// Its name.
    pub name: String,
    /// What it means, when the server says.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the prompt needs it.
    #[serde(default)]
    pub required: bool,
}

/// `item` (an rmcp model type) as one of ours with the same wire form.
fn convert<T: Serialize, U: serde::de::DeserializeOwned>(server: &str, item: &T) -> Result<U, Error> {
    serde_json::to_value(item)
        .and_then(serde_json::from_value)
        .map_err(|error| {
            Error::malformed(
                format!("MCP server {server:?} sent an item kAI cannot read: {error}"),
                "",
            )
        })
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
            let mut child = command.spawn().map_err(spawn_error)?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(spawn_error(std::io::Error::other("no pipes to the process")));
            };
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(log_stderr(program.clone(), stderr));
            }
            Ok(((stdout, stdin), Some(child)))
        };
        Self::start_afresh(spawn, program.clone(), options).await
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
        Self::start_afresh(connect, url.to_owned(), options).await
    }

    /// Speaks MCP with a server already connected through `read` and `write` (newline-delimited
    /// JSON-RPC, as over stdio): a socket, a pipe, or an in-process [`McpServer`](crate::mcp::McpServer)
    /// over [`tokio::io::duplex`]. `name` stands for the server in messages until it names itself.
    pub async fn connect<R, W>(read: R, write: W, name: impl Into<String>, options: McpOptions) -> Result<Self, Error>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        Self::start((read, write), name.into(), options).await
    }

    /// The handshake over `transport`, as [`stdio_with`](Self::stdio_with) describes it.
    async fn start<T, E, A>(transport: T, name: String, options: McpOptions) -> Result<Self, Error>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let announcements = Arc::new(Announcements::new([0; 3]));
        let handler = Handler {
            announcements: Arc::clone(&announcements),
        };
        let service = handshake(transport, handler, probing_lifecycle(), options.startup_timeout)
            .await
            .map_err(|error| startup_error(&name, error))?;
        Ok(Self::running(service, &announcements, name, options))
    }

    /// [`start`](Self::start) on a transport from `connect`; when the server answers the probe for
    /// the current revision with something that is not an answer to it (a catch-all `{}`, as some
    /// servers give to any method they do not know), once more on a new transport with the
    /// `initialize` handshake alone.
    ///
    /// `connect` gives a transport and the server's process, if it started one (killed when the
    /// connection ends).
    async fn start_afresh<T, E, A>(
        mut connect: impl FnMut() -> Result<(T, Option<Child>), Error>,
        name: String,
        options: McpOptions,
    ) -> Result<Self, Error>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let started = tokio::time::Instant::now();
        let announcements = Arc::new(Announcements::new([0; 3]));
        let handler = Handler {
            announcements: Arc::clone(&announcements),
        };
        let (transport, mut child) = connect()?;
        let service = match handshake(transport, handler.clone(), probing_lifecycle(), options.startup_timeout).await {
            Err(Some(
                ClientInitializeError::ExpectedInitResult(_) | ClientInitializeError::ExpectedInitResponse(_),
            )) => {
                let left = options.startup_timeout.saturating_sub(started.elapsed());
                let transport;
                (transport, child) = connect()?;
                handshake(transport, handler, ClientLifecycleMode::Initialize, left).await
            }
            attempt => attempt,
        };
        let service = service.map_err(|error| startup_error(&name, error))?;
        let client = Self::running(service, &announcements, name, options);
        *client.connection.child.lock().unwrap_or_else(PoisonError::into_inner) = child;
        Ok(client)
    }

    /// A client of the connected `service`, whose handler counts into `announcements`.
    fn running(
        service: RunningService<RoleClient, Handler>,
        announcements: &Arc<Announcements>,
        name: String,
        options: McpOptions,
    ) -> Self {
        let mut server = service
            .peer()
            .peer_info()
            .and_then(|info| info.server_info.as_ref().map(|server| server.name.clone()))
            .filter(|name| !name.is_empty())
            .unwrap_or(name);
        // The server names itself in every message about it: keep the name short.
        cut_at_char_boundary(&mut server, 128);
        let peer = service.peer().clone();
        Self {
            connection: Arc::new(Connection {
                server,
                peer,
                service: Mutex::new(Some(service)),
                child: Mutex::new(None),
                announcements: Arc::downgrade(announcements),
                counts: announcements.subscribe(),
                listening: tokio::sync::Mutex::new(false),
                options,
            }),
        }
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
        let resources = self
            .connection
            .list_all("resources/list", |params| async move {
                peer.list_resources(params)
                    .await
                    .map(|page| (page.resources, page.next_cursor))
            })
            .await?;
        resources
            .iter()
            .map(|resource| convert(&self.connection.server, resource))
            .collect()
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
        let prompts = self
            .connection
            .list_all("prompts/list", |params| async move {
                peer.list_prompts(params)
                    .await
                    .map(|page| (page.prompts, page.next_cursor))
            })
            .await?;
        prompts
            .iter()
            .map(|prompt| convert(&self.connection.server, prompt))
            .collect()
    }

    /// The prompt `name` filled in with `arguments`, as messages to put before a run's input.
    /// Text parts become text; any other part (an image, a resource) is given as its JSON.
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
            .map(|message| {
                let message = serde_json::to_value(message).unwrap_or_default();
                let content = &message["content"];
                let text = match content["text"].as_str() {
                    Some(text) if content["type"] == "text" => text.to_owned(),
                    _ => content.to_string(),
                };
                match message["role"].as_str() {
                    Some("assistant") => Ok(Message::assistant(text)),
                    Some("user") => Ok(Message::user(text)),
                    role => Err(Error::malformed(
                        format!(
                            "MCP server {:?} sent a prompt message with role {role:?}",
                            self.connection.server
                        ),
                        "",
                    )),
                }
            })
            .collect()
    }

    /// The lists the server announces as changed from now on. Under the 2026-07-28 revision this
    /// opens a `subscriptions/listen` stream for the lists whose changes the server says it
    /// announces (once per connection); older servers announce without being asked.
    pub async fn changes(&self) -> Result<McpChanges, Error> {
        let connection = &self.connection;
        let changes = McpChanges::from_now(connection.counts.clone());
        let Some(info) = connection.peer.peer_info() else {
            return Ok(changes);
        };
        if info.protocol_version.has_initialize() {
            return Ok(changes);
        }
        let mut listening = connection.listening.lock().await;
        if *listening {
            return Ok(changes);
        }
        let capabilities = &info.capabilities;
        let tools = capabilities.tools.as_ref().and_then(|tools| tools.list_changed);
        let resources = capabilities
            .resources
            .as_ref()
            .and_then(|resources| resources.list_changed);
        let prompts = capabilities.prompts.as_ref().and_then(|prompts| prompts.list_changed);
        let mut filter = SubscriptionFilter::builder();
        if tools == Some(true) {
            filter = filter.tools_list_changed();
        }
        if resources == Some(true) {
            filter = filter.resources_list_changed();
        }
        if prompts == Some(true) {
            filter = filter.prompts_list_changed();
        }
        let any = [tools, resources, prompts].contains(&Some(true));
        if any {
            let filter = filter.build();
            let subscription = connection
                .request("subscriptions/listen", connection.peer.listen(filter.clone()))
                .await?;
            if let Some(announcements) = connection.announcements.upgrade() {
                tokio::spawn(forward(connection.peer.clone(), filter, subscription, announcements));
            }
        }
        *listening = true;
        Ok(changes)
    }

    /// Ends the connection and stops the server (the tools made from it fail from then on).
    pub async fn close(&self) {
        let service = self
            .connection
            .service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut service) = service {
            let _ = service.close_with_timeout(Duration::from_secs(5)).await;
        }
        let child = self
            .connection
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut child) = child {
            kill_process_group(&child);
            let _ = child.kill().await;
        }
    }
}

/// The start-up kAI tries first: the current revision's `server/discover`, falling back to the
/// `initialize` handshake of 2025-11-25 when the server says it does not know it.
fn probing_lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    }
}

/// The handshake of `lifecycle` over `transport`, within `timeout`; `Err(None)` when out of time.
async fn handshake<T, E, A>(
    transport: T,
    handler: Handler,
    lifecycle: ClientLifecycleMode,
    timeout: Duration,
) -> Result<RunningService<RoleClient, Handler>, Option<ClientInitializeError>>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let service = match tokio::time::timeout(timeout, handler.serve_with_lifecycle(transport, lifecycle)).await {
        Ok(result) => result.map_err(Some)?,
        Err(_) => return Err(None),
    };
    // rmcp keeps listings for a while (and, past their time, in case a later request fails): kAI
    // asks again each time, so that what a server sends is held no longer than it is used.
    service
        .peer()
        .set_response_cache_config(ClientCacheConfig::disabled())
        .await;
    Ok(service)
}

/// A failed start-up in kAI's terms (`None`: out of time).
fn startup_error(program: &str, error: Option<ClientInitializeError>) -> Error {
    let Some(error) = error else {
        return Error::Timeout;
    };
    match error {
        ClientInitializeError::NoCompatibleProtocolVersion { .. } => Error::Unsupported {
            message: format!("MCP server {program:?} speaks no protocol revision kAI knows: {error}"),
        },
        ClientInitializeError::Cancelled => Error::Cancelled,
        ClientInitializeError::JsonRpcError(_) | ClientInitializeError::LegacyFallbackFailed { .. } => Error::Server {
            status: None,
            message: format!("MCP server {program:?} refused the handshake: {error}"),
        },
        _ => Error::Transport {
            message: format!("MCP server {program:?} failed during the handshake: {error}"),
        },
    }
}

/// `url` without what may be a credential (user, password, query), to name the server by.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "an MCP server over HTTP".to_owned(),
    }
}

/// Whether `url` names a loopback host.
fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| {
        let host = url.host_str().unwrap_or_default();
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    })
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub(crate) fn cut_at_char_boundary(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Copies the server's stderr to `tracing`, a chunk at a time, so a chatty server never blocks
/// on a full pipe and never fills memory.
async fn log_stderr(program: String, mut stderr: tokio::process::ChildStderr) {
    let mut buffer = vec![0; 4096];
    while let Ok(read @ 1..) = stderr.read(&mut buffer).await {
        let text = String::from_utf8_lossy(&buffer[..read]);
        tracing::debug!(target: "kai_core::mcp", server = %program, "{}", text.trim_end());
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
