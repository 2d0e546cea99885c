import {
  ImageSwarmError,
  type Logger,
  makePeerId,
  type SwarmSettings,
  silentLogger,
} from '@imageswarm/core'
import { ArchiveSwarm, type PieceShare, SwarmHost, type TokenBucket } from '@imageswarm/swarm'
import parseTorrent, { type ParsedTorrent } from 'parse-torrent'
import type { PublishedDelta } from './image-versions.js'
import type { PublishedImage } from './publish.js'
import type { PublishedArchive } from './published-archive.js'

/** How often a mirror's download looks at its progress. */
const FETCH_TICK_MS = 1000

/** What a mirror's download of another server's archive took. */
export interface FetchedArchive {
  /** Bytes received, from peers and web seeds. */
  downloaded: number
  /** Of those, bytes from a web seed (HTTP) rather than the swarm. */
  downloadedFromWebSeed: number
  seconds: number
}

export interface FetchOptions {
  name: string
  torrent: ParsedTorrent
  /** Where the archive is written; what an earlier attempt left there is checked and kept. */
  path: string
  /** The archive's HTTP URLs, used only after `webSeedFallbackSeconds` without progress. */
  webSeeds: readonly string[]
  webSeedFallbackSeconds: number
  /** Give up after this long without a verified byte (the next attempt resumes). */
  stallTimeoutSeconds: number
  signal?: AbortSignal
}

export interface SeedStats {
  infoHash: string
  uploaded: number
  uploadRate: number
  peers: number
}

/**
 * The image server's BitTorrent seeder: every published image's archive, seeded from the
 * tarballs directory on one TCP port, with first-copy seeding (see `SwarmSettings`).
 */
export class ImageSeeder {
  readonly #host: SwarmHost
  readonly #logger: Logger
  readonly #settings: SwarmSettings
  readonly #peerId = makePeerId('server')
  readonly #swarms = new Map<string, ArchiveSwarm>()

  readonly #uploadBucket: TokenBucket | undefined
  readonly #dispatcher: RequestInit['dispatcher']
  readonly #shareOf: ((infoHash: string) => PieceShare) | undefined

  private constructor(
    host: SwarmHost,
    settings: SwarmSettings,
    logger: Logger,
    uploadBucket: TokenBucket | undefined,
    dispatcher: RequestInit['dispatcher'],
    shareOf: ((infoHash: string) => PieceShare) | undefined,
  ) {
    this.#host = host
    this.#settings = settings
    this.#logger = logger
    this.#uploadBucket = uploadBucket
    this.#dispatcher = dispatcher
    this.#shareOf = shareOf
  }

  /** Listens on `torrentPort` (0: any free port). */
  static async start(options: {
    settings: SwarmSettings
    torrentPort: number
    /** The server's one upload budget, shared with the web seed; default: each image's
     * swarm has its own at `settings.uploadLimit`. */
    uploadBucket?: TokenBucket | undefined
    /** The connections for announces to the server's own tracker: over HTTPS, ones that
     * accept the server's own certificate (fetch's `dispatcher`). */
    dispatcher?: RequestInit['dispatcher']
    /** With other servers seeding the same archive (mirrors): this server's share of the
     * first copy (see PieceShare); default: every piece. */
    shareOf?: (infoHash: string) => PieceShare
    logger?: Logger
  }): Promise<ImageSeeder> {
    const host = await SwarmHost.listen(options.torrentPort).catch((err: NodeJS.ErrnoException) => {
      throw new ImageSwarmError(
        'E_SERVER_RUNNING',
        `cannot listen for BitTorrent peers on port ${options.torrentPort}: ${err.code ?? err.message}`,
        {
          operation: 'start seeder',
          hint: 'choose another --torrent-port, or stop the server that holds it',
          cause: err,
        },
      )
    })
    return new ImageSeeder(
      host,
      options.settings,
      options.logger ?? silentLogger(),
      options.uploadBucket,
      options.dispatcher,
      options.shareOf,
    )
  }

  /** The TCP port peers connect to. */
  get torrentPort(): number {
    return this.#host.port
  }

  /** Starts seeding an image; resolves once the archive is open and announced. */
  async seed(image: PublishedImage): Promise<void> {
    await this.#seedFile(image.manifest.name, image.manifest.infoHash, image.torrent, image.archive)
  }

  /** Starts seeding an image's delta (issue 16), like the image itself. */
  async seedDelta(image: string, delta: PublishedDelta): Promise<void> {
    await this.#seedFile(image, delta.descriptor.infoHash, delta.torrent, delta.archive)
  }

  async #seedFile(
    name: string,
    infoHash: string,
    torrent: Uint8Array,
    archive: PublishedArchive,
  ): Promise<void> {
    const manifest = { name, infoHash }
    if (this.#swarms.has(manifest.infoHash)) return
    const swarm = await ArchiveSwarm.start({
      torrent: await parseTorrent(torrent),
      // The file publishImage hashed and holds open, not whatever the path names by now.
      path: archive.descriptorPath,
      peerId: this.#peerId,
      host: this.#host,
      settings: this.#settings,
      // publishImage has just hashed the whole archive against the manifest.
      existing: 'held',
      firstCopy: this.#settings.firstCopy,
      ...(this.#shareOf ? { firstCopyShare: () => this.#shareOf!(infoHash) } : {}),
      uploadBucket: this.#uploadBucket,
      ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
      logger: this.#logger.child({ image: manifest.name }),
    })
    swarm.on('error', (err) => this.#logger.error({ err, image: manifest.name }, 'seeding failed'))
    this.#swarms.set(manifest.infoHash, swarm)
    this.#logger.info(
      { image: manifest.name, infoHash: manifest.infoHash, port: this.torrentPort },
      'seeding image',
    )
  }

  /**
   * Downloads an archive another image server publishes, through its swarm, on this
   * seeder's port (a mirror filling itself): peers are dialled as the tracker hands them
   * out, the web seeds are added only when the swarm gives nothing for
   * `webSeedFallbackSeconds`. Resolves once every piece has been checked against the
   * torrent; the caller checks the sha256 and seeds the file. Not for an infohash this
   * seeder is seeding.
   */
  async fetch(options: FetchOptions): Promise<FetchedArchive> {
    const started = performance.now()
    const logger = this.#logger.child({ image: options.name, mirror: true })
    const swarm = await ArchiveSwarm.start({
      torrent: options.torrent,
      path: options.path,
      peerId: this.#peerId,
      host: this.#host,
      settings: this.#settings,
      existing: 'scan',
      // A server's peer id does not dial by default: this one is downloading.
      dialPeers: true,
      ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
      logger,
    })
    try {
      await new Promise<void>((resolve, reject) => {
        let verified = swarm.verifiedBytes
        let progressAt = performance.now()
        let webSeeded = false
        const finish = (err?: Error) => {
          clearInterval(ticker)
          swarm.off('done', onDone)
          swarm.off('error', finish)
          options.signal?.removeEventListener('abort', onAbort)
          if (err) reject(err)
          else resolve()
        }
        const onDone = () => finish()
        const onAbort = () => finish(options.signal?.reason as Error)
        const ticker = setInterval(() => {
          const now = performance.now()
          if (swarm.verifiedBytes > verified) {
            verified = swarm.verifiedBytes
            progressAt = now
          }
          const idle = (now - progressAt) / 1000
          if (!webSeeded && idle >= options.webSeedFallbackSeconds) {
            webSeeded = true
            logger.info(
              { idleSeconds: Math.round(idle), webSeeds: options.webSeeds },
              'mirror download: no progress from the swarm; adding the web seeds',
            )
            for (const url of options.webSeeds) swarm.addWebSeed(url)
          }
          if (idle >= options.stallTimeoutSeconds) {
            finish(
              new ImageSwarmError(
                'E_DOWNLOAD_STALLED',
                `mirror download of ${options.name}: no verified data for ${Math.round(idle)} s`,
                {
                  operation: 'mirror image',
                  path: options.path,
                  hint: 'check that the primary server and its seeder are reachable; the next attempt resumes',
                },
              ),
            )
          }
        }, FETCH_TICK_MS)
        swarm.on('done', onDone)
        swarm.on('error', finish)
        options.signal?.addEventListener('abort', onAbort, { once: true })
        if (swarm.done) finish()
      })
      const { downloaded, downloadedFromServer } = swarm.totals
      return {
        downloaded,
        // No image server is named to this swarm: its "server" bytes are the web seed's.
        downloadedFromWebSeed: downloadedFromServer,
        seconds: (performance.now() - started) / 1000,
      }
    } finally {
      await swarm.close()
    }
  }

  /** Stops seeding one archive (a version replaced by a newer one). */
  async unseed(infoHash: string): Promise<void> {
    const swarm = this.#swarms.get(infoHash)
    if (!swarm) return
    this.#swarms.delete(infoHash)
    await swarm.close()
  }

  stats(): SeedStats[] {
    return [...this.#swarms.values()].map((swarm) => ({
      infoHash: swarm.infoHash,
      uploaded: swarm.totals.uploaded,
      uploadRate: swarm.uploadRate,
      peers: swarm.peerCount,
    }))
  }

  async close(): Promise<void> {
    await Promise.all([...this.#swarms.values()].map((swarm) => swarm.close()))
    this.#swarms.clear()
    await this.#host.close()
  }
}
