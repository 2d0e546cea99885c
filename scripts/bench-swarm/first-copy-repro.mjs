#!/usr/bin/env node
// Reproduces (or rules out) a first-copy stall: `imageswarm serve` (first-copy seeding on) with a
// slow uplink on loopback and three `imageswarm install` clients started at once, each
// client's state changes printed with timestamps.
//
//   node scripts/bench-swarm/first-copy-repro.mjs [--runs N] [--clients N] [--no-first-copy]
//
// Exits non-zero when a run had a client that took longer than --stall-seconds (15)
// from start to download-complete.
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { runInstall, startServer } from '../lib/deployment.mjs'
import { makeSampleImage } from '../lib/sample-image.mjs'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    clients: { type: 'string', default: '3' },
    'no-first-copy': { type: 'boolean', default: false },
    'upload-limit': { type: 'string', default: '3M' },
    'stall-seconds': { type: 'string', default: '15' },
    quiet: { type: 'boolean', default: false },
  },
})
const runs = Number(values.runs)
const clients = Number(values.clients)
const stallSeconds = Number(values['stall-seconds'])

const dir = await mkdtemp(join(tmpdir(), 'imageswarm-fc-'))
const layout = {
  imagesDir: join(dir, 'images'),
  tarballsDir: join(dir, 'tarballs'),
  torrentsDir: join(dir, 'torrents'),
  pidFile: join(dir, 'serve.pid'),
}
await mkdir(layout.imagesDir, { recursive: true })
await makeSampleImage(join(layout.imagesDir, 'node'), {
  dirs: 10,
  filesPerDir: 20,
  bigFiles: 2,
  bigFileBytes: 3 << 20,
  seed: 'compute',
})

const summary = []
try {
  for (let run = 1; run <= runs; run++) {
    const server = await startServer({
      images: ['node'],
      ...layout,
      args: [
        '--upload-limit',
        values['upload-limit'],
        ...(values['no-first-copy'] ? ['--no-first-copy'] : []),
      ],
    })
    const t0 = performance.now()
    const at = () => ((performance.now() - t0) / 1000).toFixed(2).padStart(6)
    const log = (n, text) => {
      if (!values.quiet) console.log(`${at()} s  client${n}  ${text}`)
    }
    const results = await Promise.all(
      Array.from({ length: clients }, (_, i) => i + 1).map((n) => {
        let lastPercent = -1
        let completeAt = Number.NaN
        const clientDir = join(dir, `run${run}`, `client${n}`)
        return runInstall({
          server: server.url,
          image: 'node',
          staging: join(clientDir, 'staging'),
          target: join(clientDir, 'target'),
          seedTime: 30,
          timeoutMs: 120_000,
          onEvent(event) {
            if (event.type === 'download-progress') {
              const percent = Math.floor((100 * event.totals.downloaded) / event.size)
              if (percent !== lastPercent) {
                lastPercent = percent
                log(n, `download ${percent}% (${event.peers} peers)`)
              }
            } else if (event.type === 'state') {
              log(n, `state ${event.previous} -> ${event.state}`)
            } else if (event.type === 'download-complete') {
              completeAt = (performance.now() - t0) / 1000
              log(
                n,
                `download-complete (${event.seconds.toFixed(2)} s in session, ${event.totals.downloadedFromServer} B from server)`,
              )
            } else if (event.type === 'webseed-fallback') {
              log(n, `webseed-fallback: ${event.reason}`)
            } else if (event.type === 'installed' || event.type === 'failed') {
              log(n, event.type)
            }
          },
        }).then((result) => ({ n, result, completeAt: () => completeAt }))
      }),
    )
    await server.stop()
    const times = results.map((r) => r.completeAt())
    const failed = results.filter((r) => r.result.code !== 0).map((r) => r.n)
    const slowest = Math.max(...times.map((t) => (Number.isNaN(t) ? Infinity : t)))
    summary.push({ run, times, failed, stalled: slowest > stallSeconds || failed.length > 0 })
    console.log(
      `run ${run}: download-complete at ${times.map((t) => t.toFixed(2)).join(', ')} s${failed.length ? `; failed: ${failed.join(', ')}` : ''}`,
    )
    await rm(join(dir, `run${run}`), { recursive: true, force: true })
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
const stalled = summary.filter((s) => s.stalled).length
console.log(`${runs - stalled} of ${runs} runs without a stall (> ${stallSeconds} s)`)
process.exitCode = stalled ? 1 : 0
