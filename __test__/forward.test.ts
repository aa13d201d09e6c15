/**
 * Every primitive and composite, native kernels against the reference
 * interpreter, over scalars, size-0 dims, broadcasting, non-contiguous views and
 * sizes above the threading threshold.
 */
import { describe, it } from 'vitest'
import { concat, split, stack, tensor, where, zeros, type DType, type Tensor } from '../ts/index.js'
import { expectBackendsAgree, makeInput, rng, type Domain, type Layout } from './helpers.js'

const SHAPES: number[][] = [[], [0], [3, 0], [7], [2, 3], [2, 3, 4], [1, 5], [300, 257]]
const LAYOUTS: Layout[] = ['contiguous', 'permuted', 'sliced', 'expanded']
const FLOATS: DType[] = ['float32', 'float64']
const NUMERIC: DType[] = ['float32', 'float64', 'int32']
const ALL: DType[] = ['float32', 'float64', 'int32', 'bool']
const BITS: DType[] = ['int32', 'bool']

function domainFor(dtype: DType, domain: Domain): Domain {
  return dtype === 'bool' ? 'bool' : dtype === 'int32' ? 'int' : domain
}

/** Tolerance (relative to 1 + |expected|) by dtype; integer results are exact. */
function tolFor(out: Tensor, tol: number): number {
  if (out.dtype === 'int32' || out.dtype === 'bool') return 0
  return out.dtype === 'float64' ? Math.min(tol, 1e-12) : tol
}

interface UnaryCase {
  name: string
  dtypes: DType[]
  domain: Domain
  /** Worst relative difference allowed for float32 (0 = bit-exact). */
  tol: number
  f: (x: Tensor) => Tensor
  /** Skip shapes the op rejects (checked in the error tests). */
  accepts?: (shape: readonly number[]) => boolean
}

const hasAxes = (s: readonly number[]) => s.length > 0
const nonEmptyAll = (s: readonly number[]) => s.every((d) => d > 0)

const UNARY: UnaryCase[] = [
  // primitives
  { name: 'neg', dtypes: NUMERIC, domain: 'any', tol: 0, f: (x) => x.neg() },
  { name: 'recip', dtypes: [...FLOATS, 'int32'], domain: 'any', tol: 0, f: (x) => x.recip() },
  { name: 'sqrt', dtypes: [...FLOATS, 'int32'], domain: 'positive', tol: 0, f: (x) => x.sqrt() },
  { name: 'exp2', dtypes: FLOATS, domain: 'any', tol: 2e-7, f: (x) => x.exp2() },
  { name: 'log2', dtypes: FLOATS, domain: 'positive', tol: 2e-7, f: (x) => x.log2() },
  { name: 'sin', dtypes: FLOATS, domain: 'any', tol: 2e-7, f: (x) => x.sin() },
  { name: 'cast float32', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.cast('float32') },
  { name: 'cast float64', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.cast('float64') },
  { name: 'cast int32', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.cast('int32') },
  { name: 'cast bool', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.cast('bool') },
  { name: 'bitwiseNot', dtypes: BITS, domain: 'int', tol: 0, f: (x) => x.bitwiseNot() },
  { name: 'sum all', dtypes: [...NUMERIC, 'bool'], domain: 'any', tol: 1e-6, f: (x) => x.sum() },
  { name: 'sum axis 0', dtypes: NUMERIC, domain: 'any', tol: 1e-6, f: (x) => x.sum(0), accepts: hasAxes },
  { name: 'sum axis -1 keepdim', dtypes: NUMERIC, domain: 'any', tol: 1e-6, f: (x) => x.sum(-1, true), accepts: hasAxes },
  { name: 'sum axes [0, -1]', dtypes: NUMERIC, domain: 'any', tol: 1e-6, f: (x) => x.sum([0, -1]), accepts: (s) => s.length > 1 },
  { name: 'max all', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.max(), accepts: nonEmptyAll },
  { name: 'max axis 0', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.max(0), accepts: (s) => hasAxes(s) && s[0]! > 0 },
  { name: 'min axis -1', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.min(-1, true), accepts: (s) => hasAxes(s) && s.at(-1)! > 0 },
  { name: 'prod axis -1', dtypes: NUMERIC, domain: 'small', tol: 1e-6, f: (x) => x.prod(-1), accepts: hasAxes },
  { name: 'prod all', dtypes: NUMERIC, domain: 'small', tol: 1e-6, f: (x) => x.prod() },
  { name: 'reshape -1', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.reshape([-1]) },
  { name: 'permute reverse', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.permute(x.shape.map((_, i) => x.ndim - 1 - i)) },
  { name: 'expand leading', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.expand([2, ...x.shape]) },
  { name: 'slice step 2', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.slice(x.shape.map(() => [0, -1, 2] as const)), accepts: nonEmptyAll },
  { name: 'slice negative start', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.slice([[-1, x.shape[0]!]]), accepts: (s) => hasAxes(s) && s[0]! > 0 },
  { name: 'pad', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.pad(x.shape.map((_, i) => [i, 2] as [number, number]), 3) },
  { name: 'cumsum 0', dtypes: NUMERIC, domain: 'any', tol: 1e-6, f: (x) => x.cumsum(0), accepts: hasAxes },
  { name: 'cumsum -1 reverse', dtypes: [...NUMERIC, 'bool'], domain: 'any', tol: 1e-6, f: (x) => x.cumsum(-1, { reverse: true }), accepts: hasAxes },
  { name: 'cumprod -1', dtypes: NUMERIC, domain: 'small', tol: 1e-6, f: (x) => x.cumprod(-1), accepts: hasAxes },
  { name: 'cumprod 0 reverse', dtypes: NUMERIC, domain: 'small', tol: 1e-6, f: (x) => x.cumprod(0, { reverse: true }), accepts: hasAxes },
  { name: 'cummax 0', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.cummax(0), accepts: hasAxes },
  { name: 'cummax -1 reverse', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.cummax(-1, { reverse: true }), accepts: hasAxes },
  // composites
  { name: 'exp', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.exp() },
  { name: 'log', dtypes: FLOATS, domain: 'positive', tol: 1e-6, f: (x) => x.log() },
  { name: 'cos', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.cos() },
  { name: 'pow 3', dtypes: NUMERIC, domain: 'any', tol: 1e-6, f: (x) => x.pow(3) },
  { name: 'pow 2.5', dtypes: FLOATS, domain: 'positive', tol: 1e-6, f: (x) => x.pow(2.5) },
  { name: 'pow -2', dtypes: FLOATS, domain: 'positive', tol: 1e-6, f: (x) => x.pow(-2) },
  { name: 'square', dtypes: NUMERIC, domain: 'any', tol: 0, f: (x) => x.square() },
  { name: 'abs', dtypes: NUMERIC, domain: 'any', tol: 0, f: (x) => x.abs() },
  { name: 'sign', dtypes: NUMERIC, domain: 'any', tol: 0, f: (x) => x.sign() },
  { name: 'relu', dtypes: NUMERIC, domain: 'any', tol: 0, f: (x) => x.relu() },
  { name: 'sigmoid', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.sigmoid() },
  { name: 'tanh', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.tanh() },
  { name: 'softplus', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.softplus() },
  { name: 'gelu', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.gelu() },
  { name: 'clamp', dtypes: NUMERIC, domain: 'any', tol: 0, f: (x) => x.clamp(-1, 2) },
  { name: 'mean', dtypes: NUMERIC, domain: 'any', tol: 1e-6, f: (x) => x.mean() },
  { name: 'mean axis -1', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.mean(-1), accepts: hasAxes },
  { name: 'var axis 0', dtypes: FLOATS, domain: 'any', tol: 1e-5, f: (x) => x.var(0), accepts: hasAxes },
  { name: 'std', dtypes: FLOATS, domain: 'any', tol: 1e-5, f: (x) => x.std() },
  { name: 'logsumexp -1', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.logsumexp(-1), accepts: (s) => hasAxes(s) && s.at(-1)! > 0 },
  { name: 'softmax -1', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.softmax(-1), accepts: (s) => hasAxes(s) && s.at(-1)! > 0 },
  { name: 'logSoftmax 0', dtypes: FLOATS, domain: 'any', tol: 1e-6, f: (x) => x.logSoftmax(0), accepts: (s) => hasAxes(s) && s[0]! > 0 },
  { name: 'argmax -1', dtypes: ALL, domain: 'int', tol: 0, f: (x) => x.argmax(-1), accepts: (s) => hasAxes(s) && s.at(-1)! > 0 },
  { name: 'argmin all', dtypes: NUMERIC, domain: 'int', tol: 0, f: (x) => x.argmin(), accepts: nonEmptyAll },
  { name: 'transpose', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.transpose() },
  { name: 'flatten', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.flatten() },
  { name: 'squeeze', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.squeeze() },
  { name: 'unsqueeze', dtypes: ALL, domain: 'any', tol: 0, f: (x) => x.unsqueeze(-1) },
  { name: 'stack', dtypes: ALL, domain: 'any', tol: 0, f: (x) => stack([x, x.cast(x.dtype)], 0) },
  { name: 'concat', dtypes: ALL, domain: 'any', tol: 0, f: (x) => concat([x, x], -1), accepts: hasAxes },
  { name: 'split', dtypes: ALL, domain: 'any', tol: 0, f: (x) => split(x, 2, 0).at(-1)!, accepts: (s) => hasAxes(s) && s[0]! > 0 },
]

describe('unary ops: native kernels against the reference interpreter', () => {
  for (const c of UNARY) {
    for (const dtype of c.dtypes) {
      it(`${c.name} (${dtype})`, () => {
        SHAPES.forEach((shape, si) => {
          if (c.accepts && !c.accepts(shape)) return
          for (const layout of LAYOUTS) {
            const x = makeInput(shape, dtype, domainFor(dtype, c.domain), layout, 17 + si)
            const y = c.f(x)
            expectBackendsAgree(y, tolFor(y, c.tol), `${c.name} ${dtype} [${shape}] ${layout}`)
          }
        })
      })
    }
  }
})

const PAIRS: [number[], number[]][] = [
  [[], []],
  [[2, 3], [2, 3]],
  [[3, 1], [1, 4]],
  [[2, 3, 4], [4]],
  [[], [2, 3]],
  [[0, 3], [1, 3]],
  [[300, 257], [300, 257]],
  [[300, 1], [1, 257]],
]

interface BinaryCase {
  name: string
  dtypes: DType[]
  domain: Domain
  tol: number
  f: (a: Tensor, b: Tensor) => Tensor
}

const BINARY: BinaryCase[] = [
  { name: 'add', dtypes: NUMERIC, domain: 'any', tol: 0, f: (a, b) => a.add(b) },
  { name: 'mul', dtypes: NUMERIC, domain: 'any', tol: 0, f: (a, b) => a.mul(b) },
  { name: 'maximum', dtypes: ALL, domain: 'int', tol: 0, f: (a, b) => a.maximum(b) },
  { name: 'minimum', dtypes: ALL, domain: 'int', tol: 0, f: (a, b) => a.minimum(b) },
  { name: 'lt', dtypes: ALL, domain: 'int', tol: 0, f: (a, b) => a.lt(b) },
  { name: 'eq', dtypes: ALL, domain: 'int', tol: 0, f: (a, b) => a.eq(b) },
  { name: 'bitwiseAnd', dtypes: BITS, domain: 'int', tol: 0, f: (a, b) => a.bitwiseAnd(b) },
  { name: 'bitwiseOr', dtypes: BITS, domain: 'int', tol: 0, f: (a, b) => a.bitwiseOr(b) },
  { name: 'bitwiseXor', dtypes: BITS, domain: 'int', tol: 0, f: (a, b) => a.bitwiseXor(b) },
  { name: 'where', dtypes: ALL, domain: 'any', tol: 0, f: (a, b) => where(a.lt(b), a, b) },
  { name: 'sub', dtypes: NUMERIC, domain: 'any', tol: 0, f: (a, b) => a.sub(b) },
  { name: 'div', dtypes: NUMERIC, domain: 'positive', tol: 0, f: (a, b) => a.div(b) },
  { name: 'pow', dtypes: FLOATS, domain: 'positive', tol: 1e-6, f: (a, b) => a.pow(b) },
  { name: 'gt', dtypes: ALL, domain: 'int', tol: 0, f: (a, b) => a.gt(b) },
  { name: 'le', dtypes: ALL, domain: 'int', tol: 0, f: (a, b) => a.le(b) },
  { name: 'ge', dtypes: ALL, domain: 'int', tol: 0, f: (a, b) => a.ge(b) },
  { name: 'ne', dtypes: ALL, domain: 'int', tol: 0, f: (a, b) => a.ne(b) },
]

describe('binary ops with broadcasting: native against reference', () => {
  for (const c of BINARY) {
    for (const dtype of c.dtypes) {
      it(`${c.name} (${dtype})`, () => {
        PAIRS.forEach(([sa, sb], pi) => {
          for (const layout of LAYOUTS) {
            const a = makeInput(sa, dtype, domainFor(dtype, c.domain), layout, 100 + pi)
            const b = makeInput(sb, dtype, domainFor(dtype, c.domain), layout === 'permuted' ? 'sliced' : 'contiguous', 200 + pi)
            const y = c.f(a, b)
            expectBackendsAgree(y, tolFor(y, c.tol), `${c.name} ${dtype} [${sa}] [${sb}] ${layout}`)
            const z = c.f(b, a)
            expectBackendsAgree(z, tolFor(z, c.tol), `${c.name} ${dtype} [${sb}] [${sa}] ${layout}`)
          }
        })
      })
    }
  }
})

describe('long rows and lines (parallel paths)', () => {
  const shapes = [[1, 100_003], [100_003], [3, 70_001], [70_001, 3]]
  for (const shape of shapes) {
    it(`sum, max, cumsum, cummax over [${shape}]`, () => {
      for (const dtype of ['float32', 'float64', 'int32'] as DType[]) {
        const x = makeInput(shape, dtype, domainFor(dtype, 'any'), 'contiguous', 5)
        const tol = dtype === 'int32' ? 0 : 1e-6
        expectBackendsAgree(x.sum(-1), tol, `sum ${dtype} [${shape}]`)
        expectBackendsAgree(x.max(-1), 0, `max ${dtype} [${shape}]`)
        expectBackendsAgree(x.cumsum(-1), dtype === 'float32' ? 1e-5 : tol, `cumsum ${dtype} [${shape}]`)
        expectBackendsAgree(x.cumsum(-1, { reverse: true }), dtype === 'float32' ? 1e-5 : tol, `reverse cumsum ${dtype} [${shape}]`)
        expectBackendsAgree(x.cummax(0), 0, `cummax ${dtype} [${shape}]`)
      }
    })
  }
  it('cumsum over a line too long for one thread: strided, reversed, and streamed past the caches', () => {
    const x = makeInput([400_006], 'float32', domainFor('float32', 'any'), 'contiguous', 7)
    const every2 = x.slice([[1, null, 2]]) // a strided line of 200,003
    expectBackendsAgree(every2.cumsum(0), 1e-5, 'cumsum of a strided line')
    expectBackendsAgree(every2.cummax(0, { reverse: true }), 0, 'reverse cummax of a strided line')
    // 36 MB of float32 output: the blocks are written with non-temporal stores.
    const n = 9_000_011
    const big = tensor(Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 1000) / 64 - 7))
    const got = big.cumsum(0).dataSync() as Float32Array
    let acc = 0
    for (let i = 0; i < n; i++) {
      acc += ((i * 7919) % 1000) / 64 - 7 // multiples of 1/64 below 2^40: exact
      if (got[i] !== Math.fround(acc)) throw new Error(`element ${i}: ${got[i]} vs ${Math.fround(acc)}`)
    }
  })
})

describe('gather and scatter: native against reference', () => {
  const cases: { src: number[]; index: number[]; axis: number }[] = [
    { src: [5], index: [8], axis: 0 },
    { src: [4, 5], index: [4, 5], axis: 0 },
    { src: [4, 5], index: [3, 7], axis: 1 },
    { src: [4, 5], index: [2, 3], axis: -2 },
    { src: [2, 3, 4], index: [2, 2, 6], axis: 2 },
    { src: [4, 5], index: [0, 5], axis: 0 },
    { src: [300, 257], index: [300, 200], axis: 1 },
    { src: [300, 257], index: [600, 257], axis: 0 },
  ]
  for (const { src, index, axis } of cases) {
    for (const layout of ['contiguous', 'permuted'] as Layout[]) {
      it(`[${src}] index [${index}] axis ${axis} (${layout})`, () => {
        const r = rng(src.length * 31 + index[0]!)
        const a = axis < 0 ? axis + src.length : axis
        const size = src[a]!
        const n = index.reduce((x, y) => x * y, 1)
        const idxData = Int32Array.from({ length: n }, () => Math.floor(r() * size))
        const idx = layout === 'permuted'
          ? tensor(idxData, { shape: [...index].reverse() }).permute(index.map((_, i) => index.length - 1 - i))
          : tensor(idxData, { shape: index })
        for (const dtype of ['float32', 'float64', 'int32'] as DType[]) {
          const x = makeInput(src, dtype, domainFor(dtype, 'any'), layout, 9)
          expectBackendsAgree(x.gather(axis, idx), 0, `gather ${dtype}`)
          // Scatter targets the source's shape; values have the index's extent.
          const tgtShape = src.map((d, i) => (i === a ? d : Math.max(d, index[i]!)))
          const target = makeInput(tgtShape, dtype, domainFor(dtype, 'any'), 'contiguous', 3)
          const values = makeInput(index, dtype, domainFor(dtype, 'any'), layout, 4)
          expectBackendsAgree(target.scatterAdd(axis, idx, values), dtype === 'int32' ? 0 : 1e-6, `scatterAdd ${dtype}`)
          expectBackendsAgree(target.scatterMax(axis, idx, values), 0, `scatterMax ${dtype}`)
        }
      })
    }
  }
})

const zerosLike = (n: number, dtype: DType): Tensor => zeros([n], { dtype })

describe('scatter into outputs larger than cache (partitioned by output range)', () => {
  it('scatterAdd and scatterMax of 1M values into 9M outputs, float32 and float64', () => {
    const bins = 9_000_000
    const n = 1 << 20
    const r = rng(99)
    // Half the updates on 100 hot outputs, so duplicates meet in every range.
    const idx = tensor(Int32Array.from({ length: n }, (_, i) => (i % 2 ? Math.floor(r() * 100) * 90_000 : Math.floor(r() * bins))))
    for (const dtype of ['float32', 'float64'] as DType[]) {
      const values = makeInput([n], dtype, domainFor(dtype, 'any'), 'contiguous', 6)
      const target = zerosLike(bins, dtype)
      expectBackendsAgree(target.scatterAdd(0, idx, values), 1e-6, `scatterAdd ${dtype}`)
      expectBackendsAgree(target.scatterMax(0, idx, values), 0, `scatterMax ${dtype}`)
    }
  })
})

describe('matmul: native (gemm) against reference', () => {
  const pairs: [number[], number[]][] = [
    [[3, 4], [4, 5]],
    [[5], [5]],
    [[4], [4, 3]],
    [[3, 4], [4]],
    [[2, 3, 4], [4, 6]],
    [[1, 3, 4], [2, 4, 5]],
    [[2, 1, 3, 4], [3, 4, 2]],
    [[0, 4], [4, 3]],
    [[3, 0], [0, 2]],
    [[120, 200], [200, 150]],
    [[16, 8, 9], [16, 9, 7]],
  ]
  for (const dtype of FLOATS) {
    it(`products of every rank (${dtype})`, () => {
      pairs.forEach(([sa, sb], k) => {
        for (const layout of ['contiguous', 'permuted', 'sliced'] as Layout[]) {
          const a = makeInput(sa, dtype, 'any', layout, 300 + k)
          const b = makeInput(sb, dtype, 'any', layout === 'sliced' ? 'expanded' : layout, 400 + k)
          // float32 sums of up to 200 products of magnitude ~16: allow for their rounding.
          expectBackendsAgree(a.matmul(b), dtype === 'float32' ? 5e-4 : 1e-11, `matmul ${dtype} [${sa}] [${sb}] ${layout}`)
        }
      })
    })
  }
})
