import { loadAddon } from './backend/native.js'
import { defaultBackend } from './realize.js'

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
 * The backend realizing graphs: `'native'` (the Rust kernels) or `'reference'`
 * (the pure-TypeScript interpreter), chosen with `ECLAT_BACKEND`.
 *
 * @example
 * console.log(backendName())
 */
export function backendName(): 'native' | 'reference' {
  return defaultBackend().name
}
