import type { MirrorRegistration, ServerEntry, ServerList } from '@imageswarm/core'

/** A server not heard from for this many of its intervals is no longer listed. */
export const MISSED_INTERVALS = 3
/** A server whose health check failed this many times in a row is down (see ServerWatch). */
export const DOWN_AFTER_MISSES = 2

interface Heard {
  images: readonly string[]
  intervalMs: number
  heardAt: number
}

export interface ServerRegistryOptions {
  /** This server's base URL, once it listens. */
  self: () => string | undefined
  /** The infohashes this server serves now. */
  ownImages: () => string[]
  now?: () => number
}

/**
 * The servers that serve the same images, as one server knows them: the mirrors that
 * registered with it (a primary), or the list its primary answered with (a mirror). No
 * sockets and an injected clock: the primary's routes and the mirror's poll feed it, the
 * `.torrent` each server hands out is made from `serversFor`.
 *
 * A server drops out of the list when it has not been heard from for `MISSED_INTERVALS` of
 * its own intervals: a mirror that stopped polling, or (on a mirror) a primary that stopped
 * answering, whose list then goes with it.
 */
export class ServerRegistry {
  readonly #options: ServerRegistryOptions
  readonly #now: () => number
  /** Mirrors that registered here. */
  readonly #mirrors = new Map<string, Heard>()
  /** What the primary answered last, and when (a mirror only). */
  #adopted: { servers: ServerEntry[]; heard: Omit<Heard, 'images'> } | undefined
  /** Health checks failed in a row, by server (ServerWatch). */
  readonly #misses = new Map<string, number>()

  constructor(options: ServerRegistryOptions) {
    this.#options = options
    this.#now = options.now ?? Date.now
  }

  /** A mirror's registration (`POST /mirrors`), heard now. */
  heard(registration: MirrorRegistration): void {
    this.#mirrors.set(registration.url, {
      images: [...registration.images],
      intervalMs: registration.intervalSeconds * 1000,
      heardAt: this.#now(),
    })
  }

  /** The primary's answer to this mirror's registration, received now. */
  adopt(list: ServerList, intervalSeconds: number): void {
    this.#adopted = {
      servers: list.servers.map((entry) => ({ url: entry.url, images: [...entry.images] })),
      heard: { intervalMs: intervalSeconds * 1000, heardAt: this.#now() },
    }
  }

  /** Another server's health check answered, or did not, just now. */
  observe(url: string, answered: boolean): void {
    if (answered) this.#misses.delete(url)
    else this.#misses.set(url, (this.#misses.get(url) ?? 0) + 1)
  }

  /** Whether a server's last `DOWN_AFTER_MISSES` health checks failed. */
  isDown(url: string): boolean {
    return (this.#misses.get(url) ?? 0) >= DOWN_AFTER_MISSES
  }

  /** The other servers listed, down or not: the ones to check. */
  others(): string[] {
    const self = this.#options.self()
    return this.#others()
      .map((entry) => entry.url)
      .filter((url) => url !== self)
  }

  /** Every live server, this one first: the answer to a mirror's registration. Live: heard
   * from within its intervals, and not down by its health checks. */
  list(): ServerList {
    const self = this.#options.self()
    const servers: ServerEntry[] = []
    if (self !== undefined) servers.push({ url: self, images: this.#options.ownImages() })
    for (const entry of this.#others()) {
      if (entry.url !== self && !this.isDown(entry.url)) servers.push(entry)
    }
    return { servers }
  }

  /** The base URLs of the servers serving `infoHash`: this one first, then the others. */
  serversFor(infoHash: string): string[] {
    const self = this.#options.self()
    const wanted = infoHash.toLowerCase()
    return this.list()
      .servers.filter(
        (entry) => entry.url === self || entry.images.some((held) => held.toLowerCase() === wanted),
      )
      .map((entry) => entry.url)
  }

  #others(): ServerEntry[] {
    const entries: ServerEntry[] = []
    for (const [url, heard] of this.#mirrors) {
      if (this.#live(heard)) entries.push({ url, images: [...heard.images] })
      else this.#mirrors.delete(url)
    }
    if (this.#adopted && this.#live(this.#adopted.heard)) {
      for (const entry of this.#adopted.servers) {
        if (!entries.some((known) => known.url === entry.url)) entries.push(entry)
      }
    }
    return entries
  }

  #live(heard: Omit<Heard, 'images'>): boolean {
    return this.#now() - heard.heardAt <= MISSED_INTERVALS * heard.intervalMs
  }
}
