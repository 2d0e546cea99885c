import {
  ImageSwarmError,
  type Logger,
  makePeerId,
  type SwarmSettings,
  silentLogger,
} from '@imageswarm/core'
import { ArchiveSwarm, SwarmHost, type TokenBucket } from '@imageswarm/swarm'
import parseTorrent from 'parse-torrent'
import type { PublishedDelta } from './image-versions.js'
import type { PublishedImage } from './publish.js'
import type { PublishedArchive } from './published-archive.js'

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

  private constructor(
    host: SwarmHost,
    settings: SwarmSettings,
    logger: Logger,
    uploadBucket: TokenBucket | undefined,
    dispatcher: RequestInit['dispatcher'],
  ) {
    this.#host = host
    this.#settings = settings
    this.#logger = logger
    this.#uploadBucket = uploadBucket
    this.#dispatcher = dispatcher
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
