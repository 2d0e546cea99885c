#!/usr/bin/env node
import { execFile } from 'node:child_process'
// Benchmark of signed installs on loopback (issue 17, phase 2a): what checking a signed
// image costs a node, against the same install without a trust root, in the same run.
//
//   node scripts/bench-trust.mjs [--runs N] [--size-mb M] [--keep]
//
// One `imageswarm serve --keys` with a sample image (about M MiB, default 24), then N
// rounds (default 7) of two `imageswarm install` processes, one after the other, into fresh
// targets: without --trust-root, then with it (the order alternates round by round, so a
// warm page cache favours neither). Reported, as medians over the rounds:
//   verification: what the client logs as 'image signature verified': fetching keys.json,
//                 its .minisig, the manifest and its .minisig, and checking them (the
//                 issue's target: under 1 s)
//   to manifest:  from the process's start to its 'manifest' event (the manifest in hand,
//                 verified or not): node's start-up plus the requests
//   install:      the client's own install time ('installed' event)
// Build first: pnpm build.
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { median, option } from './lib/bench-stats.mjs'
import { CLI, runInstall, startServer } from './lib/deployment.mjs'
import { makeSampleImage } from './lib/sample-image.mjs'

const runs = Number(option('--runs', '7'))
const sizeMiB = Number(option('--size-mb', '24'))
const keep = process.argv.includes('--keep')

const fmt = (seconds) => seconds.toFixed(3)

const dir = await mkdtemp(join(tmpdir(), 'imageswarm-bench-trust-'))
const layout = {
  imagesDir: join(dir, 'images'),
  tarballsDir: join(dir, 'tarballs'),
  torrentsDir: join(dir, 'torrents'),
  pidFile: join(dir, 'serve.pid'),
}
let server
try {
  await mkdir(layout.imagesDir, { recursive: true })
  const bigFiles = Math.max(1, Math.round(sizeMiB / 8))
  await makeSampleImage(join(layout.imagesDir, 'node'), {
    dirs: 20,
    filesPerDir: 40,
    bigFiles,
    bigFileBytes: Math.round((sizeMiB * 2 ** 20) / bigFiles),
  })
  const keys = join(dir, 'keys')
  await promisify(execFile)(process.execPath, [CLI, 'key', 'generate', '--output', keys])
  server = await startServer({ images: ['node'], ...layout, args: ['--keys', keys] })
  const loadBefore = loadavg()[0]

  const rows = { plain: [], trusted: [] }
  for (let round = 0; round < runs; round++) {
    const order = round % 2 === 0 ? ['plain', 'trusted'] : ['trusted', 'plain']
    for (const variant of order) {
      const started = performance.now()
      let manifestAt
      const result = await runInstall({
        server: server.url,
        image: 'node',
        staging: join(dir, `${variant}-${round}`, 'staging'),
        target: join(dir, `${variant}-${round}`, 'a'),
        seedTime: 0,
        args: [
          '--no-report',
          ...(variant === 'trusted' ? ['--trust-root', join(keys, 'root.pub')] : []),
        ],
        onEvent: (event) => {
          if (event.type === 'manifest') manifestAt ??= performance.now()
        },
      })
      if (result.code !== 0) {
        throw new Error(
          `${variant} install failed: ${JSON.stringify(result.failed ?? result.logs.slice(-5))}`,
        )
      }
      const verified = result.logs.find((record) => record.msg === 'image signature verified')
      rows[variant].push({
        toManifest: (manifestAt - started) / 1000,
        install: result.installed.seconds,
        verification: verified?.seconds,
      })
      await rm(join(dir, `${variant}-${round}`), { recursive: true, force: true })
    }
  }
  const loadAfter = loadavg()[0]

  const pick = (variant, field) => rows[variant].map((row) => row[field])
  const verification = pick('trusted', 'verification')
  console.log(
    `# ${runs} rounds, image ${sizeMiB} MiB, ${cpus()[0]?.model ?? 'unknown CPU'} × ${availableParallelism()}, load ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)}, node ${process.version}`,
  )
  console.log('| variant | verification s (median, max) | to manifest s | install s |')
  console.log('| --- | ---: | ---: | ---: |')
  for (const variant of ['plain', 'trusted']) {
    const v =
      variant === 'trusted'
        ? `${fmt(median(verification))}, ${fmt(Math.max(...verification))}`
        : '–'
    console.log(
      `| ${variant === 'plain' ? 'without --trust-root' : 'with --trust-root'} | ${v} | ${fmt(median(pick(variant, 'toManifest')))} | ${fmt(median(pick(variant, 'install')))} |`,
    )
  }
  const paired = rows.trusted.map((row, i) => row.install - rows.plain[i].install)
  console.log(
    `install time with minus without, paired by round: median ${fmt(median(paired))} s; verification under 1 s in ${verification.filter((s) => s < 1).length} of ${verification.length} installs`,
  )
} finally {
  await server?.stop()
  if (keep) console.log(`kept ${dir}`)
  else await rm(dir, { recursive: true, force: true })
}
