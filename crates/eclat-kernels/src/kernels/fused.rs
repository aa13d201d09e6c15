//! Fused elementwise kernels: one pass over the inputs for a whole DAG of
//! elementwise ops, with no intermediate tensors.
//!
//! The iteration space is walked in pieces of 256-4096 positions (as many as keep
//! the live registers within L1). For
//! each piece every input becomes an operand without copying when it can: a
//! slice of the input itself (stride 1) or a broadcast scalar (stride 0); other
//! strides are gathered into a register. Then each step runs one tight loop over
//! the piece, reading its operands and writing its own register (L1-resident);
//! the last step writes straight into the output. Registers whose live ranges do
//! not overlap share memory. Steps whose operands are all
//! scalars are computed once per piece. Every loop is compiled per SIMD level
//! ([`crate::dispatch`]), and float32 transcendentals use [`crate::math`].
//!
//! A fused reduce evaluates the expression piece by piece and folds the pieces,
//! so `x.mul(x).sum(1)` reads `x` once and never writes `x*x`.

use super::elementwise::transpose_band;
use super::matmul::{matmul_blocks, GemmElem};
use super::reduce::{step_columns, Fold, BLOCK};
use super::tile::{self, TileProgram, MAX_TILE};
use super::SharedOut;
use super::Src;
use super::STREAM_BYTES;
use crate::dtype::{max_nan, min_nan, Bits, DType, Elem, Num};
use crate::error::{ErrorKind, KernelError, Result};
use crate::layout::{collapse, for_each_run, numel, Layout};
use crate::math::{exp2_f32, log2_f32, sin_f32, sin_f32_any, SIN_F32_LIMIT};
use crate::op::Op;
use crate::pool::{chunk_len, num_threads, PARALLEL_THRESHOLD};
use crate::program::{Expr, Slots, Step, StepOp};
use crate::simd::{self, Level};
#[cfg(target_arch = "x86_64")]
use crate::vector::{Avx2F32, Avx2F64, Avx512F32, Avx512F64, Vector};
use crate::{dispatch, with_any_dtype};
use rayon::prelude::*;
use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

/// A source of a fused kernel: its storage as bytes and its view, whose shape is
/// the kernel's iteration shape (a fused reduce's source shape).
pub struct RawSrc<'a> {
    pub bytes: &'a [u8],
    pub dtype: DType,
    pub layout: &'a Layout,
}

/// [`check`], remembered with the expression: a repeated realize of a decoded
/// program checks its types once. `srcs` gives the sources' dtypes.
pub fn check_cached<I>(expr: &Expr, srcs: I) -> Result<Cow<'_, [DType]>>
where
    I: Iterator<Item = DType> + Clone,
{
    let n_in = srcs.clone().count();
    if let Some(dts) = expr.types.get() {
        if dts.len() >= n_in && dts[..n_in].iter().copied().eq(srcs.clone()) {
            return Ok(Cow::Borrowed(&dts[..]));
        }
    }
    let dts = check(expr, &srcs.collect::<Vec<_>>())?;
    // Only the first source dtypes met are kept (a program has one set).
    Ok(match expr.types.set(dts) {
        Ok(()) => Cow::Borrowed(&expr.types.get().expect("just set")[..]),
        Err(dts) => Cow::Owned(dts),
    })
}

/// Checks the expression's types against its sources and returns the dtype of
/// every register (sources, then steps). After this, evaluation never meets a
/// dtype it does not expect.
pub fn check(expr: &Expr, srcs: &[DType]) -> Result<Vec<DType>> {
    let mut dts = srcs.to_vec();
    for (j, step) in expr.steps.iter().enumerate() {
        if let Some(&bad) = step.operands.iter().find(|&&o| o >= dts.len()) {
            return Err(KernelError::format(format!(
                "{}: step {j} reads register {bad} of {}",
                expr.label(),
                dts.len()
            )));
        }
        // Elementwise ops take at most three operands.
        let mut buf = [DType::Bool; 3];
        if step.operands.len() > buf.len() {
            return Err(KernelError::format(format!(
                "{}: step {j} has {} operands",
                expr.label(),
                step.operands.len()
            )));
        }
        let ops = &mut buf[..step.operands.len()];
        for (d, &o) in ops.iter_mut().zip(&step.operands) {
            *d = dts[o];
        }
        let ops = &*ops;
        let bad = |why: &str| {
            KernelError::new(
                ErrorKind::DType,
                format!(
                    "{}: step {j} {why} (operands {:?}, result {})",
                    expr.label(),
                    ops.iter().map(|d| d.name()).collect::<Vec<_>>(),
                    step.dtype.name()
                ),
            )
        };
        let result = match step.op {
            StepOp::Const(_) => {
                if !ops.is_empty() {
                    return Err(bad("a constant takes no operands"));
                }
                step.dtype
            }
            StepOp::Op(op) => {
                let Some(arity) = op.elementwise_arity() else {
                    return Err(bad(&format!("{} is not elementwise", op.name())));
                };
                if ops.len() != arity {
                    return Err(bad(&format!("{} takes {arity} operands", op.name())));
                }
                let a = ops[0];
                let float = a.is_float();
                let num = a != DType::Bool;
                let bits = matches!(a, DType::I32 | DType::Bool);
                let same = ops
                    .iter()
                    .skip(if op == Op::Where { 1 } else { 0 })
                    .all(|&d| d == ops[ops.len() - 1]);
                let (ok, result) = match op {
                    Op::Neg => (num, a),
                    Op::Recip | Op::Sqrt | Op::Exp2 | Op::Log2 | Op::Sin => (float, a),
                    Op::BitwiseNot => (bits, a),
                    Op::Cast => (true, step.dtype),
                    Op::Add | Op::Mul => (num && same, a),
                    Op::Maximum | Op::Minimum => (same, a),
                    Op::Lt | Op::Eq => (same, DType::Bool),
                    Op::BitwiseAnd | Op::BitwiseOr | Op::BitwiseXor => (bits && same, a),
                    Op::Where => (a == DType::Bool && same, ops[1]),
                    _ => unreachable!("arity checked above"),
                };
                if !ok {
                    return Err(bad(&format!("{} does not take these dtypes", op.name())));
                }
                result
            }
        };
        if result != step.dtype {
            return Err(bad("has the wrong result dtype"));
        }
        dts.push(result);
    }
    Ok(dts)
}

/// A source as the walker sees it: collapsed against the iteration order.
#[derive(Clone)]
struct Walk<'a> {
    bytes: &'a [u8],
    size: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// One stride list (the form `for_each_run` takes).
    strides: [Vec<isize>; 1],
    offset: isize,
    /// For runs shorter than [`SHORT_RUN`]: the source's offsets over blocks
    /// of its innermost axes, so gathering it costs a table lookup per element
    /// instead of a run's bookkeeping per few elements. Shared: a matmul
    /// epilogue copies its walks for every block of the product.
    blocks: Option<Arc<Blocks>>,
    /// For a source that repeats along the iteration order (see [`Pattern`]):
    /// its values laid out so every piece reads them in place.
    pattern: Option<Arc<Pattern>>,
}

/// A source whose values repeat with a short period along the iteration
/// order: strides 0 on every axis outside its innermost ones (a bias row
/// broadcast over a batch). Holds one period followed by as many values as the
/// longest piece, so the piece starting at position `p` reads
/// `values[p % period..]` in place. Without it such a source is copied one run
/// (one bias row) at a time, and cuts pieces at its rows: a convolution's
/// bias add over [50176, 16] spent more on those copies than on its product.
struct Pattern {
    period: usize,
    /// The values' bytes, in u64 words so every dtype is aligned.
    words: Vec<u64>,
    /// How many of the words' bytes hold values.
    len: usize,
}

/// Periods up to this many elements are laid out as a [`Pattern`].
const MAX_PERIOD: usize = 16 << 10;
/// Sources with fewer positions are copied run by run (a small kernel's
/// setup matters more than its runs).
const MIN_PATTERN_POSITIONS: usize = 16 << 10;

impl Pattern {
    /// The pattern of a collapsed source, when it repeats with a period of at
    /// most [`MAX_PERIOD`] and has at least [`MIN_PATTERN_POSITIONS`] positions
    /// (building it costs about one piece's copy).
    fn new(
        bytes: &[u8],
        size: usize,
        shape: &[usize],
        strides: &[isize],
        offset: isize,
    ) -> Option<Pattern> {
        let split = strides.iter().take_while(|&&s| s == 0).count();
        let positions = numel(shape);
        if split == 0 || split == shape.len() || positions < MIN_PATTERN_POSITIONS {
            return None;
        }
        let period = numel(&shape[split..]);
        if period > MAX_PERIOD {
            return None;
        }
        let len = period + TILE_PIECE.max(MAX_PIECE).min(positions);
        let inner = [strides[split..].to_vec()];
        // The bytes are written straight into u64 words (aligned for every dtype).
        let total = len * size;
        let mut words = vec![0u64; total.div_ceil(8)];
        // SAFETY: plain numbers viewed as their bytes, `total` of them.
        let pattern =
            unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, total) };
        let mut filled = 0;
        for_each_run(&shape[split..], &inner, [offset], 0, period, |[o], _, n| {
            let s = *inner[0].last().unwrap();
            for i in 0..n as isize {
                let at = (o + i * s) as usize * size;
                pattern[filled..filled + size].copy_from_slice(&bytes[at..at + size]);
                filled += size;
            }
        });
        // Repeat the period by doubling.
        while filled < total {
            let more = filled.min(total - filled);
            pattern.copy_within(..more, filled);
            filled += more;
        }
        Some(Pattern {
            period,
            words,
            len: total,
        })
    }

    /// The values of positions `start..start + n` in place, when the pattern
    /// holds that many (it holds the longest piece).
    fn at(&self, start: usize, n: usize, size: usize) -> Option<*const u8> {
        let from = (start % self.period) * size;
        // SAFETY: `from` lies inside the words' bytes (checked first).
        (from + n * size <= self.len)
            .then(|| unsafe { (self.words.as_ptr() as *const u8).add(from) })
    }
}

/// Runs shorter than this gather through a [`Blocks`] table (a pooling
/// window's gradient broadcasts along axes of 2 or 3).
const SHORT_RUN: usize = 16;
/// The most offsets a [`Blocks`] table holds.
const BLOCK_TABLE: usize = 4096;

/// `out[i] = data[at + i * step]`: one run of a strided source (a transposed
/// view), by vector gathers where the SIMD level has them.
///
/// # Safety
/// Every `at + i * step` lies inside `data` (a run of a layout `Walk::new`
/// checked against it).
#[inline(always)]
unsafe fn strided<T: Copy>(out: &mut [T], data: &[T], at: isize, step: isize) {
    for (i, v) in out.iter_mut().enumerate() {
        *v = *data.get_unchecked((at + i as isize * step) as usize);
    }
}

/// Positions `start..start + out.len()` of the source `w` (located as
/// [`Walk::locate`] says) into `out`, whose element type is `w`'s.
///
/// # Safety
/// `T` must be the Rust type of `w.dtype`; `Walk::new` checked that `w`'s
/// view fits its bytes.
#[inline(always)]
unsafe fn gather<T: Copy>(w: &Walk, located: Option<(isize, isize)>, start: usize, out: &mut [T]) {
    // SAFETY: the source's bytes are aligned elements of its dtype.
    let data = std::slice::from_raw_parts(w.bytes.as_ptr() as *const T, w.bytes.len() / w.size);
    match (located, &w.blocks) {
        (Some((o, s)), _) => strided(out, data, o, s),
        (None, Some(blocks)) => blocks.gather(data, w.offset, start, out),
        (None, None) if w.transposed() => gather_transposed(w, data, start, out),
        (None, None) if w.row_broadcast() => gather_row_broadcast(w, data, start, out),
        (None, None) => {
            let s = *w.strides[0].last().unwrap();
            w.runs(start, start + out.len(), |o, pos, len| {
                let out = &mut out[pos - start..pos - start + len];
                // Rows of a broadcast bias and the like: a copy or a fill per run.
                match s {
                    1 => out.copy_from_slice(&data[o as usize..o as usize + len]),
                    0 => out.fill(data[o as usize]),
                    _ => strided(out, data, o, s),
                }
            })
        }
    }
}

/// [`gather`] for a source read across its memory order: its innermost axis
/// strided and the next one contiguous (an NHWC buffer read as NCHW). Whole
/// rows whose starts step by one element are read together, one column at a
/// time, so each cache line of the source is read once for all the piece's
/// values on it rather than once per value (row by row, a line is evicted
/// before the next row needs it); bands of up to 16 such rows go by square
/// blocks ([`transpose_band`]: a [50176, 64] view of a [64, 50176] buffer,
/// 3.4 → 2.6 ms for `x.transpose(0, 1).mul(2)`). Pieces end at row ends when
/// they hold whole rows (see `Eval::piece_end`), so no row is split across
/// two pieces' bands (a ReLU over an [N, 16, 28, 28] view of an NHWC
/// buffer: 0.4-0.6 → 0.2-0.3 ms).
///
/// # Safety
/// As for [`gather`].
#[inline(always)]
unsafe fn gather_transposed<T: Copy>(w: &Walk, data: &[T], start: usize, out: &mut [T]) {
    let row = *w.shape.last().unwrap();
    let step = *w.strides[0].last().unwrap();
    // Rows `k` of a group starting at position `pos` and offset `at`.
    let columns = |out: &mut [T], (pos, at, k): (usize, isize, usize)| {
        let out = &mut out[pos - start..pos - start + k * row];
        // Bands of up to 16 rows by square blocks.
        for (band, rows) in out.chunks_mut(16 * row).enumerate() {
            // SAFETY: these rows are positions of the source's view.
            transpose_band(
                data,
                at + 16 * band as isize,
                step,
                rows,
                rows.len() / row,
                0..row,
            );
        }
    };
    let mut group: Option<(usize, isize, usize)> = None;
    w.runs(start, start + out.len(), |at, pos, len| {
        if len == row {
            match group {
                Some((p, a, k)) if pos == p + k * row && at == a + k as isize => {
                    group = Some((p, a, k + 1));
                    return;
                }
                Some(g) => columns(out, g),
                None => {}
            }
            group = Some((pos, at, 1));
        } else {
            if let Some(g) = group.take() {
                columns(out, g);
            }
            strided(&mut out[pos - start..pos - start + len], data, at, step);
        }
    });
    if let Some(g) = group {
        columns(out, g);
    }
}

/// [`gather`] for a source broadcast along its innermost axis (one value per
/// row, as a softmax's row maximum is) in rows shorter than a piece: each row
/// is a fill of its value, found by stepping along the next axis, so the run
/// walker's bookkeeping is paid once per span of that axis rather than once
/// per row (a row of 10: `x - m` over [1.6M, 10], 8.3-8.4 → 6.3 ms; rows of
/// 100: `x * m` over [160000, 100], 16 → 12 ms).
///
/// # Safety
/// As for [`gather`].
#[inline(always)]
unsafe fn gather_row_broadcast<T: Copy>(w: &Walk, data: &[T], start: usize, out: &mut [T]) {
    let nd = w.shape.len();
    let (row, rows) = (w.shape[nd - 1], w.shape[nd - 2]);
    let step = w.strides[0][nd - 2];
    let end = start + out.len();
    let mut pos = start;
    while pos < end {
        // The offset of `pos`'s row (its innermost stride is 0), then rows
        // along the next axis to that axis's end.
        let (r, mut first) = (pos / row, pos % row);
        let (mut at, _) = w.locate(pos, 1).expect("one position lies in its run");
        for _ in r % rows..rows {
            let n = (row - first).min(end - pos);
            let value = *data.get_unchecked(at as usize);
            if row < SHORT_RUN && end - pos >= SHORT_RUN {
                // One fixed-size store of a whole row and then some: the next
                // row's store overwrites what lies past this one.
                out[pos - start..pos - start + SHORT_RUN].copy_from_slice(&[value; SHORT_RUN]);
            } else {
                out[pos - start..pos - start + n].fill(value);
            }
            pos += n;
            if pos == end {
                return;
            }
            at += step;
            first = 0;
        }
    }
}

/// Booleans (any nonzero byte is true) as 0 and 1.
#[inline(always)]
fn bools_as_floats<T: Num>(bytes: &[u8], out: &mut [T]) {
    let (zero, one) = (T::from_f64(0.0), T::from_f64(1.0));
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = if b != 0 { one } else { zero };
    }
}

/// A source's innermost axes as one block of precomputed offsets, and the
/// axes outside it.
#[derive(Clone)]
struct Blocks {
    /// Offsets of a block's positions, relative to the block's start (32-bit:
    /// half the cache a table takes; AVX-512 gathers over it measured slower
    /// than the scalar loop on a Zen 4).
    table: Vec<i32>,
    /// The table as windows of 16 positions, each reading within 16
    /// consecutive elements (empty when some window reads wider): for
    /// 4-byte elements on AVX-512 a window is one masked load and one
    /// permute. A 2x2 max pool's gradient over [64, 16, 28, 28], whose two
    /// broadcast sources read each value twice per row and each row twice:
    /// 0.77-0.87 → 0.43-0.49 ms for the whole kernel.
    windows: Vec<Window>,
    outer_shape: Vec<usize>,
    outer_strides: [Vec<isize>; 1],
}

/// 16 positions of a [`Blocks`] table read as one vector: `lanes[i]` is
/// position i's element among the `load` lanes starting at offset `lo`;
/// `store` masks the positions the window has (the table's last may be short).
#[derive(Clone)]
struct Window {
    lo: i32,
    lanes: [u32; 16],
    load: u16,
    store: u16,
}

/// The windows of `table`, or none if some 16 positions span more than 16 elements.
fn windows_of(table: &[i32]) -> Vec<Window> {
    let mut windows = Vec::with_capacity(table.len().div_ceil(16));
    for chunk in table.chunks(16) {
        let lo = *chunk.iter().min().unwrap();
        let span = (*chunk.iter().max().unwrap() - lo) as usize + 1;
        if span > 16 {
            return vec![];
        }
        let mut lanes = [0u32; 16];
        for (lane, &t) in lanes.iter_mut().zip(chunk) {
            *lane = (t - lo) as u32;
        }
        let mask = |n: usize| ((1u32 << n) - 1) as u16;
        windows.push(Window {
            lo,
            lanes,
            load: mask(span),
            store: mask(chunk.len()),
        });
    }
    windows
}

/// One block of a [`Blocks`] table by its windows: `src` points at the block's
/// first element, `dst` at room for the whole block.
///
/// # Safety
/// The CPU has AVX-512F; every window's `load` lanes lie inside the source
/// (they lie between two of the block's positions), and `dst` has room for
/// the table. (A function of its own with the feature enabled: the block loop
/// runs inside `for_each_run`, compiled for the baseline.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_windows(windows: &[Window], src: *const i32, dst: *mut i32) {
    use std::arch::x86_64::*;
    for (w, window) in windows.iter().enumerate() {
        let v = _mm512_maskz_loadu_epi32(window.load, src.offset(window.lo as isize));
        let lanes = _mm512_loadu_si512(window.lanes.as_ptr() as *const _);
        let r = _mm512_permutexvar_epi32(lanes, v);
        _mm512_mask_storeu_epi32(dst.add(w * 16), window.store, r);
    }
}

impl Blocks {
    /// The table for `shape` and `strides` when their last run is short, at
    /// least two innermost axes fit in it, and its offsets fit in 32 bits.
    fn new(shape: &[usize], strides: &[isize]) -> Option<Blocks> {
        let nd = shape.len();
        if nd < 2 || shape[nd - 1] >= SHORT_RUN {
            return None;
        }
        let mut inner = 1;
        let mut size = shape[nd - 1];
        while inner < nd && size * shape[nd - 1 - inner] <= BLOCK_TABLE {
            size *= shape[nd - 1 - inner];
            inner += 1;
        }
        if inner < 2 {
            return None;
        }
        let split = nd - inner;
        let inner_strides = [strides[split..].to_vec()];
        let mut table = Vec::with_capacity(size);
        let mut fits = true;
        for_each_run(
            &shape[split..],
            &inner_strides,
            [0],
            0,
            size,
            |[o], _, len| {
                let s = inner_strides[0][inner - 1];
                for i in 0..len as isize {
                    let offset = i32::try_from(o + i * s);
                    fits &= offset.is_ok();
                    table.push(offset.unwrap_or(0));
                }
            },
        );
        if !fits {
            return None;
        }
        let (outer_shape, outer_strides) = if split == 0 {
            (vec![1], [vec![0]])
        } else {
            (shape[..split].to_vec(), [strides[..split].to_vec()])
        };
        Some(Blocks {
            windows: windows_of(&table),
            table,
            outer_shape,
            outer_strides,
        })
    }

    /// Copies positions `start..start + out.len()` of the source whose first
    /// element is at `data[base]` into `out`.
    ///
    /// # Safety
    /// Every position of the source's layout lies inside `data` (asserted by
    /// `Walk::new`).
    #[inline(always)]
    unsafe fn gather<T: Copy>(&self, data: &[T], base: isize, start: usize, out: &mut [T]) {
        // Whole blocks of 4-byte elements go by windows on AVX-512.
        #[cfg(target_arch = "x86_64")]
        let by_windows = std::mem::size_of::<T>() == 4
            && !self.windows.is_empty()
            && simd::level() == Level::Avx512;
        let size = self.table.len();
        let end = start + out.len();
        let outer_step = *self.outer_strides[0].last().unwrap();
        let (first, last) = (start / size, end.div_ceil(size));
        for_each_run(
            &self.outer_shape,
            &self.outer_strides,
            [base],
            first,
            last,
            |[o], block, len| {
                for b in 0..len {
                    let at = (block + b) * size;
                    let o = o + b as isize * outer_step;
                    let (from, to) = (start.max(at), end.min(at + size));
                    let dst = &mut out[from - start..to - start];
                    #[cfg(target_arch = "x86_64")]
                    if by_windows && dst.len() == size {
                        // SAFETY: see `gather_windows`; o is the block's first position.
                        gather_windows(
                            &self.windows,
                            data.as_ptr().offset(o) as *const i32,
                            dst.as_mut_ptr() as *mut i32,
                        );
                        continue;
                    }
                    for (v, &t) in dst.iter_mut().zip(&self.table[from - at..to - at]) {
                        // SAFETY: o + t is a position of the layout (see above).
                        *v = *data.get_unchecked((o + t as isize) as usize);
                    }
                }
            },
        );
    }
}

impl<'a> Walk<'a> {
    fn new(src: &RawSrc<'a>, layout: &Layout) -> Walk<'a> {
        // Strided runs and block tables read without bounds checks (the
        // executor checked this already; a caller of the public kernels may not have).
        assert!(
            layout.fits(src.bytes.len() / src.dtype.size()),
            "fused kernel: source view {layout:?} exceeds its {} bytes",
            src.bytes.len()
        );
        // Positions go in row-major order, which never stops two axes merging:
        // only the source's own strides decide.
        let (shape, [strides]) = collapse(&layout.shape, [&layout.strides]);
        let size = src.dtype.size();
        let pattern = Pattern::new(src.bytes, size, &shape, &strides, layout.offset);
        Walk {
            bytes: src.bytes,
            size,
            dtype: src.dtype,
            blocks: match pattern {
                Some(_) => None,
                None => Blocks::new(&shape, &strides).map(Arc::new),
            },
            pattern: pattern.map(Arc::new),
            shape,
            strides: [strides],
            offset: layout.offset,
        }
    }

    /// Length of this source's runs along the iteration order.
    fn run_len(&self) -> usize {
        *self.shape.last().unwrap()
    }

    /// `for_each_run` over positions `start..end` of this source: `f(offset,
    /// position, len)` per run.
    #[inline(always)]
    fn runs(&self, start: usize, end: usize, mut f: impl FnMut(isize, usize, usize)) {
        for_each_run(
            &self.shape,
            &self.strides,
            [self.offset],
            start,
            end,
            |[o], pos, len| f(o, pos, len),
        )
    }

    /// Whether the source is one value per row of its innermost axis (stride
    /// 0 there; see `gather_row_broadcast`).
    fn row_broadcast(&self) -> bool {
        let nd = self.shape.len();
        nd >= 2 && self.strides[0][nd - 1] == 0
    }

    /// Whether the source is read across its memory order: the innermost
    /// axis strided and the next one contiguous (see `gather_transposed`).
    fn transposed(&self) -> bool {
        let (nd, strides) = (self.shape.len(), &self.strides[0]);
        nd >= 2 && strides[nd - 2] == 1 && strides[nd - 1].unsigned_abs() > 1
    }

    /// The element offset and stride of positions `start..start+n` when they
    /// form one run of this source.
    fn locate(&self, start: usize, n: usize) -> Option<(isize, isize)> {
        let last = self.shape.len() - 1;
        if start % self.shape[last] + n > self.shape[last] {
            return None;
        }
        let mut rem = start;
        let mut offset = self.offset;
        for d in (0..=last).rev() {
            offset += (rem % self.shape[d]) as isize * self.strides[0][d];
            rem /= self.shape[d];
        }
        Some((offset, self.strides[0][last]))
    }
}

/// An operand of a step for one piece.
#[derive(Clone, Copy)]
enum Arg {
    /// `n` elements of the register's dtype.
    Ptr(*const u8),
    /// One value (its bytes, in the low bytes) standing for every position.
    Splat(u64),
}

enum Operand<'a, T> {
    Slice(&'a [T]),
    Splat(T),
}

impl Arg {
    /// The operand typed as `T`.
    ///
    /// # Safety
    /// `T` must be the register's dtype (guaranteed by [`check`]) and a `Ptr`
    /// must point to `n` live elements.
    #[inline(always)]
    unsafe fn get<'a, T: Elem>(self, n: usize) -> Operand<'a, T> {
        match self {
            Arg::Ptr(p) => Operand::Slice(std::slice::from_raw_parts(p as *const T, n)),
            Arg::Splat(b) => Operand::Splat(std::ptr::read(&b as *const u64 as *const T)),
        }
    }
}

#[inline(always)]
fn unary<A: Copy, U: Copy>(out: &mut [U], a: Operand<A>, f: impl Fn(A) -> U) {
    match a {
        Operand::Slice(a) => out.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x)),
        Operand::Splat(x) => out.fill(f(x)),
    }
}

#[inline(always)]
fn binary<A: Copy, B: Copy, U: Copy>(
    out: &mut [U],
    a: Operand<A>,
    b: Operand<B>,
    f: impl Fn(A, B) -> U,
) {
    match (a, b) {
        (Operand::Slice(a), Operand::Slice(b)) => {
            let (a, b) = (&a[..out.len()], &b[..out.len()]);
            for i in 0..out.len() {
                out[i] = f(a[i], b[i]);
            }
        }
        (Operand::Slice(a), Operand::Splat(y)) => {
            out.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x, y))
        }
        (Operand::Splat(x), Operand::Slice(b)) => {
            out.iter_mut().zip(b).for_each(|(o, &y)| *o = f(x, y))
        }
        (Operand::Splat(x), Operand::Splat(y)) => out.fill(f(x, y)),
    }
}

#[inline(always)]
fn select<T: Copy>(out: &mut [T], c: Operand<u8>, a: Operand<T>, b: Operand<T>) {
    let n = out.len();
    match (c, a, b) {
        (Operand::Slice(c), Operand::Slice(a), Operand::Slice(b)) => {
            let (c, a, b) = (&c[..n], &a[..n], &b[..n]);
            for i in 0..n {
                out[i] = if c[i] != 0 { a[i] } else { b[i] };
            }
        }
        (c, a, b) => {
            let at = |o: &Operand<T>, i: usize| match o {
                Operand::Slice(s) => s[i],
                Operand::Splat(v) => *v,
            };
            for i in 0..n {
                let ci = match &c {
                    Operand::Slice(s) => s[i],
                    Operand::Splat(v) => *v,
                };
                out[i] = if ci != 0 { at(&a, i) } else { at(&b, i) };
            }
        }
    }
}

macro_rules! typed {
    ($dt:expr, [$($D:ident => $T:ty),*], $X:ident => $body:expr) => {
        match $dt {
            $(DType::$D => { type $X = $T; $body })*
            #[allow(unreachable_patterns)]
            other => unreachable!("dtype {other:?} passed the fused type check"),
        }
    };
}

/// Runs one step over `n` positions into `out`.
///
/// # Safety
/// `out` has room for `n` elements of the step's dtype; the args' dtypes are
/// those [`check`] accepted.
#[inline(always)]
unsafe fn apply(step: &Step, dts: &[DType], args: &[Arg], out: *mut u8, n: usize) {
    let a = |k: usize| args[step.operands[k]];
    let src_dt = |k: usize| dts[step.operands[k]];
    macro_rules! out {
        ($T:ty) => {
            std::slice::from_raw_parts_mut(out as *mut $T, n)
        };
    }
    let StepOp::Op(op) = step.op else {
        return with_any_dtype!(step.dtype, T => out!(T).fill(T::from_f64(match step.op { StepOp::Const(v) => v, _ => 0.0 })));
    };
    match op {
        Op::Neg => {
            typed!(step.dtype, [F32 => f32, F64 => f64, I32 => i32], T => unary(out!(T), a(0).get::<T>(n), |x: T| x.neg()))
        }
        Op::Recip => {
            typed!(step.dtype, [F32 => f32, F64 => f64], T => unary(out!(T), a(0).get::<T>(n), |x: T| 1.0 / x))
        }
        Op::Sqrt => {
            typed!(step.dtype, [F32 => f32, F64 => f64], T => unary(out!(T), a(0).get::<T>(n), |x: T| x.sqrt()))
        }
        Op::Exp2 => match step.dtype {
            DType::F32 => unary(out!(f32), a(0).get::<f32>(n), exp2_f32),
            _ => unary(out!(f64), a(0).get::<f64>(n), f64::exp2),
        },
        Op::Log2 => match step.dtype {
            DType::F32 => unary(out!(f32), a(0).get::<f32>(n), log2_f32),
            _ => unary(out!(f64), a(0).get::<f64>(n), f64::log2),
        },
        Op::Sin => match step.dtype {
            DType::F32 => {
                let o = out!(f32);
                let x = a(0).get::<f32>(n);
                unary(o, x, sin_f32);
                // Larger arguments (and NaN, inf) take their slower paths afterwards.
                match a(0).get::<f32>(n) {
                    Operand::Slice(x) => {
                        for (o, &x) in o.iter_mut().zip(x) {
                            if !(x.abs() <= SIN_F32_LIMIT) {
                                *o = sin_f32_any(x);
                            }
                        }
                    }
                    Operand::Splat(x) => {
                        if !(x.abs() <= SIN_F32_LIMIT) {
                            o.fill(sin_f32_any(x));
                        }
                    }
                }
            }
            _ => unary(out!(f64), a(0).get::<f64>(n), f64::sin),
        },
        Op::BitwiseNot => {
            typed!(step.dtype, [I32 => i32, Bool => u8], T => unary(out!(T), a(0).get::<T>(n), |x: T| x.not()))
        }
        Op::Cast => typed!(src_dt(0), [F32 => f32, F64 => f64, I32 => i32, Bool => u8], S =>
            typed!(step.dtype, [F32 => f32, F64 => f64, I32 => i32, Bool => u8], D =>
                unary(out!(D), a(0).get::<S>(n), |x: S| D::from_f64(x.to_f64())))),
        Op::Add => {
            typed!(step.dtype, [F32 => f32, F64 => f64, I32 => i32], T => binary(out!(T), a(0).get::<T>(n), a(1).get::<T>(n), |x: T, y: T| x.add(y)))
        }
        Op::Mul => {
            typed!(step.dtype, [F32 => f32, F64 => f64, I32 => i32], T => binary(out!(T), a(0).get::<T>(n), a(1).get::<T>(n), |x: T, y: T| x.mul(y)))
        }
        Op::Maximum => {
            typed!(step.dtype, [F32 => f32, F64 => f64, I32 => i32, Bool => u8], T => binary(out!(T), a(0).get::<T>(n), a(1).get::<T>(n), max_nan::<T>))
        }
        Op::Minimum => {
            typed!(step.dtype, [F32 => f32, F64 => f64, I32 => i32, Bool => u8], T => binary(out!(T), a(0).get::<T>(n), a(1).get::<T>(n), min_nan::<T>))
        }
        Op::Lt => {
            typed!(src_dt(0), [F32 => f32, F64 => f64, I32 => i32, Bool => u8], T => binary(out!(u8), a(0).get::<T>(n), a(1).get::<T>(n), |x: T, y: T| (x < y) as u8))
        }
        Op::Eq => {
            typed!(src_dt(0), [F32 => f32, F64 => f64, I32 => i32, Bool => u8], T => binary(out!(u8), a(0).get::<T>(n), a(1).get::<T>(n), |x: T, y: T| (x == y) as u8))
        }
        Op::BitwiseAnd => {
            typed!(step.dtype, [I32 => i32, Bool => u8], T => binary(out!(T), a(0).get::<T>(n), a(1).get::<T>(n), |x: T, y: T| x.and(y)))
        }
        Op::BitwiseOr => {
            typed!(step.dtype, [I32 => i32, Bool => u8], T => binary(out!(T), a(0).get::<T>(n), a(1).get::<T>(n), |x: T, y: T| x.or(y)))
        }
        Op::BitwiseXor => {
            typed!(step.dtype, [I32 => i32, Bool => u8], T => binary(out!(T), a(0).get::<T>(n), a(1).get::<T>(n), |x: T, y: T| x.xor(y)))
        }
        Op::Where => {
            typed!(step.dtype, [F32 => f32, F64 => f64, I32 => i32, Bool => u8], T => select(out!(T), a(0).get::<u8>(n), a(1).get::<T>(n), a(2).get::<T>(n)))
        }
        other => unreachable!("{} passed the fused type check", other.name()),
    }
}

/// Per-task scratch: the physical registers (slots) of [`Eval::slot_of`], each
/// `cap` 8-byte words.
struct Scratch {
    regs: Vec<u64>,
    /// Elements per slot.
    cap: usize,
    /// Words between slots: `cap` plus a skew, so that slots do not start a
    /// multiple of 4 KiB apart (loads and stores whose addresses agree in the
    /// low 12 bits stall each other).
    stride: usize,
    args: Vec<Arg>,
    /// The tile program for the last kind of piece (which registers were
    /// splats), with its slots, splat values and remainder tiles.
    tiles: Option<(Vec<bool>, TileProgram)>,
    tile_words: Vec<u64>,
    /// A boolean input's bytes for the piece, before the tile machine gets
    /// them as floats.
    bools: Vec<u8>,
}

thread_local! {
    /// The slot memory of the last kernel this thread ran, kept for the next:
    /// taking it costs no allocation and no zeroing (a slot is always written
    /// before it is read), which is most of a small kernel's fixed cost.
    static SPARE_REGS: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
}

/// Slot memory larger than this (in words) is not kept between kernels.
const SPARE_WORDS: usize = 1 << 17;

impl Scratch {
    fn new(eval: &Eval, cap: usize) -> Scratch {
        let stride = cap.next_multiple_of(8) + 24;
        // The tile machine keeps steps in registers: slots hold only gathered
        // inputs, which `assign_slots` numbers first.
        let slots = if eval.tiles {
            eval.walks.len()
        } else {
            eval.n_slots
        };
        // 8 spare words: slots start on a 64-byte boundary (a vector load
        // that straddles cache lines costs two).
        let words = slots.max(1) * stride + 8;
        let mut regs = SPARE_REGS.take();
        if regs.len() < words {
            regs = vec![0; words];
        }
        Scratch {
            tiles: None,
            tile_words: vec![],
            bools: vec![],
            regs,
            cap,
            stride,
            args: Vec::with_capacity(eval.dts.len()),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let regs = std::mem::take(&mut self.regs);
        if regs.len() <= SPARE_WORDS {
            SPARE_REGS.set(regs);
        }
    }
}

/// Bytes of slots a piece may use: they stay in L1 while every step runs.
const SLOT_BUDGET: usize = 16 << 10;

/// Positions per piece on the tile machine.
const TILE_PIECE: usize = 8192;
/// The most positions per piece on the chunked machine.
const MAX_PIECE: usize = 4096;

/// The evaluation context shared by every piece of one kernel.
struct Eval<'a> {
    expr: &'a Expr,
    dts: &'a [DType],
    walks: Vec<Walk<'a>>,
    /// The slot holding each register (see [`assign_slots`]).
    slot_of: Cow<'a, [usize]>,
    n_slots: usize,
    /// Positions per piece: as many as keep every slot within [`SLOT_BUDGET`].
    piece: usize,
    /// Shortest run among the sources: pieces that stay inside runs need no gathering.
    row: usize,
    /// Row length of a transposed source when a piece holds whole rows of it:
    /// pieces then end at row ends, so its rows are transposed whole.
    transposed_row: Option<usize>,
    /// Whether pieces run on the register-resident tile machine ([`tile`]).
    tiles: bool,
    /// Whether the tile machine writes its output with non-temporal stores
    /// (set by [`map`] for outputs of at least [`STREAM_BYTES`]).
    stream: bool,
}

impl<'a> Eval<'a> {
    fn new(expr: &'a Expr, dts: &'a [DType], walks: Vec<Walk<'a>>) -> Eval<'a> {
        let n_in = walks.len();
        let slots = match expr.slots.get_or_init(|| assign_slots(expr, n_in)) {
            cached if cached.n_in == n_in => Cow::Borrowed(cached),
            _ => Cow::Owned(assign_slots(expr, n_in)),
        };
        let n_slots = slots.count;
        // Tiles need vector registers as values: x86-64 with AVX2 or AVX-512.
        // Small kernels skip them: lowering costs more than it saves there.
        let positions: usize = walks.first().map_or(0, |w| w.shape.iter().product());
        let tiles = positions >= TILE_PIECE / 2
            && cfg!(target_arch = "x86_64")
            && matches!(simd::level(), Level::Avx512 | Level::Avx2)
            && tile::supported(expr, dts, n_in);
        // Tiles keep steps in registers: slots only hold gathered inputs, so
        // pieces can be long (fewer per-piece setups).
        let piece = if tiles {
            TILE_PIECE
        } else {
            (SLOT_BUDGET / (n_slots.max(1) * 8)).clamp(256, MAX_PIECE) / 64 * 64
        };
        // A transposed source is gathered in any case, and faster across
        // rows (`gather_transposed`), and a repeating one is read in place
        // anywhere: neither cuts pieces.
        let row = walks
            .iter()
            .filter(|w| !w.transposed() && w.pattern.is_none())
            .map(|w| w.run_len())
            .min()
            .unwrap_or(usize::MAX);
        let transposed_row = walks
            .iter()
            .filter(|w| w.transposed())
            .map(|w| w.run_len())
            .find(|&r| r <= piece);
        Eval {
            expr,
            dts,
            tiles,
            stream: false,
            walks,
            slot_of: match slots {
                Cow::Borrowed(s) => Cow::Borrowed(&s.slot_of[..]),
                Cow::Owned(s) => Cow::Owned(s.slot_of),
            },
            n_slots,
            piece,
            row,
            transposed_row,
        }
    }
}

/// Gives each register that a piece stores a slot: registers whose live
/// ranges do not overlap share one, so a long chain ping-pongs between two or
/// three slots. Sources get one too, used only when a source must be gathered.
fn assign_slots(expr: &Expr, n_in: usize) -> Slots {
    let steps = &expr.steps;
    let n_regs = n_in + steps.len();
    let mut last_use = vec![0usize; n_regs];
    for (j, step) in steps.iter().enumerate() {
        for &o in &step.operands {
            last_use[o] = j;
        }
    }
    let mut slot_of = vec![usize::MAX; n_regs];
    let mut free: Vec<usize> = vec![];
    let mut count = 0;
    let mut take = |free: &mut Vec<usize>| {
        free.pop().unwrap_or_else(|| {
            count += 1;
            count - 1
        })
    };
    for slot in slot_of.iter_mut().take(n_in) {
        *slot = take(&mut free);
    }
    for (j, step) in steps.iter().enumerate() {
        let r = n_in + j;
        if j + 1 < steps.len() && !matches!(step.op, StepOp::Const(_)) {
            slot_of[r] = take(&mut free);
        }
        // Operands are freed after the result's slot is taken: a step never
        // writes the slot it reads.
        for (k, &o) in step.operands.iter().enumerate() {
            if last_use[o] == j && slot_of[o] != usize::MAX && !step.operands[..k].contains(&o) {
                free.push(slot_of[o]);
            }
        }
    }
    Slots {
        n_in,
        slot_of,
        count,
    }
}

impl Eval<'_> {
    /// Evaluates positions `start..start+n` (n <= the scratch's capacity) of the iteration order
    /// into `dst`, which has room for `n` elements of the root's dtype, with the
    /// step loops compiled for the SIMD level in use.
    ///
    /// # Safety
    /// `dst` must be valid for `n` elements of the last register's dtype and not
    /// alias `scratch`.
    unsafe fn piece(&self, scratch: &mut Scratch, start: usize, n: usize, dst: *mut u8) {
        if self.tiles {
            dispatch!(self.locate_inputs(scratch, start, n));
            self.tile_piece(scratch, n, dst);
        } else {
            dispatch!(self.piece_body(scratch, start, n, dst))
        }
    }

    /// The body of [`Eval::piece`], inlined into one copy per SIMD level.
    #[inline(always)]
    unsafe fn piece_body(&self, scratch: &mut Scratch, start: usize, n: usize, dst: *mut u8) {
        self.locate_inputs(scratch, start, n);
        let regs = scratch.regs.as_mut_ptr();
        let regs = regs.add(regs.align_offset(64));
        let stride = scratch.stride;
        let args = &mut scratch.args;
        let n_in = self.walks.len();
        let last = self.expr.steps.len() - 1;
        for (j, step) in self.expr.steps.iter().enumerate() {
            let all_splat = step
                .operands
                .iter()
                .all(|&o| matches!(args[o], Arg::Splat(_)));
            if all_splat && j != last {
                // Constants and steps of broadcast scalars: computed once.
                let mut one = 0u64;
                apply(step, self.dts, args, &mut one as *mut u64 as *mut u8, 1);
                args.push(Arg::Splat(one));
            } else {
                let out = if j == last {
                    dst
                } else {
                    regs.add(self.slot_of[n_in + j] * stride) as *mut u8
                };
                apply(step, self.dts, args, out, n);
                args.push(Arg::Ptr(out));
            }
        }
    }

    /// Puts every input's operand for positions `start..start+n` in
    /// `scratch.args`: in place, a splat, or gathered into its slot.
    #[inline(always)]
    unsafe fn locate_inputs(&self, scratch: &mut Scratch, start: usize, n: usize) {
        debug_assert!(n <= scratch.cap);
        let stride = scratch.stride;
        let regs = scratch.regs.as_mut_ptr();
        let regs = regs.add(regs.align_offset(64));
        let args = &mut scratch.args;
        args.clear();
        for (k, w) in self.walks.iter().enumerate() {
            let reg = regs.add(self.slot_of[k] * stride) as *mut u8;
            let located = w.locate(start, n);
            let arg = match located {
                Some((o, 0)) => {
                    let o = o as usize * w.size;
                    let mut b = 0u64;
                    let value = &w.bytes[o..o + w.size];
                    std::ptr::copy_nonoverlapping(
                        value.as_ptr(),
                        &mut b as *mut u64 as *mut u8,
                        w.size,
                    );
                    Arg::Splat(b)
                }
                // The tile machine reads a boolean input as 0 and 1 of its
                // float dtype, converted here into the input's slot.
                _ if self.tiles && w.dtype == DType::Bool => {
                    let bytes = match located {
                        Some((o, 1)) => &w.bytes[o as usize..o as usize + n],
                        _ => {
                            scratch.bools.resize(n, 0);
                            gather(w, located, start, &mut scratch.bools[..n]);
                            &scratch.bools[..n]
                        }
                    };
                    match self.dts[self.dts.len() - 1] {
                        DType::F32 => bools_as_floats(
                            bytes,
                            std::slice::from_raw_parts_mut(reg as *mut f32, n),
                        ),
                        _ => bools_as_floats(
                            bytes,
                            std::slice::from_raw_parts_mut(reg as *mut f64, n),
                        ),
                    }
                    Arg::Ptr(reg)
                }
                Some((o, 1)) => {
                    Arg::Ptr(w.bytes[o as usize * w.size..(o as usize + n) * w.size].as_ptr())
                }
                _ => match w.pattern.as_ref().and_then(|p| p.at(start, n, w.size)) {
                    Some(in_place) => Arg::Ptr(in_place),
                    None => {
                        with_any_dtype!(w.dtype, T => {
                            gather(w, located, start, std::slice::from_raw_parts_mut(reg as *mut T, n))
                        });
                        Arg::Ptr(reg)
                    }
                },
            };
            args.push(arg);
        }
    }

    /// The steps of a piece whose inputs are in `scratch.args`, on the tile
    /// machine: steps of splats once, the rest tile by tile.
    unsafe fn tile_piece(&self, scratch: &mut Scratch, n: usize, dst: *mut u8) {
        let n_in = self.walks.len();
        let last = self.expr.steps.len() - 1;
        let args = &mut scratch.args;
        for (j, step) in self.expr.steps.iter().enumerate() {
            // A constant root is a splat too: its tile is that value.
            let once = j != last || matches!(step.op, StepOp::Const(_));
            if once
                && step
                    .operands
                    .iter()
                    .all(|&o| matches!(args[o], Arg::Splat(_)))
            {
                let mut one = 0u64;
                apply(step, self.dts, args, &mut one as *mut u64 as *mut u8, 1);
                args.push(Arg::Splat(one));
            } else {
                args.push(Arg::Ptr(std::ptr::null()));
            }
        }
        let same = scratch.tiles.as_ref().is_some_and(|(s, _)| {
            s.len() == args.len()
                && s.iter()
                    .zip(args.iter())
                    .all(|(&s, a)| s == matches!(a, Arg::Splat(_)))
        });
        if !same {
            let splat: Vec<bool> = args.iter().map(|a| matches!(a, Arg::Splat(_))).collect();
            let program = TileProgram::new(self.expr, n_in, &splat);
            // Splat values, slots and remainder tiles (inputs and output), in words.
            let words = args.len() + (program.n_slots + n_in + 1) * MAX_TILE + 8;
            scratch.tile_words.resize(words, 0);
            scratch.tiles = Some((splat, program));
        }
        #[cfg(target_arch = "x86_64")]
        match (simd::level(), self.dts[self.dts.len() - 1]) {
            (Level::Avx512, DType::F32) => simd::avx512(
                #[inline(always)]
                || self.run_tiles::<f32, Avx512F32>(scratch, n, dst as *mut f32),
            ),
            (Level::Avx512, _) => simd::avx512(
                #[inline(always)]
                || self.run_tiles::<f64, Avx512F64>(scratch, n, dst as *mut f64),
            ),
            (_, DType::F32) => simd::avx2(
                #[inline(always)]
                || self.run_tiles::<f32, Avx2F32>(scratch, n, dst as *mut f32),
            ),
            _ => simd::avx2(
                #[inline(always)]
                || self.run_tiles::<f64, Avx2F64>(scratch, n, dst as *mut f64),
            ),
        }
    }

    /// Runs the tile program over the piece's `n` positions into `dst`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn run_tiles<T: Num, V: Vector<T>>(&self, scratch: &mut Scratch, n: usize, dst: *mut T) {
        let program = &scratch.tiles.as_ref().unwrap().1;
        let args = &scratch.args;
        let n_regs = args.len();
        let words = scratch.tile_words.as_mut_ptr();
        let words = words.add(words.align_offset(64));
        let (splat_words, rest) = (words, words.add(n_regs.next_multiple_of(8)));
        let splats = std::slice::from_raw_parts_mut(splat_words as *mut T, n_regs);
        for (r, a) in args.iter().enumerate() {
            if let Arg::Splat(bits) = *a {
                splats[r] = if self.dts[r] == DType::Bool {
                    T::from_f64(if bits as u8 != 0 { 1.0 } else { 0.0 })
                } else {
                    std::ptr::read(&bits as *const u64 as *const T)
                };
            }
        }
        let slots = std::slice::from_raw_parts_mut(rest as *mut [V; tile::K], program.n_slots);
        let pads = rest.add(program.n_slots * MAX_TILE) as *mut T;
        macro_rules! input {
            ($r:expr) => {
                match args[$r] {
                    Arg::Ptr(p) => p as *const T,
                    Arg::Splat(_) => std::ptr::null(),
                }
            };
        }
        let w = tile::K * V::LANES;
        // Streamed stores need `dst` aligned to the vector: positions before
        // the first aligned one go through the partial-tile path.
        let head = if self.stream {
            dst.align_offset(V::LANES * std::mem::size_of::<T>()).min(n)
        } else {
            0
        };
        let full = head + (n - head) / w * w;
        // Positions `start..start + len` (len < w), with inputs copied into whole tiles.
        macro_rules! partial {
            ($start:expr, $len:expr) => {{
                let (start, len) = ($start, $len);
                for r in 0..self.walks.len() {
                    let p = input!(r);
                    if !p.is_null() {
                        std::ptr::copy_nonoverlapping(p.add(start), pads.add(r * MAX_TILE), len);
                    }
                }
                let v = program.tile::<T, V>(
                    #[inline(always)]
                    |r| pads.add(r * MAX_TILE),
                    splats,
                    slots,
                );
                let out = pads.add(self.walks.len() * MAX_TILE);
                for (k, v) in v.iter().enumerate() {
                    v.store(out.add(k * V::LANES));
                }
                std::ptr::copy_nonoverlapping(out, dst.add(start), len);
            }};
        }
        if head > 0 {
            partial!(0, head);
        }
        for base in (head..full).step_by(w) {
            let v = program.tile::<T, V>(
                #[inline(always)]
                |r| input!(r).add(base),
                splats,
                slots,
            );
            let p = dst.add(base);
            if self.stream {
                for (k, v) in v.iter().enumerate() {
                    v.stream(p.add(k * V::LANES));
                }
            } else {
                for (k, v) in v.iter().enumerate() {
                    v.store(p.add(k * V::LANES));
                }
            }
        }
        if full < n {
            partial!(full, n - full);
        }
    }

    /// Whether pieces end where the shortest source run ends: only when a run
    /// holds a whole piece (each source is then read in place, a broadcast
    /// one as a splat, at the cost of at most one short piece per run).
    /// Shorter runs are gathered, several to a piece: pieces cut at runs of
    /// 100 (a row-wise broadcast over [160000, 100]) made `exp(x - m)` 2-3x
    /// slower than gathering the runs.
    fn cuts_at_rows(&self) -> bool {
        self.row >= self.piece
    }

    /// End of the piece that starts at `start` and may extend to `end`.
    fn piece_end(&self, start: usize, end: usize) -> usize {
        let mut stop = (start + self.piece).min(end);
        if self.cuts_at_rows() {
            stop = stop.min((start / self.row + 1) * self.row);
        }
        if let Some(r) = self.transposed_row {
            stop = stop.min((start / r + self.piece / r) * r);
        }
        stop
    }
}

/// Evaluates `expr` over `shape` into the contiguous `out`. Every source's layout
/// has `shape`.
pub fn map<T: Elem>(out: &mut [T], shape: &[usize], expr: &Expr, dts: &[DType], srcs: &[RawSrc]) {
    debug_assert_eq!(dts[dts.len() - 1], T::DTYPE);
    let mut eval = Eval::new(
        expr,
        dts,
        srcs.iter().map(|s| Walk::new(s, s.layout)).collect(),
    );
    let total = numel(shape);
    debug_assert_eq!(out.len(), total);
    eval.stream = eval.tiles && std::mem::size_of_val(out) >= STREAM_BYTES;
    super::par_chunks(out, |chunk, first| {
        let mut scratch = Scratch::new(&eval, eval.piece.min(chunk.len()).max(1));
        map_chunk(&eval, &mut scratch, chunk, first);
        if eval.stream {
            simd::store_fence();
        }
    });
}

/// Whether a large kernel should read a source from a contiguous copy made
/// by square blocks ([`super::elementwise::copy`]) rather than gather it piece
/// by piece: a transposed source (see [`gather_transposed`]) with rows so long
/// that a piece holds fewer than 16 of them fetches each of its cache lines
/// (and pages) once per piece for a few values (`x.transpose(0, 1).mul(2)`
/// over 4096²: 4-5 GB/s).
pub fn reads_better_copied(layout: &Layout) -> bool {
    // Size first: collapsing allocates, and a tiny realize counts allocations.
    if layout.numel() < COPIED_POSITIONS {
        return false;
    }
    let (shape, [strides]) = collapse(&layout.shape, [&layout.strides]);
    let nd = shape.len();
    nd >= 2
        && strides[nd - 2] == 1
        && strides[nd - 1].unsigned_abs() > 1
        && shape[nd - 1] > TILE_PIECE / 16
}

/// Transposed sources with fewer positions are gathered piece by piece (see
/// [`reads_better_copied`]).
const COPIED_POSITIONS: usize = 1 << 20;

fn map_chunk<T: Elem>(eval: &Eval, scratch: &mut Scratch, chunk: &mut [T], first: usize) {
    let end = first + chunk.len();
    let mut start = first;
    while start < end {
        let stop = eval.piece_end(start, end);
        let dst = chunk[start - first..stop - first].as_mut_ptr() as *mut u8;
        // SAFETY: `dst` holds `stop - start` elements of the root dtype `T`, outside the scratch.
        unsafe { eval.piece(scratch, start, stop - start, dst) };
        start = stop;
    }
}

/// Reduces `expr` (evaluated over `shape`, the shape of every source) over
/// `axes` with `fold`, writing one value per output position. Each output folds
/// its positions in fixed blocks of [`BLOCK`] merged in order, as the plain
/// reduction does, so results do not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn reduce<T: Elem, F: Fold<T>>(
    out: &mut [T],
    shape: &[usize],
    axes: &[usize],
    expr: &Expr,
    dts: &[DType],
    srcs: &[RawSrc],
    fold: &F,
) {
    let nd = shape.len();
    let keep: Vec<usize> = (0..nd).filter(|d| !axes.contains(d)).collect();
    let r: usize = axes.iter().map(|&d| shape[d]).product();
    // A kept innermost axis that some source walks with stride 1: fold whole
    // rows of positions into a row of accumulators (a sum over axis 0), so reads
    // stay contiguous.
    let columns = !axes.is_empty()
        && keep.last() == Some(&(nd - 1))
        && shape[nd - 1] >= 16
        && srcs.iter().any(|s| s.layout.strides[nd - 1] == 1);
    let order: Vec<usize> = if columns {
        keep[..keep.len() - 1]
            .iter()
            .chain(axes)
            .chain([nd - 1].iter())
            .copied()
            .collect()
    } else {
        keep.iter().chain(axes).copied().collect()
    };
    let walks = srcs
        .iter()
        .map(|s| Walk::new(s, &s.layout.permute(&order)))
        .collect();
    let eval = Eval::new(expr, dts, walks);
    if columns {
        reduce_columns(out, &eval, r, shape[nd - 1], fold);
    } else {
        reduce_rows(out, &eval, r, fold);
    }
}

/// Folds positions `start..end` (one output's block) from `fold.init()`.
fn fold_range<T: Elem, F: Fold<T>>(
    eval: &Eval,
    scratch: &mut Scratch,
    buf: &mut [T],
    start: usize,
    end: usize,
    fold: &F,
) -> F::Acc {
    let mut acc = fold.init();
    let mut pos = start;
    while pos < end {
        let stop = eval.piece_end(pos, end);
        let n = stop - pos;
        // SAFETY: `buf` holds at least n elements of the root dtype and is not the scratch.
        unsafe { eval.piece(scratch, pos, n, buf.as_mut_ptr() as *mut u8) };
        let piece = &buf[..n];
        acc = dispatch!(fold.fold_slice(acc, piece));
        pos = stop;
    }
    acc
}

/// One output's value: its `r` positions from `base`, block by block.
fn fold_output<T: Elem, F: Fold<T>>(
    eval: &Eval,
    scratch: &mut Scratch,
    buf: &mut [T],
    base: usize,
    r: usize,
    fold: &F,
) -> T {
    let mut acc = fold.init();
    let mut start = 0;
    while start < r {
        let end = (start + BLOCK).min(r);
        acc = fold.merge(
            acc,
            fold_range(eval, scratch, buf, base + start, base + end, fold),
        );
        start = end;
    }
    fold.finish(acc)
}

fn reduce_rows<T: Elem, F: Fold<T>>(out: &mut [T], eval: &Eval, r: usize, fold: &F) {
    let n_out = out.len();
    let cap = eval.piece.min(r.max(1));
    if n_out < num_threads() && r >= 2 * PARALLEL_THRESHOLD {
        // Few long rows: the blocks of each row in parallel, merged in order.
        for (o, v) in out.iter_mut().enumerate() {
            let partials: Vec<F::Acc> = (0..r.div_ceil(BLOCK))
                .into_par_iter()
                .map(|b| {
                    let mut scratch = Scratch::new(eval, cap);
                    let mut buf = vec![T::default(); cap];
                    let (start, end) = (
                        o * r + b * BLOCK,
                        (o * r + (b + 1) * BLOCK).min((o + 1) * r),
                    );
                    fold_range(eval, &mut scratch, &mut buf, start, end, fold)
                })
                .collect();
            *v = fold.finish(
                partials
                    .into_iter()
                    .fold(fold.init(), |a, b| fold.merge(a, b)),
            );
        }
        return;
    }
    // Many rows: split the outputs so each task has at least the threshold's work.
    let per_task = if n_out * r < PARALLEL_THRESHOLD {
        n_out.max(1)
    } else {
        chunk_len(n_out)
            .min(PARALLEL_THRESHOLD.div_ceil(r.max(1)))
            .max(n_out.div_ceil(num_threads() * 4))
            .max(1)
    };
    // Rows shorter than half a piece are evaluated several at a time (one
    // piece per row cost 18 ns for a row of 2).
    let rows_per_piece = eval.piece.checked_div(r).unwrap_or(0);
    let body = |chunk: &mut [T], first: usize| {
        if rows_per_piece >= 2 {
            let mut scratch = Scratch::new(eval, eval.piece);
            let mut buf = vec![T::default(); rows_per_piece * r];
            return short_rows_chunk(eval, &mut scratch, &mut buf, chunk, first, r, fold);
        }
        let mut scratch = Scratch::new(eval, cap);
        let mut buf = vec![T::default(); cap];
        rows_chunk(eval, &mut scratch, &mut buf, chunk, first, r, fold);
    };
    if per_task >= n_out {
        body(out, 0);
    } else {
        out.par_chunks_mut(per_task)
            .enumerate()
            .for_each(|(i, c)| body(c, i * per_task));
    }
}

fn rows_chunk<T: Elem, F: Fold<T>>(
    eval: &Eval,
    scratch: &mut Scratch,
    buf: &mut [T],
    chunk: &mut [T],
    first: usize,
    r: usize,
    fold: &F,
) {
    for (i, v) in chunk.iter_mut().enumerate() {
        *v = fold_output(eval, scratch, buf, (first + i) * r, r, fold);
    }
}

/// [`rows_chunk`] for rows of `r` positions that fit a piece several times:
/// the positions of as many whole rows as `buf` holds are evaluated together
/// (as [`map`] evaluates them), then folded a row at a time
/// ([`Fold::fold_rows`]), so each output's value is the same bits. No piece
/// of [`fold_range`] would have ended inside such a row (`piece_end`): a
/// piece is at least two rows; a run that ends pieces is at least a piece
/// (`cuts_at_rows`), so it spans trailing axes of whole rows (a multiple of
/// `r`); a transposed source's rows of `t` (at most a piece) end a piece past
/// the row when `t <= r`, and at a multiple of `t`, so of `r`, when `t > r`.
fn short_rows_chunk<T: Elem, F: Fold<T>>(
    eval: &Eval,
    scratch: &mut Scratch,
    buf: &mut [T],
    chunk: &mut [T],
    first: usize,
    r: usize,
    fold: &F,
) {
    let rows_per_piece = buf.len() / r;
    for (g, outputs) in chunk.chunks_mut(rows_per_piece).enumerate() {
        let start = (first + g * rows_per_piece) * r;
        let values = &mut buf[..outputs.len() * r];
        map_chunk(eval, scratch, values, start);
        dispatch!(fold.fold_rows(values, r, outputs));
    }
}

/// Iteration order (outer kept axes, reduced axes, last axis): output `p·c + j`
/// folds positions `(p·r + k)·c + j` for k in 0..r.
fn reduce_columns<T: Elem, F: Fold<T>>(out: &mut [T], eval: &Eval, r: usize, c: usize, fold: &F) {
    let p = out.len() / c;
    let width = eval.piece;
    let blocks = c.div_ceil(width);
    let shared = SharedOut::new(out);
    let work = |item: usize| {
        let (pi, b) = (item / blocks, item % blocks);
        let (j0, j1) = (b * width, ((b + 1) * width).min(c));
        let mut scratch = Scratch::new(eval, width);
        let mut buf = vec![T::default(); width];
        let dst = shared.slice_mut(pi * c + j0, j1 - j0);
        columns_block(
            eval,
            &mut scratch,
            &mut buf,
            dst,
            (pi * r) * c + j0,
            r,
            c,
            fold,
        );
    };
    if p * c * r < PARALLEL_THRESHOLD {
        (0..p * blocks).for_each(work);
    } else {
        (0..p * blocks).into_par_iter().for_each(work);
    }
}

#[allow(clippy::too_many_arguments)]
fn columns_block<T: Elem, F: Fold<T>>(
    eval: &Eval,
    scratch: &mut Scratch,
    buf: &mut [T],
    dst: &mut [T],
    base: usize,
    r: usize,
    c: usize,
    fold: &F,
) {
    let n = dst.len();
    let mut acc = vec![fold.init(); n];
    let mut part = vec![fold.init(); n];
    let mut start = 0;
    while start < r {
        let end = (start + BLOCK).min(r);
        part.iter_mut().for_each(|p| *p = fold.init());
        for k in start..end {
            // SAFETY: `buf` holds at least n elements of the root dtype.
            unsafe { eval.piece(scratch, base + k * c, n, buf.as_mut_ptr() as *mut u8) };
            let row = &buf[..n];
            dispatch!(step_columns(&mut part, row, fold));
        }
        for (a, &p) in acc.iter_mut().zip(&part) {
            *a = fold.merge(*a, p);
        }
        start = end;
    }
    for (d, &a) in dst.iter_mut().zip(&acc) {
        *d = fold.finish(a);
    }
}

/// A matmul with its elementwise consumers fused in (an epilogue such as a bias
/// add and an activation): register 0 of `expr` is the product, registers 1..
/// are `others`, each of the output's shape. The product is computed block by
/// block of rows and each block is consumed while it is in cache, so it never
/// reaches memory.
pub fn matmul_epilogue<T: GemmElem + Elem, U: Elem>(
    out: &mut [U],
    a: Src<T>,
    b: Src<T>,
    expr: &Expr,
    dts: &[DType],
    others: &[RawSrc],
) {
    let total = out.len();
    let shared = SharedOut::new(out);
    let operands: Vec<Walk> = others.iter().map(|s| Walk::new(s, s.layout)).collect();
    matmul_blocks(a, b, |position, tile: &[T]| {
        // SAFETY: a slice of plain numbers viewed as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(tile.as_ptr() as *const u8, std::mem::size_of_val(tile))
        };
        // The tile stands for positions `position..position + tile.len()` of the output.
        let product = Walk {
            bytes,
            size: T::DTYPE.size(),
            dtype: T::DTYPE,
            shape: vec![total],
            strides: [vec![1]],
            offset: -(position as isize),
            blocks: None,
            pattern: None,
        };
        let mut walks = vec![product];
        walks.extend(operands.iter().cloned());
        let eval = Eval::new(expr, dts, walks);
        let mut scratch = Scratch::new(&eval, eval.piece.min(tile.len()).max(1));
        let dst = shared.slice_mut(position, tile.len());
        map_chunk(&eval, &mut scratch, dst, position);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reduce::{Max, Sum};
    use crate::program::{Expr, Step, StepOp};

    /// Rows evaluated several at a time fold to the bits of rows evaluated one
    /// at a time: `x * y` reduced over rows of `r`, where `y` is read in runs
    /// shorter than a row (every other element of a wider buffer), `x` is
    /// read transposed, or both sources are contiguous.
    #[test]
    fn short_rows_fold_as_rows_one_at_a_time() {
        let mut checked = 0;
        // (rows, r, y strided, x transposed); r is even: [rows, 2, r / 2].
        for (rows, r, strided, transposed) in [
            (300, 2, false, false),
            (500, 10, false, false),
            (40, 200, true, false),
            (7, 3000, false, true),
            (50, 300, true, true),
        ] {
            let n = rows * r;
            // Every 7th value ±2^60 (cancelling as the sum goes), the others
            // small: which big values meet first decides what the float64
            // sum keeps of the small ones, so the order of a row's parts
            // shows in the bits.
            let value = |i: usize| match i % 7 {
                0 => 2f32.powi(60) * if i.is_multiple_of(2) { 1.0 } else { -1.0 },
                _ => ((i * 7919 % 1009) as f32 - 504.0) * 0.37,
            };
            let x: Vec<f32> = (0..n).map(value).collect();
            let y: Vec<f32> = (0..n + 2 * rows).map(|i| 1.0 + (i % 3) as f32).collect();
            // Strided: rows of r = 2·h read from [rows, 2, h + 1], runs of h.
            let y_layout = match strided {
                true => Layout::contiguous(&[rows, 2, r / 2 + 1]).slice(
                    &[0, 0, 0],
                    &[1, 1, 1],
                    &[rows, 2, r / 2],
                ),
                false => Layout::contiguous(&[rows, 2, r / 2]),
            };
            let x_layout = Layout {
                shape: y_layout.shape.clone(),
                strides: match transposed {
                    true => vec![r as isize, 1, 2],
                    false => vec![r as isize, (r / 2) as isize, 1],
                },
                offset: 0,
            };
            let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|f| f.to_ne_bytes()).collect() };
            let (xb, yb) = (bytes(&x), bytes(&y));
            let srcs = [
                RawSrc {
                    bytes: &xb,
                    dtype: DType::F32,
                    layout: &x_layout,
                },
                RawSrc {
                    bytes: &yb,
                    dtype: DType::F32,
                    layout: &y_layout,
                },
            ];
            let expr = Expr {
                steps: vec![Step {
                    op: StepOp::Op(Op::Mul),
                    dtype: DType::F32,
                    operands: vec![0, 1],
                }],
                slots: Default::default(),
                types: Default::default(),
            };
            let dts = [DType::F32; 3];
            let eval = Eval::new(
                &expr,
                &dts,
                srcs.iter().map(|s| Walk::new(s, s.layout)).collect(),
            );
            if eval.piece / r < 2 {
                continue; // one row at a time (the chunked machine's pieces are shorter)
            }
            checked += 1;
            fn both<F: Fold<f32>>(eval: &Eval, r: usize, rows: usize, fold: &F) -> [Vec<f32>; 2] {
                let cap = eval.piece.min(r);
                let mut one = vec![0f32; rows];
                rows_chunk(
                    eval,
                    &mut Scratch::new(eval, cap),
                    &mut vec![0f32; cap],
                    &mut one,
                    0,
                    r,
                    fold,
                );
                let mut many = vec![0f32; rows];
                let mut buf = vec![0f32; eval.piece / r * r];
                short_rows_chunk(
                    eval,
                    &mut Scratch::new(eval, eval.piece),
                    &mut buf,
                    &mut many,
                    0,
                    r,
                    fold,
                );
                [one, many]
            }
            for [one, many] in [both(&eval, r, rows, &Sum), both(&eval, r, rows, &Max)] {
                for (i, (a, b)) in one.iter().zip(&many).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "rows of {r}, output {i}: {a} vs {b}"
                    );
                }
            }
        }
        assert!(checked >= 3, "rows several to a piece were checked");
    }

    /// Every position's offset through a block table, against the run walker.
    #[test]
    fn block_tables_give_the_offsets_of_the_run_walker() {
        let cases: [(&[usize], &[isize]); 7] = [
            // A pooling window's gradient: [64, 16, 14, 2, 14, 2] broadcast from [64, 16, 14, 1, 14, 1].
            (&[64, 16, 14, 2, 14, 2], &[3136, 196, 14, 0, 1, 0]),
            // Collapsed as `Walk::new` gives it, and a 3x3 window's.
            (&[14336, 2, 14, 2], &[14, 0, 1, 0]),
            (&[50, 3, 5, 3], &[5, 0, 1, 0]),
            (&[3, 5, 2], &[-10, 2, 1]),
            (&[7, 3, 3], &[1, 0, 7]),
            (&[2, 9, 4, 3], &[500, 3, 100, 30]),
            (&[1000, 3], &[3, 1]),
        ];
        for (shape, strides) in cases {
            let blocks = Blocks::new(shape, strides).expect("short runs get a table");
            assert!(blocks.table.len() <= BLOCK_TABLE);
            let total: usize = shape.iter().product();
            let mut want = vec![0isize; total];
            let strides_k = [strides.to_vec()];
            for_each_run(shape, &strides_k, [40], 0, total, |[o], pos, len| {
                for i in 0..len {
                    want[pos + i] = o + i as isize * strides[strides.len() - 1];
                }
            });
            // Each element holds its own offset, so a gather returns offsets.
            let data: Vec<i64> = (0..=*want.iter().max().unwrap() as i64).collect();
            for (start, end) in [
                (0, total),
                (1, total - 1),
                (total / 3, total / 3 + 5),
                (5, 6),
                (7, 7),
            ] {
                let mut got = vec![-1i64; end - start];
                // SAFETY: `data` holds every offset the layout reaches.
                unsafe { blocks.gather(&data, 40, start, &mut got) };
                let expected: Vec<i64> = want[start..end].iter().map(|&o| o as i64).collect();
                assert_eq!(got, expected, "{shape:?} {strides:?} {start}..{end}");
                // 4-byte elements go by windows where the table has them, from
                // data that ends at the layout's last element.
                let data32: Vec<i32> = data.iter().map(|&o| o as i32).collect();
                let mut got32 = vec![-1i32; end - start];
                // SAFETY: as above.
                unsafe { blocks.gather(&data32, 40, start, &mut got32) };
                let got32: Vec<i64> = got32.iter().map(|&o| o as i64).collect();
                assert_eq!(
                    got32, expected,
                    "{shape:?} {strides:?} {start}..{end} (32-bit)"
                );
            }
        }
        // Windows where every 16 positions read within 16 elements.
        assert_eq!(
            Blocks::new(&[14336, 2, 14, 2], &[14, 0, 1, 0])
                .unwrap()
                .windows
                .len(),
            4
        );
        assert!(Blocks::new(&[2, 9, 4, 3], &[500, 3, 100, 30])
            .unwrap()
            .windows
            .is_empty());
        // Long runs, or one short axis alone, keep the run walker.
        assert!(Blocks::new(&[100, 64], &[64, 1]).is_none());
        assert!(Blocks::new(&[3], &[1]).is_none());
    }
}
