//! The SQLite file the queue and the scheduler share: opened the same way, used off the async
//! runtime's threads.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::Error;

/// A connection to the jobs file, shared by clones.
#[derive(Debug, Clone)]
pub(crate) struct Database {
    connection: Arc<Mutex<Connection>>,
}

impl Database {
    /// Opens (or creates) the file at `path` in WAL mode with `synchronous=FULL`, and runs `schema`.
    pub(crate) fn open(path: &Path, schema: &str) -> Result<Self, Error> {
        let connection = Connection::open(path)?;
        // Short against a lease's third, so a renewal waiting for another process's write still
        // comes in time.
        connection.busy_timeout(Duration::from_secs(2))?;
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        connection.execute_batch(schema)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection on Tokio's blocking threads.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || work(&mut connection.lock().unwrap_or_else(PoisonError::into_inner)))
            .await
            .map_err(|error| Error::Storage {
                message: format!("the jobs database's thread failed: {error}"),
            })?
    }
}

/// `value` as JSON text, for a column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|error| Error::Storage {
        message: format!("serializing: {error}"),
    })
}

/// Milliseconds since the Unix epoch, as SQLite stores them (0 before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}
