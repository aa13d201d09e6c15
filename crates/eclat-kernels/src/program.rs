//! The encoded program a realize sends across N-API: a flat `f64` array.
//!
//! ```text
//! [n_instructions,
//!   (op, dtype, ndim, shape..., n_srcs, srcs..., n_args, args...) per instruction,
//!  n_outputs, (value, output_slot) per output]
//! ```
//! Instruction `i` defines value `i`; `srcs` name earlier values. Every integer is
//! exact in an f64, and the one real-valued argument (pad's fill) needs f64 anyway.

use crate::dtype::DType;
use crate::error::{KernelError, Result};
use crate::op::Op;

/// One node of the realized subgraph.
#[derive(Clone, Debug)]
pub struct Instr {
    pub op: Op,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub srcs: Vec<usize>,
    pub args: Vec<f64>,
}

/// A decoded program: instructions plus which values fill which output slots.
#[derive(Clone, Debug)]
pub struct Program {
    pub instrs: Vec<Instr>,
    pub outputs: Vec<(usize, usize)>,
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
            return Err(KernelError::format(format!("expected an integer in the program, found {v}")));
        }
        Ok(v as i64)
    }
    fn count(&mut self) -> Result<usize> {
        let v = self.int()?;
        usize::try_from(v).map_err(|_| KernelError::format(format!("negative count {v} in the program")))
    }
    fn counts(&mut self, n: usize) -> Result<Vec<usize>> {
        (0..n).map(|_| self.count()).collect()
    }
}

/// Decodes and validates the structure of a program (sources name earlier values,
/// output slots are distinct); each kernel validates its own operands.
pub fn decode(words: &[f64]) -> Result<Program> {
    let mut r = Reader { words, pos: 0 };
    let n = r.count()?;
    let mut instrs = Vec::with_capacity(n.min(words.len()));
    for i in 0..n {
        let op = Op::from_code(r.int()?)?;
        let dtype = DType::from_code(r.int()?)?;
        let ndim = r.count()?;
        let shape = r.counts(ndim)?;
        let n_srcs = r.count()?;
        let srcs = r.counts(n_srcs)?;
        if let Some(&bad) = srcs.iter().find(|&&s| s >= i) {
            return Err(KernelError::format(format!("instruction {i} reads value {bad} before it exists")));
        }
        let n_args = r.count()?;
        let args = (0..n_args).map(|_| r.next()).collect::<Result<Vec<_>>>()?;
        instrs.push(Instr { op, dtype, shape, srcs, args });
    }
    let n_out = r.count()?;
    let mut outputs = Vec::with_capacity(n_out.min(words.len()));
    for _ in 0..n_out {
        let value = r.count()?;
        let slot = r.count()?;
        if value >= n {
            return Err(KernelError::format(format!("output names value {value} of {n}")));
        }
        if outputs.iter().any(|&(_, s)| s == slot) {
            return Err(KernelError::format(format!("output slot {slot} used twice")));
        }
        outputs.push((value, slot));
    }
    if r.pos != words.len() {
        return Err(KernelError::format("trailing words after the program"));
    }
    Ok(Program { instrs, outputs })
}
