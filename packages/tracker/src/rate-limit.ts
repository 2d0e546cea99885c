/**
 * A token bucket per key (a node's peer id, or an address's budget of new nodes): `rate`
 * requests a second on average, bursts of `burst`. The number of buckets is bounded, so a
 * client that invents a new key for every request costs memory for only `maxKeys` of
 * them; full buckets are the ones dropped first, as forgetting them changes nothing.
 */
export class RateLimiter {
  readonly #rate: number
  readonly #burst: number
  readonly #maxKeys: number
  readonly #buckets = new Map<string, { tokens: number; at: number }>()

  constructor(options: { rate: number; burst: number; maxKeys: number }) {
    this.#rate = options.rate
    this.#burst = options.burst
    this.#maxKeys = options.maxKeys
  }

  /** Takes a token for `key`; returns 0 if allowed, else the seconds until the next token. */
  take(key: string, now: number): number {
    let bucket = this.#buckets.get(key)
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#prune(now)
      bucket = { tokens: this.#burst, at: now }
      this.#buckets.set(key, bucket)
    }
    bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#rate)
    bucket.at = now
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return 0
    }
    return (1 - bucket.tokens) / this.#rate
  }

  get size(): number {
    return this.#buckets.size
  }

  #prune(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.#rate >= this.#burst) {
        this.#buckets.delete(key)
      }
    }
    // Still full: every bucket is in use. Forget the oldest half rather than grow.
    if (this.#buckets.size >= this.#maxKeys) {
      let drop = Math.ceil(this.#buckets.size / 2)
      for (const key of this.#buckets.keys()) {
        if (drop-- <= 0) break
        this.#buckets.delete(key)
      }
    }
  }
}
