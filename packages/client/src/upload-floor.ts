/**
 * When a node that keeps seeding after its install should leave because it hardly uploads
 * any more: SystemImager 4's installer, with `BITTORRENT_SEED_WAIT=y`, polled its upload
 * rate every `BITTORRENT_POLLING_TIME` (5 s) and left the swarm once it fell below
 * `BITTORRENT_UPLOAD_MIN` KiB/s. The rate is measured over whole windows of `windowMs`,
 * from the bytes uploaded (`TransferTotals.uploaded`); the caller's clock drives it.
 *
 * @example
 *   const floor = new UploadFloor(50 * 1024)
 *   floor.observe(Date.now(), session.totals.uploaded) // false until a window is below 50 KiB/s
 */
export class UploadFloor {
  readonly #minBytesPerSecond: number
  readonly #windowMs: number
  #start: { at: number; uploaded: number } | undefined

  /** A minimum of 0 or less never says leave. */
  constructor(minBytesPerSecond: number, windowMs = 5000) {
    this.#minBytesPerSecond = minBytesPerSecond
    this.#windowMs = windowMs
  }

  /** True when the window that ends now had an upload rate below the minimum. */
  observe(now: number, uploaded: number): boolean {
    if (this.#minBytesPerSecond <= 0) return false
    const start = this.#start
    if (start === undefined || now < start.at) {
      this.#start = { at: now, uploaded }
      return false
    }
    const elapsed = now - start.at
    if (elapsed < this.#windowMs) return false
    this.#start = { at: now, uploaded }
    const rate = ((uploaded - start.uploaded) * 1000) / elapsed
    return rate < this.#minBytesPerSecond
  }
}
