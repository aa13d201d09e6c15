import { noGrad } from '../autograd/mode.js'
import { isFloat } from '../dtype.js'
import { EclatError } from '../errors.js'
import { realizeNodes } from '../realize.js'
import { Tensor } from '../tensor.js'

/**
 * Per-parameter optimizer state (momentum buffers, moments).
 *
 * @example
 * const state: ParamState = { m: zeros([3]), v: zeros([3]) }
 */
export type ParamState = Record<string, Tensor>

/**
 * The base of the optimizers: `step()` builds every parameter's update lazily
 * and realizes all of them (and the new state) in ONE call into the kernels.
 *
 * @example
 * const opt = new SGD(model.parameters(), { lr: 0.1 })
 * opt.zeroGrad(); loss.backward(); opt.step()
 */
export abstract class Optimizer {
  readonly params: Tensor[]
  /** The learning rate; schedulers change it between steps. */
  lr: number
  /** Steps taken so far. */
  stepCount = 0
  protected readonly state = new Map<Tensor, ParamState>()

  constructor(params: Iterable<Tensor>, lr: number) {
    const name = this.constructor.name
    if (params === null || typeof params !== 'object' || !(Symbol.iterator in Object(params))) throw new EclatError(`${name}: params must be an iterable of tensors`)
    this.params = [...params]
    if (this.params.length === 0) throw new EclatError(`${name}: got an empty parameter list`)
    for (const [i, p] of this.params.entries()) {
      if (!(p instanceof Tensor)) throw new EclatError(`${name}: parameter ${i} is not a Tensor`)
      if (!isFloat(p.dtype) || !p.requiresGrad) throw new EclatError(`${name}: parameter ${i} must be a float tensor that requires gradients`)
    }
    this.lr = positive(name, 'lr', lr, true)
  }

  /** The new value of `p` (and its new state), built lazily from its gradient. */
  protected abstract update(p: Tensor, grad: Tensor, state: ParamState): [Tensor, ParamState]

  /** Clears every parameter's `.grad`. */
  zeroGrad(): void {
    for (const p of this.params) p.grad = null
  }

  /** Updates every parameter that has a gradient, in one realize. */
  step(): void {
    this.stepCount++
    const updates = noGrad(() =>
      this.params.flatMap((p) => (p.grad ? [[p, ...this.update(p, p.grad, this.state.get(p) ?? {})] as const] : [])),
    )
    realizeNodes(updates.flatMap(([, value, state]) => [value.node, ...Object.values(state).map((t) => t.node)]))
    for (const [p, value, state] of updates) {
      p.assign(value)
      // Keep only the data: the state must not hold on to this step's graph.
      this.state.set(p, Object.fromEntries(Object.entries(state).map(([k, t]) => [k, t.detach()])))
    }
  }
}

/** Checks a hyperparameter: a finite number, ≥ 0 with `allowZero`, else > 0. */
export function positive(op: string, name: string, v: unknown, allowZero: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    throw new EclatError(`${op}: ${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(v)}`)
  }
  return v
}
