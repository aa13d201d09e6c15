//! Gather and scatter along an axis, PyTorch semantics. Index values are checked
//! before use: a bad one is an error naming the op, never an out-of-bounds access.

use super::{try_par_chunks, SharedOut, Src};
use crate::error::{ErrorKind, KernelError, Result};
use crate::layout::{collapse, contiguous_strides, for_each_run, numel};
use crate::pool::{num_threads, PARALLEL_THRESHOLD};
use crate::simd;
use rayon::prelude::*;

fn check_index(op: &str, v: i32, axis: usize, size: usize) -> Result<isize> {
    if v < 0 || v as usize >= size {
        return Err(KernelError::new(
            ErrorKind::Index,
            format!("{op}: index {v} is out of range for axis {axis} of size {size}"),
        ));
    }
    Ok(v as isize)
}

/// How far ahead [`gather`] prefetches: about the misses one core keeps in
/// flight (16 measured 25% faster than none on 16M random indices; 8 and 32
/// less so).
const PREFETCH_AHEAD: usize = 16;

/// Gathers whose indices address more bytes than this (more than a core's L2)
/// prefetch; below it the reads hit the cache and prefetching only costs
/// instructions (70% slower on a convolution's unfold of 16 KB rows).
const PREFETCH_SPAN: usize = 1 << 20;

/// `out[p] = src[p with p[axis] = index[p]]`; `out` has the index's shape.
pub fn gather<T: Copy + Send + Sync>(
    out: &mut [T],
    src: Src<T>,
    axis: usize,
    index: Src<i32>,
) -> Result<()> {
    // `gather_line` reads without bounds checks (the executor checked this
    // already; a caller of the public kernel may not have).
    assert!(
        src.layout.fits(src.data.len()),
        "gather: source view {:?} exceeds its {} elements",
        src.layout,
        src.data.len()
    );
    let shape = &index.layout.shape;
    let size = src.layout.shape[axis];
    let axis_stride = src.layout.strides[axis];
    let mut walk_strides = src.layout.strides.clone();
    walk_strides[axis] = 0;
    let (cshape, [si, ss]) = collapse(shape, [&index.layout.strides, &walk_strides]);
    let strides = [si, ss];
    let (ii, is) = (*strides[0].last().unwrap(), *strides[1].last().unwrap());
    let far = size * axis_stride.unsigned_abs() * std::mem::size_of::<T>() > PREFETCH_SPAN;
    try_par_chunks(out, |chunk, start| {
        let mut bad = None;
        for_each_run(
            &cshape,
            &strides,
            [index.layout.offset, src.layout.offset],
            start,
            start + chunk.len(),
            |[oi, os], pos, len| {
                if bad.is_some() {
                    return;
                }
                let o = &mut chunk[pos - start..pos - start + len];
                if !far && ii == 1 && is == 0 {
                    // Contiguous indices into one line of the source (an
                    // unfold, an embedding row): checked first, then gathered
                    // by vector instructions.
                    let index = &index.data[oi as usize..oi as usize + len];
                    if let Err(v) =
                        crate::dispatch!(gather_line(o, src.data, os, axis_stride, index, size))
                    {
                        bad = Some(v);
                    }
                    return;
                }
                for (k, o) in o.iter_mut().enumerate() {
                    // Indices in random order over a large source miss the
                    // cache on every read: start loading the element
                    // PREFETCH_AHEAD positions on, so that many misses are in
                    // flight at once.
                    if far && k + PREFETCH_AHEAD < len {
                        let k = (k + PREFETCH_AHEAD) as isize;
                        let v = index.data[(oi + k * ii) as usize] as isize;
                        let at = os + k * is + v * axis_stride;
                        simd::prefetch(src.data.as_ptr().wrapping_offset(at));
                    }
                    let k = k as isize;
                    let v = index.data[(oi + k * ii) as usize];
                    // One unsigned compare rejects negatives and values past the end.
                    if v as u32 as usize >= size {
                        bad = Some(v);
                        return;
                    }
                    *o = src.data[(os + k * is + v as isize * axis_stride) as usize];
                }
            },
        );
        match bad {
            Some(v) => check_index("gather", v, axis, size).map(|_| ()),
            None => Ok(()),
        }
    })
}

/// Checks that every index lies in `0..size` (Err: the first that does not).
/// A fold without early exit vectorizes; the rare bad index is found after.
#[inline(always)]
fn check_indices(index: &[i32], size: usize) -> std::result::Result<(), i32> {
    // One unsigned compare rejects negatives and values past the end.
    if index
        .iter()
        .fold(true, |ok, &v| ok & ((v as u32 as usize) < size))
    {
        return Ok(());
    }
    Err(*index.iter().find(|&&v| v as u32 as usize >= size).unwrap())
}

/// `out[k] = src[base + index[k] * step]` after checking every index against
/// `size` (Err: the first bad one). `base + i * step` for `i < size` must lie
/// in `src` (`gather` asserts its source view fits its data).
#[inline(always)]
fn gather_line<T: Copy>(
    out: &mut [T],
    src: &[T],
    base: isize,
    step: isize,
    index: &[i32],
    size: usize,
) -> std::result::Result<(), i32> {
    check_indices(index, size)?;
    // SAFETY (of both loops): 0 <= v < size (checked above), so base + v *
    // step is a position of the source's layout, inside `src`. The unit
    // step spelled out keeps a multiply out of every address (20% faster
    // on a convolution's im2col).
    if step == 1 {
        let line = src.as_ptr().wrapping_offset(base);
        for (o, &v) in out.iter_mut().zip(index) {
            *o = unsafe { *line.add(v as usize) };
        }
    } else {
        for (o, &v) in out.iter_mut().zip(index) {
            *o = unsafe { *src.get_unchecked((base + v as isize * step) as usize) };
        }
    }
    Ok(())
}

/// What scattering one row needs: the index and source data, the strides
/// along the scatter axis (index, source, output), and the axis's size.
struct ScatterRows<'a, T> {
    op: &'a str,
    index: &'a [i32],
    src: &'a [T],
    steps: [isize; 3],
    axis: usize,
    size: usize,
}

impl<T: Copy> ScatterRows<'_, T> {
    /// Scatters positions `from..to` of the row starting at `[bi, bs, bo]`
    /// through `write(output position, value)`, checking every index.
    /// Generic over `write` so the per-element step inlines; `write` is taken
    /// by value (see [`write_run`]).
    #[inline]
    fn row(
        &self,
        [bi, bs, bo]: [isize; 3],
        from: usize,
        to: usize,
        mut write: impl FnMut(usize, T),
    ) -> Result<()> {
        let [si, ss, so] = self.steps;
        if si == 1 && ss == 1 {
            let (idx, src) = (
                &self.index[(bi + from as isize) as usize..][..to - from],
                &self.src[(bs + from as isize) as usize..][..to - from],
            );
            // Checked first, by vector instructions, so that the loop that
            // writes has no branch of its own.
            if let Err(v) = crate::dispatch!(check_indices(idx, self.size)) {
                return Err(index_error(self.op, v, self.axis, self.size));
            }
            write_run(idx, src, bo, so, write);
            return Ok(());
        }
        for j in from as isize..to as isize {
            let v = check_index(
                self.op,
                self.index[(bi + j * si) as usize],
                self.axis,
                self.size,
            )?;
            write((bo + v * so) as usize, self.src[(bs + j * ss) as usize]);
        }
        Ok(())
    }
}

/// `write(bo + index[k] * so, src[k])` for every `k`, indices already checked.
/// A function of its own, taking `write` by value, so that what it writes to
/// stays in registers (inlined into `scatter`, a large function, the output
/// and strides were reloaded from the stack after every store), and the unit
/// output stride spelled out (a multiply in the address of every
/// read-modify-write held the loads back). A convolution's col2im, 0.9M
/// updates on one thread: 1.4-1.7 → 0.57-0.59 ms (a plain loop: 0.45-0.57).
#[inline(never)]
fn write_run<T: Copy>(
    index: &[i32],
    src: &[T],
    bo: isize,
    so: isize,
    mut write: impl FnMut(usize, T),
) {
    if so == 1 {
        for (&v, &x) in index.iter().zip(src) {
            write((bo + v as isize) as usize, x);
        }
    } else {
        for (&v, &x) in index.iter().zip(src) {
            write((bo + v as isize * so) as usize, x);
        }
    }
}

#[cold]
fn index_error(op: &str, v: i32, axis: usize, size: usize) -> KernelError {
    KernelError::new(
        ErrorKind::Index,
        format!("{op}: index {v} is out of range for axis {axis} of size {size}"),
    )
}

/// Scatters `src` into `out` (already holding the target, contiguous of
/// `out_shape`): `out[p with p[axis] = index[p]] = combine(old, src[p])` for every
/// position `p` of the index. `identity` is the value combining with anything
/// leaves unchanged (0 for sums, the lowest value for maxima).
///
/// The strategy depends on the sizes, never on atomics: positions that differ
/// off the scatter axis write disjoint outputs, so index rows run in parallel;
/// a single long row (a 1-D scatter) is split across threads into private
/// partial outputs merged in thread order, or, into outputs larger than cache,
/// partitioned by output range so that ranges run in parallel
/// ([`scatter_by_buckets`]); anything small runs serially. Results are
/// deterministic for a fixed thread count.
#[allow(clippy::too_many_arguments)]
pub fn scatter<T: Copy + Send + Sync>(
    op: &str,
    out: &mut [T],
    out_shape: &[usize],
    axis: usize,
    index: Src<i32>,
    src: Src<T>,
    identity: T,
    combine: impl Fn(T, T) -> T + Sync,
) -> Result<()> {
    let shape = &index.layout.shape;
    let n = numel(shape);
    if n == 0 {
        return Ok(());
    }
    let size = out_shape[axis];
    let len = shape[axis];
    let out_strides = contiguous_strides(out_shape);
    // Walk the other axes as rows; the scatter axis is each row's inner loop.
    let others: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
    let pick = |s: &[isize]| others.iter().map(|&d| s[d]).collect::<Vec<_>>();
    let row_shape: Vec<usize> = others.iter().map(|&d| shape[d]).collect();
    let (rshape, strides) = collapse(
        &row_shape,
        [
            &pick(&index.layout.strides),
            &pick(&src.layout.strides),
            &pick(&out_strides),
        ],
    );
    let (si, ss, so) = (
        index.layout.strides[axis],
        src.layout.strides[axis],
        out_strides[axis],
    );
    let rows = numel(&row_shape);
    let base = [index.layout.offset, src.layout.offset, 0];
    let row_bases = |first: usize, count: usize| {
        let mut bases = Vec::with_capacity(count);
        for_each_run(
            &rshape,
            &strides,
            base,
            first,
            first + count,
            |[bi, bs, bo], _, k| {
                let inner = [
                    *strides[0].last().unwrap(),
                    *strides[1].last().unwrap(),
                    *strides[2].last().unwrap(),
                ];
                for j in 0..k as isize {
                    bases.push([bi + j * inner[0], bs + j * inner[1], bo + j * inner[2]]);
                }
            },
        );
        bases
    };
    let rows_ctx = ScatterRows {
        op,
        index: index.data,
        src: src.data,
        steps: [si, ss, so],
        axis,
        size,
    };
    let threads = num_threads();
    let serial = |out: &mut [T]| {
        for b in row_bases(0, rows) {
            rows_ctx.row(b, 0, len, |p, x| out[p] = combine(out[p], x))?;
        }
        Ok(())
    };
    if n < PARALLEL_THRESHOLD || threads == 1 {
        return serial(out);
    }
    if rows >= threads {
        let shared = SharedOut::new(out);
        let per = rows.div_ceil(threads * 4);
        let results: Vec<Result<()>> = (0..rows.div_ceil(per))
            .into_par_iter()
            .map(|t| {
                let (first, combine) = (t * per, &combine);
                for b in row_bases(first, per.min(rows - first)) {
                    // SAFETY (of `update`): rows differ off the scatter axis, so
                    // no two tasks touch the same output position.
                    rows_ctx.row(b, 0, len, move |p, x| {
                        shared.update(p, |old| combine(old, x))
                    })?;
                }
                Ok(())
            })
            .collect();
        return results.into_iter().collect();
    }
    if rows == 1
        && std::mem::size_of_val(out) >= BUCKETS_FROM_BYTES
        && out.len() <= u32::MAX as usize
    {
        // One long row into more outputs than cache holds.
        return scatter_by_buckets(&rows_ctx, row_bases(0, 1)[0], len, out, &combine);
    }
    if out.len() * threads > 4 * n {
        // Partial outputs would cost more than they save.
        return serial(out);
    }
    // Few long rows: each thread scatters a slice of every row into its own partial output.
    let bases = row_bases(0, rows);
    let per = len.div_ceil(threads);
    let partials: Vec<Result<Vec<T>>> = (0..threads)
        .into_par_iter()
        .map(|t| {
            let mut partial = vec![identity; out.len()];
            let (from, to) = ((t * per).min(len), ((t + 1) * per).min(len));
            for &b in &bases {
                let partial = &mut partial[..];
                rows_ctx.row(b, from, to, |p, x| partial[p] = combine(partial[p], x))?;
            }
            Ok(partial)
        })
        .collect();
    let partials = partials.into_iter().collect::<Result<Vec<_>>>()?;
    super::par_chunks(out, |chunk, start| {
        let end = start + chunk.len();
        for partial in &partials {
            for (o, &x) in chunk.iter_mut().zip(&partial[start..end]) {
                *o = combine(*o, x);
            }
        }
    });
    Ok(())
}

/// Output positions per bucket of [`scatter_by_buckets`]: 256 KB of float32,
/// which stays in L2 while the bucket's updates run.
const BUCKET_BINS: usize = 1 << 16;
/// Outputs from this size take [`scatter_by_buckets`]: below it they fit in
/// this machine's L3, where per-thread partial outputs did as well (16M
/// random indices into 4M float32 outputs: 107 ms by partial outputs, 117 by
/// buckets; into 16M outputs: 384 and 223 ms).
const BUCKETS_FROM_BYTES: usize = 32 << 20;
/// Positions partitioned at a time (bounds the buffers: 8 bytes each for float32).
const BUCKET_SEGMENT: usize = 1 << 22;

/// One long row scattered into far more outputs than cache holds, where
/// updates in index order miss the caches nearly every time: each segment of
/// the row is partitioned by output range (buckets of [`BUCKET_BINS`]),
/// stably, then the buckets run in parallel, each within cache. Every output
/// still takes its updates in their order in the row, so the bits are the
/// serial loop's whatever the thread count. (Sorting by index, by ranges.)
fn scatter_by_buckets<T: Copy + Send + Sync>(
    rows: &ScatterRows<T>,
    base: [isize; 3],
    len: usize,
    out: &mut [T],
    combine: &(impl Fn(T, T) -> T + Sync),
) -> Result<()> {
    let buckets = out.len().div_ceil(BUCKET_BINS);
    let bucket = |p: usize| p / BUCKET_BINS;
    let mut positions: Vec<u32> = Vec::new();
    let mut values: Vec<T> = Vec::new();
    let shared_out = SharedOut::new(out);
    let mut start = 0;
    while start < len {
        let end = (start + BUCKET_SEGMENT).min(len);
        // Chunks of the segment, counted, then partitioned, in parallel.
        let chunk = (end - start).div_ceil(num_threads() * 4).max(1);
        let chunks: Vec<(usize, usize)> = (start..end)
            .step_by(chunk)
            .map(|from| (from, (from + chunk).min(end)))
            .collect();
        let counts: Vec<Vec<usize>> = chunks
            .par_iter()
            .map(|&(from, to)| {
                let mut count = vec![0usize; buckets];
                let counts = &mut count[..];
                rows.row(base, from, to, |p, _| counts[bucket(p)] += 1)?;
                Ok(count)
            })
            .collect::<Result<_>>()?;
        // Where each chunk's share of each bucket starts: buckets in order,
        // chunks in order within a bucket (so the partition is stable).
        let mut starts = vec![vec![0usize; buckets]; chunks.len()];
        let mut bounds = vec![0usize; buckets + 1];
        let mut at = 0;
        for b in 0..buckets {
            bounds[b] = at;
            for (c, count) in counts.iter().enumerate() {
                starts[c][b] = at;
                at += count[b];
            }
        }
        bounds[buckets] = at;
        positions.resize(at, 0);
        values.resize(at, rows.src[0]);
        let (shared_positions, shared_values) =
            (SharedOut::new(&mut positions), SharedOut::new(&mut values));
        chunks
            .par_iter()
            .zip(starts)
            .try_for_each(|(&(from, to), mut next)| {
                let next = &mut next[..];
                rows.row(base, from, to, |p, x| {
                    let k = &mut next[bucket(p)];
                    // Chunks fill disjoint ranges of each bucket (see `starts`).
                    shared_positions.write(*k, p as u32);
                    shared_values.write(*k, x);
                    *k += 1;
                })
            })?;
        (0..buckets).into_par_iter().for_each(|b| {
            for k in bounds[b]..bounds[b + 1] {
                let (p, x) = (positions[k] as usize, values[k]);
                // Buckets own disjoint ranges of the output.
                shared_out.update(p, |old| combine(old, x));
            }
        });
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    #[test]
    fn gather_follows_pytorch() {
        // torch.gather([[1,2],[3,4]], 1, [[0,0],[1,0]]) = [[1,1],[4,3]]
        let src = vec![1f32, 2.0, 3.0, 4.0];
        let idx = vec![0i32, 0, 1, 0];
        let l = Layout::contiguous(&[2, 2]);
        let mut out = vec![0f32; 4];
        gather(
            &mut out,
            Src {
                data: &src,
                layout: &l,
            },
            1,
            Src {
                data: &idx,
                layout: &l,
            },
        )
        .unwrap();
        assert_eq!(out, vec![1.0, 1.0, 4.0, 3.0]);
    }

    /// Every path of `gather` (contiguous indices into a line, strided or
    /// broadcast indices, a source past the prefetch span, a transposed
    /// source) against a plain loop, and a bad index at any position.
    #[test]
    fn gather_paths_match_a_plain_loop() {
        let (rows, cols, picks) = (40usize, 300usize, 70_000usize);
        let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let big: Vec<f32> = (0..(PREFETCH_SPAN / 4 + 1000)).map(|i| i as f32).collect();
        let mut s = 7u32;
        let mut next = |n: usize| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) as usize % n) as i32
        };
        let line: Vec<i32> = (0..picks).map(|_| next(cols)).collect();
        let down: Vec<i32> = (0..cols).map(|_| next(rows)).collect();
        let far: Vec<i32> = (0..picks).map(|_| next(big.len())).collect();
        let run = |src: &[f32], src_layout: &Layout, axis, idx: &[i32], idx_layout: &Layout| {
            let mut out = vec![0f32; numel(&idx_layout.shape)];
            let result = gather(
                &mut out,
                Src {
                    data: src,
                    layout: src_layout,
                },
                axis,
                Src {
                    data: idx,
                    layout: idx_layout,
                },
            );
            result.map(|_| out)
        };
        // Indices broadcast over rows, gathered along axis 1: the vector path.
        let per_row = picks / rows;
        let rows_of = Layout {
            shape: vec![rows, per_row],
            strides: vec![0, 1],
            offset: 0,
        };
        let got = run(&src, &Layout::contiguous(&[rows, cols]), 1, &line, &rows_of).unwrap();
        for r in 0..rows {
            for k in 0..per_row {
                assert_eq!(got[r * per_row + k], src[r * cols + line[k] as usize]);
            }
        }
        // The same through a transposed source (a line with step `cols`).
        let transposed = Layout {
            shape: vec![cols, rows],
            strides: vec![1, cols as isize],
            offset: 0,
        };
        let t_rows = Layout {
            shape: vec![cols, 7],
            strides: vec![0, 1],
            offset: 0,
        };
        let small_line: Vec<i32> = line.iter().map(|&v| v % rows as i32).collect();
        let got = run(&src, &transposed, 1, &small_line, &t_rows).unwrap();
        for c in 0..cols {
            for k in 0..7 {
                assert_eq!(got[c * 7 + k], src[small_line[k] as usize * cols + c]);
            }
        }
        // Along axis 0 (indices strided against the source): the element loop.
        let got = run(
            &src,
            &Layout::contiguous(&[rows, cols]),
            0,
            &down,
            &Layout::contiguous(&[1, cols]),
        )
        .unwrap();
        for c in 0..cols {
            assert_eq!(got[c], src[down[c] as usize * cols + c]);
        }
        // A source past the prefetch span: the element loop with prefetches.
        let got = run(
            &big,
            &Layout::contiguous(&[big.len()]),
            0,
            &far,
            &Layout::contiguous(&[picks]),
        )
        .unwrap();
        assert!(got.iter().zip(&far).all(|(&g, &i)| g == big[i as usize]));
        // A bad index anywhere in a vector-path line is an error naming it.
        for (at, bad) in [(0, cols as i32), (per_row / 2, -1), (per_row - 1, i32::MAX)] {
            let mut idx = line.clone();
            idx[at] = bad;
            let err = run(&src, &Layout::contiguous(&[rows, cols]), 1, &idx, &rows_of).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Index);
            assert!(
                err.message.contains(&format!("index {bad}")),
                "{}",
                err.message
            );
        }
    }

    /// A source view reaching past its data is refused before anything is read
    /// (the vector path reads without bounds checks).
    #[test]
    #[should_panic(expected = "exceeds its 4 elements")]
    fn gather_refuses_a_view_past_its_data() {
        let src = vec![1f32, 2.0, 3.0, 4.0];
        let idx = vec![0i32, 1];
        let _ = gather(
            &mut [0f32; 2],
            Src {
                data: &src,
                layout: &Layout::contiguous(&[1, 8]),
            },
            1,
            Src {
                data: &idx,
                layout: &Layout::contiguous(&[1, 2]),
            },
        );
    }

    #[test]
    fn gather_rejects_bad_index() {
        let src = vec![1f32, 2.0];
        let idx = vec![2i32];
        let err = gather(
            &mut [0f32],
            Src {
                data: &src,
                layout: &Layout::contiguous(&[2]),
            },
            0,
            Src {
                data: &idx,
                layout: &Layout::contiguous(&[1]),
            },
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Index);
        assert!(err.message.contains("index 2"), "{}", err.message);
    }

    #[test]
    fn every_strategy_matches_the_serial_sum() {
        // Rows in parallel ([64, 5000] along axis 1), the same read through
        // transposed views (indices contiguous along the axis, outputs not:
        // [5000, 64] along axis 0), and one long row split into partials.
        for (out_shape, idx_shape, axis, transposed) in [
            (vec![64usize, 300], vec![64usize, 5000], 1usize, false),
            (vec![300, 64], vec![5000, 64], 0, true),
            (vec![1000], vec![200_000], 0, false),
        ] {
            let n: usize = idx_shape.iter().product();
            let size = out_shape[axis];
            // Element i of the storage; with `transposed`, storage is [64, 5000].
            let idx: Vec<i32> = (0..n).map(|i| ((i * 7919) % size) as i32).collect();
            let src: Vec<i64> = (0..n).map(|i| (i % 13) as i64).collect();
            let layout = if transposed {
                Layout {
                    shape: idx_shape.clone(),
                    strides: vec![1, idx_shape[0] as isize],
                    offset: 0,
                }
            } else {
                Layout::contiguous(&idx_shape)
            };
            let out_strides = contiguous_strides(&out_shape);
            let mut expected = vec![0i64; out_shape.iter().product()];
            for pos in 0..n {
                let (mut rem, mut at) = (pos, 0isize);
                let mut coords = vec![0usize; idx_shape.len()];
                for d in (0..idx_shape.len()).rev() {
                    coords[d] = rem % idx_shape[d];
                    rem /= idx_shape[d];
                    at += coords[d] as isize * layout.strides[d];
                }
                coords[axis] = idx[at as usize] as usize;
                let p: isize = coords
                    .iter()
                    .zip(&out_strides)
                    .map(|(&c, &s)| c as isize * s)
                    .sum();
                expected[p as usize] += src[at as usize];
            }
            let run = |idx: &[i32]| {
                let mut out = vec![0i64; expected.len()];
                crate::pool::pool()
                    .install(|| {
                        scatter(
                            "scatterAdd",
                            &mut out,
                            &out_shape,
                            axis,
                            Src {
                                data: idx,
                                layout: &layout,
                            },
                            Src {
                                data: &src,
                                layout: &layout,
                            },
                            0,
                            |a, b| a + b,
                        )
                    })
                    .map(|()| out)
            };
            assert_eq!(run(&idx).unwrap(), expected);
            // A bad index anywhere fails the whole scatter, naming it.
            for (at, v) in [(n - 1, size as i32), (n / 3, -1)] {
                let mut bad = idx.clone();
                bad[at] = v;
                let err = run(&bad).unwrap_err();
                assert_eq!(err.kind, ErrorKind::Index);
                assert!(
                    err.message.contains(&format!("index {v} ")),
                    "{}",
                    err.message
                );
            }
        }
    }

    #[test]
    fn scatter_add_accumulates_duplicates() {
        let mut out = vec![0f32; 3];
        let idx = vec![0i32, 2, 0, 1];
        let src = vec![1f32, 2.0, 3.0, 4.0];
        let l = Layout::contiguous(&[4]);
        scatter(
            "scatterAdd",
            &mut out,
            &[3],
            0,
            Src {
                data: &idx,
                layout: &l,
            },
            Src {
                data: &src,
                layout: &l,
            },
            0.0,
            |a, b| a + b,
        )
        .unwrap();
        assert_eq!(out, vec![4.0, 4.0, 2.0]);
    }

    /// A long row into many more outputs than cache holds (the bucketed path
    /// with two or more threads, over two segments): the serial loop's bits,
    /// duplicates, NaN and signed zeros included, from a strided source; a bad
    /// index in the last segment is an error.
    #[test]
    fn scatter_into_many_outputs_keeps_each_outputs_order() {
        let n = BUCKET_SEGMENT + 12_345;
        let bins = 2 * n + 3 * BUCKET_BINS + 17;
        let mut s = 11u32;
        let mut next = || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            s >> 4
        };
        // Half the updates land on 1000 hot outputs spread over every bucket.
        let idx: Vec<i32> = (0..n)
            .map(|i| {
                let r = next() as usize;
                (if i % 2 == 0 {
                    (r % 1000) * (bins / 1000)
                } else {
                    r % bins
                }) as i32
            })
            .collect();
        let pick = [1e8f32, 1.0, -1e8, 1e-8, -0.0, 0.0, 3.5, f32::NAN];
        // Every other element of `data` is the source (stride 2).
        let data: Vec<f32> = (0..2 * n)
            .map(|_| {
                let r = next();
                if r % 5000 == 0 {
                    pick[7]
                } else {
                    pick[(r % 7) as usize] * (1.0 + (r % 13) as f32)
                }
            })
            .collect();
        let idx_layout = Layout::contiguous(&[n]);
        let src_layout = Layout {
            shape: vec![n],
            strides: vec![2],
            offset: 1,
        };
        let run = |idx: &[i32], identity: f32, combine: fn(f32, f32) -> f32| {
            let mut out = vec![identity; bins];
            let name = "scatter";
            let result = scatter(
                name,
                &mut out,
                &[bins],
                0,
                Src {
                    data: idx,
                    layout: &idx_layout,
                },
                Src {
                    data: &data,
                    layout: &src_layout,
                },
                identity,
                combine,
            );
            result.map(|_| out)
        };
        let by_loop = |identity: f32, combine: fn(f32, f32) -> f32| {
            let mut out = vec![identity; bins];
            for (i, &v) in idx.iter().enumerate() {
                out[v as usize] = combine(out[v as usize], data[2 * i + 1]);
            }
            out
        };
        type Combine = fn(f32, f32) -> f32;
        let add: Combine = |a, b| a + b;
        for (identity, combine) in [(0.0, add), (f32::NEG_INFINITY, crate::dtype::max_nan)] {
            let got = run(&idx, identity, combine).unwrap();
            let want = by_loop(identity, combine);
            for (p, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "output {p}: {g} != {w}"
                );
            }
        }
        let mut bad = idx.clone();
        bad[n - 5] = bins as i32;
        let err = run(&bad, 0.0, |a, b| a + b).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
