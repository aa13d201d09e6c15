import { loadAddon } from './backend/native.js'
import { defaultBackend, realizeNodes, realizeNodesAsync } from './realize.js'
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
 * The widest SIMD instruction set this CPU offers to Eclat's kernels, detected
 * at run time: `'avx512'`, `'avx2'`, `'neon'` or `'scalar'`.
 *
 * @example
 * console.log(simdLevel())
 */
export function simdLevel(): string {
  return loadAddon().simdLevel()
}

/**
 * The backend realizing graphs: `'native'` (the Rust kernels) or `'reference'`
 * (the pure-TypeScript interpreter), chosen with `ECLAT_BACKEND`.
 *
 * @example
 * console.log(backendName())
 */
export function backendName(): 'native' | 'reference' {
  return defaultBackend().name
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
