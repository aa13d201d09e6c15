// Differential fuzzer: random graphs of primitives and composites (random
// shapes with scalars, size-0 and broadcast axes, random dtypes, random view
// chains), run on the native kernels and on the reference interpreter, forward
// and gradients, compared with dtype-aware tolerances.
//
//   npm run fuzz -- --seconds 60 --seed 1
//
// A failing case prints its seed and its op sequence as code, and is appended
// to regressions.json, which __test__/fuzz.test.ts replays.
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as E from '../../dist/index.js'
import { backendByName, evaluate } from '../../dist/realize.js'

const REGRESSIONS = fileURLToPath(new URL('./regressions.json', import.meta.url))

function generator(seed) {
  let s = seed >>> 0
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
  const int = (n) => Math.floor(next() * n)
  const pick = (list) => list[int(list.length)]
  return { next, int, pick }
}

/** Random data for a leaf: small magnitudes so products and exponentials stay finite. */
function leaf(g, shape, dtype, name) {
  const n = shape.reduce((a, b) => a * b, 1)
  const values = Array.from({ length: n }, () => {
    if (dtype === 'bool') return g.next() < 0.5
    if (dtype === 'int32') return g.int(9) - 4
    return Math.round((g.next() * 4 - 2) * 64) / 64 // exact in float32: ties are exercised
  })
  const t = E.tensor(values, { shape, dtype })
  t.label = name
  t.exact = true
  return t
}

function randomShape(g) {
  const ndim = g.int(4)
  return Array.from({ length: ndim }, () => g.pick([0, 1, 1, 2, 3, 4, 5]))
}

/**
 * Discontinuous ops (comparisons, casts to int32/bool, sign) turn a one-ulp
 * difference in their float input (libm exp2 against Math.pow, summation order)
 * into a different result; they only take exact data: leaves, or non-float tensors.
 */
const exact = (t) => t.exact || !['float32', 'float64'].includes(t.dtype)

/** Ops the fuzzer composes: each returns [tensor, code] or null when it does not apply. */
const OPS = [
  ['unary', (g, x) => {
    const name = g.pick(['neg', 'sin', 'exp2', 'tanh', 'sigmoid', 'relu', 'abs', 'square', 'softplus', 'gelu', 'exp', 'cos', 'sign'])
    if (name !== 'neg' && name !== 'abs' && name !== 'square' && name !== 'sign' && name !== 'relu' && !['float32', 'float64'].includes(x.dtype)) return null
    if (x.dtype === 'bool') return null
    if (name === 'sign' && !exact(x)) return null
    // sin and cos of huge arguments turn one-ulp differences upstream (summation
    // order) into different results; keep their arguments moderate.
    if (name === 'sin' || name === 'cos') return [x.clamp(-50, 50)[name](), `clamp(-50, 50).${name}()`]
    return [x[name](), `${name}()`]
  }],
  ['domain', (g, x) => {
    if (!['float32', 'float64'].includes(x.dtype)) return null
    const name = g.pick(['sqrt', 'log2', 'log', 'recip'])
    return [x.abs().add(0.5)[name](), `abs().add(0.5).${name}()`]
  }],
  ['binary', (g, x, pool) => {
    const y = g.pick(pool)
    const name = g.pick(['add', 'mul', 'sub', 'maximum', 'minimum', 'lt', 'eq', 'div'])
    if ((x.dtype === 'bool' || y.dtype === 'bool') && ['sub', 'div'].includes(name)) return null
    if ((name === 'lt' || name === 'eq') && !(exact(x) && exact(y))) return null
    return [name === 'div' ? x.div(y.abs().add(1)) : x[name](y), name === 'div' ? `div(${y.label}.abs().add(1))` : `${name}(${y.label})`]
  }],
  ['scalar', (g, x) => {
    const c = g.pick([2, -1.5, 0.25, 3])
    const name = g.pick(['add', 'mul', 'maximum'])
    if (x.dtype === 'bool') return null
    return [x[name](c), `${name}(${c})`]
  }],
  ['where', (g, x, pool) => {
    if (!exact(x)) return null
    const y = g.pick(pool)
    return [E.where(x.gt(0), x, y), `where(gt(0), self, ${y.label})`]
  }],
  ['reduce', (g, x) => {
    if (x.ndim === 0) return null
    const name = g.pick(['sum', 'max', 'min', 'prod', 'mean'])
    const axis = g.int(x.ndim) - (g.next() < 0.3 ? x.ndim : 0)
    const keep = g.next() < 0.5
    if ((name === 'max' || name === 'min') && x.shape[(axis + x.ndim) % x.ndim] === 0) return null
    if (name === 'mean' && x.dtype === 'bool') return null
    return [x[name](axis, keep), `${name}(${axis}, ${keep})`]
  }],
  ['scan', (g, x) => {
    if (x.ndim === 0 || x.dtype === 'bool') return null
    const name = g.pick(['cumsum', 'cumprod', 'cummax'])
    const axis = g.int(x.ndim)
    const reverse = g.next() < 0.5
    const src = name === 'cumprod' ? x.mul(0.5) : x
    return [src[name](axis, { reverse }), `${name === 'cumprod' ? 'mul(0.5).' : ''}${name}(${axis}, { reverse: ${reverse} })`]
  }],
  ['permute', (g, x) => {
    const order = x.shape.map((_, i) => i).sort(() => g.next() - 0.5)
    return [x.permute(order), `permute([${order}])`]
  }],
  ['slice', (g, x) => {
    if (x.ndim === 0) return null
    const ranges = x.shape.map((n) => {
      if (n === 0 || g.next() < 0.3) return null
      const start = g.int(n)
      return [start, start + 1 + g.int(n - start), 1 + g.int(3)]
    })
    return [x.slice(ranges), `slice(${JSON.stringify(ranges)})`]
  }],
  ['pad', (g, x) => {
    const widths = x.shape.map(() => [g.int(2), g.int(3)])
    return [x.pad(widths, 0.5), `pad(${JSON.stringify(widths)}, 0.5)`]
  }],
  ['expand', (g, x) => {
    const shape = [g.pick([1, 2, 3]), ...x.shape.map((d) => (d === 1 ? g.pick([1, 3]) : d))]
    return [x.expand(shape), `expand([${shape}])`]
  }],
  ['reshape', (g, x) => {
    return [x.reshape([-1]), 'reshape([-1])']
  }],
  ['softmax', (g, x) => {
    if (x.ndim === 0 || !['float32', 'float64'].includes(x.dtype) || x.shape.at(-1) === 0) return null
    const name = g.pick(['softmax', 'logSoftmax', 'logsumexp'])
    return [x[name](-1), `${name}(-1)`]
  }],
  ['gather', (g, x) => {
    if (x.ndim === 0 || x.shape.some((d) => d === 0)) return null
    const axis = g.int(x.ndim)
    const shape = x.shape.map((d, i) => (i === axis ? 1 + g.int(6) : 1 + g.int(d)))
    const idx = E.tensor(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => g.int(x.shape[axis])), { shape, dtype: 'int32' })
    return [x.gather(axis, idx), `gather(${axis}, tensor(${JSON.stringify(Array.from(idx.dataSync()))}, { shape: [${shape}], dtype: 'int32' }))`]
  }],
  ['scatter', (g, x) => {
    if (x.ndim === 0 || x.shape.some((d) => d === 0) || x.dtype === 'bool') return null
    const axis = g.int(x.ndim)
    const shape = x.shape.map((d, i) => (i === axis ? 1 + g.int(6) : 1 + g.int(d)))
    const idx = E.tensor(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => g.int(x.shape[axis])), { shape, dtype: 'int32' })
    const name = g.pick(['scatterAdd', 'scatterMax'])
    const src = E.full(shape, 0.75, { dtype: x.dtype }).mul(x.slice(shape.map((n) => [0, 1])).expand(shape))
    return [x[name](axis, idx, src), `${name}(${axis}, index of [${shape}], values from self)`]
  }],
  ['matmul', (g, x) => {
    if (x.ndim === 0 || !['float32', 'float64'].includes(x.dtype)) return null
    const k = x.shape.at(-1)
    const w = leaf(g, x.ndim === 1 ? [k] : [k, 1 + g.int(4)], x.dtype, 'w')
    return [x.matmul(w), `matmul(w of [${w.shape}])`]
  }],
  ['concat', (g, x) => {
    if (x.ndim === 0) return null
    return [E.concat([x, x.mul(2)], g.int(x.ndim)), 'concat with mul(2)']
  }],
  ['cast', (g, x) => {
    const dtype = g.pick(['float32', 'float64', 'int32', 'bool'])
    if ((dtype === 'int32' || dtype === 'bool') && !exact(x)) return null
    return [x.cast(dtype), `cast('${dtype}')`]
  }],
]

/** Builds one random case from its seed: the leaves, the steps, the output. */
export function buildCase(seed) {
  const g = generator(seed)
  const dtype = g.pick(['float32', 'float64', 'float64', 'float32', 'int32', 'bool'])
  const leaves = Array.from({ length: 1 + g.int(2) }, (_, i) => leaf(g, randomShape(g), dtype, `x${i}`))
  const pool = [...leaves]
  const steps = leaves.map((l) => `const ${l.label} = tensor(/* ${l.dtype} [${l.shape}] */)`)
  let x = g.pick(pool)
  for (let k = 0, n = 2 + g.int(6); k < n; k++) {
    const [name, op] = g.pick(OPS)
    let made = null
    try {
      made = op(g, x, pool)
    } catch (e) {
      if (!(e instanceof E.EclatError)) throw e
      continue // a shape or dtype the op rightly rejects
    }
    if (!made) continue
    const [y, code] = made
    y.label = `t${k}`
    steps.push(`const ${y.label} = ${x.label}.${code} // ${name}: ${y.dtype} [${y.shape}]`)
    pool.push(y)
    x = y
  }
  const lowest = pool.some((t) => t.dtype === 'float32') ? 'float32' : 'float64'
  return { leaves, out: x, steps, lowest }
}

/** Compares results; `lowest` is the least precise float dtype the graph computed in. */
function compare(a, b, dtype, lowest, label) {
  const float = dtype === 'float32' || dtype === 'float64'
  const tol = !float ? 0 : dtype === 'float32' || lowest === 'float32' ? 2e-4 : 1e-9
  if (a.length !== b.length) return `${label}: ${a.length} vs ${b.length} elements`
  let scale = 1
  for (const v of b) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v))
  for (let i = 0; i < a.length; i++) {
    const [x, y] = [a[i], b[i]]
    if (Number.isNaN(x) && Number.isNaN(y)) continue
    if (x === y) continue
    if (!Number.isFinite(x) || !Number.isFinite(y) || Math.abs(x - y) > tol * scale) {
      return `${label}: element ${i} is ${x} natively, ${y} in the reference`
    }
  }
  return null
}

/** Runs one case on both backends; returns null or a description of the mismatch. */
export function runCase(seed) {
  const { leaves, out, steps, lowest } = buildCase(seed)
  const native = backendByName('native')
  const reference = backendByName('reference')
  const check = (tensors, label) => {
    let n
    let r
    try {
      r = evaluate(tensors.map((t) => t.node), reference)
    } catch (e) {
      if (e instanceof E.IndexError) return null
      throw e
    }
    try {
      n = evaluate(tensors.map((t) => t.node), native)
    } catch (e) {
      return `${label}: native threw ${e.name}: ${e.message}; the reference did not`
    }
    for (let i = 0; i < tensors.length; i++) {
      const problem = compare(n[i], r[i], tensors[i].dtype, lowest, `${label} ${i}`)
      if (problem) return problem
    }
    return null
  }
  const problem = check([out], 'forward')
  if (problem) return { steps, problem }
  const floats = leaves.filter((l) => l.dtype === 'float32' || l.dtype === 'float64')
  if (floats.length > 0 && (out.dtype === 'float32' || out.dtype === 'float64')) {
    const weights = E.tensor(Array.from({ length: out.size }, (_, i) => ((i * 7) % 5) - 2), { shape: [...out.shape], dtype: out.dtype })
    const grads = E.backward(out.mul(weights).sum(), floats)
    const p = check(floats.map((l) => grads.get(l)), 'gradient')
    if (p) return { steps, problem: p }
  }
  return null
}

export function loadRegressions() {
  return existsSync(REGRESSIONS) ? JSON.parse(readFileSync(REGRESSIONS, 'utf8')) : []
}

/** Runs random cases for `seconds` from `seed`; returns counts and failures. */
export function fuzz({ seconds, seed, record = true, log = () => {} }) {
  const until = performance.now() + seconds * 1000
  const failures = []
  let cases = 0
  for (let i = 0; performance.now() < until; i++) {
    const caseSeed = (seed * 1_000_003 + i) >>> 0
    cases++
    let result
    try {
      result = runCase(caseSeed)
    } catch (e) {
      result = { steps: [], problem: `threw ${e.name}: ${e.message}` }
    }
    if (result) {
      failures.push({ seed: caseSeed, ...result })
      log(`FAIL case seed ${caseSeed}: ${result.problem}\n  ${result.steps.join('\n  ')}`)
    }
  }
  if (record && failures.length > 0) {
    const known = loadRegressions()
    const seeds = new Set(known.map((r) => r.seed))
    writeFileSync(REGRESSIONS, JSON.stringify([...known, ...failures.filter((f) => !seeds.has(f.seed)).map(({ seed, problem, steps }) => ({ seed, problem, steps }))], null, 2) + '\n')
  }
  return { cases, failures }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`)
    return i >= 0 ? Number(process.argv[i + 1]) : fallback
  }
  const seconds = arg('seconds', 60)
  const seed = arg('seed', 1)
  const { cases, failures } = fuzz({ seconds, seed, log: console.log })
  console.log(`fuzz: ${cases} graphs in ${seconds} s from seed ${seed}; ${failures.length} failures${failures.length ? ' (added to __test__/fuzz/regressions.json)' : ''}`)
  process.exit(failures.length ? 1 : 0)
}
