import { type PieceAvailability, type Random, rarest } from './piece-picker.js'
import type { PieceSet } from './piece-set.js'

/** Pieces announced to each client ahead of what it confirmed, so its request queue never
 * runs dry while it reports the last one: at least this many, more for a client that
 * takes them fast (a second's worth at its rate, up to the max). */
const REVEAL_AHEAD = 3
const MAX_REVEAL_AHEAD = 32
/** A piece is announced to a second client while only one holds it (so a slow holder does
 * not hold the swarm up), never to a third: the server then sends each piece at most
 * twice, about 1.2 copies in all. In the 25 Mbit/s testbed at N = 16: no limit, 1.36
 * copies and 1.47× T_min; one copy, 1.05 and 1.61×; two, 1.22 and 1.59× (runs on a
 * loaded machine, ±0.1×). */
export const MAX_SERVER_COPIES = 2

/** What first-copy seeding needs to know of a client and keeps on it. */
export interface FirstCopyPeer {
  /** The pieces the client holds. */
  readonly pieces: PieceSet
  /** Pieces announced to this client alone, not confirmed yet. */
  readonly revealed: Set<number>
}

export interface FirstCopyOptions<P> {
  pieceLength: number
  /** Copies of each piece the clients hold. */
  availability: PieceAvailability
  /** Tell the client we hold this piece (a have). */
  announce: (peer: P, index: number) => void
  random?: Random
}

/**
 * First-copy seeding, the image server's side (BEP 16 super-seeding, counted): no
 * sockets, no clock.
 *
 * The server holds every piece but tells each client of a few at a time: those the fewest
 * clients hold or have been offered, at random among equals, and none that two clients
 * hold or were offered. When the client reports one, the next is announced. So each piece
 * leaves the server once or twice, and clients trade the rest.
 */
export class FirstCopySeeding<P extends FirstCopyPeer> {
  readonly #options: FirstCopyOptions<P>
  readonly #random: Random
  /** Announcements of each piece not confirmed yet. */
  readonly #announced: Uint32Array

  constructor(options: FirstCopyOptions<P>) {
    this.#options = options
    this.#random = options.random ?? Math.random
    this.#announced = new Uint32Array(options.availability.pieceCount)
  }

  /** Announcements of a piece waiting for their client to confirm it. */
  announced(index: number): number {
    return this.#announced[index] ?? 0
  }

  /** Tops up what the client has been told of; `uploadRate` (bytes/s we send it) sets how
   * far ahead. */
  reveal(peer: P, uploadRate: number): void {
    const { availability, pieceLength } = this.#options
    const ahead = Math.min(MAX_REVEAL_AHEAD, REVEAL_AHEAD + Math.floor(uploadRate / pieceLength))
    while (peer.revealed.size < ahead) {
      const best = rarest(
        availability.pieceCount,
        (index) => {
          if (peer.pieces.has(index) || peer.revealed.has(index)) return undefined
          const copies = availability.of(index) + this.#announced[index]!
          return copies < MAX_SERVER_COPIES ? copies : undefined
        },
        this.#random,
      )
      if (best === -1) return
      peer.revealed.add(best)
      this.#announced[best]!++
      this.#options.announce(peer, best)
    }
  }

  /** The client reports it holds a piece (already counted in the availability): if it
   * was announced to it, the next one is. Returns whether it was. */
  confirmed(peer: P, index: number, uploadRate: number): boolean {
    if (!peer.revealed.delete(index)) return false
    this.#announced[index]!--
    this.reveal(peer, uploadRate)
    return true
  }

  /** The client is gone: what it was told of and did not confirm is free again. */
  left(peer: P): void {
    for (const index of peer.revealed) this.#announced[index]!--
    peer.revealed.clear()
  }
}
