import { allocate, checkDType, type DType, type TypedArray } from './dtype.js'
import { EclatError, ShapeError } from './errors.js'
import { checkShape, numel } from './graph/shape.js'
import { holdsBooleans, inferShape, isTypedArray, toTypedArray, typedArrayDType, type NestedArray } from './data.js'
import { loadNode, Tensor, type TensorOptions } from './tensor.js'

function leaf(data: TypedArray, shape: readonly number[], dtype: DType, opts: TensorOptions | undefined): Tensor {
  return new Tensor(loadNode(data, shape, dtype), opts?.requiresGrad ?? false)
}

function dtypeOf(op: string, opts: TensorOptions | undefined, fallback: DType): DType {
  return opts?.dtype === undefined ? fallback : checkDType(op, opts.dtype)
}

/**
 * A tensor from a number, boolean, nested array or typed array (the data is copied).
 * Numbers default to float32, booleans to bool, typed arrays to their own type.
 *
 * @example
 * tensor([[1, 2], [3, 4]])
 * tensor(new Float64Array([1, 2, 3, 4]), { shape: [2, 2] })
 */
export function tensor(data: NestedArray | ArrayLike<number> | ArrayBufferView, opts?: TensorOptions): Tensor {
  const typed = isTypedArray(data)
  const fallback: DType = typed ? typedArrayDType('tensor', data) : holdsBooleans(data) ? 'bool' : 'float32'
  const dtype = dtypeOf('tensor', opts, fallback)
  const shape = opts?.shape !== undefined ? checkShape('tensor', opts.shape) : typed ? [(data as ArrayLike<number>).length] : inferShape('tensor', data)
  return leaf(toTypedArray('tensor', data, dtype, shape), shape, dtype, opts)
}

/**
 * A tensor of `shape` filled with `value` (bool for booleans, float32 for numbers).
 *
 * @example
 * full([2, 2], 7)
 */
export function full(shape: readonly number[], value: number | boolean, opts?: TensorOptions): Tensor {
  const s = checkShape('full', shape)
  const dtype = dtypeOf('full', opts, typeof value === 'boolean' ? 'bool' : 'float32')
  const data = toTypedArray('full', value, dtype, [])
  return leaf(allocate(dtype, numel(s)).fill(data[0]!), s, dtype, opts)
}

/** A tensor of zeros. @example zeros([2, 3]) */
export function zeros(shape: readonly number[], opts?: TensorOptions): Tensor {
  return full(shape, 0, opts)
}

/** A tensor of ones. @example ones([3], { dtype: 'int32' }) */
export function ones(shape: readonly number[], opts?: TensorOptions): Tensor {
  return full(shape, 1, opts)
}

/**
 * Evenly spaced values in `[start, stop)`; `arange(n)` counts from 0.
 *
 * @example
 * arange(5)          // [0, 1, 2, 3, 4]
 * arange(1, 2, 0.25) // [1, 1.25, 1.5, 1.75]
 */
export function arange(start: number, stop?: number, step = 1, opts?: TensorOptions): Tensor {
  const [from, to] = stop === undefined ? [0, start] : [start, stop]
  if (![from, to, step].every(Number.isFinite) || step === 0) {
    throw new ShapeError(`arange: start ${from}, stop ${to}, step ${step} must be finite with a non-zero step`)
  }
  const n = Math.max(0, Math.ceil((to - from) / step))
  const dtype = dtypeOf('arange', opts, 'float32')
  const values = Array.from({ length: n }, (_, i) => from + i * step)
  return leaf(toTypedArray('arange', values, dtype, [n]), [n], dtype, opts)
}

/**
 * `n` evenly spaced values from `start` to `stop`, both included.
 *
 * @example
 * linspace(0, 1, 5) // [0, 0.25, 0.5, 0.75, 1]
 */
export function linspace(start: number, stop: number, n: number, opts?: TensorOptions): Tensor {
  checkShape('linspace', [n])
  const dtype = dtypeOf('linspace', opts, 'float32')
  const step = n > 1 ? (stop - start) / (n - 1) : 0
  const values = Array.from({ length: n }, (_, i) => (i === n - 1 && n > 1 ? stop : start + i * step))
  return leaf(toTypedArray('linspace', values, dtype, [n]), [n], dtype, opts)
}

/**
 * The `n`×`n` identity matrix.
 *
 * @example
 * eye(3)
 */
export function eye(n: number, opts?: TensorOptions): Tensor {
  checkShape('eye', [n])
  const dtype = dtypeOf('eye', opts, 'float32')
  const data = allocate(dtype, n * n)
  for (let i = 0; i < n; i++) data[i * n + i] = 1
  return leaf(data, [n, n], dtype, opts)
}

/**
 * A tensor whose data is supplied later with `assign` (the spec's `Tensor::input`).
 * Graphs can be built on it at once; realizing one before the data arrives throws.
 *
 * @example
 * const x = input([2], { dtype: 'float32' })
 * const y = x.mul(2)
 * x.assign([1, 2])
 * y.toArray() // [2, 4]
 */
export function input(shape: readonly number[], opts?: TensorOptions & { name?: string }): Tensor {
  const s = checkShape('input', shape)
  const dtype = dtypeOf('input', opts, 'float32')
  return new Tensor(loadNode(null, s, dtype, opts?.name), opts?.requiresGrad ?? false)
}

// ---- random numbers --------------------------------------------------------

/**
 * xoshiro128** on 32-bit integers: the same stream on every platform, and
 * generated in JavaScript so the thread count cannot change it.
 */
class Random {
  private s = new Uint32Array(4)

  constructor(seed: number) {
    this.seed(seed)
  }

  seed(seed: number): void {
    // splitmix32 expands the seed into the four state words.
    let x = seed >>> 0
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0
      let z = x
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
      this.s[i] = (z ^ (z >>> 16)) >>> 0
    }
  }

  nextU32(): number {
    const s = this.s
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0
    const t = s[1]! << 9
    s[2]! ^= s[0]!
    s[3]! ^= s[1]!
    s[1]! ^= s[2]!
    s[0]! ^= s[3]!
    s[2]! ^= t
    s[3] = rotl(s[3]!, 11)
    return result
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}

const generator = new Random((Math.random() * 2 ** 32) >>> 0)

/**
 * Seeds the generator of `rand`, `randn` and the seeded layers: the same seed
 * gives the same numbers on every platform and thread count.
 *
 * @example
 * manualSeed(42)
 */
export function manualSeed(seed: number): void {
  if (!Number.isInteger(seed)) throw new EclatError(`manualSeed: seed must be an integer, got ${seed}`)
  generator.seed(seed)
}

/** Draws from the shared generator (used by seeded layers such as Dropout). */
export function uniformSample(): number {
  return generator.uniform()
}

function randomTensor(op: string, shape: readonly number[], opts: TensorOptions | undefined, sample: () => number): Tensor {
  const s = checkShape(op, shape)
  const dtype = dtypeOf(op, opts, 'float32')
  if (dtype !== 'float32' && dtype !== 'float64') throw new EclatError(`${op}: dtype must be float32 or float64, got ${dtype}`)
  const data = allocate(dtype, numel(s))
  for (let i = 0; i < data.length; i++) data[i] = sample()
  return leaf(data, s, dtype, opts)
}

/**
 * Uniform samples in [0, 1).
 *
 * @example
 * manualSeed(0); const u = rand([2, 3])
 */
export function rand(shape: readonly number[], opts?: TensorOptions): Tensor {
  return randomTensor('rand', shape, opts, () => {
    // float32 must stay below 1 after rounding: use 24 bits for it.
    const u = generator.uniform()
    return opts?.dtype === 'float64' ? u : Math.floor(u * 16777216) / 16777216
  })
}

/**
 * Standard normal samples (Box-Muller).
 *
 * @example
 * manualSeed(0); const z = randn([4])
 */
export function randn(shape: readonly number[], opts?: TensorOptions): Tensor {
  return randomTensor('randn', shape, opts, () => {
    const u1 = 1 - generator.uniform()
    const u2 = generator.uniform()
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)
  })
}
