import { hostname } from 'node:os'
import {
  type InstallEvent,
  type Logger,
  NODE_STATUS_PATH,
  type NodeState,
  NodeStatusReplySchema,
  type NodeStatusReport,
  REPORT_INTERVAL_LIMITS_MS,
  serverUrl,
} from '@imageswarm/core'

/** How often progress is reported between state changes, until the server says. */
const DEFAULT_REPORT_INTERVAL_MS = REPORT_INTERVAL_LIMITS_MS.min

export interface StatusReporterOptions {
  server: string
  image: string
  /** This node's BitTorrent peer id (hex), which ties reports to the tracker's peer. */
  peerId: string
  /** A name for this node in the dashboard; default: the host name. */
  node?: string
  logger: Logger
}

/**
 * Tells the image server where this node's install is, so the dashboard can show it:
 * every state change at once, progress at most once a second, or as rarely as the
 * server's replies ask (a large cluster's nodes spread their posts out). Reporting is
 * best effort: a server that cannot take reports never slows or fails an install.
 */
export class StatusReporter {
  readonly #options: StatusReporterOptions
  #report: NodeStatusReport | undefined
  #manifest: { size: number; infoHash: string } | undefined
  #lastSent = 0
  #intervalMs: number = DEFAULT_REPORT_INTERVAL_MS
  #inFlight: Promise<void> | undefined
  #pending = false
  #warned = false

  constructor(options: StatusReporterOptions) {
    this.#options = options
  }

  /** Feeds an install event. Reports start once the manifest names the image's infohash. */
  update(event: InstallEvent): void {
    const report = this.#apply(event)
    if (!report) return
    // A move to done or failed is posted with the event that closes the install (its
    // totals, its error), right after it: one post, not a bare state the server would
    // take as final before the error arrives.
    const urgent =
      (event.type === 'state' && event.state !== 'done' && event.state !== 'failed') ||
      event.type === 'failed' ||
      event.type === 'installed'
    if (urgent || Date.now() - this.#lastSent >= this.#intervalMs) this.#send()
  }

  /** Waits for the last report to be delivered (or to fail), at most `timeoutMs`. */
  async flush(timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while ((this.#inFlight || this.#pending) && Date.now() < deadline) {
      await Promise.race([this.#inFlight, new Promise((r) => setTimeout(r, 50))])
    }
  }

  #apply(event: InstallEvent): NodeStatusReport | undefined {
    if (event.type === 'manifest') {
      this.#manifest = { size: event.manifest.size, infoHash: event.manifest.infoHash }
    }
    if (!this.#manifest) return undefined
    const previous: NodeStatusReport = this.#report ?? {
      image: this.#options.image,
      infoHash: this.#manifest.infoHash,
      peerId: this.#options.peerId,
      node: this.#options.node ?? hostname(),
      state: 'waiting' as NodeState,
      size: this.#manifest.size,
      downloaded: 0,
      downloadedFromServer: 0,
      uploaded: 0,
      downloadRate: 0,
      uploadRate: 0,
      peers: 0,
    }
    const next = { ...previous }
    switch (event.type) {
      case 'manifest':
        break
      case 'state':
        next.state = event.state
        if (event.state !== 'downloading') {
          next.downloadRate = 0
        }
        break
      case 'download-progress':
        Object.assign(next, {
          downloaded: Math.min(event.totals.downloaded, Number.MAX_SAFE_INTEGER),
          downloadedFromServer: event.totals.downloadedFromServer,
          uploaded: event.totals.uploaded,
          downloadRate: event.downloadRate,
          uploadRate: event.uploadRate,
          peers: event.peers,
        })
        break
      case 'download-complete':
      case 'seeding':
      case 'installed':
        Object.assign(next, {
          downloaded: event.totals.downloaded,
          downloadedFromServer: event.totals.downloadedFromServer,
          uploaded: event.totals.uploaded,
        })
        break
      case 'failed':
        next.state = 'failed'
        next.error = { code: event.error.code, message: event.error.message.slice(0, 2000) }
        break
      default:
        return this.#report
    }
    this.#report = next
    return next
  }

  #send(): void {
    if (this.#inFlight) {
      this.#pending = true
      return
    }
    const report = this.#report
    if (!report) return
    this.#lastSent = Date.now()
    this.#inFlight = this.#post(report).finally(() => {
      this.#inFlight = undefined
      if (this.#pending) {
        this.#pending = false
        this.#send()
      }
    })
  }

  async #post(report: NodeStatusReport): Promise<void> {
    try {
      const response = await fetch(serverUrl(this.#options.server, NODE_STATUS_PATH), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(report),
        signal: AbortSignal.timeout(5000),
      })
      const body = await response.text()
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      this.#adoptInterval(body)
    } catch (err) {
      // Logged once: an old server without the status API must not flood the log.
      const level = this.#warned ? 'debug' : 'warn'
      this.#warned = true
      this.#options.logger[level]({ err: String(err) }, 'could not report status to the server')
    }
  }

  /** Takes the report interval from the server's reply; keeps the current one otherwise. */
  #adoptInterval(body: string): void {
    let json: unknown
    try {
      json = JSON.parse(body)
    } catch {
      return
    }
    const reply = NodeStatusReplySchema.safeParse(json)
    if (reply.success && reply.data.reportIntervalMs !== undefined) {
      this.#intervalMs = reply.data.reportIntervalMs
    }
  }
}
