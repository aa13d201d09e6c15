// Eclat against pure JS and TensorFlow.js (cpu and wasm backends), same
// workloads in the same run. Prints a table of medians and ratios and writes
// JSON to bench-results/.
//
//   npm run bench                       all workloads
//   npm run bench -- --only matmul,mlp  a subset (by name prefix)
//   npm run bench -- --quick            fewer samples
import { createRequire } from 'node:module'
import { mkdirSync, writeFileSync } from 'node:fs'
import Benchmark from 'benchmark'
import * as tf from '@tensorflow/tfjs'

import '@tensorflow/tfjs-backend-wasm'
import * as E from '../dist/index.js'

const args = process.argv.slice(2)
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : null
const quick = args.includes('--quick')
const addon = createRequire(import.meta.url)('../native/index.cjs')

// ---- helpers ---------------------------------------------------------------

/**
 * Median milliseconds of `fn` after warm-up. benchmark.js samples it; a call
 * slower than half a second (the slow peers on the large workloads) is timed
 * three times by hand instead, and one slower than five seconds once, so a run
 * of the suite stays within minutes.
 */
function measure(fn) {
  let t = performance.now()
  fn() // V8 needs warm-up calls to reach steady speed
  const first = performance.now() - t
  if (first > 5000) return first
  if (first > 500) {
    const times = [0, 1, 2].map(() => ((t = performance.now()), fn(), performance.now() - t))
    return times.sort((a, b) => a - b)[1]
  }
  fn()
  let median = NaN
  const bench = new Benchmark({ fn, minSamples: quick ? 3 : 8, maxTime: quick ? 0.5 : 2, initCount: 1 })
  bench.on('complete', () => {
    const s = [...bench.stats.sample].sort((a, b) => a - b)
    median = s[Math.floor(s.length / 2)] * 1e3
  })
  bench.run()
  return median
}

async function withTf(backend, fn) {
  await tf.setBackend(backend)
  await tf.ready()
  return fn()
}

function seeded(n, seed, scale = 1) {
  let s = seed >>> 0
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    a[i] = (s / 2 ** 32) * scale
  }
  return a
}

function indices(n, mod, seed) {
  let s = seed >>> 0
  const a = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    a[i] = s % mod
  }
  return a
}

// ---- workloads -------------------------------------------------------------
// Each: name, bytes moved or flops per run (for GB/s or GFLOP/s), the limit it
// is compared with, and one function per peer (null where a peer has none).

const M = 16 * 1024 * 1024
const R = 4096

// Large outputs (16M elements): every peer reuses its output memory, as a loop
// running the computation repeatedly would. Fresh 64 MB arrays cost as much as
// a pass over them (the OS zeroes their pages on first touch). The JS loops
// write into one preallocated array; Eclat realizes and disposes the result
// (dispose() recycles the buffer into the next realize); TensorFlow.js
// disposes in tidy().
const outM = new Float32Array(M)
/** Realizes `t` and hands its buffer back for the next run. */
const steady = (t) => {
  t.realize()
  t.dispose()
}
const workloads = []
const add = (w) => (!only || only.some((o) => w.name.startsWith(o))) && workloads.push(w)

{
  const x = seeded(M, 1, 1)
  const ex = E.tensor(x)
  add({
    name: 'a: sin(x)*exp2(x)+sqrt(x), 16M',
    bytes: 8 * M, limit: 'triad',
    eclat: () => steady(ex.sin().mul(ex.exp2()).add(ex.sqrt())),
    js: () => {
      const o = outM
      for (let i = 0; i < M; i++) {
        const v = x[i]
        o[i] = Math.sin(v) * Math.exp(v * Math.LN2) + Math.sqrt(v)
      }
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.add(tf.mul(tf.sin(t.x), tf.exp(tf.mul(t.x, Math.LN2))), tf.sqrt(t.x)).dataSync()),
    tfSetup: () => ({ x: tf.tensor1d(x) }),
  })
  add({
    name: 'b: sum, 16M',
    bytes: 4 * M, limit: 'read',
    eclat: () => ex.sum().dataSync(),
    js: () => {
      let a = 0, b = 0, c = 0, d = 0
      for (let i = 0; i < M; i += 4) { a += x[i]; b += x[i + 1]; c += x[i + 2]; d += x[i + 3] }
      return a + b + c + d
    },
    tf: (t) => () => tf.tidy(() => tf.sum(t.x).dataSync()),
    tfSetup: () => ({ x: tf.tensor1d(x) }),
  })
  add({
    name: 'd: cumsum, 16M',
    bytes: 8 * M, limit: 'triad',
    eclat: () => steady(ex.cumsum(0)),
    js: () => {
      const o = outM
      let acc = 0
      for (let i = 0; i < M; i++) o[i] = acc += x[i]
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.cumsum(t.x).dataSync()),
    tfSetup: () => ({ x: tf.tensor1d(x) }),
  })
  const bins = 65536
  const idx = indices(M, bins, 3)
  const eidx = E.tensor(idx)
  const ezeros = E.zeros([bins])
  add({
    name: 'e: scatterAdd 16M into 65,536 bins',
    bytes: 8 * M, limit: 'triad',
    eclat: () => ezeros.scatterAdd(0, eidx, ex).dataSync(),
    js: () => {
      const o = new Float32Array(bins)
      for (let i = 0; i < M; i++) o[idx[i]] += x[i]
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.scatterND(t.idx, t.x, [bins]).dataSync()),
    tfSetup: () => ({ x: tf.tensor1d(x), idx: tf.tensor2d(idx, [M, 1], 'int32') }),
  })
  const gidx = indices(M, M, 5)
  const egidx = E.tensor(gidx)
  add({
    name: 'f: gather 16M',
    bytes: 12 * M, limit: 'triad',
    eclat: () => steady(ex.gather(0, egidx)),
    js: () => {
      const o = outM
      for (let i = 0; i < M; i++) o[i] = x[gidx[i]]
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.gather(t.x, t.idx).dataSync()),
    tfSetup: () => ({ x: tf.tensor1d(x), idx: tf.tensor1d(gidx, 'int32') }),
  })
}
{
  const m = seeded(R * R, 7, 1)
  const em = E.tensor(m, { shape: [R, R] })
  for (const axis of [1, 0]) {
    add({
      name: `c: sum axis ${axis}, 4096x4096`,
      bytes: 4 * R * R, limit: 'read',
      eclat: () => em.sum(axis).dataSync(),
      js: () => {
        const o = new Float32Array(R)
        if (axis === 1) {
          for (let i = 0; i < R; i++) {
            let a = 0, b = 0
            for (let j = 0; j < R; j += 2) { a += m[i * R + j]; b += m[i * R + j + 1] }
            o[i] = a + b
          }
        } else {
          const acc = new Float64Array(R)
          for (let i = 0; i < R; i++) for (let j = 0; j < R; j++) acc[j] += m[i * R + j]
          o.set(acc)
        }
        return o
      },
      tf: (t) => () => tf.tidy(() => tf.sum(t.m, axis).dataSync()),
      tfSetup: () => ({ m: tf.tensor2d(m, [R, R]) }),
    })
  }
  add({
    name: 'm: max axis 1, 4096x4096',
    bytes: 4 * R * R, limit: 'read',
    eclat: () => em.max(1).dataSync(),
    js: () => {
      const o = new Float32Array(R)
      for (let i = 0; i < R; i++) {
        let a = -Infinity, b = -Infinity
        for (let j = 0; j < R; j += 2) { a = Math.max(a, m[i * R + j]); b = Math.max(b, m[i * R + j + 1]) }
        o[i] = Math.max(a, b)
      }
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.max(t.m, 1).dataSync()),
    tfSetup: () => ({ m: tf.tensor2d(m, [R, R]) }),
  })
  add({
    name: 'd: cumsum axis 1, 4096x4096',
    bytes: 8 * R * R, limit: 'triad',
    eclat: () => steady(em.cumsum(1)),
    js: () => {
      const o = outM
      for (let i = 0; i < R; i++) {
        let acc = 0
        for (let j = 0; j < R; j++) o[i * R + j] = acc += m[i * R + j]
      }
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.cumsum(t.m, 1).dataSync()),
    tfSetup: () => ({ m: tf.tensor2d(m, [R, R]) }),
  })
  add({
    name: 'k: transpose 4096x4096 (a copy)',
    bytes: 8 * R * R, limit: 'triad',
    eclat: () => steady(em.transpose(0, 1)),
    // Blocked, as a programmer who knows caches writes it: row by row, each
    // read of the column touches a line of its own.
    js: () => {
      const o = outM
      const B = 32
      for (let i0 = 0; i0 < R; i0 += B)
        for (let j0 = 0; j0 < R; j0 += B)
          for (let i = i0; i < i0 + B; i++)
            for (let j = j0; j < j0 + B; j++) o[i * R + j] = m[j * R + i]
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.transpose(t.m).dataSync()),
    tfSetup: () => ({ m: tf.tensor2d(m, [R, R]) }),
  })
}
{
  // Short rows: a classifier's softmax over 10 classes (a max and a sum per
  // row of 10, then every element), 1.6M rows.
  const C = 10
  const rows = 1_600_000
  const x = seeded(rows * C, 7, 4)
  const ex = E.tensor(x, { shape: [rows, C] })
  add({
    name: 'l: softmax over rows of 10, 1.6M rows',
    bytes: 8 * rows * C, limit: 'triad',
    eclat: () => steady(ex.softmax(1)),
    js: () => {
      const o = outM
      for (let r = 0; r < rows; r++) {
        const at = r * C
        let max = -Infinity
        for (let j = 0; j < C; j++) max = Math.max(max, x[at + j])
        let sum = 0
        for (let j = 0; j < C; j++) sum += o[at + j] = Math.exp(x[at + j] - max)
        for (let j = 0; j < C; j++) o[at + j] /= sum
      }
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.softmax(t.x).dataSync()),
    tfSetup: () => ({ x: tf.tensor2d(x, [rows, C]) }),
  })
}
{
  // Rows of 100 (a softmax's or a layer norm's width): logsumexp reads each
  // row for its max, then again for its sum of exponentials.
  const C = 100
  const rows = 160_000
  const x = seeded(rows * C, 7, 4)
  const ex = E.tensor(x, { shape: [rows, C] })
  add({
    name: 'n: logsumexp over rows of 100, 160K rows',
    bytes: 4 * rows * C, limit: 'read',
    eclat: () => ex.logsumexp(1).dataSync(),
    js: () => {
      const o = new Float32Array(rows)
      for (let r = 0; r < rows; r++) {
        const at = r * C
        let max = -Infinity
        for (let j = 0; j < C; j++) max = Math.max(max, x[at + j])
        let sum = 0
        for (let j = 0; j < C; j++) sum += Math.exp(x[at + j] - max)
        o[r] = Math.log(sum) + max
      }
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.logSumExp(t.x, 1).dataSync()),
    tfSetup: () => ({ x: tf.tensor2d(x, [rows, C]) }),
  })
}
{
  const tiny = E.tensor([1, 2, 3, 4])
  const small = new Float32Array([1, 2, 3, 4])
  add({
    name: 'g: 1000 dependent tiny ops, built then realized (per op)',
    perOp: 1000, limit: null,
    eclat: () => {
      let y = tiny
      for (let i = 0; i < 1000; i++) y = y.add(1)
      return y.dataSync()
    },
    js: () => {
      let y = small
      for (let i = 0; i < 1000; i++) y = y.map((v) => v + 1)
      return y
    },
    tf: (t) => () => tf.tidy(() => {
      let y = t.a
      for (let i = 0; i < 1000; i++) y = tf.add(y, 1)
      return y.dataSync()
    }),
    tfSetup: () => ({ a: tf.tensor1d(small) }),
  })
  add({
    name: 'g: one tiny op realized 10,000 times (per op)',
    perOp: 10000, limit: null,
    eclat: () => {
      for (let i = 0; i < 10000; i++) tiny.add(1).dataSync()
    },
    js: () => {
      for (let i = 0; i < 10000; i++) small.map((v) => v + 1)
    },
    tf: (t) => () => {
      for (let i = 0; i < 10000; i++) tf.tidy(() => tf.add(t.a, 1).dataSync())
    },
    tfSetup: () => ({ a: tf.tensor1d(small) }),
  })
}
for (const n of [512, 1024]) {
  const a = seeded(n * n, 11, 1)
  const b = seeded(n * n, 13, 1)
  const [ea, eb] = [E.tensor(a, { shape: [n, n] }), E.tensor(b, { shape: [n, n] })]
  add({
    name: `h: matmul ${n}x${n} float32`,
    flops: 2 * n ** 3, limit: 'fma',
    eclat: () => ea.matmul(eb).dataSync(),
    js: () => {
      const o = new Float32Array(n * n)
      for (let i = 0; i < n; i++)
        for (let k = 0; k < n; k++) {
          const aik = a[i * n + k]
          for (let j = 0; j < n; j++) o[i * n + j] += aik * b[k * n + j]
        }
      return o
    },
    tf: (t) => () => tf.tidy(() => tf.matMul(t.a, t.b).dataSync()),
    tfSetup: () => ({ a: tf.tensor2d(a, [n, n]), b: tf.tensor2d(b, [n, n]) }),
  })
}
{
  // MLP 784-256-10, batch 128, softmax cross-entropy, SGD.
  const B = 128
  const x = seeded(B * 784, 17, 1)
  const labels = indices(B, 10, 19)
  E.manualSeed(0)
  const mlp = new E.Sequential(new E.Linear(784, 256), new E.ReLU(), new E.Linear(256, 10))
  const opt = new E.SGD(mlp.parameters(), { lr: 0.01 })
  const ex = E.tensor(x, { shape: [B, 784] })
  const ey = E.tensor(labels)
  add({
    name: 'i: MLP 784-256-10 training step, batch 128',
    steps: true, limit: null,
    eclat: () => {
      opt.zeroGrad()
      E.crossEntropy(mlp.forward(ex), ey).backward()
      opt.step()
    },
    js: null,
    tf: (t) => () => {
      t.opt.minimize(() => tf.losses.softmaxCrossEntropy(t.y, tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(t.x, t.w1), t.b1)), t.w2), t.b2)))
      tf.tidy(() => t.w1.dataSync())
    },
    tfSetup: () => ({
      x: tf.tensor2d(x, [B, 784]),
      y: tf.oneHot(tf.tensor1d(labels, 'int32'), 10),
      w1: tf.variable(tf.randomUniform([784, 256], -0.035, 0.035)),
      b1: tf.variable(tf.zeros([256])),
      w2: tf.variable(tf.randomUniform([256, 10], -0.06, 0.06)),
      b2: tf.variable(tf.zeros([10])),
      opt: tf.train.sgd(0.01),
    }),
  })
}
{
  // The demo's CNN (without dropout), batch 64, SGD.
  const B = 64
  const x = seeded(B * 784, 23, 1)
  const labels = indices(B, 10, 29)
  E.manualSeed(0)
  const cnn = new E.Sequential(
    new E.Conv2d(1, 16, 3, { padding: 1 }), new E.ReLU(), new E.MaxPool2d(2),
    new E.Conv2d(16, 32, 3, { padding: 1 }), new E.ReLU(), new E.MaxPool2d(2),
    new E.Flatten(), new E.Linear(32 * 7 * 7, 128), new E.ReLU(), new E.Linear(128, 10),
  )
  const opt = new E.SGD(cnn.parameters(), { lr: 0.01 })
  const ex = E.tensor(x, { shape: [B, 1, 28, 28] })
  const ey = E.tensor(labels)
  add({
    name: 'j: CNN (the demo model) training step, batch 64',
    steps: true, limit: null,
    eclat: () => {
      opt.zeroGrad()
      E.crossEntropy(cnn.forward(ex), ey).backward()
      opt.step()
    },
    js: null,
    tf: (t) => () => {
      t.opt.minimize(() => {
        let h = tf.maxPool(tf.relu(tf.add(tf.conv2d(t.x, t.k1, 1, 'same'), t.c1)), 2, 2, 'valid')
        h = tf.maxPool(tf.relu(tf.add(tf.conv2d(h, t.k2, 1, 'same'), t.c2)), 2, 2, 'valid')
        h = tf.relu(tf.add(tf.matMul(tf.reshape(h, [B, 32 * 7 * 7]), t.w1), t.b1))
        return tf.losses.softmaxCrossEntropy(t.y, tf.add(tf.matMul(h, t.w2), t.b2))
      })
      tf.tidy(() => t.k1.dataSync())
    },
    tfSetup: () => ({
      x: tf.tensor4d(x, [B, 28, 28, 1]),
      y: tf.oneHot(tf.tensor1d(labels, 'int32'), 10),
      k1: tf.variable(tf.randomUniform([3, 3, 1, 16], -0.3, 0.3)),
      c1: tf.variable(tf.zeros([16])),
      k2: tf.variable(tf.randomUniform([3, 3, 16, 32], -0.08, 0.08)),
      c2: tf.variable(tf.zeros([32])),
      w1: tf.variable(tf.randomUniform([1568, 128], -0.025, 0.025)),
      b1: tf.variable(tf.zeros([128])),
      w2: tf.variable(tf.randomUniform([128, 10], -0.09, 0.09)),
      b2: tf.variable(tf.zeros([10])),
      opt: tf.train.sgd(0.01),
    }),
  })
}

// ---- run -------------------------------------------------------------------

const limits = addon.measureMachine(128 * 1024 * 1024)
const limitOf = { triad: limits.triadGbps, read: limits.readGbps, fma: limits.fmaPeakGflops }
console.log(
  `machine: ${E.numThreads()} threads; triad ${limits.triadGbps.toFixed(1)} GB/s, read ${limits.readGbps.toFixed(1)} GB/s, ` +
    `f32 FMA peak ${limits.fmaPeakGflops.toFixed(0)} GFLOP/s (all threads)`,
)
const results = []
for (const w of workloads) {
  const row = { name: w.name }
  row.eclat = measure(w.eclat)
  row.js = w.js ? measure(w.js) : null
  for (const backend of ['cpu', 'wasm']) {
    row[`tf_${backend}`] = await withTf(backend, () => {
      const t = w.tfSetup()
      try {
        return measure(w.tf(t))
      } catch (e) {
        // e.g. the wasm backend has no kernel for a convolution's gradient.
        row[`tf_${backend}_error`] = e.message
        return null
      } finally {
        Object.values(t).forEach((v) => v && typeof v.dispose === 'function' && v.dispose())
      }
    })
  }
  const s = row.eclat / 1e3
  if (w.bytes) row.throughput = `${(w.bytes / s / 1e9).toFixed(1)} GB/s`
  if (w.flops) row.throughput = `${(w.flops / s / 1e9).toFixed(1)} GFLOP/s`
  if (w.limit) row.ofLimit = `${((100 * (w.bytes ? w.bytes / s / 1e9 : w.flops / s / 1e9)) / limitOf[w.limit]).toFixed(0)}% of ${w.limit}`
  if (w.perOp) row.perOp = `${((row.eclat * 1e3) / w.perOp).toFixed(2)} µs/op`
  if (w.steps) row.stepsPerSecond = (1e3 / row.eclat).toFixed(1)
  results.push(row)
  const ratio = (peer) => (row[peer] ? `${(row[peer] / row.eclat).toFixed(1)}x` : row[`${peer}_error`] ? 'n/a' : '—')
  console.log(
    `${w.name.padEnd(58)} eclat ${row.eclat.toFixed(2).padStart(9)} ms | js ${ratio('js').padStart(7)} | tf-cpu ${ratio('tf_cpu').padStart(7)} | ` +
      `tf-wasm ${ratio('tf_wasm').padStart(7)} | ${row.throughput ?? row.perOp ?? `${row.stepsPerSecond} steps/s`} ${row.ofLimit ? `(${row.ofLimit})` : ''}`,
  )
}
mkdirSync('bench-results', { recursive: true })
const file = `bench-results/bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), threads: E.numThreads(), limits, results }, null, 2))
console.log(`ratios are peer time / Eclat time (higher: Eclat faster); wrote ${file}`)
