//! Reductions over a set of axes. The output keeps reduced axes as size 1.
//!
//! Each output element folds its inputs in fixed blocks of [`BLOCK`] positions and
//! merges the block results in order, so the result does not depend on the
//! thread count: threads split the outputs, or the blocks of one long row.

use super::Src;
use crate::dtype::{max_nan, min_nan, Elem, Num};
use crate::layout::{collapse, for_each_run, numel, Layout};
use crate::pool::{num_threads, PARALLEL_THRESHOLD};
use rayon::prelude::*;

/// Positions folded serially before merging; fixed so results are reproducible.
pub const BLOCK: usize = 1 << 15;

/// How to fold values of type `T`: statically dispatched so the per-element
/// step inlines into the kernel loops.
pub trait Fold<T: Copy>: Sync {
    type Acc: Copy + Send + Sync;
    fn init(&self) -> Self::Acc;
    fn step(&self, acc: Self::Acc, x: T) -> Self::Acc;
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    fn finish(&self, acc: Self::Acc) -> T;
    /// Folds a contiguous run; sums, maxima and minima override it with
    /// independent lanes.
    #[inline(always)]
    fn fold_slice(&self, acc: Self::Acc, xs: &[T]) -> Self::Acc {
        xs.iter().fold(acc, |a, &x| self.step(a, x))
    }
    /// `outputs[i]` = row `i` of `values` (rows of `r` contiguous values)
    /// folded as `reduce` folds a row of at most [`BLOCK`] values. Float32
    /// sums, maxima and minima of short rows override it (see [`fold_rows_f32`]).
    #[inline(always)]
    fn fold_rows(&self, values: &[T], r: usize, outputs: &mut [T]) {
        fold_rows_one_by_one(self, values, r, outputs)
    }
    /// Whether [`Fold::scan_slice`] is faster than stepping element by element.
    fn vector_scan(&self) -> bool {
        false
    }
    /// Scans a contiguous run forward from `acc` into `out`; returns the final
    /// accumulator. Sums of float32 override it with vector prefix sums.
    /// `stream`: `out` is part of an output too large for the caches, so it may
    /// be written with non-temporal stores (the caller fences them).
    #[inline(always)]
    fn scan_slice(&self, mut acc: Self::Acc, xs: &[T], out: &mut [T], stream: bool) -> Self::Acc {
        let _ = stream;
        for (o, &x) in out.iter_mut().zip(xs) {
            acc = self.step(acc, x);
            *o = self.finish(acc);
        }
        acc
    }
}

/// [`Fold::fold_rows`], one row at a time.
#[inline(always)]
fn fold_rows_one_by_one<T: Copy, F: Fold<T> + ?Sized>(
    fold: &F,
    values: &[T],
    r: usize,
    outputs: &mut [T],
) {
    for (o, row) in outputs.iter_mut().zip(values.chunks_exact(r)) {
        *o = fold.finish(fold.merge(fold.init(), fold.fold_slice(fold.init(), row)));
    }
}

/// The float32 folds with vector paths of their own ([`fold_rows_f32`],
/// [`extreme_f32`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowFold {
    Sum,
    Max,
    Min,
}

impl RowFold {
    /// A maximum's or minimum's starting value (picking it changes nothing).
    fn identity(self) -> f32 {
        if self == RowFold::Max {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        }
    }

    /// A maximum's or minimum's pick of one of two values. `numbers`: neither
    /// is NaN, so one max or min instruction on x86 picks the same value
    /// (the NaN-propagating pick takes four).
    #[inline(always)]
    fn pick(self, numbers: bool, a: f32, b: f32) -> f32 {
        // Among numbers, ties keep `a`, as `max_nan` does (it matters for
        // signed zeros).
        match (self == RowFold::Max, numbers) {
            (true, false) => max_nan(a, b),
            (false, false) => min_nan(a, b),
            (true, true) => {
                if b > a {
                    b
                } else {
                    a
                }
            }
            (false, true) => {
                if b < a {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// [`RowFold::pick`] lane by lane.
    ///
    /// # Safety
    /// Called from code compiled with `V`'s features.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn pick_lanes<V: crate::vector::Vector<f32>>(self, numbers: bool, a: V, b: V) -> V {
        match (self == RowFold::Max, numbers) {
            (true, false) => a.max_nan(b),
            (false, false) => a.min_nan(b),
            (true, true) => a.max_nan_by_number(b),
            (false, true) => a.min_nan_by_number(b),
        }
    }
}

/// Whether none of the vectors of `V` at `at(0)`, ..., `at(n - 1)` holds a NaN.
///
/// # Safety
/// Called from code compiled with `V`'s features; each `at(j)` points at a
/// whole vector.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn no_nan_in<V: crate::vector::Vector<f32>>(
    n: usize,
    at: impl Fn(usize) -> *const f32,
) -> bool {
    (0..n)
        .fold(V::splat(0.0), |m, j| V::load(at(j)).max_magnitude(m))
        .magnitudes_at_most(f32::INFINITY)
}

/// Longest rows [`fold_rows_f32`] folds across rows. Rows of [`LANES`] or
/// more fold as well one at a time (their own lanes fill the registers; rows
/// of 64 batched: 0.38 against 0.12 ns a value).
const MAX_BATCHED_ROW: usize = LANES - 1;

/// [`Fold::fold_rows`] for float32 rows of 2 to [`MAX_BATCHED_ROW`] values on
/// AVX-512, 16 rows at a time: each batch is transposed in registers (value
/// `j` of the 16 rows becomes one vector), then folded in the order
/// `fold_slice` folds one row ([`sum_in_order`], [`extreme_in_order`]), on
/// whole vectors. One row at a time, a row of 10 cost a chain of ten
/// dependent adds or maxima. Returns how many leading rows it folded (whole
/// batches; none on other SIMD levels or row lengths).
fn fold_rows_f32(values: &[f32], r: usize, outputs: &mut [f32], kind: RowFold) -> usize {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::Level::Avx512 && (2..=MAX_BATCHED_ROW).contains(&r) {
        let batches = outputs.len().min(values.len() / r) / 16;
        // SAFETY: `level` only reports AVX-512 when this CPU runs it; the
        // batches lie inside `values` and `outputs`.
        unsafe { fold_row_batches_f32_avx512(values, r, &mut outputs[..16 * batches], kind) };
        return 16 * batches;
    }
    let _ = (values, r, outputs, kind);
    0
}

/// [`fold_rows_f32`] when `T` is f32; returns the rows it folded.
#[inline(always)]
fn fold_rows_if_f32<T: Elem>(values: &[T], r: usize, outputs: &mut [T], kind: RowFold) -> usize {
    if T::DTYPE != crate::DType::F32 {
        return 0;
    }
    // SAFETY: T is f32.
    unsafe {
        let values = std::slice::from_raw_parts(values.as_ptr() as *const f32, values.len());
        let outputs =
            std::slice::from_raw_parts_mut(outputs.as_mut_ptr() as *mut f32, outputs.len());
        fold_rows_f32(values, r, outputs, kind)
    }
}

/// The batches of [`fold_rows_f32`]: `outputs.len()` (a multiple of 16) rows.
///
/// # Safety
/// The CPU has AVX-512F; `2 <= r <= MAX_BATCHED_ROW`; `values` holds
/// `outputs.len()` rows of `r`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fold_row_batches_f32_avx512(
    values: &[f32],
    r: usize,
    outputs: &mut [f32],
    kind: RowFold,
) {
    use crate::vector::{Avx512F32, Vector};
    use std::arch::x86_64::*;
    // Column j (value j of the 16 rows) at 16·j; the order functions step
    // through column numbers.
    let mut columns = [0f32; 16 * MAX_BATCHED_ROW];
    let numbers: [usize; MAX_BATCHED_ROW] = std::array::from_fn(|j| j);
    let (numbers, at) = (&numbers[..r], columns.as_ptr());
    for (b, out) in outputs.chunks_exact_mut(16).enumerate() {
        let rows = values.as_ptr().add(16 * r * b);
        for q in (0..r).step_by(16) {
            let dst = columns.as_mut_ptr().add(16 * q) as *mut i32;
            let height = (r - q).min(16);
            super::elementwise::transpose_16x16(
                rows.add(q) as *const i32,
                r as isize,
                dst,
                16,
                height,
            );
        }
        if kind == RowFold::Sum {
            // Rows 0..8 and 8..16 in float64.
            let zero = [_mm512_setzero_pd(); 2];
            let add = |a: [__m512d; 2], j: usize| {
                let half = |h: usize| _mm512_cvtps_pd(_mm256_loadu_ps(at.add(16 * j + 8 * h)));
                [_mm512_add_pd(a[0], half(0)), _mm512_add_pd(a[1], half(1))]
            };
            let merge = |a: [__m512d; 2], b: [__m512d; 2]| {
                [_mm512_add_pd(a[0], b[0]), _mm512_add_pd(a[1], b[1])]
            };
            let total = merge(zero, sum_in_order(zero, numbers, zero, add, merge));
            _mm256_storeu_ps(out.as_mut_ptr(), _mm512_cvtpd_ps(total[0]));
            _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm512_cvtpd_ps(total[1]));
            continue;
        }
        let total = match no_nan_in::<Avx512F32>(r, |j| at.add(16 * j)) {
            true => extreme_of_columns::<true>(at, numbers, kind),
            false => extreme_of_columns::<false>(at, numbers, kind),
        };
        total.store(out.as_mut_ptr());
    }
}

/// The maxima or minima of a batch of [`fold_row_batches_f32_avx512`]: the
/// columns at `at + 16·j` for j in `numbers`, folded as one row folds, by
/// numbers (`NUMBERS`: no column holds a NaN) or with the NaN-propagating picks.
///
/// # Safety
/// The CPU has AVX-512F; the columns lie inside one allocation.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn extreme_of_columns<const NUMBERS: bool>(
    at: *const f32,
    numbers: &[usize],
    kind: RowFold,
) -> crate::vector::Avx512F32 {
    use crate::vector::{Avx512F32, Vector};
    let pick = |a: Avx512F32, b: Avx512F32| kind.pick_lanes(NUMBERS, a, b);
    let step = |a: Avx512F32, j: usize| pick(a, Avx512F32::load(at.add(16 * j)));
    let identity = Avx512F32::splat(kind.identity());
    pick(
        identity,
        extreme_in_order(identity, numbers, identity, step, pick),
    )
}

/// Sum, accumulated in `T::Acc` (f64 for floats, wrapping i32 for int32).
pub struct Sum;
/// Product, accumulated like `Sum`.
pub struct Prod;
/// Maximum, NaN-propagating.
pub struct Max;
/// Minimum, NaN-propagating.
pub struct Min;

/// The longest window (positions per output) folded across a block of
/// outputs; longer strided rows fold one output at a time.
const MAX_WINDOW: usize = 64;
/// Outputs folded together by the window path (their accumulators stay in L1).
const WINDOW_BLOCK: usize = 256;

/// Lanes of the lane-parallel folds (sums, maxima, minima): independent
/// accumulators (four AVX-512 vectors of float64 partial sums), so no step
/// waits on the one before it.
const LANES: usize = 32;
/// Lanes left after folding the lanes by halves; they fold into the result in order.
const FINAL_LANES: usize = 8;

/// Folds `xs` from `acc` in lanes: whole chunks of [`LANES`] values lane by
/// lane, then the rest as [`finish_lanes`] does. One fixed order: the same
/// bits at every SIMD level.
#[inline(always)]
fn fold_in_lanes<T: Copy, A: Copy>(
    acc: A,
    xs: &[T],
    identity: A,
    step: impl Fn(A, T) -> A,
    merge: impl Fn(A, A) -> A,
) -> A {
    let mut lanes = [identity; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            lanes[i] = step(lanes[i], c[i]);
        }
    }
    finish_lanes(acc, lanes, chunks.remainder(), step, merge)
}

/// The end of [`fold_in_lanes`]: chunks of [`FINAL_LANES`] values of `rest`
/// into the first lanes, the lanes by halves down to [`FINAL_LANES`], those in
/// order into `acc`, and the values left in order. Slices shorter than
/// [`LANES`] may start from [`FINAL_LANES`] lanes (`L`): the others would hold
/// the identity, and merging it changes nothing (a sum's lanes start at +0 and
/// never hold -0).
#[inline(always)]
fn finish_lanes<T: Copy, A: Copy, const L: usize>(
    acc: A,
    mut lanes: [A; L],
    rest: &[T],
    step: impl Fn(A, T) -> A,
    merge: impl Fn(A, A) -> A,
) -> A {
    let mut short = rest.chunks_exact(FINAL_LANES);
    for c in &mut short {
        for i in 0..FINAL_LANES {
            lanes[i] = step(lanes[i], c[i]);
        }
    }
    let mut width = L;
    while width > FINAL_LANES {
        width /= 2;
        for i in 0..width {
            lanes[i] = merge(lanes[i], lanes[i + width]);
        }
    }
    let total = lanes[..FINAL_LANES].iter().fold(acc, |a, &l| merge(a, l));
    short.remainder().iter().fold(total, |a, &x| step(a, x))
}

/// The order in which a sum folds a slice ([`Sum::fold_slice`]), on any
/// values: scalars, or vectors holding one value of each of 16 rows
/// ([`fold_row_batches_f32_avx512`]). Fewer than [`FINAL_LANES`] values go in
/// order after adding zero once (what the zero lanes would add: it turns -0
/// into +0); fewer than [`LANES`] start from the last lanes only.
#[inline(always)]
fn sum_in_order<T: Copy, A: Copy>(
    acc: A,
    xs: &[T],
    zero: A,
    add: impl Fn(A, T) -> A,
    merge: impl Fn(A, A) -> A,
) -> A {
    if xs.len() < FINAL_LANES {
        let total = merge(acc, zero);
        return xs.iter().fold(total, |a, &x| add(a, x));
    }
    if xs.len() < LANES {
        return finish_lanes(acc, [zero; FINAL_LANES], xs, add, merge);
    }
    fold_in_lanes(acc, xs, zero, add, merge)
}

/// The order in which a maximum or minimum folds a slice: fewer values than
/// [`LANES`] in order (the identity lanes would change nothing), more in lanes.
#[inline(always)]
fn extreme_in_order<T: Copy, A: Copy>(
    acc: A,
    xs: &[T],
    identity: A,
    step: impl Fn(A, T) -> A,
    merge: impl Fn(A, A) -> A,
) -> A {
    if xs.len() < LANES {
        return xs.iter().fold(acc, |a, &x| step(a, x));
    }
    fold_in_lanes(acc, xs, identity, step, merge)
}

/// A float32 sum in float64 in the order of [`fold_in_lanes`], with the lanes
/// in vector registers down to the last [`FINAL_LANES`] (LLVM vectorizes the
/// plain lanes two values at a time: 0.14 ns a value in L1, a chain of adds).
fn sum_f32(acc: f64, xs: &[f32]) -> f64 {
    let add = |a: f64, x: f32| a + x as f64;
    #[cfg(target_arch = "x86_64")]
    let (lanes, done) = match crate::simd::level() {
        // SAFETY: `level` only reports a level whose features this CPU has.
        crate::simd::Level::Avx512 => unsafe { sum_lanes_f32_avx512(xs) },
        // SAFETY: as above.
        crate::simd::Level::Avx2 => unsafe { sum_lanes_f32_avx2(xs) },
        _ => return fold_in_lanes(acc, xs, 0.0, add, |a, b| a + b),
    };
    #[cfg(not(target_arch = "x86_64"))]
    return fold_in_lanes(acc, xs, 0.0, add, |a, b| a + b);
    #[cfg(target_arch = "x86_64")]
    {
        let total = lanes.iter().fold(acc, |a, &l| a + l);
        xs[done..].iter().fold(total, |a, &x| add(a, x))
    }
}

/// The lanes of [`sum_f32`] in four AVX-512 registers: whole chunks, then
/// chunks of [`FINAL_LANES`] into the first lanes, then the halving. Returns
/// the last lanes and how many values they hold.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_lanes_f32_avx512(xs: &[f32]) -> ([f64; FINAL_LANES], usize) {
    use std::arch::x86_64::*;
    let (p, n) = (xs.as_ptr(), xs.len());
    let eight = |at: usize| _mm512_cvtps_pd(_mm256_loadu_ps(p.add(at)));
    let mut acc = [_mm512_setzero_pd(); 4];
    let mut at = 0;
    while at + LANES <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = _mm512_add_pd(*a, eight(at + 8 * k));
        }
        at += LANES;
    }
    while at + FINAL_LANES <= n {
        acc[0] = _mm512_add_pd(acc[0], eight(at));
        at += FINAL_LANES;
    }
    // Lanes i and i + 16, then i and i + 8.
    let (a, b) = (_mm512_add_pd(acc[0], acc[2]), _mm512_add_pd(acc[1], acc[3]));
    let mut lanes = [0f64; FINAL_LANES];
    _mm512_storeu_pd(lanes.as_mut_ptr(), _mm512_add_pd(a, b));
    (lanes, at)
}

/// [`sum_lanes_f32_avx512`] in eight AVX2 registers.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_lanes_f32_avx2(xs: &[f32]) -> ([f64; FINAL_LANES], usize) {
    use std::arch::x86_64::*;
    let (p, n) = (xs.as_ptr(), xs.len());
    let four = |at: usize| _mm256_cvtps_pd(_mm_loadu_ps(p.add(at)));
    let mut acc = [_mm256_setzero_pd(); 8];
    let mut at = 0;
    while at + LANES <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = _mm256_add_pd(*a, four(at + 4 * k));
        }
        at += LANES;
    }
    while at + FINAL_LANES <= n {
        acc[0] = _mm256_add_pd(acc[0], four(at));
        acc[1] = _mm256_add_pd(acc[1], four(at + 4));
        at += FINAL_LANES;
    }
    // Lanes i and i + 16, then i and i + 8.
    for k in 0..4 {
        acc[k] = _mm256_add_pd(acc[k], acc[k + 4]);
    }
    let mut lanes = [0f64; FINAL_LANES];
    _mm256_storeu_pd(lanes.as_mut_ptr(), _mm256_add_pd(acc[0], acc[2]));
    _mm256_storeu_pd(lanes.as_mut_ptr().add(4), _mm256_add_pd(acc[1], acc[3]));
    (lanes, at)
}

/// A float32 maximum or minimum in the order of [`fold_in_lanes`], in vector
/// registers down to one register. Without a NaN (the usual case) every pick
/// is one max or min instruction, which picks what [`RowFold::pick`] picks
/// among numbers; a NaN anywhere refolds with the NaN-propagating picks.
#[inline(always)]
fn extreme_f32(acc: f32, xs: &[f32], kind: RowFold) -> f32 {
    // The kind as a constant from here on, so that each pick compiles to one
    // instruction, not to both picks and a select between them.
    if kind == RowFold::Max {
        extreme_f32_of::<true>(acc, xs)
    } else {
        extreme_f32_of::<false>(acc, xs)
    }
}

/// [`extreme_f32`] of a maximum (`MAX`) or a minimum.
#[inline(always)]
fn extreme_f32_of<const MAX: bool>(acc: f32, xs: &[f32]) -> f32 {
    let kind = if MAX { RowFold::Max } else { RowFold::Min };
    #[cfg(target_arch = "x86_64")]
    {
        use crate::vector::{Avx2F32, Avx512F32};
        match crate::simd::level() {
            // SAFETY: `level` only reports a level whose features this CPU has.
            crate::simd::Level::Avx512 => {
                return unsafe {
                    crate::simd::avx512(
                        #[inline(always)]
                        || extreme_in_registers::<Avx512F32, MAX>(acc, xs),
                    )
                }
            }
            // SAFETY: as above.
            crate::simd::Level::Avx2 => {
                return unsafe {
                    crate::simd::avx2(
                        #[inline(always)]
                        || extreme_in_registers::<Avx2F32, MAX>(acc, xs),
                    )
                }
            }
            _ => {}
        }
    }
    let pick = |a, b| kind.pick(false, a, b);
    fold_in_lanes(acc, xs, kind.identity(), pick, pick)
}

/// [`extreme_f32_of`] in registers of `V`: by numbers, or again with the
/// NaN-propagating picks if a NaN turned up.
///
/// # Safety
/// Called from code compiled with `V`'s features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn extreme_in_registers<V: crate::vector::Vector<f32>, const MAX: bool>(
    acc: f32,
    xs: &[f32],
) -> f32 {
    let kind = if MAX { RowFold::Max } else { RowFold::Min };
    match extreme_lanes_f32::<V, true>(acc, xs, kind) {
        Some(total) => total,
        // Never NaN from `unwrap_or`: only the picks by numbers give up.
        None => extreme_lanes_f32::<V, false>(acc, xs, kind).unwrap_or(f32::NAN),
    }
}

/// The fold of [`extreme_f32`] in registers of `V` (8 or 16 lanes): whole
/// chunks, chunks of [`FINAL_LANES`] into the first lanes (with identities
/// above them in a wider register: picking the identity changes nothing),
/// the halving across registers, then within one, then the last lanes and
/// the values left in order. `NUMBERS`: picks among numbers ([`RowFold::pick`]),
/// and `None` if a value is NaN (the picks would then differ; a NaN `acc`
/// both keep).
///
/// # Safety
/// Called from code compiled with `V`'s features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn extreme_lanes_f32<V: crate::vector::Vector<f32>, const NUMBERS: bool>(
    acc: f32,
    xs: &[f32],
    kind: RowFold,
) -> Option<f32> {
    let (w, p, n) = (V::LANES, xs.as_ptr(), xs.len());
    debug_assert!(w == 8 || w == 16);
    let identity = kind.identity();
    let pick = |a: f32, b: f32| kind.pick(NUMBERS, a, b);
    let pick_v = |a: V, b: V| kind.pick_lanes(NUMBERS, a, b);
    // The largest magnitude loaded (NaN ranks above infinity).
    let mut magnitude = V::splat(0.0);
    let mut load = |at: *const f32| {
        let x = V::load(at);
        if NUMBERS {
            magnitude = x.max_magnitude(magnitude);
        }
        x
    };
    let mut acc_v = [V::splat(identity); 4];
    let mut at = 0;
    while at + LANES <= n {
        for (k, a) in acc_v.iter_mut().take(LANES / w).enumerate() {
            *a = pick_v(*a, load(p.add(at + k * w)));
        }
        at += LANES;
    }
    let mut padded = [identity; 16];
    while at + FINAL_LANES <= n {
        padded[..FINAL_LANES].copy_from_slice(&xs[at..at + FINAL_LANES]);
        acc_v[0] = pick_v(acc_v[0], load(padded.as_ptr()));
        at += FINAL_LANES;
    }
    let rest = &xs[at..];
    if NUMBERS && (!magnitude.magnitudes_at_most(f32::INFINITY) || rest.iter().any(|x| x.is_nan()))
    {
        return None;
    }
    let mut width = LANES;
    while width / 2 >= w.max(FINAL_LANES) {
        width /= 2;
        for k in 0..width / w {
            acc_v[k] = pick_v(acc_v[k], acc_v[k + width / w]);
        }
    }
    let mut lanes = [identity; 16];
    acc_v[0].store(lanes.as_mut_ptr());
    while width > FINAL_LANES {
        width /= 2;
        for i in 0..width {
            lanes[i] = pick(lanes[i], lanes[i + width]);
        }
    }
    let total = lanes[..FINAL_LANES].iter().fold(acc, |a, &l| pick(a, l));
    Some(rest.iter().fold(total, |a, &x| pick(a, x)))
}

impl<T: Num> Fold<T> for Sum {
    type Acc = T::Acc;
    #[inline(always)]
    fn init(&self) -> T::Acc {
        T::ZERO.acc()
    }
    #[inline(always)]
    fn step(&self, a: T::Acc, x: T) -> T::Acc {
        T::acc_add(a, x.acc())
    }
    #[inline(always)]
    fn merge(&self, a: T::Acc, b: T::Acc) -> T::Acc {
        T::acc_add(a, b)
    }
    #[inline(always)]
    fn finish(&self, a: T::Acc) -> T {
        T::from_acc(a)
    }
    #[inline(always)]
    fn fold_slice(&self, acc: T::Acc, xs: &[T]) -> T::Acc {
        if T::DTYPE == crate::DType::F32 && xs.len() >= LANES {
            // SAFETY: T is f32, whose accumulator is f64.
            unsafe {
                let xs = std::slice::from_raw_parts(xs.as_ptr() as *const f32, xs.len());
                let total = sum_f32(std::mem::transmute_copy(&acc), xs);
                return std::mem::transmute_copy(&total);
            }
        }
        let add = |a, x: T| T::acc_add(a, x.acc());
        sum_in_order(acc, xs, T::ZERO.acc(), add, T::acc_add)
    }
    #[inline(always)]
    fn fold_rows(&self, values: &[T], r: usize, outputs: &mut [T]) {
        let done = fold_rows_if_f32(values, r, outputs, RowFold::Sum);
        fold_rows_one_by_one(self, &values[done * r..], r, &mut outputs[done..]);
    }
    fn vector_scan(&self) -> bool {
        T::DTYPE == crate::DType::F32
    }
    #[inline(always)]
    fn scan_slice(&self, mut acc: T::Acc, xs: &[T], out: &mut [T], stream: bool) -> T::Acc {
        if T::DTYPE == crate::DType::F32 {
            // SAFETY: T is f32, whose accumulator is f64.
            unsafe {
                let xs = std::slice::from_raw_parts(xs.as_ptr() as *const f32, xs.len());
                let out = std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, out.len());
                let acc: f64 = std::mem::transmute_copy(&acc);
                let total = prefix_sum_f32(acc, xs, out, stream);
                return std::mem::transmute_copy(&total);
            }
        }
        for (o, &x) in out.iter_mut().zip(xs) {
            acc = T::acc_add(acc, x.acc());
            *o = T::from_acc(acc);
        }
        acc
    }
}

/// Inclusive prefix sum of float32 `xs` into `out` continuing from `acc`, in
/// float64, in a fixed order every SIMD level follows (so every level gives the
/// same bits): each group of 8 values is summed in three shift-and-add steps,
/// so the only chain between groups is adding the running total, instead of
/// one dependent add per element. Returns the final total. `stream`: write
/// `out` with non-temporal stores where the level has them (AVX-512); the
/// caller must [`crate::simd::store_fence`] before others read `out`.
pub fn prefix_sum_f32(acc: f64, xs: &[f32], out: &mut [f32], stream: bool) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::Level::Avx512 {
        // SAFETY: `level` only reports AVX-512 when this CPU runs it.
        return unsafe { prefix_sum_f32_avx512(acc, xs, out, stream) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level() == crate::simd::Level::Avx2 {
        // SAFETY: `level` only reports AVX2 when this CPU runs it.
        return unsafe { prefix_sum_f32_avx2(acc, xs, out) };
    }
    prefix_sum_f32_lanes(acc, xs, out)
}

/// The order of [`prefix_sum_f32`] on 8 plain lanes (LLVM vectorizes it).
#[inline(always)]
fn prefix_sum_f32_lanes(acc: f64, xs: &[f32], out: &mut [f32]) -> f64 {
    let prefix = |x: [f64; 8]| {
        let mut x = x;
        for shift in [1, 2, 4] {
            let before = x;
            for i in 0..8 {
                // Lanes below zero add +0.0, as the masked vector lanes do.
                x[i] = before[i] + if i >= shift { before[i - shift] } else { 0.0 };
            }
        }
        x
    };
    let n = xs.len().min(out.len());
    let mut total = acc;
    let mut i = 0;
    while i + 16 <= n {
        let load = |at: usize| -> [f64; 8] { std::array::from_fn(|k| xs[at + k] as f64) };
        let a = prefix(load(i));
        let mut b = prefix(load(i + 8));
        for v in b.iter_mut() {
            *v += a[7];
        }
        for k in 0..8 {
            out[i + k] = (total + a[k]) as f32;
        }
        for k in 0..8 {
            out[i + 8 + k] = (total + b[k]) as f32;
        }
        total += b[7];
        i += 16;
    }
    serial_prefix(total, &xs[i..n], &mut out[i..n])
}

/// The values after the last whole pair of groups, one by one.
#[inline(always)]
fn serial_prefix(mut total: f64, xs: &[f32], out: &mut [f32]) -> f64 {
    for (o, &x) in out.iter_mut().zip(xs) {
        total += x as f64;
        *o = total as f32;
    }
    total
}

/// [`prefix_sum_f32`] with AVX2: each group of 8 float64 is two registers.
///
/// # Safety
/// The CPU must run AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn prefix_sum_f32_avx2(acc: f64, xs: &[f32], out: &mut [f32]) -> f64 {
    use std::arch::x86_64::*;
    let n = xs.len().min(out.len());
    let zero = _mm256_setzero_pd();
    // Shift the 8 lanes [lo, hi] up by 1, 2 and 4, filling with +0.0; add.
    let prefix = |lo: __m256d, hi: __m256d| {
        let lo1 = _mm256_blend_pd::<0b0001>(_mm256_permute4x64_pd::<0x90>(lo), zero);
        let hi1 = _mm256_blend_pd::<0b0001>(
            _mm256_permute4x64_pd::<0x93>(hi),
            _mm256_permute4x64_pd::<0xFF>(lo),
        );
        let (lo, hi) = (_mm256_add_pd(lo, lo1), _mm256_add_pd(hi, hi1));
        let lo2 = _mm256_blend_pd::<0b0011>(_mm256_permute4x64_pd::<0x40>(lo), zero);
        let hi2 = _mm256_permute2f128_pd::<0x21>(lo, hi);
        let (lo, hi) = (_mm256_add_pd(lo, lo2), _mm256_add_pd(hi, hi2));
        (_mm256_add_pd(lo, zero), _mm256_add_pd(hi, lo))
    };
    let load = |at: usize| _mm256_cvtps_pd(_mm_loadu_ps(xs.as_ptr().add(at)));
    let dst = out.as_mut_ptr();
    let store = |at: usize, v: __m256d| _mm_storeu_ps(dst.add(at), _mm256_cvtpd_ps(v));
    let mut total = _mm256_set1_pd(acc);
    let mut i = 0;
    while i + 16 <= n {
        let (a0, a1) = prefix(load(i), load(i + 4));
        let (b0, b1) = prefix(load(i + 8), load(i + 12));
        let carry = _mm256_permute4x64_pd::<0xFF>(a1);
        let (b0, b1) = (_mm256_add_pd(b0, carry), _mm256_add_pd(b1, carry));
        store(i, _mm256_add_pd(total, a0));
        store(i + 4, _mm256_add_pd(total, a1));
        store(i + 8, _mm256_add_pd(total, b0));
        let last = _mm256_add_pd(total, b1);
        store(i + 12, last);
        total = _mm256_permute4x64_pd::<0xFF>(last);
        i += 16;
    }
    let acc = _mm256_cvtsd_f64(total);
    serial_prefix(acc, &xs[i..n], &mut out[i..n])
}

/// [`prefix_sum_f32`] with AVX-512 registers of 8 float64.
///
/// With `stream`, each 16 results are written as one non-temporal store to a
/// 64-byte-aligned place: the `head` results that precede `out`'s first
/// aligned position go out with a masked ordinary store, and every later
/// aligned line is the previous 16 results' last `16 - head` joined to this
/// 16's first `head` (one permute), so the order of the sums, and their bits,
/// do not depend on where `out` lies.
///
/// # Safety
/// The CPU must run AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn prefix_sum_f32_avx512(acc: f64, xs: &[f32], out: &mut [f32], stream: bool) -> f64 {
    use std::arch::x86_64::*;
    let n = xs.len().min(out.len());
    let dst = out.as_mut_ptr();
    // Lane i takes lane i-1, i-2, i-4 (lanes below zero are masked to 0).
    let by1 = _mm512_set_epi64(6, 5, 4, 3, 2, 1, 0, 0);
    let by2 = _mm512_set_epi64(5, 4, 3, 2, 1, 0, 0, 0);
    let by4 = _mm512_set_epi64(3, 2, 1, 0, 0, 0, 0, 0);
    let last = _mm512_set1_epi64(7);
    let prefix = |x: __m512d| {
        let x = _mm512_add_pd(x, _mm512_maskz_permutexvar_pd(0xFE, by1, x));
        let x = _mm512_add_pd(x, _mm512_maskz_permutexvar_pd(0xFC, by2, x));
        _mm512_add_pd(x, _mm512_maskz_permutexvar_pd(0xF0, by4, x))
    };
    // Results before the first 64-byte-aligned position of `out`.
    let head = (dst.align_offset(64) as u32).min(16);
    let stream = stream && n >= 32 && head < 16;
    let head_mask: __mmask16 = ((1u32 << head) - 1) as u16;
    // Lanes head..16 of `previous`, then lanes 0..head of `current`.
    let join = _mm512_add_epi32(
        _mm512_set1_epi32(head as i32),
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    );
    let mut previous = _mm512_setzero_ps();
    let mut total = _mm512_set1_pd(acc);
    let mut i = 0;
    while i + 16 <= n {
        let a = prefix(_mm512_cvtps_pd(_mm256_loadu_ps(xs.as_ptr().add(i))));
        let b = prefix(_mm512_cvtps_pd(_mm256_loadu_ps(xs.as_ptr().add(i + 8))));
        let b = _mm512_add_pd(b, _mm512_permutexvar_pd(last, a));
        let (a, b) = (_mm512_add_pd(total, a), _mm512_add_pd(total, b));
        total = _mm512_permutexvar_pd(last, b);
        let (a, b) = (_mm512_cvtpd_ps(a), _mm512_cvtpd_ps(b));
        if stream {
            let current = join_halves(a, b);
            if i == 0 {
                _mm512_mask_storeu_ps(dst, head_mask, current);
            } else {
                let line = _mm512_permutex2var_ps(previous, join, current);
                _mm512_stream_ps(dst.add(i + head as usize - 16), line);
            }
            previous = current;
        } else {
            _mm256_storeu_ps(dst.add(i), a);
            _mm256_storeu_ps(dst.add(i + 8), b);
        }
        i += 16;
    }
    if stream {
        // The last 16's lanes head..16, in place.
        _mm512_mask_storeu_ps(dst.add(i - 16), !head_mask, previous);
    }
    let acc = _mm512_cvtsd_f64(total);
    serial_prefix(acc, &xs[i..n], &mut out[i..n])
}

/// `lo` in lanes 0..8 and `hi` in lanes 8..16 (AVX-512F has no 256-bit
/// insert of float32 lanes; this is one shuffle of 128-bit quarters).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn join_halves(
    lo: std::arch::x86_64::__m256,
    hi: std::arch::x86_64::__m256,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    _mm512_shuffle_f32x4::<0b01_00_01_00>(_mm512_castps256_ps512(lo), _mm512_castps256_ps512(hi))
}

impl<T: Num> Fold<T> for Prod {
    type Acc = T::Acc;
    #[inline(always)]
    fn init(&self) -> T::Acc {
        T::ONE.acc()
    }
    #[inline(always)]
    fn step(&self, a: T::Acc, x: T) -> T::Acc {
        T::acc_mul(a, x.acc())
    }
    #[inline(always)]
    fn merge(&self, a: T::Acc, b: T::Acc) -> T::Acc {
        T::acc_mul(a, b)
    }
    #[inline(always)]
    fn finish(&self, a: T::Acc) -> T {
        T::from_acc(a)
    }
}

/// Maximum and minimum accumulate the value itself, starting from the identity
/// (`pick(identity, x)` is `x` for every x, NaN and signed zeros included), so
/// rows of accumulators vectorize. No output folds an empty set: the callers
/// reject a maximum over zero elements.
macro_rules! extreme_fold {
    ($name:ident, $pick:ident, $identity:ident, $kind:expr) => {
        impl<T: Elem> Fold<T> for $name {
            type Acc = T;
            #[inline(always)]
            fn init(&self) -> T {
                T::$identity
            }
            #[inline(always)]
            fn step(&self, a: T, x: T) -> T {
                $pick(a, x)
            }
            #[inline(always)]
            fn merge(&self, a: T, b: T) -> T {
                $pick(a, b)
            }
            #[inline(always)]
            fn finish(&self, a: T) -> T {
                a
            }
            #[inline(always)]
            fn fold_slice(&self, acc: T, xs: &[T]) -> T {
                if T::DTYPE == crate::DType::F32 && xs.len() >= LANES {
                    // SAFETY: T is f32.
                    unsafe {
                        let xs = std::slice::from_raw_parts(xs.as_ptr() as *const f32, xs.len());
                        let total = extreme_f32(std::mem::transmute_copy(&acc), xs, $kind);
                        return std::mem::transmute_copy(&total);
                    }
                }
                extreme_in_order(acc, xs, T::$identity, $pick, $pick)
            }
            #[inline(always)]
            fn fold_rows(&self, values: &[T], r: usize, outputs: &mut [T]) {
                let done = fold_rows_if_f32(values, r, outputs, $kind);
                fold_rows_one_by_one(self, &values[done * r..], r, &mut outputs[done..]);
            }
        }
    };
}
extreme_fold!(Max, max_nan, LOWEST, RowFold::Max);
extreme_fold!(Min, min_nan, HIGHEST, RowFold::Min);

/// `rows[i]` = the fold of the `m` contiguous values at `b + i·step`, from
/// the fold's start: the value `reduce` gives a row of at most [`BLOCK`]
/// values, without walking each row's layout (a sum over rows of 2: 3.7 ns a
/// row that way).
#[inline(always)]
fn fold_contiguous_rows<T: Copy, F: Fold<T>>(
    rows: &mut [T],
    data: &[T],
    b: isize,
    step: isize,
    m: usize,
    fold: &F,
) {
    if step == m as isize {
        let b = b as usize;
        return fold.fold_rows(&data[b..b + rows.len() * m], m, rows);
    }
    for (i, o) in rows.iter_mut().enumerate() {
        let at = (b + i as isize * step) as usize;
        let acc = fold.fold_slice(fold.init(), &data[at..at + m]);
        *o = fold.finish(fold.merge(fold.init(), acc));
    }
}

/// Fills `values` with `data[b + o + i·step]` for each run `(b, len)` and
/// `i < len`, in order: one window position of a block of outputs. Steps 1
/// and 2 (pooling by 2) are copies and vector shuffles.
#[inline(always)]
fn gather_runs<T: Copy>(
    values: &mut [T],
    data: &[T],
    runs: &[(isize, usize)],
    o: isize,
    step: isize,
) {
    let mut k = 0;
    for &(b, len) in runs {
        let out = &mut values[k..k + len];
        k += len;
        let at = b + o;
        match step {
            1 => out.copy_from_slice(&data[at as usize..at as usize + len]),
            2 if len > 0 => {
                let (at, last) = (at as usize, len - 1);
                for (v, p) in out.iter_mut().zip(data[at..at + 2 * last].chunks_exact(2)) {
                    *v = p[0];
                }
                out[last] = data[at + 2 * last];
            }
            _ => {
                for (i, v) in out.iter_mut().enumerate() {
                    *v = data[(at + i as isize * step) as usize];
                }
            }
        }
    }
}

/// Folds one row of values into a row of accumulators (one per column).
#[inline(always)]
pub(crate) fn step_columns<T: Copy, F: Fold<T>>(part: &mut [F::Acc], row: &[T], fold: &F) {
    for (p, &x) in part.iter_mut().zip(row) {
        *p = fold.step(*p, x);
    }
}

/// [`step_columns`] for `K` consecutive rows, folded in row order: each
/// accumulator is loaded and stored once per `K` rows instead of once per row
/// (with 4096 float64 accumulators that traffic, not memory, bounded a sum
/// over axis 0).
#[inline(always)]
fn step_row_group<T: Copy, F: Fold<T>, const K: usize>(
    part: &mut [F::Acc],
    rows: [&[T]; K],
    fold: &F,
) {
    let n = part.len();
    let rows = rows.map(|r| &r[..n]);
    for (j, p) in part.iter_mut().enumerate() {
        let mut acc = *p;
        for row in &rows {
            acc = fold.step(acc, row[j]);
        }
        *p = acc;
    }
}

/// Reduces `src` over `axes`, writing one value per output position.
pub fn reduce<T: Copy + Send + Sync, F: Fold<T>>(
    out: &mut [T],
    src: Src<T>,
    axes: &[usize],
    fold: &F,
) {
    let nd = src.layout.shape.len();
    let keep: Vec<usize> = (0..nd).filter(|d| !axes.contains(d)).collect();
    let order: Vec<usize> = keep.iter().chain(axes.iter()).copied().collect();
    let perm: Layout = src.layout.permute(&order);
    let (outer_shape, inner_shape) = perm.shape.split_at(keep.len());
    let (outer_strides, inner_strides) = perm.strides.split_at(keep.len());
    let m = numel(inner_shape);
    let (ishape, [istr]) = collapse(inner_shape, [inner_strides]);
    let (oshape, [ostr]) = collapse(outer_shape, [outer_strides]);
    let inner_step = *istr.last().unwrap();
    let istrides = [istr];

    // Folds positions `start..end` of one output's inner block, starting at `base`.
    let fold_range = |base: isize, start: usize, end: usize| -> F::Acc {
        let mut acc = fold.init();
        for_each_run(&ishape, &istrides, [base], start, end, |[o], _, len| {
            if inner_step == 1 {
                let o = o as usize;
                acc = crate::dispatch!(fold.fold_slice(acc, &src.data[o..o + len]));
            } else {
                for i in 0..len as isize {
                    acc = fold.step(acc, src.data[(o + i * inner_step) as usize]);
                }
            }
        });
        acc
    };
    // Short strided rows (pooling windows, small axes): walk precomputed
    // offsets, one block folded in order. Contiguous rows fold as slices.
    const SHORT_ROW: usize = 4096;
    const _: () = assert!(SHORT_ROW <= BLOCK, "a short row is one block");
    let contiguous_rows = ishape.len() == 1 && inner_step == 1;
    let small: Option<Vec<isize>> = (m <= SHORT_ROW && !contiguous_rows).then(|| {
        let mut offsets = Vec::with_capacity(m);
        for_each_run(&ishape, &istrides, [0], 0, m, |[o], _, len| {
            for i in 0..len as isize {
                offsets.push(o + i * inner_step);
            }
        });
        offsets
    });
    let fold_row_serial = |base: isize| -> T {
        if let Some(offsets) = &small {
            let acc = offsets.iter().fold(fold.init(), |acc, &o| {
                fold.step(acc, src.data[(base + o) as usize])
            });
            return fold.finish(fold.merge(fold.init(), acc));
        }
        let mut acc = fold.init();
        let mut start = 0;
        while start < m {
            let end = (start + BLOCK).min(m);
            acc = fold.merge(acc, fold_range(base, start, end));
            start = end;
        }
        fold.finish(acc)
    };

    let n_out = out.len();
    let ostrides = [ostr];
    if n_out < num_threads() && m >= 2 * PARALLEL_THRESHOLD {
        // Few long rows: split each row's blocks across threads, merge in order.
        for (i, o) in out.iter_mut().enumerate() {
            let mut base = 0;
            for_each_run(
                &oshape,
                &ostrides,
                [src.layout.offset],
                i,
                i + 1,
                |[b], _, _| base = b,
            );
            let partials: Vec<F::Acc> = (0..m.div_ceil(BLOCK))
                .into_par_iter()
                .map(|b| fold_range(base, b * BLOCK, ((b + 1) * BLOCK).min(m)))
                .collect();
            *o = fold.finish(
                partials
                    .into_iter()
                    .fold(fold.init(), |a, b| fold.merge(a, b)),
            );
        }
        return;
    }
    let outer_step = *ostrides[0].last().unwrap();
    // Neighbouring outputs read neighbouring inputs while each output's own
    // inputs are strided (a sum over axis 0): fold whole rows of inputs into a
    // row of accumulators, so every read is contiguous. Each output still folds
    // its inputs in order, block by block, like `fold_row_serial`.
    let columns = outer_step == 1 && inner_step != 1;
    let fold_columns = |rows: &mut [T], b: isize| {
        let len = rows.len();
        let mut acc = vec![fold.init(); len];
        let mut part = vec![fold.init(); len];
        let mut start = 0;
        while start < m {
            let end = (start + BLOCK).min(m);
            part.iter_mut().for_each(|p| *p = fold.init());
            for_each_run(&ishape, &istrides, [b], start, end, |[o], _, run| {
                for i in 0..run as isize {
                    let row = &src.data[(o + i * inner_step) as usize..][..len];
                    crate::dispatch!(step_columns(&mut part, row, fold));
                }
            });
            for (a, &p) in acc.iter_mut().zip(&part) {
                *a = fold.merge(*a, p);
            }
            start = end;
        }
        for (o, a) in rows.iter_mut().zip(acc) {
            *o = fold.finish(a);
        }
    };
    if columns
        && oshape.len() == 1
        && ishape.len() == 1
        && n_out >= 16
        && n_out * m >= PARALLEL_THRESHOLD
    {
        // One reduced axis over rows of contiguous outputs (a sum over axis 0):
        // fixed blocks of rows stream through memory in parallel into partial
        // rows of accumulators, merged in block order (so the result does not
        // depend on the thread count).
        // Blocks of 64-256 rows, by shape only (never by thread count): longer
        // blocks mean fewer partial rows to allocate and merge.
        let rows_per_block = (m / 16).clamp(64, 256);
        let width = n_out.min(8192);
        let (col_blocks, row_blocks) = (n_out.div_ceil(width), m.div_ceil(rows_per_block));
        let partials: Vec<Vec<F::Acc>> = (0..col_blocks * row_blocks)
            .into_par_iter()
            .map(|t| {
                let (cb, rb) = (t / row_blocks, t % row_blocks);
                let (j0, len) = (cb * width, width.min(n_out - cb * width));
                let mut part = vec![fold.init(); len];
                let row = |i: usize| {
                    let at = (src.layout.offset + i as isize * inner_step) as usize + j0;
                    &src.data[at..at + len]
                };
                let (first, end) = (rb * rows_per_block, ((rb + 1) * rows_per_block).min(m));
                let mut i = first;
                // Eight rows per pass over the accumulators (same order of steps).
                const GROUP: usize = 8;
                while i + GROUP <= end {
                    let rows: [&[T]; GROUP] = std::array::from_fn(|k| row(i + k));
                    crate::dispatch!(step_row_group(&mut part, rows, fold));
                    i += GROUP;
                }
                for i in i..end {
                    crate::dispatch!(step_columns(&mut part, row(i), fold));
                }
                part
            })
            .collect();
        for cb in 0..col_blocks {
            let j0 = cb * width;
            let blocks = &partials[cb * row_blocks..(cb + 1) * row_blocks];
            for (j, o) in out[j0..j0 + blocks[0].len()].iter_mut().enumerate() {
                *o = fold.finish(blocks.iter().fold(fold.init(), |a, p| fold.merge(a, p[j])));
            }
        }
        return;
    }
    // Small windows (pooling): a block of outputs folds offset by offset, each
    // step one pass across the block's row of accumulators (vectorized), in
    // the order `fold_row_serial` takes, so the bits are the same.
    let windows = small
        .as_ref()
        .filter(|_| (1..=MAX_WINDOW).contains(&m) && !columns);
    let fold_windows = |rows: &mut [T], start: usize, offsets: &[isize]| {
        if rows.is_empty() {
            return; // and `src.data` may be empty
        }
        // Runs of outputs `outer_step` apart: (first input, outputs).
        let mut runs: Vec<(isize, usize)> = Vec::new();
        let mut values = [src.data[0]; WINDOW_BLOCK];
        let mut acc = [fold.init(); WINDOW_BLOCK];
        for (c, rows) in rows.chunks_mut(WINDOW_BLOCK).enumerate() {
            let first = start + c * WINDOW_BLOCK;
            runs.clear();
            for_each_run(
                &oshape,
                &ostrides,
                [src.layout.offset],
                first,
                first + rows.len(),
                |[b], _, len| runs.push((b, len)),
            );
            let (acc, values) = (&mut acc[..rows.len()], &mut values[..rows.len()]);
            acc.fill(fold.init());
            for &o in offsets {
                crate::dispatch!(gather_runs(values, src.data, &runs, o, outer_step));
                crate::dispatch!(step_columns(acc, values, fold));
            }
            for (r, &a) in rows.iter_mut().zip(acc.iter()) {
                *r = fold.finish(fold.merge(fold.init(), a));
            }
        }
    };
    // Parallel over outputs, with chunks sized by the work (outputs times row length).
    let rows_per_chunk = (PARALLEL_THRESHOLD / m.max(1)).max(1);
    let fold_outputs = |rows: &mut [T], start: usize| {
        if let Some(offsets) = windows {
            return fold_windows(rows, start, offsets);
        }
        for_each_run(
            &oshape,
            &ostrides,
            [src.layout.offset],
            start,
            start + rows.len(),
            |[b], pos, len| {
                let rows = &mut rows[pos - start..pos - start + len];
                if columns && len >= 16 {
                    fold_columns(rows, b);
                } else if contiguous_rows && (1..=BLOCK).contains(&m) {
                    // One block per row, folded as `fold_row_serial` folds it.
                    crate::dispatch!(fold_contiguous_rows(rows, src.data, b, outer_step, m, fold));
                } else {
                    for (i, o) in rows.iter_mut().enumerate() {
                        *o = fold_row_serial(b + i as isize * outer_step);
                    }
                }
            },
        );
    };
    if n_out <= rows_per_chunk || n_out * m < PARALLEL_THRESHOLD {
        fold_outputs(out, 0);
    } else {
        let chunk = rows_per_chunk.max(n_out.div_ceil(num_threads() * 4));
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, rows)| fold_outputs(rows, c * chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_each_axis() {
        let data: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let l = Layout::contiguous(&[2, 3]);
        let src = Src {
            data: &data,
            layout: &l,
        };
        let mut rows = vec![0f32; 2];
        reduce(&mut rows, src, &[1], &Sum);
        assert_eq!(rows, vec![3.0, 12.0]);
        let mut cols = vec![0f32; 3];
        reduce(&mut cols, src, &[0], &Sum);
        assert_eq!(cols, vec![3.0, 5.0, 7.0]);
        let mut all = vec![0f32; 1];
        reduce(&mut all, src, &[0, 1], &Sum);
        assert_eq!(all, vec![15.0]);
    }

    #[test]
    fn long_rows_and_many_rows_agree_with_serial_sum() {
        for shape in [[1usize, 200_003], [3, 70_001], [40_000, 3]] {
            let n = shape[0] * shape[1];
            let data: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 7.0).collect();
            let l = Layout::contiguous(&shape);
            let mut out = vec![0f32; shape[0]];
            reduce(
                &mut out,
                Src {
                    data: &data,
                    layout: &l,
                },
                &[1],
                &Sum,
            );
            for r in 0..shape[0] {
                let exact: f64 = data[r * shape[1]..(r + 1) * shape[1]]
                    .iter()
                    .map(|&x| x as f64)
                    .sum();
                assert!(
                    (out[r] as f64 - exact).abs() <= exact.abs() * 1e-6,
                    "{shape:?} row {r}"
                );
            }
        }
    }

    #[test]
    fn column_sums_match_row_by_row_folds() {
        // Axis 0 of a [300, 257] matrix (columns path) against the same sums over
        // its transpose's axis 1 (rows path): same order of additions, same bits.
        let (r, c) = (300usize, 257usize);
        let data: Vec<f32> = (0..r * c)
            .map(|i| ((i * 7919) % 1000) as f32 / 7.0)
            .collect();
        let l = Layout::contiguous(&[r, c]);
        let mut cols = vec![0f32; c];
        reduce(
            &mut cols,
            Src {
                data: &data,
                layout: &l,
            },
            &[0],
            &Sum,
        );
        let mut maxes = vec![0f32; c];
        reduce(
            &mut maxes,
            Src {
                data: &data,
                layout: &l,
            },
            &[0],
            &Max,
        );
        for j in 0..c {
            let mut acc = 0f64;
            for i in 0..r {
                acc += data[i * c + j] as f64;
            }
            assert_eq!(cols[j], acc as f32, "column {j}");
            assert_eq!(
                maxes[j],
                (0..r).map(|i| data[i * c + j]).fold(f32::MIN, f32::max)
            );
        }
    }

    #[test]
    fn empty_sum_is_init() {
        let data: Vec<f32> = vec![];
        let l = Layout::contiguous(&[3, 0]);
        let mut out = vec![9f32; 3];
        reduce(
            &mut out,
            Src {
                data: &data,
                layout: &l,
            },
            &[1],
            &Sum,
        );
        assert_eq!(out, vec![0.0; 3]);
    }

    /// Rows of every length (short ones are folded without walking their
    /// layout) keep the order of one `fold_slice` per row, on data whose
    /// float64 sums depend on it (±2^60 cancelling among small values).
    #[test]
    fn contiguous_rows_fold_as_one_slice_each() {
        for m in [1, 2, 7, 8, 9, 100, 5000] {
            let rows = 70;
            let data: Vec<f32> = (0..rows * m)
                .map(|i: usize| match i % 7 {
                    0 => 2f32.powi(60) * if i.is_multiple_of(2) { 1.0 } else { -1.0 },
                    _ => ((i * 7919 % 1009) as f32 - 504.0) * 0.37,
                })
                .collect();
            let l = Layout::contiguous(&[rows, m]);
            let src = Src {
                data: &data,
                layout: &l,
            };
            let mut out = vec![0f32; rows];
            reduce(&mut out, src, &[1], &Sum);
            for (r, &o) in out.iter().enumerate() {
                let row = &data[r * m..(r + 1) * m];
                let want = Fold::<f32>::fold_slice(&Sum, 0.0, row) as f32;
                assert_eq!(o.to_bits(), want.to_bits(), "rows of {m}, row {r}");
            }
        }
    }

    /// A sum's fold of fewer values than it has lanes equals the lane-wise
    /// fold: eight zero lanes added to the start (-0 becomes +0), then the
    /// values in order.
    #[test]
    fn short_slices_sum_as_the_lanes_do() {
        for acc in [0.0, -0.0, 1.5, f64::INFINITY, f64::NAN] {
            for n in 0..FINAL_LANES {
                let xs: Vec<f32> = (0..n).map(|i| [-0.0, 3.25, -1e30, 7.0][i % 4]).collect();
                let mut lanes_sum = acc;
                for _ in 0..FINAL_LANES {
                    lanes_sum += 0.0;
                }
                let want = xs.iter().fold(lanes_sum, |a, &x| a + x as f64);
                let got: f64 = Fold::<f32>::fold_slice(&Sum, acc, &xs);
                assert_eq!(got.to_bits(), want.to_bits(), "start {acc}, {n} values");
            }
        }
    }

    /// Float32 sums, maxima and minima fold their whole chunks in vector
    /// registers, and short sums in 8 lanes: every length, start and SIMD
    /// level must give the bits of the plain `fold_in_lanes`.
    #[test]
    fn float32_lanes_in_registers_fold_as_the_plain_lanes() {
        let value = |i: usize| -> f32 {
            match (i * 7919) % 23 {
                0 => 2f32.powi(60) * if i % 2 == 0 { 1.0 } else { -1.0 },
                1 => -0.0,
                2 => 0.0,
                _ => ((i * 7919 % 1009) as f32 - 504.0) * 0.37,
            }
        };
        // A second NaN with another payload, in the same lane: which NaN a
        // lane keeps shows the order of its steps, as signed zeros do where
        // no value is positive.
        let other_nan = f32::from_bits(f32::NAN.to_bits() | 1);
        for n in [8, 10, 17, 31, 32, 33, 40, 63, 64, 100, 1000, 4099] {
            for (nan_at, positive) in [
                (None, true),
                (None, false),
                (Some(0), true),
                (Some(n / 2), false),
                (Some(n - 1), true),
            ] {
                let mut xs: Vec<f32> = (0..n)
                    .map(|i| match value(i) {
                        v if positive || v == 0.0 => v,
                        v => -v.abs(),
                    })
                    .collect();
                if let Some(k) = nan_at {
                    xs[k] = f32::NAN;
                    if k + LANES < n {
                        xs[k + LANES] = other_nan;
                    }
                }
                for acc in [0.0f64, -0.0, 1e18] {
                    let want = fold_in_lanes(acc, &xs, 0.0, |a, x| a + x as f64, |a, b| a + b);
                    let got: f64 = Fold::<f32>::fold_slice(&Sum, acc, &xs);
                    // Which NaN a sum gives is LLVM's choice (it commutes adds).
                    let want = if want.is_nan() && got.is_nan() {
                        got
                    } else {
                        want
                    };
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "sum of {n} from {acc}, NaN at {nan_at:?}"
                    );
                }
                // Maxima and minima of fewer values than the lanes go in order.
                let in_order =
                    |acc, pick: fn(f32, f32) -> f32| xs.iter().fold(acc, |a, &x| pick(a, x));
                for acc in [f32::NEG_INFINITY, -0.0, 0.0, 5.0, f32::NAN] {
                    let want = match n < LANES {
                        true => in_order(acc, max_nan),
                        false => fold_in_lanes(acc, &xs, f32::NEG_INFINITY, max_nan, max_nan),
                    };
                    let got = Fold::<f32>::fold_slice(&Max, acc, &xs);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "max of {n} from {acc}, NaN at {nan_at:?}"
                    );
                    let want = match n < LANES {
                        true => in_order(acc, min_nan),
                        false => fold_in_lanes(acc, &xs, f32::INFINITY, min_nan, min_nan),
                    };
                    let got = Fold::<f32>::fold_slice(&Min, acc, &xs);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "min of {n} from {acc}, NaN at {nan_at:?}"
                    );
                }
            }
        }
        // Ties between signed zeros placed by lane: a maximum keeps the zero
        // of the lane its order reaches first, so moving values between
        // lanes or picking in another order shows. Whole chunks give lanes
        // 0..8 (or 16..24) +0 and the others -0 (or -1); chunks of 8 after
        // them give -0; the rest is -1. Minima see the same with +1.
        for (n, plus_lanes, others) in [
            (72, 0..8, -0.0),
            (72, 16..24, -1.0),
            (107, 0..8, -0.0),
            (107, 16..24, -1.0),
        ] {
            for sign in [1.0f32, -1.0] {
                let whole = n / LANES * LANES;
                let xs: Vec<f32> = (0..n)
                    .map(|i| match i {
                        i if i < whole && plus_lanes.contains(&(i % LANES)) => 0.0,
                        // Zeros keep their sign; -1 becomes +1 for minima.
                        i if i < whole && others == 0.0 => others,
                        i if i < whole => others * sign,
                        i if i < whole + (n - whole) / FINAL_LANES * FINAL_LANES => -0.0,
                        _ => -sign,
                    })
                    .collect();
                let (fold, pick): (&dyn Fold<f32, Acc = f32>, fn(f32, f32) -> f32) =
                    match sign > 0.0 {
                        true => (&Max, max_nan),
                        false => (&Min, min_nan),
                    };
                let identity = fold.init();
                let want = fold_in_lanes(identity, &xs, identity, pick, pick);
                let got = fold.fold_slice(identity, &xs);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "zeros in lanes {plus_lanes:?} of {n}, sign {sign}"
                );
            }
        }
    }

    /// Short float32 rows folded 16 at a time across vector lanes give each
    /// row's own fold, bit for bit: every row length, with NaNs (of two
    /// payloads), signed zeros and large values cancelling among small ones.
    #[test]
    fn short_rows_fold_across_lanes_as_one_at_a_time() {
        let other_nan = f32::from_bits(f32::NAN.to_bits() | 1);
        for r in (1..=18).chain([31, 32, 33, 47, 64, 65]) {
            let rows = 16 * 5 + 3;
            for positive in [true, false] {
                // Each row holds 2^60 and -2^60 at places that move from row
                // to row among small values (the order of its adds decides
                // which small values survive); some rows hold NaNs (in odd
                // batches of 16 only: the others fold by numbers), others
                // only signed zeros.
                let value = |i: usize| -> f32 {
                    let (row, j) = (i / r, i % r);
                    let nan_rows = row / 16 % 2 == 1;
                    match row % 7 {
                        3 if nan_rows && j == row / 7 % r => return f32::NAN,
                        5 if nan_rows && j == row / 7 % r => return other_nan,
                        5 if nan_rows && j == (row / 7 + 3) % r => return f32::NAN,
                        6 => return if (i * 7919) % 3 == 0 { -0.0 } else { 0.0 },
                        _ => {}
                    }
                    if j == row % r {
                        2f32.powi(60)
                    } else if j == (row * 5 + 1) % r {
                        -(2f32.powi(60))
                    } else if positive {
                        ((i * 7919 % 1009) as f32 - 504.0) * 0.37
                    } else {
                        -((i * 7919 % 1009) as f32) * 0.37
                    }
                };
                let values: Vec<f32> = (0..rows * r).map(value).collect();
                let check =
                    |fold: &dyn Fn(&[f32], &mut [f32]), one: &dyn Fn(&[f32], &mut [f32]), name| {
                        let (mut got, mut want) = (vec![0f32; rows], vec![0f32; rows]);
                        fold(&values, &mut got);
                        one(&values, &mut want);
                        for i in 0..rows {
                            let same = got[i].to_bits() == want[i].to_bits()
                                || (name == "sum" && got[i].is_nan() && want[i].is_nan());
                            assert!(
                                same,
                                "{name} of rows of {r}, row {i}: {} against {}",
                                got[i], want[i]
                            );
                        }
                    };
                check(
                    &|v, o| Sum.fold_rows(v, r, o),
                    &|v, o| fold_rows_one_by_one(&Sum, v, r, o),
                    "sum",
                );
                check(
                    &|v, o| Max.fold_rows(v, r, o),
                    &|v, o| fold_rows_one_by_one(&Max, v, r, o),
                    "max",
                );
                check(
                    &|v, o| Min.fold_rows(v, r, o),
                    &|v, o| fold_rows_one_by_one(&Min, v, r, o),
                    "min",
                );
            }
        }
    }

    /// Asserts `got` and `want` hold the same float32 bits, element by element.
    fn assert_same_bits(got: &[f32], want: &[f32], label: &str) {
        assert_eq!(got.len(), want.len(), "{label}");
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{label} element {k}");
        }
    }

    #[test]
    fn prefix_sums_give_the_same_bits_at_every_level() {
        let n = 10_007;
        let xs: Vec<f32> = (0..n)
            .map(|i| (((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f32) * 1e-3 - 3.7)
            .collect();
        let mut lanes = vec![0f32; n];
        let total = prefix_sum_f32_lanes(0.25, &xs, &mut lanes);
        let mut serial = 0.25f64;
        for (k, &x) in xs.iter().enumerate() {
            serial += x as f64;
            // Same float64 sums up to reassociation: far below float32 rounding.
            assert!((lanes[k] as f64 - serial).abs() <= 1e-6 * serial.abs().max(1.0));
        }
        #[cfg(target_arch = "x86_64")]
        {
            use crate::simd::Level;
            /// Ordinary stores (the streamed ones are the next test's).
            unsafe fn stored_avx512(acc: f64, xs: &[f32], out: &mut [f32]) -> f64 {
                prefix_sum_f32_avx512(acc, xs, out, false)
            }
            let levels = crate::simd::supported();
            for (level, f) in [
                (
                    Level::Avx512,
                    stored_avx512 as unsafe fn(f64, &[f32], &mut [f32]) -> f64,
                ),
                (Level::Avx2, prefix_sum_f32_avx2),
            ] {
                if !levels.contains(&level) {
                    continue;
                }
                let mut vector = vec![0f32; n];
                // SAFETY: the CPU has this level.
                let t = unsafe { f(0.25, &xs, &mut vector) };
                assert_eq!(t.to_bits(), total.to_bits(), "{level:?}");
                assert_same_bits(&vector, &lanes, &format!("{level:?}"));
            }
        }
    }

    #[test]
    fn streamed_prefix_sums_give_the_same_bits_wherever_the_output_lies() {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::supported().contains(&crate::simd::Level::Avx512) {
            for n in [0, 15, 16, 17, 31, 32, 33, 47, 48, 1000, 4099] {
                let xs: Vec<f32> = (0..n)
                    .map(|i| (((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f32) * 1e-3)
                    .collect();
                let mut plain = vec![0f32; n];
                let total = prefix_sum_f32_lanes(-1.5, &xs, &mut plain);
                // Every place of the output relative to a 64-byte line, with a
                // guard value on either side that must survive.
                let mut buffer = vec![0f32; n + 64];
                for shift in 0..16 {
                    let start = buffer.as_ptr().align_offset(64) + 16 + shift;
                    buffer.fill(7.25);
                    let out = &mut buffer[start..start + n];
                    // SAFETY: the CPU has AVX-512 (checked above).
                    let t = unsafe { prefix_sum_f32_avx512(-1.5, &xs, out, true) };
                    crate::simd::store_fence();
                    assert_eq!(t.to_bits(), total.to_bits(), "n {n} shift {shift}");
                    assert_same_bits(out, &plain, &format!("n {n} shift {shift}"));
                    assert_eq!(buffer[start - 1], 7.25, "n {n} shift {shift}: before");
                    assert_eq!(buffer[start + n], 7.25, "n {n} shift {shift}: after");
                }
            }
        }
    }

    /// Each output folded by hand, one position at a time in row-major order
    /// of the reduced axes (the order every path must keep).
    fn fold_by_hand(data: &[f32], l: &Layout, axes: &[usize], max: bool) -> Vec<f32> {
        let keep: Vec<usize> = (0..l.shape.len()).filter(|d| !axes.contains(d)).collect();
        let p = l.permute(&keep.iter().chain(axes).copied().collect::<Vec<_>>());
        let m: usize = axes.iter().map(|&d| l.shape[d]).product();
        let n = numel(&p.shape) / m.max(1);
        (0..n)
            .map(|i| {
                let at = |j: usize| {
                    let mut pos = i * m + j;
                    let mut off = p.offset;
                    for d in (0..p.shape.len()).rev() {
                        off += (pos % p.shape[d]) as isize * p.strides[d];
                        pos /= p.shape[d];
                    }
                    data[off as usize]
                };
                if max {
                    (1..m).fold(at(0), |a, j| max_nan(a, at(j)))
                } else {
                    (0..m).fold(0f64, |a, j| a + at(j) as f64) as f32
                }
            })
            .collect()
    }

    #[test]
    fn no_outputs_over_windows_read_nothing() {
        let l = Layout::contiguous(&[0, 3, 2, 3, 2]);
        let src = Src {
            data: &[],
            layout: &l,
        };
        let mut out: Vec<f32> = vec![];
        reduce(&mut out, src, &[2, 4], &Max);
        reduce(&mut out, src, &[2, 4], &Sum);
    }

    #[test]
    fn pooling_windows_fold_in_order_with_nan_and_signed_zeros() {
        let n = 4 * 16 * 40 * 40;
        let pick = [f32::NAN, -0.0, 0.0, 1.5, -2.25, 0.0, -0.0, 7.0];
        let data: Vec<f32> = (0..n)
            .map(|i| {
                let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                // NaN rarely, so most windows hold numbers.
                if h.is_multiple_of(97) {
                    f32::NAN
                } else if h.is_multiple_of(3) {
                    pick[1 + (h as usize / 3) % 7]
                } else {
                    (h % 1000) as f32 / 7.0 - 70.0
                }
            })
            .collect();
        let c = Layout::contiguous(&[4, 16, 40, 40]);
        let strided = |shape: &[usize], strides: &[isize]| Layout {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset: 0,
        };
        let cases: Vec<(Layout, Vec<usize>)> = vec![
            // 2x2 pooling (outputs two apart), 4x4 and 5x5 (the general stride).
            (c.reshape(&[4, 16, 20, 2, 20, 2]).unwrap(), vec![3, 5]),
            (c.reshape(&[4, 16, 10, 4, 10, 4]).unwrap(), vec![3, 5]),
            (c.reshape(&[4, 16, 8, 5, 8, 5]).unwrap(), vec![3, 5]),
            // Windows along one axis, outputs two apart.
            (c.reshape(&[64, 40, 20, 2]).unwrap(), vec![1]),
            // A kept axis broadcast (outputs zero apart).
            (strided(&[7, 3, 4], &[12, 4, 0]), vec![0, 1]),
        ];
        for (l, axes) in cases {
            for max in [true, false] {
                let want = fold_by_hand(&data, &l, &axes, max);
                let mut got = vec![0f32; want.len()];
                let src = Src {
                    data: &data,
                    layout: &l,
                };
                if max {
                    reduce(&mut got, src, &axes, &Max);
                } else {
                    reduce(&mut got, src, &axes, &Sum);
                }
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "{:?} over {axes:?} (max: {max}) output {i}: {g} != {w}",
                        l.shape
                    );
                }
            }
        }
    }
}
