import type { DType, TypedArray } from '../dtype.js'
import type { Op } from './ops.js'

/** Where the data of a `load` node lives; an input's slot is empty until assigned. */
export interface DataSlot {
  data: TypedArray | null
  /** Shown in errors about missing data. */
  readonly name: string
}

/** The per-op arguments a node carries (axes, orders, ranges, fill values). */
export type NodeArg =
  | { readonly kind: 'none' }
  | { readonly kind: 'load'; readonly slot: DataSlot }
  | { readonly kind: 'axes'; readonly axes: readonly number[] }
  | { readonly kind: 'order'; readonly order: readonly number[] }
  | { readonly kind: 'slice'; readonly starts: readonly number[]; readonly steps: readonly number[] }
  | { readonly kind: 'pad'; readonly before: readonly number[]; readonly value: number }
  | { readonly kind: 'scan'; readonly axis: number; readonly reverse: boolean }
  | { readonly kind: 'axis'; readonly axis: number }

export const NO_ARG: NodeArg = { kind: 'none' }

/**
 * A checkpointed segment (see `checkpoint`): the node is the segment's output,
 * and backward recomputes the segment from the nodes it read instead of keeping
 * its intermediates.
 */
export interface Segment {
  /** Builds the segment again (new nodes over the same boundary nodes). */
  readonly recompute: () => LazyNode
  /** The nodes from outside the segment that it reads. */
  readonly boundary: readonly LazyNode[]
}

/** Collects the nodes created while a checkpointed function runs. */
const recorders: Set<LazyNode>[] = []

/** Runs `fn`, returning its result and every node created meanwhile. */
export function recordNodes<T>(fn: () => T): [T, Set<LazyNode>] {
  const created = new Set<LazyNode>()
  recorders.push(created)
  try {
    return [fn(), created]
  } finally {
    recorders.pop()
  }
}

/** Optional flags of a node. */
export interface NodeFlags {
  /** Gradients stop here (`detach`, `noGrad`). */
  readonly detached?: boolean
  readonly segment?: Segment
}

/** The last stamp {@link nextWalkStamp} handed out. */
let walkStamp = 0

/**
 * A stamp no node carries yet: a graph walk marks the nodes it meets with it
 * (in {@link LazyNode.walk}) instead of filling a Set or Map, which costs more
 * than the rest of a tiny realize.
 */
export function nextWalkStamp(): number {
  return ++walkStamp
}

/**
 * One node of the lazy graph: a primitive applied to source nodes. Nodes never
 * change, except that realizing one caches its data in `realized` (and graph
 * walks keep scratch numbers in `walk` and `walkIndex`).
 */
export class LazyNode {
  /** The node's data once computed (always set for `load` nodes that have data). */
  realized: TypedArray | null = null
  /** Scratch of graph walks: the stamp of the last walk that met this node. */
  walk = 0
  /** Scratch of the walk named by `walk`: the node's index in what it builds. */
  walkIndex = 0

  constructor(
    readonly op: Op,
    readonly srcs: readonly LazyNode[],
    readonly arg: NodeArg,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly flags: NodeFlags = {},
  ) {
    for (const r of recorders) r.add(this)
  }

  /** The node's data if known without computing: realized, or a filled input slot. */
  get data(): TypedArray | null {
    if (this.realized) return this.realized
    return this.arg.kind === 'load' ? this.arg.slot.data : null
  }
}
