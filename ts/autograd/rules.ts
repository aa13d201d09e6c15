/**
 * The VJP table: one rule per primitive, mapping the cotangent of a node's output
 * to one cotangent per source (null where a source has no gradient: index and
 * condition inputs, integer and boolean data). Rules only build lazy graph nodes
 * with ordinary tensor ops, so gradient graphs are fused and run like any other
 * graph, and can be differentiated again.
 *
 * The driver (`backward.ts`) does everything rules share: order, accumulation,
 * dtype and shape checks, and stopping at detached nodes.
 */
import { arange } from '../creation.js'
import type { NodeArg } from '../graph/node.js'
import type { Op } from '../graph/ops.js'
import { full, zeros } from '../creation.js'
import { Tensor, where } from '../tensor.js'

/** What a rule sees: the node's sources and output as tensors, and the output's cotangent. */
export interface VjpContext {
  readonly srcs: readonly Tensor[]
  readonly out: Tensor
  readonly dy: Tensor
  readonly arg: NodeArg
}

export type VjpRule = (ctx: VjpContext) => (Tensor | null)[]

const LN2 = Math.LN2

function argOf<K extends NodeArg['kind']>(arg: NodeArg, kind: K): Extract<NodeArg, { kind: K }> {
  if (arg.kind !== kind) throw new Error(`expected a ${kind} argument, got ${arg.kind}`)
  return arg as Extract<NodeArg, { kind: K }>
}

/** Widths that pad only axis `axis` of an `ndim`-d tensor. */
function padAxis(ndim: number, axis: number, before: number, after: number): [number, number][] {
  return Array.from({ length: ndim }, (_, d): [number, number] => (d === axis ? [before, after] : [0, 0]))
}

/** Products of the elements before each position along `axis` (1 at the first). */
function exclusiveCumprod(x: Tensor, axis: number, reverse: boolean): Tensor {
  const n = x.shape[axis]!
  const shifted = reverse ? x.pad(padAxis(x.ndim, axis, 0, 1), 1).slice(ranges(x.ndim, axis, 1, n + 1)) : x.pad(padAxis(x.ndim, axis, 1, 0), 1).slice(ranges(x.ndim, axis, 0, n))
  return shifted.cumprod(axis, { reverse })
}

function ranges(ndim: number, axis: number, start: number, stop: number): ([number, number] | null)[] {
  return Array.from({ length: ndim }, (_, d) => (d === axis ? [start, stop] : null))
}

/** Positions 0..n-1 along `axis`, shaped to broadcast against a tensor of `shape`. */
function positions(shape: readonly number[], axis: number): Tensor {
  const n = shape[axis]!
  return arange(n, undefined, 1, { dtype: 'int32' }).reshape(shape.map((d, i) => (i === axis ? n : 1))).expand(shape)
}

/** `dy` routed through a max/min reduction to the positions equal to the result (the spec's rule). */
const toExtremes: VjpRule = ({ srcs: [x], out, dy }) => [where(x!.eq(out.expand(x!.shape)), dy.expand(x!.shape), 0)]

export const VJP_RULES = {
  /** leaves have no sources */
  load: () => [],

  // ---- unary ----
  /** y = -x: dx = -dy */
  neg: ({ dy }) => [dy.neg()],
  /** y = 1/x: dx = -dy / x² = -dy·y² */
  recip: ({ out, dy }) => [dy.neg().mul(out.mul(out))],
  /** y = sqrt(x): dx = dy / (2·y) */
  sqrt: ({ out, dy }) => [dy.div(out.mul(2))],
  /** y = exp2(x): dx = dy·y·ln 2 */
  exp2: ({ out, dy }) => [dy.mul(out).mul(LN2)],
  /** y = log2(x): dx = dy / (x·ln 2) */
  log2: ({ srcs: [x], dy }) => [dy.div(x!.mul(LN2))],
  /** y = sin(x): dx = dy·cos(x) */
  sin: ({ srcs: [x], dy }) => [dy.mul(x!.cos())],
  /** y = cast(x): dx = cast(dy) back to x's dtype (none for int/bool x) */
  cast: ({ srcs: [x], dy }) => [dy.cast(x!.dtype)],
  /** bitwise ops have no gradient */
  bitwiseNot: () => [null],

  // ---- binary ----
  /** y = a + b: da = dy, db = dy */
  add: ({ dy }) => [dy, dy],
  /** y = a·b: da = dy·b, db = dy·a */
  mul: ({ srcs: [a, b], dy }) => [dy.mul(b!), dy.mul(a!)],
  /** y = max(a, b): da = dy·(a ≥ b), db = dy·(a < b) */
  maximum: ({ srcs: [a, b], dy }) => [where(a!.ge(b!), dy, 0), where(a!.lt(b!), dy, 0)],
  /** y = min(a, b): da = dy·(a ≤ b), db = dy·(a > b) */
  minimum: ({ srcs: [a, b], dy }) => [where(a!.le(b!), dy, 0), where(a!.gt(b!), dy, 0)],
  /** comparisons have no gradient */
  lt: () => [null, null],
  eq: () => [null, null],
  bitwiseAnd: () => [null, null],
  bitwiseOr: () => [null, null],
  bitwiseXor: () => [null, null],
  /** y = where(c, a, b): da = where(c, dy, 0), db = where(c, 0, dy) */
  where: ({ srcs: [c], dy }) => [null, where(c!, dy, 0), where(c!, 0, dy)],

  // ---- reductions (the node keeps reduced axes as size 1) ----
  /** y = sum(x, axes): dx = broadcast(dy) */
  sum: ({ srcs: [x], dy }) => [dy.expand(x!.shape)],
  /** y = max(x, axes): dx = dy·(x == broadcast(y)) */
  max: toExtremes,
  /** y = min(x, axes): dx = dy·(x == broadcast(y)) */
  min: toExtremes,
  /**
   * y = prod(x, axes): dx = dy·(product of the other elements), as exclusive
   * products from both sides, so zeros need no division (beyond the spec).
   */
  prod: ({ srcs: [x], dy, arg }) => {
    const { axes } = argOf(arg, 'axes')
    const xs = x!
    const kept = xs.shape.map((_, d) => d).filter((d) => !axes.includes(d))
    const order = [...kept, ...axes]
    const reduced = axes.reduce((n, d) => n * xs.shape[d]!, 1)
    const line = xs.permute(order).reshape([...kept.map((d) => xs.shape[d]!), reduced])
    const last = line.ndim - 1
    const others = exclusiveCumprod(line, last, false).mul(exclusiveCumprod(line, last, true))
    const inverse = order.map((_, i) => order.indexOf(i))
    const back = others.reshape(order.map((d) => xs.shape[d]!)).permute(inverse)
    return [dy.expand(xs.shape).mul(back)]
  },

  // ---- views ----
  /** y = reshape(x): dx = reshape(dy, x.shape) */
  reshape: ({ srcs: [x], dy }) => [dy.reshape(x!.shape)],
  /** y = permute(x, order): dx = permute(dy, inverse(order)) */
  permute: ({ dy, arg }) => {
    const { order } = argOf(arg, 'order')
    return [dy.permute(order.map((_, i) => order.indexOf(i)))]
  },
  /** y = expand(x): dx = sum(dy over the expanded axes) */
  expand: ({ srcs: [x], dy }) => {
    const axes = x!.shape.flatMap((d, i) => (d === 1 && dy.shape[i] !== 1 ? [i] : []))
    return [dy.sum(axes, true)]
  },
  /** y = slice(x): dx = dy spread back with zeros (between steps and around the window) */
  slice: ({ srcs: [x], dy, arg }) => {
    const { starts, steps } = argOf(arg, 'slice')
    let g = dy
    steps.forEach((step, d) => {
      const m = g.shape[d]!
      if (step === 1 || m === 0) return
      const spread = g.unsqueeze(d + 1).pad(padAxis(g.ndim + 1, d + 1, 0, step - 1))
      g = spread.reshape([...g.shape.slice(0, d), m * step, ...g.shape.slice(d + 1)]).slice(ranges(g.ndim, d, 0, (m - 1) * step + 1))
    })
    const widths = x!.shape.map((n, d): [number, number] => [starts[d]!, n - starts[d]! - g.shape[d]!])
    return [g.pad(widths)]
  },
  /** y = pad(x): dx = slice(dy) back to x's window */
  pad: ({ srcs: [x], dy, arg }) => {
    const { before } = argOf(arg, 'pad')
    return [dy.slice(x!.shape.map((n, d) => [before[d]!, before[d]! + n] as const))]
  },

  // ---- scans ----
  /** y = cumsum(x): dx = reverse cumsum(dy) */
  cumsum: ({ dy, arg }) => {
    const { axis, reverse } = argOf(arg, 'scan')
    return [dy.cumsum(axis, { reverse: !reverse })]
  },
  /**
   * y = cumprod(x): dx = reverse_cumsum(dy·y)/x before the first zero; at the
   * first zero, reverse_cumsum(dy·cumprod(x with that zero as 1)); 0 after it.
   * No division by zero (beyond the spec).
   */
  cumprod: ({ srcs: [x], out, dy, arg }) => {
    const { axis, reverse } = argOf(arg, 'scan')
    const xs = x!
    const isZero = xs.eq(0)
    const zerosSoFar = isZero.cumsum(axis, { reverse })
    const beforeZero = zerosSoFar.eq(0)
    const firstZero = isZero.bitwiseAnd(zerosSoFar.eq(1))
    const safeX = where(beforeZero, xs, 1)
    const plain = dy.mul(out).cumsum(axis, { reverse: !reverse }).div(safeX)
    const skipping = dy.mul(where(firstZero, 1, xs).cumprod(axis, { reverse })).cumsum(axis, { reverse: !reverse })
    return [where(beforeZero, plain, where(firstZero, skipping, 0))]
  },
  /**
   * y = cummax(x): each dy_i goes to the position holding the running maximum
   * at i (the latest one on ties), by a scatter-add.
   */
  cummax: ({ srcs: [x], out, dy, arg }) => {
    const { axis, reverse } = argOf(arg, 'scan')
    const xs = x!
    const pos = positions(xs.shape, axis)
    const holds = xs.eq(out).bitwiseOr(xs.ne(xs))
    // Latest holder so far in scan order: the largest position going forward,
    // the smallest going backward (a max of negated positions).
    const holder = reverse
      ? where(holds, pos.neg(), -xs.shape[axis]!).cummax(axis, { reverse }).neg()
      : where(holds, pos, -1).cummax(axis, { reverse })
    return [zeros(xs.shape, { dtype: xs.dtype }).scatterAdd(axis, holder, dy)]
  },

  // ---- indexing ----
  /** y = gather(x, index): dx = scatterAdd(0, index, dy) (beyond the spec) */
  gather: ({ srcs: [x, index], dy, arg }) => {
    const { axis } = argOf(arg, 'axis')
    return [zeros(x!.shape, { dtype: x!.dtype }).scatterAdd(axis, index!, dy), null]
  },
  /** y = scatterAdd(t, index, src): dt = dy, dsrc = gather(dy, index) (beyond the spec) */
  scatterAdd: ({ srcs: [, index, src], dy, arg }) => {
    const { axis } = argOf(arg, 'axis')
    return [dy, null, padTo(dy.gather(axis, index!), src!.shape)]
  },
  /**
   * y = scatterMax(t, index, src): each dy goes to the element that won, the
   * target's value when it holds the maximum (ties included), else the first
   * source element (in index order along the axis) holding it (beyond the spec).
   */
  scatterMax: ({ srcs: [target, index, src], out, dy, arg }) => {
    const { axis } = argOf(arg, 'axis')
    const idx = index!
    const targetWon = target!.eq(out)
    const values = src!.slice(idx.shape.map((n) => [0, n] as const))
    const reached = values.eq(out.gather(axis, idx)).bitwiseAnd(targetWon.gather(axis, idx).bitwiseNot())
    const key = where(reached, positions(idx.shape, axis).neg(), -2147483647)
    const first = full(out.shape, -2147483647, { dtype: 'int32' }).scatterMax(axis, idx, key)
    const won = reached.bitwiseAnd(key.eq(first.gather(axis, idx)))
    return [where(targetWon, dy, 0), null, padTo(where(won, dy.gather(axis, idx), 0), src!.shape)]
  },

  // ---- contraction ----
  /** y = a @ b: da = dy @ bᵀ, db = aᵀ @ dy (batch axes were broadcast by explicit expands) */
  matmul: ({ srcs: [a, b], dy }) => [dy.matmul(b!.transpose()), a!.transpose().matmul(dy)],
} satisfies Record<Op, VjpRule>

/** Zero-pads `t` at the end of each axis up to `shape`. */
function padTo(t: Tensor, shape: readonly number[]): Tensor {
  return t.pad(shape.map((n, d): [number, number] => [0, n - t.shape[d]!]))
}
