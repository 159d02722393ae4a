//! Distance kernels, and the checks that keep bad vectors out of an index.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::index::simd::Kernels;

/// How closeness is measured. Search results carry a distance: lower is closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `1 - cosine similarity` (vectors are normalised when inserted; 0 means the same direction).
    Cosine,
    /// `-dot product` (maximum inner product search; vectors are used as given).
    Dot,
    /// Euclidean distance.
    L2,
}

impl Metric {
    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::Cosine => 0,
            Metric::Dot => 1,
            Metric::L2 => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Metric::Cosine),
            1 => Some(Metric::Dot),
            2 => Some(Metric::L2),
            _ => None,
        }
    }

    /// Checks a vector and returns it in the form stored (normalised for cosine).
    pub(crate) fn prepare(self, vector: &[f32], dimensions: usize) -> Result<Vec<f32>, Error> {
        let mut prepared = Vec::with_capacity(dimensions);
        self.prepare_into(vector, dimensions, &mut prepared)?;
        Ok(prepared)
    }

    /// Checks a vector and appends it to `out` in the form stored; on an error `out` is unchanged.
    pub(crate) fn prepare_into(self, vector: &[f32], dimensions: usize, out: &mut Vec<f32>) -> Result<(), Error> {
        if vector.len() != dimensions {
            return Err(Error::DimensionMismatch {
                expected: dimensions,
                found: vector.len(),
            });
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidVector {
                reason: "it holds NaN or infinity".into(),
            });
        }
        let norm_sq: f32 = dot(vector, vector);
        if !norm_sq.is_finite() {
            return Err(Error::InvalidVector {
                reason: "its length overflows f32".into(),
            });
        }
        match self {
            Metric::Cosine if norm_sq == 0.0 => {
                return Err(Error::InvalidVector {
                    reason: "a zero vector has no direction for cosine similarity".into(),
                });
            }
            Metric::Cosine => {
                let inverse = 1.0 / norm_sq.sqrt();
                out.extend(vector.iter().map(|x| x * inverse));
            }
            Metric::Dot | Metric::L2 => out.extend_from_slice(vector),
        }
        Ok(())
    }

    /// The ranking distance between a prepared query and a stored vector (squared for L2), computed
    /// with `kernels`. Always inlined, so that it is compiled with the SIMD features of the search loop
    /// it sits in.
    #[inline(always)]
    pub(crate) fn rank(self, kernels: impl Kernels, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => (1.0 - kernels.dot(a, b)).max(0.0),
            Metric::Dot => -kernels.dot(a, b),
            Metric::L2 => kernels.l2_squared(a, b),
        }
    }

    /// The distance between two vectors as given, as indexes and stores report it: `1 - cosine
    /// similarity` (1 when either vector is zero), `-dot product`, or the Euclidean distance. Vectors
    /// of different lengths are compared over the shorter length (each norm over its whole vector).
    ///
    /// ```
    /// use kai_memory::index::Metric;
    ///
    /// assert_eq!(Metric::L2.distance(&[0.0, 3.0], &[4.0, 0.0]), 5.0);
    /// assert_eq!(Metric::Dot.distance(&[1.0, 2.0], &[3.0, 4.0]), -11.0);
    /// assert!(Metric::Cosine.distance(&[2.0, 0.0], &[5.0, 0.0]).abs() < 1e-6);
    /// ```
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => {
                let norms = dot(a, a).sqrt() * dot(b, b).sqrt();
                if norms > 0.0 {
                    (1.0 - dot(a, b) / norms).max(0.0)
                } else {
                    1.0
                }
            }
            Metric::Dot => -dot(a, b),
            Metric::L2 => l2_squared(a, b).sqrt(),
        }
    }

    /// The distance reported to callers, from a ranking distance.
    pub(crate) fn report(self, rank: f32) -> f32 {
        match self {
            Metric::L2 => rank.sqrt(),
            Metric::Cosine | Metric::Dot => rank,
        }
    }
}

/// Independent accumulators in the portable kernels: four SSE registers (or, where the compiler may use
/// them, two AVX2 or one AVX-512 register).
const LANES: usize = 16;

/// Dot product with [`LANES`] independent accumulators, which the compiler turns into SIMD. The
/// portable kernel; [`Kernels`] has faster ones where the CPU allows.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut sums = [0.0f32; LANES];
    let chunks = n / LANES;
    for i in 0..chunks {
        let (x, y) = (&a[i * LANES..i * LANES + LANES], &b[i * LANES..i * LANES + LANES]);
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    let mut total: f32 = sums.iter().sum();
    for i in chunks * LANES..n {
        total += a[i] * b[i];
    }
    total
}

/// Squared Euclidean distance, vectorised like [`dot`].
#[inline(always)]
pub(crate) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut sums = [0.0f32; LANES];
    let chunks = n / LANES;
    for i in 0..chunks {
        let (x, y) = (&a[i * LANES..i * LANES + LANES], &b[i * LANES..i * LANES + LANES]);
        for lane in 0..LANES {
            let d = x[lane] - y[lane];
            sums[lane] += d * d;
        }
    }
    let mut total: f32 = sums.iter().sum();
    for i in chunks * LANES..n {
        let d = a[i] - b[i];
        total += d * d;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_the_definitions() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 3.0 - i as f32).collect();
        let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((dot(&a, &b) - naive_dot).abs() < 1e-3);
        assert!((l2_squared(&a, &b) - naive_l2).abs() < 1e-2);
    }

    #[test]
    fn bad_vectors_are_typed_errors() {
        assert!(matches!(
            Metric::L2.prepare(&[1.0], 2),
            Err(Error::DimensionMismatch { expected: 2, found: 1 })
        ));
        assert!(matches!(
            Metric::L2.prepare(&[f32::NAN, 1.0], 2),
            Err(Error::InvalidVector { .. })
        ));
        assert!(matches!(
            Metric::Dot.prepare(&[f32::INFINITY, 1.0], 2),
            Err(Error::InvalidVector { .. })
        ));
        assert!(matches!(
            Metric::Cosine.prepare(&[0.0, 0.0], 2),
            Err(Error::InvalidVector { .. })
        ));
        assert!(matches!(
            Metric::L2.prepare(&[3e38, 3e38], 2),
            Err(Error::InvalidVector { .. })
        ));
        let unit = Metric::Cosine.prepare(&[3.0, 4.0], 2).unwrap();
        assert!((unit[0] - 0.6).abs() < 1e-6 && (unit[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn rounding_past_one_never_gives_a_negative_cosine_distance() {
        let v = Metric::Cosine.prepare(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 7).unwrap();
        assert!(Metric::Cosine.rank(crate::index::simd::Portable, &v, &v) >= 0.0);
    }
}
