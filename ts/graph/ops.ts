/**
 * The primitive ops: the one list of what a graph node can be. The Rust kernels
 * mirror it (`crates/eclat-kernels/src/op.rs`), in the same order: an op's index
 * is its code in an encoded program. Everything else is composed of these.
 *
 * @example
 * PRIMITIVES.includes('cumsum') // true
 */
export const PRIMITIVES = [
  // leaves
  'load',
  // unary
  'neg', 'recip', 'sqrt', 'exp2', 'log2', 'sin', 'cast', 'bitwiseNot',
  // binary
  'add', 'mul', 'maximum', 'minimum', 'lt', 'eq', 'bitwiseAnd', 'bitwiseOr', 'bitwiseXor',
  // ternary
  'where',
  // reductions (the node keeps reduced axes as size 1)
  'sum', 'max', 'min', 'prod',
  // views
  'reshape', 'permute', 'expand', 'slice', 'pad',
  // scans
  'cumsum', 'cumprod', 'cummax',
  // indexing
  'gather', 'scatterAdd', 'scatterMax',
  // contraction
  'matmul',
] as const

/**
 * A primitive op.
 *
 * @example
 * const op: Op = 'matmul'
 */
export type Op = (typeof PRIMITIVES)[number]

export type UnaryOp = 'neg' | 'recip' | 'sqrt' | 'exp2' | 'log2' | 'sin' | 'bitwiseNot'
export type BinaryOp = 'add' | 'mul' | 'maximum' | 'minimum' | 'lt' | 'eq' | 'bitwiseAnd' | 'bitwiseOr' | 'bitwiseXor'
export type ReduceOp = 'sum' | 'max' | 'min' | 'prod'
export type ScanOp = 'cumsum' | 'cumprod' | 'cummax'
export type ScatterOp = 'scatterAdd' | 'scatterMax'

/** The op code in an encoded program. */
export const OP_CODE: Record<Op, number> = Object.fromEntries(PRIMITIVES.map((op, i) => [op, i])) as Record<Op, number>
