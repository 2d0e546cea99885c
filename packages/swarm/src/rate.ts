/** Bytes per second over the last few seconds, in one-second buckets. A meter younger
 * than its window averages over its age, so a new connection's rate is not read as a
 * fraction of what it is (its request queue is sized from it). */
export class RateMeter {
  readonly #buckets: Float64Array
  #second = 0
  #firstSecond = 0

  constructor(windowSeconds = 5) {
    this.#buckets = new Float64Array(windowSeconds)
  }

  add(bytes: number, now = Date.now()): void {
    this.#advance(now)
    this.#buckets[this.#second % this.#buckets.length]! += bytes
  }

  rate(now = Date.now()): number {
    this.#advance(now)
    let sum = 0
    for (const bytes of this.#buckets) sum += bytes
    const age = Math.max(now / 1000 - this.#firstSecond, 0.25)
    return sum / Math.min(this.#buckets.length, age)
  }

  #advance(now: number): void {
    const second = Math.floor(now / 1000)
    if (this.#second === 0) {
      this.#second = second
      this.#firstSecond = now / 1000
    }
    const steps = Math.min(second - this.#second, this.#buckets.length)
    for (let step = 1; step <= steps; step++) {
      this.#buckets[(this.#second + step) % this.#buckets.length] = 0
    }
    if (second > this.#second) this.#second = second
  }
}

/**
 * A token bucket for a bandwidth limit in bytes per second: up to one second of burst.
 * `take` returns 0 when the bytes may go now, else the milliseconds to wait first (the
 * bytes are then already accounted for, so callers queue in order).
 */
export class TokenBucket {
  readonly #rate: number
  #tokens: number
  #updated = performance.now()

  constructor(bytesPerSecond: number) {
    this.#rate = bytesPerSecond
    this.#tokens = bytesPerSecond
  }

  take(bytes: number): number {
    this.#refill()
    this.#tokens -= bytes
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.#rate) * 1000)
  }

  /**
   * Takes the bytes only if they may go now (returns 0); else returns the milliseconds
   * until they may and takes nothing, so a caller that asks again later is not pushed
   * further back by its own refusals. More than a second's worth goes once the bucket
   * is full.
   */
  tryTake(bytes: number): number {
    this.#refill()
    const needed = Math.min(bytes, this.#rate)
    if (this.#tokens >= needed) {
      this.#tokens -= bytes
      return 0
    }
    return Math.ceil(((needed - this.#tokens) / this.#rate) * 1000)
  }

  #refill(): void {
    const now = performance.now()
    this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#updated) * this.#rate) / 1000)
    this.#updated = now
  }
}

/** A bucket for a limit from the settings, where -1 (or 0) means unlimited. */
export function bucketFor(limit: number): TokenBucket | undefined {
  return limit > 0 ? new TokenBucket(limit) : undefined
}
