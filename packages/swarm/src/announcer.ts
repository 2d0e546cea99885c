import type { Logger } from '@imageswarm/core'
import TrackerClient from 'bittorrent-tracker'

/** The announce interval until the tracker says (imageswarm's tracker default). */
export const DEFAULT_ANNOUNCE_INTERVAL_MS = 20_000

/** What each announce reports, read when it is sent. */
export interface AnnounceState {
  uploaded: number
  downloaded: number
  left: number
}

export interface AnnouncerOptions {
  infoHash: string
  peerId: string
  announce: string[]
  /** The port peers dial us on. */
  port: number
  /** Peers asked for: as many as the node keeps connections. */
  numwant: number
  /** Told to imageswarm's tracker for its rack-aware peer handout. */
  rack?: string | undefined
  nodeName?: string | undefined
  state: () => AnnounceState
  /** A peer the tracker handed out, as `ip:port`. */
  onPeer: (address: string) => void
  /**
   * The image servers' pinned connections (fetch's `dispatcher`), for https trackers; an
   * http one is asked over plain connections, as a pinned TLS connection cannot reach it.
   */
  dispatcher?: RequestInit['dispatcher']
  logger: Logger
}

/**
 * The node's announces to the trackers (bittorrent-tracker's client), and its scrapes. Every
 * announce goes to every tracker (one per image server) at once, each on its own interval;
 * one that does not answer is a `warning` of the client, logged, and changes nothing for
 * the others, so peers keep coming from the trackers still up.
 */
export class Announcer {
  readonly #options: AnnouncerOptions
  readonly #client: TrackerClient
  #intervalMs = DEFAULT_ANNOUNCE_INTERVAL_MS

  constructor(options: AnnouncerOptions) {
    this.#options = options
    const { rack, nodeName, logger } = options
    const client = new TrackerClient({
      infoHash: options.infoHash,
      peerId: options.peerId,
      announce: options.announce,
      port: options.port,
      ...this.#connections(),
      getAnnounceOpts: () => ({
        numwant: options.numwant,
        ...options.state(),
        // imageswarm's tracker hands out peers by rack (its peer handout).
        ...(rack === undefined ? {} : { rack }),
        ...(nodeName === undefined ? {} : { node: nodeName }),
      }),
    })
    client.on('peer', (address: string) => options.onPeer(address))
    client.on('update', (data: { interval?: number }) => {
      if (typeof data.interval === 'number' && data.interval > 0) {
        this.#intervalMs = data.interval * 1000
      }
    })
    client.on('warning', (err: Error) => logger.debug({ err: err.message }, 'tracker warning'))
    client.on('error', (err: Error) => logger.warn({ err: err.message }, 'tracker error'))
    this.#client = client
  }

  /** The tracker's announce interval, once it said; 20 s until then. */
  get intervalMs(): number {
    return this.#intervalMs
  }

  start(): void {
    this.#client.start()
  }

  /** The download is complete. */
  complete(): void {
    this.#client.complete()
  }

  /** How many nodes the trackers count as downloading: the first tracker that answers. */
  async scrape(): Promise<number> {
    const { announce } = this.#options
    if (announce.length === 0) throw new Error('no tracker to scrape')
    // Every tracker at once, the first answer taken: every tracker hears every node's
    // announces, and one that is black-holed would otherwise hold the scrape for its
    // whole time-out (the node then stays seeding that much longer).
    return Promise.any(announce.map((url) => this.#scrapeOne(url))).catch((err: AggregateError) => {
      throw err.errors[0] ?? err
    })
  }

  #scrapeOne(url: string): Promise<number> {
    const { infoHash } = this.#options
    return new Promise((resolve, reject) => {
      TrackerClient.scrape({ announce: url, infoHash, ...this.#connections() }, (err, data) => {
        if (err || !data) reject(err ?? new Error('empty scrape'))
        else resolve(data.incomplete)
      })
    })
  }

  /** Says `stopped` to the tracker and closes, waiting at most a second. */
  async stop(): Promise<void> {
    const client = this.#client
    client.stop()
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000)
      client.destroy(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  #connections(): { proxyOpts?: { httpsAgent: unknown } } {
    const { dispatcher } = this.#options
    return dispatcher ? { proxyOpts: { httpsAgent: dispatcher } } : {}
  }
}
