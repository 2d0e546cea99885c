// Several image servers, no single point of failure (issue 21), on the emulated cluster:
// two server hosts and eight client hosts, each in its own network namespace behind an
// htb-capped veth (scripts/bench-swarm/lib/netns.mjs). A primary `imageswarm serve`, a
// mirror (`serve --mirror-of`) that fills from it through the swarm, install clients
// given both; then the primary is killed, or loses its HTTP port, half way through a
// deployment, and a rogue server signing with another key is refused. Needs root and
// iproute2; CI (IMAGESWARM_REQUIRE_VMS=1) fails instead of skipping without them.
import { execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { cp, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { INSTALLED_RECORD_PATH } from '@imageswarm/core'
import { compareTrees, INSTALL_RECORD_SKIP } from '@imageswarm/core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeImageRoot } from '../scripts/bench-swarm/lib/bench.mjs'
import { readTorrentUrls } from '../scripts/bench-swarm/lib/bencode.mjs'
import {
  deployClients,
  startMirror,
  startPrimary,
  stopServer,
} from '../scripts/bench-swarm/lib/multi-server.mjs'
import { createCluster, whyNoNamespaces } from '../scripts/bench-swarm/lib/netns.mjs'
import { killAll } from '../scripts/bench-swarm/lib/processes.mjs'
import { CLI } from '../scripts/bench-swarm/lib/transports.mjs'
import { skipReason } from './helpers/vm-cluster.js'

const execFileAsync = promisify(execFile)
const skip = skipReason('the multi-server test', whyNoNamespaces())

// 20 MiB of incompressible data at 16 Mbit/s: one copy takes the server about 10 s, so a
// deployment lasts long enough for "half way" to mean something, and the whole file
// stays well under three minutes on two cores.
const SIZE = 20 * 1024 * 1024
const RATE = '16mbit'
const CLIENTS = 8
const NAME = 'multi'
/** Every client process is killed after this; every server must be ready within it. */
const PROCESS_TIMEOUT_MS = 90_000
/** Long enough for the slowest client to get pieces from the first ones to finish. */
const SEED_TIME_SECONDS = 30

// The exit codes of the README's table for what a client says when a server's signature
// does not verify under its trust root.
const SIGNATURE_EXIT_CODES: Record<string, number> = {
  E_SIGNATURE_INVALID: 18,
  E_KEY_UNKNOWN: 18,
  E_KEYLIST_UNTRUSTED: 22,
}

type Cluster = ReturnType<typeof createCluster>
type Host = Cluster['hosts'][number]
type Server = Awaited<ReturnType<typeof startPrimary>>
type Mirror = Awaited<ReturnType<typeof startMirror>>
type Deployment = Awaited<ReturnType<typeof deployClients>>
type ClientRecord = Deployment['clients'][number]

let cluster: Cluster | undefined
let work = ''
let image: {
  name: string
  root: string
  dirs: { imagesDir: string; tarballsDir: string; torrentsDir: string }
}
let archiveBytes = 0
let archiveFile = ''
let primary: Server | undefined
let mirror: Mirror | undefined
let phase = 0

/** A fresh directory under the test's work directory for one step. */
function stepDir(what: string): string {
  phase += 1
  return join(work, `${phase}-${what}`)
}

function clusterOf(): Cluster {
  if (!cluster) throw new Error('no cluster')
  return cluster
}

/** The two server hosts: A (10.77.0.1) and the second (10.77.0.2). */
function serverHosts(): [Host, Host] {
  const [a, b] = clusterOf().servers
  if (!a || !b) throw new Error('the cluster has fewer than two server hosts')
  return [a, b]
}

async function ensurePrimary(): Promise<Server> {
  if (primary && primary.child.exitCode === null && primary.child.signalCode === null) {
    return primary
  }
  primary = await startPrimary({
    host: serverHosts()[0],
    image,
    workDir: stepDir('primary'),
    readyTimeoutMs: PROCESS_TIMEOUT_MS,
  })
  return primary
}

async function ensureMirror(): Promise<Mirror> {
  const a = await ensurePrimary()
  if (mirror && mirror.child.exitCode === null && mirror.child.signalCode === null) return mirror
  mirror = await startMirror({
    host: serverHosts()[1],
    primaryUrl: a.url,
    imageName: NAME,
    workDir: stepDir('mirror'),
    readyTimeoutMs: PROCESS_TIMEOUT_MS,
  })
  return mirror
}

async function stopAllServers() {
  await Promise.all([primary, mirror].flatMap((s) => (s ? [stopServer(s)] : [])))
  primary = undefined
  mirror = undefined
}

/** GET `url` from inside `host`'s namespace (the test's own namespace cannot reach it). */
async function fetchFrom(host: Host, url: string): Promise<Buffer> {
  const { stdout } = await execFileAsync(
    'ip',
    ['netns', 'exec', host.ns, 'curl', '-sS', '--fail', '--max-time', '15', url],
    { encoding: 'buffer', maxBuffer: 16 << 20, timeout: 30_000 },
  )
  return stdout
}

function describeClient(c: ClientRecord): string {
  return JSON.stringify({
    name: c.name,
    code: c.code,
    signal: c.signal,
    progress: c.progress,
    errors: c.errors,
    stderr: c.stderr.slice(-8),
  })
}

/** Why a fault was not injected: the clients never got half way (how each one ended). */
function noFault(what: string, outcome: Deployment): string {
  return `${what}; the clients: ${outcome.clients.map(describeClient).join('\n')}`
}

/** Every client exited 0 and holds exactly the image root (content, mode, owner, times). */
async function expectInstalled(clients: ClientRecord[]) {
  for (const c of clients) {
    expect(c.code, describeClient(c)).toBe(0)
    expect(c.extractedAt, `${c.name} extracted`).not.toBeNull()
  }
  for (const c of clients) {
    const differences = await compareTrees(image.root, c.target, {
      skipPaths: INSTALL_RECORD_SKIP,
    })
    expect(differences, `${c.name}'s target root`).toEqual([])
  }
}

beforeAll(async () => {
  if (skip) return
  work = await mkdtemp(join(tmpdir(), 'imageswarm-multi-server-'))
  image = {
    name: NAME,
    root: join(work, 'images', NAME),
    dirs: {
      imagesDir: join(work, 'images'),
      tarballsDir: join(work, 'tarballs'),
      torrentsDir: join(work, 'torrents'),
    },
  }
  await makeImageRoot(image.root, SIZE)
  cluster = createCluster({ clients: CLIENTS, rate: RATE, servers: 2 })
  await ensurePrimary()
  const manifest = JSON.parse(
    await readFile(join(image.dirs.torrentsDir, `image-${NAME}.manifest.json`), 'utf8'),
  )
  archiveFile = manifest.archiveFile
  archiveBytes = (await stat(join(image.dirs.tarballsDir, archiveFile))).size
})

afterAll(async () => {
  await stopAllServers().catch(() => {})
  killAll()
  cluster?.destroy()
  if (work) await rm(work, { recursive: true, force: true })
})

describe.skipIf(skip !== undefined)('several image servers (network namespaces)', () => {
  it('fills an empty mirror from the primary through the swarm, then serves the same manifest and a torrent naming both servers', async () => {
    const [a, b] = serverHosts()
    const m = await ensureMirror()
    expect(m.mirrored.image).toBe(NAME)
    expect(m.mirrored.downloadedFromWebSeed, 'bytes from web seeds').toBe(0)
    expect(m.mirrored.downloaded, 'bytes the mirror downloaded').toBe(archiveBytes)

    const reader = clusterOf().clients[0]
    if (!reader) throw new Error('no client host')
    const path = `/images/${NAME}/manifest.json`
    const fromA = await fetchFrom(reader, `http://${a.ip}:6969${path}`)
    const fromB = await fetchFrom(reader, `http://${b.ip}:6969${path}`)
    expect(fromB.equals(fromA), 'manifest bytes from the mirror and the primary').toBe(true)
    expect(m.mirrored.infoHash).toBe(JSON.parse(fromA.toString('utf8')).infoHash)

    const torrent = readTorrentUrls(
      await fetchFrom(reader, `http://${b.ip}:6969/images/${NAME}/image.torrent`),
    )
    const hostOf = (url: string) => new URL(url).hostname
    const tierWithBoth = torrent.announceList.find((tier) => {
      const hosts = tier.map(hostOf)
      return hosts.includes(a.ip) && hosts.includes(b.ip)
    })
    expect(tierWithBoth, `one tier of ${JSON.stringify(torrent.announceList)}`).toBeDefined()
    const seeds = torrent.urlList.filter((url) => url.endsWith(`/${archiveFile}`)).map(hostOf)
    expect(seeds, `web seeds ${JSON.stringify(torrent.urlList)}`).toEqual(
      expect.arrayContaining([a.ip, b.ip]),
    )
  }, 120_000)

  it('installs every client correctly when the primary is killed half way through', async () => {
    const a = await ensurePrimary()
    const b = await ensureMirror()
    const outcome = await deployClients({
      cluster: clusterOf(),
      servers: [a.url, b.url],
      imageName: NAME,
      workDir: stepDir('killed'),
      primary: a,
      fail: 'server',
      failAt: 0.5,
      timeoutMs: PROCESS_TIMEOUT_MS,
      seedTimeSeconds: SEED_TIME_SECONDS,
    })
    expect(outcome.faultAt, noFault('the primary was killed', outcome)).not.toBeNull()
    expect((await a.exited).signal).toBe('SIGKILL')
    await expectInstalled(outcome.clients)
    // The mirror's dashboard shows the whole swarm: every node, from its own status posts.
    const [reader] = clusterOf().clients
    if (!reader) throw new Error('no client host')
    const { nodes } = JSON.parse(
      (
        await fetchFrom(reader, `http://${serverHosts()[1].ip}:6969/api/images/${NAME}/nodes`)
      ).toString('utf8'),
    ) as { nodes: { peerId: string; source: string }[] }
    expect(nodes.filter((node) => node.source === 'status')).toHaveLength(CLIENTS)
  }, 150_000)

  it("installs every client correctly when the primary's tracker is lost half way through", async () => {
    const a = await ensurePrimary()
    const b = await ensureMirror()
    const outcome = await deployClients({
      cluster: clusterOf(),
      servers: [a.url, b.url],
      imageName: NAME,
      workDir: stepDir('tracker-lost'),
      primary: a,
      fail: 'tracker',
      failAt: 0.5,
      timeoutMs: PROCESS_TIMEOUT_MS,
      seedTimeSeconds: SEED_TIME_SECONDS,
    })
    expect(
      outcome.faultAt,
      noFault("the primary's HTTP port was black-holed", outcome),
    ).not.toBeNull()
    expect(a.child.exitCode, 'the primary kept running').toBeNull()
    expect(a.child.signalCode).toBeNull()
    await expectInstalled(outcome.clients)
  }, 150_000)

  it('refuses a server whose manifest is not signed under the trust root, and installs from the next one', async () => {
    await stopAllServers()
    const [aHost, rHost] = serverHosts()
    const keysA = join(work, 'keys-a')
    const keysR = join(work, 'keys-rogue')
    await execFileAsync(process.execPath, [CLI, 'key', 'generate', '--output', keysA])
    await execFileAsync(process.execPath, [CLI, 'key', 'generate', '--output', keysR])
    primary = await startPrimary({
      host: aHost,
      image,
      workDir: stepDir('signed'),
      args: ['--keys', keysA],
      readyTimeoutMs: PROCESS_TIMEOUT_MS,
    })
    // The rogue server serves the same image from its own directories, signed with its key.
    const rogueDir = stepDir('rogue')
    const rogueImage = {
      name: NAME,
      dirs: {
        imagesDir: join(rogueDir, 'images'),
        tarballsDir: join(rogueDir, 'tarballs'),
        torrentsDir: join(rogueDir, 'torrents'),
      },
    }
    await cp(image.root, join(rogueImage.dirs.imagesDir, NAME), {
      recursive: true,
      preserveTimestamps: true,
    })
    const rogue = await startPrimary({
      host: rHost,
      image: rogueImage,
      workDir: rogueDir,
      args: ['--keys', keysR],
      readyTimeoutMs: PROCESS_TIMEOUT_MS,
    })
    mirror = undefined
    try {
      const trust = ['--trust-root', join(keysA, 'root.pub')]
      const [both, rogueOnly] = await Promise.all([
        deployClients({
          cluster: clusterOf(),
          hosts: clusterOf().clients.slice(0, 3),
          servers: [rogue.url, primary.url],
          imageName: NAME,
          workDir: stepDir('rogue-then-primary'),
          timeoutMs: PROCESS_TIMEOUT_MS,
          seedTimeSeconds: SEED_TIME_SECONDS,
          installArgs: trust,
        }),
        deployClients({
          cluster: clusterOf(),
          hosts: clusterOf().clients.slice(3, 4),
          servers: [rogue.url],
          imageName: NAME,
          workDir: stepDir('rogue-only'),
          timeoutMs: PROCESS_TIMEOUT_MS,
          seedTimeSeconds: SEED_TIME_SECONDS,
          installArgs: trust,
        }),
      ])
      await expectInstalled(both.clients)
      for (const c of both.clients) {
        const namesRogue = c.stderr.some(
          (line: string) =>
            line.includes(rHost.ip) && /refus|untrusted|signature|not signed/i.test(line),
        )
        expect(namesRogue, `${c.name}'s log names ${rHost.ip} as refused`).toBe(true)
      }
      const [alone] = rogueOnly.clients
      if (!alone) throw new Error('no rogue-only client')
      const code = alone.failed?.code as string | undefined
      expect(Object.keys(SIGNATURE_EXIT_CODES), describeClient(alone)).toContain(code)
      expect(alone.code, describeClient(alone)).toBe(SIGNATURE_EXIT_CODES[code ?? ''])
      expect(existsSync(join(alone.target, INSTALLED_RECORD_PATH))).toBe(false)
      expect(existsSync(alone.target) ? readdirSync(alone.target) : []).toEqual([])
    } finally {
      await stopServer(rogue)
    }
  }, 150_000)
})
