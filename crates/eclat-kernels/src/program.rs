//! The encoded program a realize sends across N-API: a flat `f64` array.
//!
//! ```text
//! [n_instructions,
//!   (op, dtype, ndim, shape..., n_srcs, srcs..., n_args, args...) per instruction,
//!  n_outputs, (value, output_slot) per output]
//! ```
//! Instruction `i` defines value `i`; `srcs` name earlier values. Every integer is
//! exact in an f64, and the one real-valued argument (pad's fill) needs f64 anyway.
//!
//! A fused kernel (built by the scheduler, not a primitive) has op code
//! [`FUSED`] + the code of its root op: an elementwise op for a fused map, a
//! reduction for a fused reduce (whose args are the reduction's axes). Its args
//! are followed by an [`Expr`]:
//!
//! ```text
//! [n_steps, (op, dtype, n_operands, operands..., [value if op == CONST]) per step]
//! ```
//! Register `r < n_srcs` is source `r`; register `n_srcs + j` is step `j`'s
//! result; the last step is the kernel's value.

use crate::dtype::DType;
use crate::error::{ErrorKind, KernelError, Result};
use crate::layout::{numel, Layout};
use crate::op::Op;
use std::sync::{Arc, OnceLock};

/// One node of the realized subgraph.
#[derive(Clone, Debug)]
pub struct Instr {
    pub op: Op,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub srcs: Vec<usize>,
    pub args: Vec<f64>,
    /// The elementwise expression of a fused kernel.
    pub expr: Option<Expr>,
}

/// Added to the root op's code to mark a fused kernel.
pub const FUSED: i64 = 64;
/// The op code of a constant step in an [`Expr`].
pub const CONST: i64 = -1;

/// What one step of a fused expression computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOp {
    /// A scalar constant (broadcast).
    Const(f64),
    /// An elementwise primitive.
    Op(Op),
}

/// One step of a fused expression: its result has `dtype`.
#[derive(Clone, Debug)]
pub struct Step {
    pub op: StepOp,
    pub dtype: DType,
    pub operands: Vec<usize>,
}

/// A DAG of elementwise steps over the kernel's sources, in evaluation order.
#[derive(Clone, Debug)]
pub struct Expr {
    pub steps: Vec<Step>,
    /// The kernel's slot assignment, made on first use and kept with the
    /// decoded program (see `kernels::fused`).
    pub slots: OnceLock<Slots>,
    /// The dtype of every register for the source dtypes first met: the
    /// type check's result, kept with the decoded program.
    pub types: OnceLock<Vec<DType>>,
}

/// Which scratch slot holds each register of an expression evaluated over
/// `n_in` sources, and how many slots there are.
#[derive(Clone, Debug)]
pub struct Slots {
    pub n_in: usize,
    pub slot_of: Vec<usize>,
    pub count: usize,
}

impl Expr {
    pub fn new(steps: Vec<Step>) -> Expr {
        Expr {
            steps,
            slots: OnceLock::new(),
            types: OnceLock::new(),
        }
    }

    /// A short description for errors and profiles: `fused[sin,exp2,mul]`.
    pub fn label(&self) -> String {
        if let [Step {
            op: StepOp::Op(op), ..
        }] = self.steps[..]
        {
            return op.name().to_string();
        }
        let names: Vec<&str> = self
            .steps
            .iter()
            .map(|s| match s.op {
                StepOp::Const(_) => "const",
                StepOp::Op(op) => op.name(),
            })
            .collect();
        format!("fused[{}]", names.join(","))
    }
}

/// A decoded program: instructions plus which values fill which output slots.
#[derive(Clone, Debug)]
pub struct Program {
    pub instrs: Vec<Instr>,
    pub outputs: Vec<(usize, usize)>,
    /// The last instruction reading each value (`usize::MAX` for outputs):
    /// its storage can be freed after that.
    pub last_use: Vec<usize>,
    /// The output slot each value fills, if any.
    pub slot_of: Vec<Option<usize>>,
    /// Each value's layout: contiguous for loads and kernels, derived from
    /// the source's for views. They depend only on the program, so they are
    /// worked out (and view arguments checked) once, when it is decoded.
    pub layouts: Vec<Layout>,
}

impl Program {
    /// Elements the program's kernels touch: each kernel counts the larger of its
    /// output and its largest source (a reduction's work is its input). Loads and
    /// views do no work of their own (a reshape of a strided view is a copy); a
    /// matmul always counts as large.
    pub fn work(&self) -> usize {
        self.instrs
            .iter()
            .map(|i| match i.op {
                Op::Reshape if self.layouts[i.srcs[0]].is_contiguous() => 0,
                Op::Load | Op::Permute | Op::Expand | Op::Slice => 0,
                Op::Matmul => usize::MAX,
                _ => i
                    .srcs
                    .iter()
                    .map(|&s| numel(&self.instrs[s].shape))
                    .fold(numel(&i.shape), usize::max),
            })
            .fold(0, usize::saturating_add)
    }
}

/// A shape error naming the instruction's op and shape.
pub(crate) fn shape_err(instr: &Instr, what: String) -> KernelError {
    KernelError::new(
        ErrorKind::Shape,
        format!("{}: {what} (shape {:?})", instr.op.name(), instr.shape),
    )
}

/// Argument `k` of `instr` as a count.
pub(crate) fn arg_usize(instr: &Instr, k: usize) -> Result<usize> {
    let v = *instr
        .args
        .get(k)
        .ok_or_else(|| KernelError::format(format!("{}: missing argument {k}", instr.op.name())))?;
    if v < 0.0 || v.fract() != 0.0 {
        return Err(KernelError::format(format!(
            "{}: argument {k} = {v} is not a count",
            instr.op.name()
        )));
    }
    Ok(v as usize)
}

/// The layout of `instr`'s value, given its sources' layouts (see
/// [`Program::layouts`]). A reshape of a strided view is a copy: contiguous.
fn layout_of(instr: &Instr, layouts: &[Layout]) -> Result<Layout> {
    let shape = &instr.shape;
    let src = || &layouts[instr.srcs[0]];
    if matches!(instr.op, Op::Reshape | Op::Permute | Op::Expand | Op::Slice)
        && instr.srcs.len() != 1
    {
        return Err(KernelError::format(format!(
            "{}: {} sources, expected 1",
            instr.op.name(),
            instr.srcs.len()
        )));
    }
    Ok(match instr.op {
        Op::Reshape => {
            if numel(&src().shape) != numel(shape) {
                return Err(shape_err(
                    instr,
                    format!("cannot reshape {:?}", src().shape),
                ));
            }
            src()
                .reshape(shape)
                .unwrap_or_else(|| Layout::contiguous(shape))
        }
        Op::Permute => {
            let order = (0..shape.len())
                .map(|k| arg_usize(instr, k))
                .collect::<Result<Vec<_>>>()?;
            let mut seen = vec![false; order.len()];
            if order.len() != src().shape.len()
                || order
                    .iter()
                    .any(|&d| d >= seen.len() || std::mem::replace(&mut seen[d], true))
            {
                return Err(shape_err(
                    instr,
                    format!("order {order:?} is not a permutation"),
                ));
            }
            src().permute(&order)
        }
        Op::Expand => {
            let lead = shape
                .len()
                .checked_sub(src().shape.len())
                .ok_or_else(|| shape_err(instr, "too few axes".into()))?;
            if src()
                .shape
                .iter()
                .enumerate()
                .any(|(d, &n)| n != 1 && n != shape[d + lead])
            {
                return Err(shape_err(instr, format!("cannot expand {:?}", src().shape)));
            }
            src().expand(shape)
        }
        Op::Slice => {
            let nd = shape.len();
            let starts = (0..nd)
                .map(|d| arg_usize(instr, 2 * d))
                .collect::<Result<Vec<_>>>()?;
            let steps = (0..nd)
                .map(|d| arg_usize(instr, 2 * d + 1))
                .collect::<Result<Vec<_>>>()?;
            let fits = src().shape.len() == nd
                && (0..nd).all(|d| {
                    shape[d] == 0
                        || (steps[d] >= 1 && starts[d] + (shape[d] - 1) * steps[d] < src().shape[d])
                });
            if !fits {
                return Err(shape_err(
                    instr,
                    format!("slice of {:?} out of range", src().shape),
                ));
            }
            src().slice(&starts, &steps, shape)
        }
        _ => Layout::contiguous(shape),
    })
}

struct Reader<'a> {
    words: &'a [f64],
    pos: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<f64> {
        let v = *self
            .words
            .get(self.pos)
            .ok_or_else(|| KernelError::format("program ends early"))?;
        self.pos += 1;
        Ok(v)
    }
    fn int(&mut self) -> Result<i64> {
        let v = self.next()?;
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(KernelError::format(format!(
                "expected an integer in the program, found {v}"
            )));
        }
        Ok(v as i64)
    }
    fn count(&mut self) -> Result<usize> {
        let v = self.int()?;
        usize::try_from(v)
            .map_err(|_| KernelError::format(format!("negative count {v} in the program")))
    }
    fn counts(&mut self, n: usize) -> Result<Vec<usize>> {
        (0..n).map(|_| self.count()).collect()
    }
}

/// Reads the expression of fused instruction `i` with `n_srcs` sources.
fn decode_expr(r: &mut Reader, i: usize, n_srcs: usize) -> Result<Expr> {
    let n = r.count()?;
    if n == 0 {
        return Err(KernelError::format(format!(
            "fused instruction {i} has no steps"
        )));
    }
    let mut steps = Vec::with_capacity(n.min(r.words.len()));
    for j in 0..n {
        let code = r.int()?;
        let dtype = DType::from_code(r.int()?)?;
        let n_operands = r.count()?;
        let operands = r.counts(n_operands)?;
        if let Some(&bad) = operands.iter().find(|&&o| o >= n_srcs + j) {
            return Err(KernelError::format(format!(
                "fused instruction {i}: step {j} reads register {bad} before it exists"
            )));
        }
        let op = if code == CONST {
            StepOp::Const(r.next()?)
        } else {
            StepOp::Op(Op::from_code(code)?)
        };
        steps.push(Step {
            op,
            dtype,
            operands,
        });
    }
    Ok(Expr::new(steps))
}

/// Decodes and validates the structure of a program (sources name earlier values,
/// output slots are distinct) and derives every value's layout, checking the
/// views' arguments; each kernel validates its own operands when it runs.
pub fn decode(words: &[f64]) -> Result<Program> {
    let mut r = Reader { words, pos: 0 };
    let n = r.count()?;
    let mut instrs = Vec::with_capacity(n.min(words.len()));
    for i in 0..n {
        let code = r.int()?;
        let fused = code >= FUSED;
        let op = Op::from_code(if fused { code - FUSED } else { code })?;
        let dtype = DType::from_code(r.int()?)?;
        let ndim = r.count()?;
        let shape = r.counts(ndim)?;
        let n_srcs = r.count()?;
        let srcs = r.counts(n_srcs)?;
        if let Some(&bad) = srcs.iter().find(|&&s| s >= i) {
            return Err(KernelError::format(format!(
                "instruction {i} reads value {bad} before it exists"
            )));
        }
        let n_args = r.count()?;
        let args = (0..n_args).map(|_| r.next()).collect::<Result<Vec<_>>>()?;
        let expr = if fused {
            Some(decode_expr(&mut r, i, n_srcs)?)
        } else if op.elementwise_arity() == Some(n_srcs) {
            // A primitive is a fused kernel of one step (one implementation per op).
            Some(Expr::new(vec![Step {
                op: StepOp::Op(op),
                dtype,
                operands: (0..n_srcs).collect(),
            }]))
        } else {
            None
        };
        instrs.push(Instr {
            op,
            dtype,
            shape,
            srcs,
            args,
            expr,
        });
    }
    let n_out = r.count()?;
    let mut outputs = Vec::with_capacity(n_out.min(words.len()));
    for _ in 0..n_out {
        let value = r.count()?;
        let slot = r.count()?;
        if value >= n {
            return Err(KernelError::format(format!(
                "output names value {value} of {n}"
            )));
        }
        if outputs.iter().any(|&(_, s)| s == slot) {
            return Err(KernelError::format(format!(
                "output slot {slot} used twice"
            )));
        }
        outputs.push((value, slot));
    }
    if r.pos != words.len() {
        return Err(KernelError::format("trailing words after the program"));
    }
    let mut last_use: Vec<usize> = (0..n).collect();
    let mut slot_of = vec![None; n];
    for (i, instr) in instrs.iter().enumerate() {
        for &s in &instr.srcs {
            last_use[s] = i;
        }
    }
    for &(v, slot) in &outputs {
        slot_of[v] = Some(slot);
        last_use[v] = usize::MAX;
    }
    let mut layouts = Vec::with_capacity(n);
    for instr in &instrs {
        let layout = layout_of(instr, &layouts)?;
        layouts.push(layout);
    }
    Ok(Program {
        instrs,
        outputs,
        last_use,
        slot_of,
        layouts,
    })
}

/// Programs decoded recently on this thread, most recent last.
const DECODED_CACHE_SIZE: usize = 64;

/// A cached decoding: the words' hash, the words, the program.
type Decoded = (u64, Vec<f64>, Arc<Program>);

thread_local! {
    static DECODED: std::cell::RefCell<Vec<Decoded>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`decode`], remembering the last programs this thread decoded: a training
/// loop or a repeated tiny realize sends the same words every time, and
/// decoding allocates (shapes, sources, steps) more than a tiny kernel costs.
/// A hit is confirmed by comparing every word.
pub fn decode_cached(words: &[f64]) -> Result<Arc<Program>> {
    let same = |cached: &[f64]| {
        cached.len() == words.len()
            && cached
                .iter()
                .zip(words)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    };
    // A loop sends one program over and over: the latest is tried first, unhashed.
    let latest = DECODED.with_borrow(|cache| {
        cache
            .last()
            .filter(|(_, w, _)| same(w))
            .map(|(_, _, program)| program.clone())
    });
    if let Some(program) = latest {
        return Ok(program);
    }
    // FNV-1a over the words' bits: cheap next to the comparison that confirms a hit.
    let hash = words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        (h ^ w.to_bits()).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let hit = DECODED.with_borrow_mut(|cache| {
        let i = cache.iter().rposition(|(h, w, _)| *h == hash && same(w))?;
        let entry = cache.remove(i);
        let program = entry.2.clone();
        cache.push(entry);
        Some(program)
    });
    if let Some(program) = hit {
        return Ok(program);
    }
    let program = Arc::new(decode(words)?);
    DECODED.with_borrow_mut(|cache| {
        if cache.len() >= DECODED_CACHE_SIZE {
            cache.remove(0);
        }
        cache.push((hash, words.to_vec(), program.clone()));
    });
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[n]` float32 input 0, doubled by a fused add of itself.
    fn doubling(n: usize) -> Vec<f64> {
        let (load, add) = (Op::Load as u8 as f64, (FUSED + Op::Add as i64) as f64);
        let n = n as f64;
        vec![
            2.0,
            load,
            0.0,
            1.0,
            n,
            0.0,
            1.0,
            0.0, // load input 0
            add,
            0.0,
            1.0,
            n,
            1.0,
            0.0,
            0.0, // fused over value 0, no args
            1.0,
            Op::Add as u8 as f64,
            0.0,
            2.0,
            0.0,
            0.0, // one step: r0 + r0
            1.0,
            1.0,
            0.0, // output: value 1 into slot 0
        ]
    }

    #[test]
    fn cached_decoding_returns_the_same_program_for_the_same_words_only() {
        let a = decode_cached(&doubling(4)).unwrap();
        let again = decode_cached(&doubling(4)).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        let other = decode_cached(&doubling(5)).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(other.instrs[1].shape, vec![5]);
        // Malformed words are rejected every time, never cached.
        let mut bad = doubling(4);
        bad.pop();
        assert!(decode_cached(&bad).is_err());
        assert!(decode_cached(&bad).is_err());
    }
}
