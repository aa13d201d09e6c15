//! The N-API binding of Eclat: borrows the program and the typed arrays JavaScript
//! passes, runs [`eclat_kernels::execute`] synchronously or on libuv's pool, and
//! turns kernel errors and panics into JavaScript exceptions. No arithmetic here.

use eclat_kernels::{execute, pool, KernelError, Op};
use napi::bindgen_prelude::{
    AsyncTask, Float64Array, Float64ArraySlice, Object, TypedArray, Uint8Array, Uint8ArraySlice,
};
use napi::{sys, Env, Error, Status, Task};
use napi_derive::napi;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn to_js_error(e: KernelError) -> Error {
    Error::new(Status::GenericFailure, e.to_string())
}

/// Runs a program reading `inputs` and writing `outputs` (byte views). A panic
/// becomes an error; it never unwinds into Node.
fn realize_impl(program: &[f64], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> napi::Result<()> {
    match catch_unwind(AssertUnwindSafe(|| execute(program, inputs, outputs))) {
        Ok(result) => result.map_err(to_js_error),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Error::new(
                Status::GenericFailure,
                format!("InternalError: kernel panicked: {what}"),
            ))
        }
    }
}

/// `n_inputs`, checked against the number of buffers (inputs come first).
fn input_count(n_inputs: usize, n_buffers: usize) -> napi::Result<usize> {
    if n_inputs > n_buffers {
        return Err(Error::new(
            Status::InvalidArg,
            "realize: more inputs than buffers".to_owned(),
        ));
    }
    Ok(n_inputs)
}

/// Runs an encoded program on the calling thread (which blocks until it is done).
/// `buffers` holds the program's inputs, then its outputs: typed arrays of any
/// element type, read as the bytes they view (so JavaScript makes no byte views).
/// The arrays are borrowed for the call (no references are created: this call
/// is most of a small realize's cost).
#[napi]
pub fn realize_sync(
    program: Float64ArraySlice,
    mut buffers: Vec<TypedArray>,
    n_inputs: u32,
) -> napi::Result<()> {
    let n_inputs = input_count(n_inputs as usize, buffers.len())?;
    let (ins, outs) = buffers.split_at_mut(n_inputs);
    // Each slice is the bytes its array views (napi applies the byte offset).
    // Inputs are only read (two may view the same memory).
    let inputs: Vec<&[u8]> = ins.iter().map(|b| &*b.arraybuffer).collect();
    // SAFETY: JavaScript allocated the output arrays for this call alone and
    // does not run while it lasts.
    let mut outputs: Vec<&mut [u8]> = outs
        .iter_mut()
        .map(|b| unsafe { b.arraybuffer.as_mut() })
        .collect();
    realize_impl(program.as_ref(), &inputs, &mut outputs)
}

/// Runs a small program whose words, inputs and outputs all live in one
/// `arena` (a long-lived buffer JavaScript reuses): one typed array crosses
/// N-API instead of one per buffer, which is most of a tiny realize's cost.
///
/// The arena starts with float64 words: the buffer count `b`, the input count,
/// `b` (byte offset, byte length) pairs, the program's length and the program.
/// Buffers follow at 8-byte-aligned offsets, in order and without overlap
/// (inputs first, then outputs).
///
/// Exported as `realizeInArena(arena: Uint8Array): void` by [`init`], as a
/// plain Node-API callback (declared in `exports.d.ts`): the wrapper `#[napi]`
/// generates tracks borrows of typed-array arguments (a mutex, a shared
/// allocation and thread-local lists per call), which cost a tiny realize
/// about half as much as its kernel: 0.78 -> 0.52 µs per call.
unsafe extern "C" fn realize_in_arena(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let mut argc = 1;
    let mut arg = std::ptr::null_mut();
    let mut kind = -1;
    let mut len = 0;
    let mut data = std::ptr::null_mut();
    // SAFETY: the out-pointers are valid for the calls; `env` and `info` come
    // from Node for this call.
    let status = unsafe {
        let s = sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            &mut arg,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        if s == sys::Status::napi_ok && argc >= 1 {
            sys::napi_get_typedarray_info(
                env,
                arg,
                &mut kind,
                &mut len,
                &mut data,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        } else {
            sys::Status::napi_invalid_arg
        }
    };
    let result = if status != sys::Status::napi_ok || kind != sys::TypedarrayType::uint8_array {
        Err(arena_error("expected a Uint8Array"))
    } else if len == 0 {
        Err(arena_error("empty"))
    } else {
        // SAFETY: `data` points at the array's `len` bytes; JavaScript does not
        // run while this call lasts, and nothing else holds the arena.
        let bytes = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) };
        // Parsing the header cannot panic, but no unwind may cross this extern "C" frame.
        catch_unwind(AssertUnwindSafe(|| realize_arena_bytes(bytes)))
            .unwrap_or_else(|_| Err(arena_error("panicked while reading the header")))
    };
    if let Err(e) = result {
        let message = std::ffi::CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
        // SAFETY: `message` is a NUL-terminated string alive for the call.
        unsafe { sys::napi_throw_error(env, std::ptr::null(), message.as_ptr()) };
    }
    std::ptr::null_mut()
}

/// Adds the exports written as plain Node-API callbacks.
#[napi(module_exports)]
pub fn init(mut exports: Object, env: Env) -> napi::Result<()> {
    let realize = env.create_function::<Uint8ArraySlice, ()>("realizeInArena", realize_in_arena)?;
    exports.set("realizeInArena", realize)
}

/// Splits the arena into its program and buffers and runs the program (see [`realize_in_arena`]).
fn realize_arena_bytes(bytes: &mut [u8]) -> napi::Result<()> {
    let data_start = 8 * header_words(bytes)?;
    let (head, mut rest) = bytes.split_at_mut(data_start);
    let copied: Vec<f64>;
    // SAFETY: every bit pattern is a valid f64. JavaScript's arena is 8-byte
    // aligned, so the words are read in place; a misaligned view is copied.
    let words: &[f64] = match unsafe { head.align_to::<f64>() } {
        ([], words, []) => words,
        _ => {
            copied = head
                .chunks_exact(8)
                .map(|w| f64::from_ne_bytes(w.try_into().expect("8 bytes")))
                .collect();
            &copied
        }
    };
    let header = |k: usize| words[k] as usize;
    let n_buffers = header(0);
    let n_inputs = header(1);
    let program = &words[3 + 2 * n_buffers..];
    let mut cursor = data_start;
    let mut views: Vec<&mut [u8]> = Vec::with_capacity(n_buffers);
    for k in 0..n_buffers {
        let (offset, len) = (header(2 + 2 * k), header(3 + 2 * k));
        if offset < cursor
            || offset % 8 != 0
            || len > rest.len()
            || offset - cursor > rest.len() - len
        {
            return Err(arena_error("buffer outside the arena or out of order"));
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(offset - cursor);
        let (view, tail) = tail.split_at_mut(len);
        views.push(view);
        rest = tail;
        cursor = offset + len;
    }
    let (ins, outputs) = views.split_at_mut(input_count(n_inputs, n_buffers)?);
    let inputs: Vec<&[u8]> = ins.iter().map(|v| &**v).collect();
    realize_impl(program, &inputs, outputs)
}

fn arena_error(what: &str) -> Error {
    Error::new(
        Status::InvalidArg,
        format!("realize: malformed arena: {what}"),
    )
}

/// The number of header and program words at the arena's start, checked to
/// lie inside it (the buffers may start right after them).
fn header_words(bytes: &[u8]) -> napi::Result<usize> {
    let count = |k: usize| -> napi::Result<usize> {
        let word = bytes
            .get(8 * k..8 * k + 8)
            .ok_or_else(|| arena_error("header past the end"))?;
        let v = f64::from_ne_bytes(word.try_into().expect("8 bytes"));
        if v >= 0.0 && v.fract() == 0.0 && v < bytes.len() as f64 {
            Ok(v as usize)
        } else {
            Err(arena_error("bad count"))
        }
    };
    let n_buffers = count(0)?;
    let program_at = 2 + 2 * n_buffers;
    let end = program_at + 1 + count(program_at)?;
    if 8 * end > bytes.len() {
        return Err(arena_error("header past the end"));
    }
    Ok(end)
}

/// A program run off the JavaScript thread.
pub struct Realize {
    program: Float64Array,
    buffers: Vec<Uint8Array>,
    n_inputs: usize,
}

impl Task for Realize {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        let n_buffers = self.buffers.len();
        let (ins, outs) = self
            .buffers
            .split_at_mut(input_count(self.n_inputs, n_buffers)?);
        let inputs: Vec<&[u8]> = ins.iter().map(|b| &b[..]).collect();
        // SAFETY: the output arrays were allocated for this task alone and stay
        // referenced (untouched by JavaScript) until it resolves.
        let mut outputs: Vec<&mut [u8]> = outs.iter_mut().map(|b| unsafe { b.as_mut() }).collect();
        realize_impl(&self.program, &inputs, &mut outputs)
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// Like `realizeSync`, but runs on a worker thread and resolves when the outputs
/// are written; the buffers stay referenced until then.
#[napi]
pub fn realize_async(
    program: Float64Array,
    buffers: Vec<Uint8Array>,
    n_inputs: u32,
) -> AsyncTask<Realize> {
    AsyncTask::new(Realize {
        program,
        buffers,
        n_inputs: n_inputs as usize,
    })
}

/// The primitive ops the kernels implement, in code order.
#[napi]
pub fn primitive_names() -> Vec<String> {
    Op::ALL.iter().map(|op| op.name().to_owned()).collect()
}

/// Threads in the kernel pool (`ECLAT_NUM_THREADS` or the machine's cores).
#[napi]
pub fn num_threads() -> u32 {
    pool::num_threads() as u32
}

/// The machine's limits, measured now on the kernel pool (for benchmarks):
/// triad and read bandwidth in GB/s over arrays of `bytes`, float32 FMA peak in GFLOP/s.
#[napi(object)]
pub struct MachineLimits {
    pub triad_gbps: f64,
    pub read_gbps: f64,
    pub fma_peak_gflops: f64,
}

/// Measures memory bandwidth (arrays of `bytes` each) and the float32 FMA peak.
#[napi]
pub fn measure_machine(bytes: u32) -> MachineLimits {
    use eclat_kernels::machine;
    let bytes = bytes as usize;
    MachineLimits {
        triad_gbps: machine::triad_gbps(bytes),
        read_gbps: machine::read_gbps(bytes),
        fma_peak_gflops: machine::fma_peak_gflops(),
    }
}

/// The SIMD level the kernels run at (`avx512`, `avx2`, `neon`, `scalar`):
/// the widest this CPU offers, or `ECLAT_SIMD` when it names a supported one.
#[napi]
pub fn simd_level() -> &'static str {
    eclat_kernels::simd::level().name()
}

/// Every SIMD level this CPU can run, lowest first.
#[napi]
pub fn supported_simd_levels() -> Vec<&'static str> {
    eclat_kernels::simd::supported()
        .iter()
        .map(|l| l.name())
        .collect()
}
