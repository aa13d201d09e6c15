/** A short memory soak (1,000 training steps); `npm run soak -- --steps 20000` runs the long one. */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

describe('memory soak', () => {
  it('a tight synchronous training loop does not keep growing memory', () => {
    const script = fileURLToPath(new URL('./soak/soak.mjs', import.meta.url))
    const run = spawnSync(process.execPath, ['--expose-gc', script, '--steps', '1000'], { encoding: 'utf8' })
    const out = run.stdout
    console.log(out.trim().split('\n').at(-1))
    const result = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!) as Record<string, number>
    expect(result['finalLoss']).toBeLessThan(1)
    // Leaking one step's tensors would add about a megabyte per step.
    expect(result['rssSlopeBytesPerStep']! * result['measuredSteps']!).toBeLessThan(32 * 2 ** 20)
    expect(result['externalSlopeBytesPerStep']! * result['measuredSteps']!).toBeLessThan(32 * 2 ** 20)
    expect(run.status, run.stderr).toBe(0)
  }, 120_000)
})
