// One benchmark session: build the cluster once (for the largest N), publish the image
// once, then for every N and every transport deploy it and measure. Everything it
// starts is ended and every namespace removed when it returns, throws, or the process
// is interrupted.
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { withoutWebSeeds } from './bencode.mjs'
import {
  createCluster,
  destroyStaleNamespaces,
  namespaceInode,
  parseRate,
  readCounters,
  whyNoNamespaces,
} from './netns.mjs'
import { killAll, stopProcess } from './processes.mjs'
import { sampleNamespaces } from './procstat.mjs'
import { startImageServer, TRANSPORTS } from './transports.mjs'

export function parseSize(text) {
  const match = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|K|M|G)?$/i.exec(String(text))
  if (!match) throw new Error(`bad size ${JSON.stringify(text)}: expected e.g. 128MiB`)
  const unit = (match[2] ?? 'B').toUpperCase().replace('IB', '')
  return Math.round(Number(match[1]) * { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[unit])
}

/** An image root of incompressible files (what an archive of binaries looks like). */
export async function makeImageRoot(root, bytes) {
  const marker = join(root, '.bench-size')
  const existing = await readFile(marker, 'utf8').catch(() => '')
  if (existing === String(bytes)) return
  await rm(root, { recursive: true, force: true })
  await mkdir(join(root, 'usr/lib'), { recursive: true })
  await mkdir(join(root, 'etc'), { recursive: true })
  await writeFile(join(root, 'etc/hostname'), 'bench\n')
  const files = Math.max(1, Math.ceil(bytes / (16 * 1024 * 1024)))
  for (let i = 0; i < files; i++) {
    const size = Math.min(16 * 1024 * 1024, bytes - i * 16 * 1024 * 1024)
    await writeFile(join(root, `usr/lib/blob${i}.bin`), randomBytes(size))
  }
  await writeFile(marker, String(bytes))
}

/**
 * Runs the benchmark. Options: clients (list of N), rate (tc rate), size (bytes),
 * transports, workDir, timeoutSeconds (per run; default 30 × T_min, at least 120),
 * log, and hooks (serveArgs, installArgs, clientEnv) to try imageswarm variants.
 */
export async function runBench(options) {
  const why = whyNoNamespaces()
  if (why) throw Object.assign(new Error(`cannot run the swarm testbed: ${why}`), { skip: why })
  destroyStaleNamespaces()
  const log = options.log ?? (() => {})
  const maxN = Math.max(...options.clients)
  const rateBps = parseRate(options.rate)
  const name = `bench-${options.size}`
  const dirs = {
    imagesDir: join(options.workDir, 'images'),
    tarballsDir: join(options.workDir, 'tarballs'),
    torrentsDir: join(options.workDir, 'torrents'),
  }
  await makeImageRoot(join(dirs.imagesDir, name), options.size)

  const cluster = createCluster({ clients: maxN, rate: options.rate })
  const teardown = () => {
    killAll()
    cluster.destroy()
  }
  const onSignal = (signal) => {
    teardown()
    process.stderr.write(`\ninterrupted by ${signal}; cluster removed\n`)
    process.exit(130)
  }
  process.on('exit', teardown)
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const results = []
  try {
    log(`cluster: 1 server + ${maxN} clients at ${options.rate}; publishing ${name}`)
    const image = { name, dirs }
    const ctx0 = { cluster, image, workDir: join(options.workDir, 'runs', 'publish'), timeoutMs: 0 }
    await mkdir(ctx0.workDir, { recursive: true })
    await stopProcess(await startImageServer(ctx0))
    image.manifest = JSON.parse(
      await readFile(join(dirs.torrentsDir, `image-${name}.manifest.json`), 'utf8'),
    )
    image.archivePath = join(dirs.tarballsDir, image.manifest.archiveFile)
    image.torrentPath = join(dirs.torrentsDir, `${image.manifest.archiveFile}.torrent`)
    image.aria2TorrentPath = join(options.workDir, `${image.manifest.archiveFile}.aria2.torrent`)
    await writeFile(image.aria2TorrentPath, withoutWebSeeds(await readFile(image.torrentPath)))
    const archiveBytes = (await stat(image.archivePath)).size
    log(`archive ${archiveBytes} bytes, infohash ${image.manifest.infoHash}`)

    for (const n of options.clients) {
      for (const transport of options.transports) {
        // HTTP unicast takes N × T_min; a sweep may measure it at small N only.
        if (transport === 'http' && options.httpClients && !options.httpClients.includes(n))
          continue
        const workDir = join(options.workDir, 'runs', `${transport}-${n}`)
        await rm(workDir, { recursive: true, force: true })
        await mkdir(workDir, { recursive: true })
        const tMin = (archiveBytes * 8) / rateBps // F/u with equal links (Kumar–Ross)
        const timeoutMs = (options.timeoutSeconds ?? Math.max(120, 30 * tMin)) * 1000
        const clients = cluster.clients.slice(0, n)
        const ctx = {
          cluster,
          clients,
          image,
          workDir,
          timeoutMs,
          serveArgs: options.serveArgs,
          installArgs: options.installArgs,
          clientEnv: options.clientEnv,
          clientNodeArgs: options.clientNodeArgs,
          installClient: options.installClient,
          baseline: options.baseline,
          onClientLog: options.onClientLog,
          onClientEvent: options.onClientEvent,
        }
        log(`run ${transport} N=${n} (T_min ${tMin.toFixed(1)} s, timeout ${timeoutMs / 1000} s)`)
        const before = readCounters(cluster)
        const sampler = sampleNamespaces([
          { name: cluster.server.ns, role: 'server', inode: namespaceInode(cluster.server.ns) },
          ...clients.map((h) => ({ name: h.ns, role: 'client', inode: namespaceInode(h.ns) })),
        ])
        const started = Date.now()
        const outcome = await TRANSPORTS[transport](ctx)
        const usage = sampler.stop()
        const after = readCounters(cluster)
        const sent = (host) => after[host.name].sent - before[host.name].sent
        const verified = outcome.clients.map((c) => c.verifiedAt)
        const extracted = outcome.clients.map((c) => c.extractedAt)
        const all = (times) => (times.every((t) => t !== null) ? Math.max(...times) : null)
        const result = {
          transport,
          n,
          rate: options.rate,
          rateBps,
          archiveBytes,
          startedAt: new Date(started).toISOString(),
          tMin,
          tAllVerified: all(verified),
          tAllExtracted: all(extracted),
          finished: verified.filter((t) => t !== null).length,
          serverSentBytes: sent(cluster.server),
          serverCopies: sent(cluster.server) / archiveBytes,
          clientsSentBytes: clients.reduce((sum, h) => sum + sent(h), 0),
          usage: usage.perRole,
          clients: outcome.clients.map((c, i) => ({ ...c, sentBytes: sent(clients[i]) })),
        }
        results.push(result)
        log(summarize(result))
        options.onResult?.(result)
        // Staging and targets of this run are not needed any more; logs of a failed run are.
        if (result.finished === n && !options.keep)
          await rm(workDir, { recursive: true, force: true })
      }
    }
  } finally {
    process.off('exit', teardown)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    teardown()
  }
  return results
}

export function summarize(r) {
  const t = (x) => (x === null ? '—' : `${x.toFixed(1)} s`)
  const ratio = r.tAllVerified === null ? '' : ` (${(r.tAllVerified / r.tMin).toFixed(2)}× T_min)`
  return `${r.transport} N=${r.n}: ${r.finished}/${r.n} verified, all verified ${t(r.tAllVerified)}${ratio}, all extracted ${t(r.tAllExtracted)}; server sent ${r.serverCopies.toFixed(2)} copies; CPU client ${r.usage.client?.cpu.toFixed(1)} s, server ${r.usage.server?.cpu.toFixed(1)} s`
}
