import { ShapeError, fmtShape } from '../errors.js'

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1
  for (let d = 0; d < shape.length; d++) n *= shape[d]!
  return n
}

/** Row-major strides of a contiguous tensor. */
export function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length)
  let acc = 1
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = acc
    acc *= shape[d]!
  }
  return strides
}

/** Checks that a shape is a list of non-negative integers. */
export function checkShape(op: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw new ShapeError(`${op}: shape must be an array of integers, got ${String(shape)}`)
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new ShapeError(`${op}: shape ${fmtShape(shape as number[])} must hold non-negative integers`)
    }
  }
  if (numel(shape as number[]) > Number.MAX_SAFE_INTEGER) throw new ShapeError(`${op}: shape ${fmtShape(shape as number[])} is too large`)
  return [...(shape as number[])]
}

/**
 * The numpy broadcast of two shapes, or a ShapeError naming the op (and
 * `detail()`, e.g. the dtypes). Returns `a` or `b` itself when one of them is
 * the result, so frozen shapes stay shared between nodes.
 */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[], detail?: () => string): readonly number[] {
  if (b.length === 0 || sameShape(a, b)) return a
  if (a.length === 0) return b
  const n = Math.max(a.length, b.length)
  const out = new Array<number>(n)
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1
    const db = b[b.length - n + i] ?? 1
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast${detail ? detail() : ''}`)
    }
    out[i] = da === 1 ? db : da
  }
  return out
}

/** Whether two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Resolves a possibly negative axis against `ndim`. */
export function normalizeAxis(op: string, axis: number, ndim: number, shape: readonly number[]): number {
  if (!Number.isInteger(axis) || axis < -ndim || axis >= ndim) {
    throw new ShapeError(`${op}: axis ${axis} is out of range for shape ${fmtShape(shape)} (${ndim} dimensions)`)
  }
  return axis < 0 ? axis + ndim : axis
}

/** Resolves `axis` (one, several, or all when undefined) to sorted distinct axes. */
export function normalizeAxes(op: string, axis: number | readonly number[] | undefined, shape: readonly number[]): number[] {
  const ndim = shape.length
  if (axis === undefined) return shape.map((_, i) => i)
  const list = typeof axis === 'number' ? [axis] : [...axis]
  const axes = list.map((a) => normalizeAxis(op, a, ndim, shape))
  if (new Set(axes).size !== axes.length) throw new ShapeError(`${op}: axes [${list.join(', ')}] repeat an axis of shape ${fmtShape(shape)}`)
  return axes.sort((x, y) => x - y)
}
