//! Runs a decoded program: one kernel per instruction, view ops as layout changes.
//!
//! Storage is raw memory: borrowed input buffers, borrowed output buffers (a
//! kernel whose value is a program output writes straight into it) and owned
//! intermediates, freed as soon as their last reader has run.

use crate::dtype::{max_nan, DType, Elem, Num};
use crate::error::{ErrorKind, KernelError, Result};
use crate::kernels::elementwise::{copy, pad};
use crate::kernels::fused::{self, RawSrc};
use crate::kernels::index::{gather, scatter};
use crate::kernels::matmul::matmul;
use crate::kernels::reduce::{reduce, Max, Min, Prod, Sum};
use crate::kernels::scan::scan;
use crate::kernels::Src;
use crate::layout::{numel, Layout};
use crate::op::Op;
use crate::pool::{self, PARALLEL_THRESHOLD};
use crate::program::{arg_usize, decode_cached, shape_err, Expr, Instr, Program};
use crate::{with_any_dtype, with_float_dtype, with_num_dtype};
use std::ptr::NonNull;

/// Decodes `words` and runs the program on the Eclat thread pool. `inputs` are
/// the buffers `load` instructions name; `outputs` receive the program's outputs
/// (contiguous, row-major, exactly sized).
pub fn execute(words: &[f64], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
    let program = decode_cached(words)?;
    for o in outputs.iter_mut() {
        advise_huge_pages(o.as_mut_ptr(), o.len());
    }
    let run = |outputs: &mut [&mut [u8]]| {
        let slots = outputs
            .iter_mut()
            .map(|o| (NonNull::new(o.as_mut_ptr()), o.len()))
            .collect();
        Executor::new(&program, inputs, slots).run()
    };
    // Handing a job to the pool costs microseconds; a program whose kernels
    // touch fewer elements than the threading threshold runs on the calling thread.
    if program.work() < PARALLEL_THRESHOLD {
        run(outputs)
    } else {
        pool::run(|| run(outputs))
    }
}

/// Asks Linux to back a large fresh buffer with 2 MiB pages. Output buffers come
/// from JavaScript untouched; writing them page by page would cost one fault per
/// 4 KiB (about as long as the kernel itself for a memory-bound op). Advisory:
/// contents are unchanged and failures are ignored.
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        if len < 2 * HUGE {
            return;
        }
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + len) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside one allocation we own or may write;
            // MADV_HUGEPAGE changes only how the kernel backs the pages, never
            // their contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// `ECLAT_PROFILE=1` prints every instruction's time to stderr.
fn profiling() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("ECLAT_PROFILE").is_ok_and(|v| v == "1"))
}

/// Raw memory holding elements of one dtype.
struct Storage {
    ptr: NonNull<u8>,
    /// Length in elements.
    len: usize,
    dtype: DType,
    /// Intermediates own their memory (u64 words keep every dtype aligned).
    owned: Option<OwnedWords>,
    /// Live values viewing this storage.
    refs: usize,
}

/// Intermediate memory in u64 words (so every dtype is aligned), allocated
/// fallibly so a huge tensor is an error, not an abort. Freed buffers return to
/// a small cache keyed by size: a training loop asks for the same sizes every
/// step, and reusing them avoids the page faults of fresh memory.
struct OwnedWords {
    words: Vec<u64>,
}

/// Allocations from this size on are checked against the memory available.
const LARGE_ALLOCATION: usize = 256 << 20;

/// Memory the system can still give (Linux `MemAvailable`), if known.
fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes the cache may hold between calls.
const CACHE_LIMIT: usize = 512 << 20;

struct BufferCache {
    by_len: std::collections::HashMap<usize, Vec<Vec<u64>>>,
    bytes: usize,
}

static CACHE: std::sync::Mutex<Option<BufferCache>> = std::sync::Mutex::new(None);

impl OwnedWords {
    fn new(bytes: usize) -> Result<OwnedWords> {
        let len = bytes.div_ceil(8).max(1);
        if let Some(words) = CACHE.lock().ok().and_then(|mut c| {
            let cache = c.as_mut()?;
            let words = cache.by_len.get_mut(&len)?.pop()?;
            cache.bytes -= len * 8;
            Some(words)
        }) {
            // Every kernel writes its whole output, so stale contents are never read.
            return Ok(OwnedWords { words });
        }
        // With overcommit a huge reservation can succeed and then kill the
        // process when touched: refuse what the machine cannot hold.
        if bytes >= LARGE_ALLOCATION && available_memory().is_some_and(|free| bytes > free) {
            return Err(KernelError::new(
                ErrorKind::Allocation,
                format!(
                    "cannot allocate {bytes} bytes: only {} bytes of memory are available",
                    available_memory().unwrap_or(0)
                ),
            ));
        }
        let mut words = Vec::new();
        words.try_reserve_exact(len).map_err(|_| {
            KernelError::new(
                ErrorKind::Allocation,
                format!("out of memory allocating {bytes} bytes"),
            )
        })?;
        // Before the first touch, so the zeroing below already faults in huge pages.
        advise_huge_pages(words.as_mut_ptr() as *mut u8, words.capacity() * 8);
        words.resize(len, 0);
        Ok(OwnedWords { words })
    }

    fn ptr(&mut self) -> NonNull<u8> {
        NonNull::from(self.words.as_mut_slice()).cast()
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: plain numbers viewed as their bytes.
        unsafe {
            std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.words.len() * 8)
        }
    }
}

impl Drop for OwnedWords {
    fn drop(&mut self) {
        let words = std::mem::take(&mut self.words);
        let bytes = words.len() * 8;
        if let Ok(mut c) = CACHE.lock() {
            let cache = c.get_or_insert_with(|| BufferCache {
                by_len: Default::default(),
                bytes: 0,
            });
            if cache.bytes + bytes <= CACHE_LIMIT {
                cache.bytes += bytes;
                cache.by_len.entry(words.len()).or_default().push(words);
            }
        }
    }
}

/// A value of the program: a view of a storage, laid out as the program
/// says (see [`Program::layouts`]).
#[derive(Clone, Copy)]
struct Value<'p> {
    storage: usize,
    layout: &'p Layout,
    dtype: DType,
}

struct Executor<'p> {
    program: &'p Program,
    inputs: &'p [&'p [u8]],
    /// Output buffers (pointer, byte length); `None` pointer for empty buffers.
    slots: Vec<(Option<NonNull<u8>>, usize)>,
    storages: Vec<Storage>,
    values: Vec<Option<Value<'p>>>,
}

impl<'p> Executor<'p> {
    fn new(
        program: &'p Program,
        inputs: &'p [&'p [u8]],
        slots: Vec<(Option<NonNull<u8>>, usize)>,
    ) -> Self {
        Executor {
            program,
            inputs,
            slots,
            storages: Vec::with_capacity(program.instrs.len()),
            values: vec![None; program.instrs.len()],
        }
    }

    fn run(mut self) -> Result<()> {
        for &(_, slot) in &self.program.outputs {
            if slot >= self.slots.len() {
                return Err(KernelError::format(format!(
                    "output slot {slot} of {}",
                    self.slots.len()
                )));
            }
        }
        let profile = profiling();
        for i in 0..self.program.instrs.len() {
            let started = profile.then(std::time::Instant::now);
            let value = self.step(i)?;
            if let Some(t) = started {
                let instr = &self.program.instrs[i];
                eprintln!(
                    "eclat profile: {:>10} {:>8} {:?} <- {:?} {:.3} ms",
                    instr.op.name(),
                    instr.dtype.name(),
                    instr.shape,
                    instr
                        .srcs
                        .iter()
                        .map(|&s| self.value(s).layout.shape.clone())
                        .collect::<Vec<_>>(),
                    t.elapsed().as_secs_f64() * 1e3
                );
            }
            self.storages[value.storage].refs += 1;
            self.values[i] = Some(value);
            let instr = &self.program.instrs[i];
            for (k, &s) in instr.srcs.iter().enumerate() {
                if self.program.last_use[s] == i && !instr.srcs[..k].contains(&s) {
                    self.release(s);
                }
            }
            if self.program.last_use[i] == i {
                self.release(i);
            }
        }
        for &(v, slot) in &self.program.outputs {
            self.write_output(v, slot)?;
        }
        Ok(())
    }

    fn release(&mut self, v: usize) {
        if let Some(value) = self.values[v].take() {
            let st = &mut self.storages[value.storage];
            st.refs -= 1;
            if st.refs == 0 {
                st.owned = None;
                st.len = 0;
            }
        }
    }

    fn value(&self, v: usize) -> &Value<'p> {
        self.values[v]
            .as_ref()
            .expect("sources are live until their last use")
    }

    /// Typed view of value `v`, checked against its storage.
    fn src<T: Elem>(&self, instr: &Instr, v: usize) -> Result<Src<'_, T>> {
        let value = self.value(v);
        if value.dtype != T::DTYPE {
            return Err(KernelError::new(
                ErrorKind::DType,
                format!(
                    "{}: operand has dtype {}, expected {}",
                    instr.op.name(),
                    value.dtype.name(),
                    T::DTYPE.name()
                ),
            ));
        }
        let st = &self.storages[value.storage];
        debug_assert_eq!(
            st.dtype, value.dtype,
            "a value views storage of its own dtype"
        );
        if !value.layout.fits(st.len) {
            return Err(KernelError::format(format!(
                "{}: view {:?} exceeds its storage",
                instr.op.name(),
                value.layout
            )));
        }
        // SAFETY: `st.ptr` points to `st.len` initialised, aligned elements of `T`
        // (checked dtype), alive while the value is; kernels only read through it.
        let data = unsafe { std::slice::from_raw_parts(st.ptr.as_ptr() as *const T, st.len) };
        Ok(Src {
            data,
            layout: value.layout,
        })
    }

    /// Untyped view of value `v` for fused kernels, checked against its storage.
    fn raw_src(&self, label: impl Fn() -> String, v: usize) -> Result<RawSrc<'p>> {
        let value = self.value(v);
        let st = &self.storages[value.storage];
        if !value.layout.fits(st.len) {
            return Err(KernelError::format(format!(
                "{}: view {:?} exceeds its storage",
                label(),
                value.layout
            )));
        }
        // SAFETY: `st.ptr` points to `st.len` initialised elements of `st.dtype`,
        // alive until the value's last reader has run (the caller's instruction
        // at least); fused kernels only read through it, and no kernel writes a
        // storage that an operand views.
        let bytes = unsafe {
            std::slice::from_raw_parts(st.ptr.as_ptr() as *const u8, st.len * st.dtype.size())
        };
        Ok(RawSrc {
            bytes,
            dtype: value.dtype,
            layout: value.layout,
        })
    }

    /// Value `v` copied into contiguous memory of its own, with its layout there.
    fn contiguous_copy(&self, instr: &Instr, v: usize) -> Result<(OwnedWords, Layout)> {
        let value = self.value(v);
        let n = value.layout.numel();
        let mut words = OwnedWords::new(n * value.dtype.size())?;
        with_any_dtype!(value.dtype, T => {
            // SAFETY: the words hold at least n elements of T, aligned (u64 words).
            let out = unsafe { std::slice::from_raw_parts_mut(words.ptr().as_ptr() as *mut T, n) };
            copy(out, self.src::<T>(instr, v)?);
        });
        Ok((words, Layout::contiguous(&value.layout.shape)))
    }

    /// A fused map or fused reduce of `expr` (see `kernels::fused`).
    fn fused_with(&mut self, i: usize, expr: &Expr) -> Result<Value<'p>> {
        let instr = &self.program.instrs[i];
        // Built only for error messages.
        let label = || expr.label();
        if instr.op == Op::Matmul {
            return self.matmul_epilogue(i, expr);
        }
        let dts = fused::check_cached(expr, instr.srcs.iter().map(|&s| self.value(s).dtype))?;
        let root = dts[dts.len() - 1];
        let reduction = matches!(instr.op, Op::Sum | Op::Max | Op::Min | Op::Prod);
        let iter_shape: &[usize] = if reduction {
            match instr.srcs.first() {
                Some(&s) => &self.value(s).layout.shape,
                None => {
                    return Err(KernelError::format(format!(
                        "{}: a fused reduction needs a source",
                        label()
                    )))
                }
            }
        } else {
            &instr.shape
        };
        for &s in &instr.srcs {
            if self.value(s).layout.shape != iter_shape {
                return Err(shape_err(
                    instr,
                    format!(
                        "{}: operand of shape {:?}, expected {iter_shape:?}",
                        label(),
                        self.value(s).layout.shape
                    ),
                ));
            }
        }
        // Sources a map reads better from a contiguous copy (see
        // `fused::reads_better_copied`), with that copy's layout (an empty
        // list, allocating nothing, when there are none).
        let copied = |s: usize| !reduction && fused::reads_better_copied(self.value(s).layout);
        let copies = if instr.srcs.iter().any(|&s| copied(s)) {
            instr
                .srcs
                .iter()
                .map(|&s| {
                    copied(s)
                        .then(|| self.contiguous_copy(instr, s))
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![]
        };
        let srcs = instr
            .srcs
            .iter()
            .enumerate()
            .map(|(k, &s)| match copies.get(k).and_then(Option::as_ref) {
                Some((words, layout)) => Ok(RawSrc {
                    bytes: &words.bytes()[..layout.numel() * self.value(s).dtype.size()],
                    dtype: self.value(s).dtype,
                    layout,
                }),
                None => self.raw_src(&label, s),
            })
            .collect::<Result<Vec<_>>>()?;
        if !reduction {
            if root != instr.dtype {
                return Err(KernelError::new(
                    ErrorKind::DType,
                    format!(
                        "{}: computes {}, declared {}",
                        label(),
                        root.name(),
                        instr.dtype.name()
                    ),
                ));
            }
            return Ok(with_any_dtype!(root, T => {
                let (v, out) = self.alloc::<T>(i)?;
                fused::map(out, iter_shape, expr, &dts, &srcs);
                v
            }));
        }
        let axes = Self::axes(instr, iter_shape.len())?;
        let expect: Vec<usize> = (0..iter_shape.len())
            .map(|d| if axes.contains(&d) { 1 } else { iter_shape[d] })
            .collect();
        if expect != instr.shape
            || root != instr.dtype
            || (matches!(instr.op, Op::Max | Op::Min)
                && numel(iter_shape) == 0
                && numel(&expect) > 0)
        {
            return Err(shape_err(
                instr,
                format!(
                    "{}: cannot reduce {iter_shape:?} of {} over {axes:?} to {}",
                    label(),
                    root.name(),
                    instr.dtype.name()
                ),
            ));
        }
        let name = instr.op.name();
        macro_rules! run {
            ($T:ident, $fold:expr) => {{
                let (v, out) = self.alloc::<$T>(i)?;
                fused::reduce(out, &iter_shape, &axes, expr, &dts, &srcs, &$fold);
                v
            }};
        }
        Ok(match instr.op {
            Op::Sum => with_num_dtype!(root, name, T => run!(T, Sum)),
            Op::Prod => with_num_dtype!(root, name, T => run!(T, Prod)),
            Op::Max => with_any_dtype!(root, T => run!(T, Max)),
            _ => with_any_dtype!(root, T => run!(T, Min)),
        })
    }

    /// Checks a matmul's operand shapes against its result's.
    fn matmul_shapes(&self, instr: &Instr) -> Result<()> {
        if instr.srcs.len() < 2 {
            return Err(KernelError::format("matmul: needs two operands"));
        }
        let (a, b) = (
            &self.value(instr.srcs[0]).layout.shape,
            &self.value(instr.srcs[1]).layout.shape,
        );
        let shape = &instr.shape;
        let nd = shape.len();
        let ok = nd >= 2
            && a.len() == nd
            && b.len() == nd
            && a[..nd - 2] == shape[..nd - 2]
            && b[..nd - 2] == shape[..nd - 2]
            && a[nd - 2] == shape[nd - 2]
            && b[nd - 1] == shape[nd - 1]
            && a[nd - 1] == b[nd - 2];
        if !ok {
            return Err(shape_err(instr, format!("cannot multiply {a:?} by {b:?}")));
        }
        Ok(())
    }

    /// A matmul whose elementwise consumers run on each block of the product
    /// (register 0 of `expr`); sources 2.. are the epilogue's other operands.
    fn matmul_epilogue(&mut self, i: usize, expr: &Expr) -> Result<Value<'p>> {
        let instr = &self.program.instrs[i];
        let label = || format!("matmul+{}", expr.label());
        self.matmul_shapes(instr)?;
        let mt = self.value(instr.srcs[0]).dtype;
        if self.value(instr.srcs[1]).dtype != mt {
            return Err(KernelError::new(
                ErrorKind::DType,
                format!("{}: operands of different dtypes", label()),
            ));
        }
        let others = &instr.srcs[2..];
        let reg_dts = std::iter::once(mt).chain(others.iter().map(|&s| self.value(s).dtype));
        let dts = fused::check_cached(expr, reg_dts)?;
        let root = dts[dts.len() - 1];
        if root != instr.dtype {
            return Err(KernelError::new(
                ErrorKind::DType,
                format!(
                    "{}: computes {}, declared {}",
                    label(),
                    root.name(),
                    instr.dtype.name()
                ),
            ));
        }
        for &s in others {
            if self.value(s).layout.shape != instr.shape {
                return Err(shape_err(
                    instr,
                    format!(
                        "{}: operand of shape {:?}",
                        label(),
                        self.value(s).layout.shape
                    ),
                ));
            }
        }
        let srcs = others
            .iter()
            .map(|&s| self.raw_src(&label, s))
            .collect::<Result<Vec<_>>>()?;
        let name = instr.op.name();
        Ok(
            with_float_dtype!(mt, name, T => with_any_dtype!(root, U => {
                let (v, out) = self.alloc::<U>(i)?;
                fused::matmul_epilogue(out, self.src::<T>(instr, instr.srcs[0])?, self.src::<T>(instr, instr.srcs[1])?, expr, &dts, &srcs);
                v
            })),
        )
    }

    /// Makes storage for the contiguous result of instruction `i` and returns it
    /// with a mutable slice. A program output is written in place into its slot.
    fn alloc<'a, T: Elem>(&mut self, i: usize) -> Result<(Value<'p>, &'a mut [T])> {
        let instr = &self.program.instrs[i];
        let n = numel(&instr.shape);
        let bytes = n.checked_mul(T::DTYPE.size()).ok_or_else(|| {
            KernelError::new(
                ErrorKind::Allocation,
                format!("{}: tensor too large", instr.op.name()),
            )
        })?;
        // A claimed slot's length becomes usize::MAX (below), so none is claimed twice.
        let slot = self.program.slot_of[i].filter(|&s| self.slots[s].1 == bytes);
        let (ptr, owned) = match slot {
            Some(s) => {
                let ptr = self.slots[s].0.filter(|_| n > 0);
                (ptr.unwrap_or(NonNull::<u64>::dangling().cast()), None)
            }
            None => {
                let mut words = OwnedWords::new(bytes)?;
                (words.ptr(), Some(words))
            }
        };
        if ptr.as_ptr() as usize % T::DTYPE.size().min(8) != 0 {
            return Err(KernelError::format(format!(
                "{}: output buffer is misaligned",
                instr.op.name()
            )));
        }
        let storage = self.storages.len();
        self.storages.push(Storage {
            ptr,
            len: n,
            dtype: T::DTYPE,
            owned,
            refs: 0,
        });
        if let Some(s) = slot {
            self.slots[s].0 = None; // claimed: the final copy below skips it
            self.slots[s].1 = usize::MAX;
        }
        // SAFETY: the storage is fresh memory (or an output buffer no value has
        // used yet) of `n` aligned elements; nothing else reads or writes it until
        // the kernel returns, and it outlives this instruction.
        let out = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr() as *mut T, n) };
        Ok((
            Value {
                storage,
                layout: &self.program.layouts[i],
                dtype: T::DTYPE,
            },
            out,
        ))
    }

    /// Value `i`, a view of source `src`'s storage.
    fn view(&self, src: usize, i: usize) -> Value<'p> {
        let value = self.value(src);
        Value {
            storage: value.storage,
            layout: &self.program.layouts[i],
            dtype: value.dtype,
        }
    }

    fn write_output(&mut self, v: usize, slot: usize) -> Result<()> {
        let (ptr, bytes) = self.slots[slot];
        if bytes == usize::MAX {
            return Ok(()); // the kernel wrote it in place
        }
        let value = *self.value(v);
        let n = value.layout.numel();
        if bytes != n * value.dtype.size() {
            return Err(KernelError::format(format!(
                "output slot {slot} has {bytes} bytes for {n} elements"
            )));
        }
        let ptr = ptr
            .filter(|_| n > 0)
            .unwrap_or(NonNull::<u64>::dangling().cast());
        let instr = &self.program.instrs[v];
        with_any_dtype!(value.dtype, T => {
            let src = self.src::<T>(instr, v)?;
            // SAFETY: the slot is a distinct JS buffer of exactly `n` elements that
            // no storage aliases (it was never claimed by a kernel).
            let out = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr() as *mut T, n) };
            copy(out, src);
        });
        Ok(())
    }

    fn load(&mut self, i: usize) -> Result<Value<'p>> {
        let instr = &self.program.instrs[i];
        let k = arg_usize(instr, 0)?;
        let bytes = *self
            .inputs
            .get(k)
            .ok_or_else(|| KernelError::format(format!("load: no input {k}")))?;
        let n = numel(&instr.shape);
        let size = instr.dtype.size();
        if bytes.len() != n * size {
            return Err(KernelError::new(
                ErrorKind::Shape,
                format!(
                    "load: input {k} has {} bytes, shape {:?} of {} needs {}",
                    bytes.len(),
                    instr.shape,
                    instr.dtype.name(),
                    n * size
                ),
            ));
        }
        let ptr = if n == 0 {
            NonNull::<u64>::dangling().cast()
        } else {
            NonNull::from(bytes).cast::<u8>()
        };
        if ptr.as_ptr() as usize % size.min(8) != 0 {
            return Err(KernelError::format(format!(
                "load: input {k} is misaligned for {}",
                instr.dtype.name()
            )));
        }
        let storage = self.storages.len();
        self.storages.push(Storage {
            ptr,
            len: n,
            dtype: instr.dtype,
            owned: None,
            refs: 0,
        });
        Ok(Value {
            storage,
            layout: &self.program.layouts[i],
            dtype: instr.dtype,
        })
    }

    fn step(&mut self, i: usize) -> Result<Value<'p>> {
        let instr = &self.program.instrs[i];
        if let Some(expr) = &instr.expr {
            return self.fused_with(i, expr);
        }
        let name = instr.op.name();
        let dt = instr.dtype;
        let shape = &instr.shape;
        let s = &instr.srcs;
        let nsrc = match instr.op {
            Op::Load => 0,
            Op::ScatterAdd | Op::ScatterMax => 3,
            Op::Gather | Op::Matmul => 2,
            op => op.elementwise_arity().unwrap_or(1),
        };
        if s.len() != nsrc {
            return Err(KernelError::format(format!(
                "{name}: {} sources, expected {nsrc}",
                s.len()
            )));
        }
        Ok(match instr.op {
            Op::Load => self.load(i)?,
            Op::Sum | Op::Prod | Op::Max | Op::Min => self.reduce(i)?,
            Op::Cumsum | Op::Cumprod | Op::Cummax => self.scan(i)?,
            // Views: the layout was derived (and checked) when the program was decoded.
            Op::Reshape if self.value(s[0]).layout.is_contiguous() => self.view(s[0], i),
            Op::Reshape => with_any_dtype!(dt, T => {
                let (v, out) = self.alloc::<T>(i)?;
                copy(out, self.src::<T>(instr, s[0])?);
                v
            }),
            Op::Permute | Op::Expand | Op::Slice => self.view(s[0], i),
            Op::Pad => {
                let nd = shape.len();
                let value = *instr
                    .args
                    .first()
                    .ok_or_else(|| KernelError::format("pad: missing value"))?;
                let before = (0..nd)
                    .map(|d| arg_usize(instr, 1 + d))
                    .collect::<Result<Vec<_>>>()?;
                let src_shape = self.value(s[0]).layout.shape.clone();
                if src_shape.len() != nd || (0..nd).any(|d| before[d] + src_shape[d] > shape[d]) {
                    return Err(shape_err(
                        instr,
                        format!("padding {src_shape:?} out of range"),
                    ));
                }
                with_any_dtype!(dt, T => {
                    let (v, out) = self.alloc::<T>(i)?;
                    pad(out, shape, self.src::<T>(instr, s[0])?, &before, T::from_f64(value));
                    v
                })
            }
            Op::Gather => {
                let axis = arg_usize(instr, 0)?;
                let (src, idx) = (&self.value(s[0]).layout, &self.value(s[1]).layout);
                let ok = axis < src.shape.len()
                    && idx.shape == *shape
                    && src.shape.len() == idx.shape.len()
                    && (0..shape.len()).all(|d| d == axis || idx.shape[d] <= src.shape[d]);
                if !ok {
                    return Err(shape_err(
                        instr,
                        format!(
                            "index {:?} does not fit source {:?} on axis {axis}",
                            idx.shape, src.shape
                        ),
                    ));
                }
                with_any_dtype!(dt, T => {
                    let (v, out) = self.alloc::<T>(i)?;
                    gather(out, self.src::<T>(instr, s[0])?, axis, self.src::<i32>(instr, s[1])?)?;
                    v
                })
            }
            Op::Matmul => {
                self.matmul_shapes(instr)?;
                with_float_dtype!(dt, name, T => {
                    let (v, out) = self.alloc::<T>(i)?;
                    matmul(out, self.src::<T>(instr, s[0])?, self.src::<T>(instr, s[1])?);
                    v
                })
            }
            Op::ScatterAdd | Op::ScatterMax => {
                let axis = arg_usize(instr, 0)?;
                let (tgt, idx, src) = (
                    &self.value(s[0]).layout,
                    &self.value(s[1]).layout,
                    &self.value(s[2]).layout,
                );
                let nd = shape.len();
                let ok = axis < nd
                    && tgt.shape == *shape
                    && idx.shape.len() == nd
                    && src.shape.len() == nd
                    && (0..nd).all(|d| {
                        idx.shape[d] <= src.shape[d] && (d == axis || idx.shape[d] <= shape[d])
                    });
                if !ok {
                    return Err(shape_err(
                        instr,
                        format!(
                            "index {:?} does not fit target {:?} and source {:?} on axis {axis}",
                            idx.shape, tgt.shape, src.shape
                        ),
                    ));
                }
                // The index walks only its own extent of the source.
                let idx_shape = idx.shape.clone();
                let mut src_view = self.value(s[2]).layout.clone();
                src_view.shape = idx_shape;
                if instr.op == Op::ScatterAdd {
                    with_num_dtype!(dt, name, T => {
                        let (v, out) = self.alloc::<T>(i)?;
                        copy(out, self.src::<T>(instr, s[0])?);
                        let data = self.src::<T>(instr, s[2])?.data;
                        scatter(name, out, shape, axis, self.src::<i32>(instr, s[1])?, Src { data, layout: &src_view }, T::ZERO, |a: T, b: T| a.add(b))?;
                        v
                    })
                } else {
                    with_any_dtype!(dt, T => {
                        let (v, out) = self.alloc::<T>(i)?;
                        copy(out, self.src::<T>(instr, s[0])?);
                        let data = self.src::<T>(instr, s[2])?.data;
                        scatter(name, out, shape, axis, self.src::<i32>(instr, s[1])?, Src { data, layout: &src_view }, T::LOWEST, max_nan::<T>)?;
                        v
                    })
                }
            }
            op => unreachable!(
                "{} is elementwise: decoding gave it a one-step expression",
                op.name()
            ),
        })
    }

    fn axes(instr: &Instr, nd: usize) -> Result<Vec<usize>> {
        let n = arg_usize(instr, 0)?;
        let axes = (0..n)
            .map(|k| arg_usize(instr, 1 + k))
            .collect::<Result<Vec<_>>>()?;
        if axes.iter().any(|&a| a >= nd) {
            return Err(shape_err(
                instr,
                format!("axes {axes:?} out of range for {nd} dimensions"),
            ));
        }
        Ok(axes)
    }

    fn reduce(&mut self, i: usize) -> Result<Value<'p>> {
        let instr = &self.program.instrs[i];
        let name = instr.op.name();
        let src_shape = self.value(instr.srcs[0]).layout.shape.clone();
        let axes = Self::axes(instr, src_shape.len())?;
        let expect: Vec<usize> = (0..src_shape.len())
            .map(|d| if axes.contains(&d) { 1 } else { src_shape[d] })
            .collect();
        if expect != instr.shape
            || (matches!(instr.op, Op::Max | Op::Min)
                && numel(&src_shape) == 0
                && numel(&expect) > 0)
        {
            return Err(shape_err(
                instr,
                format!("cannot reduce {src_shape:?} over {axes:?}"),
            ));
        }
        macro_rules! run {
            ($T:ident, $fold:expr) => {{
                let (v, out) = self.alloc::<$T>(i)?;
                reduce(out, self.src::<$T>(instr, instr.srcs[0])?, &axes, &$fold);
                v
            }};
        }
        Ok(match instr.op {
            Op::Sum => with_num_dtype!(instr.dtype, name, T => run!(T, Sum)),
            Op::Prod => with_num_dtype!(instr.dtype, name, T => run!(T, Prod)),
            Op::Max => with_any_dtype!(instr.dtype, T => run!(T, Max)),
            Op::Min => with_any_dtype!(instr.dtype, T => run!(T, Min)),
            _ => unreachable!("reduce called for {name}"),
        })
    }

    fn scan(&mut self, i: usize) -> Result<Value<'p>> {
        let instr = &self.program.instrs[i];
        let name = instr.op.name();
        let axis = arg_usize(instr, 0)?;
        let reverse = arg_usize(instr, 1)? != 0;
        if axis >= instr.shape.len() {
            return Err(shape_err(instr, format!("axis {axis} out of range")));
        }
        macro_rules! run {
            ($T:ident, $fold:expr) => {{
                let (v, out) = self.alloc::<$T>(i)?;
                scan(
                    out,
                    self.src::<$T>(instr, instr.srcs[0])?,
                    axis,
                    reverse,
                    &$fold,
                );
                v
            }};
        }
        Ok(match instr.op {
            Op::Cumsum => with_num_dtype!(instr.dtype, name, T => run!(T, Sum)),
            Op::Cumprod => with_num_dtype!(instr.dtype, name, T => run!(T, Prod)),
            Op::Cummax => with_any_dtype!(instr.dtype, T => run!(T, Max)),
            _ => unreachable!("scan called for {name}"),
        })
    }
}
