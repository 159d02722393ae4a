//! Run-time choice of SIMD code paths, and cache prefetching, for the index's hot loops.
//!
//! The crate is built for the portable x86-64 baseline (SSE2), so without help the distance kernels use
//! 128-bit vectors even on CPUs with AVX2 or AVX-512. [`with_best_simd`] runs a piece of [`SimdWork`]
//! inside a function compiled with the widest features the CPU reports. Its `run` method and every
//! kernel it reaches must be `#[inline(always)]`: code that is not inlined into the feature-enabled
//! function runs with the baseline features. (A closure would not do: the compiler declines to inline a
//! large one, and an attribute cannot force it.)
//!
//! This is the only module in the crate with `unsafe` code: calling a `#[target_feature]` function is
//! unsafe because running it on a CPU without the features is undefined; each call below is guarded by
//! run-time detection of exactly the features it enables.
#![allow(unsafe_code)]

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
    /// Does the work.
    fn run(self) -> Self::Output;
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
        Level::Baseline => work.run(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn avx512<W: SimdWork>(work: W) -> W::Output {
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2<W: SimdWork>(work: W) -> W::Output {
    work.run()
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
        fn run(self) -> f32 {
            self.0.rank(self.1, self.2)
        }
    }

    #[test]
    fn every_path_this_cpu_has_computes_what_the_baseline_does() {
        let a: Vec<f32> = (0..131).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..131).map(|i| (i as f32 * 0.11).cos()).collect();
        for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
            let baseline = Rank(metric, &a, &b).run();
            let close = |x: f32| (x - baseline).abs() <= 1e-4 * baseline.abs().max(1.0);
            assert!(close(with_best_simd(Rank(metric, &a, &b))), "{metric:?}");
            #[cfg(target_arch = "x86_64")]
            {
                let avx2_fma =
                    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
                if avx2_fma {
                    // SAFETY: AVX2 and FMA were just detected.
                    assert!(close(unsafe { avx2(Rank(metric, &a, &b)) }), "{metric:?} AVX2");
                }
                if avx2_fma && std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F, AVX2 and FMA were just detected.
                    assert!(close(unsafe { avx512(Rank(metric, &a, &b)) }), "{metric:?} AVX-512");
                }
            }
        }
        prefetch(&a);
        prefetch::<u32>(&[]);
    }
}
