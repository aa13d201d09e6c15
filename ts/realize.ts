import type { TypedArray } from './dtype.js'
import { EclatError } from './errors.js'
import { nextWalkStamp, type LazyNode } from './graph/node.js'
import { nativeBackend } from './backend/native.js'
import { referenceBackend } from './backend/reference.js'

/** Something that computes the data of graph nodes. */
export interface Backend {
  readonly name: 'native' | 'reference'
  /** Computes `targets` (given in `order`, a topological list of every node to compute). */
  run(order: readonly LazyNode[], targets: readonly LazyNode[]): TypedArray[]
  /** Like `run`, off the JavaScript thread where the backend can. */
  runAsync(order: readonly LazyNode[], targets: readonly LazyNode[]): Promise<TypedArray[]>
}

const BACKENDS = { native: nativeBackend, reference: referenceBackend } as const

let current: Backend | null = null

/** The backend realizing graphs: set by `setBackend`, else named by `ECLAT_BACKEND` (`native`, the default, or `reference`) when first needed. */
export function defaultBackend(): Backend {
  return (current ??= backendByName(process.env['ECLAT_BACKEND'] ?? 'native', 'ECLAT_BACKEND='))
}

/** Makes `name` the backend of every later realize. */
export function setDefaultBackend(name: string): void {
  current = backendByName(name, 'setBackend: ')
}

export function backendByName(name: string, context = ''): Backend {
  if (name !== 'native' && name !== 'reference') {
    throw new EclatError(`${context}${name}: expected 'native' or 'reference'`)
  }
  return BACKENDS[name]
}

/** The walk's stack of nodes and of the next source to visit in each (empty between walks). */
const stackNodes: LazyNode[] = []
const stackNext: number[] = []

/**
 * The nodes that must be computed to know `targets`, sources before users:
 * everything reachable that has no data yet. Iterative, so deep graphs cannot
 * overflow the stack. Throws if it reaches an input that was never assigned.
 */
export function scheduleOrder(targets: readonly LazyNode[]): LazyNode[] {
  const order: LazyNode[] = []
  const stamp = nextWalkStamp()
  for (const t of targets) {
    if (t.walk === stamp || t.data) continue
    t.walk = stamp
    stackNodes.push(t)
    stackNext.push(0)
    while (stackNodes.length > 0) {
      const top = stackNodes.length - 1
      const node = stackNodes[top]!
      const i = stackNext[top]!
      if (node.arg.kind === 'load' && !node.data) {
        stackNodes.length = stackNext.length = 0
        throw new EclatError(`realize: input '${node.arg.slot.name}' has no data; give it some with assign() first`)
      }
      if (i < node.srcs.length) {
        stackNext[top] = i + 1
        const src = node.srcs[i]!
        if (src.walk !== stamp && !src.data) {
          src.walk = stamp
          stackNodes.push(src)
          stackNext.push(0)
        }
      } else {
        stackNodes.pop()
        stackNext.pop()
        order.push(node)
      }
    }
  }
  return order
}

/** Computes the data of `targets` with `backend` without caching it on the nodes. */
export function evaluate(targets: readonly LazyNode[], backend: Backend = defaultBackend()): TypedArray[] {
  const pending = targets.filter((t) => !t.data)
  const computed = pending.length > 0 ? backend.run(scheduleOrder(pending), pending) : []
  return targets.map((t) => t.data ?? computed[pending.indexOf(t)]!)
}

/** The distinct targets that have no data yet: what a realize must compute. */
export function pendingNodes(targets: readonly LazyNode[]): LazyNode[] {
  if (targets.length === 1) return targets[0]!.data ? [] : [targets[0]!]
  return [...new Set(targets)].filter((t) => !t.data)
}

/** Computes and caches the data of every target that has none, in one backend call. */
export function realizeNodes(targets: readonly LazyNode[], backend: Backend = defaultBackend()): void {
  const pending = pendingNodes(targets)
  if (pending.length === 0) return
  const results = backend.run(scheduleOrder(pending), pending)
  pending.forEach((t, i) => (t.realized = results[i]!))
}

/** Like `realizeNodes`, with the kernels running off the JavaScript thread. */
export async function realizeNodesAsync(targets: readonly LazyNode[], backend: Backend = defaultBackend()): Promise<void> {
  const pending = pendingNodes(targets)
  if (pending.length === 0) return
  const results = await backend.runAsync(scheduleOrder(pending), pending)
  pending.forEach((t, i) => (t.realized = results[i]!))
}
