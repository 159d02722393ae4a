//! Compressed copies of an index's vectors, which searches walk the graph with; the full-precision
//! vectors then re-rank the best candidates found.
//!
//! Three schemes:
//! - **int8** (scalar quantisation): each component as one byte over its dimension's range, a quarter
//!   of float32. The range follows the data: a vector outside it widens it (with a margin) and the
//!   codes are made again, so no component is ever clipped.
//! - **int4**: each component as four bits over the vector's own range (its least component and
//!   step, stored with the code as two f32), scaled per vector like LVQ (Aguerrebere et al.,
//!   "Similarity search in the blink of an eye with compressed indices", 2023), without its
//!   mean-centring: a vector's own range is narrower than the dimensions' ranges over all vectors, and
//!   no range is learnt or widened. 128-d vectors take 72 bytes, 14% of float32; 384-d, 200 (13%).
//! - **product quantisation** of residuals (Jégou, Douze & Schmid, "Product quantization for nearest
//!   neighbor search", 2011, the residual encoding of its section IV): a vector is stored as the
//!   nearest of 256 coarse centroids (one byte) plus its remainder from that centroid cut into
//!   `subspaces` equal parts, each stored as the number of the nearest of 256 centroids learnt by
//!   k-means for that part (one byte each); under L2 also the reconstruction's squared length (four
//!   bytes). Encoding the remainder rather than the vector spends the bytes on what tells neighbours
//!   apart within a cluster. A search measures the query against every centroid once, into tables,
//!   and a vector's distance is then one lookup per byte. Training needs [`PQ_TRAIN_MIN`] vectors;
//!   until then searches read the full vectors. The centroids are learnt again once the index has
//!   grown tenfold since they were, or once more than one vector in twenty was encoded with four
//!   times the training sample's mean error or more (the data moved away from what was learnt).
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
    /// Four bits per component over each vector's own range: `⌈dimensions / 2⌉ + 8` bytes per
    /// vector, 14% of float32's memory at 128 dimensions and 13% at 384.
    Int4,
    /// Product quantisation of each vector's remainder from the nearest of 256 coarse centroids:
    /// `subspaces + 1` bytes per vector (`subspaces + 5` under L2); `subspaces` must divide the
    /// dimension count. 128-d vectors in 32 subspaces take 37 bytes under L2, 7% of float32's 512.
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
            Quantization::Int4 => 3,
        }
    }
}

/// A quantization by name: `none`, `int8`, `int4` or `pq<subspaces>` (`pq32`), as configuration files and
/// other languages' bindings give it.
///
/// ```
/// use kai_memory::index::Quantization;
///
/// assert_eq!("pq32".parse::<Quantization>()?, Quantization::Product { subspaces: 32 });
/// assert_eq!(Quantization::Int8.to_string(), "int8");
/// assert!("pq".parse::<Quantization>().is_err());
/// # Ok::<(), kai_memory::Error>(())
/// ```
impl std::str::FromStr for Quantization {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "none" => Ok(Quantization::None),
            "int8" => Ok(Quantization::Int8),
            "int4" => Ok(Quantization::Int4),
            _ => name
                .strip_prefix("pq")
                .and_then(|subspaces| subspaces.parse().ok())
                .map(|subspaces| Quantization::Product { subspaces })
                .ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "unknown quantization {name:?}: none, int8, int4 or pq<subspaces>"
                    ))
                }),
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quantization::None => f.write_str("none"),
            Quantization::Int8 => f.write_str("int8"),
            Quantization::Int4 => f.write_str("int4"),
            Quantization::Product { subspaces } => write!(f, "pq{subspaces}"),
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
    /// The code holds the vector's least component `low` and `step` (f32, little-endian), then the
    /// levels, two per byte: byte `i` holds
    /// component `i` in its low half and component `i + ⌈dimensions / 2⌉` in its high half (so that
    /// each half is read in runs, as SIMD does well). Component `d` is `low + level * step`.
    Int4,
    /// A vector is coarse centroid `code[0]` (of `coarse`, `CENTROIDS` vectors) plus, for each part `m`,
    /// centroid `code[1 + m]` of the part's `CENTROIDS` in `centroids` (`CENTROIDS × part` floats per
    /// part); learnt from `trained_on` vectors, whose mean squared reconstruction error was
    /// `typical_error`. Under L2 the code ends with the reconstruction's squared length (f32,
    /// little-endian).
    Product {
        part: usize,
        coarse: Vec<f32>,
        centroids: Vec<f32>,
        trained_on: u64,
        typical_error: f32,
        /// `centroids` by component: per part, its `part` components' values over the 256 centroids,
        /// so that a query's table is made in runs of 256 (what SIMD does well).
        by_component: Vec<f32>,
    },
}

impl Scheme {
    /// A product scheme, with its centroids also laid out by component.
    pub(crate) fn product(
        part: usize,
        coarse: Vec<f32>,
        centroids: Vec<f32>,
        trained_on: u64,
        typical_error: f32,
    ) -> Self {
        let mut by_component = vec![0f32; centroids.len()];
        for (m, block) in centroids.chunks_exact(CENTROIDS * part).enumerate() {
            for (j, centroid) in block.chunks_exact(part).enumerate() {
                for (p, &value) in centroid.iter().enumerate() {
                    by_component[(m * part + p) * CENTROIDS + j] = value;
                }
            }
        }
        Scheme::Product {
            part,
            coarse,
            centroids,
            trained_on,
            typical_error,
            by_component,
        }
    }
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
    /// Vectors encoded since training that the scheme fits badly (an int8 component out of range, a
    /// product reconstruction far off).
    misfits: usize,
}

impl Codes {
    /// No codes yet, for vectors of `dimensions` components under `metric`; `None` for
    /// [`Quantization::None`].
    pub(crate) fn new(quantization: Quantization, dimensions: usize, metric: Metric) -> Option<Self> {
        let width = match quantization {
            Quantization::None => return None,
            Quantization::Int8 => dimensions,
            Quantization::Int4 => INT4_HEADER + dimensions.div_ceil(2),
            Quantization::Product { subspaces } if metric == Metric::L2 => 1 + usize::from(subspaces) + 4,
            Quantization::Product { subspaces } => 1 + usize::from(subspaces),
        };
        Some(Self {
            quantization,
            width,
            scheme: None,
            bytes: Buffer::default(),
            misfits: 0,
        })
    }

    /// The same scheme with no codes yet: what new slots holding other vectors start from.
    pub(crate) fn emptied(&self) -> Self {
        Self {
            quantization: self.quantization,
            width: self.width,
            scheme: self.scheme.clone(),
            bytes: Buffer::default(),
            misfits: 0,
        }
    }

    /// Codes read back from a file: checked before use.
    pub(crate) fn restored(
        quantization: Quantization,
        dimensions: usize,
        metric: Metric,
        scheme: Option<Scheme>,
        bytes: Buffer<u8>,
    ) -> Result<Self, &'static str> {
        let mut codes = Self::new(quantization, dimensions, metric).ok_or("codes for an index without quantization")?;
        if !bytes.len().is_multiple_of(codes.width) {
            return Err("the codes are not whole");
        }
        match (&scheme, quantization) {
            (None, _) if bytes.len() != 0 => return Err("codes without what they mean"),
            (None, _) => {}
            (Some(Scheme::Int4), Quantization::Int4) => {
                // Per-vector ranges: every one finite (its top end too), with a positive step.
                let bounded = |code: &[u8]| {
                    let [low, step] = int4_header(code);
                    step > 0.0 && (low.abs() + 15.0 * step).is_finite()
                };
                let count = bytes.len() / codes.width;
                if !(0..count).all(|slot| bounded(bytes.range(slot * codes.width, codes.width))) {
                    return Err("int4 ranges out of bounds");
                }
            }
            (Some(Scheme::Int8 { low, step }), Quantization::Int8) => {
                let finite = low.iter().chain(step).all(|x| x.is_finite());
                if low.len() != dimensions || step.len() != dimensions || !finite || step.iter().any(|&s| s <= 0.0) {
                    return Err("int8 ranges out of bounds");
                }
            }
            (
                Some(Scheme::Product {
                    part,
                    coarse,
                    centroids,
                    typical_error,
                    trained_on,
                    ..
                }),
                Quantization::Product { subspaces },
            ) => {
                if *part * usize::from(subspaces) != dimensions
                    || *trained_on < PQ_TRAIN_MIN as u64
                    || !typical_error.is_finite()
                    || *typical_error < 0.0
                    || centroids.len() != dimensions * CENTROIDS
                    || coarse.len() != dimensions * CENTROIDS
                    || centroids.iter().chain(coarse).any(|x| !x.is_finite())
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
        if !encode(scheme, vector, &mut code) {
            self.misfits += 1;
        }
        self.bytes.extend_from_slice(&code);
    }

    /// After vectors were appended: (re)trains and makes every code again if the scheme needs it (no
    /// scheme yet and enough vectors, an int8 range exceeded, or product centroids learnt from a
    /// tenth of the vectors or fewer). `vectors` yields all `count` vectors in slot order.
    pub(crate) fn refresh<'a>(&mut self, count: usize, vectors: impl Fn(usize) -> &'a [f32] + Sync) {
        if count == 0 {
            // Nothing to learn from (a compaction that kept nothing): the codes are empty already.
            return;
        }
        let retrain = match (&self.scheme, self.quantization) {
            (None, Quantization::Int8 | Quantization::Int4) => count > 0,
            (None, Quantization::Product { .. }) => count >= PQ_TRAIN_MIN,
            // A clipped component measures wrong: one is enough.
            (Some(Scheme::Int8 { .. }), _) => self.misfits > 0,
            // Each vector has its own range: nothing to learn again.
            (Some(Scheme::Int4), _) => false,
            (Some(Scheme::Product { trained_on, .. }), _) => {
                count as u64 >= trained_on.saturating_mul(10) || self.misfits.saturating_mul(20) > count
            }
            (None, Quantization::None) => false,
        };
        if !retrain {
            return;
        }
        let scheme = match self.quantization {
            Quantization::Int8 => fit_ranges(count, &vectors),
            Quantization::Int4 => Scheme::Int4,
            Quantization::Product { subspaces } => train_product(usize::from(subspaces), count, &vectors),
            Quantization::None => return,
        };
        // Codes are made in parallel where there are threads: product quantisation measures every
        // vector against 256 centroids per part.
        #[cfg(not(target_arch = "wasm32"))]
        let made: Vec<u8> = {
            use rayon::prelude::*;
            let width = self.width;
            (0..count)
                .into_par_iter()
                .flat_map_iter(|slot| {
                    let mut code = vec![0u8; width];
                    encode(&scheme, vectors(slot), &mut code);
                    code
                })
                .collect()
        };
        #[cfg(target_arch = "wasm32")]
        let made: Vec<u8> = (0..count)
            .flat_map(|slot| {
                let mut code = vec![0u8; self.width];
                encode(&scheme, vectors(slot), &mut code);
                code
            })
            .collect();
        let mut bytes = Buffer::default();
        bytes.extend_from_slice(&made);
        self.scheme = Some(scheme);
        self.bytes = bytes;
        self.misfits = 0;
    }
}

/// Writes `vector`'s code into `code`; false if the scheme fits it badly: an int8 component fell
/// outside its range (and was clipped to it), or a product reconstruction is off by four times the
/// training sample's mean error or more.
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
        Scheme::Product {
            part,
            coarse,
            centroids,
            typical_error,
            ..
        } => encode_product(*part, coarse, centroids, vector, code) <= 4.0 * typical_error,
        Scheme::Int4 => {
            encode_int4(vector, code);
            true
        }
    }
}

/// Bytes before an int4 code's levels: its range's low end and step.
const INT4_HEADER: usize = 8;

/// Writes `vector`'s int4 code into `code` (see [`Scheme::Int4`]).
fn encode_int4(vector: &[f32], code: &mut [u8]) {
    let low = vector.iter().copied().fold(f32::INFINITY, f32::min);
    let high = vector.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // A constant vector needs no resolution; any positive step keeps it exact.
    let step = if high - low > f32::MIN_POSITIVE * 15.0 {
        (high - low) / 15.0
    } else {
        1.0
    };
    let half = vector.len().div_ceil(2);
    let (header, levels) = code.split_at_mut(INT4_HEADER);
    levels.fill(0);
    for (d, &x) in vector.iter().enumerate() {
        let level = ((x - low) / step).round().clamp(0.0, 15.0);
        levels[d % half] |= (level as u8) << (4 * (d / half));
    }
    header[..4].copy_from_slice(&low.to_le_bytes());
    header[4..8].copy_from_slice(&step.to_le_bytes());
}

/// An int4 code's low end and step.
#[inline(always)]
fn int4_header(code: &[u8]) -> [f32; 2] {
    let field = |at: usize| {
        code.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0.0, f32::from_le_bytes)
    };
    [field(0), field(4)]
}

/// Writes `vector`'s product code into `code` (the nearest coarse centroid, then the nearest centroid
/// of each part of the remainder, then under L2 the reconstruction's squared length); returns the
/// squared distance between `vector` and its reconstruction.
fn encode_product(part: usize, coarse: &[f32], centroids: &[f32], vector: &[f32], code: &mut [u8]) -> f32 {
    let dimensions = vector.len();
    let cell = nearest(vector, coarse, dimensions);
    let centre = &coarse[cell * dimensions..(cell + 1) * dimensions];
    code[0] = cell as u8;
    let (mut squared_length, mut error) = (0f32, 0f32);
    for m in 0..dimensions / part {
        let range = m * part..(m + 1) * part;
        let remainder: Vec<f32> = vector[range.clone()]
            .iter()
            .zip(&centre[range.clone()])
            .map(|(x, c)| x - c)
            .collect();
        let table = &centroids[m * CENTROIDS * part..(m + 1) * CENTROIDS * part];
        let j = nearest(&remainder, table, part);
        code[1 + m] = j as u8;
        let rebuilt = table[j * part..(j + 1) * part]
            .iter()
            .zip(&centre[range.clone()])
            .map(|(r, c)| r + c);
        for (x, y) in rebuilt.zip(&vector[range]) {
            squared_length += x * x;
            error += (x - y) * (x - y);
        }
    }
    // Under L2 the code has room for the reconstruction's squared length.
    if let Some(tail) = code.get_mut(1 + dimensions / part..).filter(|tail| tail.len() == 4) {
        tail.copy_from_slice(&squared_length.to_le_bytes());
    }
    error
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

/// Learns 256 coarse centroids, then 256 centroids per subspace of the sample's remainders from
/// their coarse centroids, by k-means over an evenly spread sample of the vectors.
fn train_product<'a>(subspaces: usize, count: usize, vectors: &(impl Fn(usize) -> &'a [f32] + Sync)) -> Scheme {
    let dimensions = vectors(0).len();
    let part = dimensions / subspaces;
    let stride = count.div_ceil(PQ_SAMPLE).max(1);
    let sample: Vec<f32> = (0..count)
        .step_by(stride)
        .flat_map(|slot| vectors(slot).iter().copied())
        .collect();
    let coarse = kmeans(&sample, dimensions);
    let remainders: Vec<f32> = sample
        .chunks_exact(dimensions)
        .flat_map(|vector| {
            let cell = nearest(vector, &coarse, dimensions);
            let centre = &coarse[cell * dimensions..(cell + 1) * dimensions];
            vector.iter().zip(centre).map(|(x, c)| x - c).collect::<Vec<_>>()
        })
        .collect();
    let learn = |m: usize| {
        let points: Vec<f32> = remainders
            .chunks_exact(dimensions)
            .flat_map(|remainder| remainder[m * part..(m + 1) * part].iter().copied())
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
    // The sample's mean error, which later vectors are judged by.
    let centroids = tables.concat();
    let mut code = vec![0u8; 1 + subspaces + 4];
    let total: f64 = sample
        .chunks_exact(dimensions)
        .map(|vector| f64::from(encode_product(part, &coarse, &centroids, vector, &mut code)))
        .sum();
    let typical_error = (total / (sample.len() / dimensions).max(1) as f64) as f32;
    Scheme::product(part, coarse, centroids, count as u64, typical_error)
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
    /// int4: the query and the sum of its components.
    Int4 { query: Vec<f32>, sum: f64 },
    /// Product quantisation: the query's product with each coarse centroid and with each part's
    /// centroids (one table, coarse first), and its squared length.
    Table { products: Vec<f32>, squared_length: f32 },
}

impl CodeQuery {
    /// `query` (prepared as the index stores vectors) against `scheme`'s codes under `metric`. Always
    /// inlined, so that it is compiled with the SIMD features of the search it starts.
    #[inline(always)]
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
            (Scheme::Int4, _) => CodeQuery::Int4 {
                sum: query.iter().map(|&q| f64::from(q)).sum(),
                query: query.to_vec(),
            },
            (
                Scheme::Product {
                    part,
                    coarse,
                    by_component,
                    ..
                },
                _,
            ) => {
                let part = *part;
                let mut products = Vec::with_capacity(CENTROIDS + by_component.len() / part.max(1));
                products.extend(
                    coarse
                        .chunks_exact(query.len())
                        .map(|centre| crate::index::distance::dot(query, centre)),
                );
                // Part m's row: the sum, over its components, of the query's component times that
                // component of each of the 256 centroids.
                for (piece, rows) in query
                    .chunks_exact(part)
                    .zip(by_component.chunks_exact(part * CENTROIDS))
                {
                    let mut row = [0f32; CENTROIDS];
                    for (&q, values) in piece.iter().zip(rows.chunks_exact(CENTROIDS)) {
                        for (sum, &value) in row.iter_mut().zip(values) {
                            *sum += q * value;
                        }
                    }
                    products.extend_from_slice(&row);
                }
                CodeQuery::Table {
                    products,
                    squared_length: crate::index::distance::dot(query, query),
                }
            }
        }
    }

    /// The ranking distance (as [`Metric::rank`] gives it) to the vector `code` stands for.
    #[inline(always)]
    pub(crate) fn rank(&self, metric: Metric, code: &[u8]) -> f32 {
        let similarity = match self {
            CodeQuery::Int8L2 { shifted, step } => return int8_l2(shifted, step, code),
            CodeQuery::Int8Dot { scaled, offset } => offset + int8_dot(scaled, code),
            CodeQuery::Int4 { query, sum } => {
                let [low, step] = int4_header(code);
                let levels = code.get(INT4_HEADER..).unwrap_or_default();
                if metric == Metric::L2 {
                    // Differences, not |q|² - 2q·x + |x|², which cancels away far from the origin.
                    return int4_l2(query, levels, low, step);
                }
                // q·x = Σ q_d (low + step · level_d) = low Σ q_d + step (q · levels), in f64: the two
                // terms may be large and of opposite signs.
                let product = f64::from(low) * sum + f64::from(step) * f64::from(int4_dot(query, levels));
                product as f32
            }
            CodeQuery::Table {
                products,
                squared_length,
            } => {
                let product = table_sum(products, code);
                if metric == Metric::L2 {
                    // |q - x|² = |q|² - 2 q·x + |x|², with |x|² stored at the code's end.
                    let tail = code.len().saturating_sub(4);
                    let stored = code
                        .get(tail..)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0.0, f32::from_le_bytes);
                    return squared_length - 2.0 * product + stored;
                }
                product
            }
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

/// Σ query[d]·level[d] over int4 levels (see [`Scheme::Int4`] for their order): the low halves
/// against the query's first half, the high halves against its second.
#[inline(always)]
fn int4_dot(query: &[f32], levels: &[u8]) -> f32 {
    let (first, second) = query.split_at(levels.len().min(query.len()));
    let term = |q: f32, level: f32| q * level;
    nibble_sum(first, levels, 0, term) + nibble_sum(second, levels, 4, term)
}

/// Σ (query[d] - low - step·level[d])² over int4 levels, halves as in [`int4_dot`].
#[inline(always)]
fn int4_l2(query: &[f32], levels: &[u8], low: f32, step: f32) -> f32 {
    let (first, second) = query.split_at(levels.len().min(query.len()));
    let term = |q: f32, level: f32| {
        let d = q - low - step * level;
        d * d
    };
    nibble_sum(first, levels, 0, term) + nibble_sum(second, levels, 4, term)
}

/// Σ term(query[i], (levels[i] >> shift) & 15), in [`LANES`] independent sums.
#[inline(always)]
fn nibble_sum(query: &[f32], levels: &[u8], shift: u32, term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut sums = [0f32; LANES];
    let n = query.len().min(levels.len());
    let blocks = n / LANES;
    for b in 0..blocks {
        let range = b * LANES..(b + 1) * LANES;
        let (q, bytes) = (&query[range.clone()], &levels[range]);
        for lane in 0..LANES {
            sums[lane] += term(q[lane], f32::from((bytes[lane] >> shift) & 15));
        }
    }
    let mut total: f32 = sums.iter().sum();
    for (&q, &byte) in query[..n].iter().zip(&levels[..n]).skip(blocks * LANES) {
        total += term(q, f32::from((byte >> shift) & 15));
    }
    total
}

/// Σ table[i·256 + code[i]] over the table's rows (code bytes past them are not read), in four
/// independent sums.
#[inline(always)]
fn table_sum(table: &[f32], code: &[u8]) -> f32 {
    let mut sums = [0f32; 4];
    let rows = table.chunks_exact(CENTROIDS);
    for (i, (row, &c)) in rows.zip(code).enumerate() {
        sums[i % 4] += row[usize::from(c)];
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
            (Quantization::Int4, 0.1),
            (Quantization::Product { subspaces: 8 }, 0.05),
        ] {
            for metric in [Metric::L2, Metric::Dot] {
                let mut codes = Codes::new(quantization, 16, metric).unwrap();
                codes.refresh(data.len(), |slot| &data[slot]);
                assert_eq!(codes.len(), data.len());
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

    /// An int4 code measures exactly what it encodes (its reconstruction), whatever the dimension
    /// count: odd ones leave the last byte's high half empty.
    #[test]
    fn int4_codes_measure_their_reconstruction_at_every_length() {
        // Far from the origin too, where |q|² - 2q·x + |x|² would cancel away.
        for (dims, offset) in [1, 2, 15, 16, 17, 31, 33, 37, 384]
            .map(|d| (d, 0.0))
            .into_iter()
            .chain([(128, 1_000.0)])
        {
            let data: Vec<Vec<f32>> = vectors(50, dims)
                .into_iter()
                .map(|v| v.into_iter().map(|x| x + offset).collect())
                .collect();
            for metric in [Metric::L2, Metric::Dot] {
                let mut codes = Codes::new(Quantization::Int4, dims, metric).unwrap();
                codes.refresh(data.len(), |slot| &data[slot]);
                let query = &data[7];
                let prepared = CodeQuery::new(codes.scheme.as_ref().unwrap(), metric, query);
                for (slot, vector) in data.iter().enumerate() {
                    let code = codes.code(slot as u32);
                    let [low, step] = int4_header(code);
                    let levels = &code[code.len() - dims.div_ceil(2)..];
                    let rebuilt: Vec<f32> = (0..dims)
                        .map(|d| {
                            let half = dims.div_ceil(2);
                            low + step * f32::from((levels[d % half] >> (4 * (d / half))) & 15)
                        })
                        .collect();
                    for (x, r) in vector.iter().zip(&rebuilt) {
                        assert!((x - r).abs() <= step / 2.0 + 1e-6, "{dims}: {x} rebuilt as {r}");
                    }
                    let exact = metric.rank(crate::index::simd::Portable, query, &rebuilt);
                    let measured = prepared.rank(metric, code);
                    // A product's rounding grows with the terms summed, whatever their sum; L2 sums
                    // squares of differences, which stay small however far out the vectors lie.
                    let terms: f32 = query.iter().zip(&rebuilt).map(|(q, r)| (q * r).abs()).sum();
                    // (|q|² - 2q·x + |x|² would not: at offset 1,000 its terms near 10^8, where f32
                    // steps by 8 to 16, for distances near 22.)
                    let scale = if metric == Metric::L2 {
                        1e-4 * (1.0 + exact.abs())
                    } else {
                        1e-5 * (1.0 + exact.abs() + terms)
                    };
                    assert!(
                        (exact - measured).abs() <= scale,
                        "{dims} {metric:?}: {exact} against {measured}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_int8_range_follows_vectors_outside_it() {
        let mut codes = Codes::new(Quantization::Int8, 2, Metric::L2).unwrap();
        let mut data = vec![vec![0.0, 1.0], vec![1.0, 2.0]];
        codes.refresh(data.len(), |slot| &data[slot]);
        data.push(vec![50.0, -50.0]);
        codes.push(&data[2]);
        assert_eq!(codes.misfits, 1);
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

    /// Vectors the centroids fit badly (the data moved) are counted; past one in twenty the centroids
    /// are learnt again, from every vector.
    #[test]
    fn product_centroids_are_learnt_again_when_the_data_moves_away_from_them() {
        let mut data = vectors(PQ_TRAIN_MIN, 8);
        let mut codes = Codes::new(Quantization::Product { subspaces: 4 }, 8, Metric::L2).unwrap();
        codes.refresh(data.len(), |slot| &data[slot]);
        let trained_on = |codes: &Codes| match &codes.scheme {
            Some(Scheme::Product { trained_on, .. }) => *trained_on,
            _ => 0,
        };
        assert_eq!(trained_on(&codes), PQ_TRAIN_MIN as u64);
        for i in 0..PQ_TRAIN_MIN / 10 {
            let far: Vec<f32> = data[i].iter().map(|x| x * 40.0 + 100.0).collect();
            codes.push(&far);
            data.push(far);
        }
        assert!(codes.misfits * 20 > data.len(), "{} misfits", codes.misfits);
        codes.refresh(data.len(), |slot| &data[slot]);
        assert_eq!(
            (trained_on(&codes), codes.misfits, codes.len()),
            (data.len() as u64, 0, data.len())
        );
    }

    #[test]
    fn product_quantisation_waits_for_enough_vectors_and_subspaces_must_divide() {
        let data = vectors(PQ_TRAIN_MIN - 1, 8);
        let mut codes = Codes::new(Quantization::Product { subspaces: 4 }, 8, Metric::L2).unwrap();
        codes.refresh(data.len(), |slot| &data[slot]);
        assert!(codes.scheme.is_none() && codes.len() == 0);
        assert!(Quantization::Product { subspaces: 3 }.validate(8).is_err());
        assert!(Quantization::Product { subspaces: 0 }.validate(8).is_err());
        assert!(Quantization::Product { subspaces: 8 }.validate(8).is_ok());
    }
}
