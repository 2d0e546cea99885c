import { dirname } from 'node:path'
import { type Logger, lanClientOptions, type SwarmSettings, silentLogger } from '@imageswarm/core'
import WebTorrent, { type Torrent } from 'webtorrent'
import type { PublishedImage } from './publish.js'

export interface SeedStats {
  infoHash: string
  uploaded: number
  uploadRate: number
  peers: number
}

/**
 * The image server's BitTorrent seeder: one webtorrent client, tuned for a LAN, that
 * seeds every published image's archive from the tarballs directory.
 */
export class ImageSeeder {
  readonly #client: WebTorrent
  readonly #logger: Logger
  readonly #settings: SwarmSettings
  readonly #torrents = new Map<string, Torrent>()

  constructor(options: { settings: SwarmSettings; torrentPort: number; logger?: Logger }) {
    this.#logger = options.logger ?? silentLogger()
    this.#settings = options.settings
    this.#client = new WebTorrent({
      ...lanClientOptions(options.settings, 'server', options.torrentPort),
      // The server never needs its own web seed: it holds the whole archive.
      webSeeds: false,
    })
    this.#client.on('error', (err: Error) => this.#logger.error({ err }, 'seeder error'))
  }

  /** The TCP port peers connect to. */
  get torrentPort(): number {
    return this.#client.torrentPort
  }

  /** Starts seeding an image; resolves once the archive is checked and announced. */
  async seed(image: PublishedImage): Promise<void> {
    const { manifest } = image
    const existing = this.#torrents.get(manifest.infoHash)
    if (existing) return
    await new Promise<void>((resolve, reject) => {
      const torrent = this.#client.add(image.torrent, {
        path: dirname(image.archivePath),
        // publishImage has just hashed the whole archive against the manifest.
        skipVerify: true,
        strategy: this.#settings.strategy,
        private: true,
      })
      const onError = (err: Error) => reject(err)
      torrent.once('error', onError)
      torrent.once('ready', () => {
        torrent.off('error', onError)
        torrent.on('error', (err: Error) =>
          this.#logger.error({ err, image: manifest.name }, 'seeding failed'),
        )
        torrent.on('warning', (err: Error) =>
          this.#logger.debug({ err: err.message, image: manifest.name }, 'seeding warning'),
        )
        this.#torrents.set(manifest.infoHash, torrent)
        this.#logger.info(
          { image: manifest.name, infoHash: manifest.infoHash, port: this.torrentPort },
          'seeding image',
        )
        resolve()
      })
    })
  }

  stats(): SeedStats[] {
    return [...this.#torrents.values()].map((torrent) => ({
      infoHash: torrent.infoHash,
      uploaded: torrent.uploaded,
      uploadRate: torrent.uploadSpeed,
      peers: torrent.numPeers,
    }))
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#client.destroy(() => resolve()))
    this.#torrents.clear()
  }
}
