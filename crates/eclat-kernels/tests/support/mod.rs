//! Builds encoded programs (the format of `program.rs`) for the kernel tests and benches.
#![allow(dead_code)]

use eclat_kernels::program::{CONST, FUSED};
use eclat_kernels::{DType, Op};

/// A program under construction: instruction `i` defines value `i`.
#[derive(Default)]
pub struct Builder {
    words: Vec<f64>,
    count: usize,
}

/// One step of a fused expression: (op or None for a constant, dtype, operands, constant value).
#[derive(Clone, Debug)]
pub struct ExprStep {
    pub op: Option<Op>,
    pub dtype: DType,
    pub operands: Vec<usize>,
    pub value: f64,
}

impl ExprStep {
    /// A float32 step: `op` of the registers `operands`.
    pub fn f32(op: Op, operands: &[usize]) -> ExprStep {
        ExprStep {
            op: Some(op),
            dtype: DType::F32,
            operands: operands.to_vec(),
            value: 0.0,
        }
    }

    /// A float32 constant register.
    pub fn f32_const(value: f64) -> ExprStep {
        ExprStep {
            op: None,
            dtype: DType::F32,
            operands: vec![],
            value,
        }
    }
}

fn head(
    words: &mut Vec<f64>,
    code: f64,
    dtype: DType,
    shape: &[usize],
    srcs: &[usize],
    args: &[f64],
) {
    words.extend([code, dtype as u8 as f64, shape.len() as f64]);
    words.extend(shape.iter().map(|&d| d as f64));
    words.push(srcs.len() as f64);
    words.extend(srcs.iter().map(|&s| s as f64));
    words.push(args.len() as f64);
    words.extend_from_slice(args);
}

impl Builder {
    pub fn op(
        &mut self,
        op: Op,
        dtype: DType,
        shape: &[usize],
        srcs: &[usize],
        args: &[f64],
    ) -> usize {
        head(&mut self.words, op as u8 as f64, dtype, shape, srcs, args);
        self.count += 1;
        self.count - 1
    }

    pub fn load(&mut self, input: usize, dtype: DType, shape: &[usize]) -> usize {
        self.op(Op::Load, dtype, shape, &[], &[input as f64])
    }

    /// A fused kernel whose root op is `root` (a reduction for a fused reduce).
    pub fn fused(
        &mut self,
        root: Op,
        dtype: DType,
        shape: &[usize],
        srcs: &[usize],
        args: &[f64],
        steps: &[ExprStep],
    ) -> usize {
        head(
            &mut self.words,
            (FUSED + root as u8 as i64) as f64,
            dtype,
            shape,
            srcs,
            args,
        );
        self.words.push(steps.len() as f64);
        for s in steps {
            self.words
                .push(s.op.map_or(CONST as f64, |op| op as u8 as f64));
            self.words.push(s.dtype as u8 as f64);
            self.words.push(s.operands.len() as f64);
            self.words.extend(s.operands.iter().map(|&o| o as f64));
            if s.op.is_none() {
                self.words.push(s.value);
            }
        }
        self.count += 1;
        self.count - 1
    }

    /// The encoded program with `outputs[k]` written to output slot k.
    pub fn finish(mut self, outputs: &[usize]) -> Vec<f64> {
        self.words.push(outputs.len() as f64);
        for (slot, &v) in outputs.iter().enumerate() {
            self.words.extend([v as f64, slot as f64]);
        }
        let mut words = vec![self.count as f64];
        words.extend(self.words);
        words
    }
}

/// The bytes of a slice of plain numbers (aligned as the kernels require).
pub fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain numbers have no padding; the length covers exactly the slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// The bytes of a mutable slice of plain numbers.
pub fn as_bytes_mut<T: Copy>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as above; every byte pattern is a valid f32/f64/i32/u8.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}
