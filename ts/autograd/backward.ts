/**
 * Reverse mode over the lazy graph. The driver orders the nodes, seeds and
 * accumulates cotangents, checks them, and stops at detached nodes; the rules
 * (`rules.ts`) only say how one primitive maps a cotangent to its sources.
 * Everything it builds is ordinary lazy nodes: nothing is computed here.
 */
import { isFloat } from '../dtype.js'
import { DTypeError, EclatError, ShapeError, fmtShape } from '../errors.js'
import type { LazyNode } from '../graph/node.js'
import { realizeNodes } from '../realize.js'
import { full, zeros } from '../creation.js'
import { gradLeaves, Tensor } from '../tensor.js'
import { VJP_RULES } from './rules.js'

/**
 * Options of `backward`.
 *
 * @example
 * backward(y, [x], { gradOutput: ones(y.shape) })
 */
export interface BackwardOptions {
  /** The cotangent of `y` (same shape); required unless `y` has one element. */
  gradOutput?: Tensor
}

/** The sources gradients flow into: a checkpointed segment's boundary, none for detached nodes. */
function gradSources(node: LazyNode): readonly LazyNode[] {
  if (node.flags.detached) return []
  return node.flags.segment ? node.flags.segment.boundary : node.srcs
}

/**
 * The nodes between `root` and any of `targets`, sources first (the spec's
 * GradContext visit): only nodes from which a target can be reached through
 * float data. Stops at `stop` nodes, whose own sources are not explored.
 */
function pathToTargets(root: LazyNode, targets: ReadonlySet<LazyNode>, stop: ReadonlySet<LazyNode>): LazyNode[] {
  const order: LazyNode[] = []
  const visited = new Set<LazyNode>([root])
  const stack: Array<[LazyNode, number]> = [[root, 0]]
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!
    const [node, i] = top
    const srcs = stop.has(node) ? [] : gradSources(node)
    if (i < srcs.length) {
      top[1] = i + 1
      const src = srcs[i]!
      if (!visited.has(src)) {
        visited.add(src)
        stack.push([src, 0])
      }
    } else {
      stack.pop()
      order.push(node)
    }
  }
  const reaches = new Set<LazyNode>()
  for (const node of order) {
    if (!isFloat(node.dtype)) continue
    if (targets.has(node) || (!stop.has(node) && gradSources(node).some((s) => reaches.has(s)))) reaches.add(node)
  }
  return order.filter((n) => reaches.has(n))
}

/**
 * Cotangents of every node on a path from `root` to `targets`, given the
 * cotangent `seed` of `root`. Checkpointed segments are recomputed here and
 * differentiated recursively.
 */
function cotangents(root: LazyNode, seed: Tensor, targets: ReadonlySet<LazyNode>, stop: ReadonlySet<LazyNode> = new Set()): Map<LazyNode, Tensor> {
  const path = pathToTargets(root, targets, stop)
  const onPath = new Set(path)
  const grads = new Map<LazyNode, Tensor>([[root, seed]])
  const accumulate = (node: LazyNode, g: Tensor | null, from: LazyNode) => {
    if (!g || !onPath.has(node)) return
    if (g.shape.length !== node.shape.length || g.shape.some((d, i) => d !== node.shape[i])) {
      throw new EclatError(`backward: the ${from.op} rule gave a cotangent of shape ${fmtShape(g.shape)} for a source of shape ${fmtShape(node.shape)}`)
    }
    const cast = g.cast(node.dtype)
    const prev = grads.get(node)
    grads.set(node, prev ? prev.add(cast) : cast)
  }
  for (let k = path.length - 1; k >= 0; k--) {
    const node = path[k]!
    const dy = grads.get(node)
    if (!dy || stop.has(node) || (targets.has(node) && gradSources(node).length === 0)) continue
    const segment = node.flags.segment
    if (segment) {
      const inner = cotangents(segment.recompute(), dy, new Set(segment.boundary), new Set(segment.boundary))
      for (const b of segment.boundary) accumulate(b, inner.get(b) ?? null, node)
      continue
    }
    if (node.flags.detached) continue
    const srcs = node.srcs.map((s) => new Tensor(s))
    const rule = VJP_RULES[node.op]
    const cts = rule({ srcs, out: new Tensor(node), dy, arg: node.arg })
    node.srcs.forEach((s, i) => accumulate(s, isFloat(s.dtype) ? (cts[i] ?? null) : null, node))
  }
  return grads
}

function seedFor(op: string, y: Tensor, gradOutput: Tensor | undefined): Tensor {
  if (!(y instanceof Tensor)) throw new EclatError(`${op}: y must be a Tensor`)
  if (!isFloat(y.dtype)) {
    throw new DTypeError(`${op}: cannot differentiate a ${y.dtype} tensor (shape ${fmtShape(y.shape)}); gradients need float32 or float64`)
  }
  if (gradOutput === undefined) {
    if (y.size !== 1) {
      throw new ShapeError(`${op}: y has shape ${fmtShape(y.shape)}; pass gradOutput of that shape, or reduce y to one element (e.g. with sum())`)
    }
    return full(y.shape, 1, { dtype: y.dtype })
  }
  if (!(gradOutput instanceof Tensor) || gradOutput.shape.length !== y.ndim || gradOutput.shape.some((d, i) => d !== y.shape[i])) {
    const got = gradOutput instanceof Tensor ? fmtShape(gradOutput.shape) : typeof gradOutput
    throw new ShapeError(`${op}: gradOutput must have y's shape ${fmtShape(y.shape)}, got ${got}`)
  }
  return gradOutput.cast(y.dtype)
}

/**
 * Gradients of `y` with respect to each tensor in `xs`, as lazy tensors (the
 * spec's `backward(&y, &[&x])`). A tensor `y` does not depend on gets zeros.
 *
 * @example
 * const x = randn([32, 64])
 * const dx = backward(x.mul(x).sum(), [x]).get(x) // 2·x
 */
export function backward(y: Tensor, xs: readonly Tensor[], opts: BackwardOptions = {}): Map<Tensor, Tensor> {
  const seed = seedFor('backward', y, opts.gradOutput)
  if (!Array.isArray(xs) || !xs.every((x) => x instanceof Tensor)) throw new EclatError('backward: xs must be an array of tensors')
  for (const x of xs) {
    if (!isFloat(x.dtype)) throw new DTypeError(`backward: cannot take a gradient with respect to a ${x.dtype} tensor (shape ${fmtShape(x.shape)})`)
  }
  const grads = cotangents(y.node, seed, new Set(xs.map((x) => x.node)))
  return new Map(xs.map((x) => [x, grads.get(x.node) ?? zeros(x.shape, { dtype: x.dtype })]))
}

/** Outputs `y.backward()` already ran on: a second call would add the same gradients again. */
const backpropagated = new WeakSet<LazyNode>()

/** `y.backward()`: adds gradients into `.grad` of every reachable leaf, realizing them (and y) together. */
export function accumulateBackward(y: Tensor, gradOutput: Tensor | undefined): void {
  const seed = seedFor('backward', y, gradOutput)
  if (backpropagated.has(y.node)) {
    throw new EclatError(
      `backward: already called on this tensor (shape ${fmtShape(y.shape)}); its gradients are in .grad. ` +
        'Compute the output again for another pass, or use backward(y, xs), which returns gradients without accumulating',
    )
  }
  backpropagated.add(y.node)
  const leaves: Tensor[] = []
  const seen = new Set<LazyNode>()
  const stack = [y.node]
  while (stack.length > 0) {
    const node = stack.pop()!
    if (seen.has(node)) continue
    seen.add(node)
    const leaf = gradLeaves.get(node)
    if (leaf) leaves.push(leaf)
    stack.push(...gradSources(node))
  }
  if (leaves.length === 0) return
  const grads = cotangents(y.node, seed, new Set(leaves.map((l) => l.node)))
  for (const leaf of leaves) {
    const g = grads.get(leaf.node)
    if (g) leaf.grad = leaf.grad ? leaf.grad.add(g) : g
  }
  realizeNodes([y.node, ...leaves.flatMap((l) => (l.grad ? [l.grad.node] : []))])
}

/**
 * Sets `.grad` of each tensor back to null.
 *
 * @example
 * zeroGrad(model.parameters())
 */
export function zeroGrad(tensors: Iterable<Tensor>): void {
  for (const t of tensors) t.grad = null
}
