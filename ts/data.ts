import { allocate, castScalar, type DType, type TypedArray } from './dtype.js'
import { DTypeError, ShapeError, fmtShape } from './errors.js'
import { numel } from './graph/shape.js'

/**
 * Nested JS arrays of numbers or booleans (a plain number or boolean for 0-d).
 *
 * @example
 * const rows: NestedArray = [[1, 2], [3, 4]]
 */
export type NestedArray = number | boolean | NestedArray[]

type AnyTypedArray = ArrayLike<number> & ArrayBufferView

export function isTypedArray(x: unknown): x is AnyTypedArray {
  return ArrayBuffer.isView(x) && !(x instanceof DataView)
}

/** The dtype a typed array holds by default. */
export function typedArrayDType(op: string, a: ArrayBufferView): DType {
  if (a instanceof Float32Array) return 'float32'
  if (a instanceof Float64Array || a instanceof Uint32Array) return 'float64'
  if (a instanceof BigInt64Array || a instanceof BigUint64Array) {
    throw new DTypeError(`${op}: BigInt typed arrays are not supported; convert to Int32Array or Float64Array`)
  }
  return 'int32'
}

/** The shape of nested arrays; a ShapeError if they are ragged. */
export function inferShape(op: string, data: unknown): number[] {
  const shape: number[] = []
  let level: unknown = data
  while (Array.isArray(level)) {
    shape.push(level.length)
    level = level[0]
  }
  const check = (x: unknown, d: number): void => {
    if (d === shape.length) {
      if (Array.isArray(x)) throw new ShapeError(`${op}: ragged nested array (expected shape ${fmtShape(shape)})`)
      return
    }
    if (!Array.isArray(x) || x.length !== shape[d]) {
      throw new ShapeError(`${op}: ragged nested array: axis ${d} should have ${shape[d]} entries (shape ${fmtShape(shape)})`)
    }
    for (const y of x) check(y, d + 1)
  }
  check(data, 0)
  return shape
}

/** Whether the data holds booleans (its first scalar is one). */
export function holdsBooleans(data: unknown): boolean {
  let x = data
  while (Array.isArray(x)) x = x[0]
  return typeof x === 'boolean'
}

/**
 * Converts user data (a scalar, nested arrays or a typed array) into a fresh typed
 * array of `dtype` with `shape`'s element count, throwing a clear error on a
 * length mismatch or a non-numeric element.
 */
export function toTypedArray(op: string, data: unknown, dtype: DType, shape: readonly number[]): TypedArray {
  const n = numel(shape)
  const out = allocate(dtype, n)
  const fill = (values: ArrayLike<unknown>, length: number) => {
    if (length !== n) {
      throw new ShapeError(`${op}: ${length} values do not fill shape ${fmtShape(shape)} (${n} elements, ${dtype})`)
    }
    for (let i = 0; i < n; i++) {
      const v = values[i]
      if (typeof v === 'number') out[i] = castScalar(v, dtype)
      else if (typeof v === 'boolean') out[i] = v ? 1 : 0
      else throw new DTypeError(`${op}: element ${i} is ${typeof v}, expected a number or boolean (${dtype})`)
    }
  }
  if (isTypedArray(data)) {
    typedArrayDType(op, data)
    if (data.length !== n) throw new ShapeError(`${op}: typed array of ${data.length} elements does not fill shape ${fmtShape(shape)} (${n} elements, ${dtype})`)
    // Bytes for bool are copied only through castScalar: any nonzero byte is true, stored as 1.
    if (data.constructor === out.constructor && dtype !== 'bool') out.set(data as unknown as ArrayLike<number>)
    else fill(data, data.length)
  } else if (Array.isArray(data)) {
    const flat = (data as unknown[]).flat(Infinity)
    fill(flat, flat.length)
  } else if (typeof data === 'number' || typeof data === 'boolean') {
    fill([data], 1)
  } else {
    throw new DTypeError(`${op}: cannot make a tensor from ${data === null ? 'null' : typeof data}`)
  }
  return out
}
