#!/usr/bin/env node
// The demo: a sample image, a real image server on 127.0.0.1, and several install
// clients as separate processes, each into its own target root. Shows their progress,
// checks every target tree equals the image, reports how many bytes came from the
// server and how many the clients served each other, and shuts everything down.
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { compareTrees, INSTALL_RECORD_SKIP, snapshotTree } from '@imageswarm/core/testing'
import { runInstall, startServer } from './lib/deployment.mjs'
import { makeSampleImage } from './lib/sample-image.mjs'

const { values: flags } = parseArgs({
  options: {
    clients: { type: 'string', default: '4' },
    'big-file-mib': { type: 'string', default: '12' },
    keep: { type: 'boolean', default: false },
    'server-uplink': { type: 'string', default: '10M' },
  },
})
const clients = Number(flags.clients)
const mib = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
const say = (text) => process.stdout.write(`${text}\n`)

const work = await mkdtemp(join(tmpdir(), 'imageswarm-demo-'))
const imagesDir = join(work, 'images')
let server
try {
  say(`== imageswarm demo in ${work}`)
  const sample = await makeSampleImage(join(imagesDir, 'demo'), {
    bigFileBytes: Number(flags['big-file-mib']) * 1024 * 1024,
  })
  say(`image root: ${sample.files} files, ${mib(sample.bytes)} of data`)

  server = await startServer({
    images: ['demo'],
    imagesDir,
    tarballsDir: join(work, 'tarballs'),
    torrentsDir: join(work, 'torrents'),
    pidFile: join(work, 'serve.pid'),
    // On loopback the server could hand every client the whole archive at memory speed;
    // a capped uplink, as on a real install network, shows what the swarm does.
    args: ['--upload-limit', flags['server-uplink']],
    onLog: (record) => {
      if (record.msg === 'image packed and published') {
        say(
          `server: packed the image into ${mib(record.size)} (infohash ${record.infoHash}) in ${record.seconds} s`,
        )
      }
    },
  })
  say(`server: serving at ${server.url}`)

  const progress = new Map()
  const started = Date.now()
  const ticker = setInterval(() => {
    const line = [...progress.entries()].map(([n, p]) => `client${n} ${p}`).join(' | ')
    say(`[${((Date.now() - started) / 1000).toFixed(0)}s] ${line}`)
  }, 1000)
  const installs = []
  for (let n = 1; n <= clients; n++) {
    const staging = join(work, `client${n}`, 'staging')
    const target = join(work, `client${n}`, 'a')
    await mkdir(target, { recursive: true })
    progress.set(n, 'starting')
    installs.push(
      runInstall({
        server: server.url,
        image: 'demo',
        staging,
        target,
        seedTime: 30,
        onEvent: (event) => {
          if (event.type === 'download-progress') {
            progress.set(
              n,
              `${((100 * event.totals.downloaded) / event.size).toFixed(0)}% ${event.peers} peers`,
            )
          } else if (event.type === 'state') {
            progress.set(n, event.state)
          }
        },
      }).then((result) => ({ ...result, n, target })),
    )
  }
  const results = await Promise.all(installs)
  clearInterval(ticker)

  say('\n== results')
  let fromServer = 0
  let fromPeers = 0
  let failures = 0
  for (const result of results) {
    if (result.code !== 0 || !result.installed) {
      failures++
      say(`client${result.n}: FAILED (exit ${result.code}) ${result.failed?.error?.message ?? ''}`)
      continue
    }
    const { totals, seconds } = result.installed
    fromServer += totals.downloadedFromServer
    fromPeers += totals.downloaded - totals.downloadedFromServer
    const differences = await compareTrees(join(imagesDir, 'demo'), result.target, {
      skipPaths: INSTALL_RECORD_SKIP,
    })
    const entries = (await snapshotTree(result.target, { xattrs: false, acls: false })).size
    if (differences.length) failures++
    say(
      `client${result.n}: installed in ${seconds.toFixed(1)} s; ${mib(totals.downloadedFromServer)} from the server, ` +
        `${mib(totals.downloaded - totals.downloadedFromServer)} from peers, ${mib(totals.uploaded)} uploaded; ` +
        (differences.length
          ? `target DIFFERS from the image in ${differences.length} places: ${differences.slice(0, 5).join('; ')}`
          : `target equals the image (${entries} entries compared)`),
    )
  }
  const total = fromServer + fromPeers
  say(
    `\nswarm: ${mib(total)} delivered to ${clients} clients; ${mib(fromServer)} (${((100 * fromServer) / Math.max(total, 1)).toFixed(0)}%) from the server, ` +
      `${mib(fromPeers)} (${((100 * fromPeers) / Math.max(total, 1)).toFixed(0)}%) between clients`,
  )
  await server.stop()
  server = undefined
  say('server: stopped')
  if (failures) {
    say(`\ndemo FAILED: ${failures} client(s) did not install a correct root`)
    process.exitCode = 1
  } else {
    say('\ndemo OK: every client installed the image over the swarm')
  }
} finally {
  await server?.stop()
  if (!flags.keep) await rm(work, { recursive: true, force: true })
}
