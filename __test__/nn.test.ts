/** Training: modules, losses, optimizers, safetensors, and native/reference agreement of a training run. */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  Adam, AdamW, AvgPool2d, Conv2d, CosineAnnealingLR, Dropout, EclatError, Embedding, Flatten, FormatError, LayerNorm, Linear,
  MaxPool2d, Module, ReLU, SGD, Sequential, ShapeError, DTypeError, StepLR, backward, binaryCrossEntropyWithLogits,
  backendName, crossEntropy, gradcheck, loadSafetensors, manualSeed, mseLoss, nllLoss, parseSafetensors, randn, realize,
  setBackend,
  saveSafetensors, tensor, zeros, type Tensor,
} from '../ts/index.js'
import { countRealizeCalls } from './helpers.js'

const f64 = (t: Tensor) => Array.from(t.cast('float64').dataSync())
const near = (a: number[], b: number[], tol = 1e-5) => {
  expect(a.length).toBe(b.length)
  a.forEach((v, i) => expect(Math.abs(v - b[i]!), `element ${i}: ${v} vs ${b[i]}`).toBeLessThanOrEqual(tol * (1 + Math.abs(b[i]!))))
}

/** Direct convolution by definition, for checking Conv2d. */
function naiveConv(x: Tensor, w: Tensor, b: Tensor | null, stride: number, pad: number): number[] {
  const [n, c, h, wd] = x.shape as number[] as [number, number, number, number]
  const [oc, , kh, kw] = w.shape as number[] as [number, number, number, number]
  const [xs, ws, bs] = [f64(x), f64(w), b ? f64(b) : null]
  const oh = Math.floor((h + 2 * pad - kh) / stride) + 1
  const ow = Math.floor((wd + 2 * pad - kw) / stride) + 1
  const out: number[] = []
  for (let i = 0; i < n; i++)
    for (let o = 0; o < oc; o++)
      for (let y = 0; y < oh; y++)
        for (let z = 0; z < ow; z++) {
          let acc = bs ? bs[o]! : 0
          for (let ch = 0; ch < c; ch++)
            for (let p = 0; p < kh; p++)
              for (let q = 0; q < kw; q++) {
                const [r, s] = [y * stride + p - pad, z * stride + q - pad]
                if (r >= 0 && r < h && s >= 0 && s < wd) acc += xs[((i * c + ch) * h + r) * wd + s]! * ws[((o * c + ch) * kh + p) * kw + q]!
              }
          out.push(acc)
        }
  return out
}

describe('modules', () => {
  class Net extends Module {
    body = new Sequential(new Linear(4, 8), new ReLU(), new Dropout(0.5))
    heads = [new Linear(8, 2), new Linear(8, 3, { bias: false })]
    forward(x: Tensor) {
      const h = this.body.forward(x)
      return this.heads[0]!.forward(h).sum(1).add(this.heads[1]!.forward(h).sum(1))
    }
  }

  it('find parameters by name through fields, arrays and Sequential', () => {
    manualSeed(1)
    const net = new Net()
    expect(net.namedParameters().map(([n, p]) => `${n}:${p.shape.join('x')}`)).toEqual([
      'body.layers.0.weight:8x4', 'body.layers.0.bias:8', 'heads.0.weight:2x8', 'heads.0.bias:2', 'heads.1.weight:3x8',
    ])
    expect(net.parameters()).toHaveLength(5)
    const bound = 1 / Math.sqrt(4)
    expect(f64(net.body.layers[0]!.parameters()[0]!).every((v) => Math.abs(v) <= bound)).toBe(true)
  })

  it('train() and eval() switch Dropout, which is seeded by manualSeed', () => {
    const drop = new Dropout(0.5)
    const x = tensor(new Float32Array(1000).fill(1))
    manualSeed(3)
    const a = f64(drop.forward(x))
    manualSeed(3)
    expect(f64(drop.forward(x))).toEqual(a)
    expect(a.every((v) => v === 0 || v === 2)).toBe(true)
    expect(a.filter((v) => v === 0).length).toBeGreaterThan(400)
    drop.eval()
    expect(f64(drop.forward(x))).toEqual(f64(x))
  })

  it('stateDict and loadStateDict round-trip through safetensors', () => {
    manualSeed(2)
    const a = new Net()
    const b = new Net()
    const dir = mkdtempSync(join(tmpdir(), 'eclat-'))
    a.saveWeights(join(dir, 'net.safetensors'))
    b.loadWeights(join(dir, 'net.safetensors'))
    for (const [name, p] of a.namedParameters()) expect(f64(b.stateDict()[name]!)).toEqual(f64(p))
    expect(() => b.loadStateDict({})).toThrow(EclatError)
    expect(() => b.loadStateDict({ ...a.stateDict(), 'heads.0.bias': zeros([5]) })).toThrow(ShapeError)
  })

  it('Linear computes x Wᵀ + b', () => {
    const fc = new Linear(3, 2)
    const x = randn([4, 3])
    near(f64(fc.forward(x)), f64(x.matmul(fc.weight.transpose()).add(fc.bias!)))
    expect(() => fc.forward(randn([4, 5]))).toThrow(ShapeError)
  })

  for (const [stride, pad] of [[1, 0], [1, 1], [2, 1], [2, 0]] as const) {
    it(`Conv2d matches the definition (stride ${stride}, padding ${pad})`, () => {
      manualSeed(4)
      const conv = new Conv2d(3, 5, [3, 2], { stride, padding: pad })
      const x = randn([2, 3, 7, 6])
      const y = conv.forward(x)
      near(f64(y), naiveConv(x, conv.weight, conv.bias, stride, pad), 1e-5)
    })
  }

  it('Conv2d and the pools have correct gradients', () => {
    manualSeed(5)
    const conv = new Conv2d(2, 3, 3, { stride: 2, padding: 1 })
    const x = randn([2, 2, 5, 5], { dtype: 'float64' })
    expect(gradcheck((t) => conv.forward(t), [x], { atol: 1e-5, rtol: 1e-4 }).ok).toBe(true)
    expect(gradcheck((t) => new MaxPool2d(2).forward(t), [x]).ok).toBe(true)
    expect(gradcheck((t) => new MaxPool2d(3, 2).forward(t), [x]).ok).toBe(true)
    expect(gradcheck((t) => new AvgPool2d([2, 3], 1).forward(t), [x]).ok).toBe(true)
    const w = conv.weight.cast('float64')
    expect(gradcheck((k) => x.reshape([2, 2, 5, 5]).sum().mul(k.sum()), [w]).ok).toBe(true)
  })

  it('pools match their definition', () => {
    const x = tensor(Array.from({ length: 2 * 1 * 5 * 5 }, (_, i) => (i * 7) % 11), { shape: [2, 1, 5, 5] })
    const data = f64(x)
    const expectPool = (k: number, s: number, reduce: (v: number[]) => number) => {
      const o = Math.floor((5 - k) / s) + 1
      const out: number[] = []
      for (let n = 0; n < 2; n++) for (let i = 0; i < o; i++) for (let j = 0; j < o; j++) {
        const window: number[] = []
        for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) window.push(data[n * 25 + (i * s + a) * 5 + (j * s + b)]!)
        out.push(reduce(window))
      }
      return out
    }
    near(f64(new MaxPool2d(2).forward(x)), expectPool(2, 2, (v) => Math.max(...v)))
    near(f64(new MaxPool2d(3, 1).forward(x)), expectPool(3, 1, (v) => Math.max(...v)))
    near(f64(new AvgPool2d(2, 1).forward(x)), expectPool(2, 1, (v) => v.reduce((a, b) => a + b) / v.length))
  })

  it('LayerNorm, Embedding and Flatten', () => {
    const x = randn([3, 4, 5])
    const y = new LayerNorm(5).forward(x)
    near(f64(y.mean(-1)), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].map(() => 0), 1e-5)
    near(f64(y.var(-1, false, 0)), new Array(12).fill(1), 1e-3)
    const emb = new Embedding(10, 4)
    const ids = tensor([[1, 9], [1, 0]], { dtype: 'int32' })
    const e = emb.forward(ids)
    expect(e.shape).toEqual([2, 2, 4])
    near(f64(e.slice([[0, 1], [0, 1]]).reshape([4])), f64(emb.weight.slice([[1, 2]]).reshape([4])))
    const g = backward(e.sum(), [emb.weight]).get(emb.weight)!
    expect(f64(g.sum(1))).toEqual([4, 8, 0, 0, 0, 0, 0, 0, 0, 4])
    expect(() => emb.forward(tensor([1.5]))).toThrow(EclatError)
    expect(new Flatten().forward(zeros([2, 3, 4])).shape).toEqual([2, 12])
  })

  it('reject bad arguments', () => {
    expect(() => new Linear(0, 3)).toThrow(EclatError)
    expect(() => new Conv2d(1, 2, 3, { stride: 0 })).toThrow(EclatError)
    expect(() => new Dropout(1)).toThrow(EclatError)
    expect(() => new Conv2d(1, 2, 3).forward(zeros([1, 2, 5, 5]))).toThrow(ShapeError)
    expect(() => new MaxPool2d(4).forward(zeros([1, 1, 3, 3]))).toThrow(ShapeError)
  })
})

describe('losses', () => {
  const logits = tensor([[2, 1, 0.1], [0.5, 2.5, 0.3]])
  const labels = tensor([0, 1], { dtype: 'int32' })
  const ce = (row: number[], label: number) => -(row[label]! - Math.log(row.reduce((s, v) => s + Math.exp(v), 0)))
  it('crossEntropy and nllLoss, mean and sum', () => {
    const expected = [ce([2, 1, 0.1], 0), ce([0.5, 2.5, 0.3], 1)]
    near([crossEntropy(logits, labels).item() as number], [(expected[0]! + expected[1]!) / 2])
    near([crossEntropy(logits, labels, { reduction: 'sum' }).item() as number], [expected[0]! + expected[1]!])
    near(f64(crossEntropy(logits, labels, { reduction: 'none' })), expected)
    near([nllLoss(logits.logSoftmax(1), labels).item() as number], [(expected[0]! + expected[1]!) / 2])
  })
  it('crossEntropy is stable for huge logits', () => {
    const big = tensor([[1000, -1000, 0]])
    expect(crossEntropy(big, tensor([0], { dtype: 'int32' })).item()).toBe(0)
    expect(crossEntropy(big, tensor([1], { dtype: 'int32' })).item()).toBeCloseTo(2000, 2)
  })
  it('mseLoss and binaryCrossEntropyWithLogits', () => {
    near([mseLoss(tensor([1, 2]), tensor([3, 2])).item() as number], [2])
    const x = [-3, 0.5, 40]
    const y = [0, 1, 1]
    // -[y log σ(x) + (1-y) log(1-σ(x))] = y·log1p(e^-x) + (1-y)·log1p(e^x)
    const bce = x.map((v, i) => y[i]! * Math.log1p(Math.exp(-v)) + (1 - y[i]!) * Math.log1p(Math.exp(v)))
    near(f64(binaryCrossEntropyWithLogits(tensor(x, { dtype: 'float64' }), tensor(y, { dtype: 'float64' }), { reduction: 'none' })), bce, 1e-9)
  })
  it('reject bad labels and shapes', () => {
    expect(() => crossEntropy(logits, tensor([0, 1]))).toThrow(DTypeError)
    expect(() => crossEntropy(logits, tensor([0], { dtype: 'int32' }))).toThrow(ShapeError)
    expect(() => mseLoss(tensor([1, 2]), tensor([1]))).toThrow(ShapeError)
    expect(() => crossEntropy(logits, tensor([0, 7], { dtype: 'int32' })).item()).toThrow('index 7')
  })
})

describe('optimizers', () => {
  /** Runs two steps on f(w) = sum(w²·c) from w0 and returns the weights after each. */
  function twoSteps(make: (p: Tensor[]) => { zeroGrad(): void; step(): void }) {
    const w = tensor([1, -2, 3], { dtype: 'float64', requiresGrad: true })
    const c = tensor([1, 0.5, 2], { dtype: 'float64' })
    const opt = make([w])
    const out: number[][] = []
    for (let k = 0; k < 2; k++) {
      opt.zeroGrad()
      w.mul(w).mul(c).sum().backward()
      opt.step()
      out.push(f64(w))
    }
    return out
  }
  const grad = (w: number[]) => w.map((v, i) => 2 * v * [1, 0.5, 2][i]!)

  it('SGD with momentum, Nesterov and weight decay follows torch.optim.SGD', () => {
    const [lr, mu, wd] = [0.1, 0.9, 0.01]
    const got = twoSteps((p) => new SGD(p, { lr, momentum: mu, nesterov: true, weightDecay: wd }))
    let w = [1, -2, 3]
    let buf: number[] | null = null
    const expected: number[][] = []
    for (let k = 0; k < 2; k++) {
      const g = grad(w).map((v, i) => v + wd * w[i]!)
      buf = buf ? buf.map((b, i) => mu * b + g[i]!) : g
      const step = g.map((v, i) => v + mu * buf![i]!)
      w = w.map((v, i) => v - lr * step[i]!)
      expected.push(w)
    }
    got.forEach((g, k) => near(g, expected[k]!, 1e-12))
  })

  for (const decoupled of [false, true]) {
    it(`${decoupled ? 'AdamW' : 'Adam'} follows torch.optim`, () => {
      const [lr, b1, b2, eps, wd] = [0.01, 0.9, 0.999, 1e-8, 0.1]
      const got = twoSteps((p) => (decoupled ? new AdamW(p, { lr, weightDecay: wd }) : new Adam(p, { lr, weightDecay: wd })))
      let w = [1, -2, 3]
      let [m, v] = [[0, 0, 0], [0, 0, 0]]
      const expected: number[][] = []
      for (let t = 1; t <= 2; t++) {
        const g = grad(w).map((x, i) => (decoupled ? x : x + wd * w[i]!))
        if (decoupled) w = w.map((x) => x * (1 - lr * wd))
        m = m.map((x, i) => b1 * x + (1 - b1) * g[i]!)
        v = v.map((x, i) => b2 * x + (1 - b2) * g[i]! ** 2)
        w = w.map((x, i) => x - (lr * (m[i]! / (1 - b1 ** t))) / (Math.sqrt(v[i]! / (1 - b2 ** t)) + eps))
        expected.push(w)
      }
      got.forEach((g, k) => near(g, expected[k]!, 1e-12))
    })
  }

  it('step() updates every parameter in one call into the kernels', () => {
    const model = new Sequential(new Linear(5, 7), new ReLU(), new Linear(7, 3), new ReLU(), new Linear(3, 1))
    const opt = new AdamW(model.parameters())
    model.forward(randn([4, 5])).sum().backward()
    expect(countRealizeCalls(() => opt.step())).toBe(1)
  })

  it('learning-rate schedules', () => {
    const w = zeros([1]).requiresGrad_()
    const opt = new SGD([w], { lr: 1 })
    const step = new StepLR(opt, { stepSize: 2, gamma: 0.5 })
    const lrs = [0, 1, 2, 3].map(() => (step.step(), opt.lr))
    expect(lrs).toEqual([1, 0.5, 0.5, 0.25])
    const opt2 = new SGD([w], { lr: 1 })
    const cos = new CosineAnnealingLR(opt2, { tMax: 4, etaMin: 0 })
    const c = [0, 1, 2, 3].map(() => (cos.step(), opt2.lr))
    near(c, [0.8535533905932737, 0.5, 0.14644660940672627, 0])
  })

  it('reject bad arguments', () => {
    const w = zeros([1]).requiresGrad_()
    expect(() => new SGD([w], { lr: -1 })).toThrow(EclatError)
    expect(() => new SGD([], { lr: 1 })).toThrow(EclatError)
    expect(() => new SGD([zeros([1])], { lr: 1 })).toThrow(EclatError)
    expect(() => new SGD([w], { lr: 0.1, nesterov: true })).toThrow(EclatError)
    expect(() => new Adam([w], { betas: [0.9, 1] })).toThrow(EclatError)
    expect(() => new Adam([w], { eps: 0 })).toThrow(EclatError)
  })
})

describe('safetensors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eclat-st-'))

  it('round-trips every dtype', () => {
    const tensors = {
      a: randn([3, 4]),
      b: tensor([1.5, -2], { dtype: 'float64' }),
      c: tensor([[1, 2], [3, 4]], { dtype: 'int32' }),
      d: tensor([true, false, true]),
      e: zeros([0, 2]),
      s: tensor(7),
    }
    saveSafetensors(join(dir, 'all.safetensors'), tensors, { format: 'pt' })
    const back = loadSafetensors(join(dir, 'all.safetensors'))
    for (const [k, t] of Object.entries(tensors)) {
      expect(back[k]!.shape).toEqual(t.shape)
      expect(back[k]!.dtype).toBe(t.dtype)
      expect(back[k]!.toArray()).toEqual(t.toArray())
    }
  })

  /** A file assembled byte by byte from the format's specification. */
  function fileOf(header: object | string, data: number[]): Uint8Array {
    const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
    const out = new Uint8Array(8 + json.length + data.length)
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
    out.set(json, 8)
    out.set(data, 8 + json.length)
    return out
  }

  it('loads a file built from the specification', () => {
    // float32 1.0 = 00 00 80 3f, -2.5 = 00 00 20 c0; int32 258 = 02 01 00 00.
    const file = fileOf(
      { __metadata__: { source: 'test' }, w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, i: { dtype: 'I32', shape: [1, 1], data_offsets: [8, 12] } },
      [0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0, 2, 1, 0, 0],
    )
    writeFileSync(join(dir, 'spec.safetensors'), file)
    const t = loadSafetensors(join(dir, 'spec.safetensors'))
    expect(t['w']!.toArray()).toEqual([1, -2.5])
    expect(t['i']!.toArray()).toEqual([[258]])
  })

  const malformed: [string, Uint8Array, string][] = [
    ['truncated before the header length', new Uint8Array(5), 'too short'],
    ['header length past the end', (() => { const f = fileOf({}, []); new DataView(f.buffer).setBigUint64(0, 1000n, true); return f })(), 'past the end'],
    ['header that is not JSON', fileOf('{nope', []), 'not valid JSON'],
    ['offsets out of range', fileOf({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, [0, 0, 0, 0]), 'out of range'],
    ['offsets overlapping', fileOf({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } }, [0, 0, 0, 0, 0, 0, 0, 0]), 'overlap'],
    ['unknown dtype', fileOf({ w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, [0]), 'unsupported dtype'],
    ['size that does not match the shape', fileOf({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Array(8).fill(0)), 'needs 12'],
    ['negative shape', fileOf({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, []), 'invalid shape'],
    ['data truncated', fileOf({ w: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, new Array(10).fill(0)), 'out of range'],
  ]
  for (const [name, bytes, says] of malformed) {
    it(`rejects a file with ${name}`, () => {
      expect(() => parseSafetensors(bytes)).toThrow(FormatError)
      expect(() => parseSafetensors(bytes)).toThrow(says)
      expect(tensor([1]).add(1).item()).toBe(2)
    })
  }
})

describe('a training run computes the same on the native and the reference backend', () => {
  function train(backend: 'native' | 'reference') {
    const previous = backendName()
    setBackend(backend)
    try {
      manualSeed(11)
      const model = new Sequential(
        new Conv2d(1, 4, 3, { padding: 1 }), new ReLU(), new MaxPool2d(2),
        new Flatten(), new Linear(4 * 4 * 4, 10),
      )
      const opt = new AdamW(model.parameters(), { lr: 1e-2 })
      const x = randn([6, 1, 8, 8])
      const y = tensor([0, 1, 2, 3, 4, 5], { dtype: 'int32' })
      const losses: number[] = []
      for (let step = 0; step < 4; step++) {
        opt.zeroGrad()
        const loss = crossEntropy(model.forward(x), y)
        loss.backward()
        realize([loss])
        losses.push(loss.item() as number)
        opt.step()
      }
      return { losses, weights: model.parameters().map(f64) }
    } finally {
      setBackend(previous)
    }
  }
  it('losses and weights agree after four AdamW steps of a small CNN', () => {
    const native = train('native')
    const reference = train('reference')
    near(native.losses, reference.losses, 1e-5)
    expect(native.losses[3]!).toBeLessThan(native.losses[0]!)
    native.weights.forEach((w, i) => near(w, reference.weights[i]!, 1e-4))
  })
})
