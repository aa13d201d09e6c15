import { allocate, castScalar, type DType, type TypedArray } from '../dtype.js'
import { IndexError } from '../errors.js'
import type { LazyNode } from '../graph/node.js'
import type { Op } from '../graph/ops.js'
import { numel, stridesOf } from '../graph/shape.js'
import type { Backend } from '../realize.js'

/**
 * The reference interpreter: every primitive written in the most obvious way,
 * one node at a time into contiguous typed arrays, float sums accumulated in
 * float64. It is the oracle the native kernels are tested against; keep it
 * obvious rather than fast.
 */

/** Calls `f(index)` for every multi-index of `shape` in row-major order. */
function forEachIndex(shape: readonly number[], f: (index: number[], flat: number) => void): void {
  const n = numel(shape)
  const index = new Array<number>(shape.length).fill(0)
  for (let flat = 0; flat < n; flat++) {
    f(index, flat)
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d]! < shape[d]!) break
      index[d] = 0
    }
  }
}

function offsetOf(index: readonly number[], strides: readonly number[]): number {
  let o = 0
  for (let d = 0; d < index.length; d++) o += index[d]! * strides[d]!
  return o
}

/** NaN if either is NaN, else the larger (ties keep `a`), as the kernels do. */
function maxNaN(a: number, b: number): number {
  return Number.isNaN(a) ? a : Number.isNaN(b) || b > a ? b : a
}
function minNaN(a: number, b: number): number {
  return Number.isNaN(a) ? a : Number.isNaN(b) || b < a ? b : a
}

function unary(op: Op, x: number, dtype: DType): number {
  switch (op) {
    case 'neg':
      return dtype === 'int32' ? -x | 0 : -x
    case 'recip':
      return 1 / x
    case 'sqrt':
      return Math.sqrt(x)
    case 'exp2':
      return Math.pow(2, x)
    case 'log2':
      return Math.log2(x)
    case 'sin':
      return Math.sin(x)
    case 'bitwiseNot':
      return dtype === 'bool' ? 1 - x : ~x
    default:
      throw new Error(`reference: ${op} is not unary`)
  }
}

function binary(op: Op, a: number, b: number, dtype: DType): number {
  const int = dtype === 'int32'
  switch (op) {
    case 'add':
      return int ? (a + b) | 0 : a + b
    case 'mul':
      return int ? Math.imul(a, b) : a * b
    case 'maximum':
      return maxNaN(a, b)
    case 'minimum':
      return minNaN(a, b)
    case 'lt':
      return a < b ? 1 : 0
    case 'eq':
      return a === b ? 1 : 0
    case 'bitwiseAnd':
      return a & b
    case 'bitwiseOr':
      return a | b
    case 'bitwiseXor':
      return a ^ b
    default:
      throw new Error(`reference: ${op} is not binary`)
  }
}

/** The running combination of a reduction or scan, starting from `first`. */
function combine(op: Op, acc: number, x: number, dtype: DType): number {
  switch (op) {
    case 'sum':
    case 'cumsum':
      return dtype === 'int32' ? (acc + x) | 0 : acc + x
    case 'prod':
    case 'cumprod':
      return dtype === 'int32' ? Math.imul(acc, x) : acc * x
    case 'max':
    case 'cummax':
      return maxNaN(acc, x)
    case 'min':
      return minNaN(acc, x)
    default:
      throw new Error(`reference: ${op} does not accumulate`)
  }
}

function checkIndex(op: string, v: number, axis: number, size: number): void {
  if (v < 0 || v >= size) throw new IndexError(`${op}: index ${v} is out of range for axis ${axis} of size ${size}`)
}

/** Computes one node from its sources' contiguous data. */
function compute(node: LazyNode, inputs: readonly TypedArray[]): TypedArray {
  const { op, shape, dtype, arg } = node
  const out = allocate(dtype, numel(shape))
  const src = node.srcs[0]
  const a = inputs[0]!
  switch (op) {
    case 'load':
      return node.data!
    case 'cast':
      a.forEach((x, i) => (out[i] = castScalar(x, dtype)))
      return out
    case 'neg':
    case 'recip':
    case 'sqrt':
    case 'exp2':
    case 'log2':
    case 'sin':
    case 'bitwiseNot':
      a.forEach((x, i) => (out[i] = unary(op, x, dtype)))
      return out
    case 'add':
    case 'mul':
    case 'maximum':
    case 'minimum':
    case 'lt':
    case 'eq':
    case 'bitwiseAnd':
    case 'bitwiseOr':
    case 'bitwiseXor': {
      const b = inputs[1]!
      const t = src!.dtype
      a.forEach((x, i) => (out[i] = binary(op, x, b[i]!, t)))
      return out
    }
    case 'where': {
      const [c, x, y] = inputs as [TypedArray, TypedArray, TypedArray]
      c.forEach((v, i) => (out[i] = v ? x[i]! : y[i]!))
      return out
    }
    case 'sum':
    case 'prod':
    case 'max':
    case 'min': {
      // Accumulate in float64 (a plain array), then store in the node's dtype.
      const acc = new Array<number>(out.length).fill(op === 'sum' ? 0 : op === 'prod' ? 1 : NaN)
      const started = new Array<boolean>(out.length).fill(op === 'sum' || op === 'prod')
      const outStrides = stridesOf(shape)
      forEachIndex(src!.shape, (index, flat) => {
        let o = 0
        for (let d = 0; d < index.length; d++) o += (shape[d] === 1 ? 0 : index[d]!) * outStrides[d]!
        acc[o] = started[o] ? combine(op, acc[o]!, a[flat]!, dtype) : a[flat]!
        started[o] = true
      })
      acc.forEach((v, i) => (out[i] = v))
      return out
    }
    case 'reshape':
      return a
    case 'permute': {
      if (arg.kind !== 'order') throw new Error('permute without order')
      const inStrides = stridesOf(src!.shape)
      const strides = arg.order.map((d) => inStrides[d]!)
      forEachIndex(shape, (index, flat) => (out[flat] = a[offsetOf(index, strides)]!))
      return out
    }
    case 'expand': {
      const inStrides = stridesOf(src!.shape).map((s, d) => (src!.shape[d] === 1 ? 0 : s))
      forEachIndex(shape, (index, flat) => (out[flat] = a[offsetOf(index, inStrides)]!))
      return out
    }
    case 'slice': {
      if (arg.kind !== 'slice') throw new Error('slice without ranges')
      const inStrides = stridesOf(src!.shape)
      forEachIndex(shape, (index, flat) => {
        out[flat] = a[offsetOf(index.map((i, d) => arg.starts[d]! + i * arg.steps[d]!), inStrides)]!
      })
      return out
    }
    case 'pad': {
      if (arg.kind !== 'pad') throw new Error('pad without widths')
      out.fill(castScalar(arg.value, dtype))
      const outStrides = stridesOf(shape)
      forEachIndex(src!.shape, (index, flat) => {
        out[offsetOf(index.map((i, d) => i + arg.before[d]!), outStrides)] = a[flat]!
      })
      return out
    }
    case 'cumsum':
    case 'cumprod':
    case 'cummax': {
      if (arg.kind !== 'scan') throw new Error('scan without axis')
      const strides = stridesOf(shape)
      const len = shape[arg.axis]!
      const lineShape = shape.map((n, d) => (d === arg.axis ? 1 : n))
      forEachIndex(lineShape, (index) => {
        const base = offsetOf(index, strides)
        let acc = 0
        for (let k = 0; k < len; k++) {
          const i = base + (arg.reverse ? len - 1 - k : k) * strides[arg.axis]!
          acc = k === 0 ? a[i]! : combine(op, acc, a[i]!, dtype)
          out[i] = acc
        }
      })
      return out
    }
    case 'gather': {
      if (arg.kind !== 'axis') throw new Error('gather without axis')
      const index = inputs[1]!
      const inStrides = stridesOf(src!.shape)
      forEachIndex(shape, (pos, flat) => {
        const v = index[flat]!
        checkIndex('gather', v, arg.axis, src!.shape[arg.axis]!)
        out[flat] = a[offsetOf(pos.map((p, d) => (d === arg.axis ? v : p)), inStrides)]!
      })
      return out
    }
    case 'matmul': {
      const b = inputs[1]!
      const [aShape, bShape] = [src!.shape, node.srcs[1]!.shape]
      const nd = shape.length
      const k = aShape[nd - 1]!
      const [aStrides, bStrides] = [stridesOf(aShape), stridesOf(bShape)]
      forEachIndex(shape, (index, flat) => {
        const [i, j] = [index[nd - 2]!, index[nd - 1]!]
        const batch = index.slice(0, nd - 2)
        let acc = 0
        for (let p = 0; p < k; p++) {
          acc += a[offsetOf([...batch, i, p], aStrides)]! * b[offsetOf([...batch, p, j], bStrides)]!
        }
        out[flat] = acc
      })
      return out
    }
    case 'scatterAdd':
    case 'scatterMax': {
      if (arg.kind !== 'axis') throw new Error('scatter without axis')
      const [index, values] = [inputs[1]!, inputs[2]!]
      const [indexShape, valueStrides] = [node.srcs[1]!.shape, stridesOf(node.srcs[2]!.shape)]
      out.set(a)
      const outStrides = stridesOf(shape)
      forEachIndex(indexShape, (pos, flat) => {
        const v = index[flat]!
        checkIndex(op, v, arg.axis, shape[arg.axis]!)
        const o = offsetOf(pos.map((p, d) => (d === arg.axis ? v : p)), outStrides)
        const x = values[offsetOf(pos, valueStrides)]!
        out[o] = op === 'scatterAdd' ? binary('add', out[o]!, x, dtype) : maxNaN(out[o]!, x)
      })
      return out
    }
  }
}

function runAll(order: readonly LazyNode[], targets: readonly LazyNode[]): TypedArray[] {
  const values = new Map<LazyNode, TypedArray>()
  const dataOf = (n: LazyNode): TypedArray => values.get(n) ?? n.data!
  for (const node of order) values.set(node, compute(node, node.srcs.map(dataOf)))
  // Outputs never alias inputs (reshape returns its source's array), so copy.
  return targets.map((t) => dataOf(t).slice())
}

export const referenceBackend: Backend = {
  name: 'reference',
  run: runAll,
  runAsync: async (order, targets) => runAll(order, targets),
}
