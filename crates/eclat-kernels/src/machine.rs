//! Measures this machine's limits, so benchmarks can report throughput as a
//! share of what the hardware can do: memory bandwidth (a STREAM-style triad,
//! and a vectorized read) and the float32 FMA peak, all on the Eclat pool.

use crate::pool::{num_threads, pool};
use rayon::prelude::*;
use std::time::Instant;

fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(0.0, f64::max)
}

/// Triad `a = b + s·c` over arrays of `bytes` each, all threads: GB/s counting
/// the three arrays moved (the STREAM convention).
pub fn triad_gbps(bytes: usize) -> f64 {
    let n = bytes / 4;
    let mut a = vec![0f32; n];
    let b = vec![1f32; n];
    let c = vec![2f32; n];
    pool().install(|| {
        best_of(5, || {
            let chunk = n.div_ceil(num_threads() * 4);
            let t = Instant::now();
            a.par_chunks_mut(chunk)
                .zip(b.par_chunks(chunk).zip(c.par_chunks(chunk)))
                .for_each(|(a, (b, c))| {
                    for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
                        *a = b + 3.0 * c;
                    }
                });
            std::hint::black_box(&a);
            3.0 * (n * 4) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
    })
}

/// Sum of an array of `bytes`, all threads: read bandwidth in GB/s.
pub fn read_gbps(bytes: usize) -> f64 {
    let n = bytes / 4;
    let a = vec![1f32; n];
    pool().install(|| {
        best_of(5, || {
            let chunk = n.div_ceil(num_threads() * 4);
            let t = Instant::now();
            let s: f32 = a
                .par_chunks(chunk)
                .map(|c| {
                    let mut acc = [0f32; 16];
                    for block in c.chunks_exact(16) {
                        for i in 0..16 {
                            acc[i] += block[i];
                        }
                    }
                    acc.iter().sum::<f32>()
                })
                .sum();
            std::hint::black_box(s);
            (n * 4) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
    })
}

/// FMAs per call of the register-resident loop, per lane.
const FMA_ITERS: usize = 1 << 22;

/// One thread's register-resident FMA loop; returns the flops it did.
fn fma_loop() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { fma_avx512() };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { fma_avx2() };
        }
    }
    fma_scalar()
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512() -> f64 {
    use std::arch::x86_64::*;
    let x = _mm512_set1_ps(0.999_999);
    let y = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..FMA_ITERS / 16 {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    let mut total = _mm512_setzero_ps();
    for a in acc {
        total = _mm512_add_ps(total, a);
    }
    std::hint::black_box(_mm512_reduce_add_ps(total));
    (FMA_ITERS / 16 * 12 * 16 * 2) as f64
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2() -> f64 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(0.999_999);
    let y = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..FMA_ITERS / 8 {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut total = [0f32; 8];
    let mut sum = _mm256_setzero_ps();
    for a in acc {
        sum = _mm256_add_ps(sum, a);
    }
    _mm256_storeu_ps(total.as_mut_ptr(), sum);
    std::hint::black_box(total);
    (FMA_ITERS / 8 * 12 * 8 * 2) as f64
}

fn fma_scalar() -> f64 {
    let mut acc = [1f32; 16];
    for _ in 0..FMA_ITERS / 16 {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    (FMA_ITERS / 16 * 16 * 2) as f64
}

/// Float32 FMA peak of all threads, GFLOP/s.
pub fn fma_peak_gflops() -> f64 {
    pool().install(|| {
        best_of(3, || {
            let threads = num_threads();
            let t = Instant::now();
            let flops: f64 = (0..threads).into_par_iter().map(|_| fma_loop()).sum();
            flops / t.elapsed().as_secs_f64() / 1e9
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_are_positive() {
        assert!(super::triad_gbps(1 << 22) > 0.0);
        assert!(super::read_gbps(1 << 22) > 0.0);
        assert!(super::fma_peak_gflops() > 0.0);
    }
}
