import { createRequire } from 'node:module'
import { allocate, DTYPE_CODE, type TypedArray } from '../dtype.js'
import { AllocationError, DTypeError, EclatError, FormatError, IndexError, ShapeError } from '../errors.js'
import type { LazyNode } from '../graph/node.js'
import { numel } from '../graph/shape.js'
import { OP_CODE } from '../graph/ops.js'
import type { Backend } from '../realize.js'
import { describeKernel, schedule } from '../schedule.js'

/** The functions the Rust addon exports (`crates/eclat-node`). */
interface Addon {
  realizeSync(program: Float64Array, buffers: Uint8Array[], nInputs: number): void
  realizeAsync(program: Float64Array, buffers: Uint8Array[], nInputs: number): Promise<unknown>
  primitiveNames(): string[]
  numThreads(): number
  simdLevel(): string
  supportedSimdLevels(): string[]
}

let addon: Addon | null = null

/** The napi-rs platform name of this machine, as the prebuilt packages are named. */
function platformName(): string {
  const libc = process.platform === 'linux' ? (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime ? '-gnu' : '-musl' : ''
  const win = process.platform === 'win32' ? '-msvc' : ''
  return `${process.platform}-${process.arch}${libc}${win}`
}

/**
 * Loads the addon on first use, through the loader napi-rs generates (a local
 * build, then the `eclat-<platform>` package). When no binary fits, the error
 * says which platform was detected, what was tried, and how to build from source.
 */
export function loadAddon(): Addon {
  if (!addon) {
    const require = createRequire(import.meta.url)
    try {
      addon = require('../../native/index.cjs') as Addon
    } catch (e) {
      const platform = platformName()
      const causes: string[] = []
      for (let c: unknown = e; c instanceof Error; c = c.cause) causes.push(`  - ${c.message.split('\n')[0]}`)
      throw new EclatError(
        `Eclat's native addon could not be loaded on ${platform} (Node ${process.versions.node}).\n` +
          `Tried: a local build (native/eclat.${platform}.node) and the prebuilt package 'eclat-${platform}':\n${causes.join('\n')}\n` +
          'Prebuilt binaries exist for linux x64 (glibc and musl), linux arm64 (glibc), macOS x64 and arm64, and Windows x64. ' +
          'Elsewhere, build from source: install Rust (https://rustup.rs), clone the repository and run `npm install`, ' +
          'or set ECLAT_BACKEND=reference to use the (slow) pure-TypeScript interpreter.',
      )
    }
  }
  return addon
}

/** An encoded program and the buffers it reads and writes. */
interface Encoded {
  words: Float64Array
  buffers: Uint8Array[]
  nInputs: number
  outputs: TypedArray[]
}

/** Byte views of typed arrays, made once per array (a realize in a loop reads the same weights). */
const byteViews = new WeakMap<TypedArray, Uint8Array>()

function bytesOf(a: TypedArray): Uint8Array {
  if (a instanceof Uint8Array) return a
  let view = byteViews.get(a)
  if (!view) {
    view = new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
    byteViews.set(a, view)
  }
  return view
}

/** The op-specific arguments of an instruction (see `program.rs`). */
function argsOf(node: LazyNode): number[] {
  const a = node.arg
  switch (a.kind) {
    case 'axes':
      return [a.axes.length, ...a.axes]
    case 'order':
      return [...a.order]
    case 'slice':
      return a.starts.flatMap((s, d) => [s, a.steps[d]!])
    case 'pad':
      return [a.value, ...a.before]
    case 'scan':
      return [a.axis, a.reverse ? 1 : 0]
    case 'axis':
      return [a.axis]
    case 'none':
    case 'load':
      return []
  }
}

/** Added to a root op's code to mark a fused kernel (see `program.rs`). */
const FUSED = 64

/**
 * Encodes the kernels of `order` (see `schedule.ts`) as one program. Nodes that
 * already have data become `load` instructions reading their typed arrays in
 * place (no copy).
 */
function encodeProgram(order: readonly LazyNode[], targets: readonly LazyNode[], leafIndex: ReadonlyMap<LazyNode, number>): Float64Array {
  const ids = new Map<LazyNode, number>()
  const words: number[] = [0]
  let count = 0
  const emit = (node: LazyNode, srcs: number[], args: number[], op: number) => {
    words.push(op, DTYPE_CODE[node.dtype], node.shape.length, ...node.shape, srcs.length, ...srcs, args.length, ...args)
    ids.set(node, count++)
  }
  const idOf = (node: LazyNode): number => {
    const known = ids.get(node)
    if (known !== undefined) return known
    emit(node, [], [leafIndex.get(node)!], OP_CODE.load)
    return count - 1
  }
  const kernels = schedule(order, targets)
  if (DEBUG_SCHEDULE) {
    console.error(`eclat schedule: ${kernels.filter((k) => k.kind !== 'view').length} kernel(s) for ${targets.length} output(s)`)
    for (const k of kernels) console.error(`  ${describeKernel(k)}`)
  }
  for (const k of kernels) {
    const node = k.root
    const reduction = k.kind === 'fused' && !k.members.includes(node)
    if (k.kind !== 'fused' || (k.members.length === 1 && !reduction && !k.matmul)) {
      emit(node, node.srcs.map(idOf), argsOf(node), OP_CODE[node.op])
      continue
    }
    // Register r reads srcs[r]; with a matmul prologue, register 0 is the
    // product and the instruction's first two sources are its operands.
    const reads = k.matmul ? [k.matmul, ...k.srcs.filter((s) => s !== k.matmul)] : k.srcs
    const srcIds = k.matmul ? [...k.matmul.srcs.map(idOf), ...reads.slice(1).map(idOf)] : reads.map(idOf)
    const register = new Map<LazyNode, number>()
    reads.forEach((s, i) => register.set(s, i))
    const steps: number[] = [k.members.length]
    k.members.forEach((m, j) => {
      const operands = m.srcs.map((s) => register.get(s)!)
      steps.push(OP_CODE[m.op], DTYPE_CODE[m.dtype], operands.length, ...operands)
      register.set(m, reads.length + j)
    })
    emit(node, srcIds, argsOf(node), FUSED + OP_CODE[k.matmul ? 'matmul' : node.op])
    words.push(...steps)
  }
  words[0] = count
  words.push(targets.length)
  targets.forEach((t, i) => words.push(ids.get(t)!, i))
  return Float64Array.from(words)
}

/**
 * Encoded programs by graph structure: ops, dtypes, shapes, arguments, which
 * nodes read which, and the dtype and shape of every realized input, but not
 * values. The second and later steps of a training loop skip scheduling and
 * encoding.
 */
const programCache = new Map<string, Float64Array>()
const PROGRAM_CACHE_SIZE = 512

/**
 * The program computing `targets` (from `order`) and the buffers it reads: the
 * data of every realized node the graph reaches, input `k` being the k-th met.
 */
function encode(order: readonly LazyNode[], targets: readonly LazyNode[]): Encoded {
  const position = new Map<LazyNode, number>()
  order.forEach((n, i) => position.set(n, i))
  const leafIndex = new Map<LazyNode, number>()
  const inputs: Uint8Array[] = []
  const key: (string | number)[] = []
  for (const node of order) {
    key.push(OP_CODE[node.op], DTYPE_CODE[node.dtype], node.shape.join('x'), argsOf(node).map((a) => (Object.is(a, -0) ? '-0' : a)).join(' '))
    for (const src of node.srcs) {
      const p = position.get(src)
      if (p !== undefined) {
        key.push(p)
        continue
      }
      let k = leafIndex.get(src)
      if (k === undefined) {
        k = inputs.length
        leafIndex.set(src, k)
        inputs.push(bytesOf(src.data!))
      }
      key.push(`L${k}:${DTYPE_CODE[src.dtype]}:${src.shape.join('x')}`)
    }
    key.push(';')
  }
  for (const t of targets) key.push(position.get(t)!)
  const signature = key.join(',')
  let words = programCache.get(signature)
  if (!words) {
    words = encodeProgram(order, targets, leafIndex)
    if (programCache.size >= PROGRAM_CACHE_SIZE) programCache.delete(programCache.keys().next().value!)
    programCache.set(signature, words)
  } else if (DEBUG_SCHEDULE) {
    console.error(`eclat schedule: cached program for ${targets.length} output(s)`)
  }
  const outputs = targets.map((t) => allocate(t.dtype, numel(t.shape)))
  return { words, buffers: [...inputs, ...outputs.map((o) => new Uint8Array(o.buffer, o.byteOffset, o.byteLength))], nInputs: inputs.length, outputs }
}

/** `ECLAT_DEBUG=schedule` prints each realize's kernels to stderr (read once, at load). */
const DEBUG_SCHEDULE = (process.env['ECLAT_DEBUG'] ?? '').split(',').includes('schedule')

const ERROR_CLASSES = {
  IndexError,
  ShapeError,
  DTypeError,
  FormatError,
  AllocationError,
} as const

/** Maps an addon error ("IndexError: gather: ...") to the matching Eclat error. */
function translate(e: unknown): Error {
  if (!(e instanceof Error)) return new EclatError(String(e))
  const m = /^(\w+): (.*)$/s.exec(e.message)
  const cls = m ? ERROR_CLASSES[m[1] as keyof typeof ERROR_CLASSES] : undefined
  return cls ? new cls(m![2]!) : new EclatError(e.message)
}

/** Runs graphs with the Rust kernels: one N-API call per realize. */
export const nativeBackend: Backend = {
  name: 'native',
  run(order, targets) {
    const p = encode(order, targets)
    try {
      loadAddon().realizeSync(p.words, p.buffers, p.nInputs)
    } catch (e) {
      throw translate(e)
    }
    return p.outputs
  },
  async runAsync(order, targets) {
    const p = encode(order, targets)
    try {
      await loadAddon().realizeAsync(p.words, p.buffers, p.nInputs)
    } catch (e) {
      throw translate(e)
    }
    return p.outputs
  },
}
