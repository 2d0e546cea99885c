import type { Socket } from 'node:net'
import Protocol from 'bittorrent-protocol'
import type { BufferingWire, ReceiveBudget } from './receive-budget.js'
import { MAX_REQUEST_LENGTH } from './torrent.js'

const ignore = () => {}

/**
 * The largest extended (BEP 10) or unknown message a peer may send. Nothing we speak
 * needs more: an extended handshake is a few hundred bytes and a BEP 9 metadata piece
 * 16 KiB plus its dictionary; we use neither metadata nor peer exchange.
 */
export const MAX_OTHER_MESSAGE_LENGTH = 64 * 1024

/** Requests a peer may have waiting for us at once; more are refused. libtorrent's
 * default (`max_allowed_in_request_queue`), and what we advertise as `reqq` (BEP 10). Our
 * own deepest queue to a peer is 16 MiB of 16 KiB blocks, 1,024 requests. */
export const MAX_PEER_REQUESTS = 2000

/** The length of each fixed-size message, by id (BEP 3 and BEP 6). */
const FIXED_LENGTH: Record<number, number> = {
  0: 1, // choke
  1: 1, // unchoke
  2: 1, // interested
  3: 1, // not interested
  4: 5, // have
  6: 13, // request
  8: 13, // cancel
  9: 3, // port
  13: 5, // suggest
  14: 1, // have all
  15: 1, // have none
  16: 13, // reject
  17: 5, // allowed fast
}

/**
 * What is wrong with a whole message (id byte first, length prefix stripped) for a torrent
 * whose bitfield takes `bitfieldBytes`, or undefined if it may be parsed: fixed-size
 * messages have their size, a block is at most `MAX_REQUEST_LENGTH`, a bitfield at most the
 * torrent's, anything else at most `MAX_OTHER_MESSAGE_LENGTH`.
 */
export function messageViolation(message: Uint8Array, bitfieldBytes: number): string | undefined {
  const id = message[0]!
  const fixed = FIXED_LENGTH[id]
  if (fixed !== undefined) {
    return message.length === fixed
      ? undefined
      : `sent message ${id} of ${message.length} bytes; it has ${fixed}`
  }
  const limit =
    id === 7 ? 9 + MAX_REQUEST_LENGTH : id === 5 ? 1 + bitfieldBytes : MAX_OTHER_MESSAGE_LENGTH
  // A block carries its index and offset; an extended message its extension's id.
  const least = id === 7 ? 9 : id === 20 ? 2 : 1
  if (message.length > limit)
    return `sent message ${id} of ${message.length} bytes; at most ${limit}`
  if (message.length < least)
    return `sent message ${id} of ${message.length} bytes; at least ${least}`
  return undefined
}

/**
 * A BitTorrent wire fed straight from its TCP socket and writing straight to it, which
 * holds at most one message's worth of what the peer sends.
 *
 * `socket.pipe(wire).pipe(socket)` takes every socket read through Node's Readable,
 * streamx's write queue and a queued microtask before the parser sees it, and every
 * outgoing message through streamx's read queue. On a paced link each read is one
 * packet, so those hops cost more than the parsing (see the swarm benchmark notes).
 * `_write` (the parser) and `_push` (every outgoing message) are the hooks streamx
 * itself calls; here the socket calls them. End and teardown follow the pipe's rules:
 * the socket's end ends the wire, the wire's end ends the socket.
 *
 * `bittorrent-protocol` buffers a message until its announced length has arrived,
 * whatever that length: a peer announcing 4 GiB and sending data made an install client
 * hold 600 MB for one connection. Here the length prefix is checked against the largest
 * message the protocol allows for this torrent (`_onMessageLength`), each message against
 * its own limit (`_onMessage`); a peer beyond either is dropped (`'dropped'`), and the
 * bytes held are reported to the process's `ReceiveBudget`.
 */
export class SocketWire extends Protocol implements BufferingWire {
  readonly socket: Socket
  readonly #budget: ReceiveBudget | undefined
  /** A bitfield's size: unknown until the swarm is, then the torrent's (`limitBitfield`). */
  #bitfieldBytes = MAX_REQUEST_LENGTH
  #maxMessageLength = 0
  #dropped = false

  constructor(type: 'tcpIncoming' | 'tcpOutgoing', socket: Socket, budget?: ReceiveBudget) {
    super(type)
    this.socket = socket
    this.#budget = budget
    this.#updateMaxMessageLength()
    this.extendedHandshake.reqq = MAX_PEER_REQUESTS
    socket.on('data', (chunk: Buffer) => {
      if (this._finished || this.#dropped) return
      this._write(chunk, ignore)
      this.#budget?.update(this)
    })
    socket.once('end', () => this.end())
    socket.once('close', () => this.#budget?.release(this))
    this.once('finish', () => socket.end())
  }

  /** The swarm is known: a bitfield may be as long as its `pieceCount` pieces need. */
  limitBitfield(pieceCount: number): void {
    this.#bitfieldBytes = Math.ceil(pieceCount / 8)
    this.#updateMaxMessageLength()
  }

  get bufferedBytes(): number {
    return this._bufferSize
  }

  /** True once the wire was dropped for what the peer sent. */
  get dropped(): boolean {
    return this.#dropped
  }

  /**
   * Closes the connection for what the peer sent: parses nothing more, frees what it held
   * and emits `'dropped'` with the reason and whether the peer broke the protocol (a
   * message over its limit), as opposed to holding the most when all held too much.
   */
  dropConnection(reason: string, brokeProtocol = false): void {
    if (this.#dropped) return
    this.#dropped = true
    this._parse(Number.MAX_VALUE, ignore)
    this._buffer = []
    this._bufferSize = 0
    this.#budget?.release(this)
    this.emit('dropped', reason, brokeProtocol)
    this.socket.destroy()
  }

  protected override _onMessageLength(buffer: Uint8Array): void {
    const length = ((buffer[0]! << 24) | (buffer[1]! << 16) | (buffer[2]! << 8) | buffer[3]!) >>> 0
    if (length > this.#maxMessageLength) {
      this.dropConnection(
        `announced a message of ${length} bytes; at most ${this.#maxMessageLength}`,
        true,
      )
      return
    }
    super._onMessageLength(buffer)
  }

  protected override _onMessage(buffer: Uint8Array): void {
    const violation = messageViolation(buffer, this.#bitfieldBytes)
    if (violation) this.dropConnection(violation, true)
    else super._onMessage(buffer)
  }

  protected override _push(data: Uint8Array): boolean {
    if (this._finished || this.socket.destroyed) return false
    return this.socket.write(data)
  }

  #updateMaxMessageLength(): void {
    this.#maxMessageLength = Math.max(
      9 + MAX_REQUEST_LENGTH,
      1 + this.#bitfieldBytes,
      MAX_OTHER_MESSAGE_LENGTH,
    )
  }
}
