//! Strided views of a buffer and the loop that walks them.
//!
//! A view op never copies: it only derives a new [`Layout`] (shape, strides in
//! elements, offset). Kernels read their inputs through layouts and write
//! contiguous outputs, walking the shape as runs along the innermost axis so the
//! common case (stride 1) is a plain slice loop LLVM vectorizes.

/// The shape, element strides and starting offset of a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
    pub offset: isize,
}

/// Row-major strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for d in (0..shape.len()).rev() {
        strides[d] = acc;
        acc *= shape[d].max(1) as isize;
    }
    strides
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Layout {
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// True when the view covers a buffer region in row-major order with no gaps.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1isize;
        for d in (0..self.shape.len()).rev() {
            if self.shape[d] != 1 && self.strides[d] != expected {
                return false;
            }
            expected *= self.shape[d] as isize;
        }
        true
    }

    pub fn permute(&self, order: &[usize]) -> Layout {
        Layout {
            shape: order.iter().map(|&d| self.shape[d]).collect(),
            strides: order.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        }
    }

    /// Broadcasts to `shape` (which may add leading axes): expanded axes get stride 0.
    pub fn expand(&self, shape: &[usize]) -> Layout {
        let lead = shape.len() - self.shape.len();
        let strides = (0..shape.len())
            .map(|d| {
                if d < lead || self.shape[d - lead] != shape[d] {
                    0
                } else {
                    self.strides[d - lead]
                }
            })
            .collect();
        Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        }
    }

    /// Takes `shape[d]` elements from `starts[d]` every `steps[d]` along each axis.
    pub fn slice(&self, starts: &[usize], steps: &[usize], shape: &[usize]) -> Layout {
        let mut offset = self.offset;
        let mut strides = self.strides.clone();
        for d in 0..shape.len() {
            if shape[d] > 0 {
                offset += starts[d] as isize * self.strides[d];
            }
            strides[d] *= steps[d] as isize;
        }
        Layout {
            shape: shape.to_vec(),
            strides,
            offset,
        }
    }

    /// A reshaped view when no copy is needed (contiguous data), else None.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        self.is_contiguous().then(|| Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: self.offset,
        })
    }

    /// Number of elements of the buffer this view needs, from its offset on:
    /// one past the largest offset it reaches (0 for an empty view).
    pub fn extent(&self) -> Option<usize> {
        if self.numel() == 0 {
            return Some(0);
        }
        let mut max = self.offset;
        for d in 0..self.shape.len() {
            if self.strides[d] < 0 {
                return None;
            }
            max += (self.shape[d] as isize - 1) * self.strides[d];
        }
        (self.offset >= 0).then_some(max as usize + 1)
    }

    /// Whether every position of the view lies inside a buffer of `len`
    /// elements (no negative strides or offset, extent at most `len`).
    pub fn fits(&self, len: usize) -> bool {
        self.extent().is_some_and(|e| e <= len)
    }
}

/// Merges adjacent axes that every operand walks as one (and drops size-1 axes),
/// so the innermost run is as long as possible. `strides[k]` belongs to operand k.
pub fn collapse<const K: usize>(
    shape: &[usize],
    strides: [&[isize]; K],
) -> (Vec<usize>, [Vec<isize>; K]) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: [Vec<isize>; K] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = match out_shape.last() {
            Some(_) => (0..K).all(|k| {
                let prev = *out_strides[k].last().unwrap();
                prev == strides[k][d] * shape[d] as isize
            }),
            None => false,
        };
        if mergeable {
            *out_shape.last_mut().unwrap() *= shape[d];
            for k in 0..K {
                *out_strides[k].last_mut().unwrap() = strides[k][d];
            }
        } else {
            out_shape.push(shape[d]);
            for k in 0..K {
                out_strides[k].push(strides[k][d]);
            }
        }
    }
    if out_shape.is_empty() {
        out_shape.push(1);
        for k in 0..K {
            out_strides[k].push(0);
        }
    }
    (out_shape, out_strides)
}

/// Walks the row-major positions `start..end` of `shape` as runs along the last
/// axis. For each run it calls `f(offsets, position, len)` where `offsets[k]` is
/// operand k's element offset at the run's start and `position` the run's
/// row-major index; within a run operand k advances by `strides[k][last]`.
pub fn for_each_run<const K: usize>(
    shape: &[usize],
    strides: &[Vec<isize>; K],
    base: [isize; K],
    start: usize,
    end: usize,
    mut f: impl FnMut([isize; K], usize, usize),
) {
    let nd = shape.len();
    if start >= end || nd == 0 {
        if start < end {
            f(base, start, 1);
        }
        return;
    }
    // Multi-index of `start` and the operands' offsets there (on the stack for
    // the usual ranks: this runs once per row of many kernels).
    let mut inline = [0usize; 16];
    let mut heap = Vec::new();
    let index: &mut [usize] = if nd <= inline.len() {
        &mut inline[..nd]
    } else {
        heap.resize(nd, 0);
        &mut heap
    };
    let mut rem = start;
    for d in (0..nd).rev() {
        index[d] = rem % shape[d];
        rem /= shape[d];
    }
    let mut offsets = base;
    for k in 0..K {
        for d in 0..nd {
            offsets[k] += index[d] as isize * strides[k][d];
        }
    }
    let last = nd - 1;
    let mut pos = start;
    while pos < end {
        let len = (shape[last] - index[last]).min(end - pos);
        f(offsets, pos, len);
        pos += len;
        // Advance the multi-index by `len` along the last axis, carrying upward.
        index[last] += len;
        for k in 0..K {
            offsets[k] += len as isize * strides[k][last];
        }
        let mut d = last;
        while index[d] == shape[d] && d > 0 {
            for k in 0..K {
                offsets[k] -= shape[d] as isize * strides[k][d];
            }
            index[d] = 0;
            d -= 1;
            index[d] += 1;
            for k in 0..K {
                offsets[k] += strides[k][d];
            }
        }
    }
}

/// Like [`for_each_run`], but walks 2-D tiles: each call `f(offsets, position,
/// rows, cols)` covers `rows` consecutive rows of the last axis (`cols` long),
/// rows advancing by `strides[k][last - 1]`. Short last axes (pooling windows,
/// broadcast rows) then cost one call per tile instead of one per row.
/// `start` and `end` must be multiples of the last axis's length.
pub fn for_each_tile<const K: usize>(
    shape: &[usize],
    strides: &[Vec<isize>; K],
    base: [isize; K],
    start: usize,
    end: usize,
    mut f: impl FnMut([isize; K], usize, usize, usize),
) {
    let nd = shape.len();
    if start >= end {
        return;
    }
    if nd < 2 {
        for_each_run(shape, strides, base, start, end, |o, pos, len| {
            f(o, pos, 1, len)
        });
        return;
    }
    let cols = shape[nd - 1];
    debug_assert!(
        start % cols == 0 && end % cols == 0,
        "tiles start on row boundaries"
    );
    let outer: [Vec<isize>; K] = std::array::from_fn(|k| strides[k][..nd - 1].to_vec());
    for_each_run(
        &shape[..nd - 1],
        &outer,
        base,
        start / cols,
        end / cols,
        |o, row, rows| f(o, row * cols, rows, cols),
    );
}

/// Rows of a row-major shape: the granule chunks must respect for tiles.
pub fn row_len(shape: &[usize]) -> usize {
    if shape.len() < 2 {
        1
    } else {
        shape[shape.len() - 1].max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_contiguous_axes() {
        let s = contiguous_strides(&[2, 3, 4]);
        let (shape, [st]) = collapse(&[2, 3, 4], [&s]);
        assert_eq!(shape, vec![24]);
        assert_eq!(st, vec![1]);
    }

    #[test]
    fn collapse_keeps_permuted_axes() {
        let l = Layout::contiguous(&[3, 4]).permute(&[1, 0]);
        let (shape, [st]) = collapse(&l.shape, [&l.strides]);
        assert_eq!(shape, vec![4, 3]);
        assert_eq!(st, vec![1, 4]);
    }

    #[test]
    fn runs_visit_every_offset_once_in_order() {
        let l = Layout::contiguous(&[3, 5]).permute(&[1, 0]);
        for (start, end) in [(0, 15), (2, 11), (4, 5), (14, 15)] {
            let mut seen = vec![];
            for_each_run(
                &l.shape,
                &[l.strides.clone()],
                [0],
                start,
                end,
                |[o], pos, len| {
                    for i in 0..len {
                        seen.push((pos + i, o + i as isize * l.strides[1]));
                    }
                },
            );
            let expected: Vec<_> = (start..end)
                .map(|p| (p, ((p % 3) * 5 + p / 3) as isize))
                .collect();
            assert_eq!(seen, expected);
        }
    }

    #[test]
    fn slice_and_expand_layouts() {
        let l = Layout::contiguous(&[4, 6]).slice(&[1, 0], &[2, 3], &[2, 2]);
        assert_eq!((l.offset, l.strides.clone()), (6, vec![12, 3]));
        let e = Layout::contiguous(&[1, 3]).expand(&[2, 4, 3]);
        assert_eq!(e.strides, vec![0, 0, 1]);
        assert!(!e.is_contiguous());
        assert!(Layout::contiguous(&[2, 1, 3]).is_contiguous());
    }
}
