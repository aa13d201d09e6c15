//! Data movement: a strided view copied (or mapped) into a contiguous output, and
//! padding. Arithmetic runs in the fused kernel (`fused.rs`).

use super::{par_chunks, par_chunks_of, Src};
use crate::layout::{collapse, contiguous_strides, for_each_run, for_each_tile, row_len};

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
    let shape = a.layout.shape.clone();
    map1(out, &shape, a, |x| x);
}

/// Pads `a` with `value`: `out` has shape `out_shape` and `a` lands at `before`.
pub fn pad<T: Copy + Sync + Send>(
    out: &mut [T],
    out_shape: &[usize],
    a: Src<T>,
    before: &[usize],
    value: T,
) {
    par_chunks(out, |chunk, _| chunk.fill(value));
    let out_strides = contiguous_strides(out_shape);
    let base: isize = before
        .iter()
        .zip(&out_strides)
        .map(|(&b, &s)| b as isize * s)
        .sum();
    let shape = &a.layout.shape;
    let (cshape, [sa, so]) = collapse(shape, [&a.layout.strides, &out_strides]);
    let (ia, io) = (*sa.last().unwrap(), *so.last().unwrap());
    let n = a.layout.numel();
    for_each_run(
        &cshape,
        &[sa, so],
        [a.layout.offset, base],
        0,
        n,
        |[oa, oo], _, len| {
            for i in 0..len as isize {
                out[(oo + i * io) as usize] = a.data[(oa + i * ia) as usize];
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

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
}
