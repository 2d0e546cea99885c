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
/** After a failed post, the first wait before the next; it doubles with each failure. */
const FIRST_RETRY_MS = 1000
/** The longest a failed post (or the server's Retry-After) holds reports back. */
const RETRY_LIMIT_MS = 60_000

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
 * server's replies ask (a large cluster's nodes spread their posts out). A post the server
 * turned away for now (429, 5xx) or that did not arrive is sent again, the latest report by
 * then, after the server's Retry-After or a backoff from 1 s to 60 s: the last state of an
 * install (done, failed) must reach the dashboard although no event follows it. Reporting
 * is best effort: a server that cannot take reports never slows or fails an install.
 */
export class StatusReporter {
  readonly #options: StatusReporterOptions
  #report: NodeStatusReport | undefined
  #manifest: { size: number; infoHash: string } | undefined
  #lastSent = 0
  #intervalMs: number = DEFAULT_REPORT_INTERVAL_MS
  #inFlight: Promise<void> | undefined
  /** A newer report came while one was in flight: it goes when that one is done. */
  #pending = false
  #warned = false
  /** Failed posts in a row, and when the next post may go. */
  #failures = 0
  #retryAt = 0
  #retryTimer: NodeJS.Timeout | undefined

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

  /** Waits for the last report to be delivered (or to fail for good), at most `timeoutMs`. */
  async flush(timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while ((this.#inFlight || this.#retryTimer) && Date.now() < deadline) {
      // Not a race with `undefined` while a retry waits: that settles at once, and the loop
      // would spin without ever letting the retry's timer run.
      const tick = new Promise((resolve) => setTimeout(resolve, 50))
      await (this.#inFlight ? Promise.race([this.#inFlight, tick]) : tick)
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
    const wait = this.#retryAt - Date.now()
    if (wait > 0) {
      // Whatever is the latest report then goes; the timer keeps no process alive.
      this.#retryTimer ??= setTimeout(() => {
        this.#retryTimer = undefined
        this.#send()
      }, wait).unref()
      return
    }
    const report = this.#report
    if (!report) return
    this.#lastSent = Date.now()
    this.#inFlight = this.#post(report).then((again) => {
      this.#inFlight = undefined
      if (again || this.#pending) {
        this.#pending = false
        this.#send()
      }
    })
  }

  /**
   * Posts one report. True when it should be sent again: then, once `#retryAt` has come,
   * `#send` posts whatever the latest report is by that time.
   */
  async #post(report: NodeStatusReport): Promise<boolean> {
    let failure: string
    let retryAfterMs: number | undefined
    try {
      const response = await fetch(serverUrl(this.#options.server, NODE_STATUS_PATH), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(report),
        signal: AbortSignal.timeout(5000),
      })
      const body = await response.text()
      if (response.ok) {
        this.#failures = 0
        this.#adoptInterval(body)
        return false
      }
      failure = `HTTP ${response.status}`
      if (response.status !== 429 && response.status < 500) {
        // A server without the status API (404), or one refusing this report: sending it
        // again would change nothing.
        this.#warnOnce(failure)
        return false
      }
      retryAfterMs = parseRetryAfter(response.headers.get('retry-after'))
    } catch (err) {
      failure = String(err)
    }
    this.#warnOnce(failure)
    this.#failures++
    const backoff = FIRST_RETRY_MS * 2 ** Math.min(this.#failures - 1, 6)
    this.#retryAt = Date.now() + Math.min(retryAfterMs ?? backoff, RETRY_LIMIT_MS)
    return true
  }

  #warnOnce(failure: string): void {
    // Logged once: an old server without the status API must not flood the log.
    const level = this.#warned ? 'debug' : 'warn'
    this.#warned = true
    this.#options.logger[level]({ err: failure }, 'could not report status to the server')
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

/** Retry-After in milliseconds: delay-seconds or an HTTP date (RFC 9110); else undefined. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}
