import type { Logger } from '@imageswarm/core'
import type { Torrent, Wire } from 'webtorrent'

/** Failed pieces a peer may have contributed to before it is dropped for good. */
const STRIKES_TO_BAN = 3

/**
 * Drops peers that send corrupt data. webtorrent checks every piece against its hash
 * and discards a bad one, but goes on asking the same peer, so a broken or hostile
 * peer can stall an install. The guard remembers which peers sent blocks of each piece
 * (bittorrent-protocol's `piece` event); when a piece fails verification, a peer that
 * sent all of it is banned at once, and every contributor gets a strike.
 */
export class PeerGuard {
  readonly #contributors = new Map<number, Set<Wire>>()
  readonly #strikes = new Map<string, number>()
  readonly #banned = new Set<string>()
  #rejected = 0

  constructor(
    torrent: Torrent,
    private readonly logger: Logger,
    private readonly onReject: (index: number, banned: string[]) => void,
  ) {
    torrent.on('wire', (wire: Wire) => this.#watch(wire))
    torrent.on('verified', (index: number) => this.#contributors.delete(index))
    torrent.on('warning', (err: Error) => {
      const failed = /^Piece (\d+) failed verification/.exec(err.message)
      if (failed) this.#reject(Number(failed[1]))
    })
  }

  /** Pieces rejected so far. */
  get rejected(): number {
    return this.#rejected
  }

  #watch(wire: Wire): void {
    if (wire.type === 'webSeed') return
    // webtorrent hands over wires after the handshake, so the peer id is known here.
    if (this.#banned.has(peerKey(wire))) {
      wire.destroy()
      return
    }
    wire.on('piece', (index: number) => {
      let set = this.#contributors.get(index)
      if (!set) {
        set = new Set()
        this.#contributors.set(index, set)
      }
      set.add(wire)
    })
  }

  #reject(index: number): void {
    this.#rejected++
    const contributors = [...(this.#contributors.get(index) ?? [])]
    this.#contributors.delete(index)
    const banned: string[] = []
    for (const wire of contributors) {
      const key = peerKey(wire)
      const strikes = (this.#strikes.get(key) ?? 0) + 1
      this.#strikes.set(key, strikes)
      if (contributors.length === 1 || strikes >= STRIKES_TO_BAN) {
        this.#banned.add(key)
        banned.push(key)
        wire.destroy()
      }
    }
    this.logger.warn(
      { piece: index, contributors: contributors.map(peerKey), banned },
      'piece failed verification',
    )
    this.onReject(index, banned)
  }
}

function peerKey(wire: Wire): string {
  return wire.peerId ?? `${wire.remoteAddress}:${wire.remotePort}`
}
