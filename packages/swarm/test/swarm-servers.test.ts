import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { makePeerId, silentLogger } from '@imageswarm/core'
import Protocol from 'bittorrent-protocol'
import TrackerServer from 'bittorrent-tracker/server'
import { afterEach, describe, expect, it } from 'vitest'
import { Announcer } from '../src/announcer.js'
import { archive, cleanups, node, runCleanups, until } from './fixtures.js'
import { finished, PIECE } from './helpers.js'

afterEach(runCleanups)

/**
 * An image server's seeder as the client sees it: it answers every connection's handshake
 * with a server peer id and holds every piece, but never unchokes. It counts the
 * connections it was dialled on, and `drop()` cuts the one open now.
 */
async function seederStandIn(infoHash: string, pieces: number) {
  const peerId = makePeerId('server')
  const sockets: Socket[] = []
  const server = createServer((socket) => {
    sockets.push(socket)
    socket.on('error', () => {})
    const wire = new Protocol()
    socket.pipe(wire).pipe(socket)
    wire.once('handshake', () => {
      wire.handshake(infoHash, peerId)
      wire.bitfield(new Uint8Array(Math.ceil(pieces / 8)).fill(0xff))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    port: (server.address() as { port: number }).port,
    peerId,
    get connections(): number {
      return sockets.length
    },
    drop: () => sockets.at(-1)?.destroy(),
  }
}

describe('ArchiveSwarm with several image servers', () => {
  it('dials every image server, and counts what each sends as from the server', async () => {
    const { dir, path, data, torrent } = await archive(24 * PIECE)
    const primary = await node({ torrent, path, role: 'server' })
    const mirror = await node({ torrent, path, role: 'server' })
    const client = await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      imageServerPorts: [primary.host.port, mirror.host.port],
    })
    await until(() => client.swarm.connections.filter((c) => c.isServer).length === 2)
    expect(
      client.swarm.connections
        .filter((connection) => connection.isServer)
        .map((connection) => connection.id)
        .sort(),
    ).toEqual([primary.peerId, mirror.peerId].sort())
    await finished(client.swarm)
    expect((await readFile(client.path)).equals(data)).toBe(true)
    // No other peer: every byte came from one server or the other.
    expect(client.swarm.totals.downloadedFromServer).toBe(torrent.length)
  })

  it('finishes from the mirror when the primary dies mid-download, keeping its other connections', async () => {
    const { dir, path, data, torrent } = await archive(16 * PIECE)
    const primary = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    const mirror = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    // Four pieces a second: the primary dies well before the download is through.
    const client = await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      settings: { downloadLimit: 4 * PIECE },
      imageServerPorts: [primary.host.port, mirror.host.port],
    })
    const verified: number[] = []
    client.swarm.on('verified', (index) => verified.push(index))
    await until(() => verified.length >= 2, 20_000)
    const mirrorConnection = client.swarm.connections.find(
      (connection) => connection.id === mirror.peerId,
    )
    expect(mirrorConnection?.isServer).toBe(true)
    await primary.close()
    await finished(client.swarm)
    expect((await readFile(client.path)).equals(data)).toBe(true)
    expect(client.swarm.totals.downloadedFromServer).toBe(torrent.length)
    // The mirror's connection is the one the client had all along.
    expect(client.swarm.connections).toContainEqual(mirrorConnection)
  }, 30_000)

  it('dials a server whose connection was lost again, on its own, and leaves the others be', async () => {
    const { dir, torrent } = await archive(4 * PIECE)
    const pieces = torrent.pieces.length
    const lost = await seederStandIn(torrent.infoHash, pieces)
    const kept = await seederStandIn(torrent.infoHash, pieces)
    const client = await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      imageServerPorts: [lost.port, kept.port],
    })
    await until(() => client.swarm.connections.filter((c) => c.isServer).length === 2)
    lost.drop()
    // Dialled again after SERVER_REDIAL_MS (2 s), and trusted as the server again.
    await until(() => lost.connections === 2, 10_000)
    await until(() => client.swarm.connections.filter((c) => c.isServer).length === 2)
    expect(kept.connections).toBe(1)
  }, 20_000)
})

/** A web seed on loopback: each range from `data`, or, with `junk`, random bytes. */
async function webSeed(data: Buffer, junk = false): Promise<string> {
  const http = createHttpServer((request, response) => {
    const [, start, end] = /bytes=(\d+)-(\d+)/.exec(request.headers.range ?? '') ?? []
    const range = data.subarray(Number(start), Number(end) + 1)
    response.writeHead(206).end(junk ? randomBytes(range.length) : range)
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  cleanups.push(() => new Promise<void>((resolve) => http.close(() => resolve())))
  return `http://127.0.0.1:${(http.address() as { port: number }).port}/image.tar.zst`
}

describe('web seeds no image server vouches for', () => {
  it('drops one that sends a bad piece, instead of taking the server’s archive for changed', async () => {
    const { dir, data, torrent } = await archive(8 * PIECE)
    const client = await node({ torrent, path: join(dir, 'client.bin'), role: 'client' })
    let failed: Error | undefined
    client.swarm.on('error', (err) => {
      failed = err
    })
    const bogus = await webSeed(data, true)
    const dropped = new Promise<string[]>((resolve) =>
      client.swarm.on('rejected', (_index, banned) => {
        if (banned.length > 0) resolve(banned)
      }),
    )
    // A mirror's web seed from the .torrent's url-list, which no image server vouches for.
    client.swarm.addWebSeed(bogus, { server: false })
    expect(await dropped).toEqual([`web-seed ${bogus}`])
    client.swarm.addWebSeed(await webSeed(data))
    await finished(client.swarm)
    expect(failed).toBeUndefined()
    expect((await readFile(client.path)).equals(data)).toBe(true)
    // What the bogus one sent is not counted as from the server.
    expect(client.swarm.totals.downloadedFromServer).toBe(torrent.length)
    expect(client.swarm.totals.downloaded).toBeGreaterThan(torrent.length)
  })
})

describe('Announcer with several trackers', () => {
  it('announces to every tracker, and scrapes the one that answers when the first is dead', async () => {
    // A tracker whose server is down: nothing listens there.
    const probe = createHttpServer()
    probe.listen(0, '127.0.0.1')
    await once(probe, 'listening')
    const dead = `http://127.0.0.1:${(probe.address() as { port: number }).port}/announce`
    await new Promise((resolve) => probe.close(resolve))
    const tracker = new TrackerServer({ udp: false, ws: false, stats: false })
    tracker.listen(0, '127.0.0.1')
    await once(tracker, 'listening')
    cleanups.push(() => new Promise<void>((resolve) => tracker.close(() => resolve())))
    const live = `http://127.0.0.1:${(tracker.http!.address() as { port: number }).port}/announce`
    const { torrent } = await archive(2 * PIECE)
    const announcer = new Announcer({
      infoHash: torrent.infoHash,
      peerId: makePeerId('client'),
      announce: [dead, live],
      port: 6881,
      numwant: 10,
      state: () => ({ uploaded: 0, downloaded: 0, left: torrent.length }),
      onPeer: () => {},
      logger: silentLogger(),
    })
    cleanups.push(() => announcer.stop())
    const announced = once(tracker, 'start')
    announcer.start()
    await announced
    // The live tracker counts this node as downloading, and says so though the first is dead.
    expect(await announcer.scrape()).toBe(1)
    expect(await announcer.scrape()).toBe(1)
  }, 20_000)
})
