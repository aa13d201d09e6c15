/**
 * Optimizers and learning-rate schedules, PyTorch style.
 *
 * @example
 * import { optim } from 'eclat'
 * const opt = new optim.AdamW(model.parameters(), { lr: 1e-3 })
 */
export { Optimizer, type ParamState } from './optimizer.js'
export { SGD, Adam, AdamW, type SGDOptions, type AdamOptions } from './optimizers.js'
export { StepLR, CosineAnnealingLR } from './schedulers.js'
