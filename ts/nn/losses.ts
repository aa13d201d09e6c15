import { isFloat } from '../dtype.js'
import { DTypeError, ShapeError, fmtShape } from '../errors.js'
import type { Tensor } from '../tensor.js'

/**
 * How a loss combines its per-element values.
 *
 * @example
 * crossEntropy(logits, labels, { reduction: 'sum' })
 */
export type Reduction = 'mean' | 'sum' | 'none'

/**
 * Options of the losses.
 *
 * @example
 * mseLoss(a, b, { reduction: 'none' })
 */
export interface LossOptions {
  /** `'mean'` (default), `'sum'`, or `'none'` for per-element losses. */
  reduction?: Reduction
}

function reduce(loss: Tensor, reduction: Reduction = 'mean'): Tensor {
  if (reduction === 'none') return loss
  if (reduction === 'sum') return loss.sum()
  if (reduction === 'mean') return loss.mean()
  throw new ShapeError(`loss: unknown reduction '${String(reduction)}' (expected mean, sum or none)`)
}

function sameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new ShapeError(`${op}: input ${fmtShape(a.shape)} ${a.dtype} and target ${fmtShape(b.shape)} ${b.dtype} must have the same shape`)
  }
}

function checkLabels(op: string, scores: Tensor, labels: Tensor): void {
  if (scores.ndim !== 2 || !isFloat(scores.dtype)) throw new ShapeError(`${op}: expected float scores [N, C], got ${fmtShape(scores.shape)} ${scores.dtype}`)
  if (labels.dtype !== 'int32') throw new DTypeError(`${op}: labels must be int32 class indices, got ${labels.dtype} ${fmtShape(labels.shape)}`)
  if (labels.ndim !== 1 || labels.shape[0] !== scores.shape[0]) {
    throw new ShapeError(`${op}: labels ${fmtShape(labels.shape)} must be [N] for scores ${fmtShape(scores.shape)}`)
  }
}

/**
 * Mean squared error.
 *
 * @example
 * mseLoss(prediction, target)
 */
export function mseLoss(input: Tensor, target: Tensor, opts: LossOptions = {}): Tensor {
  sameShape('mseLoss', input, target)
  const d = input.sub(target)
  return reduce(d.mul(d), opts.reduction)
}

/**
 * Negative log-likelihood of int32 `labels` under log-probabilities [N, C].
 *
 * @example
 * nllLoss(logits.logSoftmax(1), labels)
 */
export function nllLoss(logProbs: Tensor, labels: Tensor, opts: LossOptions = {}): Tensor {
  checkLabels('nllLoss', logProbs, labels)
  const picked = logProbs.gather(1, labels.reshape([-1, 1])).reshape([-1])
  return reduce(picked.neg(), opts.reduction)
}

/**
 * Softmax cross-entropy of logits [N, C] against int32 class labels [N],
 * computed stably through log-softmax.
 *
 * @example
 * const loss = crossEntropy(model.forward(x), labels)
 */
export function crossEntropy(logits: Tensor, labels: Tensor, opts: LossOptions = {}): Tensor {
  checkLabels('crossEntropy', logits, labels)
  return nllLoss(logits.logSoftmax(1), labels, opts)
}

/**
 * Binary cross-entropy on logits, stable for large |x|:
 * `max(x, 0) − x·y + log(1 + e^−|x|)`.
 *
 * @example
 * binaryCrossEntropyWithLogits(scores, targets)
 */
export function binaryCrossEntropyWithLogits(logits: Tensor, targets: Tensor, opts: LossOptions = {}): Tensor {
  sameShape('binaryCrossEntropyWithLogits', logits, targets)
  const loss = logits.relu().sub(logits.mul(targets)).add(logits.abs().neg().exp().add(1).log())
  return reduce(loss, opts.reduction)
}
