/**
 * Gradients: every primitive and composite by gradcheck (float64 central
 * differences), over scalars, broadcasting, non-contiguous views and size 0;
 * float32 gradients against float64 ones; the spec's examples; higher orders.
 */
import { describe, expect, it } from 'vitest'
import {
  backward, checkpoint, concat, DTypeError, EclatError, grad, gradcheck, type GradcheckOptions, noGrad, ones, randn, ShapeError, split, stack,
  tensor, valueAndGrad, vjp, where, zeroGrad, zeros, type Tensor,
} from '../ts/index.js'
import { makeInput, type Domain } from './helpers.js'

const i32 = (data: number[][]) => tensor(data, { dtype: 'int32' })

/** Views applied inside f, so gradients flow back through strides. */
const VIEWS: Record<string, (x: Tensor) => Tensor> = {
  contiguous: (x) => x,
  permuted: (x) => x.transpose(),
  // x interleaved with zeros along its last axis, then taken back with step 2.
  stepped: (x) => {
    if (x.ndim === 0) return x
    const last = x.ndim - 1
    const wide = x.unsqueeze(-1).pad([...x.shape.map((): [number, number] => [0, 0]), [0, 1]]).flatten(last)
    return wide.slice(x.shape.map((n, d) => (d === last ? [0, 2 * n, 2] : null)))
  },
  padded: (x) => x.pad(x.shape.map(() => [1, 1] as [number, number])).slice(x.shape.map((n) => [1, n + 1] as const)),
  expanded: (x) => x.unsqueeze(0).expand([2, ...x.shape]),
}

interface GradCase {
  name: string
  domain: Domain
  f: (x: Tensor) => Tensor
  /** Shapes to test (default: scalar, size 0, vector, matrix). */
  shapes?: number[][]
  opts?: GradcheckOptions
}

const STD = [[], [0], [5], [3, 4]]
const MAT = [[3, 4], [2, 0], [1, 5]]

const UNARY: GradCase[] = [
  { name: 'neg', domain: 'any', f: (x) => x.neg() },
  { name: 'recip', domain: 'positive', f: (x) => x.recip() },
  { name: 'sqrt', domain: 'positive', f: (x) => x.sqrt() },
  { name: 'exp2', domain: 'any', f: (x) => x.exp2() },
  { name: 'log2', domain: 'positive', f: (x) => x.log2() },
  { name: 'sin', domain: 'any', f: (x) => x.sin() },
  // float32 rounding needs a coarse finite-difference step.
  { name: 'cast to float32 and back', domain: 'any', f: (x) => x.cast('float32').cast('float64').mul(x), opts: { eps: 1e-3, atol: 1e-4, rtol: 1e-3 } },
  { name: 'add scalar', domain: 'any', f: (x) => x.add(3) },
  { name: 'mul scalar', domain: 'any', f: (x) => x.mul(-2.5) },
  { name: 'maximum', domain: 'any', f: (x) => x.maximum(0.3) },
  { name: 'minimum', domain: 'any', f: (x) => x.minimum(x.mul(0.5)) },
  { name: 'where', domain: 'any', f: (x) => where(x.gt(0), x.mul(x), x.mul(3)) },
  { name: 'sum all', domain: 'any', f: (x) => x.sum() },
  { name: 'sum axis 0', domain: 'any', f: (x) => x.sum(0), shapes: MAT },
  { name: 'sum axis -1 keepdim', domain: 'any', f: (x) => x.sum(-1, true), shapes: MAT },
  { name: 'max axis 1', domain: 'any', f: (x) => x.max(1), shapes: [[3, 4], [1, 5]] },
  { name: 'min all', domain: 'any', f: (x) => x.min(), shapes: [[], [5], [3, 4]] },
  { name: 'prod axis 1', domain: 'any', f: (x) => x.prod(1), shapes: MAT },
  { name: 'prod all', domain: 'small', f: (x) => x.prod() },
  { name: 'prod with zeros', domain: 'any', f: (x) => x.mul(tensor([[1, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1]], { dtype: 'float64' })).prod(1), shapes: [[3, 4]] },
  { name: 'reshape', domain: 'any', f: (x) => x.reshape([-1]).mul(tensor(1.5, { dtype: 'float64' })) },
  { name: 'permute', domain: 'any', f: (x) => x.permute([1, 0]).mul(tensor([1, 2, 3], { dtype: 'float64' }).reshape([1, 3])), shapes: [[3, 3]] },
  { name: 'expand', domain: 'any', f: (x) => x.reshape([1, ...x.shape]).expand([3, ...x.shape]).mul(x) },
  { name: 'slice with steps', domain: 'any', f: (x) => x.slice([[1, 5, 2], [-3, 4, 2]]).mul(2), shapes: [[5, 4], [6, 7]] },
  { name: 'pad', domain: 'any', f: (x) => x.pad([[2, 1]], 3).mul(x.pad([[1, 2]])), shapes: [[], [0], [4], [3, 2]].filter((s) => s.length > 0) },
  { name: 'cumsum', domain: 'any', f: (x) => x.cumsum(-1).mul(x), shapes: MAT },
  { name: 'cumsum reverse', domain: 'any', f: (x) => x.cumsum(0, { reverse: true }).mul(x), shapes: MAT },
  { name: 'cumprod', domain: 'small', f: (x) => x.cumprod(1), shapes: MAT },
  { name: 'cumprod reverse', domain: 'small', f: (x) => x.cumprod(0, { reverse: true }), shapes: MAT },
  { name: 'cumprod with zeros', domain: 'any', f: (x) => x.mul(tensor([[1, 0, 1, 0], [1, 1, 1, 1], [0, 1, 1, 1]], { dtype: 'float64' })).cumprod(1), shapes: [[3, 4]] },
  { name: 'cummax', domain: 'any', f: (x) => x.cummax(1), shapes: MAT },
  { name: 'cummax reverse', domain: 'any', f: (x) => x.cummax(0, { reverse: true }), shapes: MAT },
  { name: 'gather', domain: 'any', f: (x) => x.gather(1, i32([[0, 0, 3], [1, 2, 2], [3, 3, 1]])), shapes: [[3, 4], [4, 5]] },
  { name: 'scatterAdd (target and src)', domain: 'any', f: (x) => x.scatterAdd(1, i32([[0, 0], [1, 2], [3, 3]]), x.mul(x)), shapes: [[3, 4]] },
  { name: 'matmul', domain: 'any', f: (x) => x.matmul(x.transpose()).matmul(x), shapes: [[3, 4], [4, 4], [1, 5], [2, 0]] },
  { name: 'matmul batched with broadcast', domain: 'any', f: (x) => x.reshape([2, 1, 3, 2]).matmul(x.reshape([3, 2, 2]).mul(0.5)), shapes: [[12]] },
  { name: 'matmul vector', domain: 'any', f: (x) => x.matmul(x.mul(x)), shapes: [[5], [0]] },
  { name: 'scatterMax (target and src)', domain: 'any', f: (x) => x.mul(0.5).scatterMax(1, i32([[0, 0], [1, 2], [3, 3]]), x.add(0.1)), shapes: [[3, 4]] },
  // composites
  { name: 'sub', domain: 'any', f: (x) => x.sub(x.mul(x)) },
  { name: 'div', domain: 'positive', f: (x) => x.div(x.add(1)) },
  { name: 'exp', domain: 'small', f: (x) => x.exp() },
  { name: 'log', domain: 'positive', f: (x) => x.log() },
  { name: 'cos', domain: 'any', f: (x) => x.cos() },
  { name: 'pow 3', domain: 'any', f: (x) => x.pow(3) },
  { name: 'pow 1.5', domain: 'positive', f: (x) => x.pow(1.5) },
  { name: 'pow tensor', domain: 'positive', f: (x) => x.pow(x) },
  { name: 'square', domain: 'any', f: (x) => x.square() },
  { name: 'abs', domain: 'any', f: (x) => x.abs() },
  { name: 'relu', domain: 'any', f: (x) => x.relu() },
  { name: 'sigmoid', domain: 'any', f: (x) => x.sigmoid() },
  { name: 'tanh', domain: 'any', f: (x) => x.tanh() },
  { name: 'softplus', domain: 'any', f: (x) => x.softplus() },
  { name: 'gelu', domain: 'any', f: (x) => x.gelu() },
  { name: 'clamp', domain: 'any', f: (x) => x.clamp(-1, 1) },
  { name: 'mean', domain: 'any', f: (x) => x.mean(-1), shapes: [[3, 4], [1, 5]] },
  { name: 'var', domain: 'any', f: (x) => x.var(0), shapes: [[3, 4], [2, 5]] },
  { name: 'std', domain: 'any', f: (x) => x.std(), shapes: [[5], [3, 4]] },
  { name: 'logsumexp', domain: 'any', f: (x) => x.logsumexp(1), shapes: [[3, 4], [1, 5]] },
  { name: 'softmax', domain: 'any', f: (x) => x.softmax(-1), shapes: [[3, 4], [1, 5]] },
  { name: 'logSoftmax', domain: 'any', f: (x) => x.logSoftmax(0), shapes: [[3, 4], [1, 5]] },
  { name: 'transpose', domain: 'any', f: (x) => x.transpose().mul(x.transpose()), shapes: MAT },
  { name: 'flatten, squeeze, unsqueeze', domain: 'any', f: (x) => x.unsqueeze(0).flatten().squeeze().mul(x.reshape([-1])) },
  { name: 'concat', domain: 'any', f: (x) => concat([x, x.mul(x)], 0), shapes: [[5], [3, 4]] },
  { name: 'stack', domain: 'any', f: (x) => stack([x, x.sin()], 0) },
  { name: 'split', domain: 'any', f: (x) => split(x, [1, 2], 0)[1]!.mul(3), shapes: [[3, 4], [3]] },
]

describe('gradcheck for every primitive and composite (float64)', () => {
  for (const c of UNARY) {
    it(c.name, () => {
      const shapes = c.shapes ?? STD
      shapes.forEach((shape, si) => {
        for (const [viewName, view] of Object.entries(VIEWS)) {
          if (viewName === 'permuted' && shape.length < 2) continue
          // Views that change the shape only wrap ops that accept any shape.
          if (viewName === 'permuted' && shape[0] !== shape[1] && c.shapes) continue
          if (viewName === 'expanded' && c.shapes) continue
          const x = makeInput(shape, 'float64', c.domain, 'contiguous', 40 + si)
          const r = gradcheck((t) => c.f(view(t)), [x], c.opts)
          expect(r.ok, `${c.name} [${shape}] ${viewName}: ${JSON.stringify(r)}`).toBe(true)
        }
      })
    })
  }
})

describe('gradients summed back over broadcast axes', () => {
  const pairs: [number[], number[]][] = [[[3, 1], [1, 4]], [[2, 3, 4], [4]], [[], [2, 3]], [[0, 3], [1, 3]], [[5], [5]]]
  const ops: Record<string, (a: Tensor, b: Tensor) => Tensor> = {
    add: (a, b) => a.add(b),
    mul: (a, b) => a.mul(b),
    sub: (a, b) => a.sub(b),
    div: (a, b) => a.div(b.abs().add(1)),
    maximum: (a, b) => a.maximum(b),
    minimum: (a, b) => a.minimum(b),
    where: (a, b) => where(a.lt(b), a.mul(b), b),
    pow: (a, b) => a.abs().add(1).pow(b),
  }
  for (const [name, op] of Object.entries(ops)) {
    it(name, () => {
      pairs.forEach(([sa, sb], k) => {
        const a = makeInput(sa, 'float64', 'any', 'contiguous', 70 + k)
        const b = makeInput(sb, 'float64', 'any', 'contiguous', 80 + k)
        const r = gradcheck(op, [a, b])
        expect(r.ok, `${name} [${sa}] [${sb}]: ${JSON.stringify(r)}`).toBe(true)
        const g = backward(op(a, b).sum(), [a, b])
        expect(g.get(a)!.shape).toEqual(sa)
        expect(g.get(b)!.shape).toEqual(sb)
      })
    })
  }
})

describe('float32 gradients agree with float64 ones at float32 tolerance', () => {
  const fs: Record<string, (x: Tensor) => Tensor> = {
    'tanh(x)·sin(x)': (x) => x.tanh().mul(x.sin()).sum(),
    softmax: (x) => x.softmax(-1).mul(x).sum(),
    'prod / cumprod': (x) => x.mul(0.3).cumprod(1).sum().add(x.mul(0.5).prod(0).sum()),
    logsumexp: (x) => x.logsumexp(1).sum(),
  }
  for (const [name, f] of Object.entries(fs)) {
    it(name, () => {
      const x64 = makeInput([64, 50], 'float64', 'small', 'contiguous', 3)
      const x32 = x64.cast('float32').realize()
      const g64 = backward(f(x64), [x64]).get(x64)!.dataSync()
      const g32 = backward(f(x32), [x32]).get(x32)!.dataSync()
      expect(g32).toBeInstanceOf(Float32Array)
      g64.forEach((v, i) => expect(Math.abs(g32[i]! - v)).toBeLessThan(1e-5 * (1 + Math.abs(v))))
    })
  }
})

describe("the spec's examples", () => {
  it('(x * x).sum() with x of shape [32, 64] gives 2x', () => {
    const x = randn([32, 64]).requiresGrad_(true)
    const y = x.mul(x).sum()
    const grads = backward(y, [x])
    const dx = grads.get(x)!
    expect(dx.shape).toEqual([32, 64])
    expect(dx.dataSync()).toEqual(x.mul(2).dataSync())
  })
  it('y = x + x gives 2·dy; y = x * x gives 2·dy·x', () => {
    const x = tensor([1, -2, 3])
    const dy = tensor([0.5, 1, 2])
    expect(backward(x.add(x), [x], { gradOutput: dy }).get(x)!.toArray()).toEqual([1, 2, 4])
    expect(backward(x.mul(x), [x], { gradOutput: dy }).get(x)!.toArray()).toEqual([1, -4, 12])
  })
})

describe('the driver', () => {
  it('gives zeros for an input the output does not depend on', () => {
    const [x, z] = [tensor([1, 2]), tensor([[3]])]
    const g = backward(x.sum(), [x, z])
    expect(g.get(z)!.toArray()).toEqual([[0]])
  })
  it('stops at detached tensors and inside noGrad', () => {
    const x = tensor([2, 3])
    expect(backward(x.mul(x.detach()).sum(), [x]).get(x)!.toArray()).toEqual([2, 3])
    const frozen = noGrad(() => x.mul(x))
    expect(frozen.requiresGrad).toBe(false)
    expect(backward(frozen.add(x).sum(), [x]).get(x)!.toArray()).toEqual([1, 1])
  })
  it('ignores comparisons and bitwise ops (zero gradient)', () => {
    const x = tensor([1, 5])
    expect(backward(x.gt(2).cast('float32').mul(x).sum(), [x]).get(x)!.toArray()).toEqual([0, 1])
  })
  it('accumulates into .grad of leaves with y.backward(), realizing them', () => {
    const w = tensor([1, 2, 3], { requiresGrad: true })
    const b = zeros([1]).requiresGrad_()
    const loss = () => w.mul(w).sum().add(b.mul(4).sum())
    expect(w.grad).toBeNull()
    loss().backward()
    expect(w.grad!.node.data).not.toBeNull()
    expect(w.grad!.toArray()).toEqual([2, 4, 6])
    loss().backward()
    expect(w.grad!.toArray()).toEqual([4, 8, 12])
    expect(b.grad!.toArray()).toEqual([8])
    zeroGrad([w, b])
    expect(w.grad).toBeNull()
    w.assign([0, 0, 1])
    loss().backward()
    expect(w.grad!.toArray()).toEqual([0, 0, 2])
  })
  it('propagates requiresGrad like PyTorch', () => {
    const w = tensor([1], { requiresGrad: true })
    expect(w.mul(2).requiresGrad).toBe(true)
    expect(tensor([1]).mul(2).requiresGrad).toBe(false)
    expect(w.detach().requiresGrad).toBe(false)
  })
  it('differentiates deep graphs without overflowing the stack', () => {
    const x = tensor([0.5])
    let y = x
    for (let k = 0; k < 5000; k++) y = y.mul(1.0001)
    expect(backward(y.sum(), [x]).get(x)!.item()).toBeCloseTo(1.0001 ** 5000, 3)
  })
})

describe('functional forms', () => {
  const f = (x: Tensor, y: Tensor) => x.mul(y).sin().sum()
  it('grad with argnums, valueAndGrad, vjp', () => {
    const [x, y] = [tensor([0.5, 1]), tensor([2, -1])]
    const [dx, dy] = grad(f, { argnums: [0, 1] })(x, y)
    expect(dx!.toArray()).toEqual(x.mul(y).cos().mul(y).toArray())
    expect(dy!.toArray()).toEqual(x.mul(y).cos().mul(x).toArray())
    expect(grad(f, { argnums: 1 })(x, y).toArray()).toEqual(dy!.toArray())
    const [value, g] = valueAndGrad(f)(x, y)
    expect(value.item()).toBeCloseTo(Math.sin(1) + Math.sin(-1), 6)
    expect(g.toArray()).toEqual(dx!.toArray())
    const [out, pullback] = vjp((t) => t.mul(3), x)
    expect(out.toArray()).toEqual([1.5, 3])
    expect(pullback(tensor([1, 2]))[0]!.toArray()).toEqual([3, 6])
  })
})

describe('higher-order derivatives', () => {
  const at = [0.3, 0.7, 1.9]
  const second = (f: (x: Tensor) => Tensor, x: Tensor) => grad((t: Tensor) => grad((u: Tensor) => f(u).sum())(t).sum())(x)
  const cases: [string, (x: Tensor) => Tensor, (v: number) => number][] = [
    ['sin', (x) => x.sin(), (v) => -Math.sin(v)],
    ['exp2', (x) => x.exp2(), (v) => Math.LN2 ** 2 * 2 ** v],
    ['log2', (x) => x.log2(), (v) => -1 / (v * v * Math.LN2)],
    ['recip', (x) => x.recip(), (v) => 2 / v ** 3],
    ['sqrt', (x) => x.sqrt(), (v) => -0.25 * v ** -1.5],
    ['x³', (x) => x.mul(x).mul(x), (v) => 6 * v],
  ]
  for (const [name, f, d2] of cases) {
    it(`second derivative of ${name} matches its closed form`, () => {
      const x = tensor(at, { dtype: 'float64' })
      const got = second(f, x).dataSync()
      at.forEach((v, i) => expect(got[i]).toBeCloseTo(d2(v), 10))
    })
  }
  it('third derivatives: d³/dx³ sin = -cos, d³/dx³ x⁴ = 24x', () => {
    const x = tensor(at, { dtype: 'float64' })
    const d = (f: (t: Tensor) => Tensor) => (t: Tensor) => grad((u: Tensor) => f(u).sum())(t)
    const third = d(d(d((t) => t.sin())))(x).dataSync()
    at.forEach((v, i) => expect(third[i]).toBeCloseTo(-Math.cos(v), 10))
    const quartic = d(d(d((t) => t.pow(4))))(x).dataSync()
    at.forEach((v, i) => expect(quartic[i]).toBeCloseTo(24 * v, 8))
  })
  it('Hessian-vector products through softmax and logsumexp match differences of the gradient', () => {
    const x = makeInput([3, 5], 'float64', 'any', 'contiguous', 11)
    const v = makeInput([3, 5], 'float64', 'any', 'contiguous', 12)
    const w = makeInput([3, 5], 'float64', 'any', 'contiguous', 13)
    const f = (t: Tensor) => t.softmax(-1).mul(w).sum().add(t.logsumexp(0).sum())
    const g = (t: Tensor) => grad(f)(t)
    const hvp = grad((t: Tensor) => g(t).mul(v).sum())(x).dataSync()
    const eps = 1e-5
    const plus = g(x.add(v.mul(eps))).dataSync()
    const minus = g(x.sub(v.mul(eps))).dataSync()
    hvp.forEach((h, i) => expect(Math.abs(h - (plus[i]! - minus[i]!) / (2 * eps))).toBeLessThan(1e-7))
  })
  it('second-order gradcheck of gather/scatter, cumprod and cummax rules', () => {
    const idx = i32([[0, 1, 1], [2, 0, 2]])
    const fs: ((t: Tensor) => Tensor)[] = [
      (t) => t.mul(t).gather(1, idx),
      (t) => t.scatterAdd(1, idx, t.mul(t)),
      (t) => t.sin().cumprod(1),
      (t) => t.mul(t).cummax(1),
      (t) => t.mul(t).prod(0),
      (t) => t.matmul(t.transpose()).sin().matmul(t),
    ]
    for (const f of fs) {
      const x = makeInput([2, 3], 'float64', 'any', 'contiguous', 21)
      const r = gradcheck((t) => grad((u: Tensor) => f(u).mul(u).sum())(t), [x])
      expect(r.ok, JSON.stringify(r)).toBe(true)
    }
  })
})

describe('checkpointing', () => {
  const layer = (t: Tensor, k: number) => t.mul(1 + 0.01 * k).add(0.1).tanh()
  it('gives the same gradients with and without it', () => {
    const x = makeInput([4, 6], 'float64', 'any', 'contiguous', 5)
    const block = (t: Tensor, k: number) => layer(layer(t, k), k).mul(0.5).add(layer(t, k).mul(0.5))
    let plain = x
    let ckpt = x
    for (let k = 0; k < 12; k++) {
      plain = block(plain, k)
      ckpt = checkpoint((t) => block(t, k), ckpt)
    }
    expect(ckpt.dataSync()).toEqual(plain.dataSync())
    const gPlain = backward(plain.sum(), [x]).get(x)!.dataSync()
    const gCkpt = backward(ckpt.sum(), [x]).get(x)!.dataSync()
    expect(gCkpt).toEqual(gPlain)
    expect(gradcheck((t) => checkpoint((u) => u.sin().mul(u), t), [x]).ok).toBe(true)
  })
  it('carries gradients to tensors the segment closes over', () => {
    const w = tensor([2, 3], { dtype: 'float64' })
    const x = tensor([1, 4], { dtype: 'float64' })
    const y = checkpoint((t) => t.mul(w).sin(), x).sum()
    const g = backward(y, [x, w])
    expect(g.get(w)!.toArray()).toEqual(x.mul(w).cos().mul(x).toArray())
  })
})

describe('errors', () => {
  it('non-scalar output without gradOutput', () => {
    expect(() => backward(ones([2, 2]), [])).toThrow(ShapeError)
    expect(() => backward(ones([2, 2]), [])).toThrow('[2, 2]')
  })
  it('int32 or bool output', () => {
    expect(() => backward(tensor([1], { dtype: 'int32' }), [])).toThrow(DTypeError)
    expect(() => tensor([1], { dtype: 'int32' }).requiresGrad_()).toThrow(DTypeError)
  })
  it('gradOutput of the wrong shape', () => {
    const x = tensor([1, 2])
    expect(() => backward(x.mul(2), [x], { gradOutput: ones([3]) })).toThrow(ShapeError)
    expect(() => backward(x.mul(2), [x], { gradOutput: ones([3]) })).toThrow('gradOutput')
  })
  it('gradient with respect to an int tensor', () => {
    const i = tensor([1], { dtype: 'int32' })
    expect(() => backward(i.cast('float32').sum(), [i])).toThrow(EclatError)
  })
})

describe('checkpointing memory', () => {
  // Peak RSS comes from /proc (Linux only).
  it.runIf(process.platform === 'linux')('lowers peak memory of backward through a deep stack (benches/checkpoint-memory.js)', async () => {
    const { execFileSync } = await import('node:child_process')
    const script = new URL('../benches/checkpoint-memory.js', import.meta.url).pathname
    const out = execFileSync(process.execPath, [script, '--layers', '32', '--size', String(1 << 19), '--segment', '8']).toString()
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as { plainPeakMiB: number; checkpointPeakMiB: number; sameGradient: boolean }
    expect(result.sameGradient).toBe(true)
    expect(result.checkpointPeakMiB).toBeLessThan(result.plainPeakMiB * 0.6)
  })
})
