/**
 * Composite ops: every one is a few primitives, so the kernels, the reference
 * interpreter and (later) the gradient rules only ever see primitives.
 */
import { isFloat, promote, scalarDType } from '../dtype.js'
import { ShapeError, fmtShape } from '../errors.js'
import { broadcastShapes, normalizeAxes, normalizeAxis } from '../graph/shape.js'
import { arange } from '../creation.js'
import { scalarTensor, Tensor, where, type TensorLike } from '../tensor.js'

const LOG2E = Math.LOG2E
const LN2 = Math.LN2

/** `other` as a tensor of the dtype it takes next to `like`. */
function asTensor(other: TensorLike, like: Tensor): Tensor {
  return other instanceof Tensor ? other : scalarTensor(other, scalarDType(other, like.dtype))
}

/** Float operands for ops whose result is real-valued. */
function toFloat(x: Tensor): Tensor {
  return isFloat(x.dtype) ? x : x.cast('float32')
}

export function sub(a: Tensor, b: TensorLike): Tensor {
  if (typeof b === 'number') return a.add(-b)
  const bt = asTensor(b, a)
  // Negated where it is read: a broadcast view is a kernel boundary, so a row
  // maximum negated before its broadcast (softmax's x - max) was a kernel of its own.
  const shape = broadcastShapes('sub', a.shape, bt.shape, () => ` (dtypes ${a.dtype}, ${bt.dtype})`)
  return a.add(bt.broadcastTo(shape).neg())
}

export function div(a: Tensor, b: TensorLike): Tensor {
  const bt = asTensor(b, a)
  const dtype = promote(a.dtype, bt.dtype)
  const float = isFloat(dtype) ? dtype : 'float32'
  return a.cast(float).mul(bt.cast(float).recip())
}

export function exp(x: Tensor): Tensor {
  return toFloat(x).mul(LOG2E).exp2()
}

export function log(x: Tensor): Tensor {
  return x.log2().mul(LN2)
}

export function cos(x: Tensor): Tensor {
  return toFloat(x).add(Math.PI / 2).sin()
}

/** `x ** e` by repeated squaring, for integer `e >= 1` (exact for negative bases). */
function intPow(x: Tensor, e: number): Tensor {
  let result: Tensor | null = null
  let base = x
  for (let k = e; k > 0; k = Math.floor(k / 2)) {
    if (k % 2 === 1) result = result ? result.mul(base) : base
    if (k > 1) base = base.mul(base)
  }
  return result!
}

export function pow(x: Tensor, exponent: TensorLike): Tensor {
  if (typeof exponent === 'number') {
    if (exponent === 0) return scalarTensor(1, scalarDType(1, x.dtype)).expand(x.shape)
    if (Number.isInteger(exponent) && Math.abs(exponent) <= 64) {
      const p = intPow(x, Math.abs(exponent))
      return exponent > 0 ? p : p.recip()
    }
    if (exponent === 0.5) return x.sqrt()
  }
  const e = asTensor(exponent, x)
  return e.mul(toFloat(x).log2()).exp2()
}

export function square(x: Tensor): Tensor {
  return x.mul(x)
}

export function sign(x: Tensor): Tensor {
  if (x.dtype === 'bool') return x
  return x.gt(0).cast(x.dtype).sub(x.lt(0).cast(x.dtype))
}

export function abs(x: Tensor): Tensor {
  return x.dtype === 'bool' ? x : x.mul(sign(x))
}

export function relu(x: Tensor): Tensor {
  return where(x.gt(0), x, 0)
}

/** Stable: with `e = exp(-|x|) <= 1` nothing overflows, in value or gradient. */
export function sigmoid(x: Tensor): Tensor {
  const e = exp(abs(toFloat(x)).neg())
  const p = e.add(1).recip()
  return where(x.ge(0), p, e.mul(p))
}

export function tanh(x: Tensor): Tensor {
  const e = exp(abs(toFloat(x)).mul(-2))
  return sign(x).mul(e.neg().add(1).div(e.add(1)))
}

export function softplus(x: Tensor): Tensor {
  return relu(x).add(exp(abs(toFloat(x)).neg()).add(1).log())
}

export function gelu(x: Tensor): Tensor {
  const inner = x.add(x.mul(x).mul(x).mul(0.044715)).mul(Math.sqrt(2 / Math.PI))
  return x.mul(0.5).mul(tanh(inner).add(1))
}

export function clamp(x: Tensor, min?: number | Tensor, max?: number | Tensor): Tensor {
  let y = x
  if (min !== undefined) y = y.maximum(min)
  if (max !== undefined) y = y.minimum(max)
  return y
}

/** Number of elements `axis` covers. */
function countOf(x: Tensor, axis: number | readonly number[] | undefined, op: string): number {
  return normalizeAxes(op, axis, x.shape).reduce((n, a) => n * x.shape[a]!, 1)
}

export function mean(x: Tensor, axis: number | readonly number[] | undefined, keepdim: boolean): Tensor {
  const n = countOf(x, axis, 'mean')
  return toFloat(x).sum(axis, keepdim).div(n)
}

export function variance(x: Tensor, axis: number | readonly number[] | undefined, keepdim: boolean, correction: number): Tensor {
  const n = countOf(x, axis, 'var')
  const xf = toFloat(x)
  const centered = xf.sub(xf.mean(axis, true))
  return centered.mul(centered).sum(axis, keepdim).div(Math.max(0, n - correction))
}

export function logsumexp(x: Tensor, axis: number | readonly number[] | undefined, keepdim: boolean): Tensor {
  const xf = toFloat(x)
  const m = xf.max(axis, true)
  // An all -inf (or inf) slice would give inf - inf; shift by 0 there instead.
  const shift = where(m.abs().lt(Infinity), m, 0)
  const out = exp(xf.sub(shift)).sum(axis, true).log().add(shift)
  return keepdim ? out : out.squeeze(normalizeAxes('logsumexp', axis, x.shape))
}

export function softmax(x: Tensor, axis: number): Tensor {
  const xf = toFloat(x)
  const e = exp(xf.sub(xf.max(axis, true)))
  return e.div(e.sum(axis, true))
}

export function logSoftmax(x: Tensor, axis: number): Tensor {
  return toFloat(x).sub(logsumexp(x, axis, true))
}

/** Index of the first maximum (or minimum) along `axis`; NaN counts as extreme, as in PyTorch. */
export function argExtreme(x: Tensor, kind: 'max' | 'min', axis: number | undefined, keepdim: boolean): Tensor {
  if (axis === undefined) {
    const flat = argExtreme(x.reshape([-1]), kind, 0, false)
    return keepdim ? flat.reshape(x.shape.map(() => 1)) : flat
  }
  const op = kind === 'max' ? 'argmax' : 'argmin'
  if (x.ndim === 0) return argExtreme(x.reshape([1]), kind, 0, false)
  const a = normalizeAxis(op, axis, x.ndim, x.shape)
  const n = x.shape[a]!
  if (n === 0) throw new ShapeError(`${op}: cannot reduce an empty axis (shape ${fmtShape(x.shape)}, axis ${a}, ${x.dtype})`)
  const extreme = kind === 'max' ? x.max(a, true) : x.min(a, true)
  const hit = x.eq(extreme).bitwiseOr(x.ne(x))
  const positions = arange(n, undefined, 1, { dtype: 'int32' }).reshape(x.shape.map((d, i) => (i === a ? n : 1)))
  return where(hit, positions, n).min(a, keepdim)
}

export function gt(a: Tensor, b: TensorLike): Tensor {
  const [x, y] = a.coerceWith('gt', b)
  return y.lt(x)
}

export function le(a: Tensor, b: TensorLike): Tensor {
  const [x, y] = a.coerceWith('le', b)
  return x.lt(y).bitwiseOr(x.eq(y))
}

export function ge(a: Tensor, b: TensorLike): Tensor {
  const [x, y] = a.coerceWith('ge', b)
  return y.lt(x).bitwiseOr(x.eq(y))
}

export function ne(a: Tensor, b: TensorLike): Tensor {
  return a.eq(b).bitwiseNot()
}

export function transpose(x: Tensor, a: number, b: number): Tensor {
  if (x.ndim < 2 && a === -2 && b === -1) return x
  const i = normalizeAxis('transpose', a, x.ndim, x.shape)
  const j = normalizeAxis('transpose', b, x.ndim, x.shape)
  const order = x.shape.map((_, d) => (d === i ? j : d === j ? i : d))
  return x.permute(order)
}

export function flatten(x: Tensor, start: number, end: number): Tensor {
  if (x.ndim === 0) return x.reshape([1])
  const s = normalizeAxis('flatten', start, x.ndim, x.shape)
  const e = normalizeAxis('flatten', end, x.ndim, x.shape)
  if (s > e) throw new ShapeError(`flatten: start axis ${start} comes after end axis ${end} for ${fmtShape(x.shape)}`)
  const merged = x.shape.slice(s, e + 1).reduce((n, d) => n * d, 1)
  return x.reshape([...x.shape.slice(0, s), merged, ...x.shape.slice(e + 1)])
}

export function squeeze(x: Tensor, axis?: number | readonly number[]): Tensor {
  const axes = axis === undefined ? x.shape.map((_, i) => i) : normalizeAxes('squeeze', axis, x.shape)
  return x.reshape(x.shape.filter((d, i) => !(d === 1 && axes.includes(i))))
}

export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normalizeAxis('unsqueeze', axis, x.ndim + 1, x.shape)
  return x.reshape([...x.shape.slice(0, a), 1, ...x.shape.slice(a)])
}

/**
 * Joins tensors along an existing axis (every other axis must match). Built from
 * primitives: each part is padded to the full length and the parts are summed.
 *
 * @example
 * concat([tensor([1, 2]), tensor([3])], 0) // [1, 2, 3]
 */
export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0 || !tensors.every((t) => t instanceof Tensor)) {
    throw new ShapeError('concat: needs a non-empty array of tensors')
  }
  const first = tensors[0]!
  if (first.ndim === 0) throw new ShapeError('concat: cannot join 0-d tensors; use stack')
  const a = normalizeAxis('concat', axis, first.ndim, first.shape)
  for (const t of tensors) {
    if (t.ndim !== first.ndim || t.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new ShapeError(`concat: shapes ${tensors.map((t) => fmtShape(t.shape)).join(', ')} differ off axis ${a}`)
    }
  }
  const dtype = tensors.map((t) => t.dtype).reduce(promote)
  const total = tensors.reduce((n, t) => n + t.shape[a]!, 0)
  let offset = 0
  const parts = tensors.map((t) => {
    const widths = t.shape.map((_, d): [number, number] => (d === a ? [offset, total - offset - t.shape[a]!] : [0, 0]))
    offset += t.shape[a]!
    return t.cast(dtype).pad(widths)
  })
  return parts.reduce((acc, p) => (dtype === 'bool' ? acc.bitwiseOr(p) : acc.add(p)))
}

/**
 * Joins tensors of one shape along a new axis.
 *
 * @example
 * stack([tensor([1, 2]), tensor([3, 4])], 0).shape // [2, 2]
 */
export function stack(tensors: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0 || !tensors.every((t) => t instanceof Tensor)) {
    throw new ShapeError('stack: needs a non-empty array of tensors')
  }
  const first = tensors[0]!
  for (const t of tensors) {
    if (t.ndim !== first.ndim || t.shape.some((d, i) => d !== first.shape[i])) {
      throw new ShapeError(`stack: shapes ${tensors.map((t) => fmtShape(t.shape)).join(', ')} differ`)
    }
  }
  const a = normalizeAxis('stack', axis, first.ndim + 1, first.shape)
  return concat(tensors.map((t) => t.unsqueeze(a)), a)
}

/**
 * Splits along `axis` into pieces of `sizes` (a list summing to the axis length,
 * or one chunk size; the last piece may be smaller).
 *
 * @example
 * split(arange(5), 2, 0).map((t) => t.shape[0]) // [2, 2, 1]
 */
export function split(t: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const a = normalizeAxis('split', axis, t.ndim, t.shape)
  const n = t.shape[a]!
  let list: number[]
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes < 1) throw new ShapeError(`split: chunk size ${sizes} must be a positive integer`)
    list = Array.from({ length: Math.ceil(n / sizes) }, (_, i) => Math.min(sizes, n - i * sizes))
  } else {
    list = [...sizes]
    if (!list.every((s) => Number.isInteger(s) && s >= 0) || list.reduce((x, y) => x + y, 0) !== n) {
      throw new ShapeError(`split: sizes [${list.join(', ')}] do not sum to ${n}, axis ${a} of ${fmtShape(t.shape)}`)
    }
  }
  let start = 0
  return list.map((size) => {
    const ranges = t.shape.map((_, d) => (d === a ? ([start, start + size] as const) : null))
    start += size
    return t.slice(ranges)
  })
}
