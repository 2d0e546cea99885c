import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import Protocol from 'bittorrent-protocol'
import { makeArchive, type Node, startNode } from './helpers.js'

/** What a test started, stopped after it in reverse order (`afterEach(runCleanups)`). */
export const cleanups: (() => Promise<unknown>)[] = []

export async function runCleanups(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
}

export async function node(...args: Parameters<typeof startNode>): Promise<Node> {
  const started = await startNode(...args)
  cleanups.push(() => started.close())
  return started
}

export async function archive(bytes: number, announce: string[] = []) {
  const made = await makeArchive(bytes, announce)
  cleanups.push(made.cleanup)
  return made
}

/** A bare peer that dials `address`, announces `held` and says it is interested. */
export async function rawPeer(
  address: string,
  infoHash: string,
  pieces: number,
  held: number[],
  peerId = randomBytes(20).toString('hex'),
) {
  const [host, port] = address.split(':')
  const socket = connect(Number(port), host)
  await once(socket, 'connect')
  const wire = new Protocol()
  socket.pipe(wire).pipe(socket)
  cleanups.push(async () => socket.destroy())
  let unchoked = false
  const unchokedOnce = new Promise<void>((resolve) =>
    wire.on('unchoke', () => {
      unchoked = true
      resolve()
    }),
  )
  wire.handshake(infoHash, peerId)
  await once(wire, 'handshake')
  const bits = new Uint8Array(Math.ceil(pieces / 8))
  for (const index of held) bits[index >> 3]! |= 128 >> (index & 7)
  wire.bitfield(bits)
  wire.interested()
  return { wire, unchoked: unchokedOnce, isUnchoked: () => unchoked }
}

/** A bare peer that listens on loopback and, once dialled, announces `held` and says it
 * is interested (it never unchokes). */
export async function rawListener(
  infoHash: string,
  pieces: number,
  held: number[],
  peerId: string,
) {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const sockets: Socket[] = []
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const connected = new Promise<{ wire: Protocol }>((resolve) => {
    server.once('connection', (socket: Socket) => {
      sockets.push(socket)
      socket.on('error', () => {})
      const wire = new Protocol()
      socket.pipe(wire).pipe(socket)
      wire.once('handshake', () => {
        wire.handshake(infoHash, peerId)
        const bits = new Uint8Array(Math.ceil(pieces / 8))
        for (const index of held) bits[index >> 3]! |= 128 >> (index & 7)
        wire.bitfield(bits)
        wire.interested()
        resolve({ wire })
      })
    })
  })
  return {
    port: (server.address() as { port: number }).port,
    peerId,
    connected,
    /** Whether anything dialled it (its first connection, before any handshake). */
    get dialled(): boolean {
      return sockets.length > 0
    },
  }
}

/** The pieces a wire is told about with have messages, in order of arrival. */
export function havesHeard(wire: Protocol): number[] {
  const haves: number[] = []
  wire.on('have', (index: number) => haves.push(index))
  return haves
}

/** Resolves once `condition` holds; fails after `timeoutMs`. */
export async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * A peer that listens on loopback, claims every piece and unchokes whoever dials it. It
 * answers each request with `answer(index, offset, length)` (random bytes by default, as
 * a broken disk or a hostile node would) and records the requests it was sent.
 */
export async function startLiar(
  infoHash: string,
  pieces: number,
  options: {
    peerId?: string
    answer?: (index: number, offset: number, length: number) => Uint8Array
  } = {},
) {
  const peerId =
    options.peerId ?? Buffer.concat([Buffer.from('-XX0001-'), randomBytes(12)]).toString('hex')
  const answer = options.answer ?? ((_i: number, _o: number, length: number) => randomBytes(length))
  const requests: { index: number; offset: number; length: number }[] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    const wire = new Protocol()
    socket.pipe(wire).pipe(socket)
    wire.on('handshake', () => {
      wire.handshake(infoHash, peerId)
      const bits = new Uint8Array(Math.ceil(pieces / 8)).fill(0xff)
      wire.bitfield(bits)
      wire.unchoke()
    })
    wire.on(
      'request',
      (
        index: number,
        offset: number,
        length: number,
        respond: (e: Error | null, b?: Uint8Array) => void,
      ) => {
        requests.push({ index, offset, length })
        respond(null, answer(index, offset, length))
      },
    )
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const close = async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  cleanups.push(close)
  return {
    server,
    peerId,
    requests,
    port: (server.address() as { port: number }).port,
    get address() {
      return `127.0.0.1:${(server.address() as { port: number }).port}`
    },
    close,
  }
}
