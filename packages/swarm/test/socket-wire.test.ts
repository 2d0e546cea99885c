import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ReceiveBudget } from '../src/receive-budget.js'
import { MAX_OTHER_MESSAGE_LENGTH, messageViolation, SocketWire } from '../src/socket-wire.js'
import { MAX_REQUEST_LENGTH } from '../src/torrent.js'

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
async function connectedPair(
  budget?: ReceiveBudget,
): Promise<{ wire: SocketWire; remote: Socket }> {
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
  return { wire: new SocketWire('tcpOutgoing', socket, budget), remote }
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

/** A message as the wire carries it: 4-byte length, id, body. */
function message(id: number, body: Uint8Array | number = 0): Buffer {
  const payload = typeof body === 'number' ? Buffer.alloc(body) : Buffer.from(body)
  const header = Buffer.alloc(5)
  header.writeUInt32BE(payload.length + 1, 0)
  header[4] = id
  return Buffer.concat([header, payload])
}

/** Our wire after the handshakes, its 'dropped' event, and the remote's close. */
async function handshaken(budget?: ReceiveBudget) {
  const pair = await connectedPair(budget)
  pair.wire.handshake(INFO_HASH, 'cd'.repeat(20))
  pair.remote.write(REMOTE_HANDSHAKE)
  await once(pair.wire, 'handshake')
  const dropped = once(pair.wire, 'dropped') as Promise<[string, boolean]>
  // Our end is destroyed with data unread: the remote may see a reset before its close.
  pair.remote.on('error', () => {})
  const remoteClosed = new Promise((resolve) => pair.remote.once('close', resolve))
  return { ...pair, dropped, remoteClosed }
}

describe('SocketWire message limits', () => {
  it('drops a peer that announces a 4 GiB message, holding none of it', async () => {
    const { wire, remote, dropped, remoteClosed } = await handshaken()
    remote.write(Buffer.from([0xff, 0xff, 0xff, 0xff]))
    remote.write(Buffer.alloc(1024 * 1024, 7))
    const [reason, brokeProtocol] = await dropped
    expect(reason).toMatch(/announced a message of 4294967295 bytes; at most \d+/)
    expect(brokeProtocol).toBe(true)
    expect(wire.bufferedBytes).toBe(0)
    await remoteClosed
  })

  it('holds a block up to 128 KiB, and drops a peer whose bitfield is longer than the torrent needs', async () => {
    const { wire, remote, dropped } = await handshaken()
    wire.limitBitfield(100)
    const pieces: number[] = []
    wire.on('piece', (index: number) => pieces.push(index))
    const block = Buffer.concat([Buffer.alloc(8), Buffer.alloc(MAX_REQUEST_LENGTH, 1)])
    remote.write(message(7, block))
    // 100 pieces take 13 bytes; 14 is one too many.
    remote.write(message(5, 14))
    const [reason] = await dropped
    expect(reason).toBe('sent message 5 of 15 bytes; at most 14')
    expect(pieces).toEqual([0])
  })

  it('reports what it holds to the receive budget, which drops it beyond the budget', async () => {
    const budget = new ReceiveBudget(64 * 1024)
    const { wire, remote, dropped } = await handshaken(budget)
    // A block announced whole, sent in part: 100 KiB held, over a 64 KiB budget.
    const header = message(7, 8 + MAX_REQUEST_LENGTH).subarray(0, 13)
    remote.write(Buffer.concat([header, Buffer.alloc(100 * 1024)]))
    const [reason, brokeProtocol] = await dropped
    expect(reason).toMatch(/over the budget of 65536/)
    expect(brokeProtocol).toBe(false)
    expect(wire.bufferedBytes).toBe(0)
    expect(budget.total).toBe(0)
  })
})

describe('messageViolation', () => {
  const bitfieldBytes = 13
  it.each([
    ['a have', message(4, 4)],
    ['a request', message(6, 12)],
    ['a 128 KiB block', message(7, 8 + MAX_REQUEST_LENGTH)],
    ['a bitfield of the torrent', message(5, bitfieldBytes)],
    ['an extended handshake', message(20, 200)],
  ])('lets %s through', (_what, bytes) => {
    expect(messageViolation(bytes.subarray(4), bitfieldBytes)).toBeUndefined()
  })

  it.each([
    ['a have of 6 bytes', message(4, 5), 'sent message 4 of 6 bytes; it has 5'],
    ['a short request', message(6, 8), 'sent message 6 of 9 bytes; it has 13'],
    [
      'a block over 128 KiB',
      message(7, 9 + MAX_REQUEST_LENGTH),
      `sent message 7 of ${10 + MAX_REQUEST_LENGTH} bytes; at most ${9 + MAX_REQUEST_LENGTH}`,
    ],
    ['a block without its offset', message(7, 4), 'sent message 7 of 5 bytes; at least 9'],
    [
      'an extended message over the cap',
      message(20, MAX_OTHER_MESSAGE_LENGTH),
      `sent message 20 of ${MAX_OTHER_MESSAGE_LENGTH + 1} bytes; at most ${MAX_OTHER_MESSAGE_LENGTH}`,
    ],
    [
      'an unknown message over the cap',
      message(99, MAX_OTHER_MESSAGE_LENGTH),
      `sent message 99 of ${MAX_OTHER_MESSAGE_LENGTH + 1} bytes; at most ${MAX_OTHER_MESSAGE_LENGTH}`,
    ],
  ])('refuses %s', (_what, bytes, reason) => {
    expect(messageViolation(bytes.subarray(4), bitfieldBytes)).toBe(reason)
  })
})
