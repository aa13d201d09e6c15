/** Whether ops record gradients; `noGrad` turns it off for a callback. */
let disabled = 0

export function gradEnabled(): boolean {
  return disabled === 0
}

/**
 * Runs `fn` with gradient tracking off: tensors it creates are detached (gradients
 * never flow through them), as in PyTorch's `torch.no_grad()`.
 *
 * @example
 * const frozen = noGrad(() => w.mul(2))
 */
export function noGrad<T>(fn: () => T): T {
  disabled++
  try {
    return fn()
  } finally {
    disabled--
  }
}
