/** Milliseconds now, always above 0 (0 means "never" in the peer's fields): Date.now,
 * or a simulated clock. */
export type Clock = () => number

/** How often unchoke slots rotate when more peers want data than there are slots. */
export const ROTATE_MS = 10_000

/** What the choker needs to know of a peer and keeps on it. */
export interface ChokerPeer {
  /** How many pieces it holds: slots go to the peer furthest behind. */
  readonly pieces: { readonly count: number }
  /** When we last unchoked it (0: choked). */
  unchokedAt: number
  /** Since when it waits for a slot (0: not waiting). */
  waitingSince: number
}

export interface ChokerOptions<P> {
  /** Peers we upload to at once. */
  slots: number
  /** Every connected peer. */
  peers: () => Iterable<P>
  /** Tell the peer (the engine also refuses its queued requests on a choke). */
  choke: (peer: P) => void
  unchoke: (peer: P) => void
  clock?: Clock
}

/**
 * Who may download from this node: no sockets; the clock is injected.
 *
 * Up to `slots` interested peers are unchoked. A slot that comes free goes to the waiting
 * peer furthest behind (fewest pieces; the longest waiting among equals), and every
 * `ROTATE_MS` the unchoked peer furthest ahead gives its slot to the neediest waiting
 * one, unless that one is further ahead still. Every node in an install swarm is ours and
 * the deployment is done when the last one is, so slots go where they shorten that, not
 * by tit-for-tat. (First come, first served left one node of 16 choked by most others at
 * once, when their rotations fell together, and finishing 0.1–0.4× T_min after the rest.)
 */
export class Choker<P extends ChokerPeer> {
  readonly #options: ChokerOptions<P>
  readonly #clock: Clock

  constructor(options: ChokerOptions<P>) {
    this.#options = options
    this.#clock = options.clock ?? Date.now
  }

  get slots(): number {
    return this.#options.slots
  }

  /** The peer wants data: a slot if one is free, else it waits. */
  interested(peer: P): void {
    // Already unchoked, or waiting: a repeated `interested` keeps its place in line.
    if (peer.unchokedAt || peer.waitingSince) return
    if (this.#unchoked() < this.#options.slots) this.#unchoke(peer)
    else peer.waitingSince = this.#clock()
  }

  /** The peer wants nothing more: its slot, if it had one, goes to a waiting peer. */
  uninterested(peer: P): void {
    peer.waitingSince = 0
    if (!peer.unchokedAt) return
    this.#choke(peer)
    this.#giveSlotAway()
  }

  /** The peer is gone (already out of `peers`). */
  left(peer: P): void {
    peer.waitingSince = 0
    if (!peer.unchokedAt) return
    peer.unchokedAt = 0
    this.#giveSlotAway()
  }

  /** Every `ROTATE_MS`: when peers wait, the peer furthest ahead that held its slot a
   * full round gives it to the neediest waiting peer. */
  rotate(): void {
    const waiting = this.#neediestWaiting()
    if (!waiting) return
    const now = this.#clock()
    let ahead: P | undefined
    for (const peer of this.#options.peers()) {
      if (!peer.unchokedAt || now - peer.unchokedAt < ROTATE_MS) continue
      if (
        !ahead ||
        peer.pieces.count > ahead.pieces.count ||
        (peer.pieces.count === ahead.pieces.count && peer.unchokedAt < ahead.unchokedAt)
      ) {
        ahead = peer
      }
    }
    if (!ahead || ahead.pieces.count < waiting.pieces.count) return
    this.#choke(ahead)
    ahead.waitingSince = now
    this.#unchoke(waiting)
  }

  #unchoked(): number {
    let count = 0
    for (const peer of this.#options.peers()) if (peer.unchokedAt) count++
    return count
  }

  #unchoke(peer: P): void {
    peer.unchokedAt = this.#clock()
    peer.waitingSince = 0
    this.#options.unchoke(peer)
  }

  #choke(peer: P): void {
    peer.unchokedAt = 0
    this.#options.choke(peer)
  }

  #giveSlotAway(): void {
    if (this.#unchoked() >= this.#options.slots) return
    const next = this.#neediestWaiting()
    if (next) this.#unchoke(next)
  }

  /** The waiting peer holding the fewest pieces, the longest waiting among equals. */
  #neediestWaiting(): P | undefined {
    let next: P | undefined
    for (const peer of this.#options.peers()) {
      if (!peer.waitingSince) continue
      if (
        !next ||
        peer.pieces.count < next.pieces.count ||
        (peer.pieces.count === next.pieces.count && peer.waitingSince < next.waitingSince)
      ) {
        next = peer
      }
    }
    return next
  }
}
