import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import BitField from 'bitfield'
import Protocol from 'bittorrent-protocol'

export interface CorruptPeerOptions {
  announceUrl: string
  infoHash: string
  pieces: number
}

/**
 * A peer that claims to have every piece and answers every request with random bytes,
 * as a broken disk or a hostile node would. It announces itself to the tracker as a
 * seeder so install clients find it.
 */
export async function startCorruptPeer(options: CorruptPeerOptions) {
  const peerId = Buffer.concat([Buffer.from('-XX0001-'), randomBytes(12)]).toString('hex')
  const sockets = new Set<Socket>()
  let blocksSent = 0
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const wire = new Protocol()
    socket.pipe(wire).pipe(socket)
    wire.on('error', () => socket.destroy())
    wire.on('handshake', (infoHash: string) => {
      if (infoHash !== options.infoHash) return socket.destroy()
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

  const announce = async (event?: string) => {
    const infoHash = Buffer.from(options.infoHash, 'hex')
    const params = [
      `info_hash=${escapeBinary(infoHash)}`,
      `peer_id=${escapeBinary(Buffer.from(peerId, 'hex'))}`,
      `port=${port}`,
      'uploaded=0',
      'downloaded=0',
      'left=0',
      'compact=1',
      ...(event ? [`event=${event}`] : []),
    ]
    const response = await fetch(`${options.announceUrl}?${params.join('&')}`)
    await response.arrayBuffer()
  }
  await announce('started')
  const timer = setInterval(() => announce().catch(() => {}), 2000)

  return {
    port,
    get blocksSent() {
      return blocksSent
    },
    async stop() {
      clearInterval(timer)
      await announce('stopped').catch(() => {})
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

function escapeBinary(bytes: Buffer): string {
  return [...bytes].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('')
}
