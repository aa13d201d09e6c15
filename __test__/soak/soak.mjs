// Memory soak: an MLP (784-256-10) trained on MNIST digits for N steps in a
// tight synchronous loop, with no dispose calls. Samples RSS, external and heap
// memory; fails if memory keeps growing after warm-up.
//
//   npm run soak -- --steps 20000
//
// Run with --expose-gc (as `npm run soak` does), each sample is taken after a
// full collection, so it measures live memory rather than garbage V8 has not
// collected yet. The collection runs inside the synchronous loop: memory that
// is only released when the event loop turns (finalizers) would still show.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { AdamW, Linear, ReLU, Sequential, crossEntropy, manualSeed, tensor } from '../../dist/index.js'

/** Least-squares slope of ys against xs. */
function slope(xs, ys) {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my)
    den += (xs[i] - mx) ** 2
  }
  return den === 0 ? 0 : num / den
}

export function soak(steps, { batch = 128, log = () => {} } = {}) {
  const mnist = createRequire(import.meta.url)('mnist')
  const images = []
  const labels = []
  for (let d = 0; d < 10; d++) {
    for (let i = 0; i < mnist[d].length; i++) {
      images.push(mnist[d].raw.slice(i * 784, (i + 1) * 784))
      labels.push(d)
    }
  }
  manualSeed(0)
  const model = new Sequential(new Linear(784, 256), new ReLU(), new Linear(256, 10))
  const opt = new AdamW(model.parameters(), { lr: 1e-3 })
  const warmup = Math.max(50, Math.floor(steps / 5))
  const samples = { step: [], rss: [], external: [], heap: [] }
  let loss = NaN
  for (let step = 0; step < steps; step++) {
    const x = new Float32Array(batch * 784)
    const y = new Int32Array(batch)
    for (let i = 0; i < batch; i++) {
      const k = (step * batch + i * 7919) % images.length
      x.set(images[k], i * 784)
      y[i] = labels[k]
    }
    opt.zeroGrad()
    const l = crossEntropy(model.forward(tensor(x, { shape: [batch, 784] })), tensor(y))
    l.backward()
    opt.step()
    if (step % 25 === 0) loss = l.item()
    if (step >= warmup && step % 50 === 0) {
      globalThis.gc?.()
      const m = process.memoryUsage()
      samples.step.push(step)
      samples.rss.push(m.rss)
      samples.external.push(m.external + m.arrayBuffers)
      samples.heap.push(m.heapUsed)
    }
    if (step % 1000 === 0) {
      const m = process.memoryUsage()
      log(`step ${step}: loss ${loss.toFixed(4)}, rss ${(m.rss / 2 ** 20).toFixed(0)} MiB, heap ${(m.heapUsed / 2 ** 20).toFixed(0)} MiB, external ${((m.external + m.arrayBuffers) / 2 ** 20).toFixed(0)} MiB`)
    }
  }
  const rssSlope = slope(samples.step, samples.rss)
  const externalSlope = slope(samples.step, samples.external)
  const heapSlope = slope(samples.step, samples.heap)
  const peak = Math.max(...samples.rss)
  return {
    steps,
    measuredSteps: steps - warmup,
    finalLoss: loss,
    rssSlopeBytesPerStep: rssSlope,
    externalSlopeBytesPerStep: externalSlope,
    heapSlopeBytesPerStep: heapSlope,
    collectedBeforeSamples: typeof globalThis.gc === 'function',
    rssAfterWarmupMiB: samples.rss[0] / 2 ** 20,
    peakRssMiB: peak / 2 ** 20,
    finalRssMiB: samples.rss.at(-1) / 2 ** 20,
  }
}

/** Growth per step that counts as a leak: a few bytes per step is allocator noise. */
export const LEAK_BYTES_PER_STEP = 1024
/** Total growth after warm-up that counts as a leak (short runs have noisy slopes). */
export const LEAK_TOTAL_BYTES = 32 * 2 ** 20

/** Whether a soak result shows memory that keeps growing. */
export function isGrowing(r) {
  const grows = (slope) => slope > LEAK_BYTES_PER_STEP && slope * r.measuredSteps > LEAK_TOTAL_BYTES
  return grows(r.rssSlopeBytesPerStep) || grows(r.externalSlopeBytesPerStep)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--steps')
  const steps = i >= 0 ? Number(process.argv[i + 1]) : 1000
  const started = performance.now()
  const r = soak(steps, { log: console.log })
  console.log(JSON.stringify({ ...r, seconds: (performance.now() - started) / 1000 }))
  const leaking = isGrowing(r)
  console.log(
    `soak: ${steps} steps, RSS slope ${r.rssSlopeBytesPerStep.toFixed(1)} B/step, external slope ${r.externalSlopeBytesPerStep.toFixed(1)} B/step, ` +
      `heap slope ${r.heapSlopeBytesPerStep.toFixed(1)} B/step, ` +
      `RSS ${r.rssAfterWarmupMiB.toFixed(0)} -> ${r.finalRssMiB.toFixed(0)} MiB (peak ${r.peakRssMiB.toFixed(0)}): ${leaking ? 'GROWING' : 'flat'}`,
  )
  process.exit(leaking ? 1 : 0)
}
