// Proves the published packages work on a machine without a Rust toolchain:
// builds the release binary, packs the main package and the linux-x64-gnu
// platform package, installs both tarballs into a fresh project outside the
// repository with a PATH that has no cargo or rustc, and runs a script there
// that trains a tiny model, checks a gradient against a finite difference and
// prints the SIMD level. Fails loudly if the install compiles anything or the
// installed package reaches into the source tree.
//
//   npm run pack:check
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = resolve(fileURLToPath(new URL('..', import.meta.url)))
const platform = 'linux-x64-gnu'
if (`${process.platform}-${process.arch}` !== 'linux-x64') {
  console.log(`pack:check builds the ${platform} package; this machine is ${process.platform}-${process.arch}, skipping`)
  process.exit(0)
}
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...opts })
const fail = (why) => {
  console.error(`pack:check FAILED: ${why}`)
  process.exit(1)
}

// 1. The release binary and the compiled TypeScript.
run('npm', ['run', 'build'], { cwd: repo, stdio: 'inherit' })
const binary = `eclat.${platform}.node`
copyFileSync(join(repo, 'native', binary), join(repo, 'npm', platform, binary))

// 2. Two tarballs.
const work = mkdtempSync(join(tmpdir(), 'eclat-pack-'))
const pack = (dir) => JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], { cwd: dir }))[0]
const main = pack(repo)
const sub = pack(join(repo, 'npm', platform))
for (const f of main.files) {
  if (/^(crates|ts|__test__|benches|examples|scripts)\//.test(f.path) || f.path.endsWith('.node')) fail(`the main package ships ${f.path}`)
}
console.log(`main package ${main.filename}: ${main.size} bytes packed, ${main.unpackedSize} unpacked, ${main.entryCount} files`)
console.log(`platform package ${sub.filename}: ${sub.size} bytes packed, ${sub.unpackedSize} unpacked, ${sub.entryCount} files`)

// 3. A fresh project, installed with no Rust toolchain on PATH.
const project = join(work, 'project')
run('mkdir', ['-p', project])
writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'pack-check', private: true, type: 'module' }))
const hasRust = (dir) => ['cargo', 'rustc', 'rustup'].some((b) => existsSync(join(dir, b)))
const path = process.env.PATH.split(delimiter).filter((d) => !hasRust(d)).join(delimiter)
const env = { ...process.env, PATH: path, CARGO_HOME: '/nonexistent', RUSTUP_HOME: '/nonexistent' }
try {
  execFileSync('cargo', ['--version'], { env, stdio: 'ignore' })
  fail('cargo is still reachable on the trimmed PATH')
} catch (e) {
  if (e.code !== 'ENOENT' && e.status === 0) fail('cargo is still reachable')
}
run('npm', ['install', '--no-audit', '--no-fund', '--offline', join(work, sub.filename), join(work, main.filename)], { cwd: project, env, stdio: 'inherit' })
const installed = join(project, 'node_modules', 'eclat')
if (existsSync(join(installed, 'target')) || existsSync(join(installed, 'crates'))) fail('the install compiled or unpacked Rust sources')

// 4. Use it.
writeFileSync(
  join(project, 'check.mjs'),
  `
import { createRequire } from 'node:module'
import * as E from 'eclat'
const require = createRequire(import.meta.url)
const binding = require.resolve('eclat-${platform}')
if (!binding.startsWith(process.cwd())) throw new Error('the binary was not loaded from the project: ' + binding)
E.manualSeed(0)
const model = new E.Sequential(new E.Linear(4, 8), new E.Tanh(), new E.Linear(8, 1))
const opt = new E.SGD(model.parameters(), { lr: 0.1 })
const x = E.randn([16, 4])
const y = x.sum(1, true).sin()
const losses = []
for (let step = 0; step < 20; step++) {
  opt.zeroGrad()
  const loss = E.mseLoss(model.forward(x), y)
  loss.backward()
  opt.step()
  losses.push(loss.item())
}
if (!(losses.at(-1) < losses[0])) throw new Error('training did not reduce the loss: ' + losses)
const f = (t) => t.mul(t).sin().sum()
const t = E.tensor([0.3, -1.2, 2.0], { dtype: 'float64' })
const analytic = E.grad(f)(t).dataSync()
const eps = 1e-6
const numeric = [0, 1, 2].map((i) => {
  const d = [0, 0, 0]; d[i] = eps
  const plus = f(t.add(E.tensor(d, { dtype: 'float64' }))).item()
  const minus = f(t.sub(E.tensor(d, { dtype: 'float64' }))).item()
  return (plus - minus) / (2 * eps)
})
numeric.forEach((n, i) => { if (Math.abs(n - analytic[i]) > 1e-6) throw new Error('gradient mismatch ' + n + ' vs ' + analytic[i]) })
console.log('trained: loss ' + losses[0].toFixed(4) + ' -> ' + losses.at(-1).toFixed(4) + '; gradient matches finite differences; SIMD level ' + E.simdLevel() + '; ' + E.numThreads() + ' threads; binary ' + binding)
`,
)
const out = run('node', ['check.mjs'], { cwd: project, env })
console.log(out.trim())
const size = (dir) => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0)
console.log(`pack:check passed (installed binary ${size(join(project, 'node_modules', `eclat-${platform}`))} bytes with its package.json)`)
