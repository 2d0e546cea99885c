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
  /** The image server's connections (fetch's `dispatcher`), for http and https alike. */
  dispatcher?: RequestInit['dispatcher']
  logger: Logger
}

/** The node's announces to the tracker (bittorrent-tracker's client), and its scrapes. */
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

  /** How many nodes the tracker counts as downloading. */
  scrape(): Promise<number> {
    const { announce, infoHash } = this.#options
    return new Promise((resolve, reject) => {
      TrackerClient.scrape(
        { announce: announce[0]!, infoHash, ...this.#connections() },
        (err, data) => {
          if (err || !data) reject(err ?? new Error('empty scrape'))
          else resolve(data.incomplete)
        },
      )
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

  #connections(): { proxyOpts?: { httpAgent: unknown; httpsAgent: unknown } } {
    const { dispatcher } = this.#options
    return dispatcher ? { proxyOpts: { httpAgent: dispatcher, httpsAgent: dispatcher } } : {}
  }
}
