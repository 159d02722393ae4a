//! Approximate nearest-neighbour search over an HNSW graph.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::index::distance::Metric;
#[cfg(all(feature = "hnsw-rs", not(target_arch = "wasm32")))]
use crate::index::hnsw_rs_graph::RsGraph;
use crate::index::quantize::Quantization;
#[cfg(not(target_arch = "wasm32"))]
use crate::index::{Hit, file, graph::SearchGraph, hnsw_rs_dump, insert, slots, slots::Slots};

/// The widest beam an index builds or searches with by default ([`HnswIndex::search_with`] may ask
/// for a wider one per search).
pub const MAX_EF: usize = 1 << 16;

/// Which graph an [`HnswIndex`] builds and searches. Both take the same calls, check vectors the same
/// way and keep removed vectors out of results the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HnswBackend {
    /// kAI's own graph: searched without locks, quantization, and a saved graph reopened as it was.
    #[default]
    Builtin,
    /// The graph of the `hnsw_rs` crate (with the `hnsw-rs` feature, on native targets), measuring with
    /// kAI's distance kernels. Cosine and L2 only (hnsw_rs needs distances of zero or more, which the
    /// dot metric's are not); no quantization; it holds its own copy of every vector; it does not
    /// relink vectors its pruning leaves with no links to them (a few in a thousand may then be
    /// missed by every search, which the builtin graph prevents); and an index
    /// opened from a file re-inserts its vectors, since hnsw_rs cannot take a saved graph (so
    /// `ef_construction × m` is held to 65,536, which bounds that work).
    HnswRs,
}

/// The largest `ef_construction × m` the hnsw_rs backend takes (4,096 × 16, or 1,024 × 64): an index
/// opened from a file builds its hnsw_rs graph again with the file's settings, and hnsw_rs already
/// builds about six times slower than the builtin graph at the defaults (200 × 16).
const HNSW_RS_MAX_BUILD_WORK: usize = 1 << 16;

/// Settings of an [`HnswIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswConfig {
    /// The distance.
    pub metric: Metric,
    /// Components per vector.
    pub dimensions: usize,
    /// Neighbours kept per node and layer (`M`; 2..=256). Default 16.
    pub m: usize,
    /// Beam width while building. Default 200.
    pub ef_construction: usize,
    /// Beam width while searching (at least `k`). Default 64.
    pub ef_search: usize,
    /// How many vectors to expect, to size the graph's tables up front. Default 10,000; the index
    /// grows past it as it must, so this only saves reallocations (and the memory they briefly double).
    pub expected_len: usize,
    /// How searches compress the vectors they walk with. Default [`Quantization::None`].
    #[serde(default)]
    pub quantization: Quantization,
    /// The graph the index builds. Default [`HnswBackend::Builtin`].
    #[serde(default)]
    pub backend: HnswBackend,
}

impl HnswConfig {
    /// The defaults for this metric and dimension count.
    pub fn new(metric: Metric, dimensions: usize) -> Self {
        Self {
            metric,
            dimensions,
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            expected_len: 10_000,
            quantization: Quantization::None,
            backend: HnswBackend::Builtin,
        }
    }

    /// With `m` neighbours kept per node and layer (2..=256; more: better recall, more memory).
    #[must_use]
    pub fn with_m(mut self, m: usize) -> Self {
        self.m = m;
        self
    }

    /// With a build-time beam of `ef_construction` (wider: a better graph, a slower build).
    #[must_use]
    pub fn with_ef_construction(mut self, ef_construction: usize) -> Self {
        self.ef_construction = ef_construction;
        self
    }

    /// With a search beam of `ef_search` (wider: better recall, slower searches).
    #[must_use]
    pub fn with_ef_search(mut self, ef_search: usize) -> Self {
        self.ef_search = ef_search;
        self
    }

    /// Expecting about `expected_len` vectors, to size the tables once.
    #[must_use]
    pub fn with_expected_len(mut self, expected_len: usize) -> Self {
        self.expected_len = expected_len;
        self
    }

    /// Searching on vectors compressed with `quantization` (see [`Quantization`]).
    #[must_use]
    pub fn with_quantization(mut self, quantization: Quantization) -> Self {
        self.quantization = quantization;
        self
    }

    /// Built on `backend`'s graph (see [`HnswBackend`]).
    #[must_use]
    pub fn with_backend(mut self, backend: HnswBackend) -> Self {
        self.backend = backend;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if !(2..=256).contains(&self.m) {
            return Err(Error::InvalidConfig(format!("m must be 2..=256, not {}", self.m)));
        }
        if self.dimensions == 0 || self.ef_construction == 0 || self.ef_search == 0 {
            return Err(Error::InvalidConfig(
                "dimensions, ef_construction and ef_search must be positive".into(),
            ));
        }
        // A beam this wide is an exhaustive search already; wider ones only cost time (a file asking
        // for 2^32 would make every insertion walk the whole graph).
        if self.ef_construction > MAX_EF || self.ef_search > MAX_EF {
            return Err(Error::InvalidConfig(format!(
                "ef_construction and ef_search must be at most {MAX_EF}"
            )));
        }
        if self.backend == HnswBackend::HnswRs {
            if cfg!(not(all(feature = "hnsw-rs", not(target_arch = "wasm32")))) {
                return Err(Error::InvalidConfig(
                    "the hnsw_rs backend needs kai-memory's `hnsw-rs` feature (native targets only)".into(),
                ));
            }
            if self.metric == Metric::Dot {
                return Err(Error::InvalidConfig(
                    "the hnsw_rs backend needs distances of zero or more: use cosine or L2, or the builtin backend"
                        .into(),
                ));
            }
            if self.quantization != Quantization::None {
                return Err(Error::InvalidConfig(
                    "the hnsw_rs backend searches full vectors: quantization needs the builtin backend".into(),
                ));
            }
            // Opening a file rebuilds the graph with its settings: bound the work a file can ask for.
            if self.ef_construction.saturating_mul(self.m) > HNSW_RS_MAX_BUILD_WORK {
                return Err(Error::InvalidConfig(format!(
                    "the hnsw_rs backend takes ef_construction × m up to {HNSW_RS_MAX_BUILD_WORK}"
                )));
            }
        }
        self.quantization.validate(self.dimensions)
    }
}

/// Filters that pass fewer than this share of vectors (or too few vectors to fill a beam) are
/// answered by an exact scan: a graph walk would mostly visit rejected nodes and could miss matches.
#[cfg(not(target_arch = "wasm32"))]
const EXACT_BELOW_SHARE: f32 = 0.02;

/// An HNSW index.
///
/// The graph is the one of Malkov & Yashunin's paper (layers drawn with `P(level ≥ l) = M^-l`, beam
/// search of width `ef_construction` on insertion, neighbours kept with their diversity heuristic: `M`
/// per node above layer 0, `2M` on it), stored in flat fixed-size blocks and grown in place; batches are
/// inserted in parallel. Every inserted vector is searchable at once, including in an index just
/// opened from a file. Removed and replaced vectors are tombstones: they still route searches but are
/// never returned. Once a third of the index is dead, the graph is rebuilt from the live vectors.
///
/// ```
/// use kai_memory::index::{HnswConfig, HnswIndex, Metric};
///
/// let mut index = HnswIndex::new(HnswConfig::new(Metric::L2, 2))?;
/// index.insert_batch(&[(1, vec![0.0, 0.0]), (2, vec![5.0, 5.0]), (3, vec![0.1, 0.0])])?;
/// let hits = index.search(&[0.0, 0.1], 2)?;
/// assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [1, 3]);
/// # Ok::<(), kai_memory::Error>(())
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub struct HnswIndex {
    config: HnswConfig,
    slots: Slots,
    /// The graph over every slot.
    graph: Graph,
}

/// The graph behind an index, by [`HnswBackend`].
#[cfg(not(target_arch = "wasm32"))]
enum Graph {
    Builtin(SearchGraph),
    #[cfg(feature = "hnsw-rs")]
    HnswRs(RsGraph),
}

#[cfg(not(target_arch = "wasm32"))]
impl Graph {
    /// An empty graph of `config`'s backend (which [`HnswConfig::validate`] has accepted).
    fn new(config: &HnswConfig) -> Self {
        #[cfg(feature = "hnsw-rs")]
        if config.backend == HnswBackend::HnswRs {
            return Self::HnswRs(RsGraph::new(config));
        }
        let mut graph = SearchGraph::new(config.m);
        graph.reserve(config.expected_len.min(1 << 20));
        Self::Builtin(graph)
    }

    /// Links the slots `range` of `slots` into the graph.
    fn insert(&mut self, slots: &Slots, range: std::ops::Range<u32>, ef_construction: usize) {
        match self {
            Self::Builtin(graph) => insert::insert(graph, slots, range, ef_construction),
            #[cfg(feature = "hnsw-rs")]
            Self::HnswRs(graph) => graph.insert(slots, range),
        }
    }

    /// The `k` nearest slots to `query` (prepared) with beam width `ef`, among those `accept` admits.
    fn search(
        &self,
        slots: &Slots,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(f32, u32)> {
        match self {
            Self::Builtin(graph) => graph.search(slots, query, k, ef, accept),
            #[cfg(feature = "hnsw-rs")]
            Self::HnswRs(graph) => graph.search(query, k, ef, accept),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("config", &self.config)
            .field("live", &self.slots.live_count())
            .field("slots", &self.slots.len())
            .finish()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl HnswIndex {
    /// An empty index.
    pub fn new(config: HnswConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            slots: Slots::quantized(config.metric, config.dimensions, config.quantization),
            graph: Graph::new(&config),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.slots.live_count()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is held with `vector` (compared as stored: normalised under cosine).
    pub(crate) fn holds(&self, id: u64, vector: &[f32]) -> bool {
        let Some(&slot) = self.slots.by_id.get(&id) else {
            return false;
        };
        self.config
            .metric
            .prepare(vector, self.config.dimensions)
            .is_ok_and(|prepared| prepared == self.slots.vector(slot))
    }

    /// The ids of the live vectors, in no particular order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.by_id.keys().copied()
    }

    /// Adds or replaces one vector.
    pub fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), Error> {
        self.insert_batch(&[(id, vector)])
    }

    /// Adds or replaces many vectors, inserting them into the graph in parallel. Every vector is checked
    /// first: one bad vector rejects the whole batch and changes nothing. Items may hold any slice-like
    /// vector (`Vec<f32>`, `&[f32]`, arrays); [`insert_flat`](Self::insert_flat) takes one buffer.
    ///
    /// The parallel work runs on rayon's global pool (one thread per core unless `RAYON_NUM_THREADS`
    /// or `rayon::ThreadPoolBuilder::build_global` says otherwise). To bound it, call this inside your
    /// own pool's `install`: `pool.install(|| index.insert_batch(&items))`.
    pub fn insert_batch<V: AsRef<[f32]>>(&mut self, items: &[(u64, V)]) -> Result<(), Error> {
        let (ids, prepared) = self.slots.prepare_items(items)?;
        self.insert_prepared(&ids, &prepared)
    }

    /// Adds or replaces `ids.len()` vectors held back to back in `vectors` (as a NumPy array or an
    /// embedding model's output batch holds them), without a copy per vector; otherwise as
    /// [`insert_batch`](Self::insert_batch).
    ///
    /// ```
    /// use kai_memory::index::{HnswConfig, HnswIndex, Metric};
    ///
    /// let mut index = HnswIndex::new(HnswConfig::new(Metric::L2, 2))?;
    /// index.insert_flat(&[7, 8], &[0.0, 0.0, 3.0, 4.0])?;
    /// assert_eq!(index.search(&[3.0, 3.9], 1)?[0].id, 8);
    /// assert!(index.insert_flat(&[9], &[1.0]).is_err());
    /// # Ok::<(), kai_memory::Error>(())
    /// ```
    pub fn insert_flat(&mut self, ids: &[u64], vectors: &[f32]) -> Result<(), Error> {
        let prepared = self.slots.prepare_flat(ids, vectors)?;
        self.insert_prepared(ids, &prepared)
    }

    fn insert_prepared(&mut self, ids: &[u64], prepared: &[f32]) -> Result<(), Error> {
        let start = self.slots.len() as u32;
        self.slots.push_batch(ids, prepared)?;
        let end = self.slots.len() as u32;
        self.graph.insert(&self.slots, start..end, self.config.ef_construction);
        self.maintain();
        Ok(())
    }

    /// Removes the vector for `id`; returns whether there was one.
    pub fn remove(&mut self, id: u64) -> bool {
        let removed = self.slots.remove(id);
        self.maintain();
        removed
    }

    /// The `k` nearest vectors, with the configured `ef_search`.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, Error> {
        self.search_with(query, k, self.config.ef_search, None)
    }

    /// The `k` nearest vectors to each of the queries held back to back in `queries`, searched in
    /// parallel on rayon's pool (see [`insert_batch`](Self::insert_batch)); one list per query, in order.
    ///
    /// ```
    /// use kai_memory::index::{HnswConfig, HnswIndex, Metric};
    ///
    /// let mut index = HnswIndex::new(HnswConfig::new(Metric::L2, 2))?;
    /// index.insert_flat(&[1, 2], &[0.0, 0.0, 5.0, 5.0])?;
    /// let hits = index.search_batch(&[4.0, 4.0, 0.5, 0.0], 1)?;
    /// assert_eq!((hits[0][0].id, hits[1][0].id), (2, 1));
    /// # Ok::<(), kai_memory::Error>(())
    /// ```
    pub fn search_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>, Error> {
        slots::search_each(queries, self.config.dimensions, |query| self.search(query, k))
    }

    /// The `k` nearest vectors with beam width `ef`, among those whose ids `filter` accepts.
    ///
    /// A selective filter is answered exactly (see the type's documentation), so results stay correct
    /// however few vectors pass.
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn Fn(u64) -> bool>,
    ) -> Result<Vec<Hit>, Error> {
        let query = self.config.metric.prepare(query, self.config.dimensions)?;
        let accept_all = |_: u64| true;
        let accept_id: &dyn Fn(u64) -> bool = filter.unwrap_or(&accept_all);
        let mut ef = ef.max(k);
        if let Some(filter) = filter {
            let share = self.estimate_share(filter);
            let expected_matches = share * self.slots.live_count() as f32;
            if share < EXACT_BELOW_SHARE || expected_matches < ef.saturating_mul(4) as f32 {
                return Ok(self.slots.hits(self.slots.exact(&query, k, accept_id)));
            }
            ef = ((ef as f32 / share).ceil() as usize).min(self.slots.live_count().max(1));
        }
        let slots = &self.slots;
        let accept_slot = |slot: u32| slots.live[slot as usize] && accept_id(slots.ids[slot as usize]);
        // With no filter and nothing removed, every slot is a result: skip the per-slot check.
        let everything = filter.is_none() && slots.live_count() == slots.len();
        let accept = (!everything).then_some(&accept_slot as &dyn Fn(u32) -> bool);
        Ok(slots.hits(self.graph.search(slots, &query, k, ef, accept)))
    }

    /// Writes the index, graph included, to `path` atomically (an [`HnswBackend::HnswRs`] graph as the
    /// lists of links it holds). The file holds the vectors in the order a search meets them (breadth-first through the graph from its entry point), so that an index
    /// opened from it touches fewer pages and cache lines per search (about 1.1× queries per second on
    /// 100k vectors).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        file::save(path.as_ref(), &self.to_bytes()?)
    }

    /// Reads an index written by [`save`](Self::save). Nothing is re-inserted: the saved graph serves
    /// searches and takes new vectors at once (except under [`HnswBackend::HnswRs`], which builds its
    /// graph again from the saved vectors).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_parts(file::open(path.as_ref())?)
    }

    /// Reads the dump that hnsw_rs's `Hnsw::file_dump(dir, basename)` wrote (`<basename>.hnsw.graph`
    /// and `<basename>.hnsw.data`; dump formats 3 and 4, written on a 64-bit little-endian machine)
    /// into a new index with `config`, whose dimensions and metric must be the dump's: cosine for
    /// hnsw_rs's `DistCosine` and `DistDot`, L2 for `DistL2`. The ids (each once) and vectors come from
    /// the dump, checked as any inserted ones; the graph is built anew by `config`'s backend. hnsw_rs is not
    /// used to read it, so no feature is needed, and a damaged or crafted dump is a typed error.
    ///
    /// ```no_run
    /// use kai_memory::index::{HnswConfig, HnswIndex, Metric};
    ///
    /// let index = HnswIndex::import_hnsw_rs("dumps", "docs", HnswConfig::new(Metric::Cosine, 384))?;
    /// # Ok::<(), kai_memory::Error>(())
    /// ```
    pub fn import_hnsw_rs(dir: impl AsRef<Path>, basename: &str, config: HnswConfig) -> Result<Self, Error> {
        let mut index = Self::new(config)?;
        let (ids, vectors) = hnsw_rs_dump::read(dir.as_ref(), basename, config.dimensions, config.metric)?;
        index.insert_flat(&ids, &vectors)?;
        Ok(index)
    }

    /// The bytes [`save`](Self::save) writes, for a caller that keeps them elsewhere (a browser's
    /// storage, a database, a network).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        match &self.graph {
            Graph::Builtin(graph) => file::encode(&self.slots, Some((&self.config, graph))),
            #[cfg(feature = "hnsw-rs")]
            Graph::HnswRs(graph) => {
                let lists = graph.to_search_graph(self.slots.len()).map_err(|what| Error::Corrupt {
                    what: format!("the hnsw_rs graph cannot be saved: {what}"),
                })?;
                file::encode(&self.slots, Some((&self.config, &lists)))
            }
        }
    }

    /// Reads the bytes of [`to_bytes`](Self::to_bytes) or of a saved file, with the checks of
    /// [`open`](Self::open).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_parts(file::decode(bytes)?)
    }

    fn from_parts((slots, graph): (Slots, Option<(HnswConfig, SearchGraph)>)) -> Result<Self, Error> {
        let Some((config, graph)) = graph else {
            return Err(Error::Corrupt {
                what: "the file holds a flat index, not an HNSW one".into(),
            });
        };
        config.validate()?;
        if config.backend == HnswBackend::Builtin {
            return Ok(Self {
                config,
                slots,
                graph: Graph::Builtin(graph),
            });
        }
        let mut graph = Graph::new(&config);
        graph.insert(&slots, 0..slots.len() as u32, config.ef_construction);
        Ok(Self { config, slots, graph })
    }

    /// The share of live vectors a filter accepts, from an evenly spread sample of about 512 slots
    /// (all of them if the sample holds no live one).
    fn estimate_share(&self, filter: &dyn Fn(u64) -> bool) -> f32 {
        const SAMPLE: usize = 512;
        let slots = &self.slots;
        let share = |step: usize| {
            let live = (0..slots.len()).step_by(step).filter(|&s| slots.live[s]);
            let (seen, passed) = live.fold((0usize, 0usize), |(seen, passed), s| {
                (seen + 1, passed + usize::from(filter(slots.ids[s])))
            });
            (seen > 0).then(|| passed as f32 / seen as f32)
        };
        share((slots.len() / SAMPLE).max(1)).or_else(|| share(1)).unwrap_or(0.0)
    }

    /// Rebuilds the graph from the live vectors once a third of the slots are dead.
    fn maintain(&mut self) {
        let total = self.slots.len();
        let dead = total - self.slots.live_count();
        if total >= 64 && dead * 3 > total {
            self.slots = self.slots.compacted();
            self.graph = Graph::new(&self.config);
            let end = self.slots.len() as u32;
            self.graph.insert(&self.slots, 0..end, self.config.ef_construction);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An opened index reads its vectors where they lie in the file, and keeps doing so when it grows;
    /// saving over the file it was opened from leaves it searching the old contents, which stay mapped.
    #[test]
    fn an_opened_index_reads_its_vectors_in_place_and_appends_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mapped.hnsw");
        let mut index = HnswIndex::new(HnswConfig::new(Metric::L2, 3)).unwrap();
        let vectors: Vec<f32> = (0..3_000).map(|i| (i % 1_009) as f32 * 0.5).collect();
        let ids: Vec<u64> = (0..1_000).collect();
        index.insert_flat(&ids, &vectors).unwrap();
        index.save(&path).unwrap();

        let mut opened = HnswIndex::open(&path).unwrap();
        assert_eq!(opened.slots.data.file_len(), 3_000);
        // Equally distant vectors may come in either order.
        let nearest = |index: &HnswIndex| {
            let mut hits: Vec<(u64, u32)> = index
                .search(&vectors[300..303], 5)
                .unwrap()
                .iter()
                .map(|h| (h.id, h.distance.to_bits()))
                .collect();
            hits.sort_unstable_by_key(|&(id, distance)| (distance, id));
            hits
        };
        let expected = nearest(&index);
        assert_eq!(nearest(&opened), expected);

        opened.save(&path).unwrap();
        assert_eq!(nearest(&opened), expected);
        opened.insert(5_000, &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((opened.slots.data.file_len(), opened.slots.data.len()), (3_000, 3_003));
        assert_eq!(opened.search(&[1.0, 2.0, 3.0], 1).unwrap()[0].id, 5_000);
        assert_eq!(opened.len(), 1_001);
        assert_eq!(HnswIndex::open(&path).unwrap().len(), 1_000);
    }

    #[test]
    fn a_100k_vector_index_reopens_with_the_graph_it_saved_and_inserts_nothing() {
        let n = 100_000u32;
        let config = HnswConfig::new(Metric::L2, 2);
        let mut slots = Slots::new(config.metric, config.dimensions);
        for i in 0..n {
            slots.push(u64::from(i), &[i as f32, (i % 7) as f32]).unwrap();
        }
        // Links no insertion would make: each slot to three far-off ones. A reopened index that
        // re-inserted its vectors would link near neighbours instead.
        let layer0: Vec<Vec<u32>> = (0..n).map(|s| (1..=3).map(|d| (s + d * 7_919) % n).collect()).collect();
        let graph = SearchGraph::from_lists(config.m, layer0, vec![Vec::new(); n as usize], 0).unwrap();
        let index = HnswIndex {
            config,
            slots,
            graph: Graph::Builtin(graph),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.hnsw");
        index.save(&path).unwrap();

        let reopened = HnswIndex::open(&path).unwrap();
        assert_eq!(reopened.len(), n as usize);
        let neighbour_ids = |index: &HnswIndex, slot: u32| -> Vec<u64> {
            // The only pattern unless the hnsw-rs feature adds a backend.
            #[allow(irrefutable_let_patterns)]
            let Graph::Builtin(graph) = &index.graph else {
                unreachable!("the builtin backend was asked for")
            };
            let mut ids: Vec<u64> = graph
                .neighbour_list(slot, 0)
                .iter()
                .map(|&s| index.slots.ids[s as usize])
                .collect();
            ids.sort_unstable();
            ids
        };
        for slot in 0..n {
            let id = reopened.slots.ids[slot as usize];
            let mut expected: Vec<u64> = (1..=3).map(|d| (id + d * 7_919) % u64::from(n)).collect();
            expected.sort_unstable();
            assert_eq!(neighbour_ids(&reopened, slot), expected, "id {id}");
        }
    }
}
