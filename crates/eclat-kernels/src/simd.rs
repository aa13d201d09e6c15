//! Run-time SIMD dispatch.
//!
//! Kernel bodies are written once, as plain loops over slices marked
//! `#[inline(always)]`; [`dispatch!`] compiles the body a second and third time
//! inside `#[target_feature]` functions (AVX-512, AVX2+FMA), where LLVM
//! vectorizes the same loops at that width, and picks one by the level detected
//! once per process. Release binaries are built for the target's baseline
//! (SSE2 on x86-64, NEON on arm64), so they run on any CPU of the architecture.

use std::sync::OnceLock;

/// An instruction-set level kernels can run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The target's baseline: SSE2 on x86-64 (what every x86-64 CPU has), NEON on arm64.
    Scalar,
    /// arm64 NEON (part of the arm64 baseline, so it runs the `Scalar` code).
    Neon,
    /// AVX2 with FMA (x86-64).
    Avx2,
    /// AVX-512 F/BW/DQ/VL (x86-64).
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Neon => "neon",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Level> {
        [Level::Scalar, Level::Neon, Level::Avx2, Level::Avx512]
            .into_iter()
            .find(|l| l.name() == name)
    }
}

/// The widest level this CPU supports.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f")
            && has!("avx512bw")
            && has!("avx512dq")
            && has!("avx512vl")
            && has!("avx2")
            && has!("fma")
        {
            return Level::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Level::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return Level::Neon;
        }
    }
    Level::Scalar
}

/// The levels this CPU can run, lowest first.
pub fn supported() -> Vec<Level> {
    match detected() {
        Level::Avx512 => vec![Level::Scalar, Level::Avx2, Level::Avx512],
        Level::Avx2 => vec![Level::Scalar, Level::Avx2],
        Level::Neon => vec![Level::Scalar, Level::Neon],
        Level::Scalar => vec![Level::Scalar],
    }
}

static LEVEL: OnceLock<Level> = OnceLock::new();

/// The level kernels use: the detected one, or `ECLAT_SIMD` (`scalar`, `avx2`,
/// `avx512`, `neon`) when it names a level this CPU supports. A level the CPU
/// lacks is never used: the request falls back to the detected level with a
/// warning on stderr, because running it would be an illegal instruction.
pub fn level() -> Level {
    *LEVEL.get_or_init(|| {
        let top = detected();
        match std::env::var("ECLAT_SIMD") {
            Ok(name) if !name.is_empty() => match Level::from_name(&name) {
                Some(l) if supported().contains(&l) => l,
                _ => {
                    eprintln!("eclat: ECLAT_SIMD={name} is not a level this CPU supports ({:?}); using {}", supported().iter().map(|l| l.name()).collect::<Vec<_>>(), top.name());
                    top
                }
            },
            _ => top,
        }
    })
}

/// Orders this thread's earlier non-temporal stores ([`crate::vector::Vector::stream`])
/// before its later stores, so a task's output is complete when it reports done.
#[inline]
pub fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SFENCE is part of SSE, in every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    }
}

/// Asks the CPU to start loading the cache line holding `p` (a hint: it never
/// faults, so `p` may lie anywhere, and does nothing where there is no such
/// instruction).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is part of SSE, in every x86-64 CPU, and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Runs `f` compiled with AVX-512 enabled: `f` and the `#[inline(always)]`
/// kernel bodies it calls inline into this function and vectorize at 512 bits.
///
/// # Safety
/// The CPU must support every feature listed (see [`level`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
#[inline]
pub unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs `f` compiled with AVX2 and FMA enabled (see [`avx512`]).
///
/// # Safety
/// The CPU must support every feature listed (see [`level`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
#[inline]
pub unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Evaluates `$call` (a call of `#[inline(always)]` kernel code) compiled for
/// the level [`level`] chose: one copy per x86 level plus the baseline.
#[macro_export]
macro_rules! dispatch {
    ($call:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            match $crate::simd::level() {
                // SAFETY: `level()` only reports a level whose features this CPU has.
                $crate::simd::Level::Avx512 => unsafe {
                    $crate::simd::avx512(
                        #[inline(always)]
                        || $call,
                    )
                },
                // SAFETY: as above.
                $crate::simd::Level::Avx2 => unsafe {
                    $crate::simd::avx2(
                        #[inline(always)]
                        || $call,
                    )
                },
                _ => $call,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $call
        }
    }};
}
