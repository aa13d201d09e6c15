/** The prebuilt-binary setup: napi targets, per-platform packages, and the release workflow (parsed as YAML). */
import { readFileSync, existsSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

const root = new URL('..', import.meta.url)
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  name: string
  version: string
  files: string[]
  napi: { binaryName: string; targets: string[] }
}
/** napi-rs's platform directory name for a Rust target triple. */
const PLATFORM: Record<string, string> = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'x86_64-apple-darwin': 'darwin-x64',
  'aarch64-apple-darwin': 'darwin-arm64',
  'x86_64-pc-windows-msvc': 'win32-x64-msvc',
}

type Step = { name?: string; run?: string; uses?: string; with?: Record<string, unknown>; if?: string }
type Job = { needs?: string | string[]; if?: string; strategy?: { matrix: Record<string, unknown> }; steps: Step[] }

describe('prebuilt binaries', () => {
  it('declares the six napi-rs targets, each with its platform package', () => {
    expect(pkg.napi.targets.sort()).toEqual(Object.keys(PLATFORM).sort())
    for (const target of pkg.napi.targets) {
      const dir = new URL(`npm/${PLATFORM[target]}/package.json`, root)
      expect(existsSync(dir), target).toBe(true)
      const sub = JSON.parse(readFileSync(dir, 'utf8')) as { name: string; version: string; main: string; os: string[]; cpu: string[] }
      expect(sub.name).toBe(`${pkg.name}-${PLATFORM[target]}`)
      expect(sub.version).toBe(pkg.version)
      expect(sub.main).toBe(`${pkg.napi.binaryName}.${PLATFORM[target]}.node`)
    }
  })

  it('ships only the compiled package in the main tarball: no sources, tests or binaries', () => {
    expect(pkg.files.sort()).toEqual(['README.md', 'dist', 'native/index.cjs', 'native/index.d.cts'].sort())
  })

  it('has a complete, valid release workflow', () => {
    const wf = parse(readFileSync(new URL('.github/workflows/release.yml', root), 'utf8')) as { on: unknown; jobs: Record<string, Job> }
    const { build, test, publish } = wf.jobs
    expect(build && test && publish).toBeTruthy()
    const builds = (build!.strategy!.matrix['include'] as { target: string; host: string; build: string }[])
    expect(builds.map((b) => b.target).sort()).toEqual([...pkg.napi.targets].sort())
    for (const b of builds) expect(b.build).toContain(`--target ${b.target}`)
    expect(build!.steps.some((s) => s.uses?.startsWith('actions/upload-artifact'))).toBe(true)
    expect(test!.strategy!.matrix['node']).toEqual(['20', '22'])
    expect(test!.steps.some((s) => s.uses?.startsWith('actions/download-artifact'))).toBe(true)
    expect(test!.steps.some((s) => s.run?.includes('vitest run'))).toBe(true)
    expect(publish!.if).toContain("refs/tags/v")
    expect([publish!.needs].flat()).toEqual(expect.arrayContaining(['test', 'test-musl']))
    expect(publish!.steps.some((s) => s.run?.includes('napi prepublish'))).toBe(true)
    expect(publish!.steps.some((s) => s.run?.startsWith('npm publish'))).toBe(true)
  })
})
