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
pub use vault::{Kdf, Secret, Vault};
