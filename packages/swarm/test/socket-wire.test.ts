import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { SocketWire } from '../src/socket-wire.js'

const INFO_HASH = 'ab'.repeat(20)
/** The remote's BitTorrent handshake (BEP 3): no extensions, peer id ef…ef. */
const REMOTE_HANDSHAKE = Buffer.concat([
  Buffer.from([19]),
  Buffer.from('BitTorrent protocol'),
  Buffer.alloc(8),
  Buffer.from(INFO_HASH, 'hex'),
  Buffer.from('ef'.repeat(20), 'hex'),
])
const cleanups: (() => void)[] = []
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup()
})

/** A loopback connection: our end wrapped in a SocketWire, the remote end raw. */
async function connectedPair(): Promise<{ wire: SocketWire; remote: Socket }> {
  const server: Server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted = once(server, 'connection')
  const socket = connect((server.address() as { port: number }).port, '127.0.0.1')
  const [remote] = (await accepted) as [Socket]
  cleanups.push(() => {
    socket.destroy()
    remote.destroy()
    server.close()
  })
  return { wire: new SocketWire('tcpOutgoing', socket), remote }
}

describe('SocketWire', () => {
  it('parses what the socket reads and writes what the wire sends', async () => {
    const { wire, remote } = await connectedPair()
    const sent: Buffer[] = []
    remote.on('data', (chunk: Buffer) => sent.push(chunk))
    wire.handshake(INFO_HASH, 'cd'.repeat(20))
    const answered = once(wire, 'handshake')
    // The remote's handshake arrives in two reads; the parser joins them.
    remote.write(REMOTE_HANDSHAKE.subarray(0, 30))
    await new Promise((resolve) => setTimeout(resolve, 20))
    remote.write(REMOTE_HANDSHAKE.subarray(30))
    const [infoHash, peerId] = await answered
    expect([infoHash, peerId]).toEqual([INFO_HASH, 'ef'.repeat(20)])
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(Buffer.concat(sent).subarray(28, 48).toString('hex')).toBe(INFO_HASH)
  })

  it('ends the socket when the wire ends (a peer that does not speak BitTorrent)', async () => {
    const { wire, remote } = await connectedPair()
    const remoteEnded = once(remote, 'end')
    remote.write(Buffer.alloc(68, 7))
    await remoteEnded
    expect(wire.socket.writableEnded).toBe(true)
  })

  it('ends the wire when the socket ends: requests still waiting fail', async () => {
    const { wire, remote } = await connectedPair()
    wire.handshake(INFO_HASH, 'cd'.repeat(20))
    remote.write(REMOTE_HANDSHAKE)
    await once(wire, 'handshake')
    // An unchoke, so the request is sent rather than refused at once.
    remote.write(Buffer.from([0, 0, 0, 1, 1]))
    await once(wire, 'unchoke')
    const failed = new Promise<Error | null>((resolve) =>
      wire.request(0, 0, 16384, (err) => resolve(err)),
    )
    remote.end()
    expect(await failed).toBeInstanceOf(Error)
  })
})
