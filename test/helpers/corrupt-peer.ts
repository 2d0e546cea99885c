import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import BitField from 'bitfield'
import Protocol from 'bittorrent-protocol'

export interface CorruptPeerOptions {
  announceUrl: string
  infoHash: string
  pieces: number
  /** Its peer id, 40 hex digits; by default a foreign client's (`-XX0001-`). Give it one
   * with the image server's prefix to claim to be the server. */
  peerId?: string
  /**
   * Instead of answering requests with junk, announce a message of 4 GiB (length
   * 0xFFFFFFFF) right after the handshake and send up to this many bytes of it, as long
   * as the other end takes them.
   */
  oversizedMessageBytes?: number
}

/**
 * A peer that claims to have every piece and answers every request with random bytes,
 * as a broken disk or a hostile node would, or (`oversizedMessageBytes`) one that tries to
 * make whoever connects buffer a 4 GiB message. It announces itself to the tracker as a
 * seeder so install clients find it.
 */
export async function startCorruptPeer(options: CorruptPeerOptions) {
  const peerId =
    options.peerId ?? Buffer.concat([Buffer.from('-XX0001-'), randomBytes(12)]).toString('hex')
  const sockets = new Set<Socket>()
  let blocksSent = 0
  const floods: { offered: number; closedByPeer: boolean }[] = []
  let firstFlood: ((flood: { offered: number; closedByPeer: boolean }) => void) | undefined
  const firstFloodDone = new Promise<{ offered: number; closedByPeer: boolean }>((resolve) => {
    firstFlood = resolve
  })
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const wire = new Protocol()
    socket.pipe(wire).pipe(socket)
    wire.on('error', () => socket.destroy())
    wire.on('handshake', (infoHash: string) => {
      if (infoHash !== options.infoHash) return socket.destroy()
      if (options.oversizedMessageBytes !== undefined) {
        // Straight onto the socket, in order: the wire's own writes would trail behind.
        socket.unpipe(wire)
        socket.write(handshakeOf(options.infoHash, peerId))
        void flood(socket, options.oversizedMessageBytes).then((result) => {
          floods.push(result)
          firstFlood?.(result)
        })
        return
      }
      wire.handshake(options.infoHash, peerId)
      const bitfield = new BitField(options.pieces)
      for (let i = 0; i < options.pieces; i++) bitfield.set(i, true)
      wire.bitfield(bitfield)
      wire.unchoke()
    })
    wire.on('interested', () => wire.unchoke())
    wire.on(
      'request',
      (
        _index: number,
        _offset: number,
        length: number,
        respond: (err: Error | null, block?: Buffer) => void,
      ) => {
        blocksSent++
        respond(null, randomBytes(length))
      },
    )
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port

  const announce = (event?: string) =>
    announceTo({ ...options, peerId, port, left: 0, ...(event ? { event } : {}) })
  await announce('started')
  const timer = setInterval(() => announce().catch(() => {}), 2000)

  return {
    port,
    peerId,
    get blocksSent() {
      return blocksSent
    },
    /** Each oversized-message attempt: bytes offered, and whether the other end closed. */
    floods,
    /** The first attempt, once the other end closed or took every byte. */
    firstFloodDone,
    async stop() {
      clearInterval(timer)
      await announce('stopped').catch(() => {})
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** A BitTorrent handshake (BEP 3), no extensions. */
function handshakeOf(infoHash: string, peerId: string): Buffer {
  return Buffer.concat([
    Buffer.from([19]),
    Buffer.from('BitTorrent protocol'),
    Buffer.alloc(8),
    Buffer.from(infoHash, 'hex'),
    Buffer.from(peerId, 'hex'),
  ])
}

/** Sends a 4 GiB length prefix, then up to `bytes` of filler while the socket takes it. */
async function flood(socket: Socket, bytes: number) {
  const chunk = Buffer.alloc(64 * 1024, 0x5a)
  socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff]))
  let offered = 0
  while (offered < bytes && !socket.destroyed && socket.writable) {
    offered += chunk.length
    if (!socket.write(chunk)) {
      await new Promise((resolve) => {
        socket.once('drain', resolve)
        socket.once('close', resolve)
      })
    }
  }
  return { offered, closedByPeer: offered < bytes }
}

/** One HTTP announce (BEP 3) of a peer at `port` on the announcing host. */
export async function announceTo(options: {
  announceUrl: string
  infoHash: string
  peerId: string
  port: number
  /** Bytes it says it still needs: 0 for a seeder. */
  left: number
  event?: string
}): Promise<void> {
  const params = [
    `info_hash=${escapeBinary(Buffer.from(options.infoHash, 'hex'))}`,
    `peer_id=${escapeBinary(Buffer.from(options.peerId, 'hex'))}`,
    `port=${options.port}`,
    'uploaded=0',
    'downloaded=0',
    `left=${options.left}`,
    'compact=1',
    ...(options.event ? [`event=${options.event}`] : []),
  ]
  const response = await fetch(`${options.announceUrl}?${params.join('&')}`)
  await response.arrayBuffer()
}

function escapeBinary(bytes: Buffer): string {
  return [...bytes].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('')
}
