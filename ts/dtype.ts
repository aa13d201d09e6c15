import { AllocationError, DTypeError } from './errors.js'

/**
 * The element types a tensor can hold.
 *
 * @example
 * const d: DType = 'float64'
 */
export type DType = 'float32' | 'float64' | 'int32' | 'bool'

/** Every dtype, in promotion order (bool < int32 < float32 < float64). */
export const DTYPES: readonly DType[] = ['bool', 'int32', 'float32', 'float64']

/**
 * The typed array that stores each dtype (bool as 0/1 bytes).
 *
 * @example
 * const values: TypedArray = tensor([1, 2]).dataSync() // Float32Array
 */
export type TypedArray = Float32Array | Float64Array | Int32Array | Uint8Array

/** The dtype codes of the encoded program (`crates/eclat-kernels/src/dtype.rs`). */
export const DTYPE_CODE: Record<DType, number> = { float32: 0, float64: 1, int32: 2, bool: 3 }

/** Allocates a zeroed typed array for `n` elements of `dtype`; an AllocationError when memory runs out. */
export function allocate(dtype: DType, n: number): TypedArray {
  try {
    switch (dtype) {
      case 'float32':
        return new Float32Array(n)
      case 'float64':
        return new Float64Array(n)
      case 'int32':
        return new Int32Array(n)
      case 'bool':
        return new Uint8Array(n)
    }
  } catch (e) {
    throw new AllocationError(`cannot allocate ${n} elements of ${dtype} (${n * itemSize(dtype)} bytes): ${(e as Error).message}`)
  }
}

/** Bytes per element. */
export function itemSize(dtype: DType): number {
  return dtype === 'float64' ? 8 : dtype === 'bool' ? 1 : 4
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64'
}

/** The wider of two dtypes, as PyTorch promotes them. */
export function promote(a: DType, b: DType): DType {
  return DTYPES.indexOf(a) >= DTYPES.indexOf(b) ? a : b
}

/**
 * The dtype a JS scalar takes next to a tensor of `dtype`: the tensor's, unless the
 * value needs a wider one (a fraction next to int32/bool, a number next to bool).
 */
export function scalarDType(value: number | boolean, dtype: DType): DType {
  if (typeof value === 'boolean') return dtype
  if (isFloat(dtype)) return dtype
  if (!Number.isInteger(value)) return 'float32'
  return dtype === 'bool' ? 'int32' : dtype
}

/** Converts a JS value to how `dtype` stores it (what a cast would give). */
export function castScalar(value: number, dtype: DType): number {
  switch (dtype) {
    case 'float32':
      return Math.fround(value)
    case 'float64':
      return value
    case 'int32':
      return castToInt32(value)
    case 'bool':
      return value !== 0 ? 1 : 0
  }
}

/** Truncates toward zero and saturates, NaN to 0 (Rust's `as i32`, PyTorch's cast). */
export function castToInt32(value: number): number {
  if (Number.isNaN(value)) return 0
  if (value >= 2147483647) return 2147483647
  if (value <= -2147483648) return -2147483648
  return Math.trunc(value) | 0
}

/** Checks that `dtype` names a dtype, for values arriving from untyped JavaScript. */
export function checkDType(op: string, dtype: unknown): DType {
  if (typeof dtype === 'string' && (DTYPES as readonly string[]).includes(dtype)) return dtype as DType
  throw new DTypeError(`${op}: unknown dtype ${String(dtype)} (expected one of ${DTYPES.join(', ')})`)
}
