/**
 * The keys of a swarm's peer cache in an array, kept in step with the cache, so that
 * random peers can be picked in time proportional to how many are wanted.
 *
 * bittorrent-tracker picks the peers of each reply from `peers.keys`, which its LRU
 * cache builds with `Object.keys` on every call: with 5,000 peers that is most of the
 * cost of an announce (about 0.5 ms each), and grows with the swarm.
 */
export class PeerIndex {
  readonly #keys: string[] = []
  readonly #positions = new Map<string, number>()

  get size(): number {
    return this.#keys.length
  }

  has(key: string): boolean {
    return this.#positions.has(key)
  }

  add(key: string): void {
    if (this.#positions.has(key)) return
    this.#positions.set(key, this.#keys.length)
    this.#keys.push(key)
  }

  delete(key: string): void {
    const at = this.#positions.get(key)
    if (at === undefined) return
    // Swap with the last key and shrink: order does not matter, only membership.
    const last = this.#keys.pop()!
    this.#positions.delete(key)
    if (at < this.#keys.length) {
      this.#keys[at] = last
      this.#positions.set(last, at)
    }
  }

  /**
   * Keys in random order, each at most once, as many as the caller takes: a Fisher-Yates
   * shuffle done lazily, with the swaps kept aside so the index itself is not touched.
   */
  *random(random: () => number = Math.random): Generator<string> {
    const swapped = new Map<number, string>()
    const n = this.#keys.length
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(random() * (n - i))
      const picked = swapped.get(j) ?? this.#keys[j]!
      swapped.set(j, swapped.get(i) ?? this.#keys[i]!)
      yield picked
    }
  }
}
