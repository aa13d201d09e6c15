import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.test.ts'],
    testTimeout: 60_000,
    // One process per file keeps the native thread pool's size predictable.
    pool: 'forks',
    // Output buffers start as all-ones bytes (NaN, -1): a kernel that leaves
    // part of its output unwritten fails the oracle comparisons.
    env: { ECLAT_DEBUG: 'poison' },
  },
})
