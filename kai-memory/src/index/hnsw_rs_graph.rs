//! The `hnsw_rs` crate's graph, as the second backend of [`HnswIndex`](crate::index::HnswIndex)
//! ([`HnswBackend::HnswRs`](crate::index::HnswBackend::HnswRs)).
//!
//! The index keeps its own slots (ids, vectors, tombstones) as with the builtin graph; hnsw_rs holds
//! a copy of each vector and the links, and knows each vector by its slot number. It measures with
//! kAI's distance kernels, which never hand it what it asserts against (a negative distance, NaN):
//! vectors are checked before they reach it, cosine ranks are clamped at zero, and the dot metric,
//! whose ranks are negative, is refused by the configuration.

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::filter::FilterT;
use hnsw_rs::hnsw::Hnsw;

use crate::index::distance::Metric;
use crate::index::graph::SearchGraph;
use crate::index::hnsw::HnswConfig;
use crate::index::simd::{Kernels, SimdWork, with_best_simd};
use crate::index::slots::Slots;

/// The most layers hnsw_rs builds (its own cap).
const LAYERS: usize = 16;

/// An hnsw_rs graph over slots `0..len`.
pub(crate) struct RsGraph {
    /// Always `Some` until dropped (see the `Drop` implementation).
    hnsw: Option<Hnsw<'static, f32, Ranking>>,
    /// Neighbours kept per node above layer 0 (`M`), as configured.
    m: usize,
}

/// hnsw_rs's own drop times itself with `SystemTime::elapsed().unwrap()`, which panics if the clock
/// steps back meanwhile: such a panic is caught here, and while a panic unwinds (when a second one
/// would abort the process) the graph is leaked instead.
impl Drop for RsGraph {
    fn drop(&mut self) {
        if let Some(hnsw) = self.hnsw.take() {
            if std::thread::panicking() {
                std::mem::forget(hnsw);
            } else {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(hnsw)));
            }
        }
    }
}

impl RsGraph {
    /// An empty graph with `config`'s `M`, `ef_construction` and expected size.
    pub(crate) fn new(config: &HnswConfig) -> Self {
        let hnsw = Hnsw::new(
            config.m,
            config.expected_len.min(1 << 20),
            LAYERS,
            config.ef_construction,
            Ranking(config.metric),
        );
        Self {
            hnsw: Some(hnsw),
            m: config.m,
        }
    }

    /// Links `slots` (a range of `vectors`' slots) into the graph, in parallel on rayon's pool.
    pub(crate) fn insert(&self, vectors: &Slots, slots: std::ops::Range<u32>) {
        let Some(hnsw) = &self.hnsw else { return };
        let items: Vec<(&[f32], usize)> = slots.map(|slot| (vectors.vector(slot), slot as usize)).collect();
        // Into an empty graph, two parallel first insertions can each take the other for the entry
        // point and return unlinked, leaving one of them out of every search: the first goes alone.
        let items = match items.split_first() {
            Some((&first, rest)) if hnsw.get_nb_point() == 0 => {
                hnsw.insert_slice(first);
                rest
            }
            _ => &items[..],
        };
        hnsw.parallel_insert_slice(&items.to_vec());
    }

    /// The `k` nearest slots to `query` with beam width `ef`, as `(rank, slot)` from nearest; only
    /// slots that `accept` admits (all of them without it).
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(f32, u32)> {
        let Some(hnsw) = &self.hnsw else { return Vec::new() };
        // hnsw_rs allocates its heaps for `ef` up front: a beam wider than the graph finds no more.
        let points = hnsw.get_nb_point();
        let (k, ef) = (k.min(points), ef.min(points).max(k.min(points)));
        if k == 0 {
            return Vec::new();
        }
        let filter = accept.map(|accept| move |slot: &usize| accept(*slot as u32));
        let filter = filter.as_ref().map(|f| f as &dyn FilterT);
        hnsw.search_filter(query, k, ef, filter)
            .into_iter()
            .map(|n| (n.distance, n.d_id as u32))
            .collect()
    }

    /// The same links as plain lists, for the index file.
    pub(crate) fn to_search_graph(&self, len: usize) -> Result<SearchGraph, &'static str> {
        let mut layer0 = vec![Vec::new(); len];
        // hnsw_rs's point iterator unwraps the entry point, which an empty graph lacks.
        let Some(hnsw) = self.hnsw.as_ref().filter(|hnsw| hnsw.get_nb_point() > 0) else {
            return SearchGraph::from_lists(self.m, layer0, vec![Vec::new(); len], 0);
        };
        let mut upper = vec![Vec::new(); len];
        let mut entry = 0;
        let mut top = 0;
        for point in hnsw.get_point_indexation() {
            let slot = point.get_origin_id();
            let level = usize::from(point.get_point_id().0);
            if slot >= len {
                return Err("the hnsw_rs graph names a vector the index does not hold");
            }
            if level >= top {
                (entry, top) = (slot as u32, level + 1);
            }
            let mut lists = point
                .get_neighborhood_id()
                .into_iter()
                .map(|layer| layer.into_iter().map(|n| n.d_id as u32).collect::<Vec<_>>());
            let mut bottom = lists.next().unwrap_or_default();
            bottom.truncate(2 * self.m);
            layer0[slot] = bottom;
            upper[slot] = lists
                .take(level)
                .map(|mut list| {
                    list.truncate(self.m);
                    list
                })
                .collect();
            // hnsw_rs gives a point a list per layer up to its level; fill any it left out.
            upper[slot].resize(level, Vec::new());
        }
        SearchGraph::from_lists(self.m, layer0, upper, entry)
    }
}

/// kAI's ranking distance (squared for L2, `1 - cos` of normalised vectors), computed with the best
/// SIMD kernels, never negative and never NaN.
#[derive(Clone, Copy)]
struct Ranking(Metric);

impl Distance<f32> for Ranking {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let rank = with_best_simd(Rank { metric: self.0, a, b });
        // Checked vectors give finite ranks; keep hnsw_rs's assertions safe whatever happens.
        if rank.is_nan() { f32::MAX } else { rank.max(0.0) }
    }
}

/// One ranking distance, as [`SimdWork`].
struct Rank<'a> {
    metric: Metric,
    a: &'a [f32],
    b: &'a [f32],
}

impl SimdWork for Rank<'_> {
    type Output = f32;

    #[inline(always)]
    fn run<K: Kernels>(self, kernels: K) -> f32 {
        self.metric.rank(kernels, self.a, self.b)
    }
}
