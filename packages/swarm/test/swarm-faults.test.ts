import { once } from 'node:events'
import { open, readFile } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { isImageSwarmError, makePeerId } from '@imageswarm/core'
import Protocol from 'bittorrent-protocol'
import { afterEach, describe, expect, it } from 'vitest'
import { MAX_PEER_REQUESTS } from '../src/socket-wire.js'
import { BLOCK_LENGTH } from '../src/torrent.js'
import { UPLOAD_QUEUE_BYTES } from '../src/upload-queue.js'
import {
  archive,
  cleanups,
  node,
  rawListener,
  rawPeer,
  runCleanups,
  startLiar,
  until,
} from './fixtures.js'
import { finished, PIECE } from './helpers.js'

afterEach(runCleanups)

/** A BitTorrent handshake (BEP 3), no extensions. */
function handshake(infoHash: string, peerId: string): Buffer {
  return Buffer.concat([
    Buffer.from([19]),
    Buffer.from('BitTorrent protocol'),
    Buffer.alloc(8),
    Buffer.from(infoHash, 'hex'),
    Buffer.from(peerId, 'hex'),
  ])
}

/** A TCP connection to `port` on loopback, after the BitTorrent handshakes, as raw bytes. */
async function handshakenSocket(port: number, infoHash: string, peerId: string) {
  const socket = connect(port, '127.0.0.1')
  cleanups.push(async () => socket.destroy())
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(handshake(infoHash, peerId))
  // Their handshake (68 bytes) comes back first.
  let received = 0
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      received += chunk.length
      if (received >= 68) {
        socket.off('data', onData)
        resolve()
      }
    }
    socket.on('data', onData)
  })
  return socket
}

/** Writes `bytes` of filler to the socket until they are written or the socket closes;
 * resolves with how many the socket took. */
async function floodUntilClosed(socket: Socket, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a)
  let written = 0
  while (written < bytes && !socket.destroyed && socket.writable) {
    written += chunk.length
    if (!socket.write(chunk)) {
      await new Promise((resolve) => {
        socket.once('drain', resolve)
        socket.once('close', resolve)
      })
    }
  }
  return written
}

describe('ArchiveSwarm against hostile peers', () => {
  it('drops and bans a peer that announces a 4 GiB message, holding at most one message of it', async () => {
    const { dir, path, data, torrent } = await archive(12 * PIECE)
    const server = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    const client = await node({ torrent, path: join(dir, 'client.bin'), role: 'client' })
    const hostileId = makePeerId('client')
    const hostile = await handshakenSocket(client.host.port, torrent.infoHash, hostileId)
    const closed = new Promise((resolve) => hostile.once('close', resolve))
    hostile.write(Buffer.from([0xff, 0xff, 0xff, 0xff]))
    // 256 MiB offered: without a cap the client would hold all of it.
    const taken = await floodUntilClosed(hostile, 256 * 1024 * 1024)
    await closed
    expect(taken).toBeLessThan(256 * 1024 * 1024)
    expect(client.host.receiveBudget.peak).toBeLessThan(1024 * 1024)
    expect(client.host.receiveBudget.total).toBe(0)
    // Banned: it is refused when it comes back.
    const again = connect(client.host.port, '127.0.0.1')
    again.on('error', () => {})
    cleanups.push(async () => again.destroy())
    const refused = new Promise((resolve) => again.once('close', resolve))
    again.resume()
    again.write(handshake(torrent.infoHash, hostileId))
    await refused
    client.swarm.connect(server.address)
    await finished(client.swarm)
    expect((await readFile(client.path)).equals(data)).toBe(true)
  })

  it('answers a peer that asks much and never reads only as fast as it reads, refusing requests beyond reqq', async () => {
    // 4,096 distinct requests of 8 KiB: twice what a peer may have waiting, and more
    // answers than the kernel's socket buffers on loopback hold (about 8 MB here).
    const BLOCK = 8 * 1024
    const { path, data, torrent } = await archive(128 * PIECE)
    const seeder = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    const socket = connect(seeder.host.port, '127.0.0.1')
    cleanups.push(async () => socket.destroy())
    await once(socket, 'connect')
    const wire = new Protocol()
    socket.pipe(wire).pipe(socket)
    wire.handshake(torrent.infoHash, makePeerId('client'), { fast: true })
    await once(wire, 'handshake')
    wire.bitfield(new Uint8Array(Math.ceil(torrent.pieces.length / 8)))
    wire.interested()
    await once(wire, 'unchoke')
    // It stops reading, then asks.
    socket.unpipe(wire)
    socket.pause()
    let answered = 0
    let refused = 0
    let wrong = 0
    const asked = torrent.length / BLOCK
    for (let index = 0; index < torrent.pieces.length; index++) {
      for (let offset = 0; offset < PIECE; offset += BLOCK) {
        const expected = data.subarray(index * PIECE + offset, index * PIECE + offset + BLOCK)
        wire.request(index, offset, BLOCK, (err, block) => {
          if (err) refused++
          else if (Buffer.from(block!).equals(expected)) answered++
          else wrong++
        })
      }
    }
    // The seeder waits for the peer to read: what waits in its memory stays small.
    await until(() => seeder.swarm.uploadBacklog.peersAwaitingDrain === 1, 10_000)
    const backlog = seeder.swarm.uploadBacklog
    expect(backlog.requests).toBeGreaterThan(0)
    expect(backlog.requests).toBeLessThanOrEqual(MAX_PEER_REQUESTS)
    expect(backlog.bytesQueued).toBeLessThanOrEqual(UPLOAD_QUEUE_BYTES + BLOCK)
    // Once it reads, every request is answered or, past MAX_PEER_REQUESTS, refused.
    socket.pipe(wire)
    socket.resume()
    await until(() => answered + refused + wrong === asked, 20_000)
    expect(wrong).toBe(0)
    expect(refused).toBeGreaterThan(0)
    expect(answered).toBeGreaterThanOrEqual(MAX_PEER_REQUESTS)
  }, 30_000)
})

describe('ArchiveSwarm and the image server', () => {
  it('trusts only the connection it dialled at the published address: an impostor with the server prefix is banned', async () => {
    const { dir, path, data, torrent } = await archive(12 * PIECE)
    const all = torrent.pieces.map((_, index) => index)
    // The image server as published: connected and trusted, but it sends nothing.
    const imageServer = await rawListener(torrent.infoHash, all.length, all, makePeerId('server'))
    const client = await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      imageServerPort: imageServer.port,
    })
    await imageServer.connected
    // A peer that says it is the image server, with the server's very peer id: refused,
    // and the server's connection stays.
    const sameId = await startLiar(torrent.infoHash, all.length, { peerId: imageServer.peerId })
    client.swarm.connect(sameId.address)
    // Another with the server's prefix: an ordinary peer, banned for its junk.
    const impostor = await startLiar(torrent.infoHash, all.length, { peerId: makePeerId('server') })
    const banned = new Promise<string[]>((resolve) =>
      client.swarm.on('rejected', (_index, ids) => {
        if (ids.length > 0) resolve(ids)
      }),
    )
    client.swarm.connect(impostor.address)
    expect(await banned).toEqual([impostor.peerId])
    expect(sameId.requests).toEqual([])
    const servers = client.swarm.connections.filter((connection) => connection.isServer)
    expect(servers).toEqual([
      { address: `127.0.0.1:${imageServer.port}`, id: imageServer.peerId, isServer: true },
    ])
    // An honest peer finishes the download; nothing counted as from the server.
    const honest = await node({ torrent, path, role: 'client', existing: 'held' })
    client.swarm.connect(honest.address)
    await finished(client.swarm)
    expect((await readFile(client.path)).equals(data)).toBe(true)
    expect(client.swarm.totals.downloadedFromServer).toBe(0)
  })

  it('stops with E_SERVER_ARCHIVE_CHANGED when a piece keeps failing from the server, having fetched a bounded amount', async () => {
    const { dir, path, torrent } = await archive(12 * PIECE)
    const server = await node({ torrent, path, role: 'server', settings: { firstCopy: false } })
    // The server's archive is changed on disk after it was published.
    const file = await open(path, 'r+')
    await file.write(Buffer.from('changed'), 0, 7, 5 * PIECE + 1000)
    await file.close()
    const client = await node({
      torrent,
      path: join(dir, 'client.bin'),
      role: 'client',
      imageServerPort: server.host.port,
    })
    const [error] = (await once(client.swarm, 'error')) as [Error]
    expect(isImageSwarmError(error) && error.code).toBe('E_SERVER_ARCHIVE_CHANGED')
    expect(error.message).toMatch(
      /no longer matches its manifest: piece 5 \(bytes 1310720–1572863\)/,
    )
    expect(isImageSwarmError(error) && error.hint).toMatch(/--update-image/)
    expect(client.swarm.rejectedPieces).toBe(3)
    expect(client.swarm.totals.downloaded).toBeLessThanOrEqual(torrent.length + 3 * PIECE)
  })

  it('stops with E_SERVER_ARCHIVE_CHANGED when the web seed alone keeps sending a bad piece', async () => {
    const { dir, data, torrent } = await archive(6 * PIECE)
    const changed = Buffer.from(data)
    changed[2 * PIECE + 5] = changed[2 * PIECE + 5]! ^ 0xff
    const http = createHttpServer((request, response) => {
      const [, start, end] = /bytes=(\d+)-(\d+)/.exec(request.headers.range ?? '') ?? []
      response.writeHead(206).end(changed.subarray(Number(start), Number(end) + 1))
    })
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    cleanups.push(() => new Promise<void>((resolve) => http.close(() => resolve())))
    const client = await node({ torrent, path: join(dir, 'client.bin'), role: 'client' })
    client.swarm.addWebSeed(`http://127.0.0.1:${(http.address() as { port: number }).port}/a`)
    const [error] = (await once(client.swarm, 'error')) as [Error]
    expect(isImageSwarmError(error) && error.code).toBe('E_SERVER_ARCHIVE_CHANGED')
    expect(error.message).toMatch(/piece 2 /)
    expect(client.swarm.rejectedPieces).toBe(3)
  })
})

describe('ArchiveSwarm in a mixed swarm', () => {
  it('lets a foreign peer finish pieces begun in large blocks by an imageswarm peer that stalls', async () => {
    const { dir, data, torrent } = await archive(6 * PIECE)
    const client = await node({ torrent, path: join(dir, 'client.bin'), role: 'client' })
    const all = torrent.pieces.map((_, index) => index)
    // An imageswarm peer (asked for 128 KiB blocks) that never answers.
    const staller = await rawPeer(
      client.address,
      torrent.infoHash,
      all.length,
      all,
      makePeerId('client'),
    )
    const stalled = new Set<number>()
    staller.wire.on('request', (index: number, _offset: number, length: number) => {
      expect(length).toBe(128 * 1024)
      stalled.add(index)
    })
    staller.wire.unchoke()
    await until(() => stalled.size > 0)
    // A foreign seeder (16 KiB blocks) with the right data.
    const foreign = await startLiar(torrent.infoHash, all.length, {
      answer: (index, offset, length) =>
        data.subarray(index * PIECE + offset, index * PIECE + offset + length),
    })
    client.swarm.connect(foreign.address)
    // Well before the request timeout (20 s) would free the stalled blocks.
    await finished(client.swarm, 10_000)
    expect((await readFile(client.path)).equals(data)).toBe(true)
    expect(foreign.requests.every((request) => request.length === BLOCK_LENGTH)).toBe(true)
    const takenOver = foreign.requests.filter((request) => stalled.has(request.index))
    expect(takenOver.length).toBeGreaterThan(0)
  }, 15_000)
})
