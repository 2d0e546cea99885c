import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { copyFile, open, readFile } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { join } from 'node:path'
import { makePeerId } from '@imageswarm/core'
import TrackerServer from 'bittorrent-tracker/server'
import { afterEach, describe, expect, it } from 'vitest'
import {
  archive,
  cleanups,
  havesHeard,
  node,
  rawListener,
  rawPeer,
  runCleanups,
  startLiar,
  until,
} from './fixtures.js'
import { finished, PIECE } from './helpers.js'

afterEach(runCleanups)

async function startTracker(): Promise<string> {
  const tracker = new TrackerServer({ udp: false, ws: false, stats: false })
  tracker.listen(0, '127.0.0.1')
  await once(tracker, 'listening')
  cleanups.push(() => new Promise<void>((resolve) => tracker.close(() => resolve())))
  return `http://127.0.0.1:${(tracker.http!.address() as { port: number }).port}/announce`
}

describe('ArchiveSwarm', () => {
  it('delivers the archive to three clients that find each other through a tracker, and they trade pieces', async () => {
    const announce = await startTracker()
    const { dir, path, data, torrent } = await archive(40 * PIECE + 12_345, [announce])
    const server = await node({ torrent, path, role: 'server' })
    const clients = await Promise.all(
      [1, 2, 3].map((n) =>
        node({
          torrent,
          path: join(dir, `client${n}.bin`),
          role: 'client',
          imageServerPort: server.host.port,
        }),
      ),
    )
    await Promise.all(clients.map((client) => finished(client.swarm)))
    for (const client of clients) {
      expect((await readFile(client.path)).equals(data)).toBe(true)
      expect(client.swarm.totals.downloaded).toBeGreaterThanOrEqual(torrent.length)
    }
    // First-copy seeding: the clients got much of the archive from each other.
    const fromPeers = clients.reduce(
      (sum, c) => sum + c.swarm.totals.downloaded - c.swarm.totals.downloadedFromServer,
      0,
    )
    expect(fromPeers).toBeGreaterThan(torrent.length / 2)
    // Uploads also count endgame blocks the receiver already had from someone else.
    expect(clients.reduce((sum, c) => sum + c.swarm.totals.uploaded, 0)).toBeGreaterThanOrEqual(
      fromPeers,
    )
    const serverCopies = server.swarm.totals.uploaded / torrent.length
    expect(serverCopies).toBeLessThan(2.5)
  })

  it('serves the whole archive to a single client with first-copy seeding (no peer to trade with)', async () => {
    const { dir, path, data, torrent } = await archive(20 * PIECE)
    const server = await node({ torrent, path, role: 'server' })
    // The client dials the image server it is given.
    const client = await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      imageServerPort: server.host.port,
    })
    await finished(client.swarm)
    expect((await readFile(client.path)).equals(data)).toBe(true)
    expect(client.swarm.totals.downloadedFromServer).toBe(torrent.length)
  })

  it('resumes: pieces already in staging are checked and kept, only the rest is fetched', async () => {
    const { dir, path, data, torrent } = await archive(16 * PIECE)
    const partial = join(dir, 'client.bin')
    await copyFile(path, partial)
    // Corrupt the second half: those pieces fail their check and are downloaded again.
    const file = await open(partial, 'r+')
    await file.write(randomBytes(8 * PIECE), 0, 8 * PIECE, 8 * PIECE)
    await file.close()
    const server = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    const client = await node({ torrent, path: partial, role: 'client' })
    expect(client.swarm.verifiedBytes).toBe(8 * PIECE)
    client.swarm.connect(server.address)
    await finished(client.swarm)
    expect(client.swarm.totals.downloaded).toBe(8 * PIECE)
    expect((await readFile(partial)).equals(data)).toBe(true)
  })

  it('drops a peer that sends corrupt pieces and finishes from honest ones', async () => {
    const { dir, path, data, torrent } = await archive(12 * PIECE)
    const liar = await startLiar(torrent.infoHash, torrent.pieces.length)
    const server = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    const client = await node({ torrent, path: join(dir, 'client.bin'), role: 'client' })
    // The liar alone first: every piece the client fetches comes from it and fails.
    const rejected = new Promise<string[]>((resolve) =>
      client.swarm.once('rejected', (_index, banned) => resolve(banned)),
    )
    client.swarm.connect(`127.0.0.1:${liar.port}`)
    expect(await rejected).toEqual([liar.peerId])
    expect(client.swarm.rejectedPieces).toBeGreaterThan(0)
    client.swarm.connect(server.address)
    await finished(client.swarm)
    expect((await readFile(client.path)).equals(data)).toBe(true)
  })

  it('falls back to the web seed (HTTP ranges) when there are no peers', async () => {
    const { dir, data, torrent } = await archive(10 * PIECE + 7)
    const http = createHttpServer((request, response) => {
      const [, start, end] = /bytes=(\d+)-(\d+)/.exec(request.headers.range ?? '') ?? []
      if (start === undefined || end === undefined) {
        response.writeHead(200).end(data)
        return
      }
      response.writeHead(206).end(data.subarray(Number(start), Number(end) + 1))
    })
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    cleanups.push(() => new Promise<void>((resolve) => http.close(() => resolve())))
    const client = await node({ torrent, path: join(dir, 'client.bin'), role: 'client' })
    client.swarm.addWebSeed(`http://127.0.0.1:${(http.address() as { port: number }).port}/a`)
    await finished(client.swarm)
    expect((await readFile(client.path)).equals(data)).toBe(true)
    expect(client.swarm.totals.downloadedFromServer).toBe(torrent.length)
  })

  it('tells a peer lacking a new piece and the server at once, and one holding it later, in one write', async () => {
    const { dir, path, torrent } = await archive(8 * PIECE)
    const server = await node({ torrent, path, role: 'server' })
    const all = torrent.pieces.map((_, index) => index)
    // The image server as the client knows it (the address it dials): it holds every
    // piece, yet counts copies by the haves. It never unchokes; the data comes from
    // `server`, an ordinary peer to this client.
    const imageServer = await rawListener(torrent.infoHash, all.length, all, makePeerId('server'))
    // Two pieces a second, so the first have leaves well before the last piece is in.
    const client = await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      settings: { downloadLimit: 2 * PIECE },
      imageServerPort: imageServer.port,
    })
    const holder = await rawPeer(client.address, torrent.infoHash, all.length, all)
    const lacker = await rawPeer(client.address, torrent.infoHash, all.length, [])
    const otherServer = await imageServer.connected
    expect(client.swarm.connections.find((c) => c.isServer)?.id).toBe(imageServer.peerId)
    // The client has counted the holders' pieces once it says it wants them.
    await until(() => holder.wire.peerInterested && otherServer.wire.peerInterested)
    const toHolder = havesHeard(holder.wire)
    const toLacker = havesHeard(lacker.wire)
    const toServer = havesHeard(otherServer.wire)
    let holderHeardAtFirst = -1
    lacker.wire.once('have', () => {
      holderHeardAtFirst = toHolder.length
    })
    // Halfway through, the server has heard about as much as the lacker (one may be on
    // its way), long before the client completes and the holder hears.
    let serverHeardHalfway = -1
    lacker.wire.on('have', () => {
      if (toLacker.length === all.length / 2) serverHeardHalfway = toServer.length
    })
    client.swarm.connect(server.address)
    await finished(client.swarm)
    // The holder hears when the client completes, well before the periodic send.
    await until(() => toHolder.length === all.length)
    expect(holderHeardAtFirst).toBe(0)
    expect(serverHeardHalfway).toBeGreaterThanOrEqual(all.length / 2 - 1)
    expect(toLacker.sort((a, b) => a - b)).toEqual(all)
    expect(toHolder.sort((a, b) => a - b)).toEqual(all)
  }, 20_000)

  it('finishes from an idle peer when another never answers its requests (endgame)', async () => {
    const { dir, path, data, torrent } = await archive(6 * PIECE)
    const server = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    const client = await node({ torrent, path: join(dir, 'client.bin'), role: 'client' })
    const all = torrent.pieces.map((_, index) => index)
    const staller = await rawPeer(client.address, torrent.infoHash, all.length, all)
    let swallowed = 0
    staller.wire.on('request', () => swallowed++)
    staller.wire.unchoke()
    await until(() => swallowed > 0)
    client.swarm.connect(server.address)
    // Well before the request timeout (20 s) would free the swallowed blocks.
    await finished(client.swarm, 10_000)
    expect((await readFile(client.path)).equals(data)).toBe(true)
  }, 15_000)

  it("tells the tracker the node's rack and name with each announce, for the rack-aware handout", async () => {
    const announces: URLSearchParams[] = []
    const tracker = createHttpServer((req, res) => {
      announces.push(new URL(req.url ?? '/', 'http://tracker').searchParams)
      res.end('d8:intervali1e5:peers0:e')
    })
    tracker.listen(0, '127.0.0.1')
    await once(tracker, 'listening')
    cleanups.push(() => new Promise<void>((resolve) => tracker.close(() => resolve())))
    const announce = `http://127.0.0.1:${(tracker.address() as { port: number }).port}/announce`
    const { dir, torrent } = await archive(2 * PIECE, [announce])
    await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      settings: { rack: 'row2.r7' },
      nodeName: 'n0207',
    })
    await until(() => announces.length >= 1, 20_000)
    for (const query of announces) {
      expect(query.get('rack')).toBe('row2.r7')
      expect(query.get('node')).toBe('n0207')
    }
  })

  it('dials at most a quarter of its connections and keeps the rest for nodes that dial it', async () => {
    const { dir, torrent } = await archive(4 * PIECE)
    const all = torrent.pieces.map((_, index) => index)
    const listeners = await Promise.all(
      [1, 2, 3, 4].map(() => rawListener(torrent.infoHash, all.length, all, makePeerId('client'))),
    )
    const client = await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      settings: { maxConnections: 8 },
    })
    for (const listener of listeners) client.swarm.connect(`127.0.0.1:${listener.port}`)
    await until(() => client.swarm.peerCount === 2)
    // The other two were never dialled. Had they been, their loopback connections would
    // have been accepted with the first two, before those finished their handshakes.
    expect(listeners.map((listener) => listener.dialled)).toEqual([true, true, false, false])
    expect(client.swarm.peerCount).toBe(2)
  })

  it('keeps one connection when two nodes dial each other at once', async () => {
    const { dir, path, torrent } = await archive(4 * PIECE)
    const a = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    const b = await node({ torrent, path: join(dir, 'b.bin'), role: 'client' })
    a.swarm.connect(b.address)
    b.swarm.connect(a.address)
    await finished(b.swarm)
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(a.swarm.peerCount).toBe(1)
    expect(b.swarm.peerCount).toBe(1)
  })
})
