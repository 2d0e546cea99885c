import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { networkInterfaces } from 'node:os'
import { ImageSwarmError, type Logger, WIRE } from '@imageswarm/core'
import {
  handleImageRequest,
  ImageSeeder,
  type PublishedImage,
  publishImage,
  type SeederConfig,
  sendError,
  sendJson,
} from '@imageswarm/seeder'
import { createTracker, type Tracker, type TrackerConfig } from '@imageswarm/tracker'

export interface ImageServerOptions {
  images: readonly string[]
  seeder: SeederConfig
  tracker?: Partial<TrackerConfig>
  /** False serves images without a tracker: announces fail and clients use the web seed. */
  trackerEnabled?: boolean
  /** Address to listen on; `0.0.0.0` listens everywhere. */
  address: string
  port: number
  /** The address clients are told to use; default: `address`, or this host's first LAN address. */
  advertiseAddress?: string
  update: boolean
  logger: Logger
}

/**
 * The image server: one HTTP endpoint in front of the tracker (announce, scrape) and
 * the seeder's routes (image list, manifests, torrents, archives as web seeds), plus
 * the BitTorrent seeder itself. Built first, then listening (`listen()`).
 */
export class ImageServer {
  readonly #options: ImageServerOptions
  readonly #tracker: Tracker
  readonly #catalog = new Map<string, PublishedImage>()
  readonly #http: Server
  #seeder: ImageSeeder | undefined

  get #trackerEnabled(): boolean {
    return this.#options.trackerEnabled !== false
  }

  constructor(options: ImageServerOptions) {
    this.#options = options
    this.#tracker = createTracker({
      config: options.tracker ?? {},
      logger: options.logger.child({ component: 'tracker' }),
      // The seeder's own upload count, fresher than its announces, for the dashboard.
      serverUpload: () => this.#seeder?.stats() ?? [],
    })
    this.#http = createServer((req, res) => {
      try {
        if (this.#trackerEnabled && this.#tracker.handle(req, res)) return
        // The dashboard (/, /assets/*, /api/*, /metrics), with or without the tracker.
        if (this.#tracker.handleDashboard(req, res)) return
        if (handleImageRequest(this.#catalog, req, res)) return
        if (req.url === WIRE.health) return sendJson(res, 200, { ok: true })
        sendError(
          res,
          404,
          new ImageSwarmError('E_UNKNOWN_IMAGE', `no such endpoint: ${req.url}`, {
            hint: `see ${WIRE.images} for the published images`,
          }),
        )
      } catch (err) {
        options.logger.error({ err, url: req.url }, 'request failed')
        if (!res.headersSent) res.writeHead(500).end()
      }
    })
    this.#http.keepAliveTimeout = 65_000
  }

  /** Listens, then publishes and seeds every image; resolves with the server's base URL. */
  async listen(signal?: AbortSignal): Promise<string> {
    const { logger, seeder } = this.#options
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', (err) => reject(listenError(err, this.#options)))
      this.#http.listen(this.#options.port, this.#options.address, () => resolve())
    })
    const port = (this.#http.address() as AddressInfo).port
    const url = `http://${formatHost(this.advertisedAddress())}:${port}`
    logger.info({ url, listen: `${this.#options.address}:${port}` }, 'image server listening')
    this.#seeder = await ImageSeeder.start({
      settings: seeder.swarm,
      torrentPort: seeder.torrentPort,
      logger: logger.child({ component: 'seeder' }),
    })
    for (const image of this.#options.images) {
      const published = await publishImage({
        image,
        config: seeder,
        serverUrl: url,
        update: this.#options.update,
        logger: logger.child({ component: 'publish', image }),
        ...(signal ? { signal } : {}),
      })
      this.#catalog.set(published.manifest.name, published)
      this.#tracker.publish(published.manifest.infoHash, published.manifest.name)
      await this.#seeder.seed(published)
    }
    logger.info({ images: [...this.#catalog.keys()], url }, 'serving images')
    return url
  }

  get published(): readonly PublishedImage[] {
    return [...this.#catalog.values()]
  }

  stats() {
    return { tracker: this.#tracker.stats(), seeder: this.#seeder?.stats() ?? [] }
  }

  advertisedAddress(): string {
    const { advertiseAddress, address } = this.#options
    if (advertiseAddress) return advertiseAddress
    if (address !== '0.0.0.0' && address !== '::') return address
    return firstLanAddress() ?? '127.0.0.1'
  }

  async close(): Promise<void> {
    this.#http.closeAllConnections()
    await new Promise<void>((resolve) => this.#http.close(() => resolve()))
    await this.#seeder?.close()
    await this.#tracker.close()
  }
}

export function firstLanAddress(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const info of addresses ?? []) {
      if (info.family === 'IPv4' && !info.internal) return info.address
    }
  }
  return undefined
}

function formatHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address
}

function listenError(err: NodeJS.ErrnoException, options: ImageServerOptions): ImageSwarmError {
  const where = `${options.address}:${options.port}`
  const hint =
    err.code === 'EADDRINUSE'
      ? 'another server uses that port: stop it (imageswarm stop) or choose --port'
      : 'check --address and --port'
  return new ImageSwarmError('E_SERVER_RUNNING', `cannot listen on ${where}: ${err.code}`, {
    operation: 'listen',
    path: where,
    hint,
    cause: err,
  })
}
