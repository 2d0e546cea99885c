// Several image servers in the emulated cluster (issue 21): a primary `imageswarm serve`
// on one server host, a mirror (`serve --mirror-of`) on another that fills from the
// primary through the swarm, and install clients given both, with one fault injected
// once the clients are part way through: the primary killed, or its HTTP port (tracker,
// manifests, web seed) black-holed while its seeder keeps running.
import { readFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { blackHolePort, readCounters } from './netns.mjs'
import { spawnIn, stopProcess } from './processes.mjs'
import {
  CLI,
  HTTP_PORT,
  INSTALL_CLIENT,
  INSTALL_CLIENT_NODE_ARGS,
  TORRENT_PORT,
} from './transports.mjs'

/** What `deployClients` can do to the primary: nothing, SIGKILL it, or lose its HTTP port. */
export const FAULTS = ['none', 'server', 'tracker']

/** Log and output lines kept per process, the newest. */
const KEPT_LINES = 2000

function parseJson(line) {
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}

function keep(list, item) {
  list.push(item)
  if (list.length > KEPT_LINES) list.splice(0, list.length - KEPT_LINES)
}

function serverUrl(host) {
  return `http://${host.ip}:${HTTP_PORT}`
}

/**
 * Runs `imageswarm serve ARGS` on `host` and resolves with its handle once one of its
 * JSON log records satisfies `isReady` (the record is then `handle.ready`). Rejects if it
 * exits first or is not ready after `readyTimeoutMs`. The handle: `{ child, exited, kill,
 * host, url, logs, ready, pid }`.
 * @param {any} host
 * @param {string[]} args
 * @param {{ isReady: (record: any) => boolean, what?: string, readyTimeoutMs?: number,
 *   lifetimeMs?: number, cli?: string }} options
 */
export async function startServe(
  host,
  args,
  { isReady, what = 'imageswarm serve', readyTimeoutMs = 300_000, lifetimeMs, cli = CLI } = {},
) {
  const logs = []
  let ready
  const isReadyNow = new Promise((resolve) => {
    ready = resolve
  })
  const handle = spawnIn(host.ns, [process.execPath, cli, 'serve', ...args], {
    timeoutMs: lifetimeMs ?? readyTimeoutMs + 1_800_000,
    onLine: (_stream, line) => {
      const record = parseJson(line) ?? { msg: line }
      keep(logs, record)
      if (isReady(record)) ready(record)
    },
  })
  const tail = () =>
    logs
      .slice(-20)
      .map((l) => l.msg + (l.err ? ` ${JSON.stringify(l.err)}` : ''))
      .join('\n')
  const exitedEarly = handle.exited.then((r) => {
    throw new Error(`${what} on ${host.name} exited (${r.code ?? r.signal}) first:\n${tail()}`)
  })
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      handle.kill('SIGKILL')
      reject(
        new Error(`${what} on ${host.name} not ready after ${readyTimeoutMs / 1000} s:\n${tail()}`),
      )
    }, readyTimeoutMs)
  })
  try {
    const record = await Promise.race([isReadyNow, exitedEarly, timeout])
    return { ...handle, host, url: serverUrl(host), logs, ready: record, pid: handle.child.pid }
  } finally {
    clearTimeout(timer)
    exitedEarly.catch(() => {})
  }
}

function listenArgs(host, pidFile) {
  return [
    '--address',
    host.ip,
    '--port',
    String(HTTP_PORT),
    '--torrent-port',
    String(TORRENT_PORT),
    '--pid-file',
    pidFile,
  ]
}

/**
 * The primary: `serve --image NAME` with the image's directories on `host`, ready at
 * 'serving images'. `args` are added (e.g. `['--keys', DIR]`).
 * @param {{ host: any, image: { name: string, dirs: Record<string, string> }, workDir: string,
 *   args?: string[], readyTimeoutMs?: number, lifetimeMs?: number, cli?: string }} options
 */
export async function startPrimary({ host, image, workDir, args = [], ...options }) {
  await mkdir(workDir, { recursive: true })
  const { dirs } = image
  return startServe(
    host,
    [
      '--image',
      image.name,
      '--images-dir',
      dirs.imagesDir,
      '--tarballs-dir',
      dirs.tarballsDir,
      '--torrents-dir',
      dirs.torrentsDir,
      ...listenArgs(host, join(workDir, `serve-${host.name}.pid`)),
      ...args,
    ],
    { ...options, what: 'primary server', isReady: (r) => r.msg === 'serving images' },
  )
}

/**
 * A mirror of `primaryUrl` on `host`, with its own (new, empty) directories under
 * `workDir`; ready once it logs 'image mirrored' for `imageName`. `handle.mirrored` holds
 * that record's fields: image, infoHash, downloaded, downloadedFromWebSeed, seconds.
 * @param {{ host: any, primaryUrl: string, imageName?: string, workDir: string,
 *   args?: string[], readyTimeoutMs?: number, lifetimeMs?: number, cli?: string }} options
 */
export async function startMirror({ host, primaryUrl, imageName, workDir, args = [], ...options }) {
  const dir = join(workDir, `mirror-${host.name}`)
  const dirs = {
    imagesDir: join(dir, 'images'),
    tarballsDir: join(dir, 'tarballs'),
    torrentsDir: join(dir, 'torrents'),
  }
  for (const d of Object.values(dirs)) await mkdir(d, { recursive: true })
  const handle = await startServe(
    host,
    [
      '--mirror-of',
      primaryUrl,
      '--images-dir',
      dirs.imagesDir,
      '--tarballs-dir',
      dirs.tarballsDir,
      '--torrents-dir',
      dirs.torrentsDir,
      ...listenArgs(host, join(dir, 'serve.pid')),
      ...args,
    ],
    {
      ...options,
      what: 'mirror server',
      isReady: (r) => r.msg === 'image mirrored' && (!imageName || r.image === imageName),
    },
  )
  const { image, infoHash, downloaded, downloadedFromWebSeed, seconds } = handle.ready
  return {
    ...handle,
    dirs,
    mirrored: { image, infoHash, downloaded, downloadedFromWebSeed, seconds },
  }
}

/**
 * Kills a server as a crash would: SIGKILL to its process group (the serve process, whose
 * PID the process group carries, and anything it started), by PID.
 */
export function killServer(server) {
  try {
    process.kill(-server.pid, 'SIGKILL')
  } catch {}
}

/** Stops a server politely (SIGTERM, then SIGKILL), also one already killed. */
export async function stopServer(server) {
  const result = await stopProcess(server)
  // The leader may be gone while something it started is not; the group still has its PID.
  killServer(server)
  return result
}

/**
 * Reads the PID a server wrote to its --pid-file (undefined if none), to check that the
 * process the runner kills is the one the server says it is.
 */
export function readPidFile(path) {
  try {
    return Number(readFileSync(path, 'utf8').trim()) || undefined
  } catch {
    return undefined
  }
}

/**
 * What one install client did: times in seconds since the clients started, `progress` its
 * last downloaded / size, `errors` its 'failed' event and error-level log records,
 * `stderr` its log (the newest lines).
 * @typedef {{ name: string, dir: string, target: string, code: number | null,
 *   signal: string | null, exitAt: number | null, verifiedAt: number | null,
 *   sha256At: number | null, extractedAt: number | null, installedAt: number | null,
 *   progress: number, totals: any, errors: any[], failed?: any, stderr: string[] }} ClientRecord
 */

/** @returns {ClientRecord} */
function newClientRecord(host, dir) {
  return {
    name: host.name,
    dir,
    target: join(dir, 'target'),
    code: null,
    signal: null,
    exitAt: null,
    verifiedAt: null,
    sha256At: null,
    extractedAt: null,
    installedAt: null,
    progress: 0,
    totals: null,
    errors: [],
    stderr: [],
  }
}

/**
 * Runs one install client per host of `hosts` with `--server` = `servers` (URLs, in that
 * order) and waits until every one has exited (each bounded by `timeoutMs`). When the
 * clients' mean progress (download-progress totals.downloaded / size, 1 once a client's
 * download completed) first reaches `failAt`, injects `fail` into `primary` (a handle from
 * startPrimary): 'server' kills it, 'tracker' black-holes its HTTP port until the clients
 * are done. Returns `{ t0, fail, failAt, faultAt, progressAtFault, clients, sent }`: times
 * in seconds since the clients started, `sent` the bytes each host sent meanwhile (bridge
 * counters, readable after a server died).
 * @param {{ cluster: any, hosts?: any[], servers: string[], imageName: string,
 *   workDir: string, primary?: any, fail?: string, failAt?: number, timeoutMs?: number,
 *   seedTimeSeconds?: number, installArgs?: string[], clientEnv?: Record<string, string>,
 *   installClient?: string, log?: (line: string) => void,
 *   onClientLog?: (host: any, line: string) => void }} options
 */
export async function deployClients({
  cluster,
  hosts = cluster.clients,
  servers,
  imageName,
  workDir,
  primary,
  fail = 'none',
  failAt = 0.5,
  timeoutMs = 300_000,
  seedTimeSeconds = Math.ceil(timeoutMs / 1000),
  installArgs = [],
  clientEnv,
  installClient = INSTALL_CLIENT,
  log = () => {},
  onClientLog,
}) {
  if (!FAULTS.includes(fail)) throw new Error(`bad fail ${JSON.stringify(fail)}: one of ${FAULTS}`)
  if (fail !== 'none' && !primary) throw new Error(`fail '${fail}' needs the primary's handle`)
  if (!(failAt > 0 && failAt <= 1)) throw new Error(`bad failAt ${failAt}: expected (0, 1]`)
  await mkdir(workDir, { recursive: true })
  const before = readCounters(cluster)
  const t0 = performance.now()
  const since = (at) => (at - t0) / 1000
  const records = hosts.map((host) => newClientRecord(host, join(workDir, host.name)))
  const outcome = { t0, fail, failAt, faultAt: null, progressAtFault: null }
  let restore
  const meanProgress = () => records.reduce((sum, r) => sum + r.progress, 0) / records.length
  const maybeInjectFault = (at) => {
    if (fail === 'none' || outcome.faultAt !== null) return
    const mean = meanProgress()
    if (mean < failAt) return
    outcome.faultAt = since(at)
    outcome.progressAtFault = mean
    if (fail === 'server') killServer(primary)
    else restore = blackHolePort(cluster, primary.host, HTTP_PORT)
    log(
      `fault '${fail}' on ${primary.host.name} at ${outcome.faultAt.toFixed(1)} s (mean progress ${mean.toFixed(2)})`,
    )
  }
  const handles = hosts.map((host, i) => {
    const record = records[i]
    return spawnIn(
      host.ns,
      [
        process.execPath,
        ...INSTALL_CLIENT_NODE_ARGS,
        installClient,
        '--json',
        '--server',
        servers.join(','),
        '--image',
        imageName,
        '--staging',
        join(record.dir, 'staging'),
        '--target',
        record.target,
        '--seed-time',
        String(seedTimeSeconds),
        '--cmdline',
        '/dev/null',
        ...installArgs,
      ],
      {
        timeoutMs,
        env: clientEnv,
        onLine: (stream, line, at) => {
          if (stream !== 'stdout') {
            keep(record.stderr, line)
            const entry = parseJson(line)
            if (
              entry &&
              (entry.level >= 50 || entry.level === 'error' || entry.level === 'fatal')
            ) {
              record.errors.push(entry.err ?? entry.msg)
            }
            onClientLog?.(host, line)
            return
          }
          const event = parseJson(line)
          if (!event?.type) return
          switch (event.type) {
            case 'download-progress':
              record.progress = Math.min(1, event.totals.downloaded / event.size)
              record.totals = event.totals
              maybeInjectFault(at)
              break
            case 'download-complete':
              record.progress = 1
              record.verifiedAt = since(at)
              record.totals = event.totals
              maybeInjectFault(at)
              break
            case 'verified':
              record.sha256At = since(at)
              break
            case 'extracted':
              record.extractedAt = since(at)
              break
            case 'installed':
              record.installedAt = since(at)
              record.totals = event.totals
              break
            case 'failed':
              record.errors.push(event.error)
              record.failed = event.error
              break
          }
        },
      },
    )
  })
  try {
    const exits = await Promise.all(handles.map((h) => h.exited))
    exits.forEach((exit, i) => {
      records[i].code = exit.code
      records[i].signal = exit.signal
      records[i].exitAt = since(exit.at)
    })
  } finally {
    const after = readCounters(cluster)
    outcome.sent = Object.fromEntries(
      cluster.hosts.map((h) => [h.name, after[h.name].sent - before[h.name].sent]),
    )
    restore?.()
  }
  return { ...outcome, clients: records }
}

/** The latest of `times`, or null if any is null. */
export function latest(times) {
  return times.length > 0 && times.every((t) => t !== null) ? Math.max(...times) : null
}

/**
 * One multi-server deployment on `cluster`: the primary on `cluster.servers[0]`, with
 * `mirror` a mirror of it on `cluster.servers[1]` (waited for until 'image mirrored'),
 * then deployClients with every server started, primary first. Stops every server it
 * started. Options: cluster, image ({ name, dirs }), workDir, clients (hosts; default all
 * client hosts), mirror (default true), fail, failAt, timeoutMs, seedTimeSeconds,
 * serveArgs, mirrorArgs, installArgs, clientEnv, log. Returns deployClients' result with
 * `mirror` (the mirror's fill: its 'image mirrored' fields and the bytes the primary host
 * sent meanwhile), `servers` (name, url, sentBytes during the deployment), `archiveBytes`
 * (when `image.archiveBytes` is given, `serverCopies`: the servers' upload together in
 * archive copies), tAllVerified, tAllExtracted, finished, and the servers' logs.
 */
export async function runMultiServer(options) {
  const { cluster, image, workDir } = options
  const log = options.log ?? (() => {})
  const useMirror = options.mirror ?? true
  if (useMirror && cluster.servers.length < 2) throw new Error('a mirror needs servers: 2')
  const [primaryHost, mirrorHost] = cluster.servers
  const started = []
  try {
    const primary = await startPrimary({
      host: primaryHost,
      image,
      workDir,
      args: options.serveArgs,
    })
    started.push(primary)
    const servers = [primary]
    let mirror = null
    if (useMirror) {
      const before = readCounters(cluster)
      const handle = await startMirror({
        host: mirrorHost,
        primaryUrl: primary.url,
        imageName: image.name,
        workDir,
        args: options.mirrorArgs,
      })
      started.push(handle)
      servers.push(handle)
      const after = readCounters(cluster)
      mirror = {
        ...handle.mirrored,
        primarySentBytes: after[primaryHost.name].sent - before[primaryHost.name].sent,
      }
      log(
        `mirror filled: ${handle.mirrored.downloaded} bytes in ${handle.mirrored.seconds} s, ${handle.mirrored.downloadedFromWebSeed} from web seeds`,
      )
    }
    const pidFileSays = readPidFile(join(workDir, `serve-${primaryHost.name}.pid`))
    if (pidFileSays !== undefined && pidFileSays !== primary.pid) {
      log(`note: the primary's PID file says ${pidFileSays}, its process is ${primary.pid}`)
    }
    const outcome = await deployClients({
      cluster,
      hosts: options.clients ?? cluster.clients,
      servers: servers.map((s) => s.url),
      imageName: image.name,
      workDir: join(workDir, 'clients'),
      primary,
      fail: options.fail ?? 'none',
      failAt: options.failAt ?? 0.5,
      timeoutMs: options.timeoutMs,
      seedTimeSeconds: options.seedTimeSeconds,
      installArgs: options.installArgs,
      clientEnv: options.clientEnv,
      log,
      onClientLog: options.onClientLog,
    })
    const serverSent = servers.reduce((sum, s) => sum + outcome.sent[s.host.name], 0)
    return {
      ...outcome,
      mirror,
      servers: servers.map((s) => ({
        name: s.host.name,
        url: s.url,
        sentBytes: outcome.sent[s.host.name],
      })),
      archiveBytes: image.archiveBytes ?? null,
      serverCopies: image.archiveBytes ? serverSent / image.archiveBytes : null,
      tAllVerified: latest(outcome.clients.map((c) => c.verifiedAt)),
      tAllExtracted: latest(outcome.clients.map((c) => c.extractedAt)),
      finished: outcome.clients.filter((c) => c.code === 0 && c.extractedAt !== null).length,
      serverLogs: Object.fromEntries(servers.map((s) => [s.host.name, s.logs])),
    }
  } finally {
    await Promise.all(started.map((s) => stopServer(s)))
  }
}
