#!/usr/bin/env node
// The update benchmark (issue 16): publishes three versions of a real root, installs a node
// at the first, and updates nodes by delta, reporting each delta's size against the full
// archive, the time the server took to make it and the time a node took to apply it, and
// the bytes an unchanged node fetches. Loopback only; the cluster figures are in
// scripts/bench-update-cluster/.
//
//   node scripts/bench-update.mjs --v1 /var/tmp/delta/v1 --v2 /var/tmp/delta/v2 --v3 /var/tmp/delta/v3
//
// v1 → v2 is the U1 (security updates), v1 → v3 its U2 (U1, packages added, files
// removed); docs/updates.md says how the roots were made. Needs root (the roots' owners).
import { execFile } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { compareTrees } from '../packages/core/dist/testing/index.js'
import { runInstall, runUpdate, startServer } from './lib/deployment.mjs'

const run = promisify(execFile)
const { values } = parseArgs({
  options: {
    v1: { type: 'string' },
    v2: { type: 'string' },
    v3: { type: 'string' },
    'work-dir': { type: 'string', default: '/var/tmp/imageswarm-bench-update' },
    out: {
      type: 'string',
      default: fileURLToPath(new URL('../docs/benchmarks/update', import.meta.url)),
    },
  },
})
if (!values.v1 || !values.v2 || !values.v3) {
  process.stderr.write(
    'usage: bench-update.mjs --v1 ROOT --v2 ROOT --v3 ROOT [--work-dir DIR] [--out DIR]\n',
  )
  process.exit(2)
}

const work = values['work-dir']
await rm(work, { recursive: true, force: true })
const layout = {
  imagesDir: join(work, 'images'),
  tarballsDir: join(work, 'tarballs'),
  torrentsDir: join(work, 'torrents'),
  pidFile: join(work, 'serve.pid'),
}
await mkdir(layout.imagesDir, { recursive: true })
const root = join(layout.imagesDir, 'debian')
const node = (name) => ({ staging: join(work, name, 'staging'), target: join(work, name, 'root') })
// What an update leaves alone by default (/var/log/* among them) and what packing leaves out.
const SKIP = ['etc/imageswarm', 'var/lib/imageswarm', 'var/log', 'run', 'proc', 'sys', 'dev/pts']

let server
async function serveVersion(source) {
  await server?.stop()
  await rm(root, { recursive: true, force: true })
  await run('cp', ['-a', source, root])
  const started = performance.now()
  server = await startServer({ images: ['debian'], ...layout, args: ['--keep-versions', '4'] })
  const seconds = (performance.now() - started) / 1000
  const deltas = server.logs.filter((record) => record.msg === 'delta made')
  const manifest = await (await fetch(`${server.url}/images/debian/manifest.json`)).json()
  return { seconds, deltas, manifest }
}

async function update(name) {
  const result = await runUpdate({
    server: server.url,
    image: 'debian',
    ...node(name),
    seedTime: 0,
    args: ['--no-report'],
  })
  if (result.code !== 0)
    throw new Error(
      `update of ${name} failed: ${JSON.stringify(result.failed ?? result.logs.slice(-5))}`,
    )
  const extracted = result.events.find((event) => event.type === 'extracted')
  const differences = await compareTrees(root, node(name).target, { skipPaths: SKIP })
  return {
    plan: result.plan,
    seconds: result.updated.seconds,
    applySeconds: extracted?.seconds ?? 0,
    downloaded: result.updated.totals.downloaded,
    differences: differences.length,
    firstDifferences: differences.slice(0, 5),
  }
}

try {
  const v1 = await serveVersion(values.v1)
  const install = await runInstall({
    server: server.url,
    image: 'debian',
    ...node('a'),
    seedTime: 0,
    args: ['--no-report'],
  })
  if (install.code !== 0) throw new Error('install failed')
  await mkdir(node('c').staging, { recursive: true })
  await run('cp', ['-a', node('a').target, node('c').target])

  const v2 = await serveVersion(values.v2)
  const u1 = await update('a')
  const v3 = await serveVersion(values.v3)
  const u2 = await update('c')
  const v2to3 = await update('a')
  // A node at the newest version: what does it fetch? The manifest, the file index, deltas.json.
  const unchanged = await update('a')
  const sizes = {}
  for (const file of ['manifest.json', 'file-index.json.gz', 'deltas.json']) {
    sizes[file] = (
      await (await fetch(`${server.url}/images/debian/${file}`)).arrayBuffer()
    ).byteLength
  }
  const deltaOf = (version, from) => version.deltas.find((record) => record.from === from)
  const results = {
    machine: { cores: (await import('node:os')).cpus().length, node: process.version },
    full: { v1: v1.manifest.size, v2: v2.manifest.size, v3: v3.manifest.size },
    publishSeconds: { v1: v1.seconds, v2: v2.seconds, v3: v3.seconds },
    u1: { delta: deltaOf(v2, 1), update: u1 },
    u2: { delta: deltaOf(v3, 1), update: u2 },
    v2to3: { delta: deltaOf(v3, 2), update: v2to3 },
    unchanged: { update: unchanged, fetched: sizes },
  }
  await mkdir(values.out, { recursive: true })
  await writeFile(join(values.out, 'formats.json'), `${JSON.stringify(results, null, 2)}\n`)
  const row = (name, r, full) =>
    `| ${name} | ${r.delta.size.toLocaleString('en')} | ${full.toLocaleString('en')} | ${((100 * r.delta.size) / full).toFixed(1)} % | ${r.delta.members} / ${r.delta.removals} | ${r.delta.seconds} | ${r.update.applySeconds.toFixed(2)} | ${r.update.seconds.toFixed(2)} | ${r.update.plan.byFile} | ${r.update.differences} |`
  const report = [
    '# imageswarm update: deltas of a real Debian root',
    '',
    `Made by \`node scripts/bench-update.mjs\` on ${new Date().toISOString().slice(0, 10)} (${results.machine.cores} cores, Node ${results.machine.node}); loopback, one node at a time.`,
    '',
    '| update | delta bytes | full archive bytes | delta / full | members / removals | make s | apply s | update s (all) | by file | differences after |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    row('U1 (v1 → v2)', results.u1, v2.manifest.size),
    row('U2 (v1 → v3)', results.u2, v3.manifest.size),
    row('v2 → v3', results.v2to3, v3.manifest.size),
    '',
    `A node already at the newest version fetched no archive bytes (${unchanged.downloaded} B) and wrote nothing (${unchanged.plan.write} entries); what it reads besides is the manifest (${sizes['manifest.json']} B), the file index (${sizes['file-index.json.gz'].toLocaleString('en')} B gzipped) and deltas.json (${sizes['deltas.json']} B).`,
    '',
  ].join('\n')
  await writeFile(join(values.out, 'formats.md'), report)
  process.stdout.write(report)
} finally {
  await server?.stop()
}
