import type { InfoHash } from '@imageswarm/core'

/**
 * The images this server published, by infohash. The tracker tracks these and nothing
 * else, so a stray or stale torrent cannot make it a tracker for someone else's swarm.
 */
export class AllowList {
  readonly #images = new Map<string, string>()

  publish(infoHash: InfoHash, image: string): void {
    this.#images.set(infoHash, image)
  }

  unpublish(infoHash: InfoHash): void {
    this.#images.delete(infoHash)
  }

  /** The image published under this infohash (hex, any case), if any. */
  imageOf(infoHash: string): string | undefined {
    return this.#images.get(infoHash.toLowerCase())
  }

  has(infoHash: string): boolean {
    return this.#images.has(infoHash.toLowerCase())
  }

  entries(): IterableIterator<[string, string]> {
    return this.#images.entries()
  }
}

/** The failure reason a client gets for an infohash that is not published. */
export function refusalReason(infoHash: string): string {
  return `infohash ${infoHash} is not published on this imageswarm server; publish the image there, or check that the client has the current torrent`
}
