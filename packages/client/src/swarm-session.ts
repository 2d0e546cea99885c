import { dirname } from 'node:path'
import {
  errnoOf,
  type ImageManifest,
  ImageSwarmError,
  type InstallEvent,
  isImageSwarmError,
  type Logger,
  type SwarmSettings,
  type TransferTotals,
} from '@imageswarm/core'
import { ArchiveSwarm, SwarmHost } from '@imageswarm/swarm'
import type { ParsedTorrent } from 'parse-torrent'
import { type ImageServers, swarmSourcesOf } from './image-servers.js'
import { locateServerSeeders } from './server-seeder.js'

export interface SwarmSessionOptions {
  /** Checked against the manifest; the swarm adds every image server's tracker and web
   * seed to its own (see swarmSourcesOf). */
  torrent: ParsedTorrent
  /**
   * The image servers: each one's seeder is asked where it listens (`/server.json`) and
   * dialled as a server; the current server first. Servers refused on the way are not.
   */
  servers: ImageServers
  /** This node's peer id, hex (core's makePeerId('client')); status reports carry it too. */
  peerId: string
  /** The archive in staging is complete and its sha256 checked (a cache hit). */
  alreadyVerified?: boolean
  manifest: ImageManifest
  /** Where the archive is downloaded to (in staging or the cache). */
  archivePath: string
  settings: SwarmSettings
  /** The node's name, for the tracker's rack map. */
  nodeName?: string | undefined
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
  readonly #host: SwarmHost
  readonly #swarm: ArchiveSwarm
  /** The web seeds to add when the swarm does not help, each with whether it is an image
   * server's own (trusted as the server) or only the torrent's url-list's. */
  readonly #webSeeds: { url: string; server: boolean }[]
  #webSeedAdded = false
  #lastProgressAt = Date.now()
  /** Verified bytes at the last progress: only pieces that passed their check count, so
   * a peer sending junk (rejected pieces) does not hold off the stall timeout. */
  #lastVerified = 0
  #unreachedIgnored = false
  #ticker: NodeJS.Timeout | undefined
  readonly #started = performance.now()

  private constructor(
    options: SwarmSessionOptions,
    host: SwarmHost,
    swarm: ArchiveSwarm,
    serverWebSeeds: readonly string[],
  ) {
    this.#options = options
    this.#host = host
    this.#swarm = swarm
    this.#webSeeds = options.torrent.urlList.map((url) => ({
      url,
      server: serverWebSeeds.includes(url),
    }))
    this.#lastVerified = swarm.verifiedBytes
    swarm.on('rejected', (index, banned) =>
      options.emit({ type: 'piece-rejected', index, rejected: swarm.rejectedPieces, banned }),
    )
  }

  /**
   * Opens the archive (checking what an interrupted download left) and joins the swarm.
   * Each image server's seeder is dialled at the address the server publishes
   * (`/server.json`, see `locateServerSeeders`); those connections alone are the servers.
   * `/server.json`, the trackers and the web seeds go over the certificate the verified key
   * list pins (over HTTPS); peers stay plain BitTorrent.
   */
  static async start(options: SwarmSessionOptions): Promise<SwarmSession> {
    const { servers } = options
    const imageServers = await locateServerSeeders(servers.usable, options.logger, (server) =>
      servers.connectionOf(server),
    )
    const dispatcher = servers.dispatcher
    const { announce, urlList, serverWebSeeds } = swarmSourcesOf(
      options.torrent,
      servers.usable,
      options.manifest,
    )
    const torrent: ParsedTorrent = { ...options.torrent, announce, urlList }
    options.logger.debug(
      { imageServers, trackers: torrent.announce, webSeeds: torrent.urlList },
      'image servers in the swarm',
    )
    const host = await SwarmHost.listen(0)
    try {
      const swarm = await ArchiveSwarm.start({
        torrent,
        path: options.archivePath,
        peerId: options.peerId,
        host,
        settings: options.settings,
        nodeName: options.nodeName,
        existing: options.alreadyVerified ? 'held' : 'scan',
        logger: options.logger,
        imageServers,
        ...(dispatcher ? { dispatcher } : {}),
      })
      return new SwarmSession({ ...options, torrent }, host, swarm, serverWebSeeds)
    } catch (err) {
      await host.close()
      if (isNoSpace(err)) throw noSpace(err, options, 'open archive')
      throw new ImageSwarmError(
        'E_STAGING_NOT_WRITABLE',
        `cannot open ${options.archivePath}: ${(err as Error).message}`,
        {
          operation: 'open archive',
          path: options.archivePath,
          hint: 'check that staging is writable and has room (imageswarm.staging=)',
          cause: err,
        },
      )
    }
  }

  get totals(): TransferTotals {
    return this.#swarm.totals
  }

  /** Resolves once every piece is downloaded and checked against the piece hashes. */
  async downloadArchive(signal?: AbortSignal): Promise<void> {
    const swarm = this.#swarm
    const { emit, manifest } = this.#options
    await new Promise<void>((resolve, reject) => {
      const finish = (err?: Error) => {
        clearInterval(this.#ticker)
        this.#ticker = undefined
        swarm.off('done', onDone)
        swarm.off('error', onError)
        signal?.removeEventListener('abort', onAbort)
        if (err) reject(err)
        else resolve()
      }
      const onDone = () => finish()
      const onError = (err: Error) => finish(downloadError(err, this.#options))
      const onAbort = () => finish(signal?.reason as Error)
      swarm.on('done', onDone)
      swarm.on('error', onError)
      signal?.addEventListener('abort', onAbort, { once: true })
      if (swarm.done) return finish()
      this.#ticker = setInterval(() => {
        const stalled = this.#watchProgress()
        emit({
          type: 'download-progress',
          size: manifest.size,
          totals: this.totals,
          downloadRate: swarm.downloadRate,
          uploadRate: swarm.uploadRate,
          peers: swarm.peerCount,
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

  /** Adds the web seed when the swarm does not help; fails when nothing helps at all.
   * Progress is verified bytes: junk that fails its check is no progress. */
  #watchProgress(): ImageSwarmError | undefined {
    const now = Date.now()
    const swarm = this.#swarm
    const verified = swarm.verifiedBytes
    if (verified > this.#lastVerified) {
      this.#lastVerified = verified
      this.#lastProgressAt = now
    }
    const idle = (now - this.#lastProgressAt) / 1000
    const { webSeedFallbackSeconds, stallTimeoutSeconds } = this.#options
    if (!this.#webSeedAdded && idle >= webSeedFallbackSeconds && this.#webSeeds.length > 0) {
      const reason =
        swarm.peerCount === 0
          ? `no peers for ${Math.round(idle)} s`
          : `no progress for ${Math.round(idle)} s`
      this.#addWebSeeds(reason)
    }
    if (idle >= stallTimeoutSeconds) {
      return new ImageSwarmError(
        'E_DOWNLOAD_STALLED',
        `no verified data arrived for ${Math.round(idle)} s (${swarm.peerCount} peers, ${swarm.rejectedPieces} pieces rejected, web seed ${this.#webSeedAdded ? 'in use' : 'unavailable'})`,
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
    const urls = this.#webSeeds.map(({ url }) => url)
    this.#options.logger.info({ reason, webSeeds: urls }, 'adding the server web seed')
    this.#options.emit({ type: 'webseed-fallback', reason })
    for (const { url, server } of this.#webSeeds) this.#swarm.addWebSeed(url, { server })
  }

  /**
   * How many nodes still need this one to seed, on evidence (see
   * `ArchiveSwarm.leecherCount`): downloading nodes the tracker reports that no connection
   * reaches keep it only for a grace period, so fake announces cannot hold it for its
   * whole seed time.
   */
  async leechers(): Promise<number> {
    const evidence = await this.#swarm.leecherCount()
    if (evidence.graceOver && !this.#unreachedIgnored) {
      this.#options.logger.warn(
        { unreached: evidence.unreached, active: evidence.active },
        'the tracker reports downloading nodes that no connection reaches; they no longer keep this node seeding',
      )
    }
    this.#unreachedIgnored = evidence.graceOver
    return evidence.count
  }

  async close(): Promise<void> {
    clearInterval(this.#ticker)
    await this.#swarm.close()
    await this.#host.close()
  }
}

/** What the swarm's `error` means for the install: its own code when it has one (the
 * server's archive changed), no space when staging filled up, else a failed download. */
function downloadError(err: Error, options: SwarmSessionOptions): ImageSwarmError {
  if (isImageSwarmError(err)) return err
  if (isNoSpace(err)) return noSpace(err, options, 'write piece')
  return new ImageSwarmError(
    'E_DOWNLOAD_FAILED',
    `download of ${options.manifest.name} failed: ${err.message}`,
    { operation: 'download archive', path: options.archivePath, cause: err },
  )
}

function isNoSpace(err: unknown): boolean {
  const errno = errnoOf(err)
  return errno === 'ENOSPC' || errno === 'EDQUOT'
}

function noSpace(err: unknown, options: SwarmSessionOptions, operation: string): ImageSwarmError {
  const dir = dirname(options.archivePath)
  return new ImageSwarmError(
    'E_NO_SPACE',
    `no space left in ${dir} while downloading ${options.manifest.name} (${options.manifest.size} bytes): ${errnoOf(err)}`,
    {
      operation,
      path: options.archivePath,
      hint: 'free space there or point BITTORRENT_STAGING= / --staging at a larger filesystem; the download resumes from the pieces already there',
      cause: err,
    },
  )
}
