import type { IncomingMessage, ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import {
  type DashboardServers,
  type InfoHash,
  type Logger,
  silentLogger,
  WIRE,
} from '@imageswarm/core'
import type { AnnounceParams, ServerOptions } from 'bittorrent-tracker/server'
import Server from 'bittorrent-tracker/server'
import { AllowList, refusalReason } from './allow-list.js'
import { resolveTrackerConfig, type TrackerConfig } from './config.js'
import { DashboardAssets } from './dashboard-assets.js'
import { DashboardAuth, readDashboardToken } from './dashboard-auth.js'
import { handleDashboardRequest } from './dashboard-routes.js'
import type { DeploymentEvent } from './deployment.js'
import { type AnnounceObserver, ImageSwarm, type NumwantLimits } from './image-swarm.js'
import { LiveEvents } from './live-events.js'
import { TrackerMetrics } from './metrics.js'
import { RackMap } from './rack-map.js'
import { answerScrape } from './scrape.js'
import { StatusIntake } from './status-intake.js'
import { type ServerUploadSource, SwarmMonitor } from './swarm-monitor.js'
import type { SwarmStats, TrackerStats } from './swarm-stats.js'
import { encodeFailure } from './tracker-response.js'

export interface Tracker {
  /**
   * Handles GET /announce and /scrape (paths from WIRE in core); returns false if the
   * request is not the tracker's, so the caller can route it elsewhere.
   *
   * @example
   *   http.createServer((req, res) => {
   *     if (!tracker.handle(req, res)) seeder.handle(req, res)
   *   })
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean
  /**
   * Handles the dashboard: the page at `/` and `/assets/*`, the JSON API under `/api/`
   * (with live updates at `/api/events` and node status posts at core's
   * NODE_STATUS_PATH) and Prometheus metrics at `/metrics`; returns false for any other
   * path.
   *
   * @example
   *   http.createServer((req, res) => {
   *     if (!tracker.handle(req, res) && !tracker.handleDashboard(req, res)) notFound(res)
   *   })
   */
  handleDashboard(req: IncomingMessage, res: ServerResponse): boolean
  /**
   * Allow-list: only published infohashes are tracked. Publishing again renames the
   * image. `archiveSize` (the manifest's `size`) is what the dashboard holds nodes'
   * reported byte counts to; without it a node's report can inflate the swarm's totals.
   */
  publish(infoHash: InfoHash, image: string, archiveSize?: number): void
  /** Stops tracking the image and forgets its swarm; its peers' next announces are refused. */
  unpublish(infoHash: InfoHash): void
  /** A snapshot of every published image's swarm and its peers. */
  stats(): TrackerStats
  /** Stops answering; later tracker requests get a failure reply. */
  close(): Promise<void>
}

export interface TrackerOptions {
  config?: Partial<TrackerConfig>
  logger?: Logger
  /** Overrides `config.trustProxy`. */
  trustProxy?: boolean
  /**
   * What the server's own seeder uploaded per infohash (the seeder's `stats()`), read
   * at every history sample. Optional: without it the server's upload is known from
   * its announces (once an interval) and from what nodes report.
   */
  serverUpload?: ServerUploadSource
  /**
   * Told when a deployment of an image begins or ends and when one of its nodes finishes
   * (installed or failed): what the image server's console shows of a deployment.
   */
  onDeployment?: (event: DeploymentEvent) => void
  /** The servers serving these images (a primary and its mirrors), for `GET /api/servers`;
   * default: none listed. */
  servers?: () => DashboardServers
}

/**
 * Builds the tracker: an HTTP-only bittorrent-tracker server that answers only for
 * published images. It opens no socket; the caller's HTTP server hands it requests.
 * Throws `E_CONFIG_INVALID` for a bad config value.
 *
 * @example
 *   const tracker = createTracker({ config: { announceIntervalSeconds: 15 }, logger })
 *   tracker.publish(manifest.infoHash, manifest.image)
 *   http.createServer((req, res) => { if (!tracker.handle(req, res)) notFound(res) }).listen(8080)
 */
export function createTracker(options: TrackerOptions = {}): Tracker {
  const config = resolveTrackerConfig(options.config)
  const trustProxy = options.trustProxy ?? config.trustProxy
  const logger = options.logger ?? silentLogger()
  const allowList = new AllowList()
  const monitor = new SwarmMonitor({
    config,
    serverUpload: options.serverUpload,
    onDeployment: options.onDeployment,
    countsOf: (infoHash) => {
      const peers = swarmOf(infoHash)?.livePeers() ?? []
      const seeders = peers.filter((peer) => peer.complete).length
      return {
        seeders,
        leechers: peers.length - seeders,
        completed: swarmOf(infoHash)?.completed ?? 0,
      }
    },
  })
  const metrics = new TrackerMetrics(monitor)
  const live = new LiveEvents(monitor)
  const dashboard = {
    monitor,
    metrics,
    live,
    servers: options.servers ?? (() => ({ servers: [] })),
    assets: new DashboardAssets(),
    auth: new DashboardAuth(
      config.dashboardTokenFile === undefined
        ? undefined
        : readDashboardToken(config.dashboardTokenFile),
    ),
    status: {
      intake: new StatusIntake({
        monitor,
        ratePerNode: config.statusRatePerNode,
        newNodesPerAddressPerMinute: config.newNodesPerAddressPerMinute,
        maxKeys: 2 * config.maxNodesPerSwarm,
      }),
      trustProxy,
      onOutcome: (outcome: Parameters<TrackerMetrics['statusOutcome']>[0]) =>
        metrics.statusOutcome(outcome),
    },
  }
  if (dashboard.auth.required) {
    logger.info(
      { dashboardTokenFile: config.dashboardTokenFile },
      'the dashboard, its API and /metrics need the read-only token',
    )
  }
  // One timer for every swarm: sample the history, then push what changed to the pages
  // that watch. unref'd, so a forgotten tracker never keeps a process alive.
  const sampler = setInterval(() => {
    try {
      monitor.sample()
      live.publish()
    } catch (err) {
      logger.error({ err }, 'sampling the swarms failed')
    }
  }, config.historySampleSeconds * 1000)
  sampler.unref()
  const server = new ImageTrackerServer(
    {
      interval: config.announceIntervalSeconds * 1000,
      trustProxy,
      // The CLI owns the one listening HTTP server; bittorrent-tracker must start none
      // (`stats: true` would create one for its /stats page), nor UDP or WebSocket.
      http: false,
      udp: false,
      ws: false,
      stats: false,
      peersCacheLength: config.maxPeersPerSwarm,
      peersCacheTtl: config.peerTtlSeconds * 1000,
      filter: (infoHash, params, cb) => {
        if (!allowList.has(infoHash)) cb(new RefusedAnnounce(infoHash))
        else cb(checkClientAddress(params))
      },
    },
    allowList,
    { defaultNumwant: config.defaultNumwant, maxNumwant: config.maxNumwant },
    (infoHash, sighting) => monitor.recordAnnounce(infoHash, sighting),
    config.rackMap === undefined ? undefined : RackMap.read(config.rackMap),
  )
  const warnings = new WarningLog(logger)
  server.on('warning', (err: Error) => warnings.report(err))
  server.on('error', (err: Error) => logger.error({ err }, 'tracker error'))
  for (const event of ['start', 'complete', 'stop'] as const) {
    server.on(event, (addr: string, params: AnnounceParams) => {
      const image = allowList.imageOf(params.info_hash)
      logger.debug({ image, peer: addr, event }, 'announce')
    })
  }

  let closed = false

  function swarmOf(infoHash: string): ImageSwarm | undefined {
    const swarm = server.torrents[infoHash]
    return swarm instanceof ImageSwarm ? swarm : undefined
  }

  function statsOf(infoHash: string, image: string): SwarmStats {
    const peers = swarmOf(infoHash)?.livePeers() ?? []
    const seeders = peers.filter((peer) => peer.complete).length
    return {
      image,
      infoHash,
      seeders,
      leechers: peers.length - seeders,
      completed: swarmOf(infoHash)?.completed ?? 0,
      uploaded: peers.reduce((sum, peer) => sum + peer.uploaded, 0),
      downloaded: peers.reduce((sum, peer) => sum + peer.downloaded, 0),
      peers,
    }
  }

  function reply(res: ServerResponse, status: number, body: Buffer): void {
    res.statusCode = status
    res.end(body)
  }

  return {
    handle(req, res) {
      const path = (req.url ?? '').split('?', 1)[0]
      if (path !== WIRE.announce && path !== WIRE.scrape) return false
      // Trackers answer bencoded text, and a client must never get a cached peer list.
      res.setHeader('Content-Type', 'text/plain')
      res.setHeader('Cache-Control', 'no-store')
      if (closed) {
        reply(res, 503, encodeFailure('the tracker is shutting down'))
        return true
      }
      // Not HEAD: an announce changes the swarm, and a HEAD request must not.
      if (req.method !== 'GET') {
        res.setHeader('Allow', 'GET')
        reply(res, 405, encodeFailure(`method ${req.method} not allowed; use GET`))
        return true
      }
      try {
        if (path === WIRE.announce) {
          res.once('finish', metrics.announceStarted(announceEvent(req.url ?? '')))
          server.onHttpRequest(req, res, { action: 'announce' })
        } else {
          const { body, warning } = answerScrape(
            req.url ?? '',
            {
              published: () => [...allowList.entries()].map(([infoHash]) => infoHash),
              counts: (infoHash) => {
                const image = allowList.imageOf(infoHash)
                if (image === undefined) return undefined
                const { seeders, leechers, completed } = statsOf(infoHash, image)
                return { complete: seeders, incomplete: leechers, downloaded: completed }
              },
            },
            config.announceIntervalSeconds,
          )
          if (warning !== undefined) warnings.report(warning)
          reply(res, 200, body)
        }
      } catch (err) {
        // Nothing a client sends may take the server down; a bug here fails one request.
        logger.error({ err, url: req.url }, 'tracker request failed')
        if (!res.headersSent) reply(res, 500, encodeFailure('internal tracker error'))
        else res.end()
      }
      return true
    },

    handleDashboard(req, res) {
      try {
        return handleDashboardRequest(dashboard, req, res)
      } catch (err) {
        logger.error({ err, url: req.url }, 'dashboard request failed')
        if (!res.headersSent) res.writeHead(500).end()
        else res.end()
        return true
      }
    },

    publish(infoHash, image, archiveSize) {
      allowList.publish(infoHash, image)
      monitor.publish(infoHash, image, archiveSize)
      // Made now rather than on the first announce, so stats() lists the image at once.
      server.ensureSwarm(infoHash)
      logger.info({ image, infoHash }, 'tracking image')
    },

    unpublish(infoHash) {
      const image = allowList.imageOf(infoHash)
      allowList.unpublish(infoHash)
      monitor.unpublish(infoHash)
      delete server.torrents[infoHash]
      if (image !== undefined) logger.info({ image, infoHash }, 'stopped tracking image')
    },

    stats() {
      return {
        swarms: [...allowList.entries()].map(([infoHash, image]) => statsOf(infoHash, image)),
      }
    },

    close() {
      if (closed) return Promise.resolve()
      closed = true
      clearInterval(sampler)
      live.close()
      return new Promise((resolve) => {
        server.close(() => {
          server.torrents = {}
          resolve()
        })
      })
    },
  }
}

/** bittorrent-tracker's server, with imageswarm's swarms and only for published images. */
class ImageTrackerServer extends Server {
  readonly #allowList: AllowList
  readonly #limits: NumwantLimits
  readonly #observer: AnnounceObserver
  readonly #rackMap: RackMap | undefined

  constructor(
    options: ServerOptions,
    allowList: AllowList,
    limits: NumwantLimits,
    observer: AnnounceObserver,
    rackMap: RackMap | undefined,
  ) {
    super(options)
    this.#allowList = allowList
    this.#limits = limits
    this.#observer = observer
    this.#rackMap = rackMap
  }

  ensureSwarm(infoHash: string): ImageSwarm {
    const existing = this.torrents[infoHash]
    if (existing instanceof ImageSwarm) return existing
    const swarm = new ImageSwarm(infoHash, this, this.#limits, this.#observer, this.#rackMap)
    this.torrents[infoHash] = swarm
    return swarm
  }

  override createSwarm(
    infoHash: string,
    cb: (err: Error | null, swarm?: ImageSwarm) => void,
  ): void {
    process.nextTick(() => {
      // The image may have been unpublished between the filter and here.
      if (!this.#allowList.has(infoHash)) {
        cb(new RefusedAnnounce(infoHash))
        return
      }
      // Reusing an existing swarm also closes bittorrent-tracker's race in which two
      // first announces each create a swarm and the second replaces the first.
      cb(null, this.ensureSwarm(infoHash))
    })
  }
}

/**
 * Rejects an announce whose address is not an IP address, and writes an IPv4-mapped
 * IPv6 address as plain IPv4. With `trustProxy` the address comes from the
 * X-Forwarded-For header, so it is whatever the client wrote: bittorrent-tracker would
 * store `999.1.1.1` as a peer and then fail (in a callback, ending the process) every
 * time it packed that peer into a compact peer list.
 */
function checkClientAddress(params: AnnounceParams): Error | null {
  const ip = params.ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')
  const family = isIP(ip)
  if (family === 0) return new Error(`invalid client address ${JSON.stringify(params.ip)}`)
  params.ip = ip
  params.addr = family === 6 ? `[${ip}]:${params.port}` : `${ip}:${params.port}`
  return null
}

const ANNOUNCE_EVENTS = new Set(['started', 'completed', 'stopped', 'paused'])

/** The announce's event, as a metrics label: one of a few known values, never free text. */
function announceEvent(url: string): string {
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : ''
  const event = new URLSearchParams(query).get('event') ?? ''
  return ANNOUNCE_EVENTS.has(event) ? event : 'update'
}

/** An announce for an infohash that is not published. */
class RefusedAnnounce extends Error {
  constructor(infoHash: string) {
    super(refusalReason(infoHash))
    this.name = 'RefusedAnnounce'
  }
}

/**
 * Logs what clients get wrong: each distinct reason once as a warning, then at debug, so
 * a thousand nodes with a stale torrent show up without flooding the log.
 */
class WarningLog {
  static readonly #remembered = 1000
  readonly #seen = new Set<string>()
  readonly #logger: Logger

  constructor(logger: Logger) {
    this.#logger = logger
  }

  report(err: Error): void {
    const refused = err instanceof RefusedAnnounce
    const message = refused ? 'refused announce' : 'bad tracker request'
    if (this.#seen.has(err.message)) {
      this.#logger.debug({ reason: err.message }, message)
      return
    }
    if (this.#seen.size >= WarningLog.#remembered) this.#seen.clear()
    this.#seen.add(err.message)
    this.#logger.warn({ reason: err.message }, message)
  }
}
