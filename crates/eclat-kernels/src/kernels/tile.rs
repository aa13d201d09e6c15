//! Register-resident evaluation of fused float expressions.
//!
//! The chunked machine in [`super::fused`] runs each step as its own loop over
//! an L1 piece, so every step loads and stores a whole register of the piece.
//! When an expression is all one float dtype (with booleans, its inputs' or
//! its own comparisons', as 0 and 1), it runs here instead: positions go
//! [`K`] vector registers at a time (a tile, [`crate::vector`]), every step
//! reads the previous step's tile from registers, and only values read again
//! later (a DAG's shared nodes) are stored, to a per-task slot. The per-step
//! `match` costs one predictable branch per tile, so a long chain runs close
//! to a hand-written loop (`benches/fused_chain.rs`).
//!
//! A [`TileProgram`] is built from the expression once per kind of piece (which
//! registers are broadcast scalars there), so its operands already say where
//! each value lives. Results are bit-identical to the chunked machine: every op
//! computes what the scalar function does, in the same order.

use crate::dtype::{DType, Num};
use crate::math::{SIN_F32_LIMIT, SIN_UNREDUCED_LIMIT};
use crate::op::Op;
use crate::program::{Expr, StepOp};
use crate::vector::{Vector, EXP2_MODERATE_LIMIT};

/// Vectors per tile: enough independent work per step to hide each op's
/// latency, few enough to stay in registers.
pub const K: usize = 8;

/// The most positions a tile has (eight AVX-512 registers of float32).
pub const MAX_TILE: usize = 128;

/// Where a step's operand lives during a tile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    /// The previous step's result, in registers.
    Acc,
    /// A broadcast scalar: `splats[register]`.
    Splat(usize),
    /// An input read in place: `W` elements at the tile's position.
    Input(usize),
    /// A value saved by an earlier step.
    Slot(usize),
}

/// A tile step's operation (booleans are 0 and 1 of the float dtype).
#[derive(Clone, Copy, Debug, PartialEq)]
enum TileOp {
    Neg,
    Recip,
    Sqrt,
    Exp2,
    Log2,
    Sin,
    Add,
    Mul,
    Max,
    Min,
    Lt,
    Eq,
    Where,
    Not,
    /// A cast that keeps the tile's representation (bool → float, float → itself).
    Copy,
}

/// What a tile step does to the tile in registers (`acc`).
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `acc = operand`.
    Load(Operand),
    /// `acc = op(acc)`.
    Unary(TileOp),
    /// `acc = op(acc, operand)`, or `op(operand, acc)` when `acc_first` is false.
    Binary(TileOp, Operand, bool),
    /// `acc = op(acc, splats[register])`: the common case of a constant
    /// operand, with the splat in one register rather than a tile of copies.
    BinarySplat(TileOp, usize),
    /// `acc = cond ? a : b`.
    Where([Operand; 3]),
}

#[derive(Clone, Debug)]
struct TileStep {
    kind: Kind,
    /// Slot to keep the result in when a later step (not the next) reads it.
    save: Option<usize>,
}

/// An expression lowered for one kind of piece.
pub struct TileProgram {
    steps: Vec<TileStep>,
    /// Slots the steps save into.
    pub n_slots: usize,
}

/// Whether `expr` can run on tiles: one float dtype throughout (booleans as
/// its 0 and 1), and only ops the tile machine has.
pub fn supported(expr: &Expr, dts: &[DType], n_in: usize) -> bool {
    let t = dts[dts.len() - 1];
    // Boolean inputs arrive as 0 and 1 of `t` (`Eval::locate_inputs`).
    if !matches!(t, DType::F32 | DType::F64)
        || dts[..n_in].iter().any(|&d| d != t && d != DType::Bool)
    {
        return false;
    }
    expr.steps.iter().all(|step| {
        let ops: Vec<DType> = step.operands.iter().map(|&o| dts[o]).collect();
        let all = |d: DType| ops.iter().all(|&o| o == d);
        match step.op {
            StepOp::Const(_) => step.dtype == t || step.dtype == DType::Bool,
            StepOp::Op(op) => match op {
                Op::Neg | Op::Recip | Op::Sqrt | Op::Exp2 | Op::Log2 | Op::Sin => all(t),
                Op::Add | Op::Mul | Op::Maximum | Op::Minimum | Op::Lt | Op::Eq => all(t),
                Op::Where => ops[0] == DType::Bool && ops[1] == t && ops[2] == t,
                Op::BitwiseNot => all(DType::Bool),
                Op::Cast => step.dtype == t && (ops[0] == t || ops[0] == DType::Bool),
                _ => false,
            },
        }
    })
}

impl TileProgram {
    /// Lowers `expr` (accepted by [`supported`]) for pieces where `splat[r]`
    /// says which registers are broadcast scalars; the other inputs are read
    /// in place and the other steps are computed per tile.
    pub fn new(expr: &Expr, n_in: usize, splat: &[bool]) -> TileProgram {
        let n_steps = expr.steps.len();
        // Registers computed per tile, in order; the last step always is.
        let tiled: Vec<usize> = (0..n_steps)
            .filter(|&j| !splat[n_in + j] || j + 1 == n_steps)
            .collect();
        let mut order = vec![usize::MAX; n_in + n_steps];
        for (i, &j) in tiled.iter().enumerate() {
            order[n_in + j] = i;
        }
        // Tile steps that read each register.
        let mut readers: Vec<Vec<usize>> = vec![vec![]; n_in + n_steps];
        for (i, &j) in tiled.iter().enumerate() {
            for &o in &expr.steps[j].operands {
                readers[o].push(i);
            }
        }
        let mut slot_of = vec![usize::MAX; n_in + n_steps];
        let mut n_slots = 0;
        let mut steps = Vec::with_capacity(tiled.len());
        for (i, &j) in tiled.iter().enumerate() {
            let step = &expr.steps[j];
            let r = n_in + j;
            let operand = |o: usize| {
                if o < n_in {
                    if splat[o] {
                        Operand::Splat(o)
                    } else {
                        Operand::Input(o)
                    }
                } else if order[o] == usize::MAX {
                    Operand::Splat(o)
                } else if order[o] + 1 == i {
                    Operand::Acc
                } else {
                    Operand::Slot(slot_of[o])
                }
            };
            let operands: Vec<Operand> = step.operands.iter().map(|&o| operand(o)).collect();
            let op = match step.op {
                // A constant root: its splat copied out.
                StepOp::Const(_) => None,
                StepOp::Op(op) => Some(match op {
                    Op::Neg => TileOp::Neg,
                    Op::Recip => TileOp::Recip,
                    Op::Sqrt => TileOp::Sqrt,
                    Op::Exp2 => TileOp::Exp2,
                    Op::Log2 => TileOp::Log2,
                    Op::Sin => TileOp::Sin,
                    Op::Add => TileOp::Add,
                    Op::Mul => TileOp::Mul,
                    Op::Maximum => TileOp::Max,
                    Op::Minimum => TileOp::Min,
                    Op::Lt => TileOp::Lt,
                    Op::Eq => TileOp::Eq,
                    Op::Where => TileOp::Where,
                    Op::BitwiseNot => TileOp::Not,
                    Op::Cast => TileOp::Copy,
                    other => unreachable!("{} is not a tile op", other.name()),
                }),
            };
            let mut push = |kind: Kind| {
                steps.push(TileStep { kind, save: None });
            };
            match (op, operands.as_slice()) {
                (None, _) => push(Kind::Load(Operand::Splat(r))),
                (Some(TileOp::Where), &[c, a, b]) => push(Kind::Where([c, a, b])),
                (Some(op), &[a]) => {
                    if a != Operand::Acc {
                        push(Kind::Load(a));
                    }
                    if op != TileOp::Copy {
                        push(Kind::Unary(op));
                    }
                }
                (Some(op), &[a, b]) => match (a, b) {
                    (Operand::Acc, Operand::Splat(r)) => push(Kind::BinarySplat(op, r)),
                    (Operand::Acc, b) => push(Kind::Binary(op, b, true)),
                    (a, Operand::Acc) => push(Kind::Binary(op, a, false)),
                    (a, b) => {
                        push(Kind::Load(a));
                        push(Kind::Binary(op, b, true));
                    }
                },
                _ => unreachable!("operand counts were checked"),
            }
            if readers[r].iter().any(|&k| k != i + 1) {
                slot_of[r] = n_slots;
                n_slots += 1;
                steps.last_mut().unwrap().save = Some(n_slots - 1);
            }
        }
        TileProgram { steps, n_slots }
    }

    /// Evaluates one tile of `K` vectors `V`: `input(r)` points at input
    /// register `r`'s values for the tile; `slots` has room for
    /// [`TileProgram::n_slots`] tiles.
    ///
    /// # Safety
    /// Compiled with `V`'s ISA; `input` must return readable tiles for every
    /// `Operand::Input`.
    #[inline(always)]
    pub unsafe fn tile<T: Num, V: Vector<T>>(
        &self,
        input: impl Fn(usize) -> *const T,
        splats: &[T],
        slots: &mut [[V; K]],
    ) -> [V; K] {
        macro_rules! load {
            ($p:expr) => {{
                let p: *const T = $p;
                let tile: [V; K] = std::array::from_fn(
                    #[inline(always)]
                    |k| V::load(p.add(k * V::LANES)),
                );
                tile
            }};
        }
        macro_rules! get {
            ($o:expr, $acc:expr) => {
                match $o {
                    Operand::Acc => $acc,
                    Operand::Splat(r) => [V::splat(splats[r]); K],
                    Operand::Input(r) => load!(input(r)),
                    Operand::Slot(s) => slots[s],
                }
            };
        }
        // A binary op's method, applied to the tile by `$apply`.
        macro_rules! binary_op {
            ($op:expr, $apply:ident) => {
                match $op {
                    TileOp::Add => $apply!(add),
                    TileOp::Mul => $apply!(mul),
                    TileOp::Max => $apply!(max_nan),
                    TileOp::Min => $apply!(min_nan),
                    TileOp::Lt => $apply!(lt),
                    _ => $apply!(eq), // Eq
                }
            };
        }
        let mut acc = [V::splat(T::default()); K];
        for step in &self.steps {
            acc = match step.kind {
                Kind::Load(o) => get!(o, acc),
                Kind::Unary(op) => {
                    macro_rules! each {
                        ($method:ident) => {
                            acc.map(
                                #[inline(always)]
                                |v| v.$method(),
                            )
                        };
                    }
                    // The tile's largest magnitude: one branch per tile
                    // then picks the cheapest path every lane allows.
                    macro_rules! magnitude {
                        () => {
                            acc.iter().fold(
                                V::splat(T::default()),
                                #[inline(always)]
                                |m, v| v.max_magnitude(m),
                            )
                        };
                    }
                    match op {
                        TileOp::Neg => each!(neg),
                        TileOp::Recip => each!(recip),
                        TileOp::Sqrt => each!(sqrt),
                        TileOp::Not => each!(is_zero),
                        TileOp::Exp2 => {
                            if magnitude!().magnitudes_at_most(EXP2_MODERATE_LIMIT) {
                                each!(exp2_moderate)
                            } else {
                                each!(exp2)
                            }
                        }
                        TileOp::Log2 => each!(log2),
                        _ => {
                            // Sin
                            let m = magnitude!();
                            if m.magnitudes_at_most(SIN_UNREDUCED_LIMIT) {
                                each!(sin_unreduced)
                            } else if m.magnitudes_at_most(SIN_F32_LIMIT) {
                                each!(sin_small)
                            } else {
                                each!(sin)
                            }
                        }
                    }
                }
                Kind::BinarySplat(op, r) => {
                    let number = !splats[r].is_nan();
                    let s = V::splat(splats[r]);
                    macro_rules! with_splat {
                        ($method:ident) => {
                            acc.map(
                                #[inline(always)]
                                |v| v.$method(s),
                            )
                        };
                    }
                    match op {
                        TileOp::Max if number => with_splat!(max_nan_by_number),
                        TileOp::Min if number => with_splat!(min_nan_by_number),
                        _ => binary_op!(op, with_splat),
                    }
                }
                Kind::Binary(op, other, acc_first) => {
                    let o = get!(other, acc);
                    // Two loops rather than swapped copies of the operands
                    // (the copies went through the stack).
                    macro_rules! zip {
                        ($method:ident) => {
                            if acc_first {
                                std::array::from_fn(
                                    #[inline(always)]
                                    |k| acc[k].$method(o[k]),
                                )
                            } else {
                                std::array::from_fn(
                                    #[inline(always)]
                                    |k| o[k].$method(acc[k]),
                                )
                            }
                        };
                    }
                    binary_op!(op, zip)
                }
                Kind::Where([c, a, b]) => {
                    let (c, a, b) = (get!(c, acc), get!(a, acc), get!(b, acc));
                    std::array::from_fn(
                        #[inline(always)]
                        |k| c[k].select(a[k], b[k]),
                    )
                }
            };
            if let Some(s) = step.save {
                slots[s] = acc;
            }
        }
        acc
    }
}
