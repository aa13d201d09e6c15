import {
  allocate, castScalar, checkDType, isFloat, promote, scalarDType,
  type DType, type TypedArray,
} from './dtype.js'
import { DTypeError, EclatError, ShapeError, fmtShape } from './errors.js'
import { handOut, recycle } from './memory.js'
import { LazyNode, NO_ARG, type NodeArg, type NodeFlags } from './graph/node.js'
import type { BinaryOp, Op, ReduceOp, ScanOp, ScatterOp, UnaryOp } from './graph/ops.js'
import { broadcastShapes, checkShape, normalizeAxes, normalizeAxis, numel, sameShape } from './graph/shape.js'
import { realizeNodes, realizeNodesAsync } from './realize.js'
import * as composite from './ops/composite.js'
import { toTypedArray, type NestedArray } from './data.js'
import { gradEnabled } from './autograd/mode.js'
import { accumulateBackward } from './autograd/backward.js'

/** Tensors that asked for gradients (`requiresGrad`), by their current node: the leaves `backward()` fills. */
export const gradLeaves = new WeakMap<LazyNode, Tensor>()

/**
 * A tensor or a JS scalar where an op accepts either.
 *
 * @example
 * const other: TensorLike = 2.5
 */
export type TensorLike = Tensor | number | boolean

/**
 * Options of the creation functions.
 *
 * @example
 * zeros([2, 3], { dtype: 'float64', requiresGrad: true })
 */
export interface TensorOptions {
  /** Element type; float32 for numbers, bool for booleans by default. */
  dtype?: DType
  /** Shape of flat or typed-array data. */
  shape?: readonly number[]
  /** Track gradients through this tensor. */
  requiresGrad?: boolean
}

/**
 * Options of the scans (`cumsum`, `cumprod`, `cummax`).
 *
 * @example
 * x.cumsum(0, { reverse: true })
 */
export interface ScanOptions {
  /** Scan from the last element to the first. */
  reverse?: boolean
}

/**
 * One axis of a slice: `[start, stop, step?]`, or `null` for the whole axis.
 *
 * @example
 * const rows: SliceRange = [0, -1, 2]
 */
export type SliceRange = readonly [number, number, number?] | readonly [number] | null

let inputCounter = 0

/** A fresh load node over `data` (or an empty input slot named `name`). */
export function loadNode(data: TypedArray | null, shape: readonly number[], dtype: DType, name?: string): LazyNode {
  const slot = { data, name: name ?? `input${inputCounter++}` }
  return new LazyNode('load', [], { kind: 'load', slot }, Object.freeze([...shape]), dtype)
}

/** Load nodes of recent scalar constants by dtype and value: `x.add(1)` in a loop reuses one buffer. */
const scalarNodes = new Map<DType, Map<number, LazyNode>>()
/** Nodes of the constant -0 by dtype (a Map does not tell -0 from 0). */
const negativeZeroNodes = new Map<DType, LazyNode>()

/** A 0-d tensor holding `value` as `dtype`. */
export function scalarTensor(value: number | boolean, dtype: DType): Tensor {
  const v = Number(value)
  // Constants never change, so one node per (dtype, value) can be shared.
  const negativeZero = Object.is(v, -0)
  let byValue = scalarNodes.get(dtype)
  if (!byValue) scalarNodes.set(dtype, (byValue = new Map()))
  let node = negativeZero ? negativeZeroNodes.get(dtype) : byValue.get(v)
  if (!node) {
    const data = allocate(dtype, 1)
    data[0] = castScalar(v, dtype)
    node = loadNode(data, [], dtype, 'constant')
    if (negativeZero) negativeZeroNodes.set(dtype, node)
    else {
      if (byValue.size >= 1024) byValue.clear()
      byValue.set(v, node)
    }
  }
  return new Tensor(node)
}

/** The latest broadcast of each constant (see `broadcastTo`). */
const constantBroadcasts = new WeakMap<LazyNode, LazyNode>()

const TRACKED: NodeFlags = Object.freeze({})
const DETACHED: NodeFlags = Object.freeze({ detached: true })

function describe(op: string, ...ts: Tensor[]): string {
  return `${op}: ${ts.map((t) => `${fmtShape(t.shape)} ${t.dtype}`).join(', ')}`
}

/**
 * An n-dimensional array in a lazy graph. Every op returns a new tensor at once
 * (checking shapes and dtypes then); nothing is computed until the data is asked
 * for (`data()`, `dataSync()`, `toArray()`, `item()`, `realize()`).
 *
 * @example
 * const x = tensor([[1, 2], [3, 4]])
 * const y = x.mul(x).sum(1)        // builds a graph
 * console.log(y.toArray())          // [5, 25]
 */
export class Tensor {
  /** The graph node, or null once disposed. */
  private current: LazyNode | null
  /** What the tensor was, for the error when it is used after `dispose()`. */
  private disposedAs = ''
  /** The accumulated gradient, set by `backward()`; null until then. */
  grad: Tensor | null = null
  /** Set by the user: a leaf whose `.grad` `backward()` fills. */
  private isLeaf = false
  /** Computed from a tensor that requires gradients. */
  private derived = false

  /** Wraps a graph node; use the creation functions (`tensor`, `zeros`, ...) instead. */
  constructor(node: LazyNode, requiresGrad = false) {
    this.current = node
    if (requiresGrad) this.requiresGrad_(true)
  }

  /** The graph node this tensor currently stands for (replaced by `assign`). */
  get node(): LazyNode {
    if (this.current === null) {
      throw new EclatError(`${this.disposedAs} was disposed: it cannot be used any more (dispose() it only when done with it)`)
    }
    return this.current
  }
  set node(node: LazyNode) {
    this.current = node
  }

  /**
   * Frees this tensor's data for reuse: the next realize of the same dtype and
   * size writes into it instead of fresh memory (much faster for large
   * tensors, whose fresh pages the OS must zero). Using the tensor afterwards
   * throws; tensors computed from it stay valid (recomputed if they need it).
   * The data is recycled only if Eclat alone holds it — arrays returned by
   * `dataSync()`/`data()` stay valid and are never reused. Disposing twice is
   * a no-op.
   * @example
   * const y = x.sin().realize()
   * const s = y.sum().item()
   * y.dispose()
   */
  dispose(): void {
    const node = this.current
    if (node === null) return
    this.disposedAs = `Tensor(${fmtShape(node.shape)}, ${node.dtype})`
    this.current = null
    if (this.isLeaf) gradLeaves.delete(node)
    if (node.realized && node.op !== 'load' && recycle(node.realized, node.dtype)) node.realized = null
  }

  /** Whether `dispose()` was called. */
  get isDisposed(): boolean {
    return this.current === null
  }

  /**
   * Whether gradients flow to this tensor: set on leaves by the user, true for
   * anything computed from them (outside `noGrad`).
   * @example tensor([1], { requiresGrad: true }).mul(2).requiresGrad // true
   */
  get requiresGrad(): boolean {
    return this.isLeaf || this.derived
  }
  set requiresGrad(flag: boolean) {
    this.requiresGrad_(flag)
  }

  /**
   * Marks this tensor as a leaf whose gradient `backward()` accumulates in `.grad`
   * (floating-point dtypes only). Returns `this`.
   * @example const w = zeros([3]).requiresGrad_()
   */
  requiresGrad_(flag = true): this {
    if (flag && !isFloat(this.dtype)) {
      throw new DTypeError(`requiresGrad_: only float tensors can require gradients, got ${this.dtype} (shape ${fmtShape(this.shape)})`)
    }
    this.isLeaf = flag
    if (flag) gradLeaves.set(this.node, this)
    else gradLeaves.delete(this.node)
    return this
  }

  /**
   * The same values with gradients stopped: nothing flows back through the result.
   * @example const target = prediction.detach()
   */
  detach(): Tensor {
    const data = this.node.data
    if (data) {
      handOut(data) // two nodes share it now
      return new Tensor(loadNode(data, this.shape, this.dtype))
    }
    return new Tensor(new LazyNode('reshape', [this.node], NO_ARG, this.shape, this.dtype, { detached: true }))
  }

  /**
   * Backpropagates from this tensor (one element, or any shape with
   * `gradOutput`) and adds the gradients into `.grad` of every leaf that
   * requires them, computing all of them in one realize.
   * @example loss.backward(); console.log(w.grad?.toArray())
   */
  backward(gradOutput?: Tensor): void {
    accumulateBackward(this, gradOutput)
  }

  /** The size of each axis. @example tensor([[1, 2, 3]]).shape // [1, 3] */
  get shape(): readonly number[] {
    return this.node.shape
  }
  /** The element type. @example tensor([true]).dtype // 'bool' */
  get dtype(): DType {
    return this.node.dtype
  }
  /** Number of axes. @example zeros([2, 3]).ndim // 2 */
  get ndim(): number {
    return this.node.shape.length
  }
  /** Number of elements. @example zeros([2, 3]).size // 6 */
  get size(): number {
    return numel(this.node.shape)
  }

  // ---- building nodes -------------------------------------------------------

  /** @internal Builds a node of `op` over `srcs`. */
  make(op: Op, srcs: readonly Tensor[], arg: NodeArg, shape: readonly number[], dtype: DType): Tensor {
    const tracking = gradEnabled()
    // Shapes are frozen arrays, shared between nodes when equal (most ops keep their operand's).
    const frozen = Object.isFrozen(shape) ? shape : Object.freeze([...shape])
    const out = new Tensor(new LazyNode(op, srcs.map((s) => s.node), arg, frozen, dtype, tracking ? TRACKED : DETACHED))
    out.derived = tracking && isFloat(dtype) && srcs.some((s) => s.requiresGrad)
    return out
  }

  /** @internal This tensor broadcast to `shape` (which must be a valid broadcast target). */
  broadcastTo(shape: readonly number[]): Tensor {
    const node = this.node
    if (sameShape(shape, node.shape)) return this
    // `x.add(1)` in a loop: the constant's broadcast to x's shape is built once.
    const constant = node.arg.kind === 'load' && node.arg.slot.name === 'constant'
    const cached = constant ? constantBroadcasts.get(node) : undefined
    if (cached && cached.flags === (gradEnabled() ? TRACKED : DETACHED) && sameShape(cached.shape, shape)) return new Tensor(cached)
    const lead = shape.length - this.ndim
    const padded: Tensor = lead > 0 ? this.make('reshape', [this], NO_ARG, [...new Array<number>(lead).fill(1), ...node.shape], this.dtype) : this
    const out = padded.make('expand', [padded], NO_ARG, shape, this.dtype)
    if (constant) constantBroadcasts.set(node, out.node)
    return out
  }

  /** @internal The other operand of a binary op as a tensor, both promoted to one dtype. */
  coerceWith(op: string, other: TensorLike): [Tensor, Tensor] {
    if (!(other instanceof Tensor)) {
      if (typeof other !== 'number' && typeof other !== 'boolean') {
        throw new DTypeError(`${op}: expected a Tensor, number or boolean operand, got ${typeof other}`)
      }
      const dtype = scalarDType(other, this.dtype)
      return [this.cast(dtype), scalarTensor(other, dtype)]
    }
    const dtype = promote(this.dtype, other.dtype)
    return [this.cast(dtype), other.cast(dtype)]
  }

  private unary(op: UnaryOp): Tensor {
    return this.make(op, [this], NO_ARG, this.shape, this.dtype)
  }

  /** Float ops promote int32/bool inputs to float32, as PyTorch does. */
  private floatUnary(op: UnaryOp): Tensor {
    const x = isFloat(this.dtype) ? this : this.cast('float32')
    return x.unary(op)
  }

  private binary(op: BinaryOp, other: TensorLike, outDType?: DType): Tensor {
    const [a, b] = this.coerceWith(op, other)
    return a.broadcastBinary(op, b, outDType ?? a.dtype)
  }

  /** `op` of this and `b` (of the same dtype), broadcast together. */
  private broadcastBinary(op: BinaryOp, b: Tensor, outDType: DType): Tensor {
    const shape = broadcastShapes(op, this.shape, b.shape, () => ` (dtypes ${this.dtype}, ${b.dtype})`)
    return this.make(op, [this.broadcastTo(shape), b.broadcastTo(shape)], NO_ARG, shape, outDType)
  }

  private arithmetic(op: 'add' | 'mul', other: TensorLike): Tensor {
    const [a, b] = this.coerceWith(op, other)
    // bool arithmetic counts, as int32.
    return a.dtype === 'bool' ? a.cast('int32').broadcastBinary(op, b.cast('int32'), 'int32') : a.broadcastBinary(op, b, a.dtype)
  }

  private bitwise(op: 'bitwiseAnd' | 'bitwiseOr' | 'bitwiseXor', other: TensorLike): Tensor {
    const otherDType = other instanceof Tensor ? other.dtype : typeof other === 'boolean' ? 'bool' : Number.isInteger(other) ? 'int32' : 'float32'
    if (isFloat(this.dtype) || isFloat(otherDType)) {
      throw new DTypeError(`${op}: needs int32 or bool operands, got ${this.dtype} and ${otherDType} (shape ${fmtShape(this.shape)})`)
    }
    return this.binary(op, other)
  }

  // ---- unary primitives ----------------------------------------------------

  /** `-x`. @example tensor([1, -2]).neg() // [-1, 2] */
  neg(): Tensor {
    if (this.dtype === 'bool') throw new DTypeError(`neg: not defined for bool (shape ${fmtShape(this.shape)}); use bitwiseNot`)
    return this.unary('neg')
  }
  /** `1 / x`. @example tensor([2, 4]).recip() // [0.5, 0.25] */
  recip(): Tensor {
    return this.floatUnary('recip')
  }
  /** Square root. @example tensor([4, 9]).sqrt() // [2, 3] */
  sqrt(): Tensor {
    return this.floatUnary('sqrt')
  }
  /** `2 ** x`. @example tensor([3]).exp2() // [8] */
  exp2(): Tensor {
    return this.floatUnary('exp2')
  }
  /** Base-2 logarithm. @example tensor([8]).log2() // [3] */
  log2(): Tensor {
    return this.floatUnary('log2')
  }
  /** Sine (radians). @example tensor([0]).sin() // [0] */
  sin(): Tensor {
    return this.floatUnary('sin')
  }
  /**
   * Converts to `dtype` (floats to int32 truncate toward zero; to bool is `!= 0`).
   * @example tensor([1.7, -1.7]).cast('int32') // [1, -1]
   */
  cast(dtype: DType): Tensor {
    checkDType('cast', dtype)
    if (dtype === this.dtype) return this
    return this.make('cast', [this], NO_ARG, this.shape, dtype)
  }
  /** Bitwise NOT of int32, logical NOT of bool. @example tensor([true, false]).bitwiseNot() // [false, true] */
  bitwiseNot(): Tensor {
    if (isFloat(this.dtype)) throw new DTypeError(`bitwiseNot: needs int32 or bool, got ${this.dtype} (shape ${fmtShape(this.shape)})`)
    return this.unary('bitwiseNot')
  }

  // ---- binary primitives ---------------------------------------------------

  /** Elementwise sum with broadcasting. @example tensor([1, 2]).add(10) // [11, 12] */
  add(other: TensorLike): Tensor {
    return this.arithmetic('add', other)
  }
  /** Elementwise product with broadcasting. @example tensor([1, 2]).mul(tensor([[3], [4]])) // [[3, 6], [4, 8]] */
  mul(other: TensorLike): Tensor {
    return this.arithmetic('mul', other)
  }
  /** Elementwise maximum (NaN if either is NaN). @example tensor([1, 5]).maximum(3) // [3, 5] */
  maximum(other: TensorLike): Tensor {
    return this.binary('maximum', other)
  }
  /** Elementwise minimum (NaN if either is NaN). @example tensor([1, 5]).minimum(3) // [1, 3] */
  minimum(other: TensorLike): Tensor {
    return this.binary('minimum', other)
  }
  /** `x < other` as bool. @example tensor([1, 5]).lt(3) // [true, false] */
  lt(other: TensorLike): Tensor {
    return this.binary('lt', other, 'bool')
  }
  /** `x == other` as bool. @example tensor([1, 5]).eq(5) // [false, true] */
  eq(other: TensorLike): Tensor {
    return this.binary('eq', other, 'bool')
  }
  /** Bitwise AND (int32) or logical AND (bool). @example tensor([6], { dtype: 'int32' }).bitwiseAnd(3) // [2] */
  bitwiseAnd(other: TensorLike): Tensor {
    return this.bitwise('bitwiseAnd', other)
  }
  /** Bitwise OR (int32) or logical OR (bool). @example tensor([6], { dtype: 'int32' }).bitwiseOr(1) // [7] */
  bitwiseOr(other: TensorLike): Tensor {
    return this.bitwise('bitwiseOr', other)
  }
  /** Bitwise XOR (int32) or logical XOR (bool). @example tensor([6], { dtype: 'int32' }).bitwiseXor(3) // [5] */
  bitwiseXor(other: TensorLike): Tensor {
    return this.bitwise('bitwiseXor', other)
  }

  // ---- reductions ----------------------------------------------------------

  private reduce(op: ReduceOp, axis: number | readonly number[] | undefined, keepdim: boolean): Tensor {
    const axes = normalizeAxes(op, axis, this.shape)
    const x = (op === 'sum' || op === 'prod') && this.dtype === 'bool' ? this.cast('int32') : this
    if (axes.length === 0) return x
    if ((op === 'max' || op === 'min') && axes.some((a) => this.shape[a] === 0)) {
      throw new ShapeError(`${op}: cannot reduce an empty axis (shape ${fmtShape(this.shape)}, axes [${axes.join(', ')}], ${this.dtype})`)
    }
    const kept = this.shape.map((d, i) => (axes.includes(i) ? 1 : d))
    const out = x.make(op, [x], { kind: 'axes', axes }, kept, x.dtype)
    return keepdim ? out : out.reshape(this.shape.filter((_, i) => !axes.includes(i)))
  }

  /**
   * Sum over `axis` (a number, several, or all when omitted); negative axes count
   * from the end. bool sums count as int32.
   * @example tensor([[1, 2], [3, 4]]).sum(0) // [4, 6]
   */
  sum(axis?: number | readonly number[], keepdim = false): Tensor {
    return this.reduce('sum', axis, keepdim)
  }
  /** Maximum over `axis` (NaN if any is NaN). @example tensor([[1, 5], [3, 4]]).max(1) // [5, 4] */
  max(axis?: number | readonly number[], keepdim = false): Tensor {
    return this.reduce('max', axis, keepdim)
  }
  /** Minimum over `axis`. @example tensor([[1, 5], [3, 4]]).min(1) // [1, 3] */
  min(axis?: number | readonly number[], keepdim = false): Tensor {
    return this.reduce('min', axis, keepdim)
  }
  /** Product over `axis`. @example tensor([[1, 2], [3, 4]]).prod(1) // [2, 12] */
  prod(axis?: number | readonly number[], keepdim = false): Tensor {
    return this.reduce('prod', axis, keepdim)
  }

  // ---- views ---------------------------------------------------------------

  /**
   * The same elements in a new shape; one axis may be -1 (inferred).
   * @example arange(6).reshape([2, -1]).shape // [2, 3]
   */
  reshape(shape: readonly number[]): Tensor {
    if (!Array.isArray(shape)) throw new ShapeError(`reshape: expected an array shape, got ${String(shape)}`)
    const inferred = shape.filter((d) => d === -1).length
    const known = shape.filter((d) => d !== -1)
    checkShape('reshape', known)
    if (inferred > 1) throw new ShapeError(`reshape: only one axis may be -1, got ${fmtShape(shape)}`)
    let target = [...shape]
    if (inferred === 1) {
      const rest = numel(known)
      if (rest === 0 || this.size % rest !== 0) {
        throw new ShapeError(`reshape: cannot reshape ${fmtShape(this.shape)} (${this.size} elements, ${this.dtype}) to ${fmtShape(shape)}`)
      }
      target = shape.map((d) => (d === -1 ? this.size / rest : d))
    }
    if (numel(target) !== this.size) {
      throw new ShapeError(`reshape: cannot reshape ${fmtShape(this.shape)} (${this.size} elements, ${this.dtype}) to ${fmtShape(shape)} (${numel(target)} elements)`)
    }
    if (sameShape(target, this.shape)) return this
    return this.make('reshape', [this], NO_ARG, target, this.dtype)
  }

  /** Reorders the axes. @example zeros([2, 3, 4]).permute([2, 0, 1]).shape // [4, 2, 3] */
  permute(order: readonly number[]): Tensor {
    const bad = () => new ShapeError(`permute: [${Array.isArray(order) ? order.join(', ') : String(order)}] is not a permutation of the ${this.ndim} axes of ${fmtShape(this.shape)} (${this.dtype})`)
    if (!Array.isArray(order) || order.length !== this.ndim) throw bad()
    const axes = order.map((a) => {
      if (!Number.isInteger(a) || a < -this.ndim || a >= this.ndim) throw bad()
      return a < 0 ? a + this.ndim : a
    })
    if (new Set(axes).size !== axes.length) throw bad()
    if (axes.every((a, i) => a === i)) return this
    return this.make('permute', [this], { kind: 'order', order: axes }, axes.map((a) => this.shape[a]!), this.dtype)
  }

  /**
   * Broadcasts size-1 axes (and new leading axes) to `shape`, without copying;
   * -1 keeps an axis.
   * @example tensor([1, 2]).expand([3, 2]).shape // [3, 2]
   */
  expand(shape: readonly number[]): Tensor {
    if (!Array.isArray(shape) || shape.length < this.ndim) {
      throw new ShapeError(`expand: cannot expand ${fmtShape(this.shape)} (${this.dtype}) to ${Array.isArray(shape) ? fmtShape(shape) : String(shape)}`)
    }
    const lead = shape.length - this.ndim
    const target = shape.map((d, i) => (d === -1 && i >= lead ? this.shape[i - lead]! : d))
    checkShape('expand', target)
    this.shape.forEach((d, i) => {
      if (d !== 1 && d !== target[i + lead]) {
        throw new ShapeError(`expand: cannot expand ${fmtShape(this.shape)} (${this.dtype}) to ${fmtShape(shape)}: axis ${i} has size ${d}`)
      }
    })
    return this.broadcastTo(target)
  }

  /**
   * Takes a strided window: one entry per leading axis, `[start, stop, step?]`
   * (negative indices count from the end, step >= 1) or `null` for the whole axis.
   * @example arange(10).slice([[1, 8, 3]]) // [1, 4, 7]
   */
  slice(ranges: readonly SliceRange[]): Tensor {
    if (!Array.isArray(ranges) || ranges.length > this.ndim) {
      throw new ShapeError(`slice: ${Array.isArray(ranges) ? ranges.length : String(ranges)} ranges for ${fmtShape(this.shape)} (${this.dtype})`)
    }
    const starts: number[] = []
    const steps: number[] = []
    const shape: number[] = []
    this.shape.forEach((n, d) => {
      const r = ranges[d] ?? null
      const [rawStart, rawStop, rawStep] = r === null ? [0, n, 1] : [r[0], r[1] ?? n, r[2] ?? 1]
      const bad = (why: string) =>
        new ShapeError(`slice: range [${r === null ? '' : r.join(', ')}] on axis ${d} of ${fmtShape(this.shape)} (${this.dtype}) ${why}`)
      if (![rawStart, rawStop, rawStep].every(Number.isInteger)) throw bad('must hold integers')
      if (rawStep < 1) throw bad('needs a step of at least 1')
      if (rawStart < -n || rawStart > n || rawStop < -n || rawStop > n) throw bad('is out of range')
      const start = rawStart < 0 ? rawStart + n : rawStart
      const stop = rawStop < 0 ? rawStop + n : rawStop
      const len = stop > start ? Math.ceil((stop - start) / rawStep) : 0
      starts.push(len > 0 ? start : 0)
      steps.push(rawStep)
      shape.push(len)
    })
    if (shape.every((d, i) => d === this.shape[i])) return this
    return this.make('slice', [this], { kind: 'slice', starts, steps }, shape, this.dtype)
  }

  /**
   * Pads with `value`: one `[before, after]` pair per leading axis.
   * @example tensor([1, 2]).pad([[1, 2]]) // [0, 1, 2, 0, 0]
   */
  pad(widths: readonly (readonly [number, number])[], value = 0): Tensor {
    if (!Array.isArray(widths) || widths.length > this.ndim) {
      throw new ShapeError(`pad: ${Array.isArray(widths) ? widths.length : String(widths)} widths for ${fmtShape(this.shape)} (${this.dtype})`)
    }
    if (typeof value !== 'number' && typeof value !== 'boolean') throw new DTypeError(`pad: the fill value must be a number, got ${typeof value}`)
    const before = this.shape.map((_, d) => widths[d]?.[0] ?? 0)
    const after = this.shape.map((_, d) => widths[d]?.[1] ?? 0)
    if (![...before, ...after].every((w) => Number.isInteger(w) && w >= 0)) {
      throw new ShapeError(`pad: widths ${JSON.stringify(widths)} for ${fmtShape(this.shape)} (${this.dtype}) must be non-negative integers`)
    }
    if (before.every((w) => w === 0) && after.every((w) => w === 0)) return this
    const shape = this.shape.map((d, i) => d + before[i]! + after[i]!)
    return this.make('pad', [this], { kind: 'pad', before, value: Number(value) }, shape, this.dtype)
  }

  // ---- scans ---------------------------------------------------------------

  private scan(op: ScanOp, axis: number, opts: ScanOptions): Tensor {
    if (this.ndim === 0) return this.reshape([1]).scan(op, 0, opts).reshape([])
    const a = normalizeAxis(op, axis, this.ndim, this.shape)
    const x = op !== 'cummax' && this.dtype === 'bool' ? this.cast('int32') : this
    return x.make(op, [x], { kind: 'scan', axis: a, reverse: opts.reverse ?? false }, this.shape, x.dtype)
  }

  /** Running sum along `axis`. @example tensor([1, 2, 3]).cumsum(0) // [1, 3, 6] */
  cumsum(axis: number, opts: ScanOptions = {}): Tensor {
    return this.scan('cumsum', axis, opts)
  }
  /** Running product along `axis`. @example tensor([1, 2, 3]).cumprod(0) // [1, 2, 6] */
  cumprod(axis: number, opts: ScanOptions = {}): Tensor {
    return this.scan('cumprod', axis, opts)
  }
  /** Running maximum along `axis`. @example tensor([1, 3, 2]).cummax(0) // [1, 3, 3] */
  cummax(axis: number, opts: ScanOptions = {}): Tensor {
    return this.scan('cummax', axis, opts)
  }

  // ---- indexing ------------------------------------------------------------

  private checkIndex(op: string, axis: number, index: Tensor, src?: Tensor): number {
    if (!(index instanceof Tensor)) throw new DTypeError(`${op}: index must be an int32 Tensor`)
    const parts = src ? [this, index, src] : [this, index]
    if (index.dtype !== 'int32') throw new DTypeError(`${describe(op, ...parts)}: index must be int32, got ${index.dtype}`)
    if (index.ndim !== this.ndim || (src && src.ndim !== this.ndim)) {
      throw new ShapeError(`${describe(op, ...parts)}: index must have as many dimensions as the tensor`)
    }
    const a = normalizeAxis(op, axis, this.ndim, this.shape)
    for (let d = 0; d < this.ndim; d++) {
      if ((d !== a && index.shape[d]! > this.shape[d]!) || (src && index.shape[d]! > src.shape[d]!)) {
        throw new ShapeError(`${describe(op, ...parts)}: index size ${index.shape[d]} on axis ${d} exceeds the tensor's`)
      }
    }
    return a
  }

  /**
   * `out[i][j] = x[index[i][j]][j]` for axis 0 (PyTorch's `gather`); the result has
   * the index's shape.
   * @example tensor([[1, 2], [3, 4]]).gather(1, tensor([[1], [0]], { dtype: 'int32' })) // [[2], [3]]
   */
  gather(axis: number, index: Tensor): Tensor {
    const a = this.ndim === 0 ? 0 : this.checkIndex('gather', axis, index)
    if (this.ndim === 0) return this.reshape([1]).gather(0, index.reshape([1])).reshape([])
    return this.make('gather', [this, index], { kind: 'axis', axis: a }, index.shape, this.dtype)
  }

  private scatter(op: ScatterOp, axis: number, index: Tensor, src: Tensor): Tensor {
    if (!(src instanceof Tensor)) throw new DTypeError(`${op}: src must be a Tensor`)
    if (this.ndim === 0) return this.reshape([1]).scatter(op, 0, index.reshape([1]), src.reshape([1])).reshape([])
    const a = this.checkIndex(op, axis, index, src)
    if (src.dtype !== this.dtype) throw new DTypeError(`${describe(op, this, index, src)}: src must have the tensor's dtype`)
    if (op === 'scatterAdd' && this.dtype === 'bool') throw new DTypeError(`${describe(op, this, index, src)}: not defined for bool`)
    return this.make(op, [this, index, src], { kind: 'axis', axis: a }, this.shape, this.dtype)
  }

  /**
   * Adds `src` into a copy of this tensor at the positions `index` names along
   * `axis`; repeated indices accumulate.
   * @example zeros([3]).scatterAdd(0, tensor([0, 0, 2], { dtype: 'int32' }), tensor([1, 2, 3])) // [3, 0, 3]
   */
  scatterAdd(axis: number, index: Tensor, src: Tensor): Tensor {
    return this.scatter('scatterAdd', axis, index, src)
  }
  /**
   * Like `scatterAdd` with maximum instead of sum; the original values take part
   * (PyTorch's `scatter_reduce('amax', include_self=True)`).
   * @example zeros([2]).scatterMax(0, tensor([1, 1], { dtype: 'int32' }), tensor([3, -1])) // [0, 3]
   */
  scatterMax(axis: number, index: Tensor, src: Tensor): Tensor {
    return this.scatter('scatterMax', axis, index, src)
  }

  // ---- contraction ---------------------------------------------------------

  /**
   * Matrix product, NumPy/PyTorch semantics: 1-D·1-D is a dot product, 2-D
   * operands multiply as matrices, and leading batch axes broadcast. float32 and
   * float64 only.
   * @example tensor([[1, 2], [3, 4]]).matmul(tensor([[1], [1]])) // [[3], [7]]
   */
  matmul(other: Tensor): Tensor {
    if (!(other instanceof Tensor)) throw new DTypeError('matmul: the other operand must be a Tensor')
    const what = `${fmtShape(this.shape)} ${this.dtype} and ${fmtShape(other.shape)} ${other.dtype}`
    if (this.ndim === 0 || other.ndim === 0) throw new ShapeError(`matmul: operands must have at least one axis, got ${what}`)
    const dtype = promote(this.dtype, other.dtype)
    if (!isFloat(dtype)) throw new DTypeError(`matmul: needs float32 or float64 operands, got ${what}`)
    const a = this.ndim === 1 ? this.cast(dtype).reshape([1, this.shape[0]!]) : this.cast(dtype)
    const b = other.ndim === 1 ? other.cast(dtype).reshape([other.shape[0]!, 1]) : other.cast(dtype)
    const [m, k] = a.shape.slice(-2) as [number, number]
    const [k2, n] = b.shape.slice(-2) as [number, number]
    if (k !== k2) throw new ShapeError(`matmul: inner sizes ${k} and ${k2} differ (${what})`)
    const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2), () => ` (${what})`)
    const out = a.make('matmul', [a.broadcastTo([...batch, m, k]), b.broadcastTo([...batch, k, n])], NO_ARG, [...batch, m, n], dtype)
    const shape = [...batch, ...(this.ndim === 1 ? [] : [m]), ...(other.ndim === 1 ? [] : [n])]
    return out.reshape(shape)
  }

  // ---- composites (built from the primitives in ops/composite.ts) ----------

  /** `x - other`. @example tensor([5]).sub(2) // [3] */
  sub(other: TensorLike): Tensor {
    return composite.sub(this, other)
  }
  /** `x / other` (true division: int32 operands give float32). @example tensor([1]).div(4) // [0.25] */
  div(other: TensorLike): Tensor {
    return composite.div(this, other)
  }
  /** `e ** x`. @example tensor([0]).exp() // [1] */
  exp(): Tensor {
    return composite.exp(this)
  }
  /** Natural logarithm. @example tensor([1]).log() // [0] */
  log(): Tensor {
    return composite.log(this)
  }
  /** Cosine (radians). @example tensor([0]).cos() // [1] */
  cos(): Tensor {
    return composite.cos(this)
  }
  /** `x ** exponent` (negative bases only with integer exponents). @example tensor([3]).pow(2) // [9] */
  pow(exponent: TensorLike): Tensor {
    return composite.pow(this, exponent)
  }
  /** `x * x`. @example tensor([-3]).square() // [9] */
  square(): Tensor {
    return composite.square(this)
  }
  /** Absolute value. @example tensor([-3, 2]).abs() // [3, 2] */
  abs(): Tensor {
    return composite.abs(this)
  }
  /** -1, 0 or 1 by sign (0 for NaN). @example tensor([-3, 0, 2]).sign() // [-1, 0, 1] */
  sign(): Tensor {
    return composite.sign(this)
  }
  /** `max(x, 0)`. @example tensor([-1, 2]).relu() // [0, 2] */
  relu(): Tensor {
    return composite.relu(this)
  }
  /** `1 / (1 + e^-x)`, stable for large |x|. @example tensor([0]).sigmoid() // [0.5] */
  sigmoid(): Tensor {
    return composite.sigmoid(this)
  }
  /** Hyperbolic tangent. @example tensor([0]).tanh() // [0] */
  tanh(): Tensor {
    return composite.tanh(this)
  }
  /** `log(1 + e^x)`, stable for large |x|. @example tensor([0]).softplus() // [0.6931] */
  softplus(): Tensor {
    return composite.softplus(this)
  }
  /** GELU, tanh approximation (PyTorch's `approximate='tanh'`). @example tensor([1]).gelu() // [0.8412] */
  gelu(): Tensor {
    return composite.gelu(this)
  }
  /** Limits values to `[min, max]` (either may be omitted). @example tensor([-2, 5]).clamp(0, 3) // [0, 3] */
  clamp(min?: number | Tensor, max?: number | Tensor): Tensor {
    return composite.clamp(this, min, max)
  }
  /** Mean over `axis` (all when omitted). @example tensor([[1, 2], [3, 4]]).mean(1) // [1.5, 3.5] */
  mean(axis?: number | readonly number[], keepdim = false): Tensor {
    return composite.mean(this, axis, keepdim)
  }
  /** Variance over `axis`, divided by `n - correction` (1 by default, as PyTorch). @example tensor([1, 2, 3, 4]).var() // [1.6667] */
  var(axis?: number | readonly number[], keepdim = false, correction = 1): Tensor {
    return composite.variance(this, axis, keepdim, correction)
  }
  /** Standard deviation (`sqrt(var)`). @example tensor([1, 2, 3, 4]).std() // [1.291] */
  std(axis?: number | readonly number[], keepdim = false, correction = 1): Tensor {
    return composite.variance(this, axis, keepdim, correction).sqrt()
  }
  /** `log(sum(exp(x)))` over `axis`, without overflow. @example tensor([0, 0]).logsumexp(0) // 0.6931 */
  logsumexp(axis?: number | readonly number[], keepdim = false): Tensor {
    return composite.logsumexp(this, axis, keepdim)
  }
  /** Softmax along `axis` (last by default). @example tensor([0, 0]).softmax() // [0.5, 0.5] */
  softmax(axis = -1): Tensor {
    return composite.softmax(this, axis)
  }
  /** Log of the softmax along `axis`, computed stably. @example tensor([0, 0]).logSoftmax() // [-0.6931, -0.6931] */
  logSoftmax(axis = -1): Tensor {
    return composite.logSoftmax(this, axis)
  }
  /** int32 position of the first maximum along `axis` (of the flattened tensor when omitted). @example tensor([1, 3, 3]).argmax(0) // 1 */
  argmax(axis?: number, keepdim = false): Tensor {
    return composite.argExtreme(this, 'max', axis, keepdim)
  }
  /** int32 position of the first minimum along `axis`. @example tensor([2, 1, 1]).argmin(0) // 1 */
  argmin(axis?: number, keepdim = false): Tensor {
    return composite.argExtreme(this, 'min', axis, keepdim)
  }
  /** `x > other`. @example tensor([1, 5]).gt(3) // [false, true] */
  gt(other: TensorLike): Tensor {
    return composite.gt(this, other)
  }
  /** `x <= other`. @example tensor([1, 3]).le(3) // [true, true] */
  le(other: TensorLike): Tensor {
    return composite.le(this, other)
  }
  /** `x >= other`. @example tensor([1, 3]).ge(3) // [false, true] */
  ge(other: TensorLike): Tensor {
    return composite.ge(this, other)
  }
  /** `x != other` (true for NaN). @example tensor([1, 3]).ne(3) // [true, false] */
  ne(other: TensorLike): Tensor {
    return composite.ne(this, other)
  }
  /** Swaps axes `a` and `b` (the last two by default). @example zeros([2, 3]).transpose().shape // [3, 2] */
  transpose(a = -2, b = -1): Tensor {
    return composite.transpose(this, a, b)
  }
  /** Merges axes `start..end` into one. @example zeros([2, 3, 4]).flatten(1).shape // [2, 12] */
  flatten(start = 0, end = -1): Tensor {
    return composite.flatten(this, start, end)
  }
  /** Drops size-1 axes (only `axis` when given). @example zeros([1, 3, 1]).squeeze().shape // [3] */
  squeeze(axis?: number | readonly number[]): Tensor {
    return composite.squeeze(this, axis)
  }
  /** Inserts a size-1 axis at `axis`. @example zeros([3]).unsqueeze(0).shape // [1, 3] */
  unsqueeze(axis: number): Tensor {
    return composite.unsqueeze(this, axis)
  }

  // ---- data ----------------------------------------------------------------

  /**
   * Computes this tensor now (synchronously) and keeps the result; returns `this`.
   * @example const y = x.mul(2).realize()
   */
  realize(): this {
    realizeNodes([this.node])
    return this
  }

  /**
   * The data as a typed array (Float32Array, Float64Array, Int32Array, or
   * Uint8Array for bool), computed off the JavaScript thread. Treat it as read-only.
   * @example const values = await x.data()
   */
  async data(): Promise<TypedArray> {
    const node = this.node
    await realizeNodesAsync([node])
    handOut(node.data!)
    return node.data!
  }

  /**
   * Like `data()`, computed on the calling thread. Treat it as read-only.
   * @example const values = x.dataSync()
   */
  dataSync(): TypedArray {
    const data = this.values()
    handOut(data)
    return data
  }

  /** The data, computed now, still Eclat's alone (for reads that copy it out). */
  private values(): TypedArray {
    const node = this.node
    realizeNodes([node])
    return node.data!
  }

  /**
   * The data as nested JS arrays (numbers, or booleans for bool); a number for 0-d.
   * @example tensor([[1, 2]]).toArray() // [[1, 2]]
   */
  toArray(): NestedArray {
    const data = this.values()
    const bool = this.dtype === 'bool'
    const build = (d: number, offset: number): NestedArray => {
      if (d === this.ndim) return bool ? data[offset] !== 0 : data[offset]!
      const stride = numel(this.shape.slice(d + 1))
      return Array.from({ length: this.shape[d]! }, (_, i) => build(d + 1, offset + i * stride))
    }
    return build(0, 0)
  }

  /**
   * The single value of a one-element tensor.
   * @example tensor([[7]]).item() // 7
   */
  item(): number | boolean {
    if (this.size !== 1) throw new ShapeError(`item: needs a one-element tensor, got ${fmtShape(this.shape)} (${this.dtype})`)
    const v = this.values()[0]!
    return this.dtype === 'bool' ? v !== 0 : v
  }

  /**
   * Replaces this tensor's data (same shape and dtype). An `input()` without data
   * is filled, so graphs built on it see the data; otherwise graphs built earlier
   * keep the old value, as in eager code.
   * @example const w = zeros([2]); w.assign([1, 2])
   */
  assign(value: Tensor | NestedArray | ArrayLike<number> | ArrayLike<boolean>): this {
    let data: TypedArray
    if (value instanceof Tensor) {
      if (value.dtype !== this.dtype || value.shape.length !== this.ndim || value.shape.some((d, i) => d !== this.shape[i])) {
        throw new ShapeError(`assign: ${fmtShape(value.shape)} ${value.dtype} into ${fmtShape(this.shape)} ${this.dtype}: shape and dtype must match`)
      }
      data = value.dataSync()
    } else {
      data = toTypedArray('assign', value, this.dtype, this.shape)
    }
    const arg = this.node.arg
    if (arg.kind === 'load' && arg.slot.data === null) {
      arg.slot.data = data
      return this
    }
    if (this.isLeaf) gradLeaves.delete(this.node)
    this.node = loadNode(data, this.shape, this.dtype, arg.kind === 'load' ? arg.slot.name : undefined)
    if (this.isLeaf) gradLeaves.set(this.node, this)
    return this
  }

  /** A short description, with the data when it is already known. */
  toString(): string {
    const known = this.node.data ? ` ${JSON.stringify(this.toArray())}` : ' (lazy)'
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype})${known}`
  }
}

/**
 * Picks `a` where `cond` is true and `b` elsewhere, broadcasting all three; `a`
 * and `b` are promoted to one dtype.
 *
 * @example
 * where(tensor([true, false]), tensor([1, 2]), 0) // [1, 0]
 */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (!(cond instanceof Tensor) || cond.dtype !== 'bool') {
    const got = cond instanceof Tensor ? `${fmtShape(cond.shape)} ${cond.dtype}` : typeof cond
    throw new DTypeError(`where: the condition must be a bool Tensor, got ${got}`)
  }
  let [x, y]: [Tensor, Tensor] = [cond, cond]
  if (a instanceof Tensor) [x, y] = a.coerceWith('where', b)
  else if (b instanceof Tensor) [y, x] = b.coerceWith('where', a)
  else {
    const dtype = typeof a === 'boolean' && typeof b === 'boolean' ? 'bool' : 'float32'
    ;[x, y] = [scalarTensor(a, dtype), scalarTensor(b, dtype)]
  }
  const detail = ` (dtypes ${cond.dtype}, ${x.dtype}, ${y.dtype})`
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, x.shape, () => detail), y.shape, () => detail)
  return x.make('where', [cond.broadcastTo(shape), x.broadcastTo(shape), y.broadcastTo(shape)], NO_ARG, shape, x.dtype)
}

/**
 * Matrix product of two tensors (see `Tensor.matmul`).
 *
 * @example
 * matmul(randn([8, 3, 4]), randn([4, 5])).shape // [8, 3, 5]
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return a.matmul(b)
}
