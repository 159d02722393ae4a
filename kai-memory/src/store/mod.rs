//! Document stores: text, metadata and an embedding per document, searched by similarity with
//! metadata filters.

#[cfg(all(feature = "config", not(target_arch = "wasm32")))]
mod configured;
#[cfg(not(target_arch = "wasm32"))]
mod embedded;
mod filter;
#[cfg(feature = "postgres")]
mod postgres;

use serde::{Deserialize, Serialize};

use kai_core::{MaybeSend, MaybeSync};

/// The distance a store ranks by, here too since [`StoreConfig`] and [`MemoryStore::metric`] take it.
pub use crate::index::Metric;
#[cfg(all(feature = "config", not(target_arch = "wasm32")))]
pub use configured::{ConfiguredStore, store_from_config};
#[cfg(not(target_arch = "wasm32"))]
pub use embedded::{EmbeddedStore, StoreConfig};
pub use filter::Filter;
#[cfg(feature = "postgres")]
pub use postgres::{CALL_TIMEOUT, CONNECT_TIMEOUT, POOL_WAIT_TIMEOUT, PgStore};

use crate::error::Error;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The caller's id; unique within a store.
    pub id: String,
    /// The text.
    pub text: String,
    /// Metadata to filter on (top-level keys).
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The text's embedding.
    pub embedding: Vec<f32>,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredDocument {
    /// The document.
    pub document: Document,
    /// Its distance from the query under the store's metric; lower is closer.
    pub distance: f32,
}

/// Where agents keep documents. Object-safe: used as `Arc<dyn MemoryStore>`.
#[kai_core::async_trait]
pub trait MemoryStore: MaybeSend + MaybeSync {
    /// Inserts or replaces documents by id. All or nothing: a bad document rejects the batch.
    async fn upsert(&self, documents: &[Document]) -> Result<(), Error>;

    /// Deletes documents by id; returns how many existed.
    async fn delete(&self, ids: &[String]) -> Result<usize, Error>;

    /// The document with this id.
    async fn get(&self, id: &str) -> Result<Option<Document>, Error>;

    /// The `k` documents nearest `query` among those `filter` accepts.
    async fn search(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredDocument>, Error>;

    /// How many documents the store holds.
    async fn count(&self) -> Result<usize, Error>;

    /// How the store measures distance: [`ScoredDocument::distance`] is [`Metric::distance`] under it.
    fn metric(&self) -> Metric;
}

const _: Option<&dyn MemoryStore> = None;
