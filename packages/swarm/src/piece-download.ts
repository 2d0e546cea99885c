import type { Peer } from './peer.js'
import { BLOCK_LENGTH, blocksIn } from './torrent.js'

const FREE = 0
const REQUESTED = 1
const RECEIVED = 2
const NONE: readonly never[] = []

/**
 * Piece buffers, reused: a node downloads pieces one after another, and a fresh 1 MiB
 * buffer for each made the garbage collector one of its largest costs.
 */
export class PieceBuffers {
  readonly #free: Buffer[] = []
  readonly #pieceLength: number
  readonly #keep: number

  constructor(pieceLength: number, keep = 64) {
    this.#pieceLength = pieceLength
    this.#keep = keep
  }

  take(length: number): Buffer {
    const buffer = length === this.#pieceLength ? this.#free.pop() : undefined
    return buffer ?? Buffer.allocUnsafe(length)
  }

  /** Returns a buffer nothing refers to any more (its piece is written, or dropped). */
  give(buffer: Buffer): void {
    if (buffer.length === this.#pieceLength && this.#free.length < this.#keep) {
      this.#free.push(buffer)
    }
  }
}

/** One request for part of a piece: `count` units from unit `first`, asked of `peer`. */
export interface BlockRequest<P = Peer> {
  readonly peer: P
  readonly first: number
  readonly count: number
  /** Where it starts in the piece, and its length in bytes. */
  readonly offset: number
  readonly length: number
}

/**
 * A piece being downloaded: its buffer, which parts are asked for or here, and from whom.
 *
 * The piece is kept in units of 16 KiB, the block every client asks for and accepts. A
 * request covers one unit or several in a row: imageswarm peers are asked 128 KiB at a
 * time (eight units, aligned), foreign clients 16 KiB. So any peer can take any free part
 * of any piece, and, in the endgame, a foreign peer can take over a part of a large block
 * another peer is slow to send: a piece begun in large blocks was once left one piece
 * short for minutes when only a foreign seeder could finish it.
 */
export class PieceDownload<P = Peer> {
  readonly index: number
  readonly length: number
  readonly data: Buffer
  readonly #state: Uint8Array
  /** The requests covering each unit (two in the endgame). */
  readonly #askedBy: (BlockRequest<P>[] | undefined)[]
  /** Peers that sent parts of it, for the peer guard. */
  readonly contributors = new Set<P>()
  #received = 0
  #nextFree = 0

  constructor(index: number, length: number, data: Buffer) {
    this.index = index
    this.length = length
    this.data = data
    const units = blocksIn(length, BLOCK_LENGTH)
    this.#state = new Uint8Array(units)
    this.#askedBy = new Array(units)
  }

  get complete(): boolean {
    return this.#received === this.#state.length
  }

  /**
   * The next request for `peer`, which takes blocks of up to `blockLength` bytes: the
   * first unit nobody was asked for and the free units after it, up to `blockLength` and
   * not across a multiple of it (so large blocks stay aligned); undefined when every unit
   * is asked for or here. It is not recorded until `asked`.
   */
  nextFree(peer: P, blockLength: number): BlockRequest<P> | undefined {
    const state = this.#state
    while (this.#nextFree < state.length && state[this.#nextFree] !== FREE) this.#nextFree++
    const first = this.#nextFree
    if (first >= state.length) return undefined
    const span = unitsPer(blockLength)
    const end = Math.min(state.length, (Math.floor(first / span) + 1) * span)
    let count = 1
    while (first + count < end && state[first + count] === FREE) count++
    return this.#request(peer, first, count)
  }

  /**
   * Endgame: units asked of one other peer only, all in the same request of theirs, that
   * `peer` could send as well, up to `blockLength` bytes; undefined if there are none.
   */
  duplicable(peer: P, blockLength: number): BlockRequest<P> | undefined {
    const span = unitsPer(blockLength)
    for (let unit = 0; unit < this.#state.length; unit++) {
      const other = this.#soleRequest(unit)
      if (!other || other.peer === peer) continue
      let count = 1
      while (count < span && this.#soleRequest(unit + count) === other) count++
      return this.#request(peer, unit, count)
    }
    return undefined
  }

  /** The request was sent. */
  asked(request: BlockRequest<P>): void {
    for (let unit = request.first; unit < request.first + request.count; unit++) {
      if (this.#state[unit] === FREE) this.#state[unit] = REQUESTED
      const askedBy = this.#askedBy[unit]
      if (askedBy) askedBy.push(request)
      else this.#askedBy[unit] = [request]
    }
  }

  /** The peer will not send it (error, reject, choke, timeout, cancel): units nobody else
   * was asked for are free again. */
  failed(request: BlockRequest<P>): void {
    for (let unit = request.first; unit < request.first + request.count; unit++) {
      const askedBy = this.#forget(unit, request)
      if (this.#state[unit] === REQUESTED && askedBy.length === 0) {
        this.#state[unit] = FREE
        if (unit < this.#nextFree) this.#nextFree = unit
      }
    }
  }

  /**
   * Stores what a request brought; returns the other requests it makes useless (every unit
   * of theirs is here now: to cancel), or undefined when it brought nothing new (a
   * duplicate from the endgame).
   */
  received(request: BlockRequest<P>, data: Uint8Array): BlockRequest<P>[] | undefined {
    const { first, count } = request
    let fresh = 0
    for (let unit = first; unit < first + count; unit++) {
      this.#forget(unit, request)
      if (this.#state[unit] !== RECEIVED) fresh++
    }
    if (fresh === 0) return undefined
    if (fresh === count) {
      this.data.set(data, request.offset)
    } else {
      // Only the units not here yet: what arrived first is what its sender answers for.
      for (let unit = first; unit < first + count; unit++) {
        if (this.#state[unit] === RECEIVED) continue
        const at = (unit - first) * BLOCK_LENGTH
        this.data.set(data.subarray(at, at + BLOCK_LENGTH), unit * BLOCK_LENGTH)
      }
    }
    for (let unit = first; unit < first + count; unit++) {
      if (this.#state[unit] !== RECEIVED) {
        this.#state[unit] = RECEIVED
        this.#received++
      }
    }
    const useless: BlockRequest<P>[] = []
    for (let unit = first; unit < first + count; unit++) {
      for (const other of this.#askedBy[unit] ?? NONE) {
        if (!useless.includes(other) && this.#allReceived(other)) useless.push(other)
      }
    }
    this.contributors.add(request.peer)
    return useless
  }

  #request(peer: P, first: number, count: number): BlockRequest<P> {
    const offset = first * BLOCK_LENGTH
    const length = Math.min(count * BLOCK_LENGTH, this.length - offset)
    return { peer, first, count, offset, length }
  }

  /** The one request covering a unit still awaited, if exactly one does. */
  #soleRequest(unit: number): BlockRequest<P> | undefined {
    if (this.#state[unit] !== REQUESTED) return undefined
    const askedBy = this.#askedBy[unit]
    return askedBy?.length === 1 ? askedBy[0] : undefined
  }

  #allReceived(request: BlockRequest<P>): boolean {
    for (let unit = request.first; unit < request.first + request.count; unit++) {
      if (this.#state[unit] !== RECEIVED) return false
    }
    return true
  }

  #forget(unit: number, request: BlockRequest<P>): readonly BlockRequest<P>[] {
    const askedBy = this.#askedBy[unit]
    if (!askedBy) return NONE
    const at = askedBy.indexOf(request)
    if (at !== -1) askedBy.splice(at, 1)
    return askedBy
  }
}

function unitsPer(blockLength: number): number {
  return Math.max(1, Math.floor(blockLength / BLOCK_LENGTH))
}
