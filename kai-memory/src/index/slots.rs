//! Vector storage shared by the indexes: contiguous vectors by internal slot, caller ids, liveness.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::Error;
use crate::index::Hit;
use crate::index::buffer::FloatBuffer;
use crate::index::distance::Metric;
use crate::index::quantize::{CodeQuery, Codes, Quantization};
use crate::index::simd::{Kernels, SimdWork, prefetch, with_best_simd};

/// Vectors in insertion order. A replaced or removed vector's slot stays, marked dead, until the index
/// is compacted.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    pub(crate) metric: Metric,
    pub(crate) dimensions: usize,
    pub(crate) data: FloatBuffer,
    pub(crate) ids: Vec<u64>,
    pub(crate) live: Vec<bool>,
    pub(crate) by_id: HashMap<u64, u32>,
    /// Compressed copies of the vectors, for searches to walk with; `None` without quantization.
    pub(crate) codes: Option<Codes>,
}

impl Slots {
    pub(crate) fn new(metric: Metric, dimensions: usize) -> Self {
        Self {
            metric,
            dimensions,
            data: FloatBuffer::default(),
            ids: Vec::new(),
            live: Vec::new(),
            by_id: HashMap::new(),
            codes: None,
        }
    }

    /// Empty slots keeping codes of `quantization` beside the vectors.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn quantized(metric: Metric, dimensions: usize, quantization: Quantization) -> Self {
        Self {
            codes: Codes::new(quantization, dimensions, metric),
            ..Self::new(metric, dimensions)
        }
    }

    /// The codes, when they cover every slot (a scheme that has not been trained yet covers none).
    #[inline(always)]
    pub(crate) fn searchable_codes(&self) -> Option<&Codes> {
        self.codes
            .as_ref()
            .filter(|codes| codes.scheme.is_some() && codes.len() == self.len())
    }

    /// Brings the codes up to date after vectors were appended (see [`Codes::refresh`]).
    fn refresh_codes(&mut self) {
        let Slots {
            data,
            dimensions,
            codes,
            ids,
            ..
        } = self;
        if let Some(codes) = codes {
            let dimensions = *dimensions;
            codes.refresh(ids.len(), |slot| data.range(slot * dimensions, dimensions));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.by_id.len()
    }

    #[inline(always)]
    pub(crate) fn vector(&self, slot: u32) -> &[f32] {
        let start = slot as usize * self.dimensions;
        self.data.range(start, self.dimensions)
    }

    /// Room for `additional` more vectors.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.data.reserve(additional * self.dimensions);
        self.ids.reserve(additional);
        self.live.reserve(additional);
        self.by_id.reserve(additional);
    }

    /// Checks `vectors` and returns them in the form stored, back to back; the first bad vector fails
    /// the whole batch.
    pub(crate) fn prepare_batch<'a>(
        &self,
        vectors: impl ExactSizeIterator<Item = &'a [f32]>,
    ) -> Result<Vec<f32>, Error> {
        let mut prepared = Vec::with_capacity(vectors.len().saturating_mul(self.dimensions));
        for vector in vectors {
            self.metric.prepare_into(vector, self.dimensions, &mut prepared)?;
        }
        Ok(prepared)
    }

    /// The ids of `items` and their vectors checked and in the form stored, back to back.
    pub(crate) fn prepare_items<V: AsRef<[f32]>>(&self, items: &[(u64, V)]) -> Result<(Vec<u64>, Vec<f32>), Error> {
        let prepared = self.prepare_batch(items.iter().map(|(_, vector)| vector.as_ref()))?;
        Ok((items.iter().map(|(id, _)| *id).collect(), prepared))
    }

    /// Checks a flat batch, `ids.len()` vectors back to back in `vectors`, and returns it in the form
    /// stored: borrowed where nothing changes (dot and L2), normalised under cosine.
    pub(crate) fn prepare_flat<'a>(&self, ids: &[u64], vectors: &'a [f32]) -> Result<Cow<'a, [f32]>, Error> {
        let rows = rows(vectors, ids.len(), self.dimensions)?;
        match self.metric {
            Metric::Cosine => Ok(Cow::Owned(self.prepare_batch(rows)?)),
            Metric::Dot | Metric::L2 => {
                let mut scratch = Vec::with_capacity(self.dimensions);
                for vector in rows {
                    self.metric.prepare_into(vector, self.dimensions, &mut scratch)?;
                    scratch.clear();
                }
                Ok(Cow::Borrowed(vectors))
            }
        }
    }

    /// Appends prepared vectors, `prepared` holding one per id back to back.
    pub(crate) fn push_batch(&mut self, ids: &[u64], prepared: &[f32]) -> Result<(), Error> {
        if self.len().saturating_add(ids.len()) > u32::MAX as usize {
            return Err(Error::InvalidConfig("an index holds at most 2^32 vectors".into()));
        }
        self.reserve(ids.len());
        for (id, vector) in ids.iter().zip(prepared.chunks_exact(self.dimensions)) {
            self.push(*id, vector)?;
        }
        self.refresh_codes();
        Ok(())
    }

    /// Appends an already prepared vector; a previous vector with the same id dies.
    pub(crate) fn push(&mut self, id: u64, prepared: &[f32]) -> Result<u32, Error> {
        let slot = u32::try_from(self.ids.len())
            .map_err(|_| Error::InvalidConfig("an index holds at most 2^32 vectors".into()))?;
        if let Some(old) = self.by_id.insert(id, slot) {
            self.live[old as usize] = false;
        }
        self.data.extend_from_slice(prepared);
        if let Some(codes) = &mut self.codes {
            codes.push(prepared);
        }
        self.ids.push(id);
        self.live.push(true);
        Ok(slot)
    }

    pub(crate) fn remove(&mut self, id: u64) -> bool {
        match self.by_id.remove(&id) {
            Some(slot) => {
                self.live[slot as usize] = false;
                true
            }
            None => false,
        }
    }

    /// A copy holding only the live vectors, in slot order (with codes of the same scheme).
    pub(crate) fn compacted(&self) -> Self {
        let mut fresh = Slots::new(self.metric, self.dimensions);
        fresh.codes = self.codes.as_ref().map(Codes::emptied);
        for slot in 0..self.ids.len() as u32 {
            if self.live[slot as usize] {
                // Cannot fail: the fresh copy holds fewer slots than this one.
                let _ = fresh.push(self.ids[slot as usize], self.vector(slot));
            }
        }
        fresh.refresh_codes();
        fresh
    }

    /// Exact search over every live slot whose id `accept` admits.
    pub(crate) fn exact(&self, query: &[f32], k: usize, accept: &dyn Fn(u64) -> bool) -> Vec<(f32, u32)> {
        with_best_simd(Exact {
            slots: self,
            query,
            k,
            accept,
        })
    }

    pub(crate) fn hits(&self, ranked: Vec<(f32, u32)>) -> Vec<Hit> {
        ranked
            .into_iter()
            .map(|(rank, slot)| Hit {
                id: self.ids[slot as usize],
                distance: self.metric.report(rank),
            })
            .collect()
    }
}

/// `count` vectors of `dimensions` floats each, back to back in `flat`; an error if the lengths differ.
pub(crate) fn rows(flat: &[f32], count: usize, dimensions: usize) -> Result<std::slice::ChunksExact<'_, f32>, Error> {
    if count.checked_mul(dimensions) != Some(flat.len()) {
        return Err(Error::InvalidVector {
            reason: format!(
                "{count} vectors of {dimensions} dimensions take {} floats, not {}",
                count.saturating_mul(dimensions),
                flat.len()
            ),
        });
    }
    Ok(flat.chunks_exact(dimensions))
}

/// Runs `search` on each of the queries held back to back in `queries` (in parallel where there are
/// threads), in order; the first error fails the batch.
pub(crate) fn search_each<T: Send>(
    queries: &[f32],
    dimensions: usize,
    search: impl Fn(&[f32]) -> Result<T, Error> + Sync + Send,
) -> Result<Vec<T>, Error> {
    if !queries.len().is_multiple_of(dimensions) {
        return Err(Error::DimensionMismatch {
            expected: dimensions,
            found: queries.len() % dimensions,
        });
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        queries.par_chunks_exact(dimensions).map(search).collect()
    }
    #[cfg(target_arch = "wasm32")]
    queries.chunks_exact(dimensions).map(search).collect()
}

/// An exact search, as [`SimdWork`].
struct Exact<'a> {
    slots: &'a Slots,
    query: &'a [f32],
    k: usize,
    accept: &'a dyn Fn(u64) -> bool,
}

impl SimdWork for Exact<'_> {
    type Output = Vec<(f32, u32)>;

    #[inline(always)]
    fn run<K: Kernels>(self, kernels: K) -> Self::Output {
        let Exact {
            slots,
            query,
            k,
            accept,
        } = self;
        let space = Space::new(slots, kernels);
        let mut best = TopK::new(k);
        for slot in 0..slots.ids.len() as u32 {
            if slots.live[slot as usize] && accept(slots.ids[slot as usize]) {
                best.offer(space.rank(query, slot), slot);
            }
        }
        best.into_sorted()
    }
}

/// What a graph walk measures with: a ranking distance from a query to a slot's vector, lower being
/// closer. Implementations are `#[inline(always)]`, like the SIMD code they run in.
pub(crate) trait Measure: Copy {
    /// A query, made ready.
    type Query: ?Sized;
    /// The ranking distance from `query` to `slot`'s vector.
    fn rank(&self, query: &Self::Query, slot: u32) -> f32;
    /// Starts loading what [`rank`](Self::rank) will read for `slot`.
    fn prefetch(&self, slot: u32);
}

/// The stored vectors with the distance kernels of the running SIMD level: what searches and
/// insertions measure with.
#[derive(Clone, Copy)]
pub(crate) struct Space<'a, K> {
    pub(crate) slots: &'a Slots,
    kernels: K,
}

impl<'a, K: Kernels> Space<'a, K> {
    #[inline(always)]
    pub(crate) fn new(slots: &'a Slots, kernels: K) -> Self {
        Self { slots, kernels }
    }

    /// The ranking distance from a prepared `query` to `slot`'s vector.
    #[inline(always)]
    pub(crate) fn rank(&self, query: &[f32], slot: u32) -> f32 {
        self.slots.metric.rank(self.kernels, query, self.slots.vector(slot))
    }

    /// The ranking distance between two slots' vectors.
    #[inline(always)]
    pub(crate) fn between(&self, a: u32, b: u32) -> f32 {
        self.rank(self.slots.vector(a), b)
    }

    #[inline(always)]
    pub(crate) fn vector(&self, slot: u32) -> &'a [f32] {
        self.slots.vector(slot)
    }
}

impl<K: Kernels> Measure for Space<'_, K> {
    type Query = [f32];

    #[inline(always)]
    fn rank(&self, query: &[f32], slot: u32) -> f32 {
        Space::rank(self, query, slot)
    }

    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        prefetch(self.slots.vector(slot));
    }
}

/// The stored vectors' codes: what searches of a quantized index walk the graph with.
#[derive(Clone, Copy)]
pub(crate) struct CodeSpace<'a> {
    pub(crate) metric: Metric,
    pub(crate) codes: &'a Codes,
}

impl Measure for CodeSpace<'_> {
    type Query = CodeQuery;

    #[inline(always)]
    fn rank(&self, query: &CodeQuery, slot: u32) -> f32 {
        query.rank(self.metric, self.codes.code(slot))
    }

    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        prefetch(self.codes.code(slot));
    }
}

/// The k smallest (distance, slot) pairs seen.
pub(crate) struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<Ranked>,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) struct Ranked(pub(crate) f32, pub(crate) u32);

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            // `k` comes from the caller; the heap grows past this if it must.
            heap: std::collections::BinaryHeap::with_capacity(k.min(1024) + 1),
        }
    }

    pub(crate) fn offer(&mut self, distance: f32, slot: u32) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Ranked(distance, slot));
        } else if self.heap.peek().is_some_and(|worst| distance < worst.0) {
            self.heap.pop();
            self.heap.push(Ranked(distance, slot));
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<(f32, u32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Ranked(d, s)| (d, s))
            .collect()
    }
}
