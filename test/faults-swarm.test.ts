import { open, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makePeerId } from '@imageswarm/core'
import { compareTrees, INSTALL_RECORD_SKIP } from '@imageswarm/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { startCorruptPeer } from './helpers/corrupt-peer.js'
import { startFakeLeecher } from './helpers/fake-leecher.js'
import { startLibtorrentSeeder, whyNoLibtorrent } from './helpers/foreign-seeder.js'
import { useServerFixture } from './helpers/server-fixture.js'
import { fillUp, mountTmpfs, whyNoTmpfs } from './helpers/small-filesystem.js'
import { addSampleImage, clientDirs, makeServerLayout } from './helpers/workspace.js'

// The swarm's faults, as an attacker or a broken server would cause them: raw sockets
// speaking the peer wire, a peer that claims to be the server, an archive changed under
// the server, a real libtorrent seeder beside a throttled server, announces that no node
// backs, staging that fills up. Each test runs real `imageswarm serve` and `imageswarm
// install` processes on loopback.

type Install = Awaited<ReturnType<typeof runInstall>>
interface Event {
  type: string
  [key: string]: unknown
}
interface Totals {
  downloaded: number
  downloadedFromServer: number
  uploaded: number
}

const env = useServerFixture()
const cleanups: (() => Promise<unknown>)[] = []
const MiB = 1024 * 1024

// Runs before the fixture's hook, which stops the server and removes the layout.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function serve(args: string[] = []) {
  env.layout = await makeServerLayout('imageswarm-faults-swarm-')
  await addSampleImage(env.layout, 'node')
  const server = await startServer({ images: ['node'], ...env.layout, args })
  env.server = server
  const manifest = (await (await fetch(`${server.url}/images/node/manifest.json`)).json()) as {
    size: number
    infoHash: string
    pieceLength: number
    archiveFile: string
  }
  return { server, manifest, announceUrl: `${server.url}/announce` }
}

function pieceCount(manifest: { size: number; pieceLength: number }): number {
  return Math.ceil(manifest.size / manifest.pieceLength)
}

function expectSuccess(result: Install) {
  expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
  expect(result.code).toBe(0)
}

async function expectInstalledImage(target: string) {
  expect(
    await compareTrees(join(env.layout!.imagesDir, 'node'), target, {
      skipPaths: INSTALL_RECORD_SKIP,
    }),
  ).toEqual([])
}

/** A process's peak resident memory so far (VmHWM), in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /VmHWM:\s+(\d+) kB/.exec(status)
  if (!match) throw new Error(`no VmHWM for ${pid}`)
  return Number(match[1]) * 1024
}

function logged(result: Install, message: string): boolean {
  return result.logs.some((record: { msg?: string }) => record.msg === message)
}

describe('the swarm under faults and attacks (client side)', () => {
  it('drops a peer that announces a 4 GiB message: the client holds none of it and installs', async () => {
    const { server, manifest, announceUrl } = await serve(['--upload-limit', '1M'])
    // It offers 512 MiB of a message it says is 4 GiB; the client once buffered all of it
    // (RSS 115 → 710 MB for one connection).
    const offered = 512 * MiB
    const hostile = await startCorruptPeer({
      announceUrl,
      infoHash: manifest.infoHash,
      pieces: pieceCount(manifest),
      oversizedMessageBytes: offered,
    })
    cleanups.push(() => hostile.stop())
    const dirs = clientDirs(env.layout!, 1)
    const install = runInstall({ server: server.url, image: 'node', ...dirs, seedTime: 0 })
    const flood = await Promise.race([hostile.firstFloodDone, install.then(() => undefined)])
    expect(flood, 'the client dialled the hostile peer while downloading').toBeDefined()
    const peak = await peakRss(install.process.pid!)
    const result = await install
    expectSuccess(result)
    expect(flood!.closedByPeer).toBe(true)
    expect(flood!.offered).toBeLessThan(offered)
    expect(peak).toBeLessThan(256 * MiB)
    expect(logged(result, 'peer dropped: it broke the protocol')).toBe(true)
    console.info(
      `oversized message: the client closed the connection after ${(flood!.offered / MiB).toFixed(1)} MiB of ${offered / MiB} MiB offered (kernel buffers included); client peak RSS ${(peak / MiB).toFixed(0)} MiB`,
    )
    await expectInstalledImage(dirs.target)
  })

  it('bans a peer that claims to be the image server and sends junk; nothing from it counts as from the server', async () => {
    const { server, manifest, announceUrl } = await serve([
      '--upload-limit',
      '1M',
      '--piece-length',
      '65536',
    ])
    const impostor = await startCorruptPeer({
      announceUrl,
      infoHash: manifest.infoHash,
      pieces: pieceCount(manifest),
      peerId: makePeerId('server'),
    })
    cleanups.push(() => impostor.stop())
    const dirs = clientDirs(env.layout!, 1)
    const result = await runInstall({ server: server.url, image: 'node', ...dirs, seedTime: 0 })
    expectSuccess(result)
    expect(impostor.blocksSent).toBeGreaterThan(0)
    const rejected = result.events.filter((e: Event) => e.type === 'piece-rejected')
    const banned = rejected.flatMap((e: { banned: string[] }) => e.banned)
    expect(banned).toEqual([impostor.peerId])
    // Its junk came from a peer, not the server: before, a server prefix made every byte
    // of it "from server" and kept the impostor trusted.
    const totals = result.installed.totals as Totals
    expect(totals.downloadedFromServer).toBeGreaterThan(0)
    expect(totals.downloaded - totals.downloadedFromServer).toBeGreaterThan(0)
    console.info(
      `impostor server: ${impostor.blocksSent} junk blocks sent, ${rejected.length} piece(s) rejected, banned; ${totals.downloadedFromServer} B from the server, ${totals.downloaded - totals.downloadedFromServer} B from peers`,
    )
    await expectInstalledImage(dirs.target)
  })

  it('stops with E_SERVER_ARCHIVE_CHANGED (exit 5) when the archive changed on the server, having fetched a bounded amount', async () => {
    const { server, manifest } = await serve(['--upload-limit', '2M'])
    // Rewritten in place after it was published: same file, other bytes in piece 2.
    const archive = await open(join(env.layout!.tarballsDir, manifest.archiveFile), 'r+')
    await archive.write(
      Buffer.from('not what was published'),
      0,
      22,
      2 * manifest.pieceLength + 100,
    )
    await archive.close()
    const dirs = clientDirs(env.layout!, 1)
    const result = await runInstall({
      server: server.url,
      image: 'node',
      ...dirs,
      seedTime: 0,
      args: ['--stall-timeout', '60'],
    })
    expect(result.code).toBe(5)
    const { error } = result.failed
    expect(error.code).toBe('E_SERVER_ARCHIVE_CHANGED')
    expect(error.message).toMatch(/archive .* no longer matches its manifest: piece 2 \(bytes/)
    expect(error.hint).toMatch(/imageswarm serve --update-image/)
    const rejected = result.events.filter((e: Event) => e.type === 'piece-rejected')
    expect(rejected.map((e: { index: number }) => e.index)).toEqual([2, 2, 2])
    const progress = result.events.filter((e: Event) => e.type === 'download-progress')
    const fetched = (progress.at(-1)?.totals as Totals | undefined)?.downloaded ?? 0
    expect(fetched).toBeLessThanOrEqual(manifest.size + 3 * manifest.pieceLength)
    console.info(`changed archive: ${error.message}; ${fetched} B fetched for ${manifest.size} B`)
  })

  const noLibtorrent = whyNoLibtorrent()
  it.skipIf(noLibtorrent !== undefined)(
    `finishes from a libtorrent seeder what a throttled server does not send (mixed swarm)${noLibtorrent ? ` (skipped: ${noLibtorrent})` : ''}`,
    async () => {
      // 1 KiB/s: the server takes two minutes for one of the 128 KiB blocks it is asked
      // for; pieces begun with it are finished by the foreign peer in 16 KiB blocks.
      const { server, manifest } = await serve(['--upload-limit', '1K'])
      const seeder = await startLibtorrentSeeder(
        join(env.layout!.torrentsDir, `${manifest.archiveFile}.torrent`),
        env.layout!.tarballsDir,
      )
      cleanups.push(() => seeder.stop())
      const dirs = clientDirs(env.layout!, 1)
      const result = await runInstall({
        server: server.url,
        image: 'node',
        ...dirs,
        seedTime: 0,
        // The web seed stays out: the swarm of server and foreign peer must finish.
        args: ['--webseed-fallback', '3600'],
        timeoutMs: 150_000,
      })
      expectSuccess(result)
      const totals = result.installed.totals as Totals
      const fromPeers = totals.downloaded - totals.downloadedFromServer
      expect(fromPeers).toBeGreaterThan(manifest.size / 2)
      expect(seeder.state.uploaded).toBeGreaterThan(0)
      console.info(
        `mixed swarm: ${fromPeers} B from libtorrent (it reports ${seeder.state.uploaded} B uploaded), ${totals.downloadedFromServer} B from the throttled server`,
      )
      await expectInstalledImage(dirs.target)
    },
    180_000,
  )

  it('leaves the swarm within the grace when announces no node backs keep the tracker counting a downloader', async () => {
    const { server, manifest, announceUrl } = await serve(['--announce-interval', '2'])
    const fake = await startFakeLeecher({ announceUrl, infoHash: manifest.infoHash, everyMs: 1000 })
    cleanups.push(() => fake.stop())
    const dirs = clientDirs(env.layout!, 1)
    // Ten minutes of seed time: the fake downloader would have held it that long.
    const result = await runInstall({ server: server.url, image: 'node', ...dirs, seedTime: 600 })
    expectSuccess(result)
    const seeding = result.events.filter((e: Event) => e.type === 'seeding')
    // It waited for the reported downloader for the grace (three announce intervals),
    // then left, before its seed time was up.
    expect(seeding[0]?.leechers).toBeGreaterThanOrEqual(1)
    expect(seeding.at(-1)?.leechers).toBe(0)
    expect(
      logged(
        result,
        'the tracker reports downloading nodes that no connection reaches; they no longer keep this node seeding',
      ),
    ).toBe(true)
    expect(logged(result, 'seed time is up; leaving the swarm')).toBe(false)
    console.info(`fake downloader: ${seeding.length} seeding reports, then the client left`)
  })

  const noTmpfs = whyNoTmpfs()
  it.skipIf(noTmpfs !== undefined)(
    `stops with E_NO_SPACE (exit 6) when staging fills up during the download${noTmpfs ? ` (skipped: ${noTmpfs})` : ''}`,
    async () => {
      const { server, manifest } = await serve(['--upload-limit', '1M'])
      const dirs = clientDirs(env.layout!, 1)
      // Room for the archive when the client checks, gone once the download starts.
      cleanups.push(await mountTmpfs(dirs.staging, Math.ceil((manifest.size + MiB) / 4096) * 4096))
      let filled: Promise<number> | undefined
      const result = await runInstall({
        server: server.url,
        image: 'node',
        ...dirs,
        seedTime: 0,
        onEvent(event: Event) {
          if (event.type === 'staging') filled = fillUp(dirs.staging)
        },
      })
      expect(await filled).toBeGreaterThan(0)
      expect(result.code).toBe(6)
      const { error } = result.failed
      expect(error.code).toBe('E_NO_SPACE')
      expect(error.message).toMatch(
        /^no space left in .*staging while downloading node \(\d+ bytes\): ENOSPC$/,
      )
      expect(error.hint).toMatch(/--staging/)
      console.info(`staging full: ${error.message}`)
    },
  )
})
