//! Hot reload: a configuration file watched, each valid edit swapped in, each invalid one reported.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use notify::{RecursiveMode, Watcher as _};

use crate::config::load::{kai_variables, read_config};
use crate::config::model::KaiConfig;
use crate::error::Error;

/// What happened when the watched file changed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigEvent {
    /// A valid new configuration is now the current one.
    Reloaded {
        /// The new configuration.
        config: Arc<KaiConfig>,
    },
    /// The file changed but does not hold a valid configuration; the previous one stays current.
    Rejected {
        /// Why (an [`Error::InvalidConfig`] naming the path, or an unreadable file).
        error: Error,
    },
}

/// A configuration file kept loaded: edits are noticed (through the operating system's file events),
/// loaded with [`KaiConfig::load`], checked, and swapped in atomically; subscribers hear of each
/// change. An invalid edit keeps the previous configuration and is reported as
/// [`ConfigEvent::Rejected`].
///
/// Editors that save by writing a new file and renaming it over the old one are followed, and so are
/// Kubernetes mounts that swap a link: the directory is watched, not the file. Bursts of events are
/// gathered for [`DEBOUNCE`] before the file is read; a change that leaves the text and the `KAI_*`
/// variables as they were is not a reload. A rejected file is not reported again until it changes.
/// Watching stops when the watcher is dropped. A secret file the configuration references is read
/// where it is used (`SecretRef::resolve`), so rotating one needs no reload.
pub struct ConfigWatcher {
    shared: Arc<Shared>,
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.shared.path)
            .finish()
    }
}

/// How long a burst of file events is gathered before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

struct Shared {
    path: PathBuf,
    current: RwLock<Arc<KaiConfig>>,
    /// What the current configuration was made from, and the last rejected file.
    source: Mutex<Sources>,
    subscribers: Mutex<Vec<UnboundedSender<ConfigEvent>>>,
    /// The program's own check of every configuration.
    check: ConfigCheck,
}

/// A program's own check of a configuration; see [`ConfigWatcher::watch_checked`].
type ConfigCheck = Box<dyn Fn(&KaiConfig) -> Result<(), Error> + Send + Sync>;

struct Sources {
    current: Source,
    /// The last file rejected (`None`: it could not be read), and why: not reported again until it
    /// changes.
    rejected: Option<(Option<Source>, Error)>,
}

/// The file's bytes and the `KAI_*` variables a configuration is made from.
#[derive(PartialEq)]
struct Source {
    bytes: Vec<u8>,
    env: Vec<(String, String)>,
}

impl ConfigWatcher {
    /// Loads the configuration at `path` (an invalid one is an error, as from [`KaiConfig::load`]) and
    /// starts watching it.
    pub fn watch(path: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::watch_checked(path, |_| Ok(()))
    }

    /// [`watch`](Self::watch), with a check of the program's own that every configuration must also
    /// pass (`kai_providers::check_config`, say, for provider kinds): one it refuses is rejected as
    /// an invalid file is.
    pub fn watch_checked(
        path: impl Into<PathBuf>,
        check: impl Fn(&KaiConfig) -> Result<(), Error> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let path = path.into();
        // Watching starts before the first read, so an edit between the two is not missed.
        let (sender, receiver) = std::sync::mpsc::channel::<()>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reading the file is an access event too: those would make every reload start the next.
            // Any other event in the directory may concern the file (a Kubernetes mount swaps a link
            // beside it), and a reload that finds the file as it was changes nothing.
            if !matches!(&event, Ok(event) if matches!(event.kind, notify::EventKind::Access(_))) {
                let _ = sender.send(());
            }
        })
        .map_err(|error| watch_error(&path, &error))?;
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        watcher
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(|error| watch_error(&path, &error))?;
        let source = read_source(&path)?;
        let config = KaiConfig::from_file_bytes(&path, &source.bytes, source.env.clone())?;
        check(&config)?;
        let shared = Arc::new(Shared {
            path,
            current: RwLock::new(Arc::new(config)),
            source: Mutex::new(Sources {
                current: source,
                rejected: None,
            }),
            subscribers: Mutex::new(Vec::new()),
            check: Box::new(check),
        });
        let reloading = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("kai-config-watch".into())
            .spawn(move || reload_on_change(&reloading, &receiver))
            .map_err(|error| Error::Config {
                message: format!("the configuration watcher's thread did not start: {error}"),
            })?;
        Ok(Self {
            shared,
            _watcher: watcher,
        })
    }

    /// The current configuration.
    pub fn current(&self) -> Arc<KaiConfig> {
        Arc::clone(&self.shared.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// A stream of every change from now on. Dropping it unsubscribes.
    pub fn subscribe(&self) -> UnboundedReceiver<ConfigEvent> {
        let (sender, receiver) = unbounded();
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
        receiver
    }

    /// Reads the file now, as an edit would have it read: the new configuration, or the error that
    /// kept the previous one (both also told to subscribers, if anything changed).
    pub fn reload(&self) -> Result<Arc<KaiConfig>, Error> {
        self.shared.reload()
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

/// Waits for file events, gathers each burst, and reloads; ends when the watcher is dropped.
fn reload_on_change(shared: &Shared, events: &Receiver<()>) {
    while events.recv().is_ok() {
        loop {
            match events.recv_timeout(DEBOUNCE) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        // An error was told to subscribers already.
        let _ = shared.reload();
    }
}

impl Shared {
    fn reload(&self) -> Result<Arc<KaiConfig>, Error> {
        let mut sources = self.source.lock().unwrap_or_else(PoisonError::into_inner);
        let read = match read_source(&self.path) {
            Ok(read) => read,
            // The file is gone or unreadable: told once, until something changes.
            Err(error) => {
                let repeated = matches!(&sources.rejected, Some((None, told)) if *told == error);
                if !repeated {
                    sources.rejected = Some((None, error.clone()));
                    self.tell(ConfigEvent::Rejected { error: error.clone() });
                }
                return Err(error);
            }
        };
        if read == sources.current {
            return Ok(self.current());
        }
        if let Some((Some(rejected), error)) = &sources.rejected
            && *rejected == read
        {
            // Rejected already, and told; not again until it changes.
            return Err(error.clone());
        }
        let loaded = KaiConfig::from_file_bytes(&self.path, &read.bytes, read.env.clone())
            .and_then(|config| (self.check)(&config).map(|()| config));
        match loaded {
            Ok(config) => {
                let config = Arc::new(config);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&config);
                sources.current = read;
                sources.rejected = None;
                self.tell(ConfigEvent::Reloaded {
                    config: Arc::clone(&config),
                });
                Ok(config)
            }
            Err(error) => {
                sources.rejected = Some((Some(read), error.clone()));
                self.tell(ConfigEvent::Rejected { error: error.clone() });
                Err(error)
            }
        }
    }

    /// Tells every subscriber still listening.
    fn tell(&self, event: ConfigEvent) {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|subscriber| subscriber.unbounded_send(event.clone()).is_ok());
    }

    fn current(&self) -> Arc<KaiConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The file's bytes and the process's `KAI_*` variables, sorted.
fn read_source(path: &Path) -> Result<Source, Error> {
    Ok(Source {
        bytes: read_config(path)?,
        env: kai_variables(),
    })
}

fn watch_error(path: &Path, error: &notify::Error) -> Error {
    Error::Config {
        message: format!("{} cannot be watched: {error}", path.display()),
    }
}
