import { type Logger, peerRoleOf } from '@imageswarm/core'
import type { Torrent, Wire } from 'webtorrent'

/** Trust a peer gains for each verified piece it sent blocks of, and loses for a bad one. */
const TRUST_PER_GOOD_PIECE = 1
const TRUST_PER_BAD_PIECE = -2
/** A peer whose trust falls this low is dropped for good (libtorrent uses the same idea). */
const BAN_BELOW_TRUST = -6

/**
 * Drops peers that send corrupt data. webtorrent checks every piece against its hash
 * and discards a bad one, but goes on asking the same peer, so a broken or hostile
 * peer can stall an install. The guard remembers which peers sent blocks of each piece
 * (bittorrent-protocol's `piece` event). A peer that sent a whole bad piece is banned at
 * once; when a bad piece has several contributors, each loses trust, and good pieces earn
 * it back, so an honest peer (the image server) that shared pieces with a liar is not
 * banned with it.
 */
export class PeerGuard {
  readonly #contributors = new Map<number, Set<Wire>>()
  readonly #trust = new Map<string, number>()
  readonly #banned = new Set<string>()
  #rejected = 0

  constructor(
    torrent: Torrent,
    private readonly logger: Logger,
    private readonly onReject: (index: number, banned: string[]) => void,
  ) {
    torrent.on('wire', (wire: Wire) => this.#watch(wire))
    torrent.on('verified', (index: number) => this.#credit(index))
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

  #credit(index: number): void {
    for (const wire of this.#contributors.get(index) ?? [])
      this.#adjust(peerKey(wire), TRUST_PER_GOOD_PIECE)
    this.#contributors.delete(index)
  }

  #reject(index: number): void {
    this.#rejected++
    const contributors = [...(this.#contributors.get(index) ?? [])]
    this.#contributors.delete(index)
    const keys = [...new Set(contributors.map(peerKey))]
    const banned: string[] = []
    for (const key of keys) {
      const trust = this.#adjust(key, TRUST_PER_BAD_PIECE)
      // The image server is the source of truth: were its own data bad, the archive's
      // sha256 check reports it; dropping it could only strand the install.
      if (peerRoleOf(key) === 'server') continue
      if ((keys.length === 1 || trust <= BAN_BELOW_TRUST) && !this.#banned.has(key)) {
        this.#banned.add(key)
        banned.push(key)
      }
    }
    for (const wire of contributors) if (this.#banned.has(peerKey(wire))) wire.destroy()
    this.logger.warn({ piece: index, contributors: keys, banned }, 'piece failed verification')
    this.onReject(index, banned)
  }

  #adjust(key: string, delta: number): number {
    const trust = (this.#trust.get(key) ?? 0) + delta
    this.#trust.set(key, trust)
    return trust
  }
}

function peerKey(wire: Wire): string {
  return wire.peerId ?? `${wire.remoteAddress}:${wire.remotePort}`
}
