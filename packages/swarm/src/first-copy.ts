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
  /**
   * This server's share of the pieces when several image servers seed the same archive
   * (see PieceShare); unset: every piece is this server's.
   */
  share?: () => PieceShare
  random?: Random
}

/**
 * Several image servers seeding one archive split the first copy between them: server
 * `position` of `count` live servers (the same order on every server: their URLs sorted)
 * offers only pieces `index % count === position`, each once (while no client holds it and
 * nobody was offered it). The servers together send about one copy. Offers run ahead of
 * deliveries and no server sees another's offers: two servers that also offered each
 * other's unheld pieces sent 1.51 copies at N = 16, each offering every piece up to twice
 * 1.86. When a server dies the others stop counting it (ServerWatch, within seconds) and
 * offer its share too.
 */
export interface PieceShare {
  position: number
  count: number
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
    const share = this.#options.share?.()
    const shared = share !== undefined && share.count > 1
    const isOthers = (index: number) => shared && index % share.count !== share.position
    // One server sends a piece a second time while only one client holds it. Several
    // servers have that much more upload between them and would each fill it up with second
    // copies (1.86 copies at N = 16): each sends its own pieces once.
    const cap = shared ? 1 : MAX_SERVER_COPIES
    while (peer.revealed.size < ahead) {
      const best = rarest(
        availability.pieceCount,
        (index) => {
          if (peer.pieces.has(index) || peer.revealed.has(index)) return undefined
          if (isOthers(index)) return undefined
          const copies = availability.of(index) + this.#announced[index]!
          return copies < cap ? copies : undefined
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
