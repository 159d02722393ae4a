//! Plugins: MCP servers declared in a configuration file, started, supervised and restarted with
//! backoff, and loaded or unloaded when the file changes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cancel::CancellationToken;
use crate::error::Error;
use crate::mcp::client::McpClient;
use crate::mcp::options::McpOptions;
use crate::tool::ToolSet;

/// The variables of the host's environment a plugin started as a program gets.
const INHERITED_ENV: [&str; 8] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM", "SHELL"];

/// The largest configuration file read, in bytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The longest wait between two attempts to start a plugin.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long a plugin must have run for its next failure to count as the first again.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The configuration file: the `mcpServers` object other MCP hosts use too.
///
/// ```json
/// {
///   "mcpServers": {
///     "files": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"] },
///     "search": { "url": "https://mcp.example.org/mcp", "bearerToken": "..." }
///   }
/// }
/// ```
#[derive(Deserialize)]
struct PluginsFile {
    #[serde(rename = "mcpServers")]
    servers: BTreeMap<String, PluginSpec>,
}

/// How to reach one plugin: a program to start, or a URL. Its environment and token stay out of
/// `Debug` output.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum PluginSpec {
    /// Started as a subprocess, spoken to over its stdin and stdout.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default)]
        cwd: Option<PathBuf>,
    },
    /// Reached over Streamable HTTP.
    Http {
        url: String,
        #[serde(default, rename = "bearerToken")]
        bearer_token: Option<String>,
    },
}

impl PluginSpec {
    /// A client connected to the plugin, its tool names prefixed by `name`.
    async fn connect(&self, name: &str, options: &McpOptions) -> Result<McpClient, Error> {
        let mut options = options.clone().with_tool_prefix(name);
        // A token is the plugin's own, never the host's.
        options.bearer_token = None;
        match self {
            PluginSpec::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut process = std::process::Command::new(command);
                // The host's environment (its keys among it) stays with the host: a plugin gets
                // what a program needs to run, and what its entry gives it.
                process.env_clear();
                for key in INHERITED_ENV {
                    if let Some(value) = std::env::var_os(key) {
                        process.env(key, value);
                    }
                }
                process.args(args).envs(env);
                if let Some(cwd) = cwd {
                    process.current_dir(cwd);
                }
                McpClient::stdio_with(process, options).await
            }
            PluginSpec::Http { url, bearer_token } => {
                let options = match bearer_token {
                    Some(token) => options.with_bearer_token(token.clone()),
                    None => options,
                };
                McpClient::http_with(url, options).await
            }
        }
    }
}

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PluginState {
    /// Its first start is under way.
    Starting,
    /// Connected; its tools are in [`PluginHost::tool_set`].
    Running,
    /// It stopped or failed to start, and is started again after a backoff.
    Restarting,
}

/// What [`PluginHost::status`] says of one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PluginStatus {
    /// Its name in the configuration, which prefixes its tools' names.
    pub name: String,
    /// Where it is.
    pub state: PluginState,
    /// How many tools it offers while running.
    pub tools: usize,
    /// How many times it was started again after stopping or failing.
    pub restarts: u32,
    /// Why it last stopped or failed, if it did.
    pub last_error: Option<String>,
}

/// A running plugin's state, as its supervisor keeps it.
struct Slot {
    status: PluginStatus,
    tools: ToolSet,
    /// Whether its first start has been tried.
    tried: bool,
}

/// What the host and its tasks share.
#[derive(Default)]
struct Shared {
    slots: Mutex<BTreeMap<String, Slot>>,
    /// Each plugin's configuration and the token that stops its supervisor.
    running: Mutex<HashMap<String, (PluginSpec, CancellationToken)>>,
    /// Why the configuration file was last refused, if it was.
    config_error: Mutex<Option<String>>,
}

impl Shared {
    /// Changes the slot of `name`, unless its supervisor was stopped (a successor may hold it).
    fn update(&self, name: &str, supervisor: &CancellationToken, change: impl FnOnce(&mut Slot)) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if supervisor.is_cancelled() {
            return;
        }
        if let Some(slot) = slots.get_mut(name) {
            change(slot);
        }
    }
}

/// MCP servers declared in a configuration file (the `mcpServers` object of other MCP hosts), as
/// plugins: each is started (a program over stdio, or a URL over Streamable HTTP), its tools offered
/// under its name (`files` makes `read` into `files_read`), restarted with backoff (1 s, doubling
/// to 30 s) when it stops or fails, and, when the file changes, started, stopped or restarted to
/// match it. A file that does not parse is refused and the plugins keep running as they are.
///
/// Runs in flight are not disturbed: a run holds the tools it was given, and a plugin unloaded or
/// restarted meanwhile stays connected until they are dropped. Build each run's agent from
/// [`tool_set`](Self::tool_set) to give it the plugins of the moment.
///
/// Dropping the last clone stops the supervision.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.status()).finish()
    }
}

impl PluginHost {
    /// Starts the plugins `config` declares, each with `options` (which also bound their first
    /// start: this returns once each has started or failed to), reads the file for changes every
    /// `poll` (a second is a good choice), and pings each plugin every ten polls: one that misses
    /// two pings in a row (each given ten polls) is started again.
    ///
    /// Fails with [`Error::Config`] when the file cannot be read or does not parse.
    pub async fn start(config: impl Into<PathBuf>, options: McpOptions, poll: Duration) -> Result<Self, Error> {
        let path = config.into();
        let (seen, servers) = read_config_off_runtime(path.clone()).await?;
        // The host exists before anything starts, so that dropping `start` stops what it started.
        let host = Self {
            inner: Arc::new(HostInner {
                shared: Arc::new(Shared::default()),
                stop: CancellationToken::new(),
            }),
        };
        let (shared, stop) = (&host.inner.shared, &host.inner.stop);
        apply(shared, servers, &options, poll, stop);
        tokio::spawn(watch(
            path,
            seen,
            Arc::clone(shared),
            options.clone(),
            poll,
            stop.clone(),
        ));
        let patience = options.startup_timeout.saturating_add(options.request_timeout);
        let deadline = tokio::time::Instant::now().checked_add(patience);
        while !all_tried(shared) && deadline.is_none_or(|deadline| tokio::time::Instant::now() < deadline) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(host)
    }

    /// The tools of every plugin running now.
    pub fn tool_set(&self) -> ToolSet {
        let mut set = ToolSet::new();
        for slot in self
            .inner
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            // Plugin names hold no `_`, so `<plugin>_<tool>` names are each plugin's own.
            if let Err(error) = set.extend(&slot.tools) {
                tracing::warn!(target: "kai_core::mcp", plugin = %slot.status.name, %error, "MCP plugin tools left out");
            }
        }
        set
    }

    /// Every plugin's state, by name.
    pub fn status(&self) -> Vec<PluginStatus> {
        let slots = self.inner.shared.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.values().map(|slot| slot.status.clone()).collect()
    }

    /// Why the configuration file was last refused, while it stays refused.
    pub fn config_error(&self) -> Option<String> {
        self.inner
            .shared
            .config_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn all_tried(shared: &Shared) -> bool {
    shared
        .slots
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .all(|slot| slot.tried)
}

/// A fingerprint of the file's contents, to notice a change.
type Seen = u64;

fn fingerprint(bytes: &[u8]) -> Seen {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// [`read_config`] on a blocking thread (a file may be slow to read).
async fn read_config_off_runtime(path: PathBuf) -> Result<(Seen, BTreeMap<String, PluginSpec>), Error> {
    tokio::task::spawn_blocking(move || read_config(&path))
        .await
        .unwrap_or_else(|error| {
            Err(Error::Config {
                message: format!("reading the plugin configuration failed: {error}"),
            })
        })
}

/// The configuration at `path`, checked: a regular file of at most [`MAX_CONFIG_BYTES`], naming
/// plugins in characters fit to prefix tool names.
fn read_config(path: &Path) -> Result<(Seen, BTreeMap<String, PluginSpec>), Error> {
    use std::io::Read as _;
    let refuse = |message: String| Error::Config {
        message: format!("plugin configuration {}: {message}", path.display()),
    };
    let file = std::fs::File::open(path).map_err(|error| refuse(error.to_string()))?;
    let is_file = file.metadata().map_err(|error| refuse(error.to_string()))?.is_file();
    if !is_file {
        return Err(refuse("not a regular file".to_owned()));
    }
    let mut text = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|error| refuse(error.to_string()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(refuse(format!("over the {MAX_CONFIG_BYTES} bytes read")));
    }
    let file: PluginsFile = serde_json::from_slice(&text).map_err(|error| refuse(error.to_string()))?;
    for name in file.servers.keys() {
        let fit = !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !fit {
            return Err(refuse(format!(
                "plugin name {name:?}: use 1-32 characters of a-z, A-Z, 0-9 and '-' ('_' joins it to its tools' names)"
            )));
        }
    }
    Ok((fingerprint(&text), file.servers))
}

/// Starts, stops and restarts supervisors so that the running plugins are `servers`.
fn apply(
    shared: &Arc<Shared>,
    servers: BTreeMap<String, PluginSpec>,
    options: &McpOptions,
    poll: Duration,
    stop: &CancellationToken,
) {
    let mut running = shared.running.lock().unwrap_or_else(PoisonError::into_inner);
    let stale: Vec<String> = running
        .iter()
        .filter(|(name, (spec, _))| servers.get(*name) != Some(spec))
        .map(|(name, _)| name.clone())
        .collect();
    for name in stale {
        if let Some((_, supervisor)) = running.remove(&name) {
            supervisor.cancel();
        }
        shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
    }
    for (name, spec) in servers {
        if running.contains_key(&name) {
            continue;
        }
        let supervisor = stop.child_token();
        let slot = Slot {
            status: PluginStatus {
                name: name.clone(),
                state: PluginState::Starting,
                tools: 0,
                restarts: 0,
                last_error: None,
            },
            tools: ToolSet::new(),
            tried: false,
        };
        shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), slot);
        running.insert(name.clone(), (spec.clone(), supervisor.clone()));
        tokio::spawn(supervise(
            name,
            spec,
            options.clone(),
            poll,
            Arc::clone(shared),
            supervisor,
        ));
    }
}

/// Keeps one plugin running until `stop`: starts it, offers its tools, and when it stops or fails,
/// starts it again after a backoff.
async fn supervise(
    name: String,
    spec: PluginSpec,
    options: McpOptions,
    poll: Duration,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut failures = 0_u32;
    loop {
        let started = tokio::time::Instant::now();
        let attempt = async {
            let client = spec.connect(&name, &options).await?;
            let tools = client.tool_set().await?;
            Ok::<_, Error>((client, tools))
        };
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            attempt = attempt => attempt,
        };
        let error = match attempt {
            Ok((client, tools)) => {
                shared.update(&name, &stop, |slot| {
                    slot.status.state = PluginState::Running;
                    slot.status.tools = tools.len();
                    slot.tools = tools;
                    slot.tried = true;
                });
                // Watched until it ends, or stops answering pings twice in a row.
                let health = poll.saturating_mul(10);
                let mut missed = 0;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = client.closed() => break "the server stopped".to_owned(),
                        () = tokio::time::sleep(health) => {
                            let answered = tokio::time::timeout(health, client.ping()).await;
                            missed = if matches!(answered, Ok(Ok(()))) { 0 } else { missed + 1 };
                            if missed == 2 {
                                break "the server stopped answering pings".to_owned();
                            }
                        }
                    }
                }
            }
            Err(error) => error.to_string(),
        };
        tracing::warn!(target: "kai_core::mcp", plugin = %name, %error, "MCP plugin stopped; starting it again");
        failures = if started.elapsed() >= STABLE_AFTER {
            1
        } else {
            failures + 1
        };
        shared.update(&name, &stop, |slot| {
            slot.status.state = PluginState::Restarting;
            slot.status.tools = 0;
            slot.status.last_error = Some(error);
            slot.tools = ToolSet::new();
            slot.tried = true;
        });
        let backoff = Duration::from_secs(1 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        shared.update(&name, &stop, |slot| slot.status.restarts += 1);
    }
}

/// Applies the configuration at `path` each time it changes, until `stop`: the file is read every
/// `poll`, and a change is a change of its contents.
async fn watch(
    path: PathBuf,
    mut seen: Seen,
    shared: Arc<Shared>,
    options: McpOptions,
    poll: Duration,
    stop: CancellationToken,
) {
    let mut refused: Option<String> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
        }
        match read_config_off_runtime(path.clone()).await {
            Ok((now, servers)) => {
                *shared.config_error.lock().unwrap_or_else(PoisonError::into_inner) = None;
                refused = None;
                if now != seen {
                    seen = now;
                    apply(&shared, servers, &options, poll, &stop);
                }
            }
            Err(error) => {
                let error = error.to_string();
                if refused.as_ref() != Some(&error) {
                    tracing::warn!(target: "kai_core::mcp", %error, "plugin configuration refused; plugins keep running as they are");
                }
                *shared.config_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
                refused = Some(error);
            }
        }
    }
}
