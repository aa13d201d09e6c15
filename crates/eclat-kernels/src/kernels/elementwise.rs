//! Maps of one, two or three strided inputs into a contiguous output, with fast
//! paths for contiguous (stride 1) and broadcast (stride 0) inner runs.

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
pub fn map1<A: Copy + Sync, U: Send>(out: &mut [U], shape: &[usize], a: Src<A>, f: impl Fn(A) -> U + Sync) {
    let out_strides = contiguous_strides(shape);
    let (cshape, [_, sa]) = collapse(shape, [&out_strides, &a.layout.strides]);
    let strides = [sa];
    let [(ra, ia)] = tile_steps(&strides);
    par_chunks_of(out, row_len(&cshape), |chunk, start| {
        for_each_tile(&cshape, &strides, [a.layout.offset], start, start + chunk.len(), |[oa], pos, rows, cols| {
            for r in 0..rows {
                let o = &mut chunk[pos - start + r * cols..pos - start + (r + 1) * cols];
                let oa = oa + r as isize * ra;
                match ia {
                    1 => o.iter_mut().zip(&a.data[oa as usize..oa as usize + cols]).for_each(|(o, &x)| *o = f(x)),
                    _ => o.iter_mut().enumerate().for_each(|(i, o)| *o = f(a.data[(oa + i as isize * ia) as usize])),
                }
            }
        });
    });
}

/// `out[i] = f(a[i], b[i])` over `shape` (operands already broadcast to it).
pub fn map2<A: Copy + Sync, B: Copy + Sync, U: Send>(
    out: &mut [U],
    shape: &[usize],
    a: Src<A>,
    b: Src<B>,
    f: impl Fn(A, B) -> U + Sync,
) {
    let out_strides = contiguous_strides(shape);
    let (cshape, [_, sa, sb]) = collapse(shape, [&out_strides, &a.layout.strides, &b.layout.strides]);
    let strides = [sa, sb];
    let [(ra, ia), (rb, ib)] = tile_steps(&strides);
    let base = [a.layout.offset, b.layout.offset];
    par_chunks_of(out, row_len(&cshape), |chunk, start| {
        for_each_tile(&cshape, &strides, base, start, start + chunk.len(), |[oa, ob], pos, rows, cols| {
            for r in 0..rows {
                let o = &mut chunk[pos - start + r * cols..pos - start + (r + 1) * cols];
                let (oa, ob) = (oa + r as isize * ra, ob + r as isize * rb);
                let (ua, ub) = (oa as usize, ob as usize);
                match (ia, ib) {
                    (1, 1) => {
                        let (a, b) = (&a.data[ua..ua + cols], &b.data[ub..ub + cols]);
                        o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&x, &y))| *o = f(x, y));
                    }
                    (1, 0) => {
                        let y = b.data[ub];
                        o.iter_mut().zip(&a.data[ua..ua + cols]).for_each(|(o, &x)| *o = f(x, y));
                    }
                    (0, 1) => {
                        let x = a.data[ua];
                        o.iter_mut().zip(&b.data[ub..ub + cols]).for_each(|(o, &y)| *o = f(x, y));
                    }
                    _ => o.iter_mut().enumerate().for_each(|(i, o)| {
                        let i = i as isize;
                        *o = f(a.data[(oa + i * ia) as usize], b.data[(ob + i * ib) as usize]);
                    }),
                }
            }
        });
    });
}

/// `out[i] = f(a[i], b[i], c[i])` over `shape`.
pub fn map3<A: Copy + Sync, B: Copy + Sync, C: Copy + Sync, U: Send>(
    out: &mut [U],
    shape: &[usize],
    a: Src<A>,
    b: Src<B>,
    c: Src<C>,
    f: impl Fn(A, B, C) -> U + Sync,
) {
    let out_strides = contiguous_strides(shape);
    let (cshape, [_, sa, sb, sc]) =
        collapse(shape, [&out_strides, &a.layout.strides, &b.layout.strides, &c.layout.strides]);
    let strides = [sa, sb, sc];
    let steps = tile_steps(&strides);
    let inner = [steps[0].1, steps[1].1, steps[2].1];
    let base = [a.layout.offset, b.layout.offset, c.layout.offset];
    par_chunks_of(out, row_len(&cshape), |chunk, start| {
        for_each_tile(&cshape, &strides, base, start, start + chunk.len(), |o3, pos, rows, cols| {
            for r in 0..rows {
                let o = &mut chunk[pos - start + r * cols..pos - start + (r + 1) * cols];
                let [oa, ob, oc]: [isize; 3] = std::array::from_fn(|k| o3[k] + r as isize * steps[k].0);
                if inner == [1, 1, 1] {
                    let (oa, ob, oc) = (oa as usize, ob as usize, oc as usize);
                    let (a, b, c) = (&a.data[oa..oa + cols], &b.data[ob..ob + cols], &c.data[oc..oc + cols]);
                    for i in 0..cols {
                        o[i] = f(a[i], b[i], c[i]);
                    }
                } else {
                    for (i, o) in o.iter_mut().enumerate() {
                        let i = i as isize;
                        *o = f(
                            a.data[(oa + i * inner[0]) as usize],
                            b.data[(ob + i * inner[1]) as usize],
                            c.data[(oc + i * inner[2]) as usize],
                        );
                    }
                }
            }
        });
    });
}

/// Copies a strided view into a contiguous output.
pub fn copy<T: Copy + Sync + Send>(out: &mut [T], a: Src<T>) {
    let shape = a.layout.shape.clone();
    map1(out, &shape, a, |x| x);
}

/// Pads `a` with `value`: `out` has shape `out_shape` and `a` lands at `before`.
pub fn pad<T: Copy + Sync + Send>(out: &mut [T], out_shape: &[usize], a: Src<T>, before: &[usize], value: T) {
    par_chunks(out, |chunk, _| chunk.fill(value));
    let out_strides = contiguous_strides(out_shape);
    let base: isize = before.iter().zip(&out_strides).map(|(&b, &s)| b as isize * s).sum();
    let shape = &a.layout.shape;
    let (cshape, [sa, so]) = collapse(shape, [&a.layout.strides, &out_strides]);
    let (ia, io) = (*sa.last().unwrap(), *so.last().unwrap());
    let n = a.layout.numel();
    for_each_run(&cshape, &[sa, so], [a.layout.offset, base], 0, n, |[oa, oo], _, len| {
        for i in 0..len as isize {
            out[(oo + i * io) as usize] = a.data[(oa + i * ia) as usize];
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    #[test]
    fn map2_broadcasts_and_permutes() {
        // a: [[0,1,2],[3,4,5]] transposed to 3x2; b: [10, 20] broadcast along rows.
        let a_data: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let a_layout = Layout::contiguous(&[2, 3]).permute(&[1, 0]);
        let b_data = vec![10f32, 20.0];
        let b_layout = Layout::contiguous(&[2]).expand(&[3, 2]);
        let mut out = vec![0f32; 6];
        map2(
            &mut out,
            &[3, 2],
            Src { data: &a_data, layout: &a_layout },
            Src { data: &b_data, layout: &b_layout },
            |x, y| x + y,
        );
        assert_eq!(out, vec![10.0, 23.0, 11.0, 24.0, 12.0, 25.0]);
    }

    #[test]
    fn map1_large_parallel_matches_serial() {
        let n = 300_001;
        let data: Vec<f64> = (0..n).map(|x| x as f64).collect();
        let layout = Layout::contiguous(&[n]).slice(&[1], &[2], &[n / 2]);
        let mut out = vec![0f64; n / 2];
        map1(&mut out, &[n / 2], Src { data: &data, layout: &layout }, |x| x * 2.0);
        assert!(out.iter().enumerate().all(|(i, &v)| v == (1 + 2 * i) as f64 * 2.0));
    }

    #[test]
    fn pad_places_input_inside_fill() {
        let data = vec![1i32, 2, 3, 4];
        let layout = Layout::contiguous(&[2, 2]);
        let mut out = vec![0i32; 12];
        pad(&mut out, &[3, 4], Src { data: &data, layout: &layout }, &[1, 1], -1);
        assert_eq!(out, vec![-1, -1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1]);
    }
}
