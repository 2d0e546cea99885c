// The three ways of getting one archive onto N client hosts, each as a function that
// starts its server side in the server host's namespace, one client per client host,
// and records when each client held a verified archive and an extracted target root.
//
// "verified": imageswarm's `download-complete` (every piece checked against the
// torrent's hashes; its sha256 check follows and is recorded as `sha256At`), aria2's
// bt-download-complete hook (every piece checked), curl's download plus sha256sum.
// "extracted": the target root unpacked (imageswarm's `extracted`; tar for the others).
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnIn, stopProcess } from './processes.mjs'

export const CLI = fileURLToPath(
  new URL('../../../packages/cli/bin/imageswarm.js', import.meta.url),
)
/** Clients run the single-file install client, as an installer ramdisk does
 * (docs/installer-ramdisk.md): it starts in a third of the time of the full CLI. */
export const INSTALL_CLIENT = fileURLToPath(
  new URL('../../../packages/cli/dist/imageswarm-install.mjs', import.meta.url),
)
/** Node options the install client is started with, as docs/installer-ramdisk.md's hook
 * starts it: a 64 MB floor for the old generation stops V8 from a full collection every
 * second or two on a 15 MB heap (25 of them per client for 128 MiB; client CPU −10 % at
 * N = 32). */
export const INSTALL_CLIENT_NODE_ARGS = ['--initial-old-space-size=64']
const TRACKER_ONLY = fileURLToPath(new URL('../tracker-only.mjs', import.meta.url))
export const HTTP_PORT = 6969
export const TORRENT_PORT = 6881

function parseJson(line) {
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}

/** `imageswarm serve` in the server's namespace; resolves once it serves the image. */
export async function startImageServer(ctx, extraArgs = []) {
  const { server } = ctx.cluster
  const { dirs } = ctx.image
  const logs = []
  let ready
  const isReady = new Promise((resolve) => {
    ready = resolve
  })
  const handle = spawnIn(
    server.ns,
    [
      process.execPath,
      ctx.cli ?? CLI,
      'serve',
      '--image',
      ctx.image.name,
      '--images-dir',
      dirs.imagesDir,
      '--tarballs-dir',
      dirs.tarballsDir,
      '--torrents-dir',
      dirs.torrentsDir,
      '--address',
      server.ip,
      '--port',
      String(HTTP_PORT),
      '--torrent-port',
      String(TORRENT_PORT),
      '--pid-file',
      join(ctx.workDir, 'serve.pid'),
      ...extraArgs,
    ],
    {
      timeoutMs: ctx.timeoutMs + 600_000,
      onLine: (_stream, line) => {
        const record = parseJson(line) ?? { msg: line }
        logs.push(record)
        if (record.msg === 'serving images') ready(true)
      },
    },
  )
  const exitedEarly = handle.exited.then((r) => {
    throw new Error(
      `imageswarm serve exited (${r.code ?? r.signal}) before it was ready:\n${logs
        .slice(-20)
        .map((l) => l.msg + (l.err ? ` ${JSON.stringify(l.err)}` : ''))
        .join('\n')}`,
    )
  })
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error('imageswarm serve not ready after 600 s')), 600_000).unref(),
  )
  await Promise.race([isReady, exitedEarly, timeout])
  exitedEarly.catch(() => {})
  return { ...handle, logs, url: `http://${server.ip}:${HTTP_PORT}` }
}

function newClientRecord(host) {
  return { name: host.name, verifiedAt: null, extractedAt: null, exitAt: null, code: null }
}

/** imageswarm: `serve` on the server host, `install --json` on each client host. */
async function runImageswarm(ctx) {
  const server = await startImageServer(ctx, ctx.serveArgs ?? [])
  const t0 = performance.now()
  const records = []
  const handles = ctx.clients.map((host) => {
    const record = newClientRecord(host)
    record.events = {}
    records.push(record)
    const dir = join(ctx.workDir, host.name)
    return spawnIn(
      host.ns,
      [
        process.execPath,
        ...INSTALL_CLIENT_NODE_ARGS,
        ...(ctx.clientNodeArgs ?? []),
        ctx.installClient ?? INSTALL_CLIENT,
        '--json',
        '--server',
        server.url,
        '--image',
        ctx.image.name,
        '--staging',
        join(dir, 'staging'),
        '--target',
        join(dir, 'target'),
        '--seed-time',
        String(Math.ceil(ctx.timeoutMs / 1000)),
        '--cmdline',
        '/dev/null',
        ...(ctx.installArgs ?? []),
      ],
      {
        timeoutMs: ctx.timeoutMs,
        env: ctx.clientEnv,
        onLine: (stream, line, at) => {
          if (stream !== 'stdout') {
            ctx.onClientLog?.(host, line)
            return
          }
          const event = parseJson(line)
          if (!event?.type) return
          ctx.onClientEvent?.(host, event, at)
          if (event.type === 'download-progress') {
            // A coarse trace (every 5 s) to see where a slow run spends its time.
            const t = (at - t0) / 1000
            record.progress ??= []
            if (t - (record.progress.at(-1)?.[0] ?? -5) >= 5) {
              const { downloaded, downloadedFromServer, uploaded } = event.totals
              record.progress.push([
                Math.round(t),
                downloaded,
                downloadedFromServer,
                uploaded,
                event.peers,
              ])
            }
            return
          }
          record.events[event.type] ??= (at - t0) / 1000
          if (event.type === 'download-complete') {
            record.verifiedAt = (at - t0) / 1000
            record.totals = event.totals
          }
          if (event.type === 'verified') record.sha256At = (at - t0) / 1000
          if (event.type === 'extracted') record.extractedAt = (at - t0) / 1000
          if (event.type === 'installed') record.totals = event.totals
          if (event.type === 'webseed-fallback') record.webSeedFallback = event.reason
          if (event.type === 'failed') record.error = event.error
        },
      },
    )
  })
  const exits = await Promise.all(handles.map((h) => h.exited))
  exits.forEach((exit, i) => {
    records[i].code = exit.code ?? exit.signal
    records[i].exitAt = (exit.at - t0) / 1000
  })
  await stopProcess(server)
  return { t0, clients: records, serverLogs: server.logs }
}

/** The shell a non-imageswarm client runs once it holds the archive: sha256, then tar. */
function verifyAndExtract(archive, target, sha256, withSha) {
  return [
    withSha ? `echo "${sha256}  ${archive}" | sha256sum -c --quiet - || exit 5` : ':',
    'echo ISB-VERIFIED',
    `mkdir -p ${target} && tar -I zstd -xf ${archive} -C ${target} || exit 7`,
    'echo ISB-EXTRACTED',
  ].join('\n')
}

/** HTTP unicast: every client fetches the whole archive from the server's HTTP endpoint. */
async function runHttp(ctx) {
  const server = await startImageServer(ctx)
  const { manifest } = ctx.image
  const url = `${server.url}/images/${manifest.name}/${manifest.archiveFile}`
  const t0 = performance.now()
  const records = []
  const handles = ctx.clients.map((host) => {
    const record = newClientRecord(host)
    records.push(record)
    const dir = join(ctx.workDir, host.name)
    const archive = join(dir, 'staging', manifest.archiveFile)
    const script = [
      `mkdir -p ${join(dir, 'staging')}`,
      `curl -sS --fail --retry 5 --retry-connrefused -o ${archive} ${url} || exit 8`,
      verifyAndExtract(archive, join(dir, 'target'), manifest.sha256, true),
    ].join('\n')
    return spawnIn(host.ns, ['sh', '-c', script], {
      timeoutMs: ctx.timeoutMs,
      onLine: (_stream, line, at) => {
        if (line === 'ISB-VERIFIED') record.verifiedAt = (at - t0) / 1000
        else if (line === 'ISB-EXTRACTED') record.extractedAt = (at - t0) / 1000
        else ctx.onClientLog?.(host, line)
      },
    })
  })
  const exits = await Promise.all(handles.map((h) => h.exited))
  exits.forEach((exit, i) => {
    records[i].code = exit.code ?? exit.signal
    records[i].exitAt = (exit.at - t0) / 1000
  })
  await stopProcess(server)
  return { t0, clients: records }
}

function aria2Args(dir, listenPort, logFile) {
  return [
    'aria2c',
    `--dir=${dir}`,
    `--log=${logFile}`,
    '--log-level=notice',
    `--listen-port=${listenPort}`,
    '--enable-dht=false',
    '--enable-dht6=false',
    '--bt-enable-lpd=false',
    '--enable-peer-exchange=false',
    '--seed-ratio=0.0',
    '--file-allocation=none',
    '--allow-overwrite=true',
    '--auto-file-renaming=false',
    '--summary-interval=0',
    '--show-console-readout=false',
    '--console-log-level=warn',
    '--enable-color=false',
    '--check-certificate=false',
  ]
}

/**
 * aria2 as the mature peer: aria2 seeds the archive from the server host and every
 * client runs aria2, all announcing to imageswarm's tracker (the same .torrent, minus
 * its web seed). Clients seed until every client has extracted, then all are stopped.
 */
async function runAria2(ctx) {
  const { server } = ctx.cluster
  const { manifest } = ctx.image
  let trackerReady
  const trackerListening = new Promise((resolve) => {
    trackerReady = resolve
  })
  const tracker = spawnIn(
    server.ns,
    [process.execPath, TRACKER_ONLY, server.ip, String(HTTP_PORT), manifest.infoHash],
    {
      timeoutMs: ctx.timeoutMs + 120_000,
      onLine: (_s, line) => line === 'tracker ready' && trackerReady(),
    },
  )
  await Promise.race([trackerListening, new Promise((r) => setTimeout(r, 30_000).unref())])
  const seeder = spawnIn(
    server.ns,
    [
      ...aria2Args(ctx.image.dirs.tarballsDir, TORRENT_PORT, join(ctx.workDir, 'aria2-server.log')),
      '--bt-seed-unverified=true',
      '--check-integrity=false',
      ctx.image.aria2TorrentPath,
    ],
    { timeoutMs: ctx.timeoutMs + 120_000, onLine: (_s, line) => ctx.onServerLog?.(line) },
  )
  // Give the tracker and the seeder a moment to listen and announce.
  await new Promise((resolve) => setTimeout(resolve, 2000))
  const hook = join(ctx.workDir, 'aria2-complete.sh')
  await mkdir(ctx.workDir, { recursive: true })
  await writeFile(
    hook,
    `#!/bin/sh\n# aria2 calls this with GID, file count, path once every piece is checked.\n${verifyAndExtract('"$3"', '"$ISB_TARGET"', manifest.sha256, false)}\n`,
    { mode: 0o755 },
  )
  const t0 = performance.now()
  const records = []
  let extracted = 0
  let allDone
  const allExtracted = new Promise((resolve) => {
    allDone = resolve
  })
  const handles = ctx.clients.map((host) => {
    const record = newClientRecord(host)
    records.push(record)
    const dir = join(ctx.workDir, host.name)
    return spawnIn(
      host.ns,
      [
        ...aria2Args(
          join(dir, 'staging'),
          TORRENT_PORT,
          join(ctx.workDir, `aria2-${host.name}.log`),
        ),
        `--on-bt-download-complete=${hook}`,
        ctx.image.aria2TorrentPath,
      ],
      {
        timeoutMs: ctx.timeoutMs,
        env: { ISB_TARGET: join(dir, 'target') },
        onLine: (_stream, line, at) => {
          if (line === 'ISB-VERIFIED') record.verifiedAt = (at - t0) / 1000
          else if (line === 'ISB-EXTRACTED') {
            record.extractedAt = (at - t0) / 1000
            if (++extracted === ctx.clients.length) allDone()
          } else ctx.onClientLog?.(host, line)
        },
      },
    )
  })
  const timeout = new Promise((resolve) => setTimeout(resolve, ctx.timeoutMs).unref())
  await Promise.race([allExtracted, timeout, Promise.all(handles.map((h) => h.exited))])
  const exits = await Promise.all(handles.map((h) => stopProcess(h)))
  exits.forEach((exit, i) => {
    records[i].code = records[i].extractedAt === null ? (exit.code ?? exit.signal) : 0
    records[i].exitAt = (exit.at - t0) / 1000
  })
  await Promise.all([stopProcess(seeder), stopProcess(tracker)])
  return { t0, clients: records }
}

/**
 * imageswarm as another checkout built it (`--baseline DIR`): its server and its install
 * client, run in the same cluster and the same sweep as this tree's, so a change to the
 * engine is measured before and after on one machine in one run.
 */
function runBaseline(ctx) {
  if (!ctx.baseline) throw new Error('imageswarm-baseline needs --baseline DIR (a built checkout)')
  return runImageswarm({
    ...ctx,
    cli: join(ctx.baseline, 'packages/cli/bin/imageswarm.js'),
    installClient: join(ctx.baseline, 'packages/cli/dist/imageswarm-install.mjs'),
  })
}

/** Clients per rack for `imageswarm-racks`. */
const TESTBED_RACK_SIZE = 8

/**
 * imageswarm with the clients put in racks of 8 by the server's rack map, on the same flat
 * network: rack awareness must cost nothing where the links are not oversubscribed.
 */
async function runRacked(ctx) {
  const rackMap = join(ctx.workDir, 'racks')
  const lines = ctx.clients.map((host, i) => `${host.ip} r${Math.floor(i / TESTBED_RACK_SIZE) + 1}`)
  await writeFile(rackMap, `${lines.join('\n')}\n`)
  return runImageswarm({ ...ctx, serveArgs: [...(ctx.serveArgs ?? []), '--rack-map', rackMap] })
}

export const TRANSPORTS = {
  imageswarm: runImageswarm,
  'imageswarm-baseline': runBaseline,
  'imageswarm-racks': runRacked,
  http: runHttp,
  aria2: runAria2,
}
