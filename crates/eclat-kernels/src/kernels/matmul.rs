//! Batched matrix products through the `gemm` crate (runtime CPU dispatch up to
//! AVX-512, rayon threads), reading strided operands in place: transposed and
//! broadcast views need no copy.

use super::Src;
use crate::layout::{for_each_run, numel};
use crate::pool::num_threads;
use gemm::Parallelism;
use rayon::prelude::*;

/// The element types `gemm` multiplies.
pub trait GemmElem: Copy + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
}
impl GemmElem for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}
impl GemmElem for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// Products smaller than this many multiply-adds run on one thread.
const PARALLEL_FLOPS: usize = 1 << 18;

/// `out[b] = a[b] @ b[b]` for every batch index `b`: `a` is `[..., m, k]`, `b` is
/// `[..., k, n]` with the same batch shape, `out` is contiguous `[..., m, n]`.
pub fn matmul<T: GemmElem>(out: &mut [T], a: Src<T>, b: Src<T>) {
    let nd = a.layout.shape.len();
    let (m, k, n) = (
        a.layout.shape[nd - 2],
        a.layout.shape[nd - 1],
        b.layout.shape[nd - 1],
    );
    let batch_shape = &a.layout.shape[..nd - 2];
    let batches = numel(batch_shape);
    if m * n == 0 {
        return;
    }
    if k == 0 {
        out.fill(T::ZERO);
        return;
    }
    let (a_rs, a_cs) = (a.layout.strides[nd - 2], a.layout.strides[nd - 1]);
    let (b_rs, b_cs) = (b.layout.strides[nd - 2], b.layout.strides[nd - 1]);
    // Offsets of each batch's first element in a and b.
    let mut offsets = Vec::with_capacity(batches);
    let strides = [
        a.layout.strides[..nd - 2].to_vec(),
        b.layout.strides[..nd - 2].to_vec(),
    ];
    if batch_shape.is_empty() {
        offsets.push((a.layout.offset, b.layout.offset));
    } else {
        for_each_run(
            batch_shape,
            &strides,
            [a.layout.offset, b.layout.offset],
            0,
            batches,
            |[oa, ob], _, len| {
                let (sa, sb) = (*strides[0].last().unwrap(), *strides[1].last().unwrap());
                for i in 0..len as isize {
                    offsets.push((oa + i * sa, ob + i * sb));
                }
            },
        );
    }
    // Bounds: the last element a product reads (all strides are non-negative)
    // lies inside its operand's slice.
    let within = |off: isize, rows: usize, rs: isize, cols: usize, cs: isize, len: usize| {
        off >= 0
            && rs >= 0
            && cs >= 0
            && ((off + (rows as isize - 1) * rs + (cols as isize - 1) * cs) as usize) < len
    };
    for &(oa, ob) in &offsets {
        assert!(
            within(oa, m, a_rs, k, a_cs, a.data.len()),
            "matmul: left operand view exceeds its storage"
        );
        assert!(
            within(ob, k, b_rs, n, b_cs, b.data.len()),
            "matmul: right operand view exceeds its storage"
        );
    }
    let flops = m * n * k;
    let one = |dst: &mut [T], (oa, ob): (isize, isize), parallelism: Parallelism| {
        // SAFETY: the asserts above keep every read of `a` and `b` inside their
        // slices; `dst` is exactly this batch's m×n contiguous output.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.data.as_ptr().offset(oa),
                a_cs,
                a_rs,
                b.data.as_ptr().offset(ob),
                b_cs,
                b_rs,
                T::ZERO,
                T::ONE,
                false,
                false,
                false,
                parallelism,
            )
        }
    };
    let threads = num_threads();
    if batches >= threads && batches > 1 && flops < PARALLEL_FLOPS * 8 {
        // Many small products: one thread per product.
        out.par_chunks_mut(m * n)
            .zip(offsets.par_iter())
            .for_each(|(dst, &o)| one(dst, o, Parallelism::None));
    } else {
        let parallelism = if flops >= PARALLEL_FLOPS && threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        for (dst, &o) in out.chunks_mut(m * n).zip(&offsets) {
            one(dst, o, parallelism);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn matches_the_naive_product_for_plain_transposed_and_batched_operands() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 2), (64, 70, 33), (200, 300, 150)] {
            let a: Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 - 3.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 * 0.5).collect();
            let expected = naive(&a, &b, m, k, n);
            let (la, lb) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[k, n]));
            let mut out = vec![0.0; m * n];
            matmul(
                &mut out,
                Src {
                    data: &a,
                    layout: &la,
                },
                Src {
                    data: &b,
                    layout: &lb,
                },
            );
            assert_eq!(out, expected);
            // bᵀ stored as [n, k] and read transposed.
            let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let lbt = Layout::contiguous(&[n, k]).permute(&[1, 0]);
            matmul(
                &mut out,
                Src {
                    data: &a,
                    layout: &la,
                },
                Src {
                    data: &bt,
                    layout: &lbt,
                },
            );
            assert_eq!(out, expected);
            // a broadcast over a batch of 3.
            let lab = Layout::contiguous(&[1, m, k]).expand(&[3, m, k]);
            let bb: Vec<f64> = b.iter().chain(&b).chain(&b).copied().collect();
            let lbb = Layout::contiguous(&[3, k, n]);
            let mut outb = vec![0.0; 3 * m * n];
            matmul(
                &mut outb,
                Src {
                    data: &a,
                    layout: &lab,
                },
                Src {
                    data: &bb,
                    layout: &lbb,
                },
            );
            assert!(outb.chunks(m * n).all(|c| c == expected.as_slice()));
        }
    }
}
