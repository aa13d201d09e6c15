//! Exhaustive check of the float32 sine's error: every float32 argument up to
//! 10^6 in magnitude (sin is odd, so positive ones), against float64 `sin`.
//! The result is what `math`'s documentation states; `cargo test` samples the
//! same range.
//!
//! `cargo run --release -p eclat-kernels --example sin_ulp` (about 30 s on two cores)

use eclat_kernels::math::{sin_f32, sin_f32_wide, SIN_F32_LIMIT, SIN_FAST_LIMIT};
use rayon::prelude::*;

/// |got - want| in units of the last place of the float32 nearest `want`.
fn ulps(got: f32, want: f64) -> f64 {
    let w = (want as f32).abs();
    let ulp = if w < f32::MIN_POSITIVE {
        f32::from_bits(1) as f64
    } else {
        (f32::from_bits(w.to_bits() + 1) - w) as f64
    };
    ((got as f64) - want).abs() / ulp
}

/// The worst error of `f` over the float32 bit patterns `bits`, and where.
fn worst(bits: std::ops::Range<u32>, f: fn(f32) -> f32) -> (f64, f32) {
    bits.into_par_iter()
        .map(|b| {
            let x = f32::from_bits(b);
            (ulps(f(x), (x as f64).sin()), x)
        })
        .reduce(|| (0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
}

fn main() {
    let (small, wide) = (SIN_F32_LIMIT.to_bits() + 1, SIN_FAST_LIMIT.to_bits() + 1);
    let (e, x) = worst(1..small, sin_f32);
    println!("reduced in float32, 0 < x <= {SIN_F32_LIMIT}: worst {e:.3} ULP at {x}");
    let (e, x) = worst(small..wide, sin_f32_wide);
    println!(
        "reduced in float64, {SIN_F32_LIMIT} < x <= {SIN_FAST_LIMIT}: worst {e:.3} ULP at {x}"
    );
}
