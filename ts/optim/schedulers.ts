import { EclatError } from '../errors.js'
import { Optimizer } from './optimizer.js'

/** Changes an optimizer's learning rate as epochs pass; call `step()` once per epoch. */
abstract class LRScheduler {
  readonly baseLr: number
  epoch = 0
  constructor(readonly optimizer: Optimizer) {
    if (!(optimizer instanceof Optimizer)) throw new EclatError(`${this.constructor.name}: expected an Optimizer`)
    this.baseLr = optimizer.lr
  }
  protected abstract lrAt(epoch: number): number
  /** Advances one epoch and sets the optimizer's learning rate. */
  step(): void {
    this.epoch++
    this.optimizer.lr = this.lrAt(this.epoch)
  }
  /** The learning rate in use. */
  getLastLr(): number {
    return this.optimizer.lr
  }
}

/**
 * Multiplies the learning rate by `gamma` every `stepSize` epochs.
 *
 * @example
 * const sched = new StepLR(opt, { stepSize: 10, gamma: 0.5 })
 */
export class StepLR extends LRScheduler {
  readonly stepSize: number
  readonly gamma: number
  constructor(optimizer: Optimizer, { stepSize, gamma = 0.1 }: { stepSize: number; gamma?: number }) {
    super(optimizer)
    if (!Number.isInteger(stepSize) || stepSize < 1) throw new EclatError(`StepLR: stepSize must be a positive integer, got ${String(stepSize)}`)
    this.stepSize = stepSize
    this.gamma = gamma
  }
  protected lrAt(epoch: number): number {
    return this.baseLr * this.gamma ** Math.floor(epoch / this.stepSize)
  }
}

/**
 * Cosine annealing from the initial rate down to `etaMin` over `tMax` epochs.
 *
 * @example
 * const sched = new CosineAnnealingLR(opt, { tMax: 20 })
 */
export class CosineAnnealingLR extends LRScheduler {
  readonly tMax: number
  readonly etaMin: number
  constructor(optimizer: Optimizer, { tMax, etaMin = 0 }: { tMax: number; etaMin?: number }) {
    super(optimizer)
    if (!Number.isInteger(tMax) || tMax < 1) throw new EclatError(`CosineAnnealingLR: tMax must be a positive integer, got ${String(tMax)}`)
    this.tMax = tMax
    this.etaMin = etaMin
  }
  protected lrAt(epoch: number): number {
    return this.etaMin + ((this.baseLr - this.etaMin) * (1 + Math.cos((Math.PI * Math.min(epoch, this.tMax)) / this.tMax))) / 2
  }
}
