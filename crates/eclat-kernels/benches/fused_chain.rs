//! Elementwise expressions on 16M float32: Eclat's fused kernel (an encoded
//! program, as a realize sends it) against the same expression written by hand
//! as one Rust loop, on the same thread pool and SIMD level. A 12-op chain
//! (target: fused within 1.5x), and `sin(x)*exp2(x)+sqrt(x)` (bench (a)).
//!
//! `cargo bench -p eclat-kernels --bench fused_chain`

#[path = "../tests/support/mod.rs"]
mod support;

use eclat_kernels::pool::pool;
use eclat_kernels::{dispatch, execute, math, simd, DType, Op};
use rayon::prelude::*;
use std::time::Instant;
use support::{as_bytes, as_bytes_mut, Builder, ExprStep};

const N: usize = 16 << 20;

/// y = 1 / (exp2(-min(sqrt(max(x*1.5+0.25, 0.5)^2) + x, 2)) * x + 1)
#[inline(always)]
fn by_hand(out: &mut [f32], x: &[f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        let t = (x * 1.5 + 0.25).max(0.5);
        let t = ((t * t).sqrt() + x).min(2.0);
        *o = 1.0 / (math::exp2_f32(-t) * x + 1.0);
    }
}

/// sin(x)*exp2(x)+sqrt(x), 64 values at a time: vectorized unless a block
/// holds an argument too large for the fast sine. Plain loops only: a closure
/// that does not inline would run outside the SIMD level's code.
#[inline(always)]
fn transcendental_by_hand(out: &mut [f32], x: &[f32]) {
    for (o, x) in out.chunks_mut(64).zip(x.chunks(64)) {
        let mut fast = true;
        for v in x {
            fast &= v.abs() <= math::SIN_F32_LIMIT;
        }
        if fast {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = math::sin_f32(x) * math::exp2_f32(x) + x.sqrt();
            }
        } else {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = math::sin_f32_any(x) * math::exp2_f32(x) + x.sqrt();
            }
        }
    }
}

/// A loop compiled for the SIMD level in use: the loop body is inlined into
/// each level's code by `dispatch!` (through a generic or a closure it may stay
/// a call into the baseline build).
macro_rules! simd_level {
    ($f:ident) => {{
        fn run(o: &mut [f32], x: &[f32]) {
            dispatch!($f(o, x))
        }
        run
    }};
}

fn transcendental_program() -> Vec<f64> {
    let steps = vec![
        ExprStep::f32(Op::Sin, &[0]),    // 1
        ExprStep::f32(Op::Exp2, &[0]),   // 2
        ExprStep::f32(Op::Mul, &[1, 2]), // 3
        ExprStep::f32(Op::Sqrt, &[0]),   // 4
        ExprStep::f32(Op::Add, &[3, 4]), // 5
    ];
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[N]);
    let y = b.fused(Op::Add, DType::F32, &[N], &[x], &[], &steps);
    b.finish(&[y])
}

fn program() -> Vec<f64> {
    let (f, c) = (ExprStep::f32, ExprStep::f32_const);
    // register 0 is x; constants are registers too
    let steps = vec![
        c(1.5),                   // 1
        f(Op::Mul, &[0, 1]),      // 2  x*1.5
        c(0.25),                  // 3
        f(Op::Add, &[2, 3]),      // 4
        c(0.5),                   // 5
        f(Op::Maximum, &[4, 5]),  // 6
        f(Op::Mul, &[6, 6]),      // 7
        f(Op::Sqrt, &[7]),        // 8
        f(Op::Add, &[8, 0]),      // 9
        c(2.0),                   // 10
        f(Op::Minimum, &[9, 10]), // 11
        f(Op::Neg, &[11]),        // 12
        f(Op::Exp2, &[12]),       // 13
        f(Op::Mul, &[13, 0]),     // 14
        c(1.0),                   // 15
        f(Op::Add, &[14, 15]),    // 16
        f(Op::Recip, &[16]),      // 17
    ];
    let mut b = Builder::default();
    let x = b.load(0, DType::F32, &[N]);
    let y = b.fused(Op::Recip, DType::F32, &[N], &[x], &[], &steps);
    b.finish(&[y])
}

/// Medians (ms) of `a` and `b` timed in turns, after one warm-up run of each:
/// this machine's speed drifts in phases lasting several runs, and taking
/// turns puts both under the same phases.
fn medians(mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    a();
    b();
    let (mut ta, mut tb): (Vec<f64>, Vec<f64>) =
        (0..21).map(|_| (time(&mut a), time(&mut b))).unzip();
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    (median(&mut ta), median(&mut tb))
}

/// Times the fused program against the hand-written loop and checks they agree
/// bitwise. `by_hand` dispatches to the SIMD level itself (see `simd_level!`).
fn compare(name: &str, words: &[f64], by_hand: fn(&mut [f32], &[f32]), x: &[f32], target: &str) {
    let mut fused_out = vec![0f32; N];
    let mut hand_out = vec![0f32; N];
    let chunk = N.div_ceil(eclat_kernels::num_threads() * 4);
    let (fused_ms, hand_ms) = medians(
        || execute(words, &[as_bytes(x)], &mut [as_bytes_mut(&mut fused_out)]).unwrap(),
        || {
            pool().install(|| {
                hand_out
                    .par_chunks_mut(chunk)
                    .zip(x.par_chunks(chunk))
                    .for_each(|(o, x)| by_hand(o, x));
            })
        },
    );
    assert!(
        fused_out
            .iter()
            .zip(&hand_out)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{name}: fused and hand-written results differ"
    );
    let gbps = |ms: f64| (2 * N * 4) as f64 / (ms / 1e3) / 1e9;
    println!(
        "{name}, 16M float32, {} threads, SIMD {}",
        eclat_kernels::num_threads(),
        simd::level().name()
    );
    println!(
        "  hand-written fused loop: {hand_ms:7.2} ms ({:.1} GB/s)",
        gbps(hand_ms)
    );
    println!(
        "  Eclat fused kernel:      {fused_ms:7.2} ms ({:.1} GB/s)",
        gbps(fused_ms)
    );
    println!(
        "  ratio fused / hand:      {:.2}x{target}",
        fused_ms / hand_ms
    );
}

fn main() {
    let x: Vec<f32> = (0..N).map(|i| (i % 1000) as f32 / 1000.0).collect();
    compare(
        "12-op chain",
        &program(),
        simd_level!(by_hand),
        &x,
        " (target <= 1.5x)",
    );
    compare(
        "sin(x)*exp2(x)+sqrt(x)",
        &transcendental_program(),
        simd_level!(transcendental_by_hand),
        &x,
        "",
    );
}
