import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { compareTrees, INSTALL_RECORD_SKIP } from '@imageswarm/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { startCorruptPeer } from './helpers/corrupt-peer.js'
import { useHttpServers } from './helpers/http-servers.js'
import { useServerFixture } from './helpers/server-fixture.js'
import { addSampleImage, clientDirs, makeServerLayout } from './helpers/workspace.js'

type Install = Awaited<ReturnType<typeof runInstall>>

const env = useServerFixture()
const { startInterceptingProxy } = useHttpServers()
const run = promisify(execFile)
const isRoot = process.getuid?.() === 0

const mounts: string[] = []
const cleanups: (() => Promise<void>)[] = []

// Runs before the fixture's hook, which stops the server and removes the layout.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
  for (const mount of mounts.splice(0)) await run('umount', [mount]).catch(() => {})
})

async function serve(args: string[] = []) {
  env.layout = await makeServerLayout()
  await addSampleImage(env.layout, 'node')
  const server = await startServer({ images: ['node'], ...env.layout, args })
  env.server = server
  const manifest = (await (await fetch(`${server.url}/images/node/manifest.json`)).json()) as {
    size: number
    sha256: string
    infoHash: string
    pieceLength: number
    archiveFile: string
  }
  return { server, manifest }
}

/** A small tmpfs, to run out of space on purpose. */
async function mountTmpfs(dir: string, bytes: number) {
  await mkdir(dir, { recursive: true })
  await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir])
  mounts.push(dir)
}

async function expectInstalledImage(target: string) {
  const differences = await compareTrees(join(env.layout!.imagesDir, 'node'), target, {
    skipPaths: INSTALL_RECORD_SKIP,
  })
  expect(differences).toEqual([])
}

function expectSuccess(result: Install) {
  expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
  expect(result.code).toBe(0)
}

async function sha256(path: string) {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex')
}

describe('an interrupted install', () => {
  it('resumes from the pieces already downloaded after the client is killed', async () => {
    // A slow server uplink so the client can be killed halfway, and small pieces so
    // that most of what arrived before the kill is whole, verified pieces.
    const { server, manifest } = await serve(['--upload-limit', '1M', '--piece-length', '65536'])
    const dirs = clientDirs(env.layout!, 1)
    let killedAt = 0
    const first = runInstall({
      server: server.url,
      image: 'node',
      ...dirs,
      onEvent: (event: { type: string; totals?: { downloaded: number } }) => {
        if (event.type === 'download-progress' && !killedAt) {
          if ((event.totals?.downloaded ?? 0) >= manifest.size * 0.4) {
            killedAt = event.totals!.downloaded
            first.process.kill('SIGKILL')
          }
        }
      },
    })
    const killed = await first
    expect(killed.signal).toBe('SIGKILL')
    expect(killedAt).toBeGreaterThan(0)
    // Not installed, and it does not look installed.
    expect(await readdir(dirs.target)).toEqual([])

    const second = await runInstall({ server: server.url, image: 'node', ...dirs, seedTime: 0 })
    expectSuccess(second)
    const { downloaded } = second.installed.totals
    // Only what was missing came again (pieces in flight at the kill may be fetched twice).
    expect(downloaded).toBeLessThan(manifest.size - killedAt * 0.5)
    expect(downloaded).toBeLessThan(manifest.size * 0.8)
    console.info(
      `resume: archive ${manifest.size} B; killed after ${killedAt} B; the second run downloaded ${downloaded} B`,
    )
    await expectInstalledImage(dirs.target)
  })
})

describe('the local image cache', () => {
  it('downloads on a miss, replaces a corrupted copy, and installs and seeds from the cache on a hit', async () => {
    // The downloads at full speed; the hit below needs the server slow, and restarts it so.
    let { server, manifest } = await serve()
    const cache = join(env.layout!.dir, 'cache')
    const cached = join(cache, manifest.archiveFile)

    const miss = await runInstall({
      server: server.url,
      image: 'node',
      ...clientDirs(env.layout!, 1),
      seedTime: 0,
      args: ['--cache', cache],
    })
    expectSuccess(miss)
    expect(miss.installed.totals.downloaded).toBeGreaterThanOrEqual(manifest.size)
    console.info(
      `cache miss: downloaded ${miss.installed.totals.downloaded} B of ${manifest.size} B`,
    )
    expect(await sha256(cached)).toBe(manifest.sha256)

    // A corrupted copy is detected, deleted and replaced by a fresh download.
    const bytes = await readFile(cached)
    const middle = Math.floor(bytes.length / 2)
    bytes.writeUInt8(bytes.readUInt8(middle) ^ 0xff, middle)
    await writeFile(cached, bytes)
    const corrupted = await runInstall({
      server: server.url,
      image: 'node',
      ...clientDirs(env.layout!, 4),
      seedTime: 0,
      args: ['--cache', cache],
    })
    expectSuccess(corrupted)
    expect(
      corrupted.logs.some((l: { msg?: string }) =>
        /does not match the server’s manifest/.test(l.msg ?? ''),
      ),
    ).toBe(true)
    expect(corrupted.installed.totals.downloaded).toBeGreaterThanOrEqual(manifest.size)
    console.info(
      `corrupted cache copy: detected and replaced by a fresh download of ${corrupted.installed.totals.downloaded} B`,
    )
    expect(await sha256(cached)).toBe(manifest.sha256)

    await env.server?.stop()
    server = await startServer({
      images: ['node'],
      ...env.layout!,
      args: ['--upload-limit', '256K'],
    })
    env.server = server

    // A hit: nothing downloaded, and the node seeds the cached copy to a fresh node at once.
    // The fresh node starts first: once it is downloading (behind the server's slow uplink),
    // the tracker counts it, so the cache-hit node, which needs no download, does not leave
    // the swarm before anyone needs it (it lingers only while nodes still download).
    const hitDirs = clientDirs(env.layout!, 2)
    const freshDirs = clientDirs(env.layout!, 3)
    let freshDownloading!: () => void
    const downloading = new Promise<void>((resolve) => {
      freshDownloading = resolve
    })
    const freshRun = runInstall({
      server: server.url,
      image: 'node',
      ...freshDirs,
      seedTime: 0,
      onEvent: (event: { type: string }) => {
        if (event.type === 'download-progress') freshDownloading()
      },
    })
    await Promise.race([downloading, freshRun])
    const [hit, fresh] = await Promise.all([
      runInstall({
        server: server.url,
        image: 'node',
        ...hitDirs,
        seedTime: 60,
        args: ['--cache', cache],
      }),
      freshRun,
    ])
    expectSuccess(hit)
    expectSuccess(fresh)
    expect(hit.installed.totals.downloaded).toBe(0)
    expect(hit.events.some((e: { type: string }) => e.type === 'download-progress')).toBe(false)
    // Pieces, not just a handshake: at least a tenth of the archive went to the fresh node.
    expect(hit.installed.totals.uploaded).toBeGreaterThan(manifest.size / 10)
    const freshFromPeers =
      fresh.installed.totals.downloaded - fresh.installed.totals.downloadedFromServer
    expect(freshFromPeers).toBeGreaterThan(0)
    console.info(
      `cache hit: downloaded ${hit.installed.totals.downloaded} B, uploaded ${hit.installed.totals.uploaded} B to a fresh node, which got ${freshFromPeers} B from peers`,
    )
    await expectInstalledImage(hitDirs.target)
    // The cache keeps its copy; nothing was staged.
    expect(await sha256(cached)).toBe(manifest.sha256)
  })

  it.skipIf(!isRoot)(
    'evicts the least recently used archive when full, and stages when the archive cannot fit',
    async () => {
      const { server, manifest } = await serve()
      // Room for the archive or an old one, not both.
      const cache = join(env.layout!.dir, 'cache')
      await mountTmpfs(cache, Math.ceil((manifest.size * 1.6) / 4096) * 4096)
      const old = join(cache, 'image-old.tar.zst')
      await writeFile(old, Buffer.alloc(Math.floor(manifest.size * 0.8), 1))
      await utimes(old, new Date('2020-01-01'), new Date('2020-01-01'))

      const evicting = await runInstall({
        server: server.url,
        image: 'node',
        ...clientDirs(env.layout!, 1),
        seedTime: 0,
        args: ['--cache', cache],
      })
      expectSuccess(evicting)
      await expect(stat(old)).rejects.toThrow(/ENOENT/)
      console.info(
        `full cache: evicted image-old.tar.zst (${Math.floor(manifest.size * 0.8)} B) to admit ${manifest.size} B`,
      )
      expect(await sha256(join(cache, manifest.archiveFile))).toBe(manifest.sha256)

      // A cache too small for the archive: said so, and the install goes through staging.
      const tiny = join(env.layout!.dir, 'tiny-cache')
      await mountTmpfs(tiny, 64 * 1024)
      const dirs = clientDirs(env.layout!, 2)
      const staged = await runInstall({
        server: server.url,
        image: 'node',
        ...dirs,
        seedTime: 0,
        args: ['--cache', tiny],
      })
      expectSuccess(staged)
      expect(
        staged.logs.some((l: { msg?: string }) =>
          /does not fit in the image cache/.test(l.msg ?? ''),
        ),
      ).toBe(true)
      expect((await readdir(tiny)).filter((name) => !name.startsWith('.'))).toEqual([])
      await expectInstalledImage(dirs.target)
    },
  )

  it('skips a cache that cannot be used, without failing the install', async () => {
    const { server } = await serve()
    const blocker = join(env.layout!.dir, 'a-file')
    await writeFile(blocker, '')
    const dirs = clientDirs(env.layout!, 1)
    const result = await runInstall({
      server: server.url,
      image: 'node',
      ...dirs,
      seedTime: 0,
      args: ['--cache', join(blocker, 'cache')],
    })
    expectSuccess(result)
    expect(
      result.logs.some((l: { msg?: string }) => /image cache cannot be used/.test(l.msg ?? '')),
    ).toBe(true)
    await expectInstalledImage(dirs.target)
  })
})

describe('getting the bytes', () => {
  it('finishes from the seeder it dials itself when the tracker is down', async () => {
    const { server, manifest } = await serve(['--no-tracker'])
    const result = await runInstall({
      server: server.url,
      image: 'node',
      ...clientDirs(env.layout!, 1),
      seedTime: 0,
      // The web seed stays out: the BitTorrent connection to the server must do.
      args: ['--webseed-fallback', '3600'],
    })
    expectSuccess(result)
    expect(result.events.some((e: { type: string }) => e.type === 'webseed-fallback')).toBe(false)
    expect(result.installed.totals.downloadedFromServer).toBeGreaterThanOrEqual(manifest.size)
    await expectInstalledImage(clientDirs(env.layout!, 1).target)
  })

  it('finishes through the web seed when neither the tracker nor the seeder can be reached', async () => {
    const { server, manifest } = await serve(['--no-tracker'])
    // A server that does not say where its seeder listens (as one older than /server.json):
    // with the tracker down too, the clients find no BitTorrent peer at all.
    const url = await startInterceptingProxy(server.url, (req, res) => {
      if (req.url !== '/server.json') return false
      res.writeHead(404).end()
      return true
    })
    const results = await Promise.all(
      [1, 2].map((n) =>
        runInstall({
          server: url,
          image: 'node',
          ...clientDirs(env.layout!, n),
          seedTime: 0,
          args: ['--webseed-fallback', '2'],
        }),
      ),
    )
    for (const [i, result] of results.entries()) {
      expectSuccess(result)
      expect(result.events.some((e: { type: string }) => e.type === 'webseed-fallback')).toBe(true)
      // No peer at all: every byte came over HTTP, from the server as the node was given it
      // (the proxy) and from the torrent's own web seed (the server's advertised address,
      // which the node does not count as its server: a url-list entry could be anyone's).
      expect(result.installed.totals.downloaded).toBeGreaterThanOrEqual(manifest.size)
      expect(result.installed.totals.downloadedFromServer).toBeGreaterThan(0)
      await expectInstalledImage(clientDirs(env.layout!, i + 1).target)
      console.info(
        `tracker and seeder out of reach: client ${i + 1} used the web seeds (${result.events.find((e: { type: string; reason?: string }) => e.type === 'webseed-fallback')?.reason}) and got ${result.installed.totals.downloaded} B of ${manifest.size} B, ${result.installed.totals.downloadedFromServer} B from the server it was given`,
      )
    }
  })

  it('rejects the pieces of a peer that sends corrupt data and still installs a correct root', async () => {
    const { server, manifest } = await serve(['--upload-limit', '1M', '--piece-length', '65536'])
    const bad = await startCorruptPeer({
      announceUrl: `${server.url}/announce`,
      infoHash: manifest.infoHash,
      pieces: Math.ceil(manifest.size / manifest.pieceLength),
    })
    cleanups.push(() => bad.stop())
    const dirs = clientDirs(env.layout!, 1)
    const result = await runInstall({ server: server.url, image: 'node', ...dirs, seedTime: 0 })
    expectSuccess(result)
    const rejected = result.events.filter((e: { type: string }) => e.type === 'piece-rejected')
    expect(bad.blocksSent).toBeGreaterThan(0)
    expect(rejected.length).toBeGreaterThan(0)
    // The corrupt peer was identified and dropped, and only it: not the image server,
    // whose blocks may have shared a piece with the corrupt ones.
    const banned = rejected.flatMap((e: { banned: string[] }) => e.banned)
    expect(banned.length).toBeGreaterThan(0)
    for (const peer of banned)
      expect(Buffer.from(peer, 'hex').toString('latin1')).toMatch(/^-XX0001-/)
    console.info(
      `corrupt peer: sent ${bad.blocksSent} bad blocks; ${rejected.length} piece(s) rejected; banned ${banned.join(', ')}`,
    )
    await expectInstalledImage(dirs.target)
  })
})

describe('the single-file client', () => {
  it('installs an image with nothing but node and the bundle', async () => {
    const { server } = await serve()
    const alone = join(env.layout!.dir, 'ramdisk')
    await mkdir(alone)
    const bundle = join(alone, 'imageswarm-install.mjs')
    await writeFile(
      bundle,
      await readFile(new URL('../packages/cli/dist/imageswarm-install.mjs', import.meta.url)),
    )
    const dirs = clientDirs(env.layout!, 1)
    const result = await runInstall({
      command: [bundle],
      server: server.url,
      image: 'node',
      ...dirs,
      seedTime: 0,
    })
    expectSuccess(result)
    await expectInstalledImage(dirs.target)
  })
})

describe('staging', () => {
  it.skipIf(!isRoot)(
    'fails with the numbers, before any download, when staging is too small',
    async () => {
      const { server } = await serve()
      const dirs = clientDirs(env.layout!, 1)
      await mountTmpfs(dirs.staging, 1024 * 1024)
      const result = await runInstall({
        server: server.url,
        image: 'node',
        ...dirs,
        seedTime: 0,
      })
      expect(result.code).toBe(6)
      expect(result.failed.error.code).toBe('E_NO_SPACE')
      console.info(`staging too small: ${result.failed.error.message}`)
      expect(result.failed.error.message).toMatch(
        /has 1\.0 MiB free; the archive needs \d+\.\d MiB/,
      )
      expect(result.events.some((e: { type: string }) => e.type === 'download-progress')).toBe(
        false,
      )
      expect(await readdir(dirs.staging)).toEqual([])
      expect(await readdir(dirs.target)).toEqual([])
    },
  )

  it('stages on the target disk when asked to choose and memory is short, and leaves no trace', async () => {
    const { server } = await serve()
    const dirs = clientDirs(env.layout!, 1)
    // A memory reserve larger than this machine's memory: tmpfs cannot hold the archive.
    const result = await runInstall({
      server: server.url,
      image: 'node',
      ...dirs,
      staging: 'auto',
      seedTime: 0,
      args: ['--memory-reserve', '100000G'],
    })
    expectSuccess(result)
    const staging = result.events.find((e: { type: string }) => e.type === 'staging')
    expect(staging.dir).toBe(join(dirs.target, 'tmp', 'imageswarm-node'))
    await expectInstalledImage(dirs.target)
  })
})
