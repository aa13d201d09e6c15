/**
 * The differential fuzzer (__test__/fuzz/fuzz.mjs): every recorded regression
 * replays from its seed, then a bounded pass runs (FUZZ_SECONDS, 30 by default,
 * from FUZZ_SEED, 1 by default). `npm run fuzz -- --seconds N --seed S` runs
 * longer passes from other seeds.
 */
import { describe, expect, it } from 'vitest'
// @ts-expect-error -- plain JavaScript module shared with `npm run fuzz`
import { fuzz, loadRegressions, runCase } from './fuzz/fuzz.mjs'

type Failure = { seed: number; problem: string; steps: string[] }

describe('differential fuzzing: native against reference, forward and gradients', () => {
  it('replays every recorded regression', () => {
    for (const { seed } of loadRegressions() as Failure[]) {
      const result = runCase(seed) as Failure | null
      expect(result, `case seed ${seed}: ${result?.problem}\n${result?.steps.join('\n')}`).toBeNull()
    }
  })

  it('finds no mismatch in a bounded random pass', () => {
    // A fixed seed keeps the suite deterministic; `npm run fuzz` explores other seeds.
    const seconds = Number(process.env['FUZZ_SECONDS'] ?? 30)
    const seed = Number(process.env['FUZZ_SEED'] ?? 1)
    const { cases, failures } = fuzz({ seconds, seed, record: true }) as { cases: number; failures: Failure[] }
    expect(cases).toBeGreaterThan(100)
    expect(failures.map((f) => `seed ${f.seed}: ${f.problem}\n  ${f.steps.join('\n  ')}`)).toEqual([])
  }, 120_000)
})
