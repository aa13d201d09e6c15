//! Batched matrix products through the `gemm` crate (runtime CPU dispatch up to
//! AVX-512, rayon threads), reading strided operands in place: transposed and
//! broadcast views need no copy.

use super::Src;
use crate::layout::{for_each_run, numel};
use crate::pool::num_threads;
use gemm::Parallelism;
use rayon::prelude::*;

/// The element types `gemm` multiplies.
pub trait GemmElem: Copy + Send + Sync + std::ops::AddAssign + 'static {
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

/// A product whose inner dimension is at least this many times its larger
/// outer one is split along the inner dimension across threads (see
/// [`Plan::split_inner`]).
const SPLIT_INNER_RATIO: usize = 16;

/// The dimensions, per-batch offsets and strides of one batched product,
/// checked against the operands' storage.
struct Plan {
    m: usize,
    k: usize,
    n: usize,
    /// Offsets of each batch's first element in `a` and `b`.
    offsets: Vec<(isize, isize)>,
    a_strides: (isize, isize),
    b_strides: (isize, isize),
}

impl Plan {
    fn new<T>(a: &Src<T>, b: &Src<T>) -> Plan {
        let nd = a.layout.shape.len();
        let (m, k, n) = (
            a.layout.shape[nd - 2],
            a.layout.shape[nd - 1],
            b.layout.shape[nd - 1],
        );
        let batch_shape = &a.layout.shape[..nd - 2];
        let batches = numel(batch_shape);
        let a_strides = (a.layout.strides[nd - 2], a.layout.strides[nd - 1]);
        let b_strides = (b.layout.strides[nd - 2], b.layout.strides[nd - 1]);
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
        if m * n * k > 0 {
            // Bounds: the last element a product reads (all strides are
            // non-negative) lies inside its operand's slice.
            let within =
                |off: isize, rows: usize, rs: isize, cols: usize, cs: isize, len: usize| {
                    off >= 0
                        && rs >= 0
                        && cs >= 0
                        && ((off + (rows as isize - 1) * rs + (cols as isize - 1) * cs) as usize)
                            < len
                };
            for &(oa, ob) in &offsets {
                assert!(
                    within(oa, m, a_strides.0, k, a_strides.1, a.data.len()),
                    "matmul: left operand view exceeds its storage"
                );
                assert!(
                    within(ob, k, b_strides.0, n, b_strides.1, b.data.len()),
                    "matmul: right operand view exceeds its storage"
                );
            }
        }
        Plan {
            m,
            k,
            n,
            offsets,
            a_strides,
            b_strides,
        }
    }

    /// Rows `row0..row0 + rows` of batch `batch`'s product into `dst` (rows × n,
    /// contiguous), summed over the inner indices `inner` (all of them, or one
    /// part of a product split along its inner dimension).
    #[allow(clippy::too_many_arguments)]
    fn block<T: GemmElem>(
        &self,
        a: &Src<T>,
        b: &Src<T>,
        dst: &mut [T],
        batch: usize,
        row0: usize,
        rows: usize,
        inner: std::ops::Range<usize>,
        parallelism: Parallelism,
    ) {
        assert!(
            row0 + rows <= self.m && dst.len() == rows * self.n && inner.end <= self.k,
            "matmul: block out of range"
        );
        if rows * self.n == 0 {
            return;
        }
        if inner.is_empty() {
            dst.fill(T::ZERO);
            return;
        }
        let (oa, ob) = self.offsets[batch];
        let k0 = inner.start as isize;
        let oa = oa + row0 as isize * self.a_strides.0 + k0 * self.a_strides.1;
        let ob = ob + k0 * self.b_strides.0;
        // SAFETY: `Plan::new` checked that every element of every batch's
        // operands lies inside `a` and `b`; this block reads a subset of them.
        // `dst` is exactly the block's rows × n contiguous output.
        unsafe {
            gemm::gemm(
                rows,
                self.n,
                inner.len(),
                dst.as_mut_ptr(),
                1,
                self.n as isize,
                false,
                a.data.as_ptr().offset(oa),
                self.a_strides.1,
                self.a_strides.0,
                b.data.as_ptr().offset(ob),
                self.b_strides.1,
                self.b_strides.0,
                T::ZERO,
                T::ONE,
                false,
                false,
                false,
                parallelism,
            )
        }
    }

    /// Batch `batch`'s whole product into `dst`. With `threads` > 1, a product
    /// with a small output and a long inner dimension (a weight gradient:
    /// [144, 12544] x [12544, 32]) is split along the inner dimension, one
    /// part per thread, each into its own output summed in order afterwards:
    /// split by rows, its few row blocks left threads idle (a [9, 16] output
    /// over 50176 terms ran as fast on two threads as on one). The sum's order
    /// depends on the thread count only.
    fn product<T: GemmElem>(
        &self,
        a: &Src<T>,
        b: &Src<T>,
        dst: &mut [T],
        batch: usize,
        threads: usize,
    ) {
        let (m, n, k) = (self.m, self.n, self.k);
        let parallel = threads > 1 && m * n * k >= PARALLEL_FLOPS;
        if !parallel || k < SPLIT_INNER_RATIO * m.max(n) {
            let parallelism = if parallel {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            };
            return self.block(a, b, dst, batch, 0, m, 0..k, parallelism);
        }
        let step = k.div_ceil(threads);
        let mut partials = vec![T::ZERO; (threads - 1) * m * n];
        rayon::iter::once(&mut *dst)
            .chain(partials.par_chunks_mut(m * n))
            .enumerate()
            .for_each(|(p, out)| {
                let inner = (p * step).min(k)..((p + 1) * step).min(k);
                self.block(a, b, out, batch, 0, m, inner, Parallelism::None)
            });
        for partial in partials.chunks(m * n) {
            dst.iter_mut().zip(partial).for_each(|(d, &p)| *d += p);
        }
    }
}

/// `out[b] = a[b] @ b[b]` for every batch index `b`: `a` is `[..., m, k]`, `b` is
/// `[..., k, n]` with the same batch shape, `out` is contiguous `[..., m, n]`.
pub fn matmul<T: GemmElem>(out: &mut [T], a: Src<T>, b: Src<T>) {
    let plan = Plan::new(&a, &b);
    let (m, n) = (plan.m, plan.n);
    if m * n == 0 {
        return;
    }
    let flops = m * n * plan.k;
    let threads = num_threads();
    let batches = plan.offsets.len();
    if batches >= threads && batches > 1 && flops < PARALLEL_FLOPS * 8 {
        // Many small products: one thread per product.
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, dst)| plan.block(&a, &b, dst, i, 0, m, 0..plan.k, Parallelism::None));
    } else {
        for (i, dst) in out.chunks_mut(m * n).enumerate() {
            plan.product(&a, &b, dst, i, threads);
        }
    }
}

/// Elements of one block of product rows handed to an epilogue: small enough to
/// stay in L2 until the epilogue reads it, large enough that re-packing the
/// right operand per block costs little.
const TILE: usize = 128 * 1024;
/// Blocks a product's rows split into when there are enough of them.
const BLOCKS: usize = 16;
/// The fewest rows a block gets for the sake of more blocks.
const MIN_BLOCK_ROWS: usize = 64;

/// Computes `a @ b` (as [`matmul`]) block by block of rows and calls
/// `epilogue(position, tile)` with each block as soon as it is computed, while it
/// is still in cache; `position` is the block's first row-major output position.
/// Blocks run in parallel; the product itself is never written to memory.
pub fn matmul_blocks<T: GemmElem>(a: Src<T>, b: Src<T>, epilogue: impl Fn(usize, &[T]) + Sync) {
    let plan = Plan::new(&a, &b);
    let (m, n) = (plan.m, plan.n);
    if m * n == 0 {
        return;
    }
    let threads = num_threads();
    // Blocks of equal height, at least BLOCKS of them when the rows allow, so
    // the threads share them evenly (four blocks of 4096, 4096, 4096 and 256
    // rows kept one of two threads busy for two thirds of the time). The
    // split depends on the shape only.
    let most = (TILE / n.max(1)).clamp(1, m);
    let wanted = m.div_ceil(most).max((m / MIN_BLOCK_ROWS).min(BLOCKS));
    let rows = m.div_ceil(wanted);
    let per_batch = m.div_ceil(rows);
    let blocks = plan.offsets.len() * per_batch;
    let run = |block: usize| {
        let (batch, row0) = (block / per_batch, (block % per_batch) * rows);
        let count = rows.min(m - row0);
        let mut tile = vec![T::ZERO; count * n];
        plan.block(
            &a,
            &b,
            &mut tile,
            batch,
            row0,
            count,
            0..plan.k,
            Parallelism::None,
        );
        epilogue((batch * m + row0) * n, &tile);
    };
    let flops = m * n * plan.k * plan.offsets.len();
    if blocks == 1 {
        let mut tile = vec![T::ZERO; m * n];
        plan.product(&a, &b, &mut tile, 0, threads);
        epilogue(0, &tile);
    } else if flops < PARALLEL_FLOPS {
        (0..blocks).for_each(run);
    } else {
        (0..blocks).into_par_iter().for_each(run);
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

    #[test]
    fn products_split_along_the_inner_dimension_match_the_naive_product() {
        // (m, k, n): a weight gradient's shape, one output element, and a
        // split whose parts are uneven.
        for (m, k, n) in [(9, 5000, 16), (1, 300_000, 1), (33, 2001, 7)] {
            let a: Vec<f64> = (0..m * k).map(|i| (i % 7) as f64 - 3.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 * 0.5).collect();
            let expected = naive(&a, &b, m, k, n);
            // a stored as [k, m] and read transposed, as a weight gradient reads it.
            let at: Vec<f64> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let lat = Layout::contiguous(&[k, m]).permute(&[1, 0]);
            let lb = Layout::contiguous(&[k, n]);
            let (sa, sb) = (
                Src {
                    data: &at,
                    layout: &lat,
                },
                Src {
                    data: &b,
                    layout: &lb,
                },
            );
            let plan = Plan::new(&sa, &sb);
            assert!(k >= SPLIT_INNER_RATIO * m.max(n) && m * n * k >= PARALLEL_FLOPS);
            for threads in [1, 2, 3, 5] {
                let mut out = vec![f64::NAN; m * n];
                plan.product(&sa, &sb, &mut out, 0, threads);
                assert_eq!(out, expected, "({m}, {k}, {n}) on {threads} threads");
            }
        }
    }
}
