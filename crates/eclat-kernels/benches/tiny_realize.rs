//! The Rust side of a tiny realize, as `x.add(1)` on a 4-element float32
//! tensor sends it: a constant reshaped and expanded, and one fused add. What a
//! repeated realize costs here (decode cache hit, layouts and type checks kept
//! with the program, one small kernel) and how many heap allocations it makes.
//!
//! `cargo bench -p eclat-kernels --bench tiny_realize`

#[path = "../tests/support/mod.rs"]
mod support;

use eclat_kernels::{execute, DType, Op};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use support::{as_bytes, as_bytes_mut, Builder, ExprStep};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn main() {
    let mut b = Builder::default();
    let one = b.load(0, DType::F32, &[]);
    let one = b.op(Op::Reshape, DType::F32, &[1], &[one], &[]);
    let one = b.op(Op::Expand, DType::F32, &[4], &[one], &[]);
    let x = b.load(1, DType::F32, &[4]);
    let add = ExprStep {
        op: Some(Op::Add),
        dtype: DType::F32,
        operands: vec![0, 1],
        value: 0.0,
    };
    let y = b.fused(Op::Add, DType::F32, &[4], &[x, one], &[], &[add]);
    let words = b.finish(&[y]);
    let (c, x) = ([1f32], [1f32, 2., 3., 4.]);
    let mut out = [0f32; 4];
    let run = |out: &mut [f32; 4]| {
        execute(
            &words,
            &[as_bytes(&c), as_bytes(&x)],
            &mut [as_bytes_mut(out)],
        )
        .unwrap()
    };
    run(&mut out);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    run(&mut out);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(out, [2., 3., 4., 5.]);
    const N: usize = 200_000;
    let best = (0..10)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                run(&mut out);
            }
            t.elapsed().as_secs_f64() * 1e9 / N as f64
        })
        .fold(f64::MAX, f64::min);
    println!("tiny realize (x.add(1), 4 float32), Rust side: {best:.0} ns best of 10x{N}, {allocations} heap allocations each");
}
