//! Branch-free float32 transcendentals that LLVM vectorizes inside the SIMD
//! kernels (no libm calls in the loop). Polynomials use fused multiply-adds,
//! one instruction each at the AVX2+FMA and AVX-512 levels (the baseline build
//! calls the C library's `fmaf`, which gives the same bits, slowly).
//!
//! Maximum error over the float32 range, measured by `cargo test` against
//! float64 results (see the tests below): `exp2` 2 ULP, `log2` 1 ULP, `sin`
//! 2.5 ULP (2.34 found by an exhaustive check of |x| <= 6400, where it reduces
//! in float32; 2.09 up to 10^6, reduced in float64; 1 ULP beyond, via libm;
//! `examples/sin_ulp.rs` repeats the exhaustive check).
//! sqrt and division are the exact IEEE instructions. float64 uses the platform
//! libm.

/// 2^x: round x to the nearest integer n, a degree-7 polynomial for 2^f on the
/// remainder f in [-0.5, 0.5], then scale by 2^n in two steps so that results
/// in the subnormal range are rounded once.
#[inline(always)]
pub fn exp2_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
                                     // Clamping (NaN becomes -160 here and is restored below).
    let xc = x.max(-160.0).min(128.0);
    let t = xc + MAGIC;
    let n = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let f = xc - (t - MAGIC);
    // Taylor coefficients of 2^f = e^(f ln 2); truncation error < 6e-9 on [-0.5, 0.5].
    let mut p = EXP2_POLY[0];
    for c in &EXP2_POLY[1..] {
        p = p.mul_add(f, *c);
    }
    let n1 = n >> 1;
    let n2 = n - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    let r = p * s1 * s2;
    if x.is_nan() {
        x
    } else {
        r
    }
}

/// The coefficients of [`exp2_f32`]'s polynomial, highest degree first
/// (Horner steps are fused multiply-adds: one rounding each).
pub const EXP2_POLY: [f32; 8] = [
    1.525_273_4e-5,
    1.540_353e-4,
    0.001_333_355_8,
    0.009_618_129,
    0.055_504_11,
    0.240_226_5,
    std::f32::consts::LN_2, // 0.693_147_2
    1.0,
];

/// log2(x): x = m·2^k with m in [√½, √2), then log(m) from the odd series in
/// t = (m-1)/(m+1), |t| < 0.172, evaluated in float64.
#[inline(always)]
pub fn log2_f32(x: f32) -> f32 {
    const SQRT_HALF_BITS: u32 = 0x3f35_04f3;
    // Subnormals are scaled into the normal range first.
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits();
    let k = (bits.wrapping_sub(SQRT_HALF_BITS) as i32) >> 23;
    let m = f32::from_bits(bits.wrapping_sub((k << 23) as u32));
    let k = k - if sub { 23 } else { 0 };
    // The series in float64 keeps the result within one rounding of exact.
    let m = m as f64;
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    // 2/ln 2 · (t + t³/3 + t⁵/5 + ...)
    const C: f64 = 2.0 / std::f64::consts::LN_2;
    let s = t
        * C
        * (1.0
            + t2 * (1.0 / 3.0
                + t2 * (1.0 / 5.0
                    + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0 + t2 * (1.0 / 11.0 + t2 / 13.0))))));
    let r = (k as f64 + s) as f32;
    let r = if x == 0.0 { f32::NEG_INFINITY } else { r };
    let r = if x == f32::INFINITY { x } else { r };
    let r = if x < 0.0 { f32::NAN } else { r };
    if x.is_nan() {
        x
    } else {
        r
    }
}

/// Arguments up to this magnitude reduce to k = 0 and r = x exactly (x/π
/// rounds to 0, and r = x - 0·π is x, signed zeros included), so [`sin_f32`]
/// is its polynomial of x alone: the vector kernels skip the reduction where
/// every lane is this small (the same bits).
pub const SIN_UNREDUCED_LIMIT: f32 = 1.5;

/// Arguments up to this magnitude take [`sin_f32`], reduced in float32.
pub const SIN_F32_LIMIT: f32 = 6400.0;

/// Arguments up to this magnitude take [`sin_f32_wide`], reduced in float64;
/// larger ones (and NaN/inf) need [`sin_f32_exact`].
pub const SIN_FAST_LIMIT: f32 = 1.0e6;

/// π in four float32 parts (each truncated): the first three have at most 12
/// significant bits, so k·part is exact for |k| < 2^12 (|x| <= [`SIN_F32_LIMIT`]
/// needs |k| < 2^11), and the sum is within 10^-18 of π, enough that x - k·π
/// keeps its relative accuracy even next to a multiple of π.
pub const PI_F32_PARTS: [f32; 4] = [
    3.140_625,
    9.675_025_939_941_406e-4,
    1.509_906_724_095_344_5e-7,
    5.126_688_136_514_179e-12,
];

/// x = k·π + r in float32 for |x| <= [`SIN_F32_LIMIT`]: returns r
/// (|r| <= π/2 plus a rounding) and k's low bits (k mod 2 is the sign).
#[inline(always)]
pub fn sin_reduce_f32(x: f32) -> (f32, u32) {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let t = x * std::f32::consts::FRAC_1_PI + MAGIC;
    let k = t - MAGIC;
    // Each k·part is exact, so the fused forms round as the plain ones would.
    let mut r = x;
    for part in PI_F32_PARTS {
        r = (-k).mul_add(part, r);
    }
    (r, t.to_bits())
}

/// π = HI + LO, HI with 31 significant bits (k·HI is exact for |k| < 2^22).
pub const PI_F64_HI: f64 = 3.141_592_653_468_251_2;
pub const PI_F64_LO: f64 = 1.215_420_101_301_238_4e-10;

/// The same reduction in float64 for |x| <= [`SIN_FAST_LIMIT`] (π split in
/// two so k·π is exact for these k), r rounded to float32 at the end.
#[inline(always)]
pub fn sin_reduce_f64(x: f32) -> (f32, u32) {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    let xd = x as f64;
    let k = (xd * std::f64::consts::FRAC_1_PI + MAGIC) - MAGIC;
    let r = (xd - k * PI_F64_HI) - k * PI_F64_LO;
    (r as f32, k as i32 as u32)
}

/// sin(k·π + r) = ±sin(r) from the reduced argument and k's low bits: one odd
/// minimax polynomial on [-π/2, π/2], evaluated with fused multiply-adds.
#[inline(always)]
pub fn sin_half_turn(r: f32, k: u32) -> f32 {
    let r2 = r * r;
    let p = SIN_POLY[3]
        .mul_add(r2, SIN_POLY[2])
        .mul_add(r2, SIN_POLY[1])
        .mul_add(r2, SIN_POLY[0]);
    let v = (r * r2).mul_add(p, r);
    // k odd: flip the sign bit (as the vector code does).
    f32::from_bits(v.to_bits() ^ (k << 31))
}

/// sin(r) ≈ r + r³·(S0 + r²·(S1 + r²·(S2 + r²·S3))) on [-π/2, π/2]: fitted for
/// the least maximum relative error (6.5·10^-9, 0.11 ULP, before rounding).
pub const SIN_POLY: [f32; 4] = [
    -1.666_665_9e-1,
    8.333_059e-3,
    -1.980_916_9e-4,
    2.604_922_4e-6,
];

/// sin(x) for |x| <= [`SIN_F32_LIMIT`], all in float32 (vectorizes at the
/// full float32 width).
#[inline(always)]
pub fn sin_f32(x: f32) -> f32 {
    let (r, k) = sin_reduce_f32(x);
    let v = sin_half_turn(r, k);
    // The polynomial's negative r³ term turns sin(-0) into +0.
    if x == 0.0 {
        x
    } else {
        v
    }
}

/// sin(x) for |x| <= [`SIN_FAST_LIMIT`]: reduction in float64, polynomial in float32.
#[inline(always)]
pub fn sin_f32_wide(x: f32) -> f32 {
    let (r, k) = sin_reduce_f64(x);
    sin_half_turn(r, k)
}

/// sin(x) for any argument, through float64 libm (exact reduction of huge arguments).
#[inline(never)]
pub fn sin_f32_exact(x: f32) -> f32 {
    (x as f64).sin() as f32
}

/// sin(x) for any float32: the path its magnitude takes in every kernel.
#[inline(always)]
pub fn sin_f32_any(x: f32) -> f32 {
    let a = x.abs();
    if a <= SIN_F32_LIMIT {
        sin_f32(x)
    } else if a <= SIN_FAST_LIMIT {
        sin_f32_wide(x)
    } else {
        sin_f32_exact(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in float32 ULPs between `got` and the float64 reference.
    fn ulps(got: f32, want: f64) -> f64 {
        if want.is_nan() {
            return if got.is_nan() { 0.0 } else { f64::INFINITY };
        }
        let w = want as f32;
        if w.is_infinite() || got.is_infinite() {
            return if got == w { 0.0 } else { f64::INFINITY };
        }
        // The ULP of the float32 nearest to the reference (subnormal spacing below MIN_POSITIVE).
        let ulp = if w.abs() < f32::MIN_POSITIVE {
            f32::from_bits(1) as f64
        } else {
            (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64
        };
        ((got as f64) - want).abs() / ulp
    }

    /// Every `step`-th float32 bit pattern (both signs) plus the special values.
    fn samples(step: u32) -> impl Iterator<Item = f32> {
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        (0..0x7f80_0000u32)
            .step_by(step as usize)
            .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
            .chain(specials)
    }

    #[inline(always)]
    fn apply_all(f: &impl Fn(f32) -> f32, xs: &[f32]) -> Vec<f32> {
        xs.iter().map(|&x| f(x)).collect()
    }

    /// The largest error and where it occurs, with `f` compiled (and vectorized)
    /// for the SIMD level in use, as the kernels run it.
    fn worst(
        f: impl Fn(f32) -> f32,
        reference: impl Fn(f64) -> f64,
        inputs: impl Iterator<Item = f32>,
    ) -> (f64, f32) {
        let xs: Vec<f32> = inputs.collect();
        let ys = crate::dispatch!(apply_all(&f, &xs));
        xs.iter()
            .zip(ys)
            .map(|(&x, y)| (ulps(y, reference(x as f64)), x))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    #[test]
    fn exp2_within_2_ulp() {
        let (e, x) = worst(exp2_f32, f64::exp2, samples(97));
        assert!(e <= 2.0, "exp2 error {e} ULP at {x}");
        let dense = (-1_000_000..1_000_000).map(|i| i as f32 * 1.6e-4);
        let (e, x) = worst(exp2_f32, f64::exp2, dense);
        assert!(e <= 2.0, "exp2 error {e} ULP at {x}");
        assert_eq!(exp2_f32(128.0), f32::INFINITY);
        assert_eq!(exp2_f32(-150.0), 0.0); // exactly half the smallest subnormal: ties to even
        assert_eq!(exp2_f32(-149.0), f32::from_bits(1));
        assert_eq!(exp2_f32(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn log2_within_1_ulp() {
        let (e, x) = worst(log2_f32, f64::log2, samples(97));
        assert!(e <= 1.0, "log2 error {e} ULP at {x}");
        let near_one = (0..2_000_000).map(|i| 0.9 + i as f32 * 1e-7);
        let (e, x) = worst(log2_f32, f64::log2, near_one);
        assert!(e <= 1.0, "log2 error {e} ULP at {x}");
        assert_eq!(log2_f32(0.0), f32::NEG_INFINITY);
        assert!(log2_f32(-1.0).is_nan());
        assert_eq!(log2_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(log2_f32(f32::from_bits(1)), -149.0);
    }

    #[test]
    fn arguments_up_to_the_unreduced_limit_reduce_to_themselves() {
        let edge = [SIN_UNREDUCED_LIMIT, -SIN_UNREDUCED_LIMIT, 1e-30, 0.0, -0.0];
        for x in edge
            .into_iter()
            .chain((0..=15_000).map(|i| i as f32 * 1e-4))
        {
            let (r, k) = sin_reduce_f32(x);
            assert_eq!((r.to_bits(), k & 1), (x.to_bits(), 0), "x = {x}");
            assert_eq!(sin_half_turn(x, 0).to_bits(), sin_half_turn(r, k).to_bits());
        }
    }

    #[test]
    fn sin_within_2_5_ulp() {
        let small = samples(97).filter(|x| x.abs() <= SIN_F32_LIMIT);
        let (e, x) = worst(sin_f32, f64::sin, small);
        assert!(e <= 2.5, "sin error {e} ULP at {x}");
        let dense = (-2_000_000..2_000_000).map(|i| i as f32 * 3.1e-3);
        let (e, x) = worst(sin_f32, f64::sin, dense);
        assert!(e <= 2.5, "sin error {e} ULP at {x}");
        // Near multiples of π/2 the result is tiny or the sign flips; the
        // reductions keep it accurate.
        let near = |limit: f32| {
            (1..1_000_000)
                .map(|k| (k as f64 * std::f64::consts::FRAC_PI_2) as f32)
                .flat_map(|x| {
                    [
                        x,
                        f32::from_bits(x.to_bits() - 1),
                        f32::from_bits(x.to_bits() + 1),
                    ]
                })
                .filter(move |x| x.abs() <= limit)
        };
        let (e, x) = worst(sin_f32, f64::sin, near(SIN_F32_LIMIT));
        assert!(e <= 2.5, "sin error {e} ULP at {x}");
        let wide = |x: &f32| x.abs() > SIN_F32_LIMIT && x.abs() <= SIN_FAST_LIMIT;
        let (e, x) = worst(sin_f32_wide, f64::sin, samples(97).filter(wide));
        assert!(e <= 2.5, "sin error {e} ULP at {x}");
        let (e, x) = worst(sin_f32_wide, f64::sin, near(SIN_FAST_LIMIT).filter(wide));
        assert!(e <= 2.5, "sin error {e} ULP at {x}");
        let huge = samples(9973).filter(|x| !(x.abs() <= SIN_FAST_LIMIT));
        let (e, x) = worst(sin_f32_exact, f64::sin, huge);
        assert!(e <= 1.0, "sin error {e} ULP at {x}");
        // The dispatcher picks each path by magnitude, odd symmetry included.
        for x in [0.0f32, 1.0, 6400.0, 6400.001, 1e6, 1.1e6, f32::MAX] {
            assert_eq!(
                sin_f32_any(-x).to_bits(),
                (-sin_f32_any(x)).to_bits(),
                "sin(-{x})"
            );
        }
        assert_eq!(sin_f32_any(-0.0).to_bits(), (-0.0f32).to_bits());
        assert!(sin_f32_any(f32::NAN).is_nan() && sin_f32_any(f32::INFINITY).is_nan());
    }
}
