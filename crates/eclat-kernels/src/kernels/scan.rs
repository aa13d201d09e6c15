//! Inclusive scans along one axis (forward or reverse).
//!
//! Lines are scanned in parallel; a few long lines are scanned in fixed blocks
//! chained across threads ([`chained_blocks`]), so the result does not depend
//! on the thread count.

#[cfg(test)]
use super::reduce::Sum;
use super::reduce::{Fold, BLOCK};
use super::{SharedOut, Src, STREAM_BYTES};
use crate::layout::{collapse, contiguous_strides, for_each_run, numel};
use crate::pool::{num_threads, PARALLEL_THRESHOLD};
use crate::simd;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Scans `src` along `axis` into the contiguous `out` (same shape).
pub fn scan<T: Copy + Send + Sync, F: Fold<T>>(
    out: &mut [T],
    src: Src<T>,
    axis: usize,
    reverse: bool,
    fold: &F,
) {
    let shape = &src.layout.shape;
    let len = shape[axis];
    if out.is_empty() {
        return;
    }
    let out_strides = contiguous_strides(shape);
    let others: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
    let outer_shape: Vec<usize> = others.iter().map(|&d| shape[d]).collect();
    let in_outer: Vec<isize> = others.iter().map(|&d| src.layout.strides[d]).collect();
    let out_outer: Vec<isize> = others.iter().map(|&d| out_strides[d]).collect();
    let (oshape, strides) = collapse(&outer_shape, [&in_outer, &out_outer]);
    let (s_in, s_out) = (src.layout.strides[axis], out_strides[axis]);
    let n_lines = numel(&outer_shape);
    let out_bytes = std::mem::size_of_val(out);
    let shared = SharedOut::new(out);
    // Element `i` of a line in scan order (from the end when reversed).
    let at = |i: usize| {
        if reverse {
            (len - 1 - i) as isize
        } else {
            i as isize
        }
    };

    let scan_range =
        |bi: isize, bo: isize, start: usize, end: usize, mut acc: F::Acc, stream: bool| {
            if !reverse && s_in == 1 && s_out == 1 {
                // Contiguous forward lines (the common case): plain slice loops.
                let input = &src.data[(bi as usize + start)..(bi as usize + end)];
                let output = shared.slice_mut(bo as usize + start, end - start);
                fold.scan_slice(acc, input, output, stream);
                return;
            }
            for i in start..end {
                acc = fold.step(acc, src.data[(bi + at(i) * s_in) as usize]);
                shared.write((bo + at(i) * s_out) as usize, fold.finish(acc));
            }
        };
    let line_bases = |first: usize, count: usize| {
        let mut bases = Vec::with_capacity(count);
        for_each_run(
            &oshape,
            &strides,
            [src.layout.offset, 0],
            first,
            first + count,
            |[bi, bo], _, n| {
                let (si, so) = (*strides[0].last().unwrap(), *strides[1].last().unwrap());
                for j in 0..n as isize {
                    bases.push((bi + j * si, bo + j * so));
                }
            },
        );
        bases
    };

    if n_lines < num_threads() && len >= 2 * PARALLEL_THRESHOLD {
        // Only blocks of long lines are streamed: lines scanned whole from
        // memory measured 5-20% slower with non-temporal stores (16M float32
        // as 4096 lines), while a long line's blocks, rescanned from cache,
        // run 12% faster.
        let stream = out_bytes >= STREAM_BYTES;
        for (bi, bo) in line_bases(0, n_lines) {
            let total = |start: usize, end: usize| {
                if !reverse && s_in == 1 {
                    // A block's total needs no order: fold it with independent lanes.
                    let block = &src.data[(bi as usize + start)..(bi as usize + end)];
                    return fold.fold_slice(fold.init(), block);
                }
                let mut acc = fold.init();
                for i in start..end {
                    acc = fold.step(acc, src.data[(bi + at(i) * s_in) as usize]);
                }
                acc
            };
            chained_blocks(len, fold, total, |start, end, acc| {
                scan_range(bi, bo, start, end, acc, stream);
                if stream {
                    simd::store_fence();
                }
            });
        }
        return;
    }
    // Each line is one chain of dependent steps; four contiguous forward lines
    // scanned together keep four chains in flight (each line's steps stay in order).
    let scan_lines = |bases: Vec<(isize, isize)>| {
        // (A vector scan is faster per line than four interleaved chains.)
        let mut rest = &bases[..];
        if !reverse && s_in == 1 && s_out == 1 && !fold.vector_scan() {
            while let [a, b, c, d, tail @ ..] = rest {
                let input = |(bi, _): (isize, isize)| &src.data[bi as usize..bi as usize + len];
                let (x0, x1, x2, x3) = (input(*a), input(*b), input(*c), input(*d));
                let (o0, o1, o2, o3) = (
                    shared.slice_mut(a.1 as usize, len),
                    shared.slice_mut(b.1 as usize, len),
                    shared.slice_mut(c.1 as usize, len),
                    shared.slice_mut(d.1 as usize, len),
                );
                let mut acc = [fold.init(); 4];
                for i in 0..len {
                    acc[0] = fold.step(acc[0], x0[i]);
                    acc[1] = fold.step(acc[1], x1[i]);
                    acc[2] = fold.step(acc[2], x2[i]);
                    acc[3] = fold.step(acc[3], x3[i]);
                    o0[i] = fold.finish(acc[0]);
                    o1[i] = fold.finish(acc[1]);
                    o2[i] = fold.finish(acc[2]);
                    o3[i] = fold.finish(acc[3]);
                }
                rest = tail;
            }
        }
        for &(bi, bo) in rest {
            scan_range(bi, bo, 0, len, fold.init(), false);
        }
    };
    let lines_per_task = (PARALLEL_THRESHOLD / len.max(1)).max(1);
    if n_lines <= lines_per_task {
        scan_lines(line_bases(0, n_lines));
    } else {
        let per = lines_per_task.max(n_lines.div_ceil(num_threads() * 4));
        (0..n_lines.div_ceil(per)).into_par_iter().for_each(|t| {
            let first = t * per;
            scan_lines(line_bases(first, per.min(n_lines - first)));
        });
    }
}

/// Scans one long line in blocks of [`BLOCK`] positions, taken in order by
/// every thread of the pool, in one pass over memory: a block's total is folded
/// (which brings the block into this core's cache), the block waits for the
/// one before it to publish where it ends, publishes its own end (that plus
/// its total) and is then rescanned from cache. Each block starts from the
/// serial fold of the totals before it, so the result does not depend on the
/// thread count or on timing. (Folding every total first and rescanning after
/// read the line from memory twice: 16M float32 took 1.4x as long.)
///
/// No wait can deadlock: blocks are claimed in order, and the block a thread
/// waits for was claimed by a thread that is running it and waits, in turn,
/// only for blocks claimed before. A block that panics (an index out of
/// range) marks the chain failed, so the threads waiting on it panic too
/// rather than wait forever, and the first panic reaches the caller.
fn chained_blocks<T, F: Fold<T>>(
    len: usize,
    fold: &F,
    total: impl Fn(usize, usize) -> F::Acc + Sync,
    rescan: impl Fn(usize, usize, F::Acc) + Sync,
) where
    T: Copy,
{
    let blocks = len.div_ceil(BLOCK);
    let ends: Vec<OnceLock<F::Acc>> = (0..blocks).map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let range = |b: usize| (b * BLOCK, ((b + 1) * BLOCK).min(len));
    (0..num_threads().min(blocks))
        .into_par_iter()
        .for_each(|_| loop {
            let _failing = FailOnPanic(&failed);
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= blocks {
                break;
            }
            let (start, end) = range(b);
            let block_total = total(start, end);
            let before = if b == 0 {
                fold.init()
            } else {
                wait_for(&ends[b - 1], &failed)
            };
            // Each slot is set once, by the thread that claimed its block.
            let _ = ends[b].set(fold.merge(before, block_total));
            rescan(start, end, before);
        });
}

/// Sets its flag when dropped by a panic.
struct FailOnPanic<'a>(&'a AtomicBool);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// The value of `slot` once another thread has set it: spins briefly (the
/// block before is usually a few microseconds from done), then yields the CPU
/// so that a descheduled predecessor can run. Panics if `failed` is set (the
/// slot's block panicked and never will set it).
fn wait_for<A: Copy>(slot: &OnceLock<A>, failed: &AtomicBool) -> A {
    let mut spins = 0u32;
    loop {
        if let Some(&v) = slot.get() {
            return v;
        }
        if failed.load(Ordering::Acquire) {
            panic!("scan: a block before this one failed");
        }
        spins += 1;
        if spins < 1024 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    /// [`scan`] of `data` viewed as `layout`.
    fn scan_of<T: Copy + Send + Sync, F: Fold<T>>(
        out: &mut [T],
        data: &[T],
        layout: &Layout,
        axis: usize,
        reverse: bool,
        fold: &F,
    ) {
        scan(out, Src { data, layout }, axis, reverse, fold)
    }

    #[test]
    fn scans_both_axes_and_directions() {
        let data: Vec<f64> = (1..=6).map(|x| x as f64).collect();
        let l = Layout::contiguous(&[2, 3]);
        let src = Src {
            data: &data,
            layout: &l,
        };
        let mut out = vec![0.0; 6];
        scan(&mut out, src, 1, false, &Sum);
        assert_eq!(out, vec![1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
        scan(&mut out, src, 0, false, &Sum);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
        scan(&mut out, src, 1, true, &Sum);
        assert_eq!(out, vec![6.0, 5.0, 3.0, 15.0, 11.0, 6.0]);
    }

    #[test]
    fn long_line_in_chained_blocks_matches_serial() {
        let n = 300_007;
        let data: Vec<f64> = (0..n).map(|i| (i % 13) as f64).collect();
        let l = Layout::contiguous(&[n]);
        for reverse in [false, true] {
            let mut out = vec![0.0; n];
            scan_of(&mut out, &data, &l, 0, reverse, &Sum);
            let mut acc = 0.0;
            for k in 0..n {
                let i = if reverse { n - 1 - k } else { k };
                acc += data[i];
                assert_eq!(out[i], acc);
            }
        }
    }

    #[test]
    fn long_lines_scan_the_same_on_any_number_of_threads() {
        // Above STREAM_BYTES, so the blocks are written with non-temporal
        // stores; the output starts off a 64-byte line. Each thread count's
        // chain of blocks must give the serial result, bit for bit.
        let n = (STREAM_BYTES / 4) + 12_345;
        let data: Vec<f32> = (0..n)
            .map(|i| ((i as u64 * 2_654_435_761) % 1000) as f32 / 64.0 - 7.0)
            .collect();
        let l = Layout::contiguous(&[n]);
        let mut expected = vec![0f32; n];
        let mut acc = 0f64;
        for (e, &x) in expected.iter_mut().zip(&data) {
            acc += x as f64;
            // Multiples of 1/64 below 2^40: every partial sum is exact.
            *e = acc as f32;
        }
        let mut buffer = vec![f32::NAN; n + 17];
        let start = buffer.as_ptr().align_offset(64) + 5;
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let out = &mut buffer[start..start + n];
            out.fill(f32::NAN);
            pool.install(|| scan_of(out, &data, &l, 0, false, &Sum));
            if let Some(k) = (0..n).find(|&k| out[k].to_bits() != expected[k].to_bits()) {
                panic!(
                    "{threads} threads: element {k}: {} vs {}",
                    out[k], expected[k]
                );
            }
        }
    }

    /// A sum that panics on NaN, as a kernel does on an index out of range.
    struct PanicsOnNan;

    impl Fold<f64> for PanicsOnNan {
        type Acc = f64;
        fn init(&self) -> f64 {
            0.0
        }
        fn step(&self, acc: f64, x: f64) -> f64 {
            assert!(!x.is_nan(), "NaN in the line");
            acc + x
        }
        fn merge(&self, a: f64, b: f64) -> f64 {
            a + b
        }
        fn finish(&self, acc: f64) -> f64 {
            acc
        }
    }

    #[test]
    fn a_panic_in_one_block_of_a_long_line_reaches_the_caller() {
        // The NaN sits in a middle block: the threads waiting on it must give
        // up rather than spin forever.
        let n = 20 * BLOCK + 7;
        let mut data = vec![1.0f64; n];
        data[7 * BLOCK + 3] = f64::NAN;
        let l = Layout::contiguous(&[n]);
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0.0; n];
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| scan_of(&mut out, &data, &l, 0, false, &PanicsOnNan))
            }));
            assert!(result.is_err(), "{threads} threads");
        }
    }

    #[test]
    fn float32_sums_match_a_serial_float64_scan() {
        // Lengths around the 16-wide vector step and the chained-blocks threshold;
        // rows of both the one-line and many-line paths.
        for (rows, len) in [
            (1, 1),
            (1, 15),
            (1, 16),
            (1, 17),
            (3, 1000),
            (1, 300_007),
            (64, 4099),
        ] {
            let n = rows * len;
            let data: Vec<f32> = (0..n)
                .map(|i| ((i as u64 * 2_654_435_761) % 1000) as f32 / 64.0 - 7.0)
                .collect();
            let l = Layout::contiguous(&[rows, len]);
            let mut out = vec![0f32; n];
            scan_of(&mut out, &data, &l, 1, false, &Sum);
            for r in 0..rows {
                let mut acc = 0f64;
                for k in 0..len {
                    acc += data[r * len + k] as f64;
                    // Multiples of 1/64 below 2^40: every partial sum is exact.
                    assert_eq!(out[r * len + k], acc as f32, "row {r} element {k} of {len}");
                }
            }
        }
    }
}
