// Peak memory of backward through a deep stack, with and without gradient
// checkpointing. Each variant runs in a fresh process; the peak is the
// process's resident high-water mark (VmHWM) after computing the gradient.
//
//   node benches/checkpoint-memory.js [--layers 64] [--size 1048576] [--segment 8]
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}

function peakRssMiB() {
  const status = readFileSync('/proc/self/status', 'utf8')
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)[1]) / 1024
}

async function child(mode, layers, size, segment) {
  const { randn, backward, checkpoint, manualSeed } = await import('../dist/index.js')
  manualSeed(0)
  // Each layer is tanh(h·W + b): the matmul is a kernel boundary, so backward
  // needs every layer's activations (a purely elementwise stack would fuse
  // into one pass and keep none).
  const x = randn([size / 64, 64])
  const weights = Array.from({ length: layers }, () => randn([64, 64]).mul(0.125))
  const layer = (t, k) => t.matmul(weights[k]).add(0.01).tanh()
  const block = (t, first) => {
    let h = t
    for (let k = first; k < first + segment; k++) h = layer(h, k)
    return h
  }
  let h = x
  for (let first = 0; first < layers; first += segment) {
    h = mode === 'checkpoint' ? checkpoint((t) => block(t, first), h) : block(h, first)
  }
  const base = peakRssMiB()
  const dx = backward(h.sum(), [x]).get(x)
  const data = dx.dataSync()
  console.log(JSON.stringify({ mode, peakMiB: peakRssMiB(), beforeBackwardMiB: base, checksum: data[0] + data[data.length - 1] }))
}

if (process.argv[2] === '--child') {
  await child(process.argv[3], Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]))
} else {
  const layers = arg('layers', 64)
  const size = arg('size', 1 << 20)
  const segment = arg('segment', 8)
  const script = fileURLToPath(import.meta.url)
  const run = (mode) =>
    JSON.parse(execFileSync(process.execPath, [script, '--child', mode, layers, size, segment]).toString())
  const plain = run('plain')
  const ckpt = run('checkpoint')
  const mib = (size * 4) / 2 ** 20
  console.log(`backward through ${layers} tanh(matmul) layers on ${size} float32 elements (${mib.toFixed(1)} MiB each), segments of ${segment}`)
  console.log(`  without checkpointing: peak RSS ${plain.peakMiB.toFixed(0)} MiB`)
  console.log(`  with checkpointing:    peak RSS ${ckpt.peakMiB.toFixed(0)} MiB (${(plain.peakMiB / ckpt.peakMiB).toFixed(2)}x lower)`)
  console.log(`  same gradient: ${plain.checksum === ckpt.checksum}`)
  console.log(JSON.stringify({ layers, size, segment, plainPeakMiB: plain.peakMiB, checkpointPeakMiB: ckpt.peakMiB, sameGradient: plain.checksum === ckpt.checksum }))
}
