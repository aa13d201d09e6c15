//! Element types and the arithmetic each one supports.

use crate::error::{KernelError, Result};

/// The dtypes a tensor can hold; the discriminants are the program encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DType {
    F32 = 0,
    F64 = 1,
    I32 = 2,
    /// One byte per element, 0 or 1.
    Bool = 3,
}

impl DType {
    pub fn from_code(code: i64) -> Result<DType> {
        Ok(match code {
            0 => DType::F32,
            1 => DType::F64,
            2 => DType::I32,
            3 => DType::Bool,
            _ => return Err(KernelError::format(format!("unknown dtype code {code}"))),
        })
    }
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 => 8,
            DType::Bool => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I32 => "int32",
            DType::Bool => "bool",
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

/// A storable element. Casts go through f64, which holds every value of every
/// dtype exactly, so `from_f64(x.to_f64())` is the cast PyTorch performs
/// (round to nearest for floats, truncation with saturation for int32, `!= 0` for bool).
pub trait Elem: Copy + Send + Sync + PartialOrd + Default + 'static {
    const DTYPE: DType;
    /// The value every other value is at least (the identity of a maximum).
    const LOWEST: Self;
    /// The value every other value is at most (the identity of a minimum).
    const HIGHEST: Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn is_nan(self) -> bool {
        false
    }
}

impl Elem for f32 {
    const DTYPE: DType = DType::F32;
    const LOWEST: Self = f32::NEG_INFINITY;
    const HIGHEST: Self = f32::INFINITY;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}
impl Elem for f64 {
    const DTYPE: DType = DType::F64;
    const LOWEST: Self = f64::NEG_INFINITY;
    const HIGHEST: Self = f64::INFINITY;
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}
impl Elem for i32 {
    const DTYPE: DType = DType::I32;
    const LOWEST: Self = i32::MIN;
    const HIGHEST: Self = i32::MAX;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        // `as` truncates toward zero, saturates, and maps NaN to 0.
        v as i32
    }
}
impl Elem for u8 {
    const DTYPE: DType = DType::Bool;
    const LOWEST: Self = 0;
    const HIGHEST: Self = u8::MAX;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        (v != 0.0) as u8
    }
}

/// Arithmetic of the numeric dtypes; int32 wraps on overflow as in PyTorch.
pub trait Num: Elem {
    /// The type sums and products accumulate in (f64 for floats).
    type Acc: Copy + Send + Sync;
    const ZERO: Self;
    const ONE: Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn acc(self) -> Self::Acc;
    fn acc_add(a: Self::Acc, b: Self::Acc) -> Self::Acc;
    fn acc_mul(a: Self::Acc, b: Self::Acc) -> Self::Acc;
    fn from_acc(a: Self::Acc) -> Self;
}

macro_rules! float_num {
    ($t:ty) => {
        impl Num for $t {
            type Acc = f64;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline(always)]
            fn neg(self) -> Self {
                -self
            }
            #[inline(always)]
            fn acc(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn acc_add(a: f64, b: f64) -> f64 {
                a + b
            }
            #[inline(always)]
            fn acc_mul(a: f64, b: f64) -> f64 {
                a * b
            }
            #[inline(always)]
            fn from_acc(a: f64) -> Self {
                a as $t
            }
        }
    };
}
float_num!(f32);
float_num!(f64);

impl Num for i32 {
    type Acc = i32;
    const ZERO: Self = 0;
    const ONE: Self = 1;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
    #[inline(always)]
    fn neg(self) -> Self {
        self.wrapping_neg()
    }
    #[inline(always)]
    fn acc(self) -> i32 {
        self
    }
    #[inline(always)]
    fn acc_add(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    fn acc_mul(a: i32, b: i32) -> i32 {
        a.wrapping_mul(b)
    }
    #[inline(always)]
    fn from_acc(a: i32) -> Self {
        a
    }
}

/// Bitwise operations of int32 and bool.
pub trait Bits: Elem {
    fn not(self) -> Self;
    fn and(self, o: Self) -> Self;
    fn or(self, o: Self) -> Self;
    fn xor(self, o: Self) -> Self;
}
impl Bits for i32 {
    fn not(self) -> Self {
        !self
    }
    fn and(self, o: Self) -> Self {
        self & o
    }
    fn or(self, o: Self) -> Self {
        self | o
    }
    fn xor(self, o: Self) -> Self {
        self ^ o
    }
}
impl Bits for u8 {
    fn not(self) -> Self {
        (self == 0) as u8
    }
    fn and(self, o: Self) -> Self {
        self & o
    }
    fn or(self, o: Self) -> Self {
        self | o
    }
    fn xor(self, o: Self) -> Self {
        self ^ o
    }
}

/// The larger of two values, NaN if either is NaN (PyTorch's `maximum`).
#[inline(always)]
pub fn max_nan<T: Elem>(a: T, b: T) -> T {
    // A select, not branches: which side wins is data (a coin flip on random
    // values), and mispredicting about every other element made a 2x2 max
    // pool 3.5x slower.
    let take_b = !a.is_nan() & (b.is_nan() | (b > a));
    std::hint::select_unpredictable(take_b, b, a)
}

/// The smaller of two values, NaN if either is NaN (PyTorch's `minimum`).
#[inline(always)]
pub fn min_nan<T: Elem>(a: T, b: T) -> T {
    let take_b = !a.is_nan() & (b.is_nan() | (b < a));
    std::hint::select_unpredictable(take_b, b, a)
}

/// Runs `$body` with `$T` bound to the Rust type of a dtype.
#[macro_export]
macro_rules! with_any_dtype {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::Bool => {
                type $T = u8;
                $body
            }
        }
    };
}

/// Like `with_any_dtype!` for the numeric dtypes; bool is an error naming `$op`.
#[macro_export]
macro_rules! with_num_dtype {
    ($dt:expr, $op:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            other => {
                return Err($crate::error::KernelError::new(
                    $crate::ErrorKind::DType,
                    format!("{}: unsupported dtype {}", $op, other.name()),
                ))
            }
        }
    };
}

/// Like `with_any_dtype!` for float32/float64 only.
#[macro_export]
macro_rules! with_float_dtype {
    ($dt:expr, $op:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            other => {
                return Err($crate::error::KernelError::new(
                    $crate::ErrorKind::DType,
                    format!("{}: unsupported dtype {}", $op, other.name()),
                ))
            }
        }
    };
}

/// Like `with_any_dtype!` for int32/bool only.
#[macro_export]
macro_rules! with_bits_dtype {
    ($dt:expr, $op:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::Bool => {
                type $T = u8;
                $body
            }
            other => {
                return Err($crate::error::KernelError::new(
                    $crate::ErrorKind::DType,
                    format!("{}: unsupported dtype {}", $op, other.name()),
                ))
            }
        }
    };
}
