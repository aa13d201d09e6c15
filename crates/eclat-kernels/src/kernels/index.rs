//! Gather and scatter along an axis, PyTorch semantics. Index values are checked
//! before use: a bad one is an error naming the op, never an out-of-bounds access.

use super::{try_par_chunks, Src};
use crate::error::{ErrorKind, KernelError, Result};
use crate::layout::{collapse, contiguous_strides, for_each_run, numel};

fn check_index(op: &str, v: i32, axis: usize, size: usize) -> Result<isize> {
    if v < 0 || v as usize >= size {
        return Err(KernelError::new(
            ErrorKind::Index,
            format!("{op}: index {v} is out of range for axis {axis} of size {size}"),
        ));
    }
    Ok(v as isize)
}

/// `out[p] = src[p with p[axis] = index[p]]`; `out` has the index's shape.
pub fn gather<T: Copy + Send + Sync>(out: &mut [T], src: Src<T>, axis: usize, index: Src<i32>) -> Result<()> {
    let shape = &index.layout.shape;
    let size = src.layout.shape[axis];
    let axis_stride = src.layout.strides[axis];
    let mut walk_strides = src.layout.strides.clone();
    walk_strides[axis] = 0;
    let (cshape, [si, ss]) = collapse(shape, [&index.layout.strides, &walk_strides]);
    let strides = [si, ss];
    let (ii, is) = (*strides[0].last().unwrap(), *strides[1].last().unwrap());
    try_par_chunks(out, |chunk, start| {
        let mut result = Ok(());
        for_each_run(&cshape, &strides, [index.layout.offset, src.layout.offset], start, start + chunk.len(), |[oi, os], pos, len| {
            if result.is_err() {
                return;
            }
            for k in 0..len as isize {
                let v = index.data[(oi + k * ii) as usize];
                match check_index("gather", v, axis, size) {
                    Ok(v) => chunk[pos - start + k as usize] = src.data[(os + k * is + v * axis_stride) as usize],
                    Err(e) => {
                        result = Err(e);
                        return;
                    }
                }
            }
        });
        result
    })
}

/// Scatters `src` into `out` (already holding the target, contiguous of
/// `out_shape`): `out[p with p[axis] = index[p]] = combine(old, src[p])` for every
/// position `p` of the index. Serial, so the order of combination is fixed.
pub fn scatter<T: Copy>(
    op: &str,
    out: &mut [T],
    out_shape: &[usize],
    axis: usize,
    index: Src<i32>,
    src: Src<T>,
    combine: impl Fn(T, T) -> T,
) -> Result<()> {
    let shape = &index.layout.shape;
    let size = out_shape[axis];
    let out_strides = contiguous_strides(out_shape);
    let axis_stride = out_strides[axis];
    let mut walk_strides = out_strides.clone();
    walk_strides[axis] = 0;
    let (cshape, [si, ss, so]) = collapse(shape, [&index.layout.strides, &src.layout.strides, &walk_strides]);
    let strides = [si, ss, so];
    let inner = [*strides[0].last().unwrap(), *strides[1].last().unwrap(), *strides[2].last().unwrap()];
    let mut result = Ok(());
    let base = [index.layout.offset, src.layout.offset, 0];
    for_each_run(&cshape, &strides, base, 0, numel(shape), |[oi, os, oo], _, len| {
        if result.is_err() {
            return;
        }
        for k in 0..len as isize {
            let v = index.data[(oi + k * inner[0]) as usize];
            match check_index(op, v, axis, size) {
                Ok(v) => {
                    let p = (oo + k * inner[2] + v * axis_stride) as usize;
                    out[p] = combine(out[p], src.data[(os + k * inner[1]) as usize]);
                }
                Err(e) => {
                    result = Err(e);
                    return;
                }
            }
        }
    });
    result
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
        gather(&mut out, Src { data: &src, layout: &l }, 1, Src { data: &idx, layout: &l }).unwrap();
        assert_eq!(out, vec![1.0, 1.0, 4.0, 3.0]);
    }

    #[test]
    fn gather_rejects_bad_index() {
        let src = vec![1f32, 2.0];
        let idx = vec![2i32];
        let err = gather(
            &mut [0f32],
            Src { data: &src, layout: &Layout::contiguous(&[2]) },
            0,
            Src { data: &idx, layout: &Layout::contiguous(&[1]) },
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Index);
        assert!(err.message.contains("index 2"), "{}", err.message);
    }

    #[test]
    fn scatter_add_accumulates_duplicates() {
        let mut out = vec![0f32; 3];
        let idx = vec![0i32, 2, 0, 1];
        let src = vec![1f32, 2.0, 3.0, 4.0];
        let l = Layout::contiguous(&[4]);
        scatter("scatterAdd", &mut out, &[3], 0, Src { data: &idx, layout: &l }, Src { data: &src, layout: &l }, |a, b| a + b)
            .unwrap();
        assert_eq!(out, vec![4.0, 4.0, 2.0]);
    }
}
