import { dirname } from 'node:path'
import {
  type Logger,
  lanClientOptions,
  lanTorrentOptions,
  type SwarmSettings,
  silentLogger,
} from '@imageswarm/core'
import WebTorrent, { type Torrent, type Wire } from 'webtorrent'
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
        ...lanTorrentOptions(this.#settings),
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
        if (this.#settings.firstCopy) {
          const policy = new FirstCopyPolicy(torrent)
          for (const wire of torrent.wires) policy.attach(wire)
          torrent.on('wire', (wire: Wire) => policy.attach(wire))
        }
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

/** How long a piece the server started sending to one client is refused to the others
 * (unless that client announces it sooner, or disconnects). */
const IN_FLIGHT_MS = 30_000

/**
 * Spends the image server's upload on pieces the swarm does not hold yet, as an initial
 * seeder with super-seeding (BEP 16) does: a request for a piece that another client
 * already holds, or that the server is sending to another client right now, is
 * rejected (BEP 6 reject-request), so the client fetches it from its peers and asks
 * the server for something new instead. Clients are told apart by peer id, as one
 * client may hold two connections to the server (one each way).
 */
class FirstCopyPolicy {
  readonly #torrent: Torrent
  /** Piece index → the client (peer id) it is being sent to and since when. */
  readonly #inFlight = new Map<number, { peer: string; since: number }>()

  constructor(torrent: Torrent) {
    this.#torrent = torrent
  }

  attach(wire: Wire): void {
    if (wire.type === 'webSeed') return
    // Listeners run in order; the request callback answers once, so a refusal given
    // here (a reject) wins over webtorrent's own listener, which reads the block.
    wire.prependListener(
      'request',
      (index: number, _offset: number, _length: number, respond: (err?: Error) => void) => {
        if (this.#refuses(wire, index)) respond(new Error('piece is already in the swarm'))
      },
    )
    wire.on('have', (index: number) => {
      if (this.#inFlight.get(index)?.peer === wire.peerId) this.#inFlight.delete(index)
    })
    wire.once('close', () => {
      for (const [index, entry] of this.#inFlight) {
        if (entry.peer === wire.peerId) this.#inFlight.delete(index)
      }
    })
  }

  #refuses(wire: Wire, index: number): boolean {
    const peer = wire.peerId ?? ''
    const now = Date.now()
    const flight = this.#inFlight.get(index)
    if (flight && flight.peer !== peer && now - flight.since < IN_FLIGHT_MS) return true
    for (const other of this.#torrent.wires) {
      if (other.peerId !== peer && other.type !== 'webSeed' && other.peerPieces.get(index)) {
        return true
      }
    }
    if (!flight || flight.peer !== peer) this.#inFlight.set(index, { peer, since: now })
    return false
  }
}
