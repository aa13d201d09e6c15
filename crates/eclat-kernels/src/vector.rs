//! Vector registers as values, for the tile machine ([`crate::kernels::tile`]).
//!
//! Most kernels are plain loops that LLVM vectorizes per SIMD level. The tile
//! machine instead carries a tile of values in registers from one interpreted
//! step to the next, which only stays in registers when the tile is made of
//! vector-typed values; this module gives those values for AVX-512 and AVX2,
//! float32 and float64. Every op rounds exactly as the scalar code does (IEEE
//! add, mul, div, sqrt; the same NaN rules for max/min and comparisons), so
//! tile results are bit-identical to the other kernels. Transcendentals run
//! the scalar [`crate::math`] functions over the lanes (LLVM vectorizes them).
//!
//! Every method must be called from code compiled with the ISA's features
//! ([`crate::simd::avx512`], [`crate::simd::avx2`]).

#![allow(clippy::missing_safety_doc)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// One vector register of `LANES` elements of `T`.
pub trait Vector<T: Copy>: Copy {
    const LANES: usize;
    unsafe fn load(p: *const T) -> Self;
    unsafe fn store(self, p: *mut T);
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
    /// 1 where `self < o`, else 0.
    unsafe fn lt(self, o: Self) -> Self;
    /// 1 where `self == o`, else 0.
    unsafe fn eq(self, o: Self) -> Self;
    /// 1 where `self == 0`, else 0.
    unsafe fn is_zero(self) -> Self;
    /// `a` where `self != 0`, else `b`.
    unsafe fn select(self, a: Self, b: Self) -> Self;
}

/// The methods every ISA spells the same way (loads, stores, IEEE arithmetic,
/// sign flip), given the ISA's intrinsics.
macro_rules! arithmetic {
    ($name:ident, $T:ty, $load:ident, $store:ident, $set1:ident, $add:ident, $mul:ident,
     $div:ident, $sqrt:ident, $xor:ident, $sign:expr) => {
        #[inline(always)]
        unsafe fn load(p: *const $T) -> Self {
            $name($load(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut $T) {
            $store(p, self.0)
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
    };
}

macro_rules! avx512_vector {
    ($name:ident, $T:ty, $V:ty, $lanes:expr, $sign:expr,
     $load:ident, $store:ident, $set1:ident, $add:ident, $mul:ident, $div:ident,
     $sqrt:ident, $xor:ident, $cmp:ident, $blend:ident, $maskz:ident) => {
        #[doc = concat!("AVX-512 register of ", stringify!($T), ".")]
        #[cfg(target_arch = "x86_64")]
        #[derive(Clone, Copy)]
        pub struct $name($V);

        #[cfg(target_arch = "x86_64")]
        impl Vector<$T> for $name {
            const LANES: usize = $lanes;
            arithmetic!($name, $T, $load, $store, $set1, $add, $mul, $div, $sqrt, $xor, $sign);
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
        }
    };
}

avx512_vector!(
    Avx512F32,
    f32,
    __m512,
    16,
    -0.0,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_add_ps,
    _mm512_mul_ps,
    _mm512_div_ps,
    _mm512_sqrt_ps,
    _mm512_xor_ps,
    _mm512_cmp_ps_mask,
    _mm512_mask_blend_ps,
    _mm512_maskz_mov_ps
);
avx512_vector!(
    Avx512F64,
    f64,
    __m512d,
    8,
    -0.0,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_set1_pd,
    _mm512_add_pd,
    _mm512_mul_pd,
    _mm512_div_pd,
    _mm512_sqrt_pd,
    _mm512_xor_pd,
    _mm512_cmp_pd_mask,
    _mm512_mask_blend_pd,
    _mm512_maskz_mov_pd
);

macro_rules! avx2_vector {
    ($name:ident, $T:ty, $V:ty, $lanes:expr, $sign:expr,
     $load:ident, $store:ident, $set1:ident, $add:ident, $mul:ident, $div:ident,
     $sqrt:ident, $xor:ident, $and:ident, $or:ident, $cmp:ident, $blendv:ident) => {
        #[doc = concat!("AVX2 register of ", stringify!($T), ".")]
        #[cfg(target_arch = "x86_64")]
        #[derive(Clone, Copy)]
        pub struct $name($V);

        #[cfg(target_arch = "x86_64")]
        impl Vector<$T> for $name {
            const LANES: usize = $lanes;
            arithmetic!($name, $T, $load, $store, $set1, $add, $mul, $div, $sqrt, $xor, $sign);
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
    _mm256_set1_ps,
    _mm256_add_ps,
    _mm256_mul_ps,
    _mm256_div_ps,
    _mm256_sqrt_ps,
    _mm256_xor_ps,
    _mm256_and_ps,
    _mm256_or_ps,
    _mm256_cmp_ps,
    _mm256_blendv_ps
);
avx2_vector!(
    Avx2F64,
    f64,
    __m256d,
    4,
    -0.0,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_set1_pd,
    _mm256_add_pd,
    _mm256_mul_pd,
    _mm256_div_pd,
    _mm256_sqrt_pd,
    _mm256_xor_pd,
    _mm256_and_pd,
    _mm256_or_pd,
    _mm256_cmp_pd,
    _mm256_blendv_pd
);
