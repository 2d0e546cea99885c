#!/usr/bin/env node
// One pair on plain loopback: `imageswarm serve` and one install client (the single-file
// bundle, started as docs/installer-ramdisk.md starts it), no namespaces, no rate caps.
// Reports the client's download rate (from the swarm session
// starting to its 'download-complete' event), its CPU seconds per GiB while
// downloading, and its peak RSS (VmHWM) at 'download-complete' and over the whole
// install; with --aria2 and --libtorrent, the same archive between two aria2c processes
// and between two libtorrent peers (libtorrent-peer.py, Debian's python3-libtorrent) as
// references.
//
//   node scripts/bench-swarm/loopback-pair.mjs [--sizes 128,1024] [--aria2] [--libtorrent] [--runs 1]
//
// The archive is incompressible random data, published uncompressed, so its size is
// the size asked for. Run it on a quiet machine: it measures CPU per byte.
import { spawn } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runInstall, startServer } from '../lib/deployment.mjs'
import { withoutWebSeeds } from './lib/bencode.mjs'
import { INSTALL_CLIENT, INSTALL_CLIENT_NODE_ARGS } from './lib/transports.mjs'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '128,1024' },
    runs: { type: 'string', default: '1' },
    aria2: { type: 'boolean', default: false },
    libtorrent: { type: 'boolean', default: false },
    'work-dir': { type: 'string', default: '/var/tmp/imageswarm-loopback' },
  },
})
const TRACKER_ONLY = fileURLToPath(new URL('./tracker-only.mjs', import.meta.url))
const LIBTORRENT_PEER = fileURLToPath(new URL('./libtorrent-peer.py', import.meta.url))
const CLK_TCK = 100
const MiB = 1 << 20

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

async function cpuSeconds(pid) {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

async function peakRssMiB(pid) {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const match = /VmHWM:\s+(\d+) kB/.exec(text)
  return match ? Number(match[1]) / 1024 : Number.NaN
}

async function makeImage(root, sizeMiB) {
  await mkdir(join(root, 'etc'), { recursive: true })
  await writeFile(join(root, 'etc', 'hostname'), 'pair\n')
  const out = createWriteStream(join(root, 'data.bin'))
  const chunk = Buffer.alloc(16 * MiB)
  for (let written = 0; written < sizeMiB * MiB; written += chunk.length) {
    randomFillSync(chunk)
    if (!out.write(chunk.subarray(0, Math.min(chunk.length, sizeMiB * MiB - written)))) {
      await once(out, 'drain')
    }
  }
  out.end()
  await once(out, 'close')
}

async function imageswarmPair(layout, dir) {
  const server = await startServer({
    images: ['pair'],
    ...layout,
    port: layout.port,
    args: ['--compression', 'none'],
    readyTimeoutMs: 600_000,
  })
  const archive = (await readdir(layout.tarballsDir)).find((f) => f.startsWith('image-pair'))
  const archiveBytes = (await stat(join(layout.tarballsDir, archive))).size
  const serverCpu0 = await cpuSeconds(server.process.pid)
  let cpuAtStart = Number.NaN
  let cpuAtComplete = Number.NaN
  let rssAtComplete = Number.NaN
  let seconds = Number.NaN
  let peakRss = 0
  let serverCpu = Number.NaN
  const pending = []
  const run = runInstall({
    // The single-file client with its Node options, as an installer ramdisk starts it.
    command: [...INSTALL_CLIENT_NODE_ARGS, INSTALL_CLIENT],
    server: server.url,
    image: 'pair',
    staging: join(dir, 'staging'),
    target: join(dir, 'target'),
    seedTime: 0,
    timeoutMs: 600_000,
    onEvent(event) {
      const pid = run.process.pid
      if (event.type === 'state' && event.state === 'downloading') {
        pending.push(cpuSeconds(pid).then((s) => (cpuAtStart = s)))
      } else if (event.type === 'download-complete') {
        seconds = event.seconds
        pending.push(cpuSeconds(pid).then((s) => (cpuAtComplete = s)))
        pending.push(peakRssMiB(pid).then((m) => (rssAtComplete = m)))
        pending.push(cpuSeconds(server.process.pid).then((s) => (serverCpu = s - serverCpu0)))
      }
    },
  })
  const sampler = setInterval(async () => {
    const rss = await peakRssMiB(run.process.pid)
    if (rss > peakRss) peakRss = rss
  }, 100)
  const result = await run
  clearInterval(sampler)
  await Promise.all(pending)
  await server.stop()
  if (result.code !== 0) throw new Error(`install failed: ${JSON.stringify(result.failed)}`)
  const cpu = cpuAtComplete - cpuAtStart
  return {
    transport: 'imageswarm',
    archiveBytes,
    seconds,
    mbPerSecond: archiveBytes / 1e6 / seconds,
    cpuSeconds: cpu,
    cpuPerGiB: cpu / (archiveBytes / 2 ** 30),
    serverCpuPerGiB: serverCpu / (archiveBytes / 2 ** 30),
    peakRssAtDownloadMiB: rssAtComplete,
    peakRssInstallMiB: peakRss,
  }
}

function timed(argv, env = {}) {
  // /usr/bin/time -f: wall, user, system seconds and peak RSS in kB, on the last line.
  const child = spawn('/usr/bin/time', ['-f', 'ISBTIME %e %U %S %M', ...argv], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  })
  let stderr = ''
  child.stderr.on('data', (d) => {
    stderr += d
  })
  return {
    child,
    done: once(child, 'exit').then(([code]) => {
      const match = /ISBTIME (\S+) (\S+) (\S+) (\d+)/.exec(stderr)
      if (!match) throw new Error(`no timing (exit ${code}): ${stderr.slice(-500)}`)
      const [, wall, user, sys, rssKb] = match.map(Number)
      return { code, wall, cpu: user + sys, rssMiB: rssKb / 1024 }
    }),
  }
}

const ARIA2 = [
  'aria2c',
  '--enable-dht=false',
  '--enable-dht6=false',
  '--bt-enable-lpd=false',
  '--enable-peer-exchange=false',
  '--file-allocation=none',
  '--allow-overwrite=true',
  '--auto-file-renaming=false',
  '--summary-interval=0',
  '--console-log-level=warn',
  '--check-certificate=false',
]

/** The pair's archive size and its .torrent minus the web seed, for a reference client. */
async function referenceTorrent(layout, dir, transport) {
  const archive = (await readdir(layout.tarballsDir)).find((f) => f.startsWith('image-pair'))
  const archiveBytes = (await stat(join(layout.tarballsDir, archive))).size
  const torrent = join(dir, `pair.${transport}.torrent`)
  await mkdir(dir, { recursive: true })
  await writeFile(
    torrent,
    withoutWebSeeds(await readFile(join(layout.torrentsDir, `${archive}.torrent`))),
  )
  return { archiveBytes, torrent }
}

/** Waits for a reference leecher (at most 300 s): its exit code, and the figures of its
 * whole process. */
async function leecherFigures(transport, archiveBytes, leecher) {
  const limit = setTimeout(() => leecher.child.kill('SIGTERM'), 300_000)
  const timing = await leecher.done.finally(() => clearTimeout(limit))
  const figures = {
    transport,
    archiveBytes,
    seconds: timing.wall,
    mbPerSecond: archiveBytes / 1e6 / timing.wall,
    cpuSeconds: timing.cpu,
    cpuPerGiB: timing.cpu / (archiveBytes / 2 ** 30),
    peakRssAtDownloadMiB: timing.rssMiB,
    peakRssInstallMiB: Number.NaN,
  }
  return { code: timing.code, figures }
}

async function aria2Pair(layout, dir) {
  const { archiveBytes, torrent } = await referenceTorrent(layout, dir, 'aria2')
  const { infoHash } = JSON.parse(
    await readFile(join(layout.torrentsDir, 'image-pair.manifest.json'), 'utf8'),
  )
  const tracker = spawn(
    process.execPath,
    [TRACKER_ONLY, '127.0.0.1', String(layout.port), infoHash],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  await new Promise((resolve) => tracker.stderr.once('data', resolve))
  const seeder = spawn(
    ARIA2[0],
    [
      ...ARIA2.slice(1),
      `--dir=${layout.tarballsDir}`,
      '--listen-port=6991',
      '--seed-ratio=0.0',
      '--bt-seed-unverified=true',
      '--check-integrity=false',
      torrent,
    ],
    { stdio: 'ignore' },
  )
  await new Promise((r) => setTimeout(r, 3000))
  const leecher = timed([
    ...ARIA2,
    `--dir=${join(dir, 'aria2')}`,
    '--listen-port=6992',
    '--seed-time=0',
    torrent,
  ])
  const { figures } = await leecherFigures('aria2', archiveBytes, leecher)
  seeder.kill('SIGTERM')
  tracker.kill('SIGTERM')
  await Promise.all([once(seeder, 'exit'), once(tracker, 'exit')])
  return figures
}

/** libtorrent → libtorrent (Debian's python3-libtorrent), timed like aria2's leecher. */
async function libtorrentPair(layout, dir) {
  const { archiveBytes, torrent } = await referenceTorrent(layout, dir, 'libtorrent')
  const seeder = spawn(
    '/usr/bin/python3',
    [LIBTORRENT_PEER, 'seed', torrent, layout.tarballsDir, '6993'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  await new Promise((resolve) => seeder.stdout.once('data', resolve))
  const leecher = timed([
    '/usr/bin/python3',
    LIBTORRENT_PEER,
    'leech',
    torrent,
    join(dir, 'libtorrent'),
    '6994',
    '6993',
  ])
  const { code, figures } = await leecherFigures('libtorrent', archiveBytes, leecher)
  seeder.kill('SIGTERM')
  await once(seeder, 'exit')
  if (code !== 0) throw new Error(`libtorrent leecher exited with ${code}`)
  return figures
}

const results = []
for (const sizeMiB of values.sizes.split(',').map(Number)) {
  const root = join(values['work-dir'], `${sizeMiB}MiB`)
  await rm(root, { recursive: true, force: true })
  const layout = {
    imagesDir: join(root, 'images'),
    tarballsDir: join(root, 'tarballs'),
    torrentsDir: join(root, 'torrents'),
    pidFile: join(root, 'serve.pid'),
    port: await freePort(),
  }
  await makeImage(join(layout.imagesDir, 'pair'), sizeMiB)
  for (let run = 1; run <= Number(values.runs); run++) {
    const dir = join(root, `run${run}`)
    results.push({ sizeMiB, run, ...(await imageswarmPair(layout, join(dir, 'imageswarm'))) })
    console.error(JSON.stringify(results.at(-1)))
    await rm(join(dir, 'imageswarm'), { recursive: true, force: true })
    if (values.aria2) {
      results.push({ sizeMiB, run, ...(await aria2Pair(layout, dir)) })
      console.error(JSON.stringify(results.at(-1)))
    }
    if (values.libtorrent) {
      results.push({ sizeMiB, run, ...(await libtorrentPair(layout, dir)) })
      console.error(JSON.stringify(results.at(-1)))
    }
    await rm(dir, { recursive: true, force: true })
  }
  await rm(root, { recursive: true, force: true })
}

const f = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '—')
console.log(
  '| archive | transport | run | seconds | MB/s | client CPU s | CPU s / GiB | server CPU s / GiB | peak RSS at download-complete (MiB) | peak RSS, whole install (MiB) |',
)
console.log('|---|---|---|---|---|---|---|---|---|---|')
for (const r of results) {
  console.log(
    `| ${r.sizeMiB} MiB | ${r.transport} | ${r.run} | ${f(r.seconds, 2)} | ${f(r.mbPerSecond, 0)} | ${f(r.cpuSeconds, 2)} | ${f(r.cpuPerGiB, 2)} | ${f(r.serverCpuPerGiB, 2)} | ${f(r.peakRssAtDownloadMiB, 0)} | ${f(r.peakRssInstallMiB, 0)} |`,
  )
}
