/** Checks analytic gradients against float64 central differences. */
import { isFloat, type TypedArray } from '../dtype.js'
import { EclatError } from '../errors.js'
import { tensor } from '../creation.js'
import { Tensor } from '../tensor.js'
import { backward } from './backward.js'

/**
 * Options of `gradcheck`.
 *
 * @example
 * gradcheck(f, [x], { directions: 5, eps: 1e-5 })
 */
export interface GradcheckOptions {
  /** Random directions to test (default 3). */
  directions?: number
  /** Finite-difference step (default 1e-6). */
  eps?: number
  /** Allowed absolute error (default 1e-6). */
  atol?: number
  /** Allowed error relative to the finite difference (default 1e-5). */
  rtol?: number
  /** Seed of the random directions (default 0). */
  seed?: number
}

/**
 * What `gradcheck` found.
 *
 * @example
 * const { ok, maxError } = gradcheck(f, [x])
 */
export interface GradcheckResult {
  ok: boolean
  /** Largest |analytic − numeric| over the directions. */
  maxError: number
  /** Per direction: uᵀ J v from the gradients. */
  analytic: number[]
  /** Per direction: the central difference of uᵀ f along v. */
  numeric: number[]
}

function directionRng(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0 || 1
  return () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return ((s >>> 0) / 2 ** 32) * 2 - 1
  }
}

function dot(a: TypedArray, b: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!
  return s
}

/**
 * Compares the gradient of `f` at `inputs` with float64 central differences
 * along random directions: for random u (on the output) and v (on the float
 * inputs), uᵀ·J·v from `backward` against (uᵀf(x+εv) − uᵀf(x−εv)) / 2ε. Float
 * inputs are converted to float64; int32/bool inputs (indices, masks) pass through.
 *
 * @example
 * gradcheck((x) => x.sin().mul(x), [randn([3, 4])]).ok // true
 */
export function gradcheck(f: (...inputs: Tensor[]) => Tensor, inputs: readonly Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const { directions = 3, eps = 1e-6, atol = 1e-6, rtol = 1e-5, seed = 0 } = opts
  const rand = directionRng(seed + 1)
  const base = inputs.map((x) => (isFloat(x.dtype) ? tensor(x.cast('float64').dataSync(), { shape: [...x.shape], dtype: 'float64' }) : x))
  const float = base.map((x) => isFloat(x.dtype))
  const y0 = f(...base)
  if (!(y0 instanceof Tensor) || !isFloat(y0.dtype)) throw new EclatError('gradcheck: f must return a float tensor')
  const analytic: number[] = []
  const numeric: number[] = []
  let maxError = 0
  let ok = true
  for (let k = 0; k < directions; k++) {
    const u = Float64Array.from({ length: y0.size }, rand)
    const vs = base.map((x, i) => (float[i] ? Float64Array.from({ length: x.size }, rand) : null))
    const xs = base.filter((_, i) => float[i])
    const grads = backward(f(...base), xs, { gradOutput: tensor(u, { shape: [...y0.shape], dtype: 'float64' }) })
    let a = 0
    base.forEach((x, i) => {
      if (float[i]) a += dot(grads.get(x)!.cast('float64').dataSync(), vs[i]!)
    })
    const along = (sign: number) => {
      const moved = base.map((x, i) => {
        if (!float[i]) return x
        const data = x.dataSync()
        const v = vs[i]!
        return tensor(Float64Array.from(data, (d, j) => d + sign * eps * v[j]!), { shape: [...x.shape], dtype: 'float64' })
      })
      return dot(f(...moved).cast('float64').dataSync(), u)
    }
    const n = (along(1) - along(-1)) / (2 * eps)
    const err = Math.abs(a - n)
    analytic.push(a)
    numeric.push(n)
    maxError = Math.max(maxError, err)
    if (!(err <= atol + rtol * Math.abs(n))) ok = false
  }
  return { ok, maxError, analytic, numeric }
}
