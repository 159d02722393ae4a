//! Vector indexes: [`FlatIndex`] (exact, on every target) and `HnswIndex` (approximate; native targets
//! only, since it builds its graph on several threads).
//!
//! Both take caller-chosen `u64` ids, check every vector (dimensions, NaN/infinity, zero vectors under
//! cosine) before it reaches any index code, support removal and replacement, filtered search, and
//! crash-safe persistence.

mod buffer;
mod distance;
mod file;
mod flat;
// On wasm32 the graph is only read back from files (HnswIndex, which searches it, needs threads).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod graph;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod hnsw;
#[cfg(not(target_arch = "wasm32"))]
mod hnsw_rs_dump;
#[cfg(all(feature = "hnsw-rs", not(target_arch = "wasm32")))]
mod hnsw_rs_graph;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod insert;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod quantize;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod simd;
mod slots;

pub use distance::Metric;
pub use flat::FlatIndex;
#[cfg(not(target_arch = "wasm32"))]
pub use hnsw::HnswIndex;
pub use hnsw::{HnswBackend, HnswConfig, MAX_EF};
pub use quantize::Quantization;

/// What importing an hnsw_rs dump checks, on its graph and data files' bytes: the part a hostile
/// dump reaches, for the fuzz targets.
#[cfg(all(fuzzing, not(target_arch = "wasm32")))]
#[doc(hidden)]
pub fn check_hnsw_rs_dump_for_fuzzing(graph: &[u8], data: &[u8]) -> Result<(), crate::Error> {
    hnsw_rs_dump::check(graph, data)
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    /// The id the vector was inserted with.
    pub id: u64,
    /// Its distance from the query under the index's [`Metric`]; lower is closer.
    pub distance: f32,
}
