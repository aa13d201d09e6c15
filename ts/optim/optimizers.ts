import { EclatError } from '../errors.js'
import type { Tensor } from '../tensor.js'
import { Optimizer, positive, type ParamState } from './optimizer.js'

/**
 * Options of `SGD` (PyTorch's names and defaults).
 *
 * @example
 * new SGD(params, { lr: 0.1, momentum: 0.9 })
 */
export interface SGDOptions {
  lr: number
  momentum?: number
  dampening?: number
  nesterov?: boolean
  weightDecay?: number
}

/**
 * Stochastic gradient descent with optional momentum, Nesterov momentum and
 * L2 weight decay, as `torch.optim.SGD`.
 *
 * @example
 * const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9, nesterov: true })
 */
export class SGD extends Optimizer {
  readonly momentum: number
  readonly dampening: number
  readonly nesterov: boolean
  readonly weightDecay: number

  constructor(params: Iterable<Tensor>, { lr, momentum = 0, dampening = 0, nesterov = false, weightDecay = 0 }: SGDOptions) {
    super(params, lr)
    this.momentum = positive('SGD', 'momentum', momentum, true)
    this.dampening = positive('SGD', 'dampening', dampening, true)
    this.weightDecay = positive('SGD', 'weightDecay', weightDecay, true)
    this.nesterov = nesterov
    if (nesterov && (momentum === 0 || dampening !== 0)) throw new EclatError('SGD: nesterov needs momentum > 0 and no dampening')
  }

  protected update(p: Tensor, grad: Tensor, state: ParamState): [Tensor, ParamState] {
    let g = this.weightDecay ? grad.add(p.mul(this.weightDecay)) : grad
    if (!this.momentum) return [p.sub(g.mul(this.lr)), {}]
    const prev = state['momentum']
    const buf = prev ? prev.mul(this.momentum).add(g.mul(1 - this.dampening)) : g
    g = this.nesterov ? g.add(buf.mul(this.momentum)) : buf
    return [p.sub(g.mul(this.lr)), { momentum: buf }]
  }
}

/**
 * Options of `Adam` and `AdamW`.
 *
 * @example
 * new Adam(params, { lr: 1e-3, betas: [0.9, 0.999] })
 */
export interface AdamOptions {
  lr?: number
  betas?: readonly [number, number]
  eps?: number
  weightDecay?: number
}

/**
 * Adam (`torch.optim.Adam`): bias-corrected first and second moments; weight
 * decay, if any, is added to the gradient (L2).
 *
 * @example
 * const opt = new Adam(model.parameters(), { lr: 1e-3 })
 */
export class Adam extends Optimizer {
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  /** AdamW applies decay to the weights directly instead of to the gradient. */
  protected readonly decoupled: boolean = false

  constructor(params: Iterable<Tensor>, { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0 }: AdamOptions = {}) {
    super(params, lr)
    const name = this.constructor.name
    if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => typeof b === 'number' && b >= 0 && b < 1)) {
      throw new EclatError(`${name}: betas must be two numbers in [0, 1), got ${JSON.stringify(betas)}`)
    }
    ;[this.beta1, this.beta2] = betas
    this.eps = positive(name, 'eps', eps, false)
    this.weightDecay = positive(name, 'weightDecay', weightDecay, true)
  }

  protected update(p: Tensor, grad: Tensor, state: ParamState): [Tensor, ParamState] {
    const { beta1, beta2, eps, weightDecay, lr } = this
    const t = this.stepCount
    const g = weightDecay && !this.decoupled ? grad.add(p.mul(weightDecay)) : grad
    const m = state['m'] ? state['m'].mul(beta1).add(g.mul(1 - beta1)) : g.mul(1 - beta1)
    const v = state['v'] ? state['v'].mul(beta2).add(g.mul(g).mul(1 - beta2)) : g.mul(g).mul(1 - beta2)
    const mHat = m.div(1 - beta1 ** t)
    const vHat = v.div(1 - beta2 ** t)
    const base = weightDecay && this.decoupled ? p.mul(1 - lr * weightDecay) : p
    return [base.sub(mHat.div(vHat.sqrt().add(eps)).mul(lr)), { m, v }]
  }
}

/**
 * AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay (default 0.01).
 *
 * @example
 * const opt = new AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0.01 })
 */
export class AdamW extends Adam {
  protected override readonly decoupled = true
  constructor(params: Iterable<Tensor>, opts: AdamOptions = {}) {
    super(params, { weightDecay: 0.01, ...opts })
  }
}
