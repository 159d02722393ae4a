//! # kai-memory
//!
//! Memory for kAI agents:
//!
//! - [`index`]: vector indexes, exact ([`index::FlatIndex`]) and HNSW ([`index::HnswIndex`], built in
//!   parallel and grown in place), with filters, removal and crash-safe files;
//! - [`store`]: document stores behind the [`store::MemoryStore`] trait; [`store::EmbeddedStore`] keeps
//!   documents in SQLite with an HNSW index beside it;
//! - [`rag`]: text splitters, idempotent ingestion, retrieval with thresholds and MMR, and retrieval as
//!   an agent tool or hook;
//! - [`conversation`]: per-session conversation memory, as a token window or a running summary;
//! - [`vault`]: secrets and private records sealed with AES-256-GCM under a data key that a
//!   passphrase-derived key wraps.
//!
//! Features: `postgres` adds `store::PgStore` (PostgreSQL + pgvector); `hnsw-rs` adds the hnsw_rs
//! crate's graph as a second backend of [`index::HnswIndex`] (`index::HnswBackend::HnswRs`). Dumps
//! written by hnsw_rs import without it (`index::HnswIndex::import_hnsw_rs`).

mod bytes;
#[cfg(not(target_arch = "wasm32"))]
pub mod conversation;
mod error;
pub mod index;
pub mod rag;
pub mod store;
pub mod vault;
#[cfg(not(target_arch = "wasm32"))]
mod worker;

pub use error::Error;

/// The types a binding shares across threads: `Send + Sync`, checked when the crate builds.
#[cfg(not(target_arch = "wasm32"))]
const _: () = {
    const fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<store::EmbeddedStore>();
    shared_across_threads::<index::HnswIndex>();
    shared_across_threads::<index::FlatIndex>();
    shared_across_threads::<conversation::SessionStore>();
    shared_across_threads::<rag::Retriever>();
    shared_across_threads::<rag::Ingestor>();
    shared_across_threads::<rag::KeywordIndex>();
    shared_across_threads::<vault::Vault>();
    shared_across_threads::<Error>();
};
pub use vault::{Kdf, Secret, Vault};
