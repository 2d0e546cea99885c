import type { Peer } from './peer.js'
import { blocksIn } from './torrent.js'

const FREE = 0
const REQUESTED = 1
const RECEIVED = 2

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

/** A piece being downloaded: its buffer, which blocks are asked for or here, and from whom. */
export class PieceDownload {
  readonly index: number
  readonly length: number
  /** Bytes per request: 16 KiB, or more when the piece is fetched from imageswarm peers. */
  readonly blockLength: number
  readonly data: Buffer
  readonly #state: Uint8Array
  /** Who each requested block was asked of (two peers in the endgame). */
  readonly #askedOf: (Peer[] | undefined)[]
  /** Peers that sent blocks of it, for the peer guard. */
  readonly contributors = new Set<Peer>()
  #received = 0
  #nextFree = 0

  constructor(index: number, length: number, blockLength: number, data: Buffer) {
    this.index = index
    this.length = length
    this.blockLength = blockLength
    this.data = data
    const blocks = blocksIn(length, blockLength)
    this.#state = new Uint8Array(blocks)
    this.#askedOf = new Array(blocks)
  }

  get complete(): boolean {
    return this.#received === this.#state.length
  }

  /** Where a block starts in the piece, and its length. */
  blockOffset(block: number): number {
    return block * this.blockLength
  }

  lengthOf(block: number): number {
    return Math.min(this.blockLength, this.length - block * this.blockLength)
  }

  /** The first block nobody was asked for, or -1. */
  freeBlock(): number {
    while (this.#nextFree < this.#state.length && this.#state[this.#nextFree] !== FREE) {
      this.#nextFree++
    }
    return this.#nextFree < this.#state.length ? this.#nextFree : -1
  }

  /** Endgame: a block asked of one other peer only, which `peer` could also send. */
  duplicableBlock(peer: Peer): number {
    for (let block = 0; block < this.#state.length; block++) {
      const askedOf = this.#askedOf[block]
      if (this.#state[block] === REQUESTED && askedOf?.length === 1 && askedOf[0] !== peer) {
        return block
      }
    }
    return -1
  }

  asked(block: number, peer: Peer): void {
    this.#state[block] = REQUESTED
    const askedOf = this.#askedOf[block]
    if (askedOf) askedOf.push(peer)
    else this.#askedOf[block] = [peer]
  }

  /** The peer will not send the block (error, reject, choke, timeout); free again if
   * nobody else was asked. */
  failed(block: number, peer: Peer): void {
    const askedOf = this.#forget(block, peer)
    if (this.#state[block] === REQUESTED && askedOf.length === 0) {
      this.#state[block] = FREE
      if (block < this.#nextFree) this.#nextFree = block
    }
  }

  /** Stores a block; returns the other peers asked for it (to cancel), or undefined when
   * it was already here (a duplicate from the endgame). */
  received(block: number, peer: Peer, data: Uint8Array): Peer[] | undefined {
    const others = this.#forget(block, peer)
    if (this.#state[block] === RECEIVED) return undefined
    this.data.set(data, block * this.blockLength)
    this.#state[block] = RECEIVED
    this.#received++
    this.contributors.add(peer)
    this.#askedOf[block] = undefined
    return others
  }

  #forget(block: number, peer: Peer): Peer[] {
    const askedOf = this.#askedOf[block] ?? []
    const at = askedOf.indexOf(peer)
    if (at !== -1) askedOf.splice(at, 1)
    return askedOf
  }
}
