import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { PRIMITIVES } from '../ts/index.js'

describe('the list of primitives', () => {
  it('is the same in TypeScript and in the Rust kernels, in the same order', () => {
    const addon = createRequire(import.meta.url)('../native/index.cjs') as { primitiveNames(): string[] }
    expect(addon.primitiveNames()).toEqual([...PRIMITIVES])
  })
})
