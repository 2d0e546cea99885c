import { type BlockRequest, PieceDownload } from './piece-download.js'
import type { PieceSet } from './piece-set.js'

/** A number in [0, 1): Math.random, or a seeded generator in tests and the simulator. */
export type Random = () => number

/** What the picker needs to know of a peer it asks for data. */
export interface PickerPeer {
  /** The pieces the peer holds. */
  readonly pieces: PieceSet
  /** Pieces this peer is fetching for us, so each piece's blocks come from one source. */
  readonly assigned: Set<number>
  /** The largest request it is sent. */
  readonly blockLength: number
  /** Bytes asked of it and not received yet. */
  readonly inflight: number
}

/** Where a piece's bytes go while it downloads (the engine's reused `PieceBuffers`). */
export interface PieceBufferPool {
  take(length: number): Buffer
  give(buffer: Buffer): void
}

/** Copies of each piece among the connected peers. */
export class PieceAvailability {
  readonly #counts: Uint32Array

  constructor(pieceCount: number) {
    this.#counts = new Uint32Array(pieceCount)
  }

  get pieceCount(): number {
    return this.#counts.length
  }

  of(index: number): number {
    return this.#counts[index] ?? 0
  }

  /** A peer gained a piece. */
  add(index: number): void {
    this.#counts[index]!++
  }

  /** A peer with these pieces left, or restated what it holds. */
  removeAll(pieces: PieceSet): void {
    for (let index = 0; index < pieces.size; index++) {
      if (pieces.has(index)) this.#counts[index]!--
    }
  }
}

export interface PiecePickerOptions {
  /** The pieces this node holds, verified. */
  have: PieceSet
  availability: PieceAvailability
  /** A piece's length in bytes (the last one is shorter). */
  pieceLength: (index: number) => number
  buffers: PieceBufferPool
  random?: Random
}

/**
 * What to download next, from whom: no sockets, no clock.
 *
 * - Rarest piece first among those a peer holds and we need, at random among equals, so
 *   the pieces a swarm holds fewest copies of spread first.
 * - Each piece from one peer while there are pieces to go round (`assigned`): its blocks
 *   come from one source, and a bad piece has one culprit.
 * - Then free blocks of pieces under way from any peer that holds them.
 * - Then, in the endgame, a block already asked of one other peer, of an idle peer only
 *   and one block at a time: a duplicate's bytes are wasted on both links (at N = 32,
 *   filling every queue with them moved 7 % more bytes than the archive).
 */
export class PiecePicker<P extends PickerPeer> {
  /** Pieces being downloaded from peers. */
  readonly downloads = new Map<number, PieceDownload<P>>()
  readonly #have: PieceSet
  readonly #availability: PieceAvailability
  readonly #pieceLength: (index: number) => number
  readonly #buffers: PieceBufferPool
  readonly #random: Random
  /** Pieces being downloaded or checked (by a peer or the web seed): not to pick again. */
  readonly #busy: Uint8Array

  constructor(options: PiecePickerOptions) {
    this.#have = options.have
    this.#availability = options.availability
    this.#pieceLength = options.pieceLength
    this.#buffers = options.buffers
    this.#random = options.random ?? Math.random
    this.#busy = new Uint8Array(options.have.size)
  }

  /** The next request for this peer, or undefined when it has nothing for us now. */
  next(peer: P): { download: PieceDownload<P>; request: BlockRequest<P> } | undefined {
    for (const index of peer.assigned) {
      const download = this.downloads.get(index)
      const request = download?.nextFree(peer, peer.blockLength)
      if (download && request) return { download, request }
    }
    const index = this.rarestFor(peer.pieces)
    if (index !== -1) {
      const length = this.#pieceLength(index)
      const download = new PieceDownload<P>(index, length, this.#buffers.take(length))
      this.downloads.set(index, download)
      this.#busy[index] = 1
      peer.assigned.add(index)
      const request = download.nextFree(peer, peer.blockLength)
      if (request) return { download, request }
    }
    // Pieces are kept in 16 KiB units, so a foreign peer can help with, or take over part
    // of, a piece begun in imageswarm's large blocks.
    for (const download of this.downloads.values()) {
      if (!peer.pieces.has(download.index)) continue
      const request = download.nextFree(peer, peer.blockLength)
      if (request) return { download, request }
    }
    if (peer.inflight > 0) return undefined
    for (const download of this.downloads.values()) {
      if (!peer.pieces.has(download.index)) continue
      const request = download.duplicable(peer, peer.blockLength)
      if (request) return { download, request }
    }
    return undefined
  }

  /** The piece is in (to be checked): no peer fetches it any more. Its buffer stays with
   * the download until `settled`. */
  completed(download: PieceDownload<P>, peers: Iterable<P>): void {
    this.downloads.delete(download.index)
    for (const peer of peers) peer.assigned.delete(download.index)
  }

  /** The piece was checked (kept or rejected): it may be picked again if not held, and
   * its buffer is free. */
  settled(download: PieceDownload<P>): void {
    this.#buffers.give(download.data)
    this.#busy[download.index] = 0
  }

  /** The rarest piece the peer holds and we need that nobody fetches; -1 if none. */
  rarestFor(pieces: PieceSet): number {
    const have = this.#have
    return rarest(
      have.size,
      (index) =>
        this.#busy[index] || have.has(index) || !pieces.has(index)
          ? undefined
          : this.#availability.of(index),
      this.#random,
    )
  }

  /** The rarest piece we need that nobody fetches (for the web seed); -1 if none. */
  rarestUnclaimed(): number {
    const have = this.#have
    return rarest(
      have.size,
      (index) => (this.#busy[index] || have.has(index) ? undefined : this.#availability.of(index)),
      this.#random,
    )
  }

  /** A piece fetched outside the peers (the web seed): not to be picked meanwhile. */
  claim(index: number): void {
    this.#busy[index] = 1
  }

  release(index: number): void {
    this.#busy[index] = 0
  }
}

/** The index with the lowest score, at random among equals, over `count` indexes;
 * `score` gives undefined for an index not to pick. -1 when none may be picked. */
export function rarest(
  count: number,
  score: (index: number) => number | undefined,
  random: Random = Math.random,
): number {
  let best = -1
  let bestScore = Number.POSITIVE_INFINITY
  let ties = 0
  for (let index = 0; index < count; index++) {
    const value = score(index)
    if (value === undefined) continue
    if (value < bestScore) {
      best = index
      bestScore = value
      ties = 1
    } else if (value === bestScore && random() * ++ties < 1) {
      best = index
    }
  }
  return best
}
