import { itemSize } from './dtype.js'
import type { LazyNode } from './graph/node.js'
import type { Op } from './graph/ops.js'
import { numel } from './graph/shape.js'

/** Elementwise primitives: they fuse into one kernel. */
const ELEMENTWISE: ReadonlySet<Op> = new Set<Op>([
  'neg', 'recip', 'sqrt', 'exp2', 'log2', 'sin', 'cast', 'bitwiseNot',
  'add', 'mul', 'maximum', 'minimum', 'lt', 'eq', 'bitwiseAnd', 'bitwiseOr', 'bitwiseXor',
  'where',
])
const REDUCTIONS: ReadonlySet<Op> = new Set<Op>(['sum', 'max', 'min', 'prod'])
/** Elementwise primitives costing about one instruction: worth recomputing rather than writing out. */
const CHEAP: ReadonlySet<Op> = new Set<Op>([
  'neg', 'cast', 'bitwiseNot', 'add', 'mul', 'maximum', 'minimum', 'lt', 'eq',
  'bitwiseAnd', 'bitwiseOr', 'bitwiseXor', 'where',
])
/** View primitives cost nothing on realized data: the kernels read through strides. */
const VIEWS: ReadonlySet<Op> = new Set<Op>(['reshape', 'permute', 'expand', 'slice'])

/** One kernel of a realize. */
export interface Kernel {
  /**
   * `fused`: elementwise ops computed in one pass, with a reduction at its root
   * when `reduce` is set; `view`: a stride change (no work); `op`: any other
   * primitive (scan, gather, scatter, matmul, pad, a plain reduction).
   */
  readonly kind: 'fused' | 'view' | 'op'
  /** The node whose value the kernel produces. */
  readonly root: LazyNode
  /** For `fused`: the elementwise nodes in evaluation order (the root last unless it is a reduction). */
  readonly members: readonly LazyNode[]
  /** For `fused`: the values the kernel reads (sources outside it), in register order. */
  readonly srcs: readonly LazyNode[]
  /**
   * For `fused`: a matmul among `srcs` whose only reader is this kernel. It runs
   * as the kernel's prologue: each block of the product feeds the elementwise
   * ops (a bias add, an activation: the epilogue) while in cache.
   */
  readonly matmul?: LazyNode
  /** Why the root's value is written to memory. */
  readonly reason: string
}

/** Bytes a kernel reads for `node` (a broadcast reads its source once). */
function bytesRead(node: LazyNode): number {
  const read = node.op === 'expand' ? node.srcs[0]! : node
  return numel(read.shape) * itemSize(read.dtype)
}

/**
 * Groups the nodes of `order` (topological, every node to compute) into kernels:
 *
 * - An elementwise node joins the kernel of its consumers when every consumer is
 *   elementwise (or a reduction reading it) and all of them are in the same
 *   kernel: chains and trees fuse into one pass, and a reduction absorbs its
 *   elementwise producers (`x.mul(x).sum(1)` reads `x` once).
 * - Cost rule for a value read by several kernels: it is recomputed in each of
 *   them when it is one cheap op (a comparison, an add: {@link CHEAP}) whose
 *   operands are already in memory (inputs, views, other kernels' results;
 *   not a matmul's product, which its readers may take as an epilogue)
 *   and the operand bytes those kernels do not already read are no more than
 *   materializing costs (reading the operands once, writing the result, and
 *   reading it back in each kernel): a ReLU's mask, read by its forward and
 *   its backward, is recomputed and never written. Otherwise it is computed
 *   once into a buffer (recomputing would repeat its whole subexpression per
 *   reader). A value read several times inside one kernel is computed once there.
 * - Views, scans, gather/scatter, pad and matmul are kernel boundaries: their
 *   computed inputs are materialized. Outputs are always materialized.
 */
export function schedule(order: readonly LazyNode[], targets: readonly LazyNode[]): Kernel[] {
  const consumers = new Map<LazyNode, LazyNode[]>()
  for (const node of order) {
    for (const src of node.srcs) {
      const list = consumers.get(src)
      if (list) list.push(node)
      else consumers.set(src, [node])
    }
  }
  const outputs = new Set(targets)
  /** The roots of the kernels each node is computed in (one, unless recomputed). */
  const kernelsOf = new Map<LazyNode, readonly LazyNode[]>()
  /** The values each kernel's members read so far (the pass goes consumers first). */
  const reads = new Map<LazyNode, Set<LazyNode>>()
  const join = (node: LazyNode, kernels: readonly LazyNode[]) => {
    kernelsOf.set(node, kernels)
    for (const k of kernels) {
      let set = reads.get(k)
      if (!set) reads.set(k, (set = new Set()))
      for (const src of node.srcs) set.add(src)
    }
  }
  // A matmul's product is not in memory when its readers can run as its
  // epilogue (below): an add of a bias stays there, computed once in cache.
  const inMemory = (src: LazyNode) => src.data !== null || (!ELEMENTWISE.has(src.op) && src.op !== 'matmul')
  /** The cost rule above, for `node` read by `kernels`. */
  const recompute = (node: LazyNode, readers: readonly LazyNode[]) => {
    if (!CHEAP.has(node.op) || !node.srcs.every(inMemory)) return false
    let extra = 0
    for (const k of readers) for (const src of node.srcs) if (!reads.get(k)!.has(src)) extra += bytesRead(src)
    const operands = node.srcs.reduce((sum, src) => sum + bytesRead(src), 0)
    return extra <= operands + bytesRead(node) * (1 + readers.length)
  }
  const reasons = new Map<LazyNode, string>()
  for (let i = order.length - 1; i >= 0; i--) {
    const node = order[i]!
    if (!ELEMENTWISE.has(node.op)) {
      join(node, [node])
      reasons.set(node, VIEWS.has(node.op) ? 'a view' : REDUCTIONS.has(node.op) ? 'a reduction' : `${node.op} is a kernel boundary`)
      continue
    }
    const users = consumers.get(node) ?? []
    let reason = ''
    /** The kernels its users are computed in. */
    let readers: LazyNode[] = []
    if (outputs.has(node)) reason = 'an output'
    else if (users.length === 0) reason = 'unused'
    else {
      const blocker = users.find((u) => !ELEMENTWISE.has(u.op) && !REDUCTIONS.has(u.op))
      if (blocker) reason = `read by ${blocker.op}`
      else {
        readers = [...new Set(users.flatMap((u) => kernelsOf.get(u)!))]
        if (readers.length > 1 && !recompute(node, readers)) reason = `read by ${readers.length} kernels`
      }
    }
    if (reason) {
      join(node, [node])
      reasons.set(node, reason)
    } else {
      join(node, readers)
    }
  }
  const members = new Map<LazyNode, LazyNode[]>()
  for (const node of order) {
    if (!ELEMENTWISE.has(node.op)) continue
    for (const root of kernelsOf.get(node)!) {
      const list = members.get(root)
      if (list) list.push(node)
      else members.set(root, [node])
    }
  }
  const kernels: Kernel[] = []
  for (const node of order) {
    if (!reasons.has(node)) continue
    const inside = members.get(node) ?? []
    const fused = ELEMENTWISE.has(node.op) || (REDUCTIONS.has(node.op) && inside.length > 0)
    const set = new Set(inside)
    const srcs: LazyNode[] = []
    if (fused) {
      const seen = new Set<LazyNode>()
      const reading = REDUCTIONS.has(node.op) ? [...inside, node] : inside
      for (const m of reading) {
        for (const s of m.srcs) {
          if (!set.has(s) && !seen.has(s)) {
            seen.add(s)
            srcs.push(s)
          }
        }
      }
    }
    // A matmul read only by this (elementwise) kernel becomes its prologue.
    const matmul = fused && ELEMENTWISE.has(node.op)
      ? srcs.find((s) => s.op === 'matmul' && !outputs.has(s) && !s.data && consumers.get(s)!.every((u) => set.has(u)))
      : undefined
    kernels.push({
      kind: fused ? 'fused' : VIEWS.has(node.op) ? 'view' : 'op',
      root: node,
      members: inside,
      srcs,
      reason: reasons.get(node)!,
      ...(matmul ? { matmul } : {}),
    })
  }
  const prologues = new Set(kernels.map((k) => k.matmul).filter((m) => m !== undefined))
  return kernels.filter((k) => !prologues.has(k.root))
}

/** A one-line description of a kernel, for `ECLAT_DEBUG=schedule` and `explainRealize`. */
export function describeKernel(k: Kernel): string {
  const n = k.root
  const type = `${n.dtype}[${n.shape.join(',')}]`
  if (k.kind === 'view') return `view    ${n.op} -> ${type}`
  if (k.kind === 'op') return `kernel  ${n.op} -> ${type} (${k.reason})`
  const ops = k.members.map((m) => m.op).join(',')
  const what = REDUCTIONS.has(n.op) ? `${n.op}(fused[${ops}])` : k.matmul ? `matmul+fused[${ops}]` : `fused[${ops}]`
  const inner = k.members.length - (REDUCTIONS.has(n.op) ? 0 : 1)
  return `kernel  ${what} -> ${type} reads ${k.srcs.length} value(s), ${inner} intermediate(s) kept in registers; written: ${k.reason}`
}
