//! The primitive ops: the one list the TypeScript graph (`ts/graph/ops.ts`) mirrors.
//! The discriminant is the op's code in an encoded program.

use crate::error::{KernelError, Result};

macro_rules! primitives {
    ($($variant:ident = $code:literal => $name:literal,)*) => {
        /// A primitive op of the lazy graph.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Op { $($variant = $code,)* }

        impl Op {
            /// Every primitive, in code order.
            pub const ALL: &'static [Op] = &[$(Op::$variant,)*];

            /// The op's name as the TypeScript API spells it.
            pub fn name(self) -> &'static str {
                match self { $(Op::$variant => $name,)* }
            }

            pub fn from_code(code: i64) -> Result<Op> {
                match code {
                    $($code => Ok(Op::$variant),)*
                    _ => Err(KernelError::format(format!("unknown op code {code}"))),
                }
            }
        }
    };
}

primitives! {
    // leaves
    Load = 0 => "load",
    // unary
    Neg = 1 => "neg",
    Recip = 2 => "recip",
    Sqrt = 3 => "sqrt",
    Exp2 = 4 => "exp2",
    Log2 = 5 => "log2",
    Sin = 6 => "sin",
    Cast = 7 => "cast",
    BitwiseNot = 8 => "bitwiseNot",
    // binary
    Add = 9 => "add",
    Mul = 10 => "mul",
    Maximum = 11 => "maximum",
    Minimum = 12 => "minimum",
    Lt = 13 => "lt",
    Eq = 14 => "eq",
    BitwiseAnd = 15 => "bitwiseAnd",
    BitwiseOr = 16 => "bitwiseOr",
    BitwiseXor = 17 => "bitwiseXor",
    // ternary
    Where = 18 => "where",
    // reductions (the output keeps reduced axes as size 1)
    Sum = 19 => "sum",
    Max = 20 => "max",
    Min = 21 => "min",
    Prod = 22 => "prod",
    // views
    Reshape = 23 => "reshape",
    Permute = 24 => "permute",
    Expand = 25 => "expand",
    Slice = 26 => "slice",
    Pad = 27 => "pad",
    // scans
    Cumsum = 28 => "cumsum",
    Cumprod = 29 => "cumprod",
    Cummax = 30 => "cummax",
    // indexing
    Gather = 31 => "gather",
    ScatterAdd = 32 => "scatterAdd",
    ScatterMax = 33 => "scatterMax",
    // contraction
    Matmul = 34 => "matmul",
}

impl Op {
    /// The operand count of an elementwise primitive, `None` for every other op:
    /// the one list of what the fused kernel computes.
    pub fn elementwise_arity(self) -> Option<usize> {
        match self {
            Op::Neg
            | Op::Recip
            | Op::Sqrt
            | Op::Exp2
            | Op::Log2
            | Op::Sin
            | Op::Cast
            | Op::BitwiseNot => Some(1),
            Op::Add
            | Op::Mul
            | Op::Maximum
            | Op::Minimum
            | Op::Lt
            | Op::Eq
            | Op::BitwiseAnd
            | Op::BitwiseOr
            | Op::BitwiseXor => Some(2),
            Op::Where => Some(3),
            _ => None,
        }
    }
}
