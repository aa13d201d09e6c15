/**
 * The catalogue of bad inputs a user can produce. Every mistake visible from
 * shapes and dtypes throws when the op is called, naming the op, the shapes and
 * the dtypes; index values are checked when the kernels run; memory exhaustion
 * is an error, never an abort. After each error the library keeps working.
 */
import { createRequire } from 'node:module'
import { afterEach, describe, expect, it } from 'vitest'
import {
  AllocationError, DTypeError, EclatError, FormatError, IndexError, ShapeError, Conv2d, Embedding, Linear, SGD, Adam,
  arange, backward, concat, crossEntropy, input, parseSafetensors, split, tensor, where, zeros,
} from '../ts/index.js'

const i32 = (data: number[] | number[][], shape?: number[]) => tensor(data, shape ? { dtype: 'int32', shape } : { dtype: 'int32' })

function stillWorks(): void {
  expect(tensor([1, 2]).add(1).toArray()).toEqual([2, 3])
}

afterEach(stillWorks)

interface BadCase {
  name: string
  build: () => unknown
  error: typeof EclatError
  /** Fragments the message must contain. */
  says: string[]
}

const x23 = () => tensor([[1, 2, 3], [4, 5, 6]])

const AT_CALL: BadCase[] = [
  { name: 'broadcast mismatch', build: () => tensor([1, 2]).add(tensor([1, 2, 3])), error: ShapeError, says: ['add', '[2]', '[3]', 'float32'] },
  { name: 'broadcast mismatch in where', build: () => where(tensor([true, false]), tensor([1, 2, 3]), 0), error: ShapeError, says: ['where', '[2]', '[3]'] },
  { name: 'axis out of range', build: () => x23().sum(2), error: ShapeError, says: ['sum', 'axis 2', '[2, 3]'] },
  { name: 'negative axis out of range', build: () => x23().cumsum(-3), error: ShapeError, says: ['cumsum', 'axis -3'] },
  { name: 'repeated axes', build: () => x23().sum([1, -1]), error: ShapeError, says: ['sum', 'repeat'] },
  { name: 'reshape to a different size', build: () => x23().reshape([4, 2]), error: ShapeError, says: ['reshape', '[2, 3]', '[4, 2]', 'float32'] },
  { name: 'reshape with two -1', build: () => x23().reshape([-1, -1]), error: ShapeError, says: ['reshape', '-1'] },
  { name: 'permute with a repeated axis', build: () => x23().permute([0, 0]), error: ShapeError, says: ['permute', 'not a permutation', '[2, 3]'] },
  { name: 'permute with too few axes', build: () => x23().permute([0]), error: ShapeError, says: ['permute', '[2, 3]'] },
  { name: 'expand a non-1 axis', build: () => x23().expand([4, 3]), error: ShapeError, says: ['expand', '[2, 3]', '[4, 3]'] },
  { name: 'slice out of range', build: () => x23().slice([[0, 5]]), error: ShapeError, says: ['slice', 'out of range', '[2, 3]'] },
  { name: 'slice with step 0', build: () => x23().slice([null, [0, 3, 0]]), error: ShapeError, says: ['slice', 'step'] },
  { name: 'slice with too many ranges', build: () => x23().slice([null, null, null]), error: ShapeError, says: ['slice', '3 ranges'] },
  { name: 'negative pad', build: () => x23().pad([[0, -1]]), error: ShapeError, says: ['pad', 'non-negative'] },
  { name: 'bitwise on float', build: () => x23().bitwiseAnd(1), error: DTypeError, says: ['bitwiseAnd', 'float32'] },
  { name: 'bitwiseNot on float', build: () => x23().bitwiseNot(), error: DTypeError, says: ['bitwiseNot', 'float32'] },
  { name: 'neg of bool', build: () => tensor([true]).neg(), error: DTypeError, says: ['neg', 'bool'] },
  { name: 'float index', build: () => x23().gather(0, tensor([[0, 1, 0]])), error: DTypeError, says: ['gather', 'int32', 'float32'] },
  { name: 'index of the wrong rank', build: () => x23().gather(1, i32([0, 1])), error: ShapeError, says: ['gather', '[2]', '[2, 3]'] },
  { name: 'index larger than the tensor', build: () => x23().gather(1, i32([[0], [0], [0]])), error: ShapeError, says: ['gather', 'axis 0'] },
  { name: 'scatter src of another dtype', build: () => x23().scatterAdd(1, i32([[0]]), tensor([[1]], { dtype: 'float64' })), error: DTypeError, says: ['scatterAdd', 'float64'] },
  { name: 'where with a non-bool condition', build: () => where(tensor([1, 0]), 1, 2), error: DTypeError, says: ['where', 'bool', 'float32'] },
  { name: 'data shorter than the shape', build: () => tensor([1, 2, 3], { shape: [2, 2] }), error: ShapeError, says: ['tensor', '3 values', '[2, 2]'] },
  { name: 'typed array longer than the shape', build: () => tensor(new Float32Array(5), { shape: [2, 2] }), error: ShapeError, says: ['tensor', '5 elements', '[2, 2]'] },
  { name: 'ragged nested arrays', build: () => tensor([[1, 2], [3]]), error: ShapeError, says: ['tensor', 'ragged'] },
  { name: 'non-numeric data', build: () => tensor(['a' as unknown as number]), error: DTypeError, says: ['tensor', 'string'] },
  { name: 'negative shape', build: () => zeros([2, -1]), error: ShapeError, says: ['full', 'non-negative'] },
  { name: 'non-integer shape', build: () => zeros([1.5]), error: ShapeError, says: ['full', '1.5'] },
  { name: 'unknown dtype', build: () => zeros([1], { dtype: 'int8' as 'int32' }), error: DTypeError, says: ['int8'] },
  { name: 'max over an empty axis', build: () => zeros([0, 3]).max(0), error: ShapeError, says: ['max', 'empty', '[0, 3]'] },
  { name: 'item of several elements', build: () => x23().item(), error: ShapeError, says: ['item', '[2, 3]'] },
  { name: 'concat of mismatched shapes', build: () => concat([x23(), zeros([2, 2])], 0), error: ShapeError, says: ['concat', '[2, 3]', '[2, 2]'] },
  { name: 'assign of the wrong shape', build: () => zeros([2]).assign([1, 2, 3]), error: ShapeError, says: ['assign', '[2]'] },
  { name: 'assign of another dtype', build: () => zeros([2]).assign(zeros([2], { dtype: 'int32' })), error: ShapeError, says: ['assign', 'int32', 'float32'] },
  { name: 'BigInt typed array', build: () => tensor(new BigInt64Array(2) as unknown as Int32Array), error: DTypeError, says: ['tensor', 'BigInt'] },
  { name: 'matmul with mismatched inner sizes', build: () => x23().matmul(x23()), error: ShapeError, says: ['matmul', '3 and 2', '[2, 3]'] },
  { name: 'matmul of int32', build: () => tensor([[1]], { dtype: 'int32' }).matmul(tensor([[1]], { dtype: 'int32' })), error: DTypeError, says: ['matmul', 'int32'] },
  { name: 'arange with step 0', build: () => arange(0, 5, 0), error: ShapeError, says: ['arange', 'step 0'] },
  { name: 'unsqueeze out of range', build: () => x23().unsqueeze(4), error: ShapeError, says: ['unsqueeze', 'axis 4'] },
  { name: 'split sizes that do not sum', build: () => split(x23(), [1, 1], 1), error: ShapeError, says: ['split', 'sum to 3'] },
  { name: 'requiresGrad on int32', build: () => tensor([1], { dtype: 'int32' }).requiresGrad_(), error: DTypeError, says: ['requiresGrad_', 'int32'] },
  { name: 'gradient of an int32 output', build: () => backward(tensor([1], { dtype: 'int32' }), []), error: DTypeError, says: ['backward', 'int32'] },
  { name: 'gradient of a non-scalar without gradOutput', build: () => backward(x23(), []), error: ShapeError, says: ['backward', '[2, 3]', 'gradOutput'] },
  { name: 'backward called twice', build: () => { const w = tensor([1], { requiresGrad: true }); const y = w.mul(2).sum(); y.backward(); y.backward() }, error: EclatError, says: ['backward', 'already called'] },
  { name: 'input realized before assign', build: () => input([2], { name: 'late' }).add(1).dataSync(), error: EclatError, says: ["'late'", 'assign'] },
  { name: 'tensor too large to allocate', build: () => zeros([2 ** 31, 4]), error: AllocationError, says: ['cannot allocate', 'float32'] },
  { name: 'lazy result too large to allocate', build: () => tensor([1]).expand([2 ** 20, 2 ** 20]).add(1).dataSync(), error: AllocationError, says: ['cannot allocate'] },
  { name: 'intermediate too large for memory', build: () => tensor([1]).expand([2 ** 18, 2 ** 18]).add(1).cumsum(1).sum().dataSync(), error: AllocationError, says: ['bytes'] },
  { name: 'label out of range in crossEntropy', build: () => crossEntropy(x23(), tensor([0, 5], { dtype: 'int32' })).item(), error: IndexError, says: ['gather', 'index 5'] },
  { name: 'float labels in crossEntropy', build: () => crossEntropy(x23(), tensor([0, 1])), error: DTypeError, says: ['crossEntropy', 'int32'] },
  { name: 'malformed safetensors', build: () => parseSafetensors(new Uint8Array([255, 0, 0, 0, 0, 0, 0, 0, 1])), error: FormatError, says: ['header length', 'past the end'] },
  { name: 'safetensors with an unknown dtype', build: () => {
    const header = Buffer.from('{"w":{"dtype":"X9","shape":[],"data_offsets":[0,0]}}')
    return parseSafetensors(new Uint8Array([...new Uint8Array(new BigUint64Array([BigInt(header.length)]).buffer), ...header]))
  }, error: FormatError, says: ['unsupported dtype'] },
  { name: 'optimizer with a NaN learning rate', build: () => new SGD([zeros([1]).requiresGrad_()], { lr: NaN }), error: EclatError, says: ['SGD', 'lr'] },
  { name: 'optimizer over tensors without gradients', build: () => new Adam([zeros([1])]), error: EclatError, says: ['Adam', 'requires gradients'] },
  { name: 'Linear with a fractional size', build: () => new Linear(3.5, 2), error: EclatError, says: ['Linear', 'inFeatures'] },
  { name: 'Linear on the wrong width', build: () => new Linear(4, 2).forward(x23()), error: ShapeError, says: ['Linear(4, 2)', '[2, 3]'] },
  { name: 'Conv2d on the wrong channel count', build: () => new Conv2d(3, 2, 3).forward(zeros([1, 1, 5, 5])), error: ShapeError, says: ['Conv2d', '[1, 1, 5, 5]'] },
  { name: 'Conv2d window larger than the image', build: () => new Conv2d(1, 2, 5).forward(zeros([1, 1, 3, 3])), error: ShapeError, says: ['window', '[1, 1, 3, 3]'] },
  { name: 'Embedding with float ids', build: () => new Embedding(5, 2).forward(tensor([1])), error: EclatError, says: ['Embedding', 'int32'] },
]

describe('the catalogue: each bad input throws its error class with a clear message', () => {
  it('holds at least 40 cases', () => expect(AT_CALL.length).toBeGreaterThanOrEqual(40))
  for (const c of AT_CALL) {
    it(c.name, () => {
      let caught: unknown
      try {
        c.build()
      } catch (e) {
        caught = e
      }
      expect(caught, 'an error').toBeInstanceOf(c.error)
      expect(caught).toBeInstanceOf(EclatError)
      for (const s of c.says) expect((caught as Error).message).toContain(s)
    })
  }
})

describe('index values out of range throw at realize, naming the op and the index', () => {
  const cases: [string, () => { dataSync(): unknown }, string][] = [
    ['gather', () => x23().gather(1, i32([[0, 3]])), 'index 3'],
    ['gather negative', () => x23().gather(0, i32([[-1, 0, 0]])), 'index -1'],
    ['scatterAdd', () => zeros([4]).scatterAdd(0, i32([1, 4]), tensor([1, 1])), 'index 4'],
    ['scatterMax', () => zeros([2, 2]).scatterMax(1, i32([[7]]), tensor([[1]])), 'index 7'],
  ]
  for (const [name, build, says] of cases) {
    it(`${name} (sync and async)`, async () => {
      expect(() => build().dataSync()).toThrow(IndexError)
      expect(() => build().dataSync()).toThrow(says)
      expect(() => build().dataSync()).toThrow(name.split(' ')[0]!)
      await expect((build() as ReturnType<typeof x23>).data()).rejects.toThrow(IndexError)
    })
  }

  it('a failed realize leaves the tensor unrealized, and it fails the same way again', () => {
    const bad = x23().gather(1, i32([[0, 9]]))
    expect(() => bad.dataSync()).toThrow(IndexError)
    expect(() => bad.toArray()).toThrow(IndexError)
    expect(bad.add(1).shape).toEqual([1, 2])
  })
})

describe('NaN and Infinity', () => {
  it('propagate per IEEE through every kind of kernel, without errors', () => {
    const x = tensor([NaN, Infinity, -Infinity, 1])
    expect(x.add(1).toArray()).toEqual([NaN, Infinity, -Infinity, 2])
    expect(x.sum().item()).toBeNaN()
    expect(x.max().item()).toBeNaN()
    expect(x.slice([[1, 4]]).max().item()).toBe(Infinity)
    expect(x.cumsum(0).toArray()).toEqual([NaN, NaN, NaN, NaN])
    expect(x.exp().toArray()).toEqual([NaN, Infinity, 0, Math.fround(Math.E)])
    expect(x.cast('int32').toArray()).toEqual([0, 2147483647, -2147483648, 1])
    expect(x.reshape([2, 2]).matmul(tensor([[1], [1]])).toArray()).toEqual([[NaN], [-Infinity]])
  })
})

describe('inputs', () => {
  it('realizing a graph on an input without data throws an error naming it', () => {
    const x = input([2], { name: 'features' })
    const y = x.mul(2)
    expect(() => y.dataSync()).toThrow(EclatError)
    expect(() => y.dataSync()).toThrow("'features'")
    x.assign([1, 2])
    expect(y.toArray()).toEqual([2, 4])
  })
})

describe('malformed programs sent to the addon', () => {
  it('become errors, never crashes or out-of-bounds writes', () => {
    const addon = createRequire(import.meta.url)('../native/index.cjs') as {
      realizeSync(p: Float64Array, b: Uint8Array[], n: number): void
    }
    let seed = 7
    const r = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32)
    const out = new Uint8Array(64)
    for (let trial = 0; trial < 2000; trial++) {
      const len = 1 + Math.floor(r() * 24)
      const words = Float64Array.from({ length: len }, () => (r() < 0.9 ? Math.floor(r() * 8) : (r() - 0.5) * 1e9))
      const input = new Uint8Array(16)
      expect(() => addon.realizeSync(words, [input, out], 1), `trial ${trial}`).toThrow()
    }
    // A valid program still runs afterwards: load input 0 (4 float32) -> neg -> slot 0.
    const program = Float64Array.from([2, 0, 0, 1, 4, 0, 1, 0, 1, 0, 1, 4, 1, 0, 0, 1, 1, 0])
    const inputs = new Float32Array([1, 2, 3, 4])
    const result = new Float32Array(4)
    addon.realizeSync(program, [new Uint8Array(inputs.buffer), new Uint8Array(result.buffer)], 1)
    expect([...result]).toEqual([-1, -2, -3, -4])
  })

  it('in the arena of small realizes: malformed headers and buffer tables become errors', () => {
    const addon = createRequire(import.meta.url)('../native/index.cjs') as {
      realizeInArena(arena: Uint8Array): void
    }
    // The same neg program, laid out as the arena protocol says: 2 buffers, 1 input,
    // (offset, length) of each, the program's length and words, then the buffers.
    const program = [2, 0, 0, 1, 4, 0, 1, 0, 1, 0, 1, 4, 1, 0, 0, 1, 1, 0]
    const layout = (input: [number, number], output: [number, number]): Float64Array =>
      Float64Array.from([2, 1, ...input, ...output, program.length, ...program])
    const arena = new ArrayBuffer(1024)
    const words = new Float64Array(arena)
    const bytes = new Uint8Array(arena)
    const run = (header: Float64Array): void => {
      bytes.fill(0x5a)
      words.set(header)
      new Float32Array(arena, 256, 4).set([1, 2, 3, 4])
      addon.realizeInArena(bytes)
    }
    run(layout([256, 16], [512, 16]))
    expect([...new Float32Array(arena, 512, 4)]).toEqual([-1, -2, -3, -4])
    expect(bytes.subarray(528).every((b) => b === 0x5a)).toBe(true) // nothing written past the output
    const bad: [string, Float64Array][] = [
      ['output overlapping the input', layout([256, 16], [264, 16])],
      ['output before the input', layout([256, 16], [128, 16])],
      ['output past the end', layout([256, 16], [1016, 16])],
      ['buffer inside the header', layout([8, 16], [512, 16])],
      ['misaligned buffer', layout([256, 16], [514, 16])],
      ['huge length', layout([256, 16], [512, 2 ** 60])],
      ['negative offset', layout([-8, 16], [512, 16])],
      ['buffer count past the end', Float64Array.from([1e6, 1])],
      ['program length past the end', Float64Array.from([0, 0, 5000])],
      ['NaN count', Float64Array.from([NaN, 0])],
    ]
    for (const [what, header] of bad) expect(() => run(header), what).toThrow(/arena|slot|input|bytes/)
    let seed = 11
    const r = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32)
    for (let trial = 0; trial < 2000; trial++) {
      const header = layout([256, 16], [512, 16])
      for (let k = 0; k < 3; k++) header[Math.floor(r() * header.length)] = r() < 0.8 ? Math.floor(r() * 600) : (r() - 0.5) * 1e12
      try {
        run(header)
      } catch {
        // an error is the expected outcome of most trials; a crash would end the run
      }
      expect(bytes.subarray(1024 - 8).every((b) => b === 0x5a), `trial ${trial}`).toBe(true)
    }
    run(layout([256, 16], [512, 16]))
    expect([...new Float32Array(arena, 512, 4)]).toEqual([-1, -2, -3, -4])
    // An arena view that does not start on an 8-byte boundary still works (its header is copied).
    const shifted = new ArrayBuffer(1024 + 4)
    const view = new Uint8Array(shifted, 4, 1024)
    view.set(bytes)
    new Float32Array(shifted, 4 + 256, 4).set([5, 6, 7, 8])
    addon.realizeInArena(view)
    expect([...new Float32Array(shifted, 4 + 512, 4)]).toEqual([-5, -6, -7, -8])
    // Anything but a non-empty Uint8Array is refused before it is read.
    const call = addon.realizeInArena as (...args: unknown[]) => void
    for (const arg of [[], [new Float32Array(arena)], [arena], [1], [new Uint8Array(0)]]) {
      expect(() => call(...arg), String(arg[0])).toThrow(/malformed arena: (expected a Uint8Array|empty)/)
    }
  })
})
