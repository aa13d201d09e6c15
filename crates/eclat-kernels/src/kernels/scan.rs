//! Inclusive scans along one axis (forward or reverse).
//!
//! Lines are scanned in parallel; a few long lines are scanned in two passes over
//! fixed blocks (block totals in parallel, their prefix serially, then each block
//! rescanned from its offset in parallel), so the result does not depend on the
//! thread count.

#[cfg(test)]
use super::reduce::Sum;
use super::reduce::{Fold, BLOCK};
use super::{SharedOut, Src};
use crate::layout::{collapse, contiguous_strides, for_each_run, numel};
use crate::pool::{num_threads, PARALLEL_THRESHOLD};
use rayon::prelude::*;

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
    let shared = SharedOut::new(out);
    // Element `i` of a line in scan order (from the end when reversed).
    let at = |i: usize| {
        if reverse {
            (len - 1 - i) as isize
        } else {
            i as isize
        }
    };

    let scan_range = |bi: isize, bo: isize, start: usize, end: usize, mut acc: F::Acc| {
        if !reverse && s_in == 1 && s_out == 1 {
            // Contiguous forward lines (the common case): plain slice loops.
            let input = &src.data[(bi as usize + start)..(bi as usize + end)];
            let output = shared.slice_mut(bo as usize + start, end - start);
            fold.scan_slice(acc, input, output);
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
        for (bi, bo) in line_bases(0, n_lines) {
            let blocks = len.div_ceil(BLOCK);
            let totals: Vec<F::Acc> = (0..blocks)
                .into_par_iter()
                .map(|b| {
                    let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(len));
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
                })
                .collect();
            let mut starts = Vec::with_capacity(blocks);
            let mut acc = fold.init();
            for t in totals {
                starts.push(acc);
                acc = fold.merge(acc, t);
            }
            starts.into_par_iter().enumerate().for_each(|(b, start)| {
                scan_range(bi, bo, b * BLOCK, ((b + 1) * BLOCK).min(len), start)
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
            scan_range(bi, bo, 0, len, fold.init());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

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
    fn long_line_two_pass_matches_serial() {
        let n = 300_007;
        let data: Vec<f64> = (0..n).map(|i| (i % 13) as f64).collect();
        let l = Layout::contiguous(&[n]);
        for reverse in [false, true] {
            let mut out = vec![0.0; n];
            scan(
                &mut out,
                Src {
                    data: &data,
                    layout: &l,
                },
                0,
                reverse,
                &Sum,
            );
            let mut acc = 0.0;
            for k in 0..n {
                let i = if reverse { n - 1 - k } else { k };
                acc += data[i];
                assert_eq!(out[i], acc);
            }
        }
    }

    #[test]
    fn float32_sums_match_a_serial_float64_scan() {
        // Lengths around the 16-wide vector step and the two-pass threshold;
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
            scan(
                &mut out,
                Src {
                    data: &data,
                    layout: &l,
                },
                1,
                false,
                &Sum,
            );
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
