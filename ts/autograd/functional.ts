/** JAX-style function transforms over `backward`, and gradient checkpointing. */
import { EclatError } from '../errors.js'
import { recordNodes, LazyNode, NO_ARG } from '../graph/node.js'
import { Tensor } from '../tensor.js'
import { backward } from './backward.js'

/**
 * Options of `grad` and `valueAndGrad`.
 *
 * @example
 * grad(f, { argnums: [0, 1] })
 */
export interface GradOptions {
  /** Which arguments to differentiate: an index (default 0) or a list of indices. */
  argnums?: number | readonly number[]
}

/**
 * The gradient(s) a `grad`-transformed function returns: one tensor, or one per index.
 *
 * @example
 * const [dx, dy]: Grads<{ argnums: [0, 1] }> = grad(f, { argnums: [0, 1] })(x, y)
 */
export type Grads<O extends GradOptions> = O['argnums'] extends readonly number[] ? Tensor[] : Tensor

function argIndices(argnums: number | readonly number[] | undefined, n: number): number[] {
  const list = argnums === undefined ? [0] : typeof argnums === 'number' ? [argnums] : [...argnums]
  for (const i of list) {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new EclatError(`grad: argnums ${i} is out of range for ${n} arguments`)
  }
  return list
}

function gradsOf(y: Tensor, args: readonly Tensor[], argnums: number | readonly number[] | undefined): Tensor | Tensor[] {
  const indices = argIndices(argnums, args.length)
  const xs = indices.map((i) => {
    const a = args[i]
    if (!(a instanceof Tensor)) throw new EclatError(`grad: argument ${i} is not a Tensor`)
    return a
  })
  const grads = backward(y, xs)
  const list = xs.map((x) => grads.get(x)!)
  return typeof argnums === 'object' ? list : list[0]!
}

/**
 * Turns `f` (returning a one-element tensor) into a function returning its
 * gradient with respect to argument `argnums` (default 0). Composable:
 * `grad(grad(f))` is the second derivative.
 *
 * @example
 * const df = grad((x: Tensor) => x.mul(x).mul(x).sum())
 * df(tensor([2])).toArray() // [12]
 */
export function grad<A extends Tensor[], O extends GradOptions = GradOptions>(f: (...args: A) => Tensor, opts?: O): (...args: A) => Grads<O> {
  return (...args: A) => gradsOf(f(...args), args, opts?.argnums) as Grads<O>
}

/**
 * Like `grad`, returning `[value, gradient]`.
 *
 * @example
 * const [loss, dw] = valueAndGrad(lossFn)(w)
 */
export function valueAndGrad<A extends Tensor[], O extends GradOptions = GradOptions>(
  f: (...args: A) => Tensor,
  opts?: O,
): (...args: A) => [Tensor, Grads<O>] {
  return (...args: A) => {
    const y = f(...args)
    return [y, gradsOf(y, args, opts?.argnums) as Grads<O>]
  }
}

/**
 * Evaluates `f` at `primals` and returns its output with a function mapping a
 * cotangent of the output (same shape) to one cotangent per primal.
 *
 * @example
 * const [y, pullback] = vjp((x) => x.sin(), x)
 * const [dx] = pullback(ones(y.shape))
 */
export function vjp(f: (...args: Tensor[]) => Tensor, ...primals: Tensor[]): [Tensor, (cotangent: Tensor) => Tensor[]] {
  const out = f(...primals)
  return [
    out,
    (cotangent: Tensor) => {
      const grads = backward(out, primals, { gradOutput: cotangent })
      return primals.map((p) => grads.get(p)!)
    },
  ]
}

/**
 * Gradient checkpointing: runs `fn(...inputs)` but keeps only what it reads for
 * backward; its intermediates are recomputed when gradients are computed, so a
 * deep stack of segments holds one segment's activations at a time.
 * Gradients are identical with and without it.
 *
 * @example
 * let h = x
 * for (const layer of layers) h = checkpoint((t) => layer(t), h)
 */
export function checkpoint<A extends Tensor[]>(fn: (...inputs: A) => Tensor, ...inputs: A): Tensor {
  const [out, created] = recordNodes(() => fn(...inputs))
  if (!(out instanceof Tensor)) throw new EclatError('checkpoint: fn must return a Tensor')
  const boundary = new Set<LazyNode>()
  for (const node of created) for (const s of node.srcs) if (!created.has(s)) boundary.add(s)
  if (!created.has(out.node)) boundary.add(out.node)
  const segment = { recompute: () => fn(...inputs).node, boundary: [...boundary] }
  const node = new LazyNode('reshape', [out.node], NO_ARG, out.shape, out.dtype, { segment })
  return new Tensor(node)
}
