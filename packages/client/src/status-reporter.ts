import { hostname } from 'node:os'
import {
  type InstallEvent,
  type Logger,
  makeNodeToken,
  NODE_STATUS_PATH,
  type NodeState,
  NodeStatusReplySchema,
  type NodeStatusReport,
  REPORT_INTERVAL_LIMITS_MS,
  serverUrl,
} from '@imageswarm/core'
import { parseRetryAfter, readBody } from './http-answer.js'
import type { ServerConnection } from './server-connection.js'

/** How often progress is reported between state changes, until the server says. */
const DEFAULT_REPORT_INTERVAL_MS = REPORT_INTERVAL_LIMITS_MS.min
/** After a failed post, the first wait before the next; it doubles with each failure. */
const FIRST_RETRY_MS = 1000
/** The longest a failed post (or the server's Retry-After) holds reports back. */
const RETRY_LIMIT_MS = 60_000
/** A reply (`{ok, reportIntervalMs, nodeToken}` or an API error) is well under this. */
const REPLY_SIZE_LIMIT = 16 * 1024

export interface StatusReporterOptions {
  /**
   * The image servers' base URLs (one, or a primary and its mirrors): each one's dashboard
   * shows the whole swarm, so each gets every report, on its own.
   */
  server: string | readonly string[]
  image: string
  /** This node's BitTorrent peer id (hex), which ties reports to the tracker's peer. */
  peerId: string
  /** A name for this node in the dashboard; default: the host name. */
  node?: string
  /** The MAC of the NIC this node booted from (`BOOTIF=`), shown beside its name. */
  mac?: string
  logger: Logger
  /** What posts the reports: the global fetch, unless a test hands in its own. */
  fetch?: typeof fetch
  /**
   * Each server's connections: reports go over the certificate the verified key list pins
   * (they start with the manifest, after the key list was checked).
   */
  connectionOf?: (server: string) => ServerConnection | undefined
}

/**
 * Tells the image servers where this node's install is, so their dashboards can show it:
 * every state change at once, progress at most once a second, or as rarely as a server's
 * replies ask (a large cluster's nodes spread their posts out). With several servers (a
 * primary and its mirrors), each is posted to on its own (ServerReports): its interval, its
 * retries, its token; one that is down neither delays nor stops the reports to the others.
 * A post a server turned away for now (429, 5xx) or that did not arrive is sent again, the
 * latest report by then, after the server's Retry-After or a backoff from 1 s to 60 s: the
 * last state of an install (done, failed) must reach the dashboard although no event follows
 * it. Reporting is best effort: a server that cannot take reports never slows or fails an
 * install.
 *
 * Only this node may report for itself, to each server directly (no server relays another's
 * reports): every post carries a node token made here for that server (`Authorization:
 * Bearer`), and the server binds the peer id to the token of the first post it takes. A 403
 * means the server will not take this node's reports; nothing more is sent to it.
 *
 * Done and failed go out only with what makes them final: `installed` carries the
 * totals, `failed` the error. The `state` event that moves the install there changes
 * nothing in the report, so no post (a progress tick, a retry, a post queued behind
 * another) can ever carry the final state without them.
 */
export class StatusReporter {
  readonly #options: StatusReporterOptions
  #report: NodeStatusReport | undefined
  #manifest: { size: number; infoHash: string } | undefined
  readonly #servers: ServerReports[]

  constructor(options: StatusReporterOptions) {
    this.#options = options
    const servers = typeof options.server === 'string' ? [options.server] : options.server
    this.#servers = [...new Set(servers)].map(
      (server) =>
        new ServerReports({
          server,
          latest: () => this.#report,
          fetch: options.fetch ?? fetch,
          logger: options.logger,
          connection: options.connectionOf?.(server),
        }),
    )
  }

  /** Feeds an install event. Reports start once the manifest names the image's infohash. */
  update(event: InstallEvent): void {
    const report = this.#apply(event)
    if (!report) return
    const urgent =
      event.type === 'state' ||
      event.type === 'failed' ||
      event.type === 'installed' ||
      event.type === 'updated'
    for (const server of this.#servers) server.offer(urgent)
  }

  /**
   * Waits for the last report to be delivered to every server (or to fail there for good),
   * at most `timeoutMs` in all.
   */
  async flush(timeoutMs = 3000): Promise<void> {
    await Promise.all(this.#servers.map((server) => server.flush(timeoutMs)))
  }

  /** The report after `event`; undefined when there is nothing to send for it. */
  #apply(event: InstallEvent): NodeStatusReport | undefined {
    if (event.type === 'manifest') {
      this.#manifest = { size: event.manifest.size, infoHash: event.manifest.infoHash }
    }
    if (!this.#manifest) return undefined
    // Done and failed are final, on the server as here: nothing after them is reported.
    if (this.#report?.state === 'done' || this.#report?.state === 'failed') return undefined
    const previous: NodeStatusReport = this.#report ?? {
      image: this.#options.image,
      infoHash: this.#manifest.infoHash,
      peerId: this.#options.peerId,
      node: this.#options.node ?? hostname(),
      ...(this.#options.mac ? { mac: this.#options.mac } : {}),
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
        // The move to done or failed is taken from the event that carries its totals or
        // its error ('installed' or 'updated', 'failed'), which the install emits right after.
        if (event.state === 'done' || event.state === 'failed') return undefined
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
        Object.assign(next, {
          downloaded: event.totals.downloaded,
          downloadedFromServer: event.totals.downloadedFromServer,
          uploaded: event.totals.uploaded,
        })
        break
      case 'installed':
      case 'updated':
        Object.assign(next, {
          state: 'done',
          downloaded: event.totals.downloaded,
          downloadedFromServer: event.totals.downloadedFromServer,
          uploaded: event.totals.uploaded,
          downloadRate: 0,
          uploadRate: 0,
        })
        break
      case 'failed':
        next.state = 'failed'
        next.downloadRate = 0
        next.uploadRate = 0
        next.error = { code: event.error.code, message: event.error.message.slice(0, 2000) }
        break
      default:
        // Nothing new to say, but a post is due if the last is an interval old: a node busy
        // verifying or extracting stays on the dashboard instead of turning stale.
        return this.#report
    }
    this.#report = next
    return next
  }
}

/** What one server's posts need: the latest report, and how to send it. */
interface ServerReportsOptions {
  server: string
  latest: () => NodeStatusReport | undefined
  fetch: typeof fetch
  logger: Logger
  connection: ServerConnection | undefined
}

/**
 * One image server's reports (see StatusReporter): posts the latest report when offered one
 * and its interval allows, or at once when urgent; its own node token, interval, backoff
 * and refusal, whatever the other servers answer.
 */
class ServerReports {
  readonly #options: ServerReportsOptions
  #nodeToken = makeNodeToken()
  #lastSent = 0
  #intervalMs: number = DEFAULT_REPORT_INTERVAL_MS
  #inFlight: Promise<void> | undefined
  /** A newer report came while one was in flight: it goes when that one is done. */
  #pending = false
  #warned = false
  /** The server refused this node's reports for good (403): nothing more is posted. */
  #refused = false
  /** Failed posts in a row, and when the next post may go. */
  #failures = 0
  #retryAt = 0
  #retryTimer: NodeJS.Timeout | undefined
  /** `flush()` calls waiting for this server to have nothing left to send. */
  readonly #idleWaiters = new Set<() => void>()

  constructor(options: ServerReportsOptions) {
    this.#options = options
  }

  /** A new report: posted now if urgent or the server's interval is up. */
  offer(urgent: boolean): void {
    if (urgent || Date.now() - this.#lastSent >= this.#intervalMs) this.#send()
  }

  /** Waits for the last report to be delivered (or to fail for good), at most `timeoutMs`. */
  flush(timeoutMs: number): Promise<void> {
    if (this.#idle) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.#idleWaiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, timeoutMs)
      this.#idleWaiters.add(done)
    })
  }

  get #idle(): boolean {
    return this.#inFlight === undefined && this.#retryTimer === undefined
  }

  #settle(): void {
    if (!this.#idle) return
    for (const done of [...this.#idleWaiters]) done()
  }

  #send(): void {
    if (this.#refused) return
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
        this.#settle()
      }, wait).unref()
      return
    }
    const report = this.#options.latest()
    if (!report) return
    this.#lastSent = Date.now()
    this.#inFlight = this.#post(report).then((again) => {
      this.#inFlight = undefined
      if (again || this.#pending) {
        this.#pending = false
        this.#send()
      }
      this.#settle()
    })
  }

  /**
   * Posts one report. True when it should be sent again: then, once `#retryAt` has come,
   * `#send` posts whatever the latest report is by that time.
   */
  async #post(report: NodeStatusReport): Promise<boolean> {
    let failure: string
    let retryAfterMs: number | undefined
    const dispatcher = this.#options.connection?.dispatcher
    try {
      const response = await this.#options.fetch(
        serverUrl(this.#options.server, NODE_STATUS_PATH),
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${this.#nodeToken}`,
          },
          body: JSON.stringify(report),
          signal: AbortSignal.timeout(5000),
          ...(dispatcher ? { dispatcher } : {}),
        },
      )
      // A reply is a few dozen bytes of JSON; a server sending more is not read further.
      const body = (await readBody(response, REPLY_SIZE_LIMIT)).toString('utf8')
      if (response.ok) {
        this.#failures = 0
        this.#adoptReply(body)
        return false
      }
      failure = `HTTP ${response.status}${describeApiError(body)}`
      if (response.status === 403) {
        // The server binds this peer id to another token, or to another address: no post
        // of this node will ever be taken, so it stops asking.
        this.#refused = true
        this.#options.logger.warn(
          { server: this.#options.server, err: failure, peerId: report.peerId },
          `the server ${this.#options.server} refuses this node’s status reports; its dashboard will not show this install`,
        )
        return false
      }
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
    this.#options.logger[level](
      { server: this.#options.server, err: failure },
      `could not report status to the server ${this.#options.server}`,
    )
  }

  /**
   * Takes the report interval from the server's reply, and the node token when the
   * server names one (it echoes this node's own when the post claimed the peer id).
   */
  #adoptReply(body: string): void {
    let json: unknown
    try {
      json = JSON.parse(body)
    } catch {
      return
    }
    const reply = NodeStatusReplySchema.safeParse(json)
    if (!reply.success) return
    if (reply.data.reportIntervalMs !== undefined) this.#intervalMs = reply.data.reportIntervalMs
    if (reply.data.nodeToken !== undefined) this.#nodeToken = reply.data.nodeToken
  }
}

/** ` E_CODE: message` from an API error body, or nothing when it is not one. */
function describeApiError(body: string): string {
  try {
    const { error } = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }
    if (typeof error?.code === 'string') return ` ${error.code}: ${String(error.message ?? '')}`
  } catch {
    // Not JSON: the status alone says it.
  }
  return ''
}
