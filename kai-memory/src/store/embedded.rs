//! The embedded default store: documents in SQLite (WAL, fully synchronous commits), an HNSW index
//! beside it. No server needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kai_core::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Error;
use crate::index::{HnswConfig, HnswIndex, Metric};
use crate::store::{Document, Filter, MemoryStore, ScoredDocument};
use crate::worker::Worker;
use kai_core::fs::{FileLock, write_atomic};

/// Settings of an [`EmbeddedStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreConfig {
    /// The HNSW index's settings (metric and dimensions included).
    pub index: HnswConfig,
}

impl StoreConfig {
    /// Defaults for this metric and dimension count.
    pub fn new(metric: Metric, dimensions: usize) -> Self {
        Self {
            index: HnswConfig::new(metric, dimensions),
        }
    }
}

/// A store in one directory: `documents.sqlite3` holds every document (the source of truth) and
/// `index.kai` the HNSW index over their embeddings.
///
/// Every write is one SQLite transaction committed with `synchronous=FULL` before it returns, so an
/// acknowledged write survives `kill -9` or a power cut. The index file is saved by
/// [`flush`](Self::flush) and [`close`](Self::close) with the write generation it covers. On opening,
/// an index older than the database (the process ended, or the store was dropped, without saving it)
/// catches up: the rows written, changed or deleted since it was saved are inserted or removed, and
/// only a missing index is built from every stored embedding. Flushing now and then bounds that work
/// after a crash.
///
/// One store at a time has a directory: it holds an exclusive lock on `store.lock` there until it is
/// closed or dropped, and a second open (in this process or another) fails with [`Error::Locked`]
/// rather than writing the same generations and leaving a later open a stale index.
///
/// The [`MemoryStore`] calls never block the caller: they run on the store's own threads, and the
/// returned future completes when the work is done (with any executor: tokio, async-std, or a plain
/// `block_on`). Writes run one after another on one thread; reads (`search`, `get`, `count`) run side
/// by side on up to four more, each with its own read-only SQLite connection, and wait neither for a
/// write's commit nor for each other: only for the moment a write changes the in-memory index. A
/// write that has started completes even if its future is dropped. Dropping the store waits for the
/// calls under way and releases the directory without saving the index (so a drop in a finaliser
/// stays short); [`close`](Self::close) also saves it and says whether that worked.
///
/// Reopening reads the saved index without re-inserting anything; it takes new writes at once.
pub struct EmbeddedStore {
    metric: Metric,
    shared: Arc<Shared>,
    /// Runs writes, one after another.
    writer: Worker,
    /// Runs reads, each thread with a read-only connection.
    readers: Worker<Connection>,
}

/// The state the store's threads work on. A thread that needs both locks takes `writes` first.
struct Shared {
    /// What reads need: held for reading by searches, for writing only while a write changes memory.
    view: RwLock<View>,
    /// What writes need.
    writes: Mutex<Writes>,
    directory: PathBuf,
}

struct View {
    index: HnswIndex,
    /// Metadata by row id, so filters run without touching the database.
    metadata: HashMap<u64, serde_json::Map<String, serde_json::Value>>,
}

struct Writes {
    db: Connection,
    generation: u64,
    index_generation: u64,
    config: StoreConfig,
    /// The directory's lock, released with the store.
    _lock: FileLock,
}

/// Reading threads: enough to keep searches off each other's backs, few enough to stay light.
const READERS: usize = 4;

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("directory", &self.shared.directory)
            .field("documents", &self.shared.view().index.len())
            .finish()
    }
}

fn sql(error: rusqlite::Error) -> Error {
    Error::Database(error.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `directory`. Fails with [`Error::InvalidConfig`] when the
    /// directory holds a store of another metric or dimension count.
    pub fn open(directory: impl AsRef<Path>, config: StoreConfig) -> Result<Self, Error> {
        let directory = directory.as_ref().to_owned();
        std::fs::create_dir_all(&directory).map_err(|e| Error::io(&directory, e))?;
        let lock = FileLock::acquire(&directory.join("store")).map_err(|e| Error::file(&directory, e))?;
        let db = Connection::open(directory.join("documents.sqlite3")).map_err(sql)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS documents (
                 row INTEGER PRIMARY KEY,
                 id TEXT NOT NULL UNIQUE,
                 text TEXT NOT NULL,
                 metadata TEXT NOT NULL,
                 embedding BLOB NOT NULL
             );",
        )
        .map_err(sql)?;
        let shape = format!("{:?}/{}", config.index.metric, config.index.dimensions);
        let stored: Option<String> = db
            .query_row("SELECT value FROM meta WHERE key = 'shape'", [], |row| row.get(0))
            .optional()
            .map_err(sql)?;
        match stored {
            Some(existing) if existing != shape => {
                return Err(Error::InvalidConfig(format!(
                    "the store holds {existing} vectors, not {shape}"
                )));
            }
            Some(_) => {}
            None => {
                db.execute("INSERT INTO meta (key, value) VALUES ('shape', ?1)", params![shape])
                    .map_err(sql)?;
            }
        }
        let generation: u64 = db
            .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |row| {
                row.get::<_, String>(0)
            })
            .optional()
            .map_err(sql)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);

        let mut metadata = HashMap::new();
        {
            let mut statement = db.prepare("SELECT row, metadata FROM documents").map_err(sql)?;
            let mut rows = statement.query([]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let id: i64 = row.get(0).map_err(sql)?;
                let meta: String = row.get(1).map_err(sql)?;
                let meta = serde_json::from_str(&meta).map_err(|_| Error::Corrupt {
                    what: format!("document row {id} has invalid metadata"),
                })?;
                metadata.insert(id as u64, meta);
            }
        }

        let saved_generation = std::fs::read_to_string(directory.join("index.generation"))
            .ok()
            .and_then(|g| g.trim().parse::<u64>().ok());
        // An index of another shape (the directory reused with other settings) is no use.
        let saved = HnswIndex::open(directory.join("index.kai"))
            .ok()
            .filter(|index| index.config().metric == config.index.metric)
            .filter(|index| index.config().dimensions == config.index.dimensions);
        let (index, index_generation) = match saved {
            Some(index) if saved_generation == Some(generation) && index.len() == metadata.len() => (index, generation),
            // Saved before the last writes (the process ended without a flush): catch up on the
            // difference rather than rebuilding.
            Some(index) => (catch_up(&db, index)?.0, u64::MAX),
            None => (catch_up(&db, HnswIndex::new(config.index)?)?.0, u64::MAX),
        };
        let metric = config.index.metric;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(READERS));
        let read_only = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connections = (0..threads)
            .map(|_| Connection::open_with_flags(directory.join("documents.sqlite3"), read_only))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        let shared = Arc::new(Shared {
            view: RwLock::new(View { index, metadata }),
            writes: Mutex::new(Writes {
                db,
                generation,
                index_generation,
                config,
                _lock: lock,
            }),
            directory: directory.clone(),
        });
        let writer = Worker::spawn("kai-store-writer").map_err(|e| Error::io(&directory, e))?;
        let readers = Worker::spawn_pool("kai-store-reader", connections).map_err(|e| Error::io(&directory, e))?;
        Ok(Self {
            metric,
            shared,
            writer,
            readers,
        })
    }

    /// Saves the index beside the database, so the next open need not rebuild it. Blocks the calling
    /// thread while it writes.
    pub fn flush(&self) -> Result<(), Error> {
        self.shared.flush()
    }

    /// Waits for the calls under way, saves the index and releases the directory. Blocks the calling
    /// thread while it writes; an error means only that the next open catches up from the last saved
    /// index (the database holds every write).
    pub fn close(mut self) -> Result<(), Error> {
        self.writer.stop();
        self.readers.stop();
        self.shared.flush()
    }

    /// Runs `work` on the writing thread; the future resolves to its result.
    fn write<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Shared) -> Result<R, Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, Error>> {
        let shared = Arc::clone(&self.shared);
        self.writer.run(move |_| work(&shared))
    }

    /// Runs `work` on a reading thread, with its connection; the future resolves to its result.
    fn read<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Shared, &Connection) -> Result<R, Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<R, Error>> {
        let shared = Arc::clone(&self.shared);
        self.readers.run(move |db| work(&shared, db))
    }
}

impl Shared {
    fn writes(&self) -> MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn upsert_now(&self, documents: &[Document]) -> Result<(), Error> {
        let mut writes = self.writes();
        let config = writes.config.index;
        for document in documents {
            // Check every vector before anything is written.
            config.metric.prepare(&document.embedding, config.dimensions)?;
        }
        let generation = writes.generation + 1;
        let tx = writes.db.transaction().map_err(sql)?;
        let mut rows = Vec::with_capacity(documents.len());
        {
            let mut statement = tx
                .prepare(
                    "INSERT INTO documents (id, text, metadata, embedding) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(id) DO UPDATE SET text = excluded.text, metadata = excluded.metadata,
                     embedding = excluded.embedding RETURNING row",
                )
                .map_err(sql)?;
            for document in documents {
                let metadata = serde_json::Value::Object(document.metadata.clone()).to_string();
                let row: i64 = statement
                    .query_row(
                        params![document.id, document.text, metadata, to_blob(&document.embedding)],
                        |r| r.get(0),
                    )
                    .map_err(sql)?;
                rows.push(row as u64);
            }
        }
        commit_generation(tx, generation)?;
        writes.generation = generation;
        let batch: Vec<(u64, &[f32])> = rows
            .iter()
            .zip(documents)
            .map(|(&row, d)| (row, d.embedding.as_slice()))
            .collect();
        let mut view = self.view_mut();
        view.index.insert_batch(&batch)?;
        for (&row, document) in rows.iter().zip(documents) {
            view.metadata.insert(row, document.metadata.clone());
        }
        Ok(())
    }

    fn delete_now(&self, ids: &[String]) -> Result<usize, Error> {
        let mut writes = self.writes();
        let generation = writes.generation + 1;
        let tx = writes.db.transaction().map_err(sql)?;
        let mut removed = Vec::new();
        {
            let mut statement = tx
                .prepare("DELETE FROM documents WHERE id = ?1 RETURNING row")
                .map_err(sql)?;
            for id in ids {
                if let Some(row) = statement
                    .query_row(params![id], |r| r.get::<_, i64>(0))
                    .optional()
                    .map_err(sql)?
                {
                    removed.push(row as u64);
                }
            }
        }
        commit_generation(tx, generation)?;
        writes.generation = generation;
        let mut view = self.view_mut();
        for row in &removed {
            view.index.remove(*row);
            view.metadata.remove(row);
        }
        Ok(removed.len())
    }

    fn get_now(db: &Connection, id: &str) -> Result<Option<Document>, Error> {
        db.query_row(
            "SELECT id, text, metadata, embedding FROM documents WHERE id = ?1",
            params![id],
            read_document,
        )
        .optional()
        .map_err(sql)?
        .transpose()
    }

    fn search_now(
        &self,
        db: &Connection,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredDocument>, Error> {
        let hits = {
            let view = self.view();
            let accept = |row: u64| match (filter, view.metadata.get(&row)) {
                (None, _) => true,
                (Some(filter), Some(metadata)) => filter.matches(metadata),
                (Some(_), None) => false,
            };
            let ef = view.index.config().ef_search;
            view.index
                .search_with(query, k, ef, filter.map(|_| &accept as &dyn Fn(u64) -> bool))?
        };
        // A row deleted since the search is left out.
        let mut statement = db
            .prepare_cached("SELECT id, text, metadata, embedding FROM documents WHERE row = ?1")
            .map_err(sql)?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            if let Some(document) = statement
                .query_row(params![hit.id as i64], read_document)
                .optional()
                .map_err(sql)?
            {
                out.push(ScoredDocument {
                    document: document?,
                    distance: hit.distance,
                });
            }
        }
        Ok(out)
    }
}

impl Shared {
    /// Saves the index with the generation it covers. Holding the write lock keeps writes out, while
    /// searches go on.
    fn flush(&self) -> Result<(), Error> {
        let mut writes = self.writes();
        if writes.index_generation == writes.generation {
            return Ok(());
        }
        self.view().index.save(self.directory.join("index.kai"))?;
        let generation = self.directory.join("index.generation");
        write_atomic(&generation, writes.generation.to_string().as_bytes()).map_err(|e| Error::file(&generation, e))?;
        writes.index_generation = writes.generation;
        Ok(())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        let writes = self.shared.writes();
        if writes.index_generation != writes.generation {
            tracing::warn!(
                directory = %self.shared.directory.display(),
                "the store was dropped without close(): its index was not saved, and the next open catches up \
                 on the writes since the last save"
            );
        }
    }
}

/// Brings `index` in line with the documents table: inserts the rows it lacks or holds with another
/// embedding, and removes the rows that are gone. Reads every embedding; inserts only the difference.
/// Returns the index with how many rows were inserted and removed.
fn catch_up(db: &Connection, mut index: HnswIndex) -> Result<(HnswIndex, usize, usize), Error> {
    let mut present = std::collections::HashSet::new();
    let mut missing = Vec::new();
    let mut statement = db.prepare("SELECT row, embedding FROM documents").map_err(sql)?;
    let mut rows = statement.query([]).map_err(sql)?;
    while let Some(row) = rows.next().map_err(sql)? {
        let id = row.get::<_, i64>(0).map_err(sql)? as u64;
        let embedding = from_blob(&row.get::<_, Vec<u8>>(1).map_err(sql)?);
        present.insert(id);
        if !index.holds(id, &embedding) {
            missing.push((id, embedding));
        }
    }
    let gone: Vec<u64> = index.ids().filter(|id| !present.contains(id)).collect();
    for &id in &gone {
        index.remove(id);
    }
    index.insert_batch(&missing)?;
    tracing::info!(
        inserted = missing.len(),
        removed = gone.len(),
        "brought the vector index up to date with the documents"
    );
    Ok((index, missing.len(), gone.len()))
}

/// Records the write generation and commits: the generation tells a reopened store whether its saved
/// index covers every write.
fn commit_generation(tx: rusqlite::Transaction<'_>, generation: u64) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('generation', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![generation.to_string()],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)
}

fn read_document(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Document, Error>> {
    let id: String = row.get(0)?;
    let text: String = row.get(1)?;
    let metadata: String = row.get(2)?;
    let blob: Vec<u8> = row.get(3)?;
    Ok(serde_json::from_str(&metadata)
        .map(|metadata| Document {
            id,
            text,
            metadata,
            embedding: from_blob(&blob),
        })
        .map_err(|_| Error::Corrupt {
            what: "a document's metadata is not a JSON object".into(),
        }))
}

fn to_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[kai_core::async_trait]
impl MemoryStore for EmbeddedStore {
    async fn upsert(&self, documents: &[Document]) -> Result<(), Error> {
        let documents = documents.to_vec();
        self.write(move |shared| shared.upsert_now(&documents)).await
    }

    async fn delete(&self, ids: &[String]) -> Result<usize, Error> {
        let ids = ids.to_vec();
        self.write(move |shared| shared.delete_now(&ids)).await
    }

    async fn get(&self, id: &str) -> Result<Option<Document>, Error> {
        let id = id.to_owned();
        self.read(move |_, db| Shared::get_now(db, &id)).await
    }

    async fn search(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredDocument>, Error> {
        let (query, filter) = (query.to_vec(), filter.cloned());
        self.read(move |shared, db| shared.search_now(db, &query, k, filter.as_ref()))
            .await
    }

    async fn count(&self) -> Result<usize, Error> {
        self.read(|shared, _| Ok(shared.view().index.len())).await
    }

    fn metric(&self) -> Metric {
        self.metric
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: u32, x: f32) -> Document {
        Document {
            id: format!("doc-{n}"),
            text: String::new(),
            metadata: serde_json::Map::new(),
            embedding: vec![x, 1.0],
        }
    }

    /// Reads do not queue behind writes: with a write stuck in its commit (the write lock held),
    /// searches, gets and counts still answer, and the write completes once the commit does.
    #[test]
    fn reads_answer_while_a_write_is_committing() {
        use futures::FutureExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), StoreConfig::new(Metric::L2, 2)).unwrap();
        let docs: Vec<Document> = (0..10).map(|n| doc(n, n as f32)).collect();
        futures::executor::block_on(store.upsert(&docs)).unwrap();

        let committing = store.shared.writes();
        let late = [doc(99, 3.1)];
        let mut write = store.upsert(&late);
        // Polled once, the write is queued; it cannot finish while the commit before it holds the lock.
        assert!((&mut write).now_or_never().is_none());
        let (hits, got, count) = futures::executor::block_on(async {
            futures::join!(store.search(&[3.0, 1.0], 2, None), store.get("doc-7"), store.count())
        });
        assert_eq!(hits.unwrap()[0].document.id, "doc-3");
        assert_eq!(got.unwrap().unwrap().embedding, vec![7.0, 1.0]);
        assert_eq!(count.unwrap(), 10);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            (&mut write).now_or_never().is_none(),
            "the write waits for the commit before it"
        );
        drop(committing);
        futures::executor::block_on(write).unwrap();
        let hits = futures::executor::block_on(store.search(&[3.1, 1.0], 1, None)).unwrap();
        assert_eq!(hits[0].document.id, "doc-99");
    }

    #[test]
    fn catching_up_inserts_and_removes_only_what_changed_since_the_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), StoreConfig::new(Metric::L2, 2)).unwrap();
        let docs: Vec<Document> = (0..10).map(|n| doc(n, n as f32)).collect();
        futures::executor::block_on(store.upsert(&docs)).unwrap();
        store.flush().unwrap();
        let saved = HnswIndex::open(dir.path().join("index.kai")).unwrap();
        let changes = [doc(10, 10.0), doc(3, 30.0)];
        futures::executor::block_on(store.upsert(&changes)).unwrap();
        futures::executor::block_on(store.delete(&["doc-4".into()])).unwrap();

        let db = Connection::open(dir.path().join("documents.sqlite3")).unwrap();
        let (index, inserted, removed) = catch_up(&db, saved).unwrap();
        assert_eq!((inserted, removed, index.len()), (2, 1, 10));
        let (index, inserted, removed) = catch_up(&db, index).unwrap();
        assert_eq!((inserted, removed, index.len()), (0, 0, 10));
    }
}
