//! Run-time choice of SIMD code paths, the distance kernels for each, and cache prefetching, for the
//! index's hot loops.
//!
//! The crate is built for the portable x86-64 baseline (SSE2), so without help the distance kernels use
//! 128-bit vectors even on CPUs with AVX2 or AVX-512. [`with_best_simd`] runs a piece of [`SimdWork`]
//! inside a function compiled with the widest features the CPU reports, and hands it the [`Kernels`]
//! written for them. Its `run` method and the code it reaches must be `#[inline(always)]`: code that
//! is not inlined into the feature-enabled function runs with the baseline features. (A closure would
//! not do: the compiler declines to inline a large one, and an attribute cannot force it.) The
//! hand-written kernels are the exception: they are functions compiled with their own features, which
//! callers with the same features inline, and which stay fast when called from code that is not.
//!
//! The AVX2 and AVX-512 kernels are written with intrinsics: fused multiply-adds into several
//! independent accumulators, summed at the end in a short tree. The compiler does neither on its own
//! (it may not reassociate float additions, and keeps one accumulator chain), and on 384-d sentence
//! embeddings they make search about 1.14 times faster than the portable kernels compiled for AVX-512.
//!
//! This is the only module in the crate with `unsafe` code: calling a `#[target_feature]` function is
//! unsafe because running it on a CPU without the features is undefined, and the kernels load through
//! raw pointers. Each call below is guarded by run-time detection of exactly the features it enables,
//! and each load by the bounds it reads within.
#![allow(unsafe_code)]

use crate::index::distance;

/// The widest SIMD level the running CPU supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                Level::Avx512
            } else if avx2 {
                Level::Avx2
            } else {
                Level::Baseline
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Level::Baseline
}

/// Work to run with the best SIMD features. Implementations mark `run` `#[inline(always)]`.
pub(crate) trait SimdWork {
    /// What the work returns.
    type Output;
    /// Does the work, computing distances with `kernels`.
    fn run<K: Kernels>(self, kernels: K) -> Self::Output;
}

/// Distance kernels for one SIMD level. Implementations mark their methods `#[inline(always)]`.
pub(crate) trait Kernels: Copy {
    /// The dot product of `a` and `b` (over the shorter one's length).
    fn dot(self, a: &[f32], b: &[f32]) -> f32;
    /// The squared Euclidean distance between `a` and `b` (over the shorter one's length).
    fn l2_squared(self, a: &[f32], b: &[f32]) -> f32;
}

/// Kernels the compiler vectorises for whatever features the code around them is compiled with: the
/// baseline path, and every target without a hand-written path (wasm32 among them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl Kernels for Portable {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        distance::dot(a, b)
    }

    #[inline(always)]
    fn l2_squared(self, a: &[f32], b: &[f32]) -> f32 {
        distance::l2_squared(a, b)
    }
}

/// Runs `work` compiled with the widest SIMD features the CPU has (AVX-512F, else AVX2 + FMA, else the
/// baseline).
#[inline(always)]
pub(crate) fn with_best_simd<W: SimdWork>(work: W) -> W::Output {
    match level() {
        // SAFETY: `level` returned Avx512 only after detecting AVX-512F, AVX2 and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512(work) },
        // SAFETY: `level` returned Avx2 only after detecting AVX2 and FMA on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { avx2(work) },
        Level::Baseline => work.run(Portable),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn avx512<W: SimdWork>(work: W) -> W::Output {
    work.run(Avx512(()))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2<W: SimdWork>(work: W) -> W::Output {
    work.run(Avx2(()))
}

/// AVX-512F kernels. A value exists only inside [`avx512`], which runs only after the CPU was found to
/// have AVX-512F, AVX2 and FMA: holding one is the proof that the kernels may run.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Kernels for Avx512 {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `self` proves AVX-512F, AVX2 and FMA (see the type).
        unsafe { sum_avx512::<false>(a, b) }
    }

    #[inline(always)]
    fn l2_squared(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as in `dot`.
        unsafe { sum_avx512::<true>(a, b) }
    }
}

/// Σ `a[i]·b[i]`, or Σ `(a[i] - b[i])²` when `SQUARED_DIFFERENCES`, over the shorter length, with
/// fused multiply-adds into two 16-lane accumulators; the last partial block is read with a mask,
/// which loads nothing past the end.
///
/// A function of its own with the features enabled (not only code inlined into one), so that a caller
/// the compiler declines to inline, such as a closure, still calls compiled AVX-512 code rather than
/// each intrinsic separately; callers with the same features inline it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn sum_avx512<const SQUARED_DIFFERENCES: bool>(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let term = |x: __m512, y: __m512, sum: __m512| {
        if SQUARED_DIFFERENCES {
            let d = _mm512_sub_ps(x, y);
            _mm512_fmadd_ps(d, d, sum)
        } else {
            _mm512_fmadd_ps(x, y, sum)
        }
    };
    let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    // SAFETY (each load): an unmasked load reads 16 floats at `i` with `i + 16 <= n`, within both
    // slices; the masked one reads only the lanes below `n - i`.
    while i + 32 <= n {
        even = term(
            unsafe { _mm512_loadu_ps(a.add(i)) },
            unsafe { _mm512_loadu_ps(b.add(i)) },
            even,
        );
        let (x, y) = unsafe { (_mm512_loadu_ps(a.add(i + 16)), _mm512_loadu_ps(b.add(i + 16))) };
        odd = term(x, y, odd);
        i += 32;
    }
    if i + 16 <= n {
        even = term(
            unsafe { _mm512_loadu_ps(a.add(i)) },
            unsafe { _mm512_loadu_ps(b.add(i)) },
            even,
        );
        i += 16;
    }
    if i < n {
        let mask: __mmask16 = (1u16 << (n - i)) - 1;
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_ps(mask, a.add(i)),
                _mm512_maskz_loadu_ps(mask, b.add(i)),
            )
        };
        odd = term(x, y, odd);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(even, odd))
}

/// AVX2 + FMA kernels. A value exists only inside [`avx2`], which runs only after the CPU was found to
/// have AVX2 and FMA: holding one is the proof that the kernels may run.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Kernels for Avx2 {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `self` proves AVX2 and FMA (see the type).
        unsafe { sum_avx2::<false>(a, b) }
    }

    #[inline(always)]
    fn l2_squared(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as in `dot`.
        unsafe { sum_avx2::<true>(a, b) }
    }
}

/// [`sum_avx512`] for AVX2: four 8-lane accumulators for blocks of 32 floats, one for blocks of 8,
/// and scalar code for the rest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sum_avx2<const SQUARED_DIFFERENCES: bool>(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let term = |x: __m256, y: __m256, sum: __m256| {
        if SQUARED_DIFFERENCES {
            let d = _mm256_sub_ps(x, y);
            _mm256_fmadd_ps(d, d, sum)
        } else {
            _mm256_fmadd_ps(x, y, sum)
        }
    };
    let load = |at: usize| {
        let (x, y) = (&a[at..at + 8], &b[at..at + 8]);
        // SAFETY: each load reads the 8 floats of a slice just bounds-checked to hold 8.
        unsafe { (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr())) }
    };
    let mut sums = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (lane, sum) in sums.iter_mut().enumerate() {
            let (x, y) = load(i + 8 * lane);
            *sum = term(x, y, *sum);
        }
        i += 32;
    }
    while i + 8 <= n {
        let (x, y) = load(i);
        sums[0] = term(x, y, sums[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(sums[0], sums[1]), _mm256_add_ps(sums[2], sums[3]));
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    let total = _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps::<1>(quarter, quarter)));
    let tail = a[i..n].iter().zip(&b[i..n]);
    total
        + tail
            .map(|(&x, &y)| if SQUARED_DIFFERENCES { (x - y) * (x - y) } else { x * y })
            .sum::<f32>()
}

/// Asks the CPU to start loading the first 128 bytes of `data` into its caches, so that work on it a
/// little later does not wait for memory. A hint: it never faults and changes no state.
#[inline(always)]
pub(crate) fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = data.as_ptr().cast::<i8>();
        // SAFETY: SSE is part of the x86-64 baseline, and a prefetch of any address (even one past the
        // end of `data`) is a hint that cannot fault or write.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(start);
            _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::distance::Metric;

    /// One ranking distance, as [`SimdWork`].
    struct Rank<'a>(Metric, &'a [f32], &'a [f32]);

    impl SimdWork for Rank<'_> {
        type Output = f32;

        #[inline(always)]
        fn run<K: Kernels>(self, kernels: K) -> f32 {
            self.0.rank(kernels, self.1, self.2)
        }
    }

    /// The ranking distance computed in f64, and the scale its rounding error is relative to.
    fn reference(metric: Metric, a: &[f32], b: &[f32]) -> (f64, f64) {
        let pairs = a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y)));
        let (dot, l2, scale) = pairs.fold((0.0, 0.0, 0.0), |(dot, l2, scale), (x, y)| {
            (
                dot + x * y,
                l2 + (x - y) * (x - y),
                scale + (x * y).abs() + (x - y) * (x - y),
            )
        });
        let rank = match metric {
            Metric::Cosine => (1.0 - dot).max(0.0),
            Metric::Dot => -dot,
            Metric::L2 => l2,
        };
        (rank, scale.max(1.0))
    }

    #[test]
    fn every_path_this_cpu_has_computes_the_distance_at_every_length_and_offset() {
        let a: Vec<f32> = (0..400).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..400).map(|i| (i as f32 * 0.11).cos() * 0.1).collect();
        // Every length up to past two 32-float blocks (each tail and mask), typical embedding sizes,
        // unaligned starts, and a longer second operand (the kernels use the shorter length).
        let lengths = (0..=70).chain([127, 128, 131, 384]);
        for (length, offset) in lengths.flat_map(|n| [(n, 0), (n, 1), (n, 3)]) {
            let (x, y) = (&a[offset..offset + length], &b[..length + offset]);
            for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
                let (expected, scale) = reference(metric, x, y);
                let close = |found: f32| (f64::from(found) - expected).abs() <= 1e-5 * scale;
                let case = format!("{metric:?}, {length} floats at offset {offset}");
                assert!(close(Rank(metric, x, y).run(Portable)), "portable: {case}");
                assert!(close(with_best_simd(Rank(metric, x, y))), "best: {case}");
                #[cfg(target_arch = "x86_64")]
                {
                    let avx2_fma =
                        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
                    if avx2_fma {
                        // SAFETY: AVX2 and FMA were just detected.
                        assert!(close(unsafe { avx2(Rank(metric, x, y)) }), "AVX2: {case}");
                    }
                    if avx2_fma && std::arch::is_x86_feature_detected!("avx512f") {
                        // SAFETY: AVX-512F, AVX2 and FMA were just detected.
                        assert!(close(unsafe { avx512(Rank(metric, x, y)) }), "AVX-512: {case}");
                    }
                }
            }
        }
        prefetch(&a);
        prefetch::<u32>(&[]);
    }
}
