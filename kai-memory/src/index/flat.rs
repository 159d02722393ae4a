//! Exact search over every vector.

use std::path::Path;

use crate::error::Error;
use crate::index::Hit;
use crate::index::distance::Metric;
use crate::index::file;
use crate::index::slots::{self, Slots};

/// An exact index: every search compares the query with every live vector. Right for small
/// collections, as ground truth in tests, and on targets without threads (wasm32).
///
/// ```
/// use kai_memory::index::{FlatIndex, Metric};
///
/// let mut index = FlatIndex::new(Metric::Cosine, 2)?;
/// index.insert(1, &[1.0, 0.0])?;
/// index.insert(2, &[0.0, 1.0])?;
/// let hits = index.search(&[0.9, 0.1], 1)?;
/// assert_eq!(hits[0].id, 1);
/// # Ok::<(), kai_memory::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FlatIndex {
    pub(crate) slots: Slots,
}

impl FlatIndex {
    /// An empty index of vectors with `dimensions` components; zero dimensions is an
    /// [`Error::InvalidConfig`] (no vector could be stored, and no file of it opened again).
    pub fn new(metric: Metric, dimensions: usize) -> Result<Self, Error> {
        if dimensions == 0 {
            return Err(Error::InvalidConfig("an index needs at least one dimension".into()));
        }
        Ok(Self {
            slots: Slots::new(metric, dimensions),
        })
    }

    /// Adds or replaces the vector for `id`.
    pub fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), Error> {
        self.insert_batch(&[(id, vector)])
    }

    /// Adds or replaces many vectors. Every vector is checked first: one bad vector rejects the whole
    /// batch and changes nothing, as [`HnswIndex::insert_batch`](crate::index::HnswIndex) does.
    ///
    /// ```
    /// use kai_memory::index::{FlatIndex, Metric};
    ///
    /// let mut index = FlatIndex::new(Metric::L2, 2)?;
    /// assert!(index.insert_batch(&[(1, vec![0.0, 1.0]), (2, vec![f32::NAN, 0.0])]).is_err());
    /// assert_eq!(index.len(), 0);
    /// index.insert_batch(&[(1, [0.0, 1.0]), (2, [1.0, 0.0])])?;
    /// assert_eq!(index.len(), 2);
    /// # Ok::<(), kai_memory::Error>(())
    /// ```
    pub fn insert_batch<V: AsRef<[f32]>>(&mut self, items: &[(u64, V)]) -> Result<(), Error> {
        let (ids, prepared) = self.slots.prepare_items(items)?;
        self.slots.push_batch(&ids, &prepared)?;
        self.compact_if_sparse();
        Ok(())
    }

    /// Adds or replaces `ids.len()` vectors held back to back in `vectors`, without a copy per vector;
    /// otherwise as [`insert_batch`](Self::insert_batch).
    pub fn insert_flat(&mut self, ids: &[u64], vectors: &[f32]) -> Result<(), Error> {
        let prepared = self.slots.prepare_flat(ids, vectors)?;
        self.slots.push_batch(ids, &prepared)?;
        self.compact_if_sparse();
        Ok(())
    }

    /// Removes the vector for `id`; returns whether there was one.
    pub fn remove(&mut self, id: u64) -> bool {
        let removed = self.slots.remove(id);
        self.compact_if_sparse();
        removed
    }

    /// The `k` nearest vectors.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, Error> {
        self.search_filtered(query, k, &|_| true)
    }

    /// The `k` nearest vectors whose ids `filter` accepts.
    pub fn search_filtered(&self, query: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Result<Vec<Hit>, Error> {
        let query = self.slots.metric.prepare(query, self.slots.dimensions)?;
        Ok(self.slots.hits(self.slots.exact(&query, k, filter)))
    }

    /// The `k` nearest vectors to each of the queries held back to back in `queries` (in parallel on
    /// native targets); one list per query, in order.
    pub fn search_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>, Error> {
        slots::search_each(queries, self.slots.dimensions, |query| self.search(query, k))
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.slots.live_count()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the index to `path` atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        file::save(path.as_ref(), &self.to_bytes()?)
    }

    /// Reads an index written by [`save`](Self::save).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Ok(Self::exact(file::open(path.as_ref())?.0))
    }

    /// The bytes [`save`](Self::save) writes, for a caller without files (wasm) or that keeps them
    /// elsewhere.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        file::encode(&self.slots, None)
    }

    /// Reads the bytes of [`to_bytes`](Self::to_bytes) or of a saved file, with the checks of
    /// [`open`](Self::open).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Ok(Self::exact(file::decode(bytes)?.0))
    }

    /// An exact index over `slots` read from a file, which may be an HNSW index's: its codes, if it
    /// was quantized, are of no use to exact search and are dropped.
    fn exact(mut slots: Slots) -> Self {
        slots.codes = None;
        Self { slots }
    }

    fn compact_if_sparse(&mut self) {
        let total = self.slots.len();
        if total >= 64 && self.slots.live_count() * 2 < total {
            self.slots = self.slots.compacted();
        }
    }
}
