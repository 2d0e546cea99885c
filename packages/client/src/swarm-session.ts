import {
  type ImageManifest,
  ImageSwarmError,
  type InstallEvent,
  type Logger,
  lanClientOptions,
  lanTorrentOptions,
  peerRoleOf,
  type SwarmSettings,
  type TransferTotals,
} from '@imageswarm/core'
import Tracker from 'bittorrent-tracker'
import type { ParsedTorrent } from 'parse-torrent'
import WebTorrent, { type Torrent, type Wire } from 'webtorrent'
import { PeerGuard } from './peer-guard.js'

export interface SwarmSessionOptions {
  torrent: ParsedTorrent
  /** This node's peer id, hex (core's makePeerId('client')); status reports carry it too. */
  peerId: string
  /** The archive in `stagingDir` is complete and its sha256 checked (a cache hit). */
  alreadyVerified?: boolean
  manifest: ImageManifest
  stagingDir: string
  settings: SwarmSettings
  webSeedFallbackSeconds: number
  stallTimeoutSeconds: number
  logger: Logger
  emit: (event: InstallEvent) => void
}

/**
 * One node's membership in an image's swarm, from the first byte downloaded to the
 * last byte uploaded: downloads the archive into staging, keeps seeding it while the
 * node verifies and extracts, and until the swarm no longer needs it.
 *
 * The server's web seed is held back at first so that the server's upload is spent on
 * pieces no client has yet; it is added when there are no peers or no progress for
 * `webSeedFallbackSeconds` (tracker down, swarm stalled).
 */
export class SwarmSession {
  readonly #options: SwarmSessionOptions
  readonly #client: WebTorrent
  readonly #torrent: Torrent
  readonly #guard: PeerGuard
  readonly #webSeeds: string[]
  readonly #totals: TransferTotals = { downloaded: 0, downloadedFromServer: 0, uploaded: 0 }
  #webSeedAdded = false
  #lastProgressAt = Date.now()
  #lastDownloaded = 0
  #ticker: NodeJS.Timeout | undefined
  readonly #started = performance.now()

  constructor(options: SwarmSessionOptions) {
    this.#options = options
    this.#webSeeds = [...options.torrent.urlList]
    this.#client = new WebTorrent({
      ...lanClientOptions(options.settings, 'client'),
      peerId: options.peerId,
      webSeeds: true,
    })
    this.#client.on('error', (err: Error) => options.logger.error({ err }, 'swarm client error'))
    const withoutWebSeeds: ParsedTorrent = { ...options.torrent, urlList: [] }
    this.#torrent = this.#client.add(withoutWebSeeds, {
      path: options.stagingDir,
      skipVerify: options.alreadyVerified ?? false,
      ...lanTorrentOptions(options.settings),
    })
    this.#torrent.on('wire', (wire: Wire) => this.#countWire(wire))
    this.#guard = new PeerGuard(this.#torrent, options.logger, (index, banned) =>
      options.emit({ type: 'piece-rejected', index, rejected: this.#guard.rejected, banned }),
    )
    this.#torrent.on('warning', (err: Error) =>
      options.logger.debug({ err: err.message }, 'swarm warning'),
    )
  }

  get totals(): TransferTotals {
    return { ...this.#totals, uploaded: this.#torrent.uploaded }
  }

  get torrent(): Torrent {
    return this.#torrent
  }

  #countWire(wire: Wire): void {
    wire.on('download', (bytes: number) => {
      this.#totals.downloaded += bytes
      // The web seed is the server's HTTP endpoint; a peer with the server's id its seeder.
      if (wire.type === 'webSeed' || peerRoleOf(wire.peerId) === 'server') {
        this.#totals.downloadedFromServer += bytes
      }
    })
  }

  /** Resolves once every piece is downloaded and checked against the piece hashes. */
  async downloadArchive(signal?: AbortSignal): Promise<void> {
    const torrent = this.#torrent
    const { emit, manifest } = this.#options
    await new Promise<void>((resolve, reject) => {
      const finish = (err?: Error) => {
        clearInterval(this.#ticker)
        this.#ticker = undefined
        torrent.off('done', onDone)
        torrent.off('error', onError)
        signal?.removeEventListener('abort', onAbort)
        if (err) reject(err)
        else resolve()
      }
      const onDone = () => finish()
      const onError = (err: Error) =>
        finish(
          new ImageSwarmError(
            'E_DOWNLOAD_FAILED',
            `download of ${manifest.name} failed: ${err.message}`,
            {
              operation: 'download archive',
              path: this.#options.stagingDir,
              cause: err,
            },
          ),
        )
      const onAbort = () => finish(signal?.reason as Error)
      torrent.on('done', onDone)
      torrent.on('error', onError)
      signal?.addEventListener('abort', onAbort, { once: true })
      if (torrent.done) return finish()
      this.#ticker = setInterval(() => {
        const stalled = this.#watchProgress()
        emit({
          type: 'download-progress',
          size: manifest.size,
          totals: this.totals,
          downloadRate: torrent.downloadSpeed,
          uploadRate: torrent.uploadSpeed,
          peers: torrent.numPeers,
        })
        if (stalled) finish(stalled)
      }, 1000)
    })
    emit({
      type: 'download-complete',
      seconds: (performance.now() - this.#started) / 1000,
      totals: this.totals,
    })
  }

  /** Adds the web seed when the swarm does not help; fails when nothing helps at all. */
  #watchProgress(): ImageSwarmError | undefined {
    const now = Date.now()
    const torrent = this.#torrent
    if (torrent.downloaded > this.#lastDownloaded) {
      this.#lastDownloaded = torrent.downloaded
      this.#lastProgressAt = now
    }
    const idle = (now - this.#lastProgressAt) / 1000
    const { webSeedFallbackSeconds, stallTimeoutSeconds } = this.#options
    if (!this.#webSeedAdded && idle >= webSeedFallbackSeconds && this.#webSeeds.length > 0) {
      const reason =
        torrent.numPeers === 0
          ? `no peers for ${Math.round(idle)} s`
          : `no progress for ${Math.round(idle)} s`
      this.#addWebSeeds(reason)
    }
    if (idle >= stallTimeoutSeconds) {
      return new ImageSwarmError(
        'E_DOWNLOAD_STALLED',
        `no data arrived for ${Math.round(idle)} s (${torrent.numPeers} peers, web seed ${this.#webSeedAdded ? 'in use' : 'unavailable'})`,
        {
          operation: 'download archive',
          hint: 'check that the image server is reachable and serving the image',
        },
      )
    }
    return undefined
  }

  #addWebSeeds(reason: string): void {
    this.#webSeedAdded = true
    this.#options.logger.info({ reason, webSeeds: this.#webSeeds }, 'adding the server web seed')
    this.#options.emit({ type: 'webseed-fallback', reason })
    for (const url of this.#webSeeds) this.#torrent.addWebSeed(url)
  }

  /**
   * How many nodes still download this image: the tracker's scrape, or, when the
   * tracker cannot be reached, the connected peers that do not have every piece.
   */
  async leechers(): Promise<number> {
    const announce = this.#options.torrent.announce[0]
    if (announce) {
      const scraped = await scrape(announce, this.#torrent.infoHash).catch(() => undefined)
      if (scraped !== undefined) return scraped
    }
    return this.#torrent.wires.filter((wire) => wire.type !== 'webSeed' && !wire.isSeeder).length
  }

  async close(): Promise<void> {
    clearInterval(this.#ticker)
    await new Promise<void>((resolve) => this.#client.destroy(() => resolve()))
  }
}

function scrape(announce: string, infoHash: string): Promise<number> {
  return new Promise((resolve, reject) => {
    Tracker.scrape({ announce, infoHash }, (err: Error | null, data?: { incomplete: number }) => {
      if (err || !data) reject(err ?? new Error('empty scrape'))
      else resolve(data.incomplete)
    })
  })
}
