/** Concurrency: many async realizes at once, a responsive event loop, and worker_threads. */
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { arange, rand, manualSeed, tensor } from '../ts/index.js'
import { setPoison } from '../ts/memory.js'

describe('concurrent realizes', () => {
  it('many concurrent data() calls, on independent and on shared graphs, match sequential results', async () => {
    manualSeed(9)
    const base = rand([50_000]).realize()
    const shared = base.mul(3).sin() // shared by every graph below
    const graphs = Array.from({ length: 48 }, (_, i) => (i % 2 === 0 ? shared.add(i).exp2().sum() : rand([1000 + i]).mul(i).cumsum(0)))
    const expected = graphs.map((g) => Array.from(g.dataSync()))
    // Fresh graphs of the same computations, realized all at once.
    manualSeed(9)
    const base2 = rand([50_000]).realize()
    const shared2 = base2.mul(3).sin()
    const again = Array.from({ length: 48 }, (_, i) => (i % 2 === 0 ? shared2.add(i).exp2().sum() : rand([1000 + i]).mul(i).cumsum(0)))
    const results = await Promise.all(again.map((g) => g.data()))
    results.forEach((r, i) => expect(Array.from(r), `graph ${i}`).toEqual(expected[i]))
  })

  it('keeps the event loop responsive while a 16M-element program runs', async () => {
    setPoison(false) // poisoning the 64 MB output would itself stall the JavaScript thread
    const x = arange(16 * 1024 * 1024).mul(1e-7).realize()
    const y = x.sin().mul(x.exp2()).add(x.sqrt()).cumsum(0)
    const program = y.mul(1e-6).sin().cumsum(0)
    let last = performance.now()
    let longest = 0
    const timer = setInterval(() => {
      const now = performance.now()
      longest = Math.max(longest, now - last)
      last = now
    }, 1)
    const started = performance.now()
    await program.data()
    const took = performance.now() - started
    clearInterval(timer)
    // The program takes far longer than any stall it causes on the JS thread
    // (a realize blocking that thread would stall it for the whole program).
    // Generous: this VM's host sometimes takes a vCPU away for tens of ms.
    expect(took).toBeGreaterThan(150)
    expect(longest).toBeLessThan(Math.max(100, took / 2))
    console.log(`event loop: longest stall ${longest.toFixed(1)} ms while a ${took.toFixed(0)} ms program ran`)
  })
})

describe('worker_threads', () => {
  it('loads and computes correctly in several workers and the main thread at once', async () => {
    const entry = fileURLToPath(new URL('../dist/index.js', import.meta.url))
    const source = `
      const { parentPort, workerData } = require('node:worker_threads')
      import(${JSON.stringify(entry)}).then(async (E) => {
        const k = workerData
        const a = E.arange(40000).reshape([200, 200]).mul(1e-4).add(k)
        const b = a.matmul(a.transpose()).sum().item()
        const x = E.tensor([1, 2, 3], { dtype: 'float64' })
        const g = E.backward(x.mul(x).mul(k).sum(), [x]).get(x).toArray()
        const s = Array.from(await E.arange(100000).mul(k).cumsum(0).data()).at(-1)
        parentPort.postMessage({ b, g, s })
      }).catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }))
    `
    const expected = (k: number) => {
      const a = arange(40000).reshape([200, 200]).mul(1e-4).add(k)
      return {
        b: a.matmul(a.transpose()).sum().item(),
        g: [2 * k, 4 * k, 6 * k],
        s: Array.from(arange(100000).mul(k).cumsum(0).dataSync()).at(-1),
      }
    }
    const run = (k: number) =>
      new Promise<{ b: number; g: number[]; s: number; error?: string }>((resolve, reject) => {
        const w = new Worker(source, { eval: true, workerData: k })
        w.once('message', (m) => {
          resolve(m)
          void w.terminate()
        })
        w.once('error', reject)
      })
    const pending = [1, 2, 3, 4].map(run)
    const main = tensor([5, 6]).mul(2).toArray() // the main thread computes meanwhile
    const results = await Promise.all(pending)
    expect(main).toEqual([10, 12])
    results.forEach((r, i) => {
      expect(r.error).toBeUndefined()
      const e = expected(i + 1)
      expect(r.b).toBeCloseTo(e.b as number, 0)
      expect(r.g).toEqual(e.g)
      expect(r.s).toBe(e.s)
    })
  }, 60_000)
})
