/** The public API by hand-checked small cases: creation, promotion, realization, inputs. */
import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import {
  arange, bufferPoolInfo, concat, EclatError, eye, full, input, linspace, manualSeed, numThreads, ones, rand, randn,
  realize, setBufferPoolLimit, split, stack, tensor, where, zeros, type Tensor,
} from '../ts/index.js'
import { countRealizeCalls } from './helpers.js'

const close = (t: Tensor, expected: number[], tol = 1e-6) => {
  const got = [...(t.dataSync() as Float32Array)]
  expect(got.length).toBe(expected.length)
  got.forEach((v, i) => {
    if (v !== expected[i]) expect(Math.abs(v - expected[i]!)).toBeLessThanOrEqual(tol * (1 + Math.abs(expected[i]!)))
  })
}

describe('creation', () => {
  it('infers shape and dtype from data', () => {
    const t = tensor([[1, 2, 3], [4, 5, 6]])
    expect([t.shape, t.dtype, t.ndim, t.size]).toEqual([[2, 3], 'float32', 2, 6])
    expect(tensor(true).dtype).toBe('bool')
    expect(tensor(3).shape).toEqual([])
    expect(tensor(new Int32Array([1, 2])).dtype).toBe('int32')
    expect(tensor(new Float64Array(6), { shape: [3, 2] }).shape).toEqual([3, 2])
    expect(tensor([1.7, -1.7], { dtype: 'int32' }).toArray()).toEqual([1, -1])
    expect(tensor([]).shape).toEqual([0])
  })

  it('stores booleans given as bytes as 0 and 1 (any nonzero byte is true)', () => {
    const t = tensor(new Uint8Array([0, 1, 2, 255]), { dtype: 'bool' })
    expect(Array.from(t.dataSync())).toEqual([0, 1, 1, 1])
    expect(t.cast('float32').toArray()).toEqual([0, 1, 1, 1])
    const x = input([3], { dtype: 'bool' }).assign(new Uint8Array([7, 0, 1]))
    expect(x.cast('int32').toArray()).toEqual([1, 0, 1])
  })

  it('copies its data, so later changes to the source array do not leak in', () => {
    const src = new Float32Array([1, 2])
    const t = tensor(src)
    src[0] = 99
    expect(t.toArray()).toEqual([1, 2])
  })

  it('fills, counts and spaces', () => {
    expect(zeros([2]).toArray()).toEqual([0, 0])
    expect(ones([2], { dtype: 'int32' }).toArray()).toEqual([1, 1])
    expect(full([2], true).toArray()).toEqual([true, true])
    expect(arange(4).toArray()).toEqual([0, 1, 2, 3])
    expect(arange(1, 2, 0.25).toArray()).toEqual([1, 1.25, 1.5, 1.75])
    expect(arange(5, 0, -2).toArray()).toEqual([5, 3, 1])
    expect(linspace(0, 1, 5).toArray()).toEqual([0, 0.25, 0.5, 0.75, 1])
    expect(eye(2).toArray()).toEqual([[1, 0], [0, 1]])
  })

  it('draws reproducible random numbers after manualSeed', () => {
    manualSeed(42)
    const a = rand([1000]).dataSync()
    const z = randn([20000]).dataSync()
    manualSeed(42)
    expect(rand([1000]).dataSync()).toEqual(a)
    expect([...a].every((v) => v >= 0 && v < 1)).toBe(true)
    const mean = z.reduce((s, v) => s + v, 0) / z.length
    const variance = z.reduce((s, v) => s + (v - mean) ** 2, 0) / z.length
    expect(Math.abs(mean)).toBeLessThan(0.03)
    expect(Math.abs(variance - 1)).toBeLessThan(0.05)
  })
})

describe('dtype promotion (as PyTorch)', () => {
  const i = tensor([1, 2], { dtype: 'int32' })
  it.each([
    ['int32 + integer', () => i.add(2), 'int32'],
    ['int32 + fraction', () => i.add(0.5), 'float32'],
    ['int32 + float32 tensor', () => i.add(tensor([1, 1])), 'float32'],
    ['float32 + float64 tensor', () => tensor([1]).add(tensor([1], { dtype: 'float64' })), 'float64'],
    ['bool + bool', () => tensor([true]).add(tensor([true])), 'int32'],
    ['bool + 1', () => tensor([true]).add(1), 'int32'],
    ['float64 * number', () => tensor([1], { dtype: 'float64' }).mul(3), 'float64'],
    ['int32 / int32', () => i.div(i), 'float32'],
    ['sqrt of int32', () => i.sqrt(), 'float32'],
    ['sum of bool', () => tensor([true, true]).sum(), 'int32'],
    ['comparison', () => i.lt(1.5), 'bool'],
  ] as const)('%s', (_, f, dtype) => {
    expect(f().dtype).toBe(dtype)
  })
  it('computes in the promoted dtype', () => {
    expect(i.add(0.5).toArray()).toEqual([1.5, 2.5])
    expect(tensor([true, false]).add(tensor([true, true])).toArray()).toEqual([2, 1])
    expect(tensor([2147483647], { dtype: 'int32' }).add(1).toArray()).toEqual([-2147483648])
  })
})

describe('hand-checked results', () => {
  const x = tensor([[1, 2, 3], [4, 5, 6]])
  it('keeps scalar constants apart by value and dtype (-0 and 0, NaN, int32 and float32)', () => {
    const negZero = tensor([-0, -0])
    expect(Object.is(negZero.add(-0).dataSync()[0], -0)).toBe(true)
    expect(Object.is(negZero.add(0).dataSync()[0], 0)).toBe(true)
    expect(Object.is(negZero.add(-0).dataSync()[1], -0)).toBe(true)
    expect(tensor([1]).add(NaN).item()).toBeNaN()
    expect(tensor([1]).add(NaN).add(NaN).item()).toBeNaN()
    expect(tensor([1], { dtype: 'int32' }).add(2).dataSync()).toEqual(new Int32Array([3]))
    expect(tensor([1]).add(2.5).item()).toBe(3.5)
    expect(tensor([1], { dtype: 'int32' }).add(2.5).item()).toBe(3.5)
  })
  it('reductions', () => {
    expect(x.sum().item()).toBe(21)
    expect(x.sum(0).toArray()).toEqual([5, 7, 9])
    expect(x.sum(-1, true).toArray()).toEqual([[6], [15]])
    expect(x.max(1).toArray()).toEqual([3, 6])
    expect(x.min(0).toArray()).toEqual([1, 2, 3])
    expect(x.prod(1).toArray()).toEqual([6, 120])
    expect(x.mean().item()).toBe(3.5)
    expect(zeros([0]).sum().item()).toBe(0)
    expect(zeros([0]).prod().item()).toBe(1)
    expect(tensor([1, NaN, 3]).max().item()).toBeNaN()
  })
  it('views', () => {
    expect(x.transpose().toArray()).toEqual([[1, 4], [2, 5], [3, 6]])
    expect(x.slice([null, [0, 3, 2]]).toArray()).toEqual([[1, 3], [4, 6]])
    expect(x.slice([[-1, 2]]).toArray()).toEqual([[4, 5, 6]])
    expect(x.pad([[0, 1], [1, 0]], -1).toArray()).toEqual([[-1, 1, 2, 3], [-1, 4, 5, 6], [-1, -1, -1, -1]])
    expect(tensor([1, 2]).expand([2, 2]).toArray()).toEqual([[1, 2], [1, 2]])
    expect(x.reshape([3, -1]).shape).toEqual([3, 2])
    expect(x.flatten().shape).toEqual([6])
    expect(x.unsqueeze(1).shape).toEqual([2, 1, 3])
    expect(zeros([1, 2, 1]).squeeze().shape).toEqual([2])
  })
  it('scans', () => {
    expect(x.cumsum(1).toArray()).toEqual([[1, 3, 6], [4, 9, 15]])
    expect(x.cumsum(0, { reverse: true }).toArray()).toEqual([[5, 7, 9], [4, 5, 6]])
    expect(x.cumprod(1).toArray()).toEqual([[1, 2, 6], [4, 20, 120]])
    expect(tensor([1, 3, 2, 5]).cummax(0).toArray()).toEqual([1, 3, 3, 5])
  })
  it('indexing follows PyTorch', () => {
    const idx = tensor([[0, 0], [1, 0]], { dtype: 'int32' })
    expect(tensor([[1, 2], [3, 4]]).gather(1, idx).toArray()).toEqual([[1, 1], [4, 3]])
    const bins = tensor([0, 2, 0, 1], { dtype: 'int32' })
    expect(zeros([3]).scatterAdd(0, bins, tensor([1, 2, 3, 4])).toArray()).toEqual([4, 4, 2])
    expect(full([3], 2.5).scatterMax(0, bins, tensor([1, 2, 3, 4])).toArray()).toEqual([3, 4, 2.5])
  })
  it('activations and normalizers', () => {
    close(tensor([0, 0]).softmax(), [0.5, 0.5])
    close(tensor([1000, 0]).softmax(), [1, 0])
    close(tensor([-1000, 1000, 0]).sigmoid(), [0, 1, 0.5])
    close(tensor([0, 1]).tanh(), [0, Math.tanh(1)])
    close(tensor([0, 1]).logsumexp(0).reshape([1]), [Math.log(1 + Math.E)])
    close(tensor([-Infinity, -Infinity]).logsumexp(0).reshape([1]), [-Infinity])
    close(tensor([1, 2, 3, 4]).var().reshape([1]), [5 / 3])
    close(tensor([-2, 0.5]).relu(), [0, 0.5])
    close(tensor([1]).gelu(), [0.8411920071])
    close(tensor([3]).pow(-1), [1 / 3])
    expect(tensor([1, 3, 3]).argmax(0).item()).toBe(1)
    expect(tensor([[1, 9], [7, 2]]).argmin(1).toArray()).toEqual([0, 1])
    expect(tensor([-3, 0, 2]).sign().toArray()).toEqual([-1, 0, 1])
  })
  it('comparisons and where', () => {
    const a = tensor([1, 2, NaN])
    expect(a.gt(1).toArray()).toEqual([false, true, false])
    expect(a.le(2).toArray()).toEqual([true, true, false])
    expect(a.ne(a).toArray()).toEqual([false, false, true])
    expect(where(a.lt(2), a, tensor(0)).toArray()).toEqual([1, 0, 0])
    expect(tensor([5], { dtype: 'int32' }).bitwiseXor(3).toArray()).toEqual([6])
  })
  it('concat, stack and split', () => {
    expect(concat([tensor([1, 2]), tensor([3])]).toArray()).toEqual([1, 2, 3])
    expect(stack([tensor([1, 2]), tensor([3, 4])], 1).toArray()).toEqual([[1, 3], [2, 4]])
    expect(split(arange(5), [1, 4]).map((t) => t.toArray())).toEqual([[0], [1, 2, 3, 4]])
    expect(concat([tensor([true]), tensor([false])]).toArray()).toEqual([true, false])
  })
})

describe('realization', () => {
  it('crosses into the addon once per realize, whatever the number of ops', () => {
    let y = arange(1000)
    for (let k = 0; k < 200; k++) y = y.mul(1.001).add(k % 3).sin()
    expect(countRealizeCalls(() => y.realize())).toBe(1)
    expect(countRealizeCalls(() => (y.realize(), y.sum().item()))).toBe(1)
  })

  it('reads two inputs that share one buffer (detach) in every realize path', async () => {
    for (const n of [10, 5000]) {
      // 10 elements go through the arena, 5000 hand their arrays over as they are.
      const x = arange(n).realize()
      const want = Array.from({ length: n }, (_, i) => 3 * i)
      expect(Array.from(x.add(x.detach()).add(x).dataSync())).toEqual(want)
      expect(Array.from(await x.detach().add(x).add(x).data())).toEqual(want)
    }
  })

  it('gives each small output its own array, whatever the dtypes realized together', () => {
    const x = tensor([1.5, -2, 3])
    const outs = [x.mul(2), x.cast('int32'), x.lt(0), x.cast('float64').sum(), x.neg()]
    realize(outs)
    const first = outs.map((t) => t.dataSync())
    expect(first.map((d) => d.constructor.name)).toEqual(['Float32Array', 'Int32Array', 'Uint8Array', 'Float64Array', 'Float32Array'])
    expect(outs.map((t) => t.toArray())).toEqual([[3, -4, 6], [1, -2, 3], [false, true, false], 2.5, [-1.5, 2, -3]])
    const again = x.mul(2).dataSync() // a later realize must not write into earlier results
    again[0] = 99
    expect(first[0]).toEqual(new Float32Array([3, -4, 6]))
    expect(new Set(first.map((d) => d.buffer)).size).toBe(first.length)
  })

  it('reads each small realize its own inputs when programs of several dtypes and sizes take turns', () => {
    // Small realizes share one arena; a repeated program keeps its layout there
    // and only its inputs are copied in again.
    const f = (a: Tensor, b: Tensor, c: Tensor) => where(c, a.mul(2).add(b.cast('float32')), a)
    for (let k = 0; k < 30; k++) {
      const n = 1 + (k % 3)
      const a = arange(n).add(k)
      const b = tensor(Array.from({ length: n }, (_, i) => i * k), { dtype: 'int32' })
      const c = tensor(Array.from({ length: n }, (_, i) => (i + k) % 2 === 0))
      const expected = Array.from({ length: n }, (_, i) => ((i + k) % 2 === 0 ? 2 * (i + k) + i * k : i + k))
      expect(f(a, b, c).toArray(), `step ${k}`).toEqual(expected)
      expect(a.cast('float64').mul(0.5).toArray()).toEqual(Array.from({ length: n }, (_, i) => (i + k) / 2))
    }
  })

  it('runs 10,000 dependent ops without overflowing the stack', () => {
    let y = tensor([1])
    for (let k = 0; k < 10_000; k++) y = y.add(1)
    expect(y.item()).toBe(10_001)
  })

  it('data() resolves off the JavaScript thread to the same values as dataSync()', async () => {
    const x = arange(100_000).mul(0.001).sin()
    const [a, b] = await Promise.all([x.data(), x.exp().data()])
    expect(a).toEqual(x.dataSync())
    expect(b).toEqual(x.exp().dataSync())
  })

  it('keeps value semantics: graphs built before an assign see the old data', () => {
    const w = tensor([1, 2])
    const before = w.mul(10)
    w.assign([3, 4])
    expect(before.toArray()).toEqual([10, 20])
    expect(w.mul(10).toArray()).toEqual([30, 40])
    w.assign(tensor([5, 6]))
    expect(w.toArray()).toEqual([5, 6])
  })

  it('fills an input in place, so graphs built on it see the data', () => {
    const x = input([2, 2], { dtype: 'float64' })
    const y = x.sum(1)
    x.assign(new Float64Array([1, 2, 3, 4]))
    expect(y.toArray()).toEqual([3, 7])
    x.assign([[1, 1], [1, 1]])
    expect(y.toArray()).toEqual([3, 7])
    expect(x.sum(1).toArray()).toEqual([2, 2])
  })

  it('returns nested arrays, booleans and scalars', () => {
    expect(tensor(2.5).toArray()).toBe(2.5)
    expect(tensor([[true], [false]]).toArray()).toEqual([[true], [false]])
    expect(tensor([[7]]).item()).toBe(7)
    expect(tensor([true]).item()).toBe(true)
  })
})

describe('dispose and the buffer pool', () => {
  const N = 100_000 // above the pool's minimum buffer size
  const x = arange(N).mul(1e-4).realize()
  const expected = Array.from(x.sin().dataSync()) // computed into a fresh buffer

  it('recycles a disposed result into the next realize of the same dtype and size', () => {
    setBufferPoolLimit(512 * 2 ** 20)
    const before = bufferPoolInfo()
    const y = x.sin().realize()
    expect(y.sum().item()).toBeCloseTo(expected.reduce((a, b) => a + b), 0)
    y.dispose()
    expect(bufferPoolInfo().bytes).toBe(before.bytes + 4 * N)
    const z = x.sin().realize() // writes into the recycled buffer (poisoned first under test)
    expect(bufferPoolInfo().bytes).toBe(before.bytes)
    expect(Array.from(z.dataSync())).toEqual(expected)
  })

  it('throws a clear error when a disposed tensor is used; disposing twice is a no-op', () => {
    const y = x.sin().realize()
    y.dispose()
    y.dispose()
    expect(y.isDisposed).toBe(true)
    expect(() => y.add(1)).toThrow(EclatError)
    expect(() => y.dataSync()).toThrow(/Tensor\(\[100000\], float32\) was disposed/)
  })

  it('keeps tensors computed from a disposed one valid', () => {
    const y = x.sin().realize()
    const lazy = y.mul(2)
    y.dispose()
    x.cos().realize() // may take the recycled buffer
    expect(Array.from(lazy.dataSync())).toEqual(expected.map((v) => Math.fround(2 * v)))
  })

  it('never reuses data handed out by dataSync(), data() or detach()', async () => {
    const a = x.sin()
    const handed = a.dataSync()
    const b = x.sin()
    const fromAsync = await b.data()
    const c = x.sin().realize()
    const detached = c.detach()
    for (const t of [a, b, c]) t.dispose()
    const others = [x.cos().realize(), x.exp().realize(), x.sqrt().realize()]
    expect(Array.from(handed)).toEqual(expected)
    expect(Array.from(fromAsync)).toEqual(expected)
    expect(Array.from(detached.dataSync())).toEqual(expected)
    others.forEach((t) => t.dispose())
  })

  it('does not recycle inputs an async realize is still reading', async () => {
    const y = x.sin().realize()
    const pending = y.mul(3).cumsum(0).data()
    const pooled = bufferPoolInfo().bytes
    y.dispose()
    expect(bufferPoolInfo().bytes).toBe(pooled) // not taken while the realize reads it
    const other = x.cos().mul(0).realize() // would overwrite y's buffer if it were recycled
    const got = await pending
    let acc = 0
    const want = expected.map((v) => (acc += Math.fround(3 * v)))
    expect(got[N - 1]).toBeCloseTo(want[N - 1]!, 0)
    expect(got[10]).toBeCloseTo(want[10]!, 4)
    other.dispose()
  })

  it('recycles small results too (through the arena and the direct path), at most 64 per dtype and size', () => {
    setBufferPoolLimit(512 * 2 ** 20)
    for (const n of [17, 1000, 3000]) {
      // 17 float32 = 68 bytes: just above what V8 keeps on its own heap.
      const small = arange(n).realize()
      const want = Array.from(small.add(1).dataSync())
      const before = bufferPoolInfo()
      const many = Array.from({ length: 70 }, () => small.add(1).realize())
      many.forEach((t) => t.dispose())
      expect(bufferPoolInfo().buffers).toBe(before.buffers + 64)
      expect(bufferPoolInfo().bytes).toBe(before.bytes + 64 * 4 * n)
      const again = small.add(1).realize() // into a recycled buffer
      expect(bufferPoolInfo().buffers).toBe(before.buffers + 63)
      expect(Array.from(again.dataSync())).toEqual(want)
      const handed = small.add(2).dataSync()
      small.add(3).realize().dispose()
      expect(handed[1]).toBe(3) // handed-out data is never recycled
    }
  })

  it('frees the pool on request and honours a limit of 0', () => {
    setBufferPoolLimit(0)
    expect(bufferPoolInfo()).toEqual({ buffers: 0, bytes: 0, limitBytes: 0 })
    const y = x.sin().realize()
    y.dispose()
    expect(bufferPoolInfo().bytes).toBe(0)
    expect(() => setBufferPoolLimit(-1)).toThrow(RangeError)
    setBufferPoolLimit(512 * 2 ** 20)
  })
})

describe('threads', () => {
  it('uses a pool sized to the machine, overridable with ECLAT_NUM_THREADS', () => {
    expect(numThreads()).toBeGreaterThanOrEqual(1)
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', `const e = await import('./dist/index.js'); console.log(e.numThreads(), e.arange(100000).sum().item())`], {
      env: { ...process.env, ECLAT_NUM_THREADS: '1' },
      cwd: new URL('..', import.meta.url).pathname,
    }).toString()
    expect(out.trim()).toBe(`1 ${arange(100000).sum().item()}`)
  })
})
