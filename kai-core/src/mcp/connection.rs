//! A live connection to one MCP server: the handshake, requests under timeouts, errors in kAI's
//! terms, the client's side of the protocol, and the server's process.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, SubscriptionFilter,
};
use rmcp::service::{
    ClientCacheConfig, ClientInitializeError, ClientLifecycleMode, ClientServiceExt, NotificationContext, Peer,
    RoleClient, RunningService,
};
use rmcp::{ClientHandler, ServiceError};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

use crate::error::Error;
use crate::mcp::changes::{Announcements, McpChange, McpChanges, announce, forward};
use crate::mcp::offers::convert;
use crate::mcp::options::McpOptions;
use crate::mcp::progress::ProgressRoutes;

/// What the client and its tools share.
pub(crate) struct Connection {
    /// The server's name, for messages: what it calls itself, or the program started.
    pub(crate) server: String,
    pub(crate) peer: Peer<RoleClient>,
    /// The running service; taken out by `close`.
    service: Mutex<Option<RunningService<RoleClient, Handler>>>,
    /// The server's process, when the client started it; killed when dropped or closed.
    child: Mutex<Option<ServerProcess>>,
    /// The counts of announced changes, which the handler (and a listen stream) keep.
    announcements: Weak<Announcements>,
    counts: tokio::sync::watch::Receiver<[u64; 3]>,
    /// Whether a `subscriptions/listen` stream forwards the server's announcements.
    listening: tokio::sync::Mutex<bool>,
    /// Where the server's progress notifications go, by the token each call was sent with.
    pub(crate) progress: Arc<ProgressRoutes>,
    pub(crate) options: McpOptions,
}

impl Connection {
    /// The handshake over `transport`, as [`McpClient::stdio_with`](crate::mcp::McpClient::stdio_with)
    /// describes it.
    pub(crate) async fn open<T, E, A>(transport: T, name: String, options: McpOptions) -> Result<Self, Error>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let handler = Handler::default();
        let service = handshake(transport, handler, probing_lifecycle(), options.startup_timeout)
            .await
            .map_err(|error| startup_error(&name, error))?;
        Ok(Self::new(service, name, options))
    }

    /// [`open`](Self::open) on a transport from `connect`; when the server answers the probe for
    /// the current revision with something that is not an answer to it (a catch-all `{}`, as some
    /// servers give to any method they do not know), once more on a new transport with the
    /// `initialize` handshake alone.
    ///
    /// `connect` gives a transport and the server's process, if it started one (killed when the
    /// connection ends).
    pub(crate) async fn open_afresh<T, E, A>(
        mut connect: impl FnMut() -> Result<(T, Option<ServerProcess>), Error>,
        name: String,
        options: McpOptions,
    ) -> Result<Self, Error>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let started = tokio::time::Instant::now();
        let handler = Handler::default();
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
        let connection = Self::new(service, name, options);
        *connection.child.lock().unwrap_or_else(PoisonError::into_inner) = child;
        Ok(connection)
    }

    /// The connection of `service`, whose handler counts announcements and routes progress.
    fn new(service: RunningService<RoleClient, Handler>, name: String, options: McpOptions) -> Self {
        let handler = service.service();
        let (announcements, progress) = (Arc::clone(&handler.announcements), Arc::clone(&handler.progress));
        let mut server = service
            .peer()
            .peer_info()
            .and_then(|info| info.server_info.as_ref().map(|server| server.name.clone()))
            .filter(|name| !name.is_empty())
            .unwrap_or(name);
        // The server names itself in every message about it: keep the name short.
        server.truncate(server.floor_char_boundary(128));
        let peer = service.peer().clone();
        Self {
            server,
            peer,
            service: Mutex::new(Some(service)),
            child: Mutex::new(None),
            announcements: Arc::downgrade(&announcements),
            counts: announcements.subscribe(),
            listening: tokio::sync::Mutex::new(false),
            progress,
            options,
        }
    }

    /// See [`McpClient::changes`](crate::mcp::McpClient::changes).
    pub(crate) async fn changes(&self) -> Result<McpChanges, Error> {
        let connection = self;
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

    /// See [`McpClient::close`](crate::mcp::McpClient::close).
    pub(crate) async fn close(&self) {
        let service = self.service.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut service) = service {
            let _ = service.close_with_timeout(Duration::from_secs(5)).await;
        }
        let process = self.child.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(process) = process {
            process.kill().await;
        }
    }

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
                let mut reason = error.message.to_string();
                reason.truncate(reason.floor_char_boundary(MAX_ERROR));
                let message = format!("MCP server {server:?} refused {what}: {reason} ({})", error.code.0);
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
    pub(crate) async fn list_all<T: Serialize, Fut>(
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

    /// [`list_all`](Self::list_all), each item read as one of kAI's types of the same wire form.
    pub(crate) async fn list_as<T: Serialize, U: serde::de::DeserializeOwned, Fut>(
        &self,
        what: &str,
        page: impl FnMut(Option<PaginatedRequestParams>) -> Fut,
    ) -> Result<Vec<U>, Error>
    where
        Fut: Future<Output = Result<(Vec<T>, Option<String>), ServiceError>>,
    {
        let items = self.list_all(what, page).await?;
        items.iter().map(|item| convert(&self.server, item)).collect()
    }
}

/// The longest error text from a server passed on, in bytes.
pub(crate) const MAX_ERROR: usize = 4096;

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

/// A server's process, started in a process group of its own: when this is dropped, the whole
/// group is killed (the first process by `kill_on_drop`, the rest here), so that nothing a server
/// started (`npx` and `sh -c` start the real one as their child) outlives it, whether the
/// connection ended or never began.
pub(crate) struct ServerProcess(pub(crate) Child);

impl ServerProcess {
    /// Kills the group and waits for the first process.
    async fn kill(mut self) {
        self.kill_group();
        let _ = self.0.kill().await;
    }

    fn kill_group(&self) {
        #[cfg(unix)]
        if let Some(group) = self
            .0
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// The client's side of the protocol: who it is, the lists the server announces as changed, and the
/// progress it reports on calls (it serves no requests of the server's).
#[derive(Clone)]
pub(crate) struct Handler {
    announcements: Arc<Announcements>,
    progress: Arc<ProgressRoutes>,
}

impl Default for Handler {
    fn default() -> Self {
        Handler {
            announcements: Arc::new(Announcements::new([0; 3])),
            progress: Arc::default(),
        }
    }
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

    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        self.progress.deliver(params);
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

/// Copies the server's stderr to `tracing`, a chunk at a time, so a chatty server never blocks
/// on a full pipe and never fills memory.
pub(crate) async fn log_stderr(program: String, mut stderr: tokio::process::ChildStderr) {
    let mut buffer = vec![0; 4096];
    while let Ok(read @ 1..) = stderr.read(&mut buffer).await {
        let text = String::from_utf8_lossy(&buffer[..read]);
        tracing::debug!(target: "kai_core::mcp", server = %program, "{}", text.trim_end());
    }
}
