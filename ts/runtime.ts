import { loadAddon } from './backend/native.js'
import { defaultBackend, pendingNodes, realizeNodes, realizeNodesAsync, scheduleOrder, setDefaultBackend } from './realize.js'
import { describeKernel, schedule, type Kernel } from './schedule.js'
import type { Tensor } from './tensor.js'

/**
 * Threads the native kernels use (`ECLAT_NUM_THREADS`, or the machine's cores).
 *
 * @example
 * console.log(numThreads())
 */
export function numThreads(): number {
  return loadAddon().numThreads()
}

/**
 * The SIMD instruction set Eclat's kernels run with: `'avx512'`, `'avx2'`,
 * `'neon'` or `'scalar'` (the architecture's baseline). The widest this CPU
 * offers, detected at run time, unless `ECLAT_SIMD` names a lower one it supports.
 *
 * @example
 * console.log(simdLevel())
 */
export function simdLevel(): string {
  return loadAddon().simdLevel()
}

/**
 * Every SIMD level this CPU can run, lowest first (values for `ECLAT_SIMD`).
 *
 * @example
 * supportedSimdLevels() // e.g. ['scalar', 'avx2', 'avx512']
 */
export function supportedSimdLevels(): string[] {
  return loadAddon().supportedSimdLevels()
}

/**
 * The backend realizing graphs: `'native'` (the Rust kernels) or `'reference'`
 * (the pure-TypeScript interpreter), chosen with `setBackend` or `ECLAT_BACKEND`.
 *
 * @example
 * console.log(backendName())
 */
export function backendName(): 'native' | 'reference' {
  return defaultBackend().name
}

/**
 * Chooses the backend of every later realize: `'native'` (the Rust kernels, the
 * default) or `'reference'` (the slow pure-TypeScript interpreter, the oracle
 * of the tests). Overrides `ECLAT_BACKEND`.
 *
 * @example
 * setBackend('reference')
 */
export function setBackend(name: 'native' | 'reference'): void {
  setDefaultBackend(name)
}

/**
 * Computes several tensors in ONE call into the kernels (shared subgraphs run
 * once), e.g. a loss, a metric and the gradients of a training step.
 *
 * @example
 * realize([loss, accuracy, ...grads.values()])
 */
export function realize(tensors: readonly Tensor[]): void {
  realizeNodes(tensors.map((t) => t.node))
}

/**
 * Like `realize`, with the kernels running off the JavaScript thread.
 *
 * @example
 * await realizeAsync([loss, accuracy])
 */
export async function realizeAsync(tensors: readonly Tensor[]): Promise<void> {
  await realizeNodesAsync(tensors.map((t) => t.node))
}

/** One kernel of a realize, as `explainRealize` reports it. */
export interface KernelInfo {
  /** `fused`: elementwise ops in one pass (with a reduction at the root when `op` is one); `view`: a stride change; `op`: another primitive. */
  readonly kind: Kernel['kind']
  /** The primitive at the kernel's root. */
  readonly op: string
  /** For `fused`: the ops computed in the pass, in order (a leading `matmul` is a prologue whose product never reaches memory). */
  readonly fused: readonly string[]
  readonly shape: readonly number[]
  readonly dtype: string
  /** For `fused`: how many values (inputs or other kernels' results) it reads. */
  readonly reads: number
  /** Why the kernel's value is written to memory (an output, read by several kernels, ...). */
  readonly written: string
  /** The line `ECLAT_DEBUG=schedule` prints for it. */
  readonly description: string
}

/**
 * The kernels realizing `tensors` would run, without running them: what fused,
 * what is written to memory and why. `ECLAT_DEBUG=schedule` prints the same for
 * every realize.
 *
 * @example
 * const x = rand([1024])
 * explainRealize([x.sin().mul(x.exp2()).add(x.sqrt())]).length // 1: one fused kernel
 */
export function explainRealize(tensors: readonly Tensor[]): KernelInfo[] {
  const pending = pendingNodes(tensors.map((t) => t.node))
  if (pending.length === 0) return []
  return schedule(scheduleOrder(pending), pending).map((k) => ({
    kind: k.kind,
    op: k.root.op,
    fused: k.matmul ? ['matmul', ...k.members.map((m) => m.op)] : k.members.map((m) => m.op),
    shape: k.root.shape,
    dtype: k.root.dtype,
    reads: k.srcs.length,
    written: k.reason,
    description: describeKernel(k),
  }))
}
