//! Vector indexes: [`FlatIndex`] (exact) and [`HnswIndex`] (approximate, hnsw_rs-built).
//!
//! Both take caller-chosen `u64` ids, check every vector (dimensions, NaN/infinity, zero vectors under
//! cosine) before it reaches any index code, support removal and replacement, filtered search, and
//! crash-safe persistence.

mod distance;
mod file;
mod flat;
mod graph;
mod hnsw;
mod slots;

pub use distance::Metric;
pub use flat::FlatIndex;
pub use hnsw::{HnswConfig, HnswIndex};

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The id the vector was inserted with.
    pub id: u64,
    /// Its distance from the query under the index's [`Metric`]; lower is closer.
    pub distance: f32,
}
