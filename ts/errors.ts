/**
 * Errors thrown by Eclat. Every message names the op, the shapes and the dtypes
 * involved.
 *
 * @example
 * try { tensor([1, 2]).add(tensor([1, 2, 3])) } catch (e) { if (e instanceof ShapeError) console.log(e.message) }
 */
export class EclatError extends Error {
  override name = 'EclatError'
}

/**
 * Shapes that do not fit: broadcasting, axes, reshapes, slices, data length.
 *
 * @example
 * tensor([1, 2]).reshape([3]) // throws ShapeError
 */
export class ShapeError extends EclatError {
  override name = 'ShapeError'
}

/**
 * A dtype an op does not accept (bitwise ops on floats, a non-bool condition, ...).
 *
 * @example
 * tensor([1.5]).bitwiseNot() // throws DTypeError
 */
export class DTypeError extends EclatError {
  override name = 'DTypeError'
}

/**
 * An index value out of range, found when a gather or scatter runs.
 *
 * @example
 * tensor([1, 2]).gather(0, tensor([5], { dtype: 'int32' })).dataSync() // throws IndexError
 */
export class IndexError extends EclatError {
  override name = 'IndexError'
}

/**
 * Malformed external data (a bad file or buffer) or a malformed program.
 *
 * @example
 * // thrown by loaders given a truncated file
 */
export class FormatError extends EclatError {
  override name = 'FormatError'
}

/**
 * Memory for a tensor could not be allocated.
 *
 * @example
 * zeros([2 ** 40]) // throws AllocationError
 */
export class AllocationError extends EclatError {
  override name = 'AllocationError'
}

/** Formats a shape for error messages: `[2, 3]`. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`
}
