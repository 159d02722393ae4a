//! kai-memory from Python: the encrypted vault, the embedded vector store, embedding models and RAG.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kai_core::EmbeddingModel as _;
use kai_memory::index::{FlatIndex, Hit, HnswConfig, HnswIndex, Metric, Quantization};
use kai_memory::rag::{Ingestor, MarkdownSplitter, RecursiveSplitter, RetrievalTool, Retriever as CoreRetriever};
use kai_memory::store::{Document, EmbeddedStore as CoreStore, Filter, MemoryStore, ScoredDocument, StoreConfig};
use kai_memory::{Kdf, Vault as CoreVault};
use pyo3::prelude::*;
use pyo3::sync::MutexExt as _;
use pyo3::types::PyList;

use crate::bridge::awaitable;
use crate::error::{config_error, memory_error};
use crate::state::{from_python, to_python};
use crate::tool::Tool;

/// The key derivation for a new passphrase: the default (PBKDF2-HMAC-SHA256, 600,000 iterations) or a
/// dict in the vault's own form (`{"alg": "argon2id", "memory_kib": ..., "iterations": ..., "parallelism":
/// ...}` or `{"alg": "pbkdf2-sha256", "iterations": ...}`).
fn kdf(kdf: Option<&Bound<'_, PyAny>>) -> PyResult<Kdf> {
    kdf.map(from_python).transpose().map(Option::unwrap_or_default)
}

/// An encrypted vault of secrets and records (AES-256-GCM under a passphrase-derived key).
///
/// One writer at a time: an open vault holds a lock on the file until `close()` (or the end of a `with`
/// block); opening it again raises `VaultError` with kind `locked`. Key derivation runs without the GIL.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Vault {
    inner: Mutex<Option<CoreVault>>,
}

impl Vault {
    /// The vault's lock, waited for without the GIL (its holder may be deriving a key without it and
    /// need the GIL back).
    fn open_vault(&self) -> PyResult<MutexGuard<'_, Option<CoreVault>>> {
        let guard = Python::attach(|py| self.inner.lock_py_attached(py)).unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(config_error("the vault is closed"));
        }
        Ok(guard)
    }

    fn with<R>(&self, f: impl FnOnce(&mut CoreVault) -> Result<R, kai_memory::Error>) -> PyResult<R> {
        self.with_vault(|vault| f(vault).map_err(|error| memory_error(&error, true)))
    }

    /// Runs `f` on the open vault; `ConfigError` when it is closed.
    pub(crate) fn with_vault<R>(&self, f: impl FnOnce(&mut CoreVault) -> PyResult<R>) -> PyResult<R> {
        let mut guard = self.open_vault()?;
        let vault = guard.as_mut().ok_or_else(|| config_error("the vault is closed"))?;
        f(vault)
    }
}

#[pymethods]
impl Vault {
    /// Creates a vault at `path` (which must not exist) under `passphrase`.
    #[staticmethod]
    #[pyo3(signature = (path, passphrase, *, kdf = None))]
    fn create(py: Python<'_>, path: PathBuf, passphrase: &str, kdf: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let kdf = self::kdf(kdf)?;
        let vault = py
            .detach(|| CoreVault::create(&path, passphrase, kdf))
            .map_err(|error| memory_error(&error, true))?;
        Ok(Self {
            inner: Mutex::new(Some(vault)),
        })
    }

    /// Opens the vault at `path`; a wrong passphrase raises `VaultError` with kind `wrong_passphrase`.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf, passphrase: &str) -> PyResult<Self> {
        let vault = py
            .detach(|| CoreVault::open(&path, passphrase))
            .map_err(|error| memory_error(&error, true))?;
        Ok(Self {
            inner: Mutex::new(Some(vault)),
        })
    }

    /// Stores a secret (an API key, a token), replacing one of the same name.
    fn put_secret(&self, name: &str, value: &str) -> PyResult<()> {
        self.with(|vault| vault.put_secret(name, value))
    }

    /// A secret's value, or `None`.
    fn secret(&self, name: &str) -> PyResult<Option<String>> {
        self.with(|vault| vault.secret(name))
            .map(|secret| secret.map(|secret| secret.expose().to_owned()))
    }

    /// Stores a record: any JSON-like value (dicts, lists, strings, numbers).
    fn put_record(&self, name: &str, record: &Bound<'_, PyAny>) -> PyResult<()> {
        let record: serde_json::Value = from_python(record)?;
        self.with(|vault| vault.put_record(name, &record))
    }

    /// A record, or `None`.
    fn record<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let record: Option<serde_json::Value> = self.with(|vault| vault.record(name))?;
        record.map(|record| to_python(py, &record)).transpose()
    }

    /// Removes a secret or record; returns whether it existed.
    fn remove(&self, name: &str) -> PyResult<bool> {
        self.with(|vault| vault.remove(name))
    }

    /// The names of the secrets.
    fn secret_names(&self) -> PyResult<Vec<String>> {
        self.with(|vault| Ok(vault.secret_names().map(str::to_owned).collect()))
    }

    /// The names of the records.
    fn record_names(&self) -> PyResult<Vec<String>> {
        self.with(|vault| Ok(vault.record_names().map(str::to_owned).collect()))
    }

    /// Re-seals the vault under a new passphrase.
    #[pyo3(signature = (new_passphrase, *, kdf = None))]
    fn change_passphrase(&self, py: Python<'_>, new_passphrase: &str, kdf: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let kdf = self::kdf(kdf)?;
        let mut guard = self.open_vault()?;
        let vault = guard.as_mut().ok_or_else(|| config_error("the vault is closed"))?;
        py.detach(|| vault.change_passphrase(new_passphrase, kdf))
            .map_err(|error| memory_error(&error, true))
    }

    /// Writes a backup to `path` under its own passphrase (and its own keys: the backup's passphrase
    /// opens nothing of this vault).
    #[pyo3(signature = (path, passphrase, *, kdf = None))]
    fn export(&self, py: Python<'_>, path: PathBuf, passphrase: &str, kdf: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let kdf = self::kdf(kdf)?;
        let guard = self.open_vault()?;
        let vault = guard.as_ref().ok_or_else(|| config_error("the vault is closed"))?;
        py.detach(|| vault.export(&path, passphrase, kdf))
            .map_err(|error| memory_error(&error, true))
    }

    /// Takes in every entry of a backup (all or nothing); returns how many.
    fn import_backup(&self, py: Python<'_>, path: PathBuf, passphrase: &str) -> PyResult<usize> {
        let mut guard = self.open_vault()?;
        let vault = guard.as_mut().ok_or_else(|| config_error("the vault is closed"))?;
        py.detach(|| vault.import(&path, passphrase))
            .map_err(|error| memory_error(&error, true))
    }

    /// Closes the vault and releases its lock; later calls raise `ConfigError`.
    fn close(&self, py: Python<'_>) {
        self.inner
            .lock_py_attached(py)
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _kind: Py<PyAny>, _value: Py<PyAny>, _traceback: Py<PyAny>) {
        self.close(py);
    }
}

/// The most dimensions a test embedding or a store accepts from Python (the largest models use 4,096).
const MAX_DIMENSIONS: usize = 65_536;

/// A model that turns texts into vectors, chosen by a spec string (`"openai:text-embedding-3-small"`,
/// `"ollama:nomic-embed-text"`), producing vectors of `dimensions`.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct EmbeddingModel {
    inner: Arc<dyn kai_core::EmbeddingModel>,
}

#[pymethods]
impl EmbeddingModel {
    #[new]
    fn new(spec: &str, dimensions: usize) -> PyResult<Self> {
        kai_providers::embedding_model_from_str(spec, dimensions)
            .map(|inner| Self { inner })
            .map_err(|error| crate::error::core_error(&error))
    }

    /// A deterministic model for tests: similar texts get close vectors, with no network or model file.
    #[staticmethod]
    fn hashing(dimensions: usize) -> PyResult<Self> {
        if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
            return Err(config_error(format!(
                "an embedding has 1 to {MAX_DIMENSIONS} dimensions"
            )));
        }
        Ok(Self {
            inner: Arc::new(kai_core::testing::HashEmbedder::new(dimensions)),
        })
    }

    /// The length of the vectors.
    #[getter]
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    /// The vectors of `texts`; an awaitable of a list of lists of floats.
    fn embed<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let model = Arc::clone(&self.inner);
        let embed = async move { kai_core::embed_all(model.as_ref(), &texts).await };
        awaitable(py, embed, |py, vectors| match vectors {
            Ok(vectors) => to_python(py, &vectors),
            Err(error) => Err(crate::error::core_error(&error)),
        })
    }
}

/// A vector store in a local directory: documents with text, metadata and embeddings, an HNSW index,
/// and SQLite underneath. Searches take a metadata filter.
///
/// `close()` (or the end of a `with` block) saves the index and releases the directory; methods are
/// awaitables.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct EmbeddedStore {
    inner: Mutex<Option<Arc<CoreStore>>>,
}

impl EmbeddedStore {
    fn store(&self) -> PyResult<Arc<CoreStore>> {
        Python::attach(|py| self.inner.lock_py_attached(py))
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| config_error("the store is closed"))
    }
}

/// A filter from Python, in either form [`Filter::from_json`] reads.
fn filter(filter: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Filter>> {
    filter
        .map(|filter| Filter::from_json(from_python(filter)?).map_err(|error| memory_error(&error, false)))
        .transpose()
}

/// Search results as dicts: `id`, `text`, `metadata`, `distance` (lower is closer).
fn scored<'py>(py: Python<'py>, results: Vec<ScoredDocument>) -> PyResult<Bound<'py, PyAny>> {
    let results: Vec<serde_json::Value> = results
        .into_iter()
        .map(|result| {
            serde_json::json!({
                "id": result.document.id,
                "text": result.document.text,
                "metadata": result.document.metadata,
                "distance": result.distance,
            })
        })
        .collect();
    to_python(py, &results)
}

#[pymethods]
impl EmbeddedStore {
    /// Opens (or creates) the store in `directory` for vectors of `dimensions` under `metric`
    /// (`"cosine"`, `"dot"` or `"l2"`), its index searching on vectors compressed by `quantization`
    /// (`"none"`, `"int8"`, `"int4"` or `"pq<subspaces>"`).
    #[new]
    #[pyo3(signature = (directory, dimensions, *, metric = "cosine", quantization = "none"))]
    fn new(py: Python<'_>, directory: PathBuf, dimensions: usize, metric: &str, quantization: &str) -> PyResult<Self> {
        if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
            return Err(config_error(format!(
                "a store's vectors have 1 to {MAX_DIMENSIONS} dimensions"
            )));
        }
        let mut config = StoreConfig::new(parse_metric(metric)?, dimensions);
        config.index.quantization = quantization.parse().map_err(|error| memory_error(&error, false))?;
        let store = py
            .detach(|| CoreStore::open(&directory, config))
            .map_err(|error| memory_error(&error, false))?;
        Ok(Self {
            inner: Mutex::new(Some(Arc::new(store))),
        })
    }

    /// Inserts or replaces documents: dicts with `id`, `text`, `embedding` and optional `metadata`.
    fn upsert<'py>(&self, py: Python<'py>, documents: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyAny>> {
        let documents: Vec<Document> = from_python(documents.as_any())?;
        let store = self.store()?;
        let upsert = async move { store.upsert(&documents).await };
        awaitable(py, upsert, |py, done| {
            done.map_err(|error| memory_error(&error, false))?;
            Ok(py.None().into_bound(py))
        })
    }

    /// The `k` documents nearest `query` among those `where` accepts.
    #[pyo3(signature = (query, k, *, r#where = None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: Vec<f32>,
        k: usize,
        r#where: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let filter = filter(r#where)?;
        let store = self.store()?;
        let search = async move { store.search(&query, k, filter.as_ref()).await };
        awaitable(py, search, |py, results| {
            scored(py, results.map_err(|error| memory_error(&error, false))?)
        })
    }

    /// The document with this id (a dict with its embedding), or `None`.
    fn get<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store()?;
        let get = async move { store.get(&id).await };
        awaitable(py, get, |py, document| {
            match document.map_err(|error| memory_error(&error, false))? {
                Some(document) => to_python(py, &document),
                None => Ok(py.None().into_bound(py)),
            }
        })
    }

    /// Deletes documents by id; returns how many existed.
    fn delete<'py>(&self, py: Python<'py>, ids: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store()?;
        let delete = async move { store.delete(&ids).await };
        awaitable(py, delete, |py, deleted| {
            let deleted = deleted.map_err(|error| memory_error(&error, false))?;
            Ok(deleted.into_pyobject(py)?.into_any())
        })
    }

    /// How many documents the store holds.
    fn count<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store()?;
        let count = async move { store.count().await };
        awaitable(py, count, |py, count| {
            let count = count.map_err(|error| memory_error(&error, false))?;
            Ok(count.into_pyobject(py)?.into_any())
        })
    }

    /// Saves the index and releases the directory, without the GIL; later calls raise `ConfigError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let store = self
            .inner
            .lock_py_attached(py)
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(store) = store {
            py.detach(|| match Arc::try_unwrap(store) {
                Ok(store) => store.close(),
                // A retriever still holds it: save now; the last holder releases the directory.
                Err(shared) => shared.flush(),
            })
            .map_err(|error| memory_error(&error, false))?;
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _kind: Py<PyAny>, _value: Py<PyAny>, _traceback: Py<PyAny>) -> PyResult<()> {
        self.close(py)
    }
}

/// Retrieval-augmented generation over a store: ingest texts (split, embedded, stored idempotently)
/// and retrieve the chunks nearest a query, directly or as a tool for an agent.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Retriever {
    store: Arc<dyn MemoryStore>,
    embedder: Arc<dyn kai_core::EmbeddingModel>,
    retriever: CoreRetriever,
}

#[pymethods]
impl Retriever {
    #[new]
    #[pyo3(signature = (store, embedder, *, top_k = 4, max_distance = None, mmr = None, r#where = None))]
    fn new(
        store: &Bound<'_, EmbeddedStore>,
        embedder: &Bound<'_, EmbeddingModel>,
        top_k: usize,
        max_distance: Option<f32>,
        mmr: Option<f32>,
        r#where: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let store: Arc<dyn MemoryStore> = store.get().store()?;
        let embedder = Arc::clone(&embedder.get().inner);
        let mut retriever = CoreRetriever::new(Arc::clone(&store), Arc::clone(&embedder)).top_k(top_k);
        if let Some(distance) = max_distance {
            retriever = retriever.max_distance(distance);
        }
        if let Some(lambda) = mmr {
            retriever = retriever.mmr(lambda);
        }
        if let Some(filter) = filter(r#where)? {
            retriever = retriever.filter(filter);
        }
        Ok(Self {
            store,
            embedder,
            retriever,
        })
    }

    /// Splits `text` (Markdown by headings when `markdown`), embeds the chunks and stores them as
    /// `source`; an awaitable of a dict of counts (`chunks`, `written`, `unchanged`, `removed`).
    #[pyo3(signature = (source, text, *, metadata = None, chunk_size = 800, overlap = 100, markdown = false))]
    #[allow(clippy::too_many_arguments)]
    fn ingest<'py>(
        &self,
        py: Python<'py>,
        source: String,
        text: String,
        metadata: Option<&Bound<'py, PyAny>>,
        chunk_size: usize,
        overlap: usize,
        markdown: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let metadata: serde_json::Map<String, serde_json::Value> =
            metadata.map(from_python).transpose()?.unwrap_or_default();
        let ingestor = Ingestor::new(Arc::clone(&self.store), Arc::clone(&self.embedder));
        let runtime = pyo3_async_runtimes::tokio::get_runtime().handle().clone();
        // The compiler cannot prove ingestion's future `Send` for every lifetime, so it runs on a
        // blocking thread of its own, driven by the runtime's handle.
        let ingest = runtime.clone().spawn_blocking(move || {
            runtime.block_on(async {
                if markdown {
                    let splitter = MarkdownSplitter::new(chunk_size, overlap);
                    ingestor.ingest_text(&source, &text, &splitter, &metadata).await
                } else {
                    let splitter = RecursiveSplitter::new(chunk_size, overlap);
                    ingestor.ingest_text(&source, &text, &splitter, &metadata).await
                }
            })
        });
        awaitable(py, ingest, |py, report| {
            let report = report
                .map_err(|error| crate::error::KaiError::new_err(format!("ingestion stopped: {error}")))?
                .map_err(|error| memory_error(&error, false))?;
            to_python(py, &report)
        })
    }

    /// The chunks nearest `query`, as search result dicts; an awaitable.
    fn retrieve<'py>(&self, py: Python<'py>, query: String) -> PyResult<Bound<'py, PyAny>> {
        let retriever = self.retriever.clone();
        let retrieve = async move { retriever.retrieve(&query).await };
        awaitable(py, retrieve, |py, results| {
            scored(py, results.map_err(|error| memory_error(&error, false))?)
        })
    }

    /// This retriever as a tool an agent calls with a query.
    #[pyo3(signature = (name = "search_documents", description = "Searches the documents for passages about a query."))]
    fn as_tool(&self, name: &str, description: &str) -> Tool {
        Tool {
            inner: Arc::new(RetrievalTool::new(self.retriever.clone(), name, description)),
        }
    }
}

/// The index behind a [`VectorIndex`].
enum Index {
    Exact(FlatIndex),
    Graph(HnswIndex),
}

impl Index {
    fn insert_batch(&mut self, items: &[(u64, Vec<f32>)]) -> Result<(), kai_memory::Error> {
        match self {
            Index::Exact(index) => index.insert_batch(items),
            Index::Graph(index) => index.insert_batch(items),
        }
    }

    fn search(&self, query: &[f32], k: usize, ef: Option<usize>) -> Result<Vec<Hit>, kai_memory::Error> {
        match (self, ef) {
            (Index::Exact(index), _) => index.search(query, k),
            (Index::Graph(index), None) => index.search(query, k),
            (Index::Graph(index), Some(ef)) => index.search_with(query, k, ef, None),
        }
    }
}

/// A vector index in memory, saved to and opened from a file: `"hnsw"` (approximate, a graph) or
/// `"flat"` (exact). Ids are integers; searches return `(id, distance)` pairs, nearest first. Inserts,
/// searches, saves and opens run without the GIL.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct VectorIndex {
    inner: std::sync::RwLock<Index>,
}

#[pymethods]
impl VectorIndex {
    #[new]
    #[pyo3(signature = (dimensions, *, metric = "cosine", kind = "hnsw", m = 16, ef_construction = 200, ef_search = 64, quantization = "none"))]
    fn new(
        dimensions: usize,
        metric: &str,
        kind: &str,
        m: usize,
        ef_construction: usize,
        ef_search: usize,
        quantization: &str,
    ) -> PyResult<Self> {
        if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
            return Err(config_error(format!("vectors have 1 to {MAX_DIMENSIONS} dimensions")));
        }
        let metric = parse_metric(metric)?;
        let quantization: Quantization = quantization.parse().map_err(|error| memory_error(&error, false))?;
        let index = match kind {
            "flat" if quantization != Quantization::None => {
                return Err(config_error(
                    "a flat index searches full vectors: quantization is for hnsw",
                ));
            }
            "flat" => FlatIndex::new(metric, dimensions).map(Index::Exact),
            "hnsw" => HnswIndex::new(HnswConfig {
                m,
                ef_construction,
                ef_search,
                quantization,
                ..HnswConfig::new(metric, dimensions)
            })
            .map(Index::Graph),
            other => return Err(config_error(format!("unknown index kind {other:?}: hnsw or flat"))),
        }
        .map_err(|error| memory_error(&error, false))?;
        Ok(Self {
            inner: std::sync::RwLock::new(index),
        })
    }

    /// Opens an index saved by `save` (either kind); a damaged or crafted file raises `StoreError`.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let index = py
            .detach(|| match HnswIndex::open(&path) {
                Ok(graph) => Ok(Index::Graph(graph)),
                // Not an HNSW file: a flat one, or else the HNSW reading's error says what is wrong.
                Err(graph_error) => FlatIndex::open(&path).map(Index::Exact).map_err(|_| graph_error),
            })
            .map_err(|error| memory_error(&error, false))?;
        Ok(Self {
            inner: std::sync::RwLock::new(index),
        })
    }

    /// Adds or replaces vectors by id: all or nothing, a bad vector changes nothing.
    fn add(&self, py: Python<'_>, ids: Vec<u64>, vectors: Vec<Vec<f32>>) -> PyResult<()> {
        if ids.len() != vectors.len() {
            return Err(config_error(format!("{} ids for {} vectors", ids.len(), vectors.len())));
        }
        let items: Vec<(u64, Vec<f32>)> = ids.into_iter().zip(vectors).collect();
        py.detach(|| self.write().insert_batch(&items))
            .map_err(|error| memory_error(&error, false))
    }

    /// Removes the vector of `id`; returns whether there was one.
    fn remove(&self, py: Python<'_>, id: u64) -> bool {
        py.detach(|| match &mut *self.write() {
            Index::Exact(index) => index.remove(id),
            Index::Graph(index) => index.remove(id),
        })
    }

    /// The `k` nearest `(id, distance)` pairs; `ef` widens an HNSW search's beam for better recall.
    #[pyo3(signature = (query, k, *, ef = None))]
    fn search(&self, py: Python<'_>, query: Vec<f32>, k: usize, ef: Option<usize>) -> PyResult<Vec<(u64, f32)>> {
        let hits = py
            .detach(|| self.read().search(&query, k, ef))
            .map_err(|error| memory_error(&error, false))?;
        Ok(hits.into_iter().map(|hit| (hit.id, hit.distance)).collect())
    }

    /// Writes the index to `path` atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| match &*self.read() {
            Index::Exact(index) => index.save(&path),
            Index::Graph(index) => index.save(&path),
        })
        .map_err(|error| memory_error(&error, false))
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        py.detach(|| match &*self.read() {
            Index::Exact(index) => index.len(),
            Index::Graph(index) => index.len(),
        })
    }
}

impl VectorIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `"cosine"`, `"dot"` or `"l2"`.
fn parse_metric(metric: &str) -> PyResult<Metric> {
    serde_json::from_value(serde_json::Value::from(metric))
        .map_err(|_| config_error(format!("unknown metric {metric:?}: cosine, dot or l2")))
}
