/** A short memory soak (1,000 training steps); `npm run soak -- --steps 20000` runs the long one. */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

describe('memory soak', () => {
  it('a tight synchronous training loop does not keep growing memory', () => {
    const script = fileURLToPath(new URL('./soak/soak.mjs', import.meta.url))
    const out = execFileSync(process.execPath, ['--expose-gc', script, '--steps', '1000'], { encoding: 'utf8' })
    const result = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!) as Record<string, number>
    console.log(out.trim().split('\n').at(-1))
    expect(result['finalLoss']).toBeLessThan(1)
    expect(result['rssSlopeBytesPerStep']).toBeLessThan(1024)
    expect(result['externalSlopeBytesPerStep']).toBeLessThan(1024)
  }, 120_000)
})
