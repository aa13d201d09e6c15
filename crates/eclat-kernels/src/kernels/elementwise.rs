//! Data movement: a strided view copied (or mapped) into a contiguous output, and
//! padding. Arithmetic runs in the fused kernel (`fused.rs`).

use super::{par_chunks_of, Src};
use crate::layout::{collapse, contiguous_strides, for_each_tile, row_len};

/// Strides of operand `k` within a tile: (between rows, within a row).
fn tile_steps<const K: usize>(strides: &[Vec<isize>; K]) -> [(isize, isize); K] {
    std::array::from_fn(|k| {
        let s = &strides[k];
        (if s.len() > 1 { s[s.len() - 2] } else { 0 }, s[s.len() - 1])
    })
}

/// `out[i] = f(a[i])` over `shape`.
pub fn map1<A: Copy + Sync, U: Send>(
    out: &mut [U],
    shape: &[usize],
    a: Src<A>,
    f: impl Fn(A) -> U + Sync,
) {
    let out_strides = contiguous_strides(shape);
    let (cshape, [_, sa]) = collapse(shape, [&out_strides, &a.layout.strides]);
    let strides = [sa];
    let [(ra, ia)] = tile_steps(&strides);
    par_chunks_of(out, row_len(&cshape), |chunk, start| {
        for_each_tile(
            &cshape,
            &strides,
            [a.layout.offset],
            start,
            start + chunk.len(),
            |[oa], pos, rows, cols| {
                for r in 0..rows {
                    let o = &mut chunk[pos - start + r * cols..pos - start + (r + 1) * cols];
                    let oa = oa + r as isize * ra;
                    match ia {
                        1 => o
                            .iter_mut()
                            .zip(&a.data[oa as usize..oa as usize + cols])
                            .for_each(|(o, &x)| *o = f(x)),
                        _ => o
                            .iter_mut()
                            .enumerate()
                            .for_each(|(i, o)| *o = f(a.data[(oa + i as isize * ia) as usize])),
                    }
                }
            },
        );
    });
}

/// Copies a strided view into a contiguous output.
pub fn copy<T: Copy + Sync + Send>(out: &mut [T], a: Src<T>) {
    // A tiny copy goes element by element (collapsing allocates).
    if a.layout.numel() < 256 {
        return map1(out, &a.layout.shape, a, |x| x);
    }
    let (shape, [strides]) = collapse(&a.layout.shape, [&a.layout.strides]);
    let nd = shape.len();
    if nd >= 2 && strides[nd - 2] == 1 && strides[nd - 1].unsigned_abs() > 1 {
        assert!(
            a.layout.fits(a.data.len()),
            "copy: view {:?} exceeds its {} elements",
            a.layout,
            a.data.len()
        );
        return copy_transposed(out, a.data, &shape, &strides, a.layout.offset);
    }
    map1(out, &a.layout.shape, a, |x| x);
}

/// Rows and columns of the blocks [`copy_transposed`] moves at a time.
const TILE: usize = 16;
/// Output columns a chunk's bands go through before the next ones: the source
/// rows (and pages) they read stay cached from one band to the next.
const BLOCK_COLUMNS: usize = 256;

/// [`copy`] of a view read across its memory order: its innermost axis
/// strided and the next one contiguous (a transposed matrix, an NCHW buffer
/// read as NHWC), by [`transpose_band`]; row by row, each output element read
/// a line of its own (a 4096² transpose: 2 GB/s). A chunk's bands of 16 output rows go through
/// [`BLOCK_COLUMNS`] columns at a time, so the source lines and pages of those
/// columns serve every band (a band across all 4096 columns touched 4096
/// pages: 5.6 GB/s).
fn copy_transposed<T: Copy + Sync + Send>(
    out: &mut [T],
    data: &[T],
    shape: &[usize],
    strides: &[isize],
    offset: isize,
) {
    let nd = shape.len();
    let (rows, cols, step) = (shape[nd - 2], shape[nd - 1], strides[nd - 1]);
    if rows * cols == 0 {
        return;
    }
    let (outer_shape, outer_strides) = (&shape[..nd - 2], &strides[..nd - 2]);
    par_chunks_of(out, TILE * cols, |chunk, start| {
        let first = start / cols;
        // The chunk's bands: (first output row in the chunk, height, source
        // offset of that row). A band stops at the end of its outer index.
        let mut bands = vec![];
        let (mut row, last) = (first, first + chunk.len() / cols);
        while row < last {
            let (outer, i0) = (row / rows, row % rows);
            let height = TILE.min(rows - i0).min(last - row);
            let mut at = offset + i0 as isize;
            let mut rem = outer;
            for d in (0..outer_shape.len()).rev() {
                at += (rem % outer_shape[d]) as isize * outer_strides[d];
                rem /= outer_shape[d];
            }
            bands.push((row - first, height, at));
            row += height;
        }
        for block in (0..cols).step_by(BLOCK_COLUMNS) {
            let columns = block..cols.min(block + BLOCK_COLUMNS);
            for &(band, height, at) in &bands {
                let dst = &mut chunk[band * cols..(band + height) * cols];
                // SAFETY: `copy` checked the view against `data`; the band's
                // rows are positions of it.
                unsafe { transpose_band(data, at, step, dst, height, columns.clone()) };
            }
        }
    });
}

/// Columns `columns` of a band of `height` <= 16 output rows (`dst`, rows of
/// `dst.len() / height` elements) read across a source's memory order: row
/// `i`, column `j` is `data[at + j * step + i]`. Goes by square blocks of 16
/// through a tile (for 4-byte elements on AVX-512, through registers), so
/// reads and writes both go a cache line at a time.
///
/// # Safety
/// Every `at + j * step + i` (i < height, j in `columns`) lies inside `data`.
#[inline]
pub(crate) unsafe fn transpose_band<T: Copy>(
    data: &[T],
    at: isize,
    step: isize,
    dst: &mut [T],
    height: usize,
    columns: std::ops::Range<usize>,
) {
    debug_assert!(height <= TILE);
    if height == 0 || columns.is_empty() {
        return;
    }
    let cols = dst.len() / height;
    #[cfg(target_arch = "x86_64")]
    let by_registers =
        std::mem::size_of::<T>() == 4 && crate::simd::level() == crate::simd::Level::Avx512;
    let mut tile = [[data[0]; TILE]; TILE];
    for j0 in columns.clone().step_by(TILE) {
        let width = TILE.min(columns.end - j0);
        #[cfg(target_arch = "x86_64")]
        if by_registers && width == TILE {
            // SAFETY: the CPU has AVX-512F; the block's 16 columns of
            // `height` source elements lie inside `data` (the caller's
            // promise), and its `height` output rows of 16 inside `dst`.
            transpose_16x16(
                data.as_ptr().offset(at + j0 as isize * step) as *const i32,
                step,
                dst.as_mut_ptr().add(j0) as *mut i32,
                cols,
                height,
            );
            continue;
        }
        for (jj, line) in tile.iter_mut().enumerate().take(width) {
            let column = at + (j0 + jj) as isize * step;
            for (i, v) in line.iter_mut().enumerate().take(height) {
                *v = *data.get_unchecked((column + i as isize) as usize);
            }
        }
        for i in 0..height {
            let out = &mut dst[i * cols + j0..i * cols + j0 + width];
            for (jj, o) in out.iter_mut().enumerate() {
                *o = tile[jj][i];
            }
        }
    }
}

/// Pads `a` with `value`: `out` has shape `out_shape` and `a` lands at `before`
/// (`before[d] + a`'s extent along d <= `out_shape[d]`). Output rows in
/// parallel, each filled or copied whole: a convolution's input padding
/// ([64, 16, 14, 14] into [64, 16, 16, 16]) went element by element on one
/// thread in 0.23 ms.
pub fn pad<T: Copy + Sync + Send>(
    out: &mut [T],
    out_shape: &[usize],
    a: Src<T>,
    before: &[usize],
    value: T,
) {
    let nd = out_shape.len();
    let (shape, strides) = (&a.layout.shape, &a.layout.strides);
    assert!(
        shape.len() == nd && (0..nd).all(|d| before[d] + shape[d] <= out_shape[d]),
        "pad: {shape:?} at {before:?} outside {out_shape:?}"
    );
    if nd == 0 {
        if let Some(o) = out.first_mut() {
            *o = a.data[a.layout.offset as usize];
        }
        return;
    }
    let row = out_shape[nd - 1];
    if out.is_empty() || row == 0 {
        return;
    }
    let (first, len, step) = (before[nd - 1], shape[nd - 1], strides[nd - 1]);
    par_chunks_of(out, row, |chunk, start| {
        for (r, dst) in chunk.chunks_mut(row).enumerate() {
            // The source row this output row holds, if any.
            let mut rem = start / row + r;
            let mut at = Some(a.layout.offset);
            for d in (0..nd - 1).rev() {
                let i = (rem % out_shape[d]).wrapping_sub(before[d]);
                rem /= out_shape[d];
                at = at
                    .filter(|_| i < shape[d])
                    .map(|at| at + i as isize * strides[d]);
            }
            // An empty source (its offset may lie past its empty storage) fills.
            let Some(at) = at.filter(|_| len > 0) else {
                dst.fill(value);
                continue;
            };
            dst[..first].fill(value);
            let inside = &mut dst[first..first + len];
            if step == 1 {
                inside.copy_from_slice(&a.data[at as usize..at as usize + len]);
            } else {
                for (k, v) in inside.iter_mut().enumerate() {
                    *v = a.data[(at + k as isize * step) as usize];
                }
            }
            dst[first + len..].fill(value);
        }
    });
}

/// Transposes a 16x16 block of 32-bit elements: column `j` of the source (16
/// consecutive elements at `src + j * step`) becomes elements `j` of the 16
/// output rows (`dst + i * row`, 16 consecutive each). Four rounds of 16
/// shuffles: 32-bit then 64-bit interleaves within 128-bit lanes, then two
/// rounds of lane shuffles. A band of `height` < 16 rows loads the first
/// `height` elements of each column (masked: nothing past them is read) and
/// stores the first `height` output rows.
///
/// # Safety
/// The CPU has AVX-512F; `height <= 16`; the 16 source columns and the
/// first `height` output rows are valid for `height` and 16 elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_16x16(
    src: *const i32,
    step: isize,
    dst: *mut i32,
    row: usize,
    height: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(height <= 16);
    let rows = (1u32 << height) - 1;
    let r: [__m512i; 16] = std::array::from_fn(|j| {
        _mm512_maskz_loadu_epi32(rows as u16, src.offset(j as isize * step) as *const _)
    });
    // a[2m], a[2m+1]: columns 2m and 2m+1 interleaved by element.
    let a: [__m512i; 16] = std::array::from_fn(|k| {
        let (x, y) = (r[k & !1], r[k | 1]);
        if k % 2 == 0 {
            _mm512_unpacklo_epi32(x, y)
        } else {
            _mm512_unpackhi_epi32(x, y)
        }
    });
    // b[4q + e], lane l: element 4l + e of columns 4q..4q+4.
    let b: [__m512i; 16] = std::array::from_fn(|k| {
        let (q, e) = (k / 4, k % 4);
        let (x, y) = (a[4 * q + e / 2], a[4 * q + 2 + e / 2]);
        if e % 2 == 0 {
            _mm512_unpacklo_epi64(x, y)
        } else {
            _mm512_unpackhi_epi64(x, y)
        }
    });
    // c[4e + h]: lanes (0, 2) or (1, 3) of the b[e + 4g] pairs.
    let c: [__m512i; 16] = std::array::from_fn(|k| {
        let (e, h) = (k / 4, k % 4);
        let (x, y) = (b[e + 8 * (h / 2)], b[e + 4 + 8 * (h / 2)]);
        if h % 2 == 0 {
            _mm512_shuffle_i32x4::<0x88>(x, y)
        } else {
            _mm512_shuffle_i32x4::<0xdd>(x, y)
        }
    });
    for l in 0..4 {
        for e in 0..4 {
            // Output row 4l + e: lane l of b[e], b[e + 4], b[e + 8], b[e + 12].
            let (x, y) = (c[4 * e + l % 2], c[4 * e + 2 + l % 2]);
            let v = if l < 2 {
                _mm512_shuffle_i32x4::<0x88>(x, y)
            } else {
                _mm512_shuffle_i32x4::<0xdd>(x, y)
            };
            if 4 * l + e < height {
                _mm512_storeu_si512(dst.add((4 * l + e) * row) as *mut _, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{numel, Layout};

    #[test]
    fn map1_large_parallel_matches_serial() {
        let n = 300_001;
        let data: Vec<f64> = (0..n).map(|x| x as f64).collect();
        let layout = Layout::contiguous(&[n]).slice(&[1], &[2], &[n / 2]);
        let mut out = vec![0f64; n / 2];
        map1(
            &mut out,
            &[n / 2],
            Src {
                data: &data,
                layout: &layout,
            },
            |x| x * 2.0,
        );
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (1 + 2 * i) as f64 * 2.0));
    }

    #[test]
    fn pad_places_input_inside_fill() {
        let data = vec![1i32, 2, 3, 4];
        let layout = Layout::contiguous(&[2, 2]);
        let mut out = vec![0i32; 12];
        pad(
            &mut out,
            &[3, 4],
            Src {
                data: &data,
                layout: &layout,
            },
            &[1, 1],
            -1,
        );
        assert_eq!(out, vec![-1, -1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1]);
    }

    /// The element of `layout` at row-major position `p`, by index arithmetic.
    fn at<T: Copy>(data: &[T], layout: &Layout, p: usize) -> T {
        let (mut rem, mut offset) = (p, layout.offset);
        for d in (0..layout.shape.len()).rev() {
            offset += (rem % layout.shape[d]) as isize * layout.strides[d];
            rem /= layout.shape[d];
        }
        data[offset as usize]
    }

    fn copies_match<T: Copy + Sync + Send + PartialEq + std::fmt::Debug>(
        from: impl Fn(usize) -> T,
    ) {
        // (stored shape, permutation, slice (starts, steps, shape) of the permuted view)
        type Case = (
            &'static [usize],
            &'static [usize],
            Option<(&'static [usize], &'static [usize], &'static [usize])>,
        );
        let cases: [Case; 8] = [
            (&[16, 16], &[1, 0], None),
            (&[17, 33], &[1, 0], None),
            (&[300, 700], &[1, 0], None),
            (&[2, 5, 7, 9], &[0, 2, 3, 1], None),
            (&[64, 16, 28, 28], &[0, 2, 3, 1], None),
            (&[3, 40, 50], &[2, 0, 1], None),
            (&[40, 50], &[1, 0], Some((&[3, 1], &[1, 2], &[40, 20]))),
            (&[5, 0, 7], &[0, 2, 1], None),
        ];
        for (stored, order, slice) in cases {
            let data: Vec<T> = (0..numel(stored)).map(&from).collect();
            let mut layout = Layout::contiguous(stored).permute(order);
            if let Some((starts, steps, shape)) = slice {
                layout = layout.slice(starts, steps, shape);
            }
            let n = layout.numel();
            let mut out = vec![from(1); n];
            copy(
                &mut out,
                Src {
                    data: &data,
                    layout: &layout,
                },
            );
            for (p, &v) in out.iter().enumerate() {
                assert_eq!(
                    v,
                    at(&data, &layout, p),
                    "{stored:?} permuted {order:?}, position {p}"
                );
            }
        }
    }

    #[test]
    fn transposed_copies_match_index_arithmetic() {
        copies_match(|i| i as f32);
        copies_match(|i| i as i32);
        copies_match(|i| i as f64);
        copies_match(|i| i as u8);
    }

    #[test]
    fn pads_match_index_arithmetic() {
        // (source shape, permutation of a contiguous buffer, before, output shape)
        type Case = (
            &'static [usize],
            &'static [usize],
            &'static [usize],
            &'static [usize],
        );
        let cases: [Case; 7] = [
            (
                &[64, 16, 14, 14],
                &[0, 1, 2, 3],
                &[0, 0, 1, 1],
                &[64, 16, 16, 16],
            ),
            (&[3, 5, 7], &[2, 0, 1], &[1, 0, 2], &[5, 6, 9]),
            (&[300, 200], &[1, 0], &[3, 5], &[310, 211]),
            (&[2, 0, 3], &[0, 1, 2], &[1, 1, 1], &[4, 2, 5]),
            (&[], &[], &[], &[]),
            (&[4], &[0], &[2], &[9]),
            (&[3, 0], &[0, 1], &[1, 2], &[5, 3]),
        ];
        for (shape, order, before, out_shape) in cases {
            // The source is a permuted view of a buffer stored in the permuted order.
            let stored: Vec<usize> = {
                let mut s = vec![0; order.len()];
                for (d, &o) in order.iter().enumerate() {
                    s[o] = shape[d];
                }
                s
            };
            let data: Vec<i32> = (0..numel(&stored) as i32).collect();
            let layout = Layout::contiguous(&stored).permute(order);
            assert_eq!(layout.shape, shape);
            let mut out = vec![-7; numel(out_shape)];
            pad(
                &mut out,
                out_shape,
                Src {
                    data: &data,
                    layout: &layout,
                },
                before,
                -1,
            );
            let nd = shape.len();
            for (p, &v) in out.iter().enumerate() {
                let mut rem = p;
                let mut index = vec![0; nd];
                for d in (0..nd).rev() {
                    index[d] = rem % out_shape[d];
                    rem /= out_shape[d];
                }
                let inside =
                    (0..nd).all(|d| index[d] >= before[d] && index[d] - before[d] < shape[d]);
                let want = if inside {
                    let q = (0..nd).fold(0, |q, d| q * shape[d] + index[d] - before[d]);
                    at(&data, &layout, q)
                } else {
                    -1
                };
                assert_eq!(
                    v, want,
                    "{shape:?} at {before:?} in {out_shape:?}, position {p}"
                );
            }
        }
    }

    #[test]
    fn padding_an_empty_view_past_its_storage_fills() {
        // A [3, 0] view at offset 1 of empty storage (an empty slice's gradient).
        let layout = Layout {
            shape: vec![3, 0],
            strides: vec![0, 1],
            offset: 1,
        };
        let mut out = vec![7.0f32; 15];
        pad(
            &mut out,
            &[5, 3],
            Src {
                data: &[],
                layout: &layout,
            },
            &[1, 2],
            0.0,
        );
        assert_eq!(out, vec![0.0; 15]);
    }
}
