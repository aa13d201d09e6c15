import { describe, expect, it } from 'vitest'
import { explainRealize, rand, tensor, where, zeros, type KernelInfo } from '../ts/index.js'
import { expectBackendsAgree } from './helpers.js'

/** Kernels that do work (views are stride changes). */
const work = (ks: KernelInfo[]) => ks.filter((k) => k.kind !== 'view')

describe('the scheduler fuses', () => {
  it('an elementwise chain into one kernel with no intermediate buffer', () => {
    const x = rand([1000])
    const ks = work(explainRealize([x.sin().mul(x.exp2()).add(x.sqrt())]))
    expect(ks).toHaveLength(1)
    expect(ks[0]!.kind).toBe('fused')
    expect(ks[0]!.fused).toEqual(['sin', 'exp2', 'mul', 'sqrt', 'add'])
    expect(ks[0]!.reads).toBe(1)
    expect(ks[0]!.written).toBe('an output')
  })

  it('a reduction with its elementwise producers: x.mul(x).sum() reads x once', () => {
    const x = rand([64, 100])
    for (const y of [x.mul(x).sum(), x.mul(x).sum(1), x.mul(x).sum(0)]) {
      const ks = work(explainRealize([y]))
      expect(ks).toHaveLength(1)
      expect(ks[0]).toMatchObject({ kind: 'fused', op: 'sum', fused: ['mul'], reads: 1 })
    }
  })

  it('a subtracted row maximum negated where it is read: softmax is a maximum, one kernel for exp(x - m), a sum and a scaling', () => {
    const x = rand([64, 100])
    const ks = work(explainRealize([x.softmax(1)]))
    expect(ks.filter((k) => k.fused.length === 1 && k.fused[0] === 'neg')).toHaveLength(0)
    expect(ks.find((k) => k.fused.includes('exp2'))).toMatchObject({ fused: ['neg', 'add', 'mul', 'exp2'], reads: 3 }) // x, m, log2(e)
    expect(ks).toHaveLength(5) // max, exp(x - m), sum, 1 / sum, the product
    expectBackendsAgree(x.softmax(1), 1e-6, 'softmax')
    expectBackendsAgree(x.sub(x.mean(0)), 0, 'a column mean subtracted')
  })

  it('broadcast operands and views of realized data as reads of the same kernel', () => {
    const x = rand([8, 16])
    const b = rand([16])
    const ks = work(explainRealize([x.transpose().add(b.reshape([16, 1])).relu().mul(2)]))
    expect(ks).toHaveLength(1)
  })

  it('a shared subexpression is computed once, into a buffer, when several kernels read it', () => {
    const x = rand([32, 32])
    const s = x.exp()
    const a = s.sum(1)
    const b = s.mul(x).max(0)
    const ks = work(explainRealize([a, b]))
    const exps = ks.filter((k) => k.fused.includes('exp2'))
    expect(exps).toHaveLength(1)
    expect(exps[0]!.written).toBe('read by 2 kernels')
    expect(ks).toHaveLength(3)
  })

  it('a cheap value over data in memory is recomputed in each kernel that reads it, never written (a ReLU mask)', () => {
    const x = rand([64, 64]).sub(0.5).realize()
    const dy = rand([64, 64])
    const mask = x.gt(0)
    // The forward and the backward of relu read the same mask.
    const ks = work(explainRealize([where(mask, x, 0), where(mask, dy, 0)]))
    expect(ks).toHaveLength(2)
    for (const k of ks) expect(k).toMatchObject({ kind: 'fused', fused: ['lt', 'where'], written: 'an output' })
    expectBackendsAgree(where(mask, x, 0).add(where(mask, dy, 0)), 0, 'relu forward + backward')
    // Over a computed value (which would be recomputed too), it is written once.
    const shifted = x.mul(x).sin().add(1)
    const ks2 = work(explainRealize([shifted.mul(x), shifted.mul(dy)]))
    expect(ks2).toHaveLength(3)
    expect(ks2.find((k) => k.fused.includes('sin'))).toMatchObject({ fused: ['mul', 'sin', 'add'], written: 'read by 2 kernels' })
  })

  it('inside one kernel a value read twice is computed once', () => {
    const x = rand([100])
    const e = x.exp()
    const ks = work(explainRealize([e.mul(e).add(e)]))
    expect(ks).toHaveLength(1)
    expect(ks[0]!.fused.filter((op) => op === 'exp2')).toHaveLength(1)
  })

  it('stops at kernel boundaries (scan, gather, matmul) and materializes their computed inputs', () => {
    const x = rand([16, 16])
    const ks = work(explainRealize([x.exp().cumsum(1).sqrt()]))
    expect(ks.map((k) => k.kind)).toEqual(['fused', 'op', 'fused'])
    expect(ks[1]!.op).toBe('cumsum')
    expect(ks[2]!.fused).toEqual(['sqrt'])
    expect(ks[0]!.written).toBe('read by cumsum')
  })

  it('the loss with the gradients in backward(): reading the loss afterwards runs nothing', () => {
    const w = rand([8, 4]).requiresGrad_(true)
    const loss = rand([16, 8]).matmul(w).relu().sum()
    // Before backward() the loss alone would run the forward pass.
    expect(work(explainRealize([loss])).length).toBeGreaterThan(0)
    loss.backward()
    expect(work(explainRealize([loss]))).toEqual([])
    expect(work(explainRealize([w.grad!]))).toEqual([])
  })
})

describe('fused kernels compute what the reference interpreter computes', () => {
  it('chains, broadcasts, reductions over every axis set, above the threading threshold', () => {
    for (const shape of [[], [0], [5], [3, 0], [7, 9], [300, 200], [4, 5, 6]] as number[][]) {
      const x = rand(shape)
      expectBackendsAgree(x.sin().mul(x.exp2()).add(x.sqrt()), 1e-6, `x.sin().mul(x.exp2()).add(x.sqrt()) ${JSON.stringify(shape)}`)
      expectBackendsAgree(x.mul(x).add(1).log().sum(), 1e-6, `x.mul(x).add(1).log().sum() ${JSON.stringify(shape)}`)
      for (let axis = 0; axis < shape.length; axis++) {
        if (shape[axis] === 0) continue
        expectBackendsAgree(x.sub(x.max(axis, true)).exp().sum(axis), 1e-6, `x.sub(x.max(axis, true)).exp().sum(axis) ${JSON.stringify(shape)}`)
        expectBackendsAgree(x.abs().neg().max(axis), 1e-6, `x.abs().neg().max(axis) ${JSON.stringify(shape)}`)
      }
    }
  })

  it('a 1M-element fused reduction along a single long row', () => {
    const x = rand([1 << 20])
    expectBackendsAgree(x.mul(x).sum(), 1e-5, `x.mul(x).sum()`)
  })

  it('mixed dtypes inside one kernel', () => {
    const i = tensor([1, 2, 3, 4], { dtype: 'int32' })
    const f = rand([4])
    expectBackendsAgree(where(i.cast('float32').mul(f).gt(0.5), f, zeros([4])), 1e-6, 'cast, mul, gt, where')
  })
})

describe('the program cache', () => {
  it('tells apart programs that differ only in a fractional, negative-zero or huge argument', () => {
    const x = tensor([1, 2])
    // The same structure realized in turns (each realize's program is the one
    // cached for its structure, never the previous one's).
    for (let round = 0; round < 2; round++) {
      for (const value of [0.5, 0.25, 1e300, -1e300, 2 ** 31, -(2 ** 31), 2 ** 31 - 1, 0, -0, 3]) {
        const out = x.pad([[1, 1]], value).dataSync()
        const f = Math.fround(value)
        expect([...out], String(value)).toEqual([f, 1, 2, f])
        expect(Object.is(out[0], f) && Object.is(out[3], f), `sign of ${value}`).toBe(true)
      }
    }
  })
})

describe('ECLAT_DEBUG=schedule', () => {
  it('prints each realize’s kernels, and when a later realize reuses the cached program', async () => {
    const { spawnSync } = await import('node:child_process')
    const index = new URL('../dist/index.js', import.meta.url).href
    const script = `
      const { rand } = await import(${JSON.stringify(index)})
      const x = rand([100])
      for (let i = 0; i < 2; i++) x.sin().mul(x.exp2()).add(x.sqrt()).dataSync()
    `
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, ECLAT_DEBUG: 'schedule' },
    })
    expect(run.status, run.stderr.toString()).toBe(0)
    const out = run.stderr.toString()
    const lines = out.trim().split('\n')
    expect(lines[0]).toContain('1 kernel(s)')
    expect(lines[1]).toContain('fused[sin,exp2,mul,sqrt,add]')
    expect(lines[1]).toContain('4 intermediate(s) kept in registers')
    expect(lines[2]).toContain('cached program')
  })
})

describe('ECLAT_SIMD', () => {
  it('forces each supported level, and every level computes the same bits', async () => {
    const { spawnSync } = await import('node:child_process')
    const { supportedSimdLevels } = await import('../ts/index.js')
    const index = new URL('../dist/index.js', import.meta.url).href
    const script = `
      const { rand, manualSeed, simdLevel } = await import(${JSON.stringify(index)})
      manualSeed(7)
      const x = rand([100003]).mul(20).sub(10)
      const y = x.sin().mul(x.exp2()).add(x.abs().sqrt()).sub(x.abs().add(1).log())
      const s = x.mul(x).sum(0)
      console.log(JSON.stringify({ level: simdLevel(), y: Array.from(y.dataSync()).slice(0, 2000), s: s.item() }))
    `
    const results = supportedSimdLevels().map((level) => {
      const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ECLAT_SIMD: level } })
      expect(run.status, run.stderr.toString()).toBe(0)
      return JSON.parse(run.stdout.toString()) as { level: string; y: number[]; s: number }
    })
    expect(results.map((r) => r.level)).toEqual(supportedSimdLevels())
    for (const r of results.slice(1)) {
      expect(r.y).toEqual(results[0]!.y)
      expect(r.s).toBe(results[0]!.s)
    }
  })
})

describe('matmul epilogues', () => {
  it('a bias add and activation after a matmul run on each block of the product', () => {
    const x = rand([128, 64])
    const w = rand([64, 32])
    const b = rand([32])
    const ks = work(explainRealize([x.matmul(w).add(b).relu()]))
    expect(ks).toHaveLength(1)
    expect(ks[0]!.fused[0]).toBe('matmul')
    expect(ks[0]!.description).toContain('matmul+fused')
  })

  it('compute what matmul then the elementwise ops compute, batched and above one block', () => {
    for (const [a, b] of [[[3, 4], [4, 5]], [[300, 70], [70, 600]], [[2, 5, 3], [2, 3, 4]], [[8, 0], [0, 8]]] as const) {
      const x = rand([...a])
      const w = rand([...b])
      const bias = rand([b[b.length - 1]!])
      expectBackendsAgree(x.matmul(w).add(bias).tanh().mul(2), 1e-5, `epilogue ${JSON.stringify(a)} @ ${JSON.stringify(b)}`)
    }
  })

  it('a bias add read by several kernels stays its matmul\'s epilogue rather than being recomputed', () => {
    const x = rand([16, 8])
    const w = rand([8, 4])
    const dy = rand([16, 4])
    const h = x.matmul(w).add(rand([4]))
    const mask = h.gt(0)
    // A Linear + ReLU in training: its forward and its backward read the mask.
    const ks = work(explainRealize([where(mask, h, 0), where(mask, dy, 0)]))
    expect(ks[0]).toMatchObject({ kind: 'fused', fused: ['matmul', 'add'] })
    expect(ks.filter((k) => k.fused.includes('add'))).toHaveLength(1)
  })

  it('a matmul read by two kernels is written once and not fused', () => {
    const x = rand([16, 8])
    const w = rand([8, 4])
    const y = x.matmul(w)
    const ks = work(explainRealize([y.relu(), y.sum(0)]))
    expect(ks.map((k) => k.op)).toContain('matmul')
  })
})
