//! Kernels over strided inputs writing contiguous outputs. Each is generic over
//! the element type; `exec` picks the type from the instruction's dtype.

pub mod elementwise;
pub mod fused;
pub mod index;
pub mod matmul;
pub mod reduce;
pub mod scan;
pub mod tile;

use crate::layout::Layout;
use crate::pool::chunk_len;
use rayon::prelude::*;

/// Outputs of at least this many bytes are written past the caches: they
/// would not stay in a last-level cache anyway, and a normal store first
/// reads each line it writes (a third of the traffic of `y = f(x)`).
pub(crate) const STREAM_BYTES: usize = 32 << 20;

/// An input operand: the whole storage and the view of it the op reads.
#[derive(Clone, Copy)]
pub struct Src<'a, T> {
    pub data: &'a [T],
    pub layout: &'a Layout,
}

/// Runs `body(chunk, start)` over chunks of `out` (in parallel when it is large),
/// where `start` is the chunk's first row-major position.
pub(crate) fn par_chunks<U: Send>(out: &mut [U], body: impl Fn(&mut [U], usize) + Sync) {
    par_chunks_of(out, 1, body)
}

/// Like [`par_chunks`] with every chunk a multiple of `granule` positions long.
pub(crate) fn par_chunks_of<U: Send>(
    out: &mut [U],
    granule: usize,
    body: impl Fn(&mut [U], usize) + Sync,
) {
    let n = out.len();
    let len = chunk_len(n).next_multiple_of(granule.max(1));
    if n <= len {
        body(out, 0);
    } else {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| body(c, i * len));
    }
}

/// Like [`par_chunks`] for bodies that can fail; returns the first error in chunk order.
pub(crate) fn try_par_chunks<U: Send, E: Send>(
    out: &mut [U],
    body: impl Fn(&mut [U], usize) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let n = out.len();
    let len = chunk_len(n);
    if n <= len {
        body(out, 0)
    } else {
        let results: Vec<Result<(), E>> = out
            .par_chunks_mut(len)
            .enumerate()
            .map(|(i, c)| body(c, i * len))
            .collect();
        results.into_iter().collect()
    }
}

/// A raw output pointer shared by tasks that write disjoint, bounds-checked
/// positions (scan lines that interleave in memory).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: `SharedOut` is only used by kernels whose tasks write disjoint sets of
// positions; every write is bounds-checked in `write`.
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above; no position is read or written by two tasks.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T: Copy> SharedOut<T> {
    /// Replaces the value at `i` by `f(old)`, panicking (never touching memory)
    /// if `i` is out of bounds.
    #[inline(always)]
    pub(crate) fn update(&self, i: usize, f: impl FnOnce(T) -> T) {
        assert!(
            i < self.len,
            "kernel write at {i} past the output of {} elements",
            self.len
        );
        // SAFETY: in bounds (checked above) of a slice that outlives the kernel;
        // the caller guarantees no other task reads or writes position `i`.
        unsafe {
            let p = self.ptr.add(i);
            p.write(f(p.read()));
        }
    }
}

impl<T> SharedOut<T> {
    pub(crate) fn new(out: &mut [T]) -> Self {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }
    /// The `len` positions from `start` as a slice, panicking if they exceed
    /// the output. The caller must be the only task touching that range.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn slice_mut(&self, start: usize, len: usize) -> &mut [T] {
        assert!(
            start <= self.len && len <= self.len - start,
            "kernel range {start}+{len} past the output of {} elements",
            self.len
        );
        // SAFETY: the range is in bounds (checked above) of a slice that outlives
        // the kernel, and the caller's task is the only one using it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// Writes `v` at `i`, panicking (never writing) if `i` is out of bounds.
    #[inline(always)]
    pub(crate) fn write(&self, i: usize, v: T) {
        assert!(
            i < self.len,
            "kernel write at {i} past the output of {} elements",
            self.len
        );
        // SAFETY: `i` is in bounds of the slice this pointer came from, which
        // outlives the kernel, and no other task writes position `i`.
        unsafe { self.ptr.add(i).write(v) }
    }
}
