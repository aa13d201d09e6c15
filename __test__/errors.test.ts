/**
 * Bad input: every mistake visible from shapes and dtypes throws when the op is
 * called, naming the op, the shapes and the dtypes; index values are checked
 * when the kernels run. After each error the library keeps working.
 */
import { createRequire } from 'node:module'
import { afterEach, describe, expect, it } from 'vitest'
import {
  DTypeError, EclatError, IndexError, ShapeError, concat, input, tensor, where, zeros,
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
]

describe('mistakes visible from shapes and dtypes throw when the op is called', () => {
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
})
