import { ones, rand, randn, tensor, zeros } from '../creation.js'
import { EclatError, ShapeError, fmtShape } from '../errors.js'
import { Tensor, where } from '../tensor.js'
import { Module } from './module.js'

/** Uniform(-bound, bound) parameter of `shape`, drawn from the `manualSeed` stream. */
function uniformParam(shape: number[], bound: number): Tensor {
  return rand(shape).mul(2 * bound).sub(bound).realize().detach().requiresGrad_()
}

function checkPositiveInt(op: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new EclatError(`${op}: ${name} must be a positive integer, got ${String(v)}`)
  return v
}

function pair(v: number | readonly [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]]
}

/**
 * `y = x Wᵀ + b`, initialised as PyTorch does (uniform in ±1/√inFeatures).
 *
 * @example
 * const fc = new Linear(784, 10); const y = fc.forward(x) // [batch, 10]
 */
export class Linear extends Module {
  weight: Tensor
  bias: Tensor | null

  constructor(readonly inFeatures: number, readonly outFeatures: number, { bias = true } = {}) {
    super()
    checkPositiveInt('Linear', 'inFeatures', inFeatures)
    checkPositiveInt('Linear', 'outFeatures', outFeatures)
    const bound = 1 / Math.sqrt(inFeatures)
    this.weight = uniformParam([outFeatures, inFeatures], bound)
    this.bias = bias ? uniformParam([outFeatures], bound) : null
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) {
      throw new ShapeError(`Linear(${this.inFeatures}, ${this.outFeatures}): input ${fmtShape(x.shape)} ${x.dtype} must end with ${this.inFeatures}`)
    }
    const y = x.matmul(this.weight.transpose())
    return this.bias ? y.add(this.bias) : y
  }
}

/**
 * Applies modules in order.
 *
 * @example
 * const model = new Sequential(new Linear(4, 8), new ReLU(), new Linear(8, 2))
 */
export class Sequential extends Module {
  layers: Module[]
  constructor(...layers: Module[]) {
    super()
    if (!layers.every((l) => l instanceof Module)) throw new EclatError('Sequential: every layer must be a Module')
    this.layers = layers
  }
  forward(x: Tensor): Tensor {
    return this.layers.reduce((h, layer) => layer.forward(h), x)
  }
}

/** `max(x, 0)`. @example new ReLU().forward(x) */
export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return x.relu()
  }
}

/** GELU (tanh approximation). @example new GELU().forward(x) */
export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return x.gelu()
  }
}

/** Hyperbolic tangent. @example new Tanh().forward(x) */
export class Tanh extends Module {
  forward(x: Tensor): Tensor {
    return x.tanh()
  }
}

/** Logistic sigmoid. @example new Sigmoid().forward(x) */
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return x.sigmoid()
  }
}

/** Merges axes `startDim..endDim` (all but the batch axis by default). @example new Flatten().forward(images) // [N, C·H·W] */
export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) {
    super()
  }
  forward(x: Tensor): Tensor {
    return x.flatten(this.startDim, this.endDim)
  }
}

/**
 * Zeroes each element with probability `p` in training mode, scaling the rest by
 * 1/(1-p); the identity in eval mode. Seeded by `manualSeed`.
 *
 * @example
 * const drop = new Dropout(0.5)
 */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super()
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new EclatError(`Dropout: p must be in [0, 1), got ${String(p)}`)
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x
    const keep = rand(x.shape).ge(this.p)
    return where(keep, x.mul(1 / (1 - this.p)), 0)
  }
}

/**
 * Normalizes over the trailing `normalizedShape` axes, with a learned scale and shift.
 *
 * @example
 * const norm = new LayerNorm([64])
 */
export class LayerNorm extends Module {
  weight: Tensor | null
  bias: Tensor | null
  readonly normalizedShape: number[]
  readonly eps: number

  constructor(normalizedShape: number | readonly number[], { eps = 1e-5, elementwiseAffine = true } = {}) {
    super()
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape]
    this.normalizedShape.forEach((d) => checkPositiveInt('LayerNorm', 'normalizedShape', d))
    this.eps = eps
    this.weight = elementwiseAffine ? ones(this.normalizedShape).requiresGrad_() : null
    this.bias = elementwiseAffine ? zeros(this.normalizedShape).requiresGrad_() : null
  }

  forward(x: Tensor): Tensor {
    const k = this.normalizedShape.length
    if (x.ndim < k || x.shape.slice(-k).some((d, i) => d !== this.normalizedShape[i])) {
      throw new ShapeError(`LayerNorm(${fmtShape(this.normalizedShape)}): input ${fmtShape(x.shape)} must end with those axes`)
    }
    const axes = Array.from({ length: k }, (_, i) => x.ndim - k + i)
    const mean = x.mean(axes, true)
    const centered = x.sub(mean)
    const variance = centered.mul(centered).mean(axes, true)
    let y = centered.mul(variance.add(this.eps).sqrt().recip())
    if (this.weight) y = y.mul(this.weight)
    if (this.bias) y = y.add(this.bias)
    return y
  }
}

/**
 * A lookup table: int32 ids → rows of a learned `[numEmbeddings, dim]` matrix
 * (a gather; its gradient is a scatter-add).
 *
 * @example
 * const emb = new Embedding(1000, 32); emb.forward(ids) // [...ids.shape, 32]
 */
export class Embedding extends Module {
  weight: Tensor
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number) {
    super()
    checkPositiveInt('Embedding', 'numEmbeddings', numEmbeddings)
    checkPositiveInt('Embedding', 'embeddingDim', embeddingDim)
    this.weight = randn([numEmbeddings, embeddingDim]).requiresGrad_()
  }
  forward(ids: Tensor): Tensor {
    if (ids.dtype !== 'int32') throw new EclatError(`Embedding: ids must be int32, got ${ids.dtype} ${fmtShape(ids.shape)}`)
    const flat = ids.reshape([-1, 1]).expand([ids.size, this.embeddingDim])
    return this.weight.gather(0, flat).reshape([...ids.shape, this.embeddingDim])
  }
}

/**
 * The flat input positions each output window reads, for one sample: an int32
 * index of `[outH·outW·channels·kh·kw]` into the padded `[channels, Hp, Wp]`
 * image, ordered so that a reshape gives the im2col matrix.
 */
function windowIndex(channels: number, hp: number, wp: number, kernel: [number, number], stride: [number, number], out: [number, number], channelsLast: boolean): Int32Array {
  const [kh, kw] = kernel
  const [oh, ow] = out
  const index = new Int32Array(oh * ow * channels * kh * kw)
  let k = 0
  const push = (c: number, i: number, j: number, a: number, b: number) => {
    index[k++] = c * hp * wp + (i * stride[0] + a) * wp + (j * stride[1] + b)
  }
  if (channelsLast) {
    for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) for (let c = 0; c < channels; c++) for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) push(c, i, j, a, b)
  } else {
    for (let c = 0; c < channels; c++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) push(c, i, j, a, b)
  }
  return index
}

/** Caches window indices by geometry (they depend on shapes only). */
const windowCache = new Map<string, Tensor>()

/**
 * Extracts sliding windows of `x` [N, C, H, W] (after zero padding) with one
 * gather: `[N, outH·outW·C·kh·kw]` (channelsLast) or `[N, C·outH·outW·kh·kw]`.
 */
function windows(x: Tensor, kernel: [number, number], stride: [number, number], padding: [number, number], channelsLast: boolean): { cols: Tensor; out: [number, number] } {
  const [n, c, h, w] = x.shape as [number, number, number, number]
  const [hp, wp] = [h + 2 * padding[0], w + 2 * padding[1]]
  const out: [number, number] = [Math.floor((hp - kernel[0]) / stride[0]) + 1, Math.floor((wp - kernel[1]) / stride[1]) + 1]
  if (out[0] < 1 || out[1] < 1) throw new ShapeError(`window ${fmtShape(kernel)} does not fit input ${fmtShape(x.shape)} with padding ${fmtShape(padding)}`)
  const key = [c, hp, wp, ...kernel, ...stride, channelsLast].join(',')
  let index = windowCache.get(key)
  if (!index) {
    const data = windowIndex(c, hp, wp, kernel, stride, out, channelsLast)
    index = tensor(data, { shape: [1, data.length] })
    windowCache.set(key, index)
  }
  const padded = padding[0] || padding[1] ? x.pad([[0, 0], [0, 0], [padding[0], padding[0]], [padding[1], padding[1]]]) : x
  const cols = padded.reshape([n, c * hp * wp]).gather(1, index.expand([n, index.shape[1]!]))
  return { cols, out }
}

function check4d(op: string, x: Tensor, channels?: number): void {
  if (x.ndim !== 4 || (channels !== undefined && x.shape[1] !== channels)) {
    throw new ShapeError(`${op}: expected input [N, ${channels ?? 'C'}, H, W], got ${fmtShape(x.shape)} ${x.dtype}`)
  }
}

/**
 * 2-D convolution over [N, C, H, W] inputs (im2col by one gather, then a
 * matmul), initialised as PyTorch does.
 *
 * @example
 * const conv = new Conv2d(1, 16, 3, { padding: 1 }); conv.forward(images) // [N, 16, H, W]
 */
export class Conv2d extends Module {
  weight: Tensor
  bias: Tensor | null
  readonly kernelSize: [number, number]
  readonly stride: [number, number]
  readonly padding: [number, number]

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | readonly [number, number],
    { stride = 1, padding = 0, bias = true }: { stride?: number | readonly [number, number]; padding?: number | readonly [number, number]; bias?: boolean } = {},
  ) {
    super()
    checkPositiveInt('Conv2d', 'inChannels', inChannels)
    checkPositiveInt('Conv2d', 'outChannels', outChannels)
    this.kernelSize = pair(kernelSize)
    this.stride = pair(stride)
    this.padding = pair(padding)
    this.kernelSize.forEach((k) => checkPositiveInt('Conv2d', 'kernelSize', k))
    this.stride.forEach((s) => checkPositiveInt('Conv2d', 'stride', s))
    if (!this.padding.every((p) => Number.isInteger(p) && p >= 0)) throw new EclatError(`Conv2d: padding must be non-negative integers, got ${String(padding)}`)
    const fanIn = inChannels * this.kernelSize[0] * this.kernelSize[1]
    const bound = 1 / Math.sqrt(fanIn)
    this.weight = uniformParam([outChannels, inChannels, ...this.kernelSize], bound)
    this.bias = bias ? uniformParam([outChannels], bound) : null
  }

  forward(x: Tensor): Tensor {
    check4d(`Conv2d(${this.inChannels}, ${this.outChannels})`, x, this.inChannels)
    const n = x.shape[0]!
    const { cols, out } = windows(x, this.kernelSize, this.stride, this.padding, true)
    const k = this.inChannels * this.kernelSize[0] * this.kernelSize[1]
    let y = cols.reshape([n * out[0] * out[1], k]).matmul(this.weight.reshape([this.outChannels, k]).transpose())
    if (this.bias) y = y.add(this.bias)
    return y.reshape([n, out[0], out[1], this.outChannels]).permute([0, 3, 1, 2])
  }
}

abstract class Pool2d extends Module {
  readonly kernelSize: [number, number]
  readonly stride: [number, number]
  constructor(kernelSize: number | readonly [number, number], stride?: number | readonly [number, number]) {
    super()
    this.kernelSize = pair(kernelSize)
    this.stride = pair(stride ?? kernelSize)
    ;[...this.kernelSize, ...this.stride].forEach((v) => checkPositiveInt(this.constructor.name, 'kernelSize and stride', v))
  }

  protected pool(x: Tensor, reduce: (t: Tensor, axes: number[]) => Tensor): Tensor {
    check4d(this.constructor.name, x)
    const [n, c, h, w] = x.shape as [number, number, number, number]
    const [kh, kw] = this.kernelSize
    const [sh, sw] = this.stride
    if (kh === sh && kw === sw) {
      // Non-overlapping windows: a reshape exposes them (trailing rows dropped).
      const [oh, ow] = [Math.floor(h / kh), Math.floor(w / kw)]
      if (oh < 1 || ow < 1) throw new ShapeError(`${this.constructor.name}: window ${fmtShape(this.kernelSize)} does not fit input ${fmtShape(x.shape)}`)
      const cropped = oh * kh === h && ow * kw === w ? x : x.slice([null, null, [0, oh * kh], [0, ow * kw]])
      return reduce(cropped.reshape([n, c, oh, kh, ow, kw]), [3, 5])
    }
    const { cols, out } = windows(x, this.kernelSize, this.stride, [0, 0], false)
    return reduce(cols.reshape([n, c, out[0], out[1], kh * kw]), [4])
  }
}

/**
 * Maximum over each window of [N, C, H, W] (stride = kernel by default).
 *
 * @example
 * new MaxPool2d(2).forward(x) // halves H and W
 */
export class MaxPool2d extends Pool2d {
  forward(x: Tensor): Tensor {
    return this.pool(x, (t, axes) => t.max(axes))
  }
}

/**
 * Mean over each window of [N, C, H, W] (stride = kernel by default).
 *
 * @example
 * new AvgPool2d(2).forward(x)
 */
export class AvgPool2d extends Pool2d {
  forward(x: Tensor): Tensor {
    return this.pool(x, (t, axes) => t.mean(axes))
  }
}

