//! Compressed copies of an index's vectors, which searches walk the graph with; the full-precision
//! vectors then re-rank the best candidates found.
//!
//! Two schemes:
//! - **int8** (scalar quantisation): each component as one byte over its dimension's range, a quarter
//!   of float32. The range follows the data: a vector outside it widens it (with a margin) and the
//!   codes are made again, so no component is ever clipped.
//! - **product quantisation** (Jégou, Douze & Schmid, "Product quantization for nearest neighbor
//!   search", 2011): the vector is cut into `subspaces` equal parts, and each part is stored as the
//!   number of the nearest of 256 centroids learnt by k-means for that part: `subspaces` bytes per
//!   vector. A search measures the query against every centroid once, into a table, and a vector's
//!   distance is then one table lookup per part. Training needs [`PQ_TRAIN_MIN`] vectors; until
//!   then searches read the full vectors. The centroids are learnt again once the index has grown
//!   tenfold since they were.
//!
//! Both measure asymmetrically: the query stays in full precision and only the stored vectors are
//! approximate.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::index::buffer::Buffer;
use crate::index::distance::Metric;

/// How an [`HnswIndex`](crate::index::HnswIndex) compresses the vectors its searches walk with.
///
/// Searches on a compressed index walk the graph measuring compressed vectors, then re-rank the
/// `ef` best candidates with the full-precision vectors, which stay in the saved file (memory-mapped:
/// only the pages re-ranking touches are read) or in memory for vectors inserted since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    /// Searches read the full-precision vectors.
    #[default]
    None,
    /// One byte per component, over each dimension's range: a quarter of float32's memory.
    Int8,
    /// Product quantisation: `subspaces` bytes per vector (each one part of `dimensions / subspaces`
    /// components); `subspaces` must divide the dimension count. 128-d vectors in 32 subspaces take
    /// 1/16 of float32's memory.
    Product {
        /// Parts per vector, each stored as one byte.
        subspaces: u16,
    },
}

impl Quantization {
    /// Checks the scheme against a dimension count.
    pub(crate) fn validate(self, dimensions: usize) -> Result<(), Error> {
        match self {
            Quantization::Product { subspaces }
                if subspaces == 0 || !dimensions.is_multiple_of(usize::from(subspaces)) =>
            {
                Err(Error::InvalidConfig(format!(
                    "{subspaces} subspaces do not divide {dimensions} dimensions"
                )))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Quantization::None => 0,
            Quantization::Int8 => 1,
            Quantization::Product { .. } => 2,
        }
    }
}

/// Vectors an index needs before product quantisation learns its centroids.
pub(crate) const PQ_TRAIN_MIN: usize = 4_096;
/// Vectors k-means learns from at most.
const PQ_SAMPLE: usize = 16_384;
/// Centroids per subspace: one byte's worth.
pub(crate) const CENTROIDS: usize = 256;
/// k-means rounds.
const KMEANS_ROUNDS: usize = 12;

/// What the codes mean.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scheme {
    /// Component `d` of a vector is `low[d] + code * step[d]`.
    Int8 { low: Vec<f32>, step: Vec<f32> },
    /// Part `m` of a vector is centroid `code` of `centroids[m]` (each `CENTROIDS × part` floats), learnt
    /// from `trained_on` vectors.
    Product {
        part: usize,
        centroids: Vec<f32>,
        trained_on: u64,
    },
}

/// The compressed vectors of an index, slot by slot.
#[derive(Debug, Clone)]
pub(crate) struct Codes {
    pub(crate) quantization: Quantization,
    /// Bytes per vector.
    pub(crate) width: usize,
    /// `None` until trained.
    pub(crate) scheme: Option<Scheme>,
    pub(crate) bytes: Buffer<u8>,
    /// Set when a vector fell outside the int8 ranges: the codes must be made again.
    stale: bool,
}

impl Codes {
    /// No codes yet, for vectors of `dimensions` components; `None` for [`Quantization::None`].
    pub(crate) fn new(quantization: Quantization, dimensions: usize) -> Option<Self> {
        let width = match quantization {
            Quantization::None => return None,
            Quantization::Int8 => dimensions,
            Quantization::Product { subspaces } => usize::from(subspaces),
        };
        Some(Self {
            quantization,
            width,
            scheme: None,
            bytes: Buffer::default(),
            stale: false,
        })
    }

    /// The same scheme with no codes yet: what new slots holding other vectors start from.
    pub(crate) fn emptied(&self) -> Self {
        Self {
            quantization: self.quantization,
            width: self.width,
            scheme: self.scheme.clone(),
            bytes: Buffer::default(),
            stale: false,
        }
    }

    /// Codes read back from a file: checked before use.
    pub(crate) fn restored(
        quantization: Quantization,
        dimensions: usize,
        scheme: Option<Scheme>,
        bytes: Buffer<u8>,
    ) -> Result<Self, &'static str> {
        let mut codes = Self::new(quantization, dimensions).ok_or("codes for an index without quantization")?;
        match (&scheme, quantization) {
            (None, _) if bytes.len() != 0 => return Err("codes without what they mean"),
            (None, _) => {}
            (Some(Scheme::Int8 { low, step }), Quantization::Int8) => {
                let finite = low.iter().chain(step).all(|x| x.is_finite());
                if low.len() != dimensions || step.len() != dimensions || !finite || step.iter().any(|&s| s <= 0.0) {
                    return Err("int8 ranges out of bounds");
                }
            }
            (Some(Scheme::Product { part, centroids, .. }), Quantization::Product { subspaces }) => {
                if *part * usize::from(subspaces) != dimensions
                    || centroids.len() != dimensions * CENTROIDS
                    || centroids.iter().any(|x| !x.is_finite())
                {
                    return Err("product quantisation centroids out of bounds");
                }
            }
            _ => return Err("codes of another scheme than the index's"),
        }
        codes.scheme = scheme;
        codes.bytes = bytes;
        Ok(codes)
    }

    /// How many vectors have codes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() / self.width
    }

    /// Slot `slot`'s code.
    #[inline(always)]
    pub(crate) fn code(&self, slot: u32) -> &[u8] {
        self.bytes.range(slot as usize * self.width, self.width)
    }

    /// Appends the code of one more (prepared) vector, if there is a scheme yet.
    pub(crate) fn push(&mut self, vector: &[f32]) {
        let Some(scheme) = &self.scheme else {
            return;
        };
        let mut code = vec![0u8; self.width];
        self.stale |= !encode(scheme, vector, &mut code);
        self.bytes.extend_from_slice(&code);
    }

    /// After vectors were appended: (re)trains and makes every code again if the scheme needs it (no
    /// scheme yet and enough vectors, an int8 range exceeded, or product centroids learnt from a
    /// tenth of the vectors or fewer). `vectors` yields all `count` vectors in slot order.
    pub(crate) fn refresh<'a>(&mut self, count: usize, vectors: impl Fn(usize) -> &'a [f32] + Sync) {
        let retrain = match (&self.scheme, self.quantization) {
            (None, Quantization::Int8) => count > 0,
            (None, Quantization::Product { .. }) => count >= PQ_TRAIN_MIN,
            (Some(Scheme::Int8 { .. }), _) => self.stale,
            (Some(Scheme::Product { trained_on, .. }), _) => count as u64 >= trained_on.saturating_mul(10),
            (None, Quantization::None) => false,
        };
        if !retrain {
            return;
        }
        let scheme = match self.quantization {
            Quantization::Int8 => fit_ranges(count, &vectors),
            Quantization::Product { subspaces } => train_product(usize::from(subspaces), count, &vectors),
            Quantization::None => return,
        };
        let mut bytes = Buffer::default();
        bytes.reserve(count * self.width);
        let mut code = vec![0u8; self.width];
        for slot in 0..count {
            encode(&scheme, vectors(slot), &mut code);
            bytes.extend_from_slice(&code);
        }
        self.scheme = Some(scheme);
        self.bytes = bytes;
        self.stale = false;
    }
}

/// Writes `vector`'s code into `code`; false if an int8 component fell outside its range (and was
/// clipped to it).
fn encode(scheme: &Scheme, vector: &[f32], code: &mut [u8]) -> bool {
    match scheme {
        Scheme::Int8 { low, step } => {
            let mut inside = true;
            for (((out, &x), &low), &step) in code.iter_mut().zip(vector).zip(low).zip(step) {
                let level = ((x - low) / step).round();
                inside &= (0.0..=255.0).contains(&level);
                *out = level.clamp(0.0, 255.0) as u8;
            }
            inside
        }
        Scheme::Product { part, centroids, .. } => {
            for (m, out) in code.iter_mut().enumerate() {
                let piece = &vector[m * part..(m + 1) * part];
                let table = &centroids[m * CENTROIDS * part..(m + 1) * CENTROIDS * part];
                *out = nearest(piece, table, *part) as u8;
            }
            true
        }
    }
}

/// The index of the centroid (of `part` floats each, back to back in `table`) nearest `piece`.
fn nearest(piece: &[f32], table: &[f32], part: usize) -> usize {
    let mut best = (f32::INFINITY, 0);
    for (j, centroid) in table.chunks_exact(part).enumerate() {
        let d = crate::index::distance::l2_squared(piece, centroid);
        if d < best.0 {
            best = (d, j);
        }
    }
    best.1
}

/// Per-dimension ranges covering every vector, widened by an eighth on each side so that vectors a
/// little outside them later do not force new codes at once.
fn fit_ranges<'a>(count: usize, vectors: &impl Fn(usize) -> &'a [f32]) -> Scheme {
    let dimensions = vectors(0).len();
    let mut min = vec![f32::INFINITY; dimensions];
    let mut max = vec![f32::NEG_INFINITY; dimensions];
    for slot in 0..count {
        for ((x, lo), hi) in vectors(slot).iter().zip(&mut min).zip(&mut max) {
            *lo = lo.min(*x);
            *hi = hi.max(*x);
        }
    }
    let mut low = Vec::with_capacity(dimensions);
    let mut step = Vec::with_capacity(dimensions);
    for (lo, hi) in min.into_iter().zip(max) {
        let margin = (hi - lo) / 8.0;
        let range = (hi - lo) + 2.0 * margin;
        // A constant component needs no resolution; any positive step keeps it exact.
        let range = if range > f32::MIN_POSITIVE * 255.0 {
            range
        } else {
            255.0
        };
        low.push(lo - margin);
        step.push(range / 255.0);
    }
    Scheme::Int8 { low, step }
}

/// Learns 256 centroids per subspace by k-means over an evenly spread sample of the vectors.
fn train_product<'a>(subspaces: usize, count: usize, vectors: &(impl Fn(usize) -> &'a [f32] + Sync)) -> Scheme {
    let dimensions = vectors(0).len();
    let part = dimensions / subspaces;
    let stride = count.div_ceil(PQ_SAMPLE).max(1);
    let sample: Vec<usize> = (0..count).step_by(stride).collect();
    let learn = |m: usize| {
        let points: Vec<f32> = sample
            .iter()
            .flat_map(|&slot| vectors(slot)[m * part..(m + 1) * part].iter().copied())
            .collect();
        kmeans(&points, part)
    };
    #[cfg(not(target_arch = "wasm32"))]
    let tables: Vec<Vec<f32>> = {
        use rayon::prelude::*;
        (0..subspaces).into_par_iter().map(learn).collect()
    };
    #[cfg(target_arch = "wasm32")]
    let tables: Vec<Vec<f32>> = (0..subspaces).map(learn).collect();
    Scheme::Product {
        part,
        centroids: tables.concat(),
        trained_on: count as u64,
    }
}

/// Lloyd's k-means: [`CENTROIDS`] centroids of `part` floats over `points` (back to back), started from
/// evenly spread points; a cluster left empty takes the point farthest from its centroid.
fn kmeans(points: &[f32], part: usize) -> Vec<f32> {
    let n = points.len() / part;
    let point = |i: usize| &points[i * part..(i + 1) * part];
    let mut centroids: Vec<f32> = (0..CENTROIDS).flat_map(|j| point(j * n / CENTROIDS).to_vec()).collect();
    let mut assigned = vec![0usize; n];
    let mut distances = vec![0f32; n];
    for _ in 0..KMEANS_ROUNDS {
        for i in 0..n {
            let j = nearest(point(i), &centroids, part);
            assigned[i] = j;
            distances[i] = crate::index::distance::l2_squared(point(i), &centroids[j * part..(j + 1) * part]);
        }
        let mut sums = vec![0f64; CENTROIDS * part];
        let mut sizes = vec![0usize; CENTROIDS];
        for i in 0..n {
            sizes[assigned[i]] += 1;
            for (sum, &x) in sums[assigned[i] * part..].iter_mut().zip(point(i)) {
                *sum += f64::from(x);
            }
        }
        for j in 0..CENTROIDS {
            let centroid = &mut centroids[j * part..(j + 1) * part];
            if sizes[j] > 0 {
                for (c, sum) in centroid.iter_mut().zip(&sums[j * part..(j + 1) * part]) {
                    *c = (*sum / sizes[j] as f64) as f32;
                }
            } else if let Some(far) = (0..n).max_by(|&a, &b| distances[a].total_cmp(&distances[b])) {
                centroid.copy_from_slice(point(far));
                distances[far] = 0.0;
            }
        }
    }
    centroids
}

/// A query made ready to be measured against codes.
pub(crate) enum CodeQuery {
    /// int8 under L2: `query - low`, with the steps.
    Int8L2 { shifted: Vec<f32>, step: Vec<f32> },
    /// int8 under a product: `query × step`, plus `query · low`.
    Int8Dot { scaled: Vec<f32>, offset: f32 },
    /// Product quantisation: per subspace, the query's squared distance (L2) or product (dot,
    /// cosine) with each centroid.
    Table(Vec<f32>),
}

impl CodeQuery {
    /// `query` (prepared as the index stores vectors) against `scheme`'s codes under `metric`.
    pub(crate) fn new(scheme: &Scheme, metric: Metric, query: &[f32]) -> Self {
        match (scheme, metric) {
            (Scheme::Int8 { low, step }, Metric::L2) => CodeQuery::Int8L2 {
                shifted: query.iter().zip(low).map(|(q, l)| q - l).collect(),
                step: step.clone(),
            },
            (Scheme::Int8 { low, step }, Metric::Dot | Metric::Cosine) => CodeQuery::Int8Dot {
                scaled: query.iter().zip(step).map(|(q, s)| q * s).collect(),
                offset: crate::index::distance::dot(query, low),
            },
            (Scheme::Product { part, centroids, .. }, metric) => {
                let table = centroids
                    .chunks_exact(*part)
                    .enumerate()
                    .map(|(i, centroid)| {
                        let piece = &query[(i / CENTROIDS) * part..(i / CENTROIDS + 1) * part];
                        match metric {
                            Metric::L2 => crate::index::distance::l2_squared(piece, centroid),
                            Metric::Dot | Metric::Cosine => crate::index::distance::dot(piece, centroid),
                        }
                    })
                    .collect();
                CodeQuery::Table(table)
            }
        }
    }

    /// The ranking distance (as [`Metric::rank`] gives it) to the vector `code` stands for.
    #[inline(always)]
    pub(crate) fn rank(&self, metric: Metric, code: &[u8]) -> f32 {
        let similarity = match self {
            CodeQuery::Int8L2 { shifted, step } => return int8_l2(shifted, step, code),
            CodeQuery::Int8Dot { scaled, offset } => offset + int8_dot(scaled, code),
            CodeQuery::Table(table) if metric == Metric::L2 => return table_sum(table, code),
            CodeQuery::Table(table) => table_sum(table, code),
        };
        match metric {
            Metric::Cosine => 1.0 - similarity,
            Metric::Dot | Metric::L2 => -similarity,
        }
    }
}

/// Independent accumulators, as in the float kernels.
const LANES: usize = 16;

/// Σ (shifted[d] - step[d]·code[d])².
#[inline(always)]
fn int8_l2(shifted: &[f32], step: &[f32], code: &[u8]) -> f32 {
    let mut sums = [0f32; LANES];
    let n = code.len().min(shifted.len()).min(step.len());
    let blocks = n / LANES;
    for b in 0..blocks {
        let range = b * LANES..(b + 1) * LANES;
        let (s, t, c) = (&shifted[range.clone()], &step[range.clone()], &code[range]);
        for lane in 0..LANES {
            let d = s[lane] - t[lane] * f32::from(c[lane]);
            sums[lane] += d * d;
        }
    }
    let mut total: f32 = sums.iter().sum();
    for i in blocks * LANES..n {
        let d = shifted[i] - step[i] * f32::from(code[i]);
        total += d * d;
    }
    total
}

/// Σ scaled[d]·code[d].
#[inline(always)]
fn int8_dot(scaled: &[f32], code: &[u8]) -> f32 {
    let mut sums = [0f32; LANES];
    let n = code.len().min(scaled.len());
    let blocks = n / LANES;
    for b in 0..blocks {
        let range = b * LANES..(b + 1) * LANES;
        let (s, c) = (&scaled[range.clone()], &code[range]);
        for lane in 0..LANES {
            sums[lane] += s[lane] * f32::from(c[lane]);
        }
    }
    let mut total: f32 = sums.iter().sum();
    for i in blocks * LANES..n {
        total += scaled[i] * f32::from(code[i]);
    }
    total
}

/// Σ table[m·256 + code[m]], in four independent sums.
#[inline(always)]
fn table_sum(table: &[f32], code: &[u8]) -> f32 {
    let mut sums = [0f32; 4];
    let rows = table.chunks_exact(CENTROIDS);
    for (m, (row, &c)) in rows.zip(code).enumerate() {
        sums[m % 4] += row[usize::from(c)];
    }
    sums.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(n: usize, dims: usize) -> Vec<Vec<f32>> {
        let mut state = 7u64;
        let mut next = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        (0..n)
            .map(|i| (0..dims).map(|d| next() + (i % 5) as f32 * (d % 3) as f32).collect())
            .collect()
    }

    #[test]
    fn codes_measure_close_to_the_full_vectors() {
        let data = vectors(5_000, 16);
        let query = &data[17];
        for (quantization, tolerance) in [
            (Quantization::Int8, 0.01),
            (Quantization::Product { subspaces: 8 }, 0.05),
        ] {
            let mut codes = Codes::new(quantization, 16).unwrap();
            codes.refresh(data.len(), |slot| &data[slot]);
            assert_eq!(codes.len(), data.len());
            for metric in [Metric::L2, Metric::Dot] {
                let prepared = CodeQuery::new(codes.scheme.as_ref().unwrap(), metric, query);
                // The worst error, against the spread of the exact distances.
                let (mut worst, mut spread) = (0f32, 0f32);
                for (slot, vector) in data.iter().enumerate().step_by(37) {
                    let exact = metric.rank(crate::index::simd::Portable, query, vector);
                    let approximate = prepared.rank(metric, codes.code(slot as u32));
                    worst = worst.max((exact - approximate).abs());
                    spread = spread.max(exact.abs());
                }
                let worst = worst / spread;
                assert!(worst < tolerance, "{quantization:?} {metric:?}: relative error {worst}");
            }
        }
    }

    #[test]
    fn an_int8_range_follows_vectors_outside_it() {
        let mut codes = Codes::new(Quantization::Int8, 2).unwrap();
        let mut data = vec![vec![0.0, 1.0], vec![1.0, 2.0]];
        codes.refresh(data.len(), |slot| &data[slot]);
        data.push(vec![50.0, -50.0]);
        codes.push(&data[2]);
        assert!(codes.stale);
        codes.refresh(data.len(), |slot| &data[slot]);
        let Some(Scheme::Int8 { low, step }) = &codes.scheme else {
            panic!("int8")
        };
        for (slot, vector) in data.iter().enumerate() {
            for (d, &x) in vector.iter().enumerate() {
                let decoded = low[d] + f32::from(codes.code(slot as u32)[d]) * step[d];
                assert!((decoded - x).abs() <= step[d], "slot {slot} dimension {d}");
            }
        }
    }

    #[test]
    fn product_quantisation_waits_for_enough_vectors_and_subspaces_must_divide() {
        let data = vectors(PQ_TRAIN_MIN - 1, 8);
        let mut codes = Codes::new(Quantization::Product { subspaces: 4 }, 8).unwrap();
        codes.refresh(data.len(), |slot| &data[slot]);
        assert!(codes.scheme.is_none() && codes.len() == 0);
        assert!(Quantization::Product { subspaces: 3 }.validate(8).is_err());
        assert!(Quantization::Product { subspaces: 0 }.validate(8).is_err());
        assert!(Quantization::Product { subspaces: 8 }.validate(8).is_ok());
    }
}
