import { expect } from 'vitest'
import { tensor, type DType, type Tensor, type TypedArray } from '../ts/index.js'
import { backendByName, evaluate } from '../ts/realize.js'
import { loadAddon } from '../ts/backend/native.js'

/** A small seeded generator so every test run sees the same data. */
export function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

/** Value ranges test inputs are drawn from. */
export type Domain = 'any' | 'positive' | 'small' | 'int' | 'bool'

function sample(domain: Domain, r: () => number): number {
  switch (domain) {
    case 'any':
      return (r() - 0.5) * 8
    case 'positive':
      return 0.1 + r() * 4
    case 'small':
      return (r() - 0.5) * 2
    case 'int':
      return Math.floor((r() - 0.5) * 20)
    case 'bool':
      return r() < 0.5 ? 1 : 0
  }
}

/** How a test input of a given logical shape is laid out. */
export type Layout = 'contiguous' | 'permuted' | 'sliced' | 'expanded'

/**
 * A tensor of `shape` with seeded values, built through a view chain so kernels
 * see non-contiguous strides: permuted (transposed storage), sliced (step 2),
 * or expanded (its first axis broadcast from size 1).
 */
export function makeInput(shape: readonly number[], dtype: DType, domain: Domain, layout: Layout, seed: number): Tensor {
  const r = rng(seed)
  const fill = (s: readonly number[]) => {
    const n = s.reduce((a, b) => a * b, 1)
    const values = Array.from({ length: n }, () => sample(domain, r))
    return tensor(dtype === 'bool' ? values.map((v) => v !== 0) : values, { shape: s, dtype })
  }
  if (shape.length === 0 || layout === 'contiguous') return fill(shape)
  switch (layout) {
    case 'permuted': {
      const order = shape.map((_, i) => shape.length - 1 - i)
      return fill([...shape].reverse()).permute(order)
    }
    case 'sliced':
      return fill(shape.map((d) => 2 * d + 1)).slice(shape.map((d) => [1, 1 + 2 * d, 2] as const))
    case 'expanded':
      return fill([1, ...shape.slice(1)]).expand(shape)
  }
}

/** Runs one graph on the native kernels and on the reference interpreter. */
export function bothBackends(t: Tensor): [TypedArray, TypedArray] {
  const [native] = evaluate([t.node], backendByName('native'))
  const [reference] = evaluate([t.node], backendByName('reference'))
  return [native!, reference!]
}

/**
 * Asserts two results agree: exactly when `tol` is 0, else within
 * `tol * (1 + |expected|)` per element. NaN matches NaN; infinities must match.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, label: string): void {
  expect(actual.length, `${label}: length`).toBe(expected.length)
  let worst = 0
  let at = -1
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!
    const e = expected[i]!
    if (Number.isNaN(e) || Number.isNaN(a)) {
      if (Number.isNaN(e) !== Number.isNaN(a)) throw new Error(`${label}: element ${i} is ${a}, expected ${e}`)
      continue
    }
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (a !== e) throw new Error(`${label}: element ${i} is ${a}, expected ${e}`)
      continue
    }
    const err = Math.abs(a - e) / (1 + Math.abs(e))
    if (err > worst) [worst, at] = [err, i]
  }
  if (worst > tol) throw new Error(`${label}: element ${at} is ${actual[at]}, expected ${expected[at]} (error ${worst} > ${tol})`)
}

/** Native against reference for one tensor-valued expression. */
export function expectBackendsAgree(t: Tensor, tol: number, label: string): void {
  const [native, reference] = bothBackends(t)
  expect(native.constructor, `${label}: array type`).toBe(reference.constructor)
  expectClose(native, reference, tol, label)
}

/** Runs `fn` and returns how many times it called into the addon to realize. */
export function countRealizeCalls(fn: () => void): number {
  const addon = loadAddon()
  const { realizeSync, realizeInArena } = addon
  let calls = 0
  addon.realizeSync = (...args) => {
    calls++
    return realizeSync(...args)
  }
  addon.realizeInArena = (arena) => {
    calls++
    return realizeInArena(arena)
  }
  try {
    fn()
  } finally {
    Object.assign(addon, { realizeSync, realizeInArena })
  }
  return calls
}
