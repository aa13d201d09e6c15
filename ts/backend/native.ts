import { createRequire } from 'node:module'
import { DTYPE_CODE, itemSize, type DType, type TypedArray } from '../dtype.js'
import { AllocationError, DTypeError, EclatError, FormatError, IndexError, ShapeError } from '../errors.js'
import { nextWalkStamp, type LazyNode } from '../graph/node.js'
import { numel } from '../graph/shape.js'
import { markBusy, outputBuffer, poisonOutputs, release } from '../memory.js'
import { OP_CODE } from '../graph/ops.js'
import type { Backend } from '../realize.js'
import { describeKernel, schedule } from '../schedule.js'

/** The functions the Rust addon exports (`crates/eclat-node`). */
interface Addon {
  realizeSync(program: Float64Array, buffers: TypedArray[], nInputs: number): void
  realizeAsync(program: Float64Array, buffers: Uint8Array[], nInputs: number): Promise<unknown>
  realizeInArena(arena: Uint8Array): void
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

/** An encoded program and the data it reads. */
interface Encoded {
  words: Float64Array
  /** The realized nodes the program reads: input `k` is the data of the k-th. */
  leaves: LazyNode[]
}

/** The data an encoded program reads, input by input. */
const inputsOf = (p: Encoded): TypedArray[] => p.leaves.map((leaf) => leaf.data!)

/** A byte view of a typed array (what `realizeAsync` takes). */
const bytesOf = (a: TypedArray): Uint8Array => (a instanceof Uint8Array ? a : new Uint8Array(a.buffer, a.byteOffset, a.byteLength))

/** Where numbers are appended: a plain array or a structure key. */
interface NumberSink {
  push(value: number): unknown
}

/** Appends the op-specific arguments of an instruction (see `program.rs`) to `out`. */
function pushArgs(out: NumberSink, node: LazyNode): void {
  const a = node.arg
  switch (a.kind) {
    case 'axes':
      out.push(a.axes.length)
      for (const axis of a.axes) out.push(axis)
      return
    case 'order':
      for (const d of a.order) out.push(d)
      return
    case 'slice':
      for (let d = 0; d < a.starts.length; d++) {
        out.push(a.starts[d]!)
        out.push(a.steps[d]!)
      }
      return
    case 'pad':
      out.push(a.value)
      for (const b of a.before) out.push(b)
      return
    case 'scan':
      out.push(a.axis)
      out.push(a.reverse ? 1 : 0)
      return
    case 'axis':
      out.push(a.axis)
      return
    case 'none':
    case 'load':
      return
  }
}

/** The op-specific arguments of an instruction. */
function argsOf(node: LazyNode): number[] {
  const args: number[] = []
  pushArgs(args, node)
  return args
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
  // Identical views of one value (every `x.add(1)` broadcasts the constant 1
  // anew) become one instruction, so a fused kernel reads each value once.
  const views = new Map<string, number>()
  for (const k of kernels) {
    const node = k.root
    const reduction = k.kind === 'fused' && !k.members.includes(node)
    if (k.kind === 'view') {
      const src = idOf(node.srcs[0]!)
      const key = `${node.op}|${node.shape.join(',')}|${argsOf(node).join(',')}|${src}`
      const known = views.get(key)
      if (known !== undefined) ids.set(node, known)
      else {
        emit(node, [src], argsOf(node), OP_CODE[node.op])
        views.set(key, count - 1)
      }
      continue
    }
    if (k.kind !== 'fused' || (k.members.length === 1 && !reduction && !k.matmul)) {
      emit(node, node.srcs.map(idOf), argsOf(node), OP_CODE[node.op])
      continue
    }
    // Register r reads the r-th distinct value; with a matmul prologue,
    // register 0 is the product and the instruction's first two sources are
    // its operands.
    const first = k.matmul ? 1 : 0
    const register = new Map<LazyNode, number>()
    if (k.matmul) register.set(k.matmul, 0)
    const distinct: number[] = []
    const registerOfId = new Map<number, number>()
    for (const s of k.srcs) {
      if (s === k.matmul) continue
      const id = idOf(s)
      let r = registerOfId.get(id)
      if (r === undefined) {
        r = first + distinct.length
        registerOfId.set(id, r)
        distinct.push(id)
      }
      register.set(s, r)
    }
    const srcIds = k.matmul ? [...k.matmul.srcs.map(idOf), ...distinct] : distinct
    const nRegisters = first + distinct.length
    const steps: number[] = [k.members.length]
    k.members.forEach((m, j) => {
      const operands = m.srcs.map((s) => register.get(s)!)
      steps.push(OP_CODE[m.op], DTYPE_CODE[m.dtype], operands.length, ...operands)
      register.set(m, nRegisters + j)
    })
    emit(node, srcIds, argsOf(node), FUSED + OP_CODE[k.matmul ? 'matmul' : node.op])
    words.push(...steps)
  }
  words[0] = count
  words.push(targets.length)
  targets.forEach((t, i) => words.push(ids.get(t)!, i))
  return new Float64Array(words)
}

/**
 * The numbers describing a realize's graph structure: ops, dtypes, shapes,
 * arguments, which nodes read which, and the dtype and shape of every
 * realized input, but not values. Written in place on every realize (one
 * long-lived array: a tiny realize allocates little); a copy keys the cache.
 *
 * Numbers are int32 words: almost all are small integers, written as one
 * word; any other number (a fractional pad value, -0, a huge index) is
 * written as {@link WIDE} and its two float64 words, so no two different
 * sequences of numbers share a key.
 */
class StructureKey {
  words = new Int32Array(1024)
  length = 0
  /** The float64 bits of a wide number. */
  private readonly wide = new Float64Array(1)
  private readonly wideWords = new Int32Array(this.wide.buffer)

  push(value: number): void {
    if (this.length + 3 > this.words.length) {
      const grown = new Int32Array(2 * this.words.length)
      grown.set(this.words)
      this.words = grown
    }
    if ((value | 0) === value && value !== WIDE && (value !== 0 || 1 / value > 0)) {
      this.words[this.length++] = value
    } else {
      this.wide[0] = value
      this.words[this.length++] = WIDE
      this.words[this.length++] = this.wideWords[0]!
      this.words[this.length++] = this.wideWords[1]!
    }
  }

  /** Appends a node's op, dtype, shape and arguments. */
  pushNode(node: LazyNode): void {
    this.push(OP_CODE[node.op])
    this.pushShape(node.dtype, node.shape)
    const at = this.length
    this.push(0)
    pushArgs(this, node)
    this.words[at] = this.length - at - 1
  }

  pushShape(dtype: DType, shape: readonly number[]): void {
    this.push(DTYPE_CODE[dtype])
    this.push(shape.length)
    for (let d = 0; d < shape.length; d++) this.push(shape[d]!)
  }

  /** A 52-bit FNV-style hash of the words (a hit is confirmed by comparing all). */
  hash(): number {
    let h1 = 0x811c9dc5
    let h2 = 0x01000193
    const words = this.words
    for (let i = 0; i < this.length; i++) {
      const w = words[i]!
      h1 = Math.imul(h1 ^ w, 0x01000193)
      h2 = Math.imul(h2 ^ w, 0x5bd1e995) ^ (h2 >>> 15)
    }
    return (h1 >>> 0) * 0x100000 + ((h2 >>> 0) & 0xfffff)
  }

  /** Whether `other` (a copy of an earlier key's words) holds the same words. */
  equals(other: Int32Array): boolean {
    if (other.length !== this.length) return false
    const words = this.words
    for (let i = 0; i < other.length; i++) if (words[i] !== other[i]) return false
    return true
  }

  /** A copy of the key's words, to keep in the cache. */
  copy(): Int32Array {
    return this.words.slice(0, this.length)
  }
}

/** Marks a number of the structure key that takes three words (see {@link StructureKey}). */
const WIDE = -0x80000000

const structureKey = new StructureKey()

/** A cached program: the structure it was encoded for and its words. */
interface CachedProgram {
  structure: Int32Array
  words: Float64Array
}

/**
 * Encoded programs by graph structure (see {@link StructureKey}): the second
 * and later steps of a training loop skip scheduling and encoding. Keyed by
 * the structure's hash; a hit is confirmed by comparing the whole structure.
 */
const programCache = new Map<number, CachedProgram>()
const PROGRAM_CACHE_SIZE = 512
/** The program the last realize ran: a loop realizing one structure finds it without hashing. */
let lastProgram: CachedProgram | null = null

/**
 * The program computing `targets` (from `order`) and the buffers it reads: the
 * data of every realized node the graph reaches, input `k` being the k-th met.
 */
function encode(order: readonly LazyNode[], targets: readonly LazyNode[]): Encoded {
  // Node stamps stand for maps from nodes to their position in `order` and to
  // their input index (see `nextWalkStamp`).
  const inOrder = nextWalkStamp()
  for (let i = 0; i < order.length; i++) {
    order[i]!.walk = inOrder
    order[i]!.walkIndex = i
  }
  const isLeaf = nextWalkStamp()
  const leaves: LazyNode[] = []
  const key = structureKey
  key.length = 0
  for (const node of order) {
    key.pushNode(node)
    key.push(node.srcs.length)
    for (const src of node.srcs) {
      if (src.walk === inOrder) key.push(src.walkIndex)
      else if (src.walk === isLeaf) key.push(-1 - src.walkIndex)
      else {
        // a realized input: its index (negative), dtype and shape
        src.walk = isLeaf
        src.walkIndex = leaves.length
        key.push(-1 - leaves.length)
        key.pushShape(src.dtype, src.shape)
        leaves.push(src)
      }
    }
  }
  key.push(targets.length)
  for (const t of targets) key.push(t.walkIndex)
  let program = lastProgram
  let fresh = false
  if (program === null || !key.equals(program.structure)) {
    const hash = key.hash()
    const cached = programCache.get(hash)
    if (cached && key.equals(cached.structure)) program = cached
    else {
      program = { structure: key.copy(), words: encodeProgram(order, targets, new Map(leaves.map((leaf, k) => [leaf, k]))) }
      fresh = true
      if (programCache.size >= PROGRAM_CACHE_SIZE) programCache.delete(programCache.keys().next().value!)
      programCache.set(hash, program)
    }
    lastProgram = program
  }
  if (DEBUG_SCHEDULE && !fresh) console.error(`eclat schedule: cached program for ${targets.length} output(s)`)
  return { words: program.words, leaves }
}

/** Fresh output arrays for `targets`. */
function outputsFor(targets: readonly LazyNode[]): TypedArray[] {
  return targets.map((t) => outputBuffer(t.dtype, numel(t.shape)))
}

/**
 * One long-lived buffer for small synchronous realizes: the header, the
 * program, the inputs (copied in) and the outputs (copied out) all cross N-API
 * as this one array (see `realizeInArena` in the addon). Handing over one
 * typed array per input and output, and a fresh off-heap array per output,
 * cost more than a tiny kernel.
 */
const ARENA_BYTES = 64 * 1024
/** Realizes whose inputs and outputs total at most this many bytes use the arena. */
const ARENA_DATA = 8 * 1024
const arena = new ArrayBuffer(ARENA_BYTES)
const ARENA_WORDS = new Float64Array(arena)
const ARENA_BYTE_VIEW = new Uint8Array(arena)

/** Typed views of the arena, by dtype (copying typed array to typed array keeps the copy on V8's heap). */
const ARENA_VIEWS = {
  float32: new Float32Array(arena),
  float64: ARENA_WORDS,
  int32: new Int32Array(arena),
  bool: ARENA_BYTE_VIEW,
} as const

const align8 = (n: number): number => Math.ceil(n / 8) * 8

/** Where the arena's current header puts a program's buffers (byte offsets). */
interface ArenaLayout {
  words: Float64Array
  inputStarts: number[]
  inputBytes: number[]
  outputStarts: number[]
}

/**
 * The layout the arena holds now. A realize of the same program with inputs of
 * the same sizes (every step of a loop) only copies its inputs in.
 */
let arenaLayout: ArenaLayout | null = null

function holdsLayout(layout: ArenaLayout | null, p: Encoded): layout is ArenaLayout {
  if (layout === null || layout.words !== p.words || layout.inputBytes.length !== p.leaves.length) return false
  for (let k = 0; k < p.leaves.length; k++) if (p.leaves[k]!.data!.byteLength !== layout.inputBytes[k]) return false
  return true
}

/**
 * Lays out a realize in the arena when it fits: writes the header and the
 * program (unless the arena holds them already) and the inputs, and returns
 * the byte offsets where the outputs will be (or null when the realize is
 * too large).
 */
function intoArena(p: Encoded, targets: readonly LazyNode[]): number[] | null {
  let layout = arenaLayout
  if (!holdsLayout(layout, p)) {
    layout = arenaLayoutFor(p, targets)
    if (layout === null) return null
    arenaLayout = layout
  }
  for (let k = 0; k < p.leaves.length; k++) {
    const { data, dtype } = p.leaves[k]!
    const input = data!
    const view = ARENA_VIEWS[dtype]
    const first = layout.inputStarts[k]! / itemSize(dtype)
    // An element loop beats `set` (a call into the runtime) on a few elements.
    if (input.length <= 64) for (let i = 0; i < input.length; i++) view[first + i] = input[i]!
    else view.set(input, first)
  }
  if (poisonOutputs()) {
    targets.forEach((t, i) => {
      const start = layout.outputStarts[i]!
      ARENA_BYTE_VIEW.fill(0xff, start, start + numel(t.shape) * itemSize(t.dtype))
    })
  }
  return layout.outputStarts
}

/** Writes the header and program of `p` into the arena, or returns null when the realize does not fit. */
function arenaLayoutFor(p: Encoded, targets: readonly LazyNode[]): ArenaLayout | null {
  const nInputs = p.leaves.length
  const nBuffers = nInputs + targets.length
  const programAt = 2 + 2 * nBuffers
  const inputBytes = p.leaves.map((leaf) => leaf.data!.byteLength)
  const bufferBytes = [...inputBytes, ...targets.map((t) => numel(t.shape) * itemSize(t.dtype))]
  let offset = 8 * (programAt + 1 + p.words.length)
  const data = bufferBytes.reduce((sum, n) => sum + align8(n), 0)
  if (data > ARENA_DATA || offset + data > ARENA_BYTES) return null
  ARENA_WORDS[0] = nBuffers
  ARENA_WORDS[1] = nInputs
  const starts = bufferBytes.map((bytes, k) => {
    ARENA_WORDS[2 + 2 * k] = offset
    ARENA_WORDS[3 + 2 * k] = bytes
    const start = offset
    offset += align8(bytes)
    return start
  })
  ARENA_WORDS[programAt] = p.words.length
  ARENA_WORDS.set(p.words, programAt + 1)
  return { words: p.words, inputBytes, inputStarts: starts.slice(0, nInputs), outputStarts: starts.slice(nInputs) }
}

/** An output array (fresh or recycled) holding target `t`'s values, written at byte `start` of the arena. */
function copyOut(start: number, t: LazyNode): TypedArray {
  const first = start / itemSize(t.dtype)
  const out = outputBuffer(t.dtype, numel(t.shape))
  const view = ARENA_VIEWS[t.dtype]
  // An element loop beats `set` (which first makes a subarray) on a few elements.
  if (out.length <= 64) for (let i = 0; i < out.length; i++) out[i] = view[first + i]!
  else out.set(view.subarray(first, first + out.length))
  return out
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
    const starts = intoArena(p, targets)
    const outputs = starts ? null : outputsFor(targets)
    try {
      if (starts) loadAddon().realizeInArena(ARENA_BYTE_VIEW)
      else loadAddon().realizeSync(p.words, [...inputsOf(p), ...outputs!], p.leaves.length)
    } catch (e) {
      throw translate(e)
    }
    return starts ? targets.map((t, i) => copyOut(starts[i]!, t)) : outputs!
  },
  async runAsync(order, targets) {
    const p = encode(order, targets)
    const outputs = outputsFor(targets)
    // The kernels read and write these off the JavaScript thread: not recyclable meanwhile.
    const inUse = [...inputsOf(p), ...outputs]
    markBusy(inUse)
    try {
      await loadAddon().realizeAsync(p.words, inUse.map(bytesOf), p.leaves.length)
    } catch (e) {
      throw translate(e)
    } finally {
      release(inUse)
    }
    return outputs
  },
}
