import { EclatError, ShapeError, fmtShape } from '../errors.js'
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js'
import { Tensor } from '../tensor.js'

/**
 * The base of every layer and model, as in PyTorch: parameters are the tensor
 * fields that require gradients, submodules are the Module fields (arrays of
 * either work too), found by walking the object, so models compose as classes.
 *
 * @example
 * class Mlp extends Module {
 *   fc1 = new Linear(784, 128)
 *   fc2 = new Linear(128, 10)
 *   forward(x: Tensor) { return this.fc2.forward(this.fc1.forward(x).relu()) }
 * }
 */
export abstract class Module {
  /** True in training mode (Dropout active), false after `eval()`. */
  training = true

  /** Computes the module's output. */
  abstract forward(...inputs: Tensor[]): Tensor

  /** The named children: submodules and tensors, in field order. */
  private *entries(prefix: string): Generator<[string, Module | Tensor]> {
    for (const [key, value] of Object.entries(this)) {
      const items: [string, unknown][] = Array.isArray(value) ? value.map((v, i) => [`${key}.${i}`, v]) : [[key, value]]
      for (const [name, item] of items) {
        if (item instanceof Module || item instanceof Tensor) yield [prefix + name, item]
      }
    }
  }

  /**
   * Every parameter with its dotted name (`fc1.weight`), depth first.
   * @example for (const [name, p] of model.namedParameters()) console.log(name, p.shape)
   */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = []
    for (const [name, item] of this.entries(prefix)) {
      if (item instanceof Module) out.push(...item.namedParameters(`${name}.`))
      else if (item.requiresGrad) out.push([name, item])
    }
    return out
  }

  /** Every parameter (tensors that require gradients). @example new SGD(model.parameters(), { lr: 0.1 }) */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p)
  }

  /** The submodules, depth first, this module included. @example model.modules().length */
  modules(): Module[] {
    const out: Module[] = [this]
    for (const [, item] of this.entries('')) if (item instanceof Module) out.push(...item.modules())
    return out
  }

  /** Training mode (or evaluation mode with `false`) for this module and its children. @example model.train() */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode
    return this
  }

  /** Evaluation mode: Dropout passes inputs through. @example model.eval() */
  eval(): this {
    return this.train(false)
  }

  /** The parameters by name, ready for `saveSafetensors`. @example saveSafetensors(path, model.stateDict()) */
  stateDict(): Record<string, Tensor> {
    return Object.fromEntries(this.namedParameters())
  }

  /**
   * Copies values into the parameters by name (shapes and dtypes must match).
   * With `strict` (the default), missing or unexpected names are errors.
   * @example model.loadStateDict(loadSafetensors(path))
   */
  loadStateDict(state: Record<string, Tensor>, { strict = true } = {}): void {
    const params = new Map(this.namedParameters())
    if (strict) {
      const missing = [...params.keys()].filter((k) => !(k in state))
      const unexpected = Object.keys(state).filter((k) => !params.has(k))
      if (missing.length || unexpected.length) {
        throw new EclatError(`loadStateDict: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`)
      }
    }
    for (const [name, value] of Object.entries(state)) {
      const p = params.get(name)
      if (!p) continue
      if (!(value instanceof Tensor) || value.dtype !== p.dtype || value.shape.length !== p.ndim || value.shape.some((d, i) => d !== p.shape[i])) {
        const got = value instanceof Tensor ? `${fmtShape(value.shape)} ${value.dtype}` : typeof value
        throw new ShapeError(`loadStateDict: '${name}' is ${fmtShape(p.shape)} ${p.dtype}, got ${got}`)
      }
      p.assign(value)
    }
  }

  /** Saves the parameters as safetensors. @example model.saveWeights('model.safetensors') */
  saveWeights(path: string): void {
    saveSafetensors(path, this.stateDict())
  }

  /** Loads parameters saved by `saveWeights` (or by PyTorch with the same names). @example model.loadWeights('model.safetensors') */
  loadWeights(path: string): void {
    this.loadStateDict(loadSafetensors(path))
  }
}
