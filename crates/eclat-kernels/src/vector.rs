//! Vector registers as values, for the tile machine ([`crate::kernels::tile`]).
//!
//! Most kernels are plain loops that LLVM vectorizes per SIMD level. The tile
//! machine instead carries a tile of values in registers from one interpreted
//! step to the next, which only stays in registers when the tile is made of
//! vector-typed values; this module gives those values for AVX-512 and AVX2,
//! float32 and float64. Every op rounds exactly as the scalar code does (IEEE
//! add, mul, div, sqrt; the same NaN rules for max/min and comparisons), so
//! tile results are bit-identical to the other kernels. float32 `exp2`,
//! `log2` and `sin` are the [`crate::math`] functions spelled in intrinsics
//! (the same operations in the same order, fused multiply-adds where they
//! fuse; a vector holding a sine
//! argument beyond 10^6, NaN or infinity goes lane by lane); float64 ones call the
//! platform's functions lane by lane.
//!
//! Every method must be called from code compiled with the ISA's features
//! ([`crate::simd::avx512`], [`crate::simd::avx2`]).

#![allow(clippy::missing_safety_doc)]
// exp2's coefficients are spelled as `math::exp2_f32` spells them (0.693_147_2 is ln 2 there too).
#![allow(clippy::approx_constant)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Arguments up to this magnitude give normal results of 2^x, which
/// [`Vector::exp2_moderate`] scales by adding to the exponent.
pub const EXP2_MODERATE_LIMIT: f32 = 125.0;

/// One vector register of `LANES` elements of `T`.
pub trait Vector<T: Copy>: Copy {
    const LANES: usize;
    unsafe fn load(p: *const T) -> Self;
    unsafe fn store(self, p: *mut T);
    /// Stores past the caches (a non-temporal store) to `p`, which must be
    /// aligned to the vector's size: for outputs too large to be read back
    /// from cache, it skips reading each line in before writing it.
    /// Needs a store fence ([`crate::simd::store_fence`]) before another
    /// thread reads the data.
    unsafe fn stream(self, p: *mut T);
    unsafe fn splat(v: T) -> Self;
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    /// `1 / self`.
    unsafe fn recip(self) -> Self;
    unsafe fn sqrt(self) -> Self;
    unsafe fn neg(self) -> Self;
    /// [`crate::dtype::max_nan`]: NaN if `self` is NaN, else the larger (or NaN `o`).
    unsafe fn max_nan(self, o: Self) -> Self;
    /// [`crate::dtype::min_nan`].
    unsafe fn min_nan(self, o: Self) -> Self;
    /// [`Vector::max_nan`] for an `o` without NaN lanes, such as a broadcast
    /// number: one instruction on x86, whose max returns its second operand
    /// for a NaN or a tie.
    #[inline(always)]
    unsafe fn max_nan_by_number(self, o: Self) -> Self {
        self.max_nan(o)
    }
    /// [`Vector::min_nan`] for an `o` without NaN lanes.
    #[inline(always)]
    unsafe fn min_nan_by_number(self, o: Self) -> Self {
        self.min_nan(o)
    }
    /// 1 where `self < o`, else 0.
    unsafe fn lt(self, o: Self) -> Self;
    /// 1 where `self == o`, else 0.
    unsafe fn eq(self, o: Self) -> Self;
    /// 1 where `self == 0`, else 0.
    unsafe fn is_zero(self) -> Self;
    /// `a` where `self != 0`, else `b`.
    unsafe fn select(self, a: Self, b: Self) -> Self;
    /// 2^x, bit-identical to [`crate::math::exp2_f32`] for float32 (float64:
    /// the platform's `exp2` per lane).
    unsafe fn exp2(self) -> Self;
    /// The larger magnitude, lane by lane, of `self` and `so_far` (zero or an
    /// earlier result), compared as the bits of |x| so that NaN ranks above
    /// infinity. Folded over a tile, it lets [`Vector::magnitudes_at_most`]
    /// pick the cheapest path of a transcendental every lane allows in one
    /// pass. By default (float64) the magnitude checks never pass.
    #[inline(always)]
    unsafe fn max_magnitude(self, so_far: Self) -> Self {
        let _ = self;
        so_far
    }
    /// Whether every lane of a [`Vector::max_magnitude`] result is at most
    /// `limit` (never a NaN lane).
    #[inline(always)]
    unsafe fn magnitudes_at_most(self, limit: f32) -> bool {
        let _ = (self, limit);
        false
    }
    /// [`Vector::exp2`] for vectors whose magnitudes are at most
    /// [`EXP2_MODERATE_LIMIT`].
    #[inline(always)]
    unsafe fn exp2_moderate(self) -> Self {
        self.exp2()
    }
    /// sin(x), bit-identical to [`crate::math::sin_f32_any`] for float32
    /// (float64: the platform's `sin` per lane).
    unsafe fn sin(self) -> Self;
    /// [`Vector::sin`] for vectors whose magnitudes are at most
    /// [`crate::math::SIN_F32_LIMIT`]: no checks for larger arguments.
    #[inline(always)]
    unsafe fn sin_small(self) -> Self {
        self.sin()
    }
    /// [`Vector::sin`] for vectors whose magnitudes are at most
    /// [`crate::math::SIN_UNREDUCED_LIMIT`]: no argument reduction.
    #[inline(always)]
    unsafe fn sin_unreduced(self) -> Self {
        self.sin()
    }
    /// log2(x), bit-identical to [`crate::math::log2_f32`] for float32
    /// (float64: the platform's `log2` per lane).
    unsafe fn log2(self) -> Self;
}

/// The float64 series of [`crate::math::log2_f32`] for one vector of widened
/// mantissas `m` in [√½, √2): the same operations in the same order.
macro_rules! log2_series {
    ($m:expr, $set1:ident, $add:ident, $sub:ident, $mul:ident, $div:ident) => {{
        let m = $m;
        let one = $set1(1.0);
        let t = $div($sub(m, one), $add(m, one));
        let t2 = $mul(t, t);
        let mut p = $div(t2, $set1(13.0));
        for c in [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0] {
            p = $mul(t2, $add($set1(c), p));
        }
        $mul($mul(t, $set1(2.0 / std::f64::consts::LN_2)), $add(one, p))
    }};
}

/// `f` applied lane by lane through memory: float64 transcendentals, and
/// float32 sines of vectors holding an argument beyond
/// [`crate::math::SIN_FAST_LIMIT`], NaN or infinity.
macro_rules! lane_by_lane {
    ($v:expr, $T:ty, $lanes:expr, $f:expr) => {{
        let mut buf = [0.0 as $T; $lanes];
        $v.store(buf.as_mut_ptr());
        for v in buf.iter_mut() {
            *v = $f(*v);
        }
        Self::load(buf.as_ptr())
    }};
}

/// A float64 vector's transcendentals: the platform's functions lane by lane.
macro_rules! float64_transcendentals {
    ($lanes:expr) => {
        #[inline(always)]
        unsafe fn exp2(self) -> Self {
            lane_by_lane!(self, f64, $lanes, f64::exp2)
        }
        #[inline(always)]
        unsafe fn sin(self) -> Self {
            lane_by_lane!(self, f64, $lanes, f64::sin)
        }
        #[inline(always)]
        unsafe fn log2(self) -> Self {
            lane_by_lane!(self, f64, $lanes, f64::log2)
        }
    };
}

/// [`crate::math::sin_reduce_f32`] on one float32 vector: the same operations
/// in the same order. Returns r and the rounded quotient `t`, whose low bit
/// is k's parity (the sign of sin r to apply).
macro_rules! sin_reduce_f32 {
    ($x:expr, $set1:ident, $add:ident, $sub:ident, $mul:ident, $fnmadd:ident) => {{
        let x = $x;
        let magic = $set1(12_582_912.0);
        let t = $add($mul(x, $set1(std::f32::consts::FRAC_1_PI)), magic);
        let k = $sub(t, magic);
        let mut r = x;
        for p in crate::math::PI_F32_PARTS {
            r = $fnmadd(k, $set1(p), r);
        }
        (r, t)
    }};
}

/// [`crate::math::sin_reduce_f64`] on one float64 vector of widened arguments:
/// returns r (still float64) and k.
macro_rules! sin_reduce_f64 {
    ($xd:expr, $set1:ident, $add:ident, $sub:ident, $mul:ident) => {{
        let xd = $xd;
        let magic = $set1(6_755_399_441_055_744.0);
        let k = $sub(
            $add($mul(xd, $set1(std::f64::consts::FRAC_1_PI)), magic),
            magic,
        );
        let r = $sub(xd, $mul(k, $set1(crate::math::PI_F64_HI)));
        ($sub(r, $mul(k, $set1(crate::math::PI_F64_LO))), k)
    }};
}

/// The polynomial of [`crate::math::sin_half_turn`] on one float32 vector:
/// the same operations in the same order. Returns sin r.
macro_rules! sin_polynomial {
    ($r:expr, $set1:ident, $mul:ident, $fmadd:ident) => {{
        let r = $r;
        let r2 = $mul(r, r);
        let [s0, s1, s2, s3] = crate::math::SIN_POLY;
        let p = $fmadd(
            $fmadd($fmadd($set1(s3), r2, $set1(s2)), r2, $set1(s1)),
            r2,
            $set1(s0),
        );
        $fmadd($mul(r, r2), p, r)
    }};
}

/// The reduction and polynomial of [`crate::math::exp2_f32`] on one vector of
/// (clamped) arguments: x = n + f with f in [-0.5, 0.5]; returns (2^f, n).
macro_rules! exp2_reduced {
    ($xc:expr, $set1:ident, $add:ident, $sub:ident, $set1_epi32:ident, $sub_epi32:ident,
     $as_int:ident, $fmadd:ident) => {{
        const MAGIC: f32 = 12_582_912.0;
        let magic = $set1(MAGIC);
        let xc = $xc;
        let t = $add(xc, magic);
        let n = $sub_epi32($as_int(t), $set1_epi32(MAGIC.to_bits() as i32));
        let f = $sub(xc, $sub(t, magic));
        // The polynomial of `exp2_f32`, innermost term first.
        let mut p = $set1(crate::math::EXP2_POLY[0]);
        for c in &crate::math::EXP2_POLY[1..] {
            p = $fmadd(p, f, $set1(*c));
        }
        (p, n)
    }};
}

/// [`crate::math::exp2_f32`] in registers: the same operations in the same
/// order, so the same bits. When every lane has |x| <= 125 the result is
/// normal, and scaling by 2^n is adding n to the exponent (`exp2_moderate`):
/// the same value as the two exact multiplications the scalar function makes
/// (which keep subnormal results rounded once), for a third fewer operations.
macro_rules! exp2_f32_in_registers {
    ($name:ident, $set1:ident, $add:ident, $sub:ident, $mul:ident, $max:ident, $min:ident,
     $set1_epi32:ident, $add_epi32:ident, $sub_epi32:ident, $srai:ident, $slli:ident,
     $as_int:ident, $as_float:ident, $fmadd:ident, |$x:ident, $r:ident| $keep_nan:expr) => {
        #[inline(always)]
        unsafe fn exp2(self) -> Self {
            let x = self.0;
            // max(x, -160) is -160 for NaN, as f32::max is; NaN comes back below.
            let (p, n) = exp2_reduced!(
                $min($max(x, $set1(-160.0)), $set1(128.0)),
                $set1,
                $add,
                $sub,
                $set1_epi32,
                $sub_epi32,
                $as_int,
                $fmadd
            );
            let n1 = $srai::<1>(n);
            let n2 = $sub_epi32(n, n1);
            let bias = $set1_epi32(127);
            let s1 = $as_float($slli::<23>($add_epi32(n1, bias)));
            let s2 = $as_float($slli::<23>($add_epi32(n2, bias)));
            let $r = $mul($mul(p, s1), s2);
            let $x = x;
            $name($keep_nan)
        }
        #[inline(always)]
        unsafe fn exp2_moderate(self) -> Self {
            // The result is normal: scaling by 2^n adds n to the exponent.
            let (p, n) = exp2_reduced!(
                self.0,
                $set1,
                $add,
                $sub,
                $set1_epi32,
                $sub_epi32,
                $as_int,
                $fmadd
            );
            $name($as_float($add_epi32($as_int(p), $slli::<23>(n))))
        }
    };
}

/// The methods every ISA spells the same way (loads, stores, IEEE arithmetic,
/// sign flip, maximum and minimum against a number), given the ISA's
/// intrinsics.
macro_rules! arithmetic {
    ($name:ident, $T:ty, $load:ident, $store:ident, $stream:ident, $set1:ident, $add:ident, $mul:ident,
     $div:ident, $sqrt:ident, $xor:ident, $max:ident, $min:ident, $sign:expr) => {
        #[inline(always)]
        unsafe fn load(p: *const $T) -> Self {
            $name($load(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut $T) {
            $store(p, self.0)
        }
        #[inline(always)]
        unsafe fn stream(self, p: *mut $T) {
            $stream(p, self.0)
        }
        #[inline(always)]
        unsafe fn splat(v: $T) -> Self {
            $name($set1(v))
        }
        #[inline(always)]
        unsafe fn add(self, o: Self) -> Self {
            $name($add(self.0, o.0))
        }
        #[inline(always)]
        unsafe fn mul(self, o: Self) -> Self {
            $name($mul(self.0, o.0))
        }
        #[inline(always)]
        unsafe fn recip(self) -> Self {
            $name($div($set1(1.0), self.0))
        }
        #[inline(always)]
        unsafe fn sqrt(self) -> Self {
            $name($sqrt(self.0))
        }
        #[inline(always)]
        unsafe fn neg(self) -> Self {
            $name($xor(self.0, $set1($sign)))
        }
        #[inline(always)]
        unsafe fn max_nan_by_number(self, o: Self) -> Self {
            $name($max(o.0, self.0))
        }
        #[inline(always)]
        unsafe fn min_nan_by_number(self, o: Self) -> Self {
            $name($min(o.0, self.0))
        }
    };
}

macro_rules! avx512_vector {
    ($name:ident, $T:ty, $V:ty, $lanes:expr, $sign:expr,
     $load:ident, $store:ident, $stream:ident, $set1:ident, $add:ident, $mul:ident, $div:ident,
     $sqrt:ident, $xor:ident, $cmp:ident, $max:ident, $min:ident, $blend:ident, $maskz:ident, transcendentals: $($transcendentals:tt)*) => {
        #[doc = concat!("AVX-512 register of ", stringify!($T), ".")]
        #[cfg(target_arch = "x86_64")]
        #[derive(Clone, Copy)]
        pub struct $name($V);

        #[cfg(target_arch = "x86_64")]
        impl Vector<$T> for $name {
            const LANES: usize = $lanes;
            arithmetic!($name, $T, $load, $store, $stream, $set1, $add, $mul, $div, $sqrt, $xor, $max, $min, $sign);
            #[inline(always)]
            unsafe fn max_nan(self, o: Self) -> Self {
                let a_num = $cmp::<_CMP_ORD_Q>(self.0, self.0);
                let take = $cmp::<_CMP_UNORD_Q>(o.0, o.0) | $cmp::<_CMP_GT_OQ>(o.0, self.0);
                $name($blend(a_num & take, self.0, o.0))
            }
            #[inline(always)]
            unsafe fn min_nan(self, o: Self) -> Self {
                let a_num = $cmp::<_CMP_ORD_Q>(self.0, self.0);
                let take = $cmp::<_CMP_UNORD_Q>(o.0, o.0) | $cmp::<_CMP_LT_OQ>(o.0, self.0);
                $name($blend(a_num & take, self.0, o.0))
            }
            #[inline(always)]
            unsafe fn lt(self, o: Self) -> Self {
                $name($maskz($cmp::<_CMP_LT_OQ>(self.0, o.0), $set1(1.0)))
            }
            #[inline(always)]
            unsafe fn eq(self, o: Self) -> Self {
                $name($maskz($cmp::<_CMP_EQ_OQ>(self.0, o.0), $set1(1.0)))
            }
            #[inline(always)]
            unsafe fn is_zero(self) -> Self {
                $name($maskz($cmp::<_CMP_EQ_OQ>(self.0, $set1(0.0)), $set1(1.0)))
            }
            #[inline(always)]
            unsafe fn select(self, a: Self, b: Self) -> Self {
                $name($blend($cmp::<_CMP_NEQ_UQ>(self.0, $set1(0.0)), b.0, a.0))
            }
            $($transcendentals)*
        }
    };
}

/// sin(x) from its reduced argument `r` and `k`'s low bits (see
/// [`crate::math::sin_half_turn`]), AVX-512.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sin_of_reduced_avx512(x: __m512, r: __m512, k: __m512i) -> Avx512F32 {
    let v = sin_polynomial!(r, _mm512_set1_ps, _mm512_mul_ps, _mm512_fmadd_ps);
    // k odd: flip the sign bit.
    let v = _mm512_xor_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32::<31>(k)));
    // sin(±0) is ±0 (see `math::sin_f32`).
    Avx512F32(_mm512_mask_blend_ps(
        _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_setzero_ps()),
        v,
        x,
    ))
}

/// [`sin_of_reduced_avx512`] for AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sin_of_reduced_avx2(x: __m256, r: __m256, k: __m256i) -> Avx2F32 {
    let v = sin_polynomial!(r, _mm256_set1_ps, _mm256_mul_ps, _mm256_fmadd_ps);
    let v = _mm256_xor_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32::<31>(k)));
    // sin(±0) is ±0 (see `math::sin_f32`).
    Avx2F32(_mm256_blendv_ps(
        v,
        x,
        _mm256_cmp_ps::<_CMP_EQ_OQ>(x, _mm256_setzero_ps()),
    ))
}

avx512_vector!(
    Avx512F32,
    f32,
    __m512,
    16,
    -0.0,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_stream_ps,
    _mm512_set1_ps,
    _mm512_add_ps,
    _mm512_mul_ps,
    _mm512_div_ps,
    _mm512_sqrt_ps,
    _mm512_xor_ps,
    _mm512_cmp_ps_mask,
    _mm512_max_ps,
    _mm512_min_ps,
    _mm512_mask_blend_ps,
    _mm512_maskz_mov_ps,
    transcendentals: exp2_f32_in_registers!(
        Avx512F32,
        _mm512_set1_ps,
        _mm512_add_ps,
        _mm512_sub_ps,
        _mm512_mul_ps,
        _mm512_max_ps,
        _mm512_min_ps,
        _mm512_set1_epi32,
        _mm512_add_epi32,
        _mm512_sub_epi32,
        _mm512_srai_epi32,
        _mm512_slli_epi32,
        _mm512_castps_si512,
        _mm512_castsi512_ps,
        _mm512_fmadd_ps,
        |x, r| _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), r, x)
    );
    #[inline(always)]
    unsafe fn sin(self) -> Self {
        let x = self.0;
        let abs = _mm512_abs_ps(x);
        let small = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(abs, _mm512_set1_ps(crate::math::SIN_F32_LIMIT));
        let (mut r, t) = sin_reduce_f32!(x, _mm512_set1_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps, _mm512_fnmadd_ps);
        let mut q = _mm512_castps_si512(t);
        if small != 0xffff {
            let wide = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(abs, _mm512_set1_ps(crate::math::SIN_FAST_LIMIT));
            if wide != 0xffff {
                return lane_by_lane!(self, f32, 16, crate::math::sin_f32_any);
            }
            // Larger arguments reduce in float64, eight lanes at a time.
            // (macros, not closures: a closure may stay a call outside the ISA's code)
            macro_rules! half {
                ($x:expr) => {{
                    let xd = _mm512_cvtps_pd($x);
                    let (r, k) = sin_reduce_f64!(xd, _mm512_set1_pd, _mm512_add_pd, _mm512_sub_pd, _mm512_mul_pd);
                    (_mm512_cvtpd_ps(r), _mm512_cvtpd_epi32(k))
                }};
            }
            let (r_lo, q_lo) = half!(_mm512_castps512_ps256(x));
            let (r_hi, q_hi) = half!(_mm512_extractf32x8_ps::<1>(x));
            let r_wide = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(r_lo), r_hi);
            let q_wide = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q_lo), q_hi);
            r = _mm512_mask_blend_ps(small, r_wide, r);
            q = _mm512_mask_blend_epi32(small, q_wide, q);
        }
        sin_of_reduced_avx512(x, r, q)
    }
    #[inline(always)]
    unsafe fn max_magnitude(self, so_far: Self) -> Self {
        let bits = _mm512_and_si512(_mm512_castps_si512(self.0), _mm512_set1_epi32(0x7fff_ffff));
        Avx512F32(_mm512_castsi512_ps(_mm512_max_epu32(bits, _mm512_castps_si512(so_far.0))))
    }
    #[inline(always)]
    unsafe fn magnitudes_at_most(self, limit: f32) -> bool {
        let limit = _mm512_set1_epi32(limit.to_bits() as i32);
        _mm512_cmple_epu32_mask(_mm512_castps_si512(self.0), limit) == 0xffff
    }
    #[inline(always)]
    unsafe fn sin_small(self) -> Self {
        let x = self.0;
        let (r, t) = sin_reduce_f32!(x, _mm512_set1_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps, _mm512_fnmadd_ps);
        sin_of_reduced_avx512(x, r, _mm512_castps_si512(t))
    }
    #[inline(always)]
    unsafe fn sin_unreduced(self) -> Self {
        // k = 0 and r = x (see `math::SIN_UNREDUCED_LIMIT`).
        sin_of_reduced_avx512(self.0, self.0, _mm512_setzero_si512())
    }
    #[inline(always)]
    unsafe fn log2(self) -> Self {
        const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
        let x = self.0;
        // Subnormals are scaled into the normal range first.
        let sub = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(f32::MIN_POSITIVE));
        let xs = _mm512_mask_mul_ps(x, sub, x, _mm512_set1_ps(8_388_608.0));
        let bits = _mm512_castps_si512(xs);
        let k = _mm512_srai_epi32::<23>(_mm512_sub_epi32(bits, _mm512_set1_epi32(SQRT_HALF_BITS)));
        let m = _mm512_castsi512_ps(_mm512_sub_epi32(bits, _mm512_slli_epi32::<23>(k)));
        let k = _mm512_mask_sub_epi32(k, sub, k, _mm512_set1_epi32(23));
        macro_rules! half {
            ($m:expr, $k:expr) => {{
                let s = log2_series!(
                    _mm512_cvtps_pd($m),
                    _mm512_set1_pd,
                    _mm512_add_pd,
                    _mm512_sub_pd,
                    _mm512_mul_pd,
                    _mm512_div_pd
                );
                _mm512_cvtpd_ps(_mm512_add_pd(_mm512_cvtepi32_pd($k), s))
            }};
        }
        let lo = half!(_mm512_castps512_ps256(m), _mm512_castsi512_si256(k));
        let hi = half!(_mm512_extractf32x8_ps::<1>(m), _mm512_extracti32x8_epi32::<1>(k));
        let r = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi);
        let zero = _mm512_setzero_ps();
        let r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, zero), r, _mm512_set1_ps(f32::NEG_INFINITY));
        let r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_set1_ps(f32::INFINITY)), r, x);
        let r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, zero), r, _mm512_set1_ps(f32::NAN));
        Avx512F32(_mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), r, x))
    }
);
avx512_vector!(
    Avx512F64,
    f64,
    __m512d,
    8,
    -0.0,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_stream_pd,
    _mm512_set1_pd,
    _mm512_add_pd,
    _mm512_mul_pd,
    _mm512_div_pd,
    _mm512_sqrt_pd,
    _mm512_xor_pd,
    _mm512_cmp_pd_mask,
    _mm512_max_pd,
    _mm512_min_pd,
    _mm512_mask_blend_pd,
    _mm512_maskz_mov_pd,
    transcendentals: float64_transcendentals!(8);
);

macro_rules! avx2_vector {
    ($name:ident, $T:ty, $V:ty, $lanes:expr, $sign:expr,
     $load:ident, $store:ident, $stream:ident, $set1:ident, $add:ident, $mul:ident, $div:ident,
     $sqrt:ident, $xor:ident, $and:ident, $or:ident, $cmp:ident, $max:ident, $min:ident, $blendv:ident, transcendentals: $($transcendentals:tt)*) => {
        #[doc = concat!("AVX2 register of ", stringify!($T), ".")]
        #[cfg(target_arch = "x86_64")]
        #[derive(Clone, Copy)]
        pub struct $name($V);

        #[cfg(target_arch = "x86_64")]
        impl Vector<$T> for $name {
            const LANES: usize = $lanes;
            arithmetic!($name, $T, $load, $store, $stream, $set1, $add, $mul, $div, $sqrt, $xor, $max, $min, $sign);
            #[inline(always)]
            unsafe fn max_nan(self, o: Self) -> Self {
                let a_num = $cmp::<_CMP_ORD_Q>(self.0, self.0);
                let take = $or(
                    $cmp::<_CMP_UNORD_Q>(o.0, o.0),
                    $cmp::<_CMP_GT_OQ>(o.0, self.0),
                );
                $name($blendv(self.0, o.0, $and(a_num, take)))
            }
            #[inline(always)]
            unsafe fn min_nan(self, o: Self) -> Self {
                let a_num = $cmp::<_CMP_ORD_Q>(self.0, self.0);
                let take = $or(
                    $cmp::<_CMP_UNORD_Q>(o.0, o.0),
                    $cmp::<_CMP_LT_OQ>(o.0, self.0),
                );
                $name($blendv(self.0, o.0, $and(a_num, take)))
            }
            #[inline(always)]
            unsafe fn lt(self, o: Self) -> Self {
                $name($and($cmp::<_CMP_LT_OQ>(self.0, o.0), $set1(1.0)))
            }
            #[inline(always)]
            unsafe fn eq(self, o: Self) -> Self {
                $name($and($cmp::<_CMP_EQ_OQ>(self.0, o.0), $set1(1.0)))
            }
            #[inline(always)]
            unsafe fn is_zero(self) -> Self {
                $name($and($cmp::<_CMP_EQ_OQ>(self.0, $set1(0.0)), $set1(1.0)))
            }
            #[inline(always)]
            unsafe fn select(self, a: Self, b: Self) -> Self {
                $name($blendv(b.0, a.0, $cmp::<_CMP_NEQ_UQ>(self.0, $set1(0.0))))
            }
            $($transcendentals)*
        }
    };
}

avx2_vector!(
    Avx2F32,
    f32,
    __m256,
    8,
    -0.0,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_stream_ps,
    _mm256_set1_ps,
    _mm256_add_ps,
    _mm256_mul_ps,
    _mm256_div_ps,
    _mm256_sqrt_ps,
    _mm256_xor_ps,
    _mm256_and_ps,
    _mm256_or_ps,
    _mm256_cmp_ps,
    _mm256_max_ps,
    _mm256_min_ps,
    _mm256_blendv_ps,
    transcendentals: exp2_f32_in_registers!(
        Avx2F32,
        _mm256_set1_ps,
        _mm256_add_ps,
        _mm256_sub_ps,
        _mm256_mul_ps,
        _mm256_max_ps,
        _mm256_min_ps,
        _mm256_set1_epi32,
        _mm256_add_epi32,
        _mm256_sub_epi32,
        _mm256_srai_epi32,
        _mm256_slli_epi32,
        _mm256_castps_si256,
        _mm256_castsi256_ps,
        _mm256_fmadd_ps,
        |x, r| _mm256_blendv_ps(r, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
    );
    #[inline(always)]
    unsafe fn sin(self) -> Self {
        let x = self.0;
        let abs = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)));
        let small = _mm256_cmp_ps::<_CMP_LE_OQ>(abs, _mm256_set1_ps(crate::math::SIN_F32_LIMIT));
        let (mut r, t) = sin_reduce_f32!(x, _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_fnmadd_ps);
        let mut q = _mm256_castps_si256(t);
        if _mm256_movemask_ps(small) != 0xff {
            let wide = _mm256_cmp_ps::<_CMP_LE_OQ>(abs, _mm256_set1_ps(crate::math::SIN_FAST_LIMIT));
            if _mm256_movemask_ps(wide) != 0xff {
                return lane_by_lane!(self, f32, 8, crate::math::sin_f32_any);
            }
            // Larger arguments reduce in float64, four lanes at a time.
            // (macros, not closures: a closure may stay a call outside the ISA's code)
            macro_rules! half {
                ($x:expr) => {{
                    let xd = _mm256_cvtps_pd($x);
                    let (r, k) = sin_reduce_f64!(xd, _mm256_set1_pd, _mm256_add_pd, _mm256_sub_pd, _mm256_mul_pd);
                    (_mm256_cvtpd_ps(r), _mm256_cvtpd_epi32(k))
                }};
            }
            let (r_lo, q_lo) = half!(_mm256_castps256_ps128(x));
            let (r_hi, q_hi) = half!(_mm256_extractf128_ps::<1>(x));
            r = _mm256_blendv_ps(_mm256_set_m128(r_hi, r_lo), r, small);
            q = _mm256_castps_si256(_mm256_blendv_ps(
                _mm256_castsi256_ps(_mm256_set_m128i(q_hi, q_lo)),
                _mm256_castsi256_ps(q),
                small,
            ));
        }
        sin_of_reduced_avx2(x, r, q)
    }
    #[inline(always)]
    unsafe fn max_magnitude(self, so_far: Self) -> Self {
        let bits = _mm256_and_si256(_mm256_castps_si256(self.0), _mm256_set1_epi32(0x7fff_ffff));
        Avx2F32(_mm256_castsi256_ps(_mm256_max_epu32(bits, _mm256_castps_si256(so_far.0))))
    }
    #[inline(always)]
    unsafe fn magnitudes_at_most(self, limit: f32) -> bool {
        // Magnitudes have no sign bit, so a signed comparison orders them.
        let limit = _mm256_set1_epi32(limit.to_bits() as i32);
        _mm256_movemask_epi8(_mm256_cmpgt_epi32(_mm256_castps_si256(self.0), limit)) == 0
    }
    #[inline(always)]
    unsafe fn sin_small(self) -> Self {
        let x = self.0;
        let (r, t) = sin_reduce_f32!(x, _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_fnmadd_ps);
        sin_of_reduced_avx2(x, r, _mm256_castps_si256(t))
    }
    #[inline(always)]
    unsafe fn sin_unreduced(self) -> Self {
        // k = 0 and r = x (see `math::SIN_UNREDUCED_LIMIT`).
        sin_of_reduced_avx2(self.0, self.0, _mm256_setzero_si256())
    }
    #[inline(always)]
    unsafe fn log2(self) -> Self {
        const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
        let x = self.0;
        // Subnormals are scaled into the normal range first.
        let sub = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(f32::MIN_POSITIVE));
        let xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(8_388_608.0)), sub);
        let bits = _mm256_castps_si256(xs);
        let k = _mm256_srai_epi32::<23>(_mm256_sub_epi32(bits, _mm256_set1_epi32(SQRT_HALF_BITS)));
        let m = _mm256_castsi256_ps(_mm256_sub_epi32(bits, _mm256_slli_epi32::<23>(k)));
        let k = _mm256_sub_epi32(k, _mm256_and_si256(_mm256_castps_si256(sub), _mm256_set1_epi32(23)));
        macro_rules! half {
            ($m:expr, $k:expr) => {{
                let s = log2_series!(
                    _mm256_cvtps_pd($m),
                    _mm256_set1_pd,
                    _mm256_add_pd,
                    _mm256_sub_pd,
                    _mm256_mul_pd,
                    _mm256_div_pd
                );
                _mm256_cvtpd_ps(_mm256_add_pd(_mm256_cvtepi32_pd($k), s))
            }};
        }
        let lo = half!(_mm256_castps256_ps128(m), _mm256_castsi256_si128(k));
        let hi = half!(_mm256_extractf128_ps::<1>(m), _mm256_extracti128_si256::<1>(k));
        let r = _mm256_set_m128(hi, lo);
        let zero = _mm256_setzero_ps();
        let r = _mm256_blendv_ps(r, _mm256_set1_ps(f32::NEG_INFINITY), _mm256_cmp_ps::<_CMP_EQ_OQ>(x, zero));
        let r = _mm256_blendv_ps(r, x, _mm256_cmp_ps::<_CMP_EQ_OQ>(x, _mm256_set1_ps(f32::INFINITY)));
        let r = _mm256_blendv_ps(r, _mm256_set1_ps(f32::NAN), _mm256_cmp_ps::<_CMP_LT_OQ>(x, zero));
        Avx2F32(_mm256_blendv_ps(r, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x)))
    }
);
avx2_vector!(
    Avx2F64,
    f64,
    __m256d,
    4,
    -0.0,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_stream_pd,
    _mm256_set1_pd,
    _mm256_add_pd,
    _mm256_mul_pd,
    _mm256_div_pd,
    _mm256_sqrt_pd,
    _mm256_xor_pd,
    _mm256_and_pd,
    _mm256_or_pd,
    _mm256_cmp_pd,
    _mm256_max_pd,
    _mm256_min_pd,
    _mm256_blendv_pd,
    transcendentals: float64_transcendentals!(4);
);

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::math::exp2_f32;
    use crate::simd::{self, Level};

    /// Every 97th float32 bit pattern of both signs, and the edges of exp2's range.
    fn samples() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..0x7f80_0000u32)
            .step_by(97)
            .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
            .collect();
        xs.extend([
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            128.0,
            127.99999,
            -126.0,
            -149.0,
            -150.0,
            -160.0,
            -1e30,
            0.0,
            -0.0,
        ]);
        xs.resize(xs.len().next_multiple_of(16), 1.0);
        xs
    }

    /// Runs `f` over `xs`, `V::LANES` at a time.
    unsafe fn run<V: Vector<f32>>(xs: &[f32], f: unsafe fn(V) -> V) -> Vec<f32> {
        let mut out = vec![0.0; xs.len()];
        for (o, x) in out
            .chunks_exact_mut(V::LANES)
            .zip(xs.chunks_exact(V::LANES))
        {
            f(V::load(x.as_ptr())).store(o.as_mut_ptr());
        }
        out
    }

    /// Whether the largest magnitude of `xs` (folded vector by vector, as a
    /// tile does) is at most `limit`.
    unsafe fn magnitudes_at_most<V: Vector<f32>>(xs: &[f32], limit: f32) -> bool {
        xs.chunks_exact(V::LANES)
            .fold(V::splat(0.0), |m, x| V::load(x.as_ptr()).max_magnitude(m))
            .magnitudes_at_most(limit)
    }

    #[test]
    fn magnitude_checks_bound_every_lane_and_fail_on_nan() {
        let limit = 1.5f32;
        let above = f32::from_bits(limit.to_bits() + 1);
        for level in simd::supported() {
            // Two vectors' worth at AVX-512, four at AVX2: one value replaced
            // at a lane of the first, a middle or the last vector.
            let check = |xs: &[f32]| -> Option<bool> {
                // SAFETY: `supported()` lists only levels this CPU runs.
                unsafe {
                    match level {
                        Level::Avx512 => {
                            Some(simd::avx512(|| magnitudes_at_most::<Avx512F32>(xs, limit)))
                        }
                        Level::Avx2 => {
                            Some(simd::avx2(|| magnitudes_at_most::<Avx2F32>(xs, limit)))
                        }
                        _ => None,
                    }
                }
            };
            let base: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 16.0 * limit).collect();
            if check(&base).is_none() {
                continue;
            }
            assert_eq!(check(&base), Some(true), "{level:?}");
            for at in [0, 7, 8, 15, 16, 31] {
                for (x, want) in [
                    (limit, true),
                    (-limit, true),
                    (-0.0, true),
                    (above, false),
                    (-above, false),
                    (f32::INFINITY, false),
                    (f32::NEG_INFINITY, false),
                    (f32::NAN, false),
                    (-f32::NAN, false),
                    (f32::from_bits(0x7f80_0001), false), // a signalling NaN
                ] {
                    let mut xs = base.clone();
                    xs[at] = x;
                    assert_eq!(check(&xs), Some(want), "{level:?}: {x} at lane {at}");
                }
            }
        }
    }

    /// Checks `Vector::$method` against the scalar `reference` bit for bit, at
    /// every SIMD level this CPU runs.
    macro_rules! same_bits {
        ($method:ident, $xs:expr, $reference:expr) => {{
            let xs: Vec<f32> = $xs;
            for level in simd::supported() {
                // SAFETY: `supported()` lists only levels this CPU runs.
                let got = unsafe {
                    match level {
                        Level::Avx512 => simd::avx512(|| {
                            run::<Avx512F32>(&xs, <Avx512F32 as Vector<f32>>::$method)
                        }),
                        Level::Avx2 => {
                            simd::avx2(|| run::<Avx2F32>(&xs, <Avx2F32 as Vector<f32>>::$method))
                        }
                        _ => continue,
                    }
                };
                for (&x, g) in xs.iter().zip(&got) {
                    let want: f32 = $reference(x);
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "{level:?} {}({x}) = {g}, want {want}",
                        stringify!($method)
                    );
                }
            }
        }};
    }

    #[test]
    fn exp2_in_registers_gives_the_scalar_bits() {
        same_bits!(exp2, samples(), exp2_f32);
        // Moderate arguments take the exponent-add scaling; ±125 is its edge.
        let mut moderate: Vec<f32> = (-1_260_000..1_260_000).map(|i| i as f32 * 1e-4).collect();
        moderate.extend([
            125.0,
            -125.0,
            125.000_01,
            -125.000_01,
            124.5,
            -124.5,
            0.5,
            -0.5,
        ]);
        moderate.resize(moderate.len().next_multiple_of(16), 1.0);
        same_bits!(exp2, moderate.clone(), exp2_f32);
        same_bits!(exp2_moderate, moderate, exp2_f32);
    }

    #[test]
    fn log2_in_registers_gives_the_scalar_bits() {
        same_bits!(log2, samples(), crate::math::log2_f32);
        let mut near_one: Vec<f32> = (0..800_000).map(|i| 0.9 + i as f32 * 2.5e-7).collect();
        near_one.extend((1..=2000).map(f32::from_bits)); // subnormals
        near_one.resize(near_one.len().next_multiple_of(16), 2.0);
        same_bits!(log2, near_one, crate::math::log2_f32);
    }

    #[test]
    fn sin_in_registers_gives_the_scalar_bits() {
        same_bits!(sin, samples(), crate::math::sin_f32_any);
        let mut dense: Vec<f32> = (-400_000..400_000).map(|i| i as f32 * 3.1e-2).collect();
        dense.extend((1..50_000).map(|k| (k as f64 * std::f64::consts::PI) as f32));
        dense.resize(dense.len().next_multiple_of(16), 0.5);
        same_bits!(sin, dense, crate::math::sin_f32_any);
        // The float32 path alone, up to its limit.
        let mut small: Vec<f32> = (-640_000..640_000).map(|i| i as f32 * 1e-2).collect();
        small.extend([6400.0, -6400.0, 0.0, -0.0]);
        small.resize(small.len().next_multiple_of(16), 0.5);
        same_bits!(sin_small, small, crate::math::sin_f32_any);
        // Without the reduction, up to its limit: every 37th float32 of
        // [2^-10, 1.5] and the limit itself, both signs, and small and
        // subnormal magnitudes below.
        let mut unreduced: Vec<f32> = (0.0009765625f32.to_bits()..=1.5f32.to_bits())
            .step_by(37)
            .chain([1.5f32.to_bits(), 0])
            .map(f32::from_bits)
            .flat_map(|x| [x, -x])
            .collect();
        unreduced.extend(
            (0..20_000)
                .map(|i| f32::from_bits(i * 50_000))
                .flat_map(|x| [x, -x]),
        );
        unreduced.resize(unreduced.len().next_multiple_of(16), 0.5);
        same_bits!(sin_unreduced, unreduced, crate::math::sin_f32_any);
        // Vectors mixing the float32, float64 and exact paths.
        let mixed: Vec<f32> = (0..160_000)
            .map(|i| [0.5, -0.0, 7e3, -3e5, 2e6, -1.0][i % 6] * (1.0 + i as f32 * 1e-6))
            .collect();
        same_bits!(sin, mixed, crate::math::sin_f32_any);
    }
}
