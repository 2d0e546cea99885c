/** Trust a peer gains for each verified piece it sent blocks of, and loses for a bad one. */
const TRUST_PER_GOOD_PIECE = 1
const TRUST_PER_BAD_PIECE = -2
/** A peer whose trust falls this low is dropped for good (libtorrent uses the same idea). */
const BAN_BELOW_TRUST = -6

/**
 * Decides which peers to drop for sending corrupt data. A peer that sent a whole bad
 * piece is banned at once; when a bad piece has several contributors, each loses trust
 * and good pieces earn it back, so an honest peer that shared pieces with a liar is not
 * banned with it. Sources are known by peer id, so a banned peer stays banned when it
 * connects again. `spared` sources are never banned: the image server, known by the
 * connection we opened to its published address (not by its peer id, which anyone can
 * claim), and its web seed. Dropping them could only strand the install; a piece that
 * keeps failing from them means the server's archive changed (see `ArchiveSwarm`).
 */
export class PeerGuard {
  readonly #trust = new Map<string, number>()
  readonly #banned = new Set<string>()
  readonly #spared: (id: string) => boolean
  #rejected = 0

  constructor(spared: (id: string) => boolean) {
    this.#spared = spared
  }

  /** Pieces rejected so far. */
  get rejected(): number {
    return this.#rejected
  }

  isBanned(id: string): boolean {
    return this.#banned.has(id)
  }

  credit(contributors: Iterable<string>): void {
    for (const id of new Set(contributors)) this.#adjust(id, TRUST_PER_GOOD_PIECE)
  }

  /** Bans a source at once (it broke the protocol); false if it is spared. */
  ban(id: string): boolean {
    if (this.#spared(id)) return false
    this.#banned.add(id)
    return true
  }

  /** A piece failed its hash check; returns the peers newly banned for it. */
  reject(contributors: Iterable<string>): string[] {
    this.#rejected++
    const ids = [...new Set(contributors)]
    const banned: string[] = []
    for (const id of ids) {
      const trust = this.#adjust(id, TRUST_PER_BAD_PIECE)
      if (this.#spared(id) || this.#banned.has(id)) continue
      if (ids.length === 1 || trust <= BAN_BELOW_TRUST) {
        this.#banned.add(id)
        banned.push(id)
      }
    }
    return banned
  }

  #adjust(id: string, delta: number): number {
    const trust = (this.#trust.get(id) ?? 0) + delta
    this.#trust.set(id, trust)
    return trust
  }
}
