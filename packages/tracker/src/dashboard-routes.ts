import type { IncomingMessage, ServerResponse } from 'node:http'
import { type DashboardServers, NODE_STATES, NODE_STATUS_PATH, WIRE } from '@imageswarm/core'
import type { DashboardAssets } from './dashboard-assets.js'
import type { DashboardAuth } from './dashboard-auth.js'
import { deploymentCsv, deploymentFileName } from './deployment-export.js'
import { sendApiError, sendJson, sendText } from './http-reply.js'
import type { LiveEvents } from './live-events.js'
import type { TrackerMetrics } from './metrics.js'
import { handleStatusPost, type StatusEndpoint } from './status-api.js'
import type { SwarmMonitor } from './swarm-monitor.js'

export interface DashboardContext {
  monitor: SwarmMonitor
  assets: DashboardAssets
  live: LiveEvents
  metrics: TrackerMetrics
  status: StatusEndpoint
  auth: DashboardAuth
  /** The servers serving these images: this one, its primary, its mirrors. */
  servers: () => DashboardServers
}

export const METRICS_PATH = '/metrics'

const IMAGE_ROUTE =
  /^\/api\/images\/([^/]+)(?:\/(nodes|history|deployments)(?:\/([0-9]{1,9})(\.csv|\.json)?)?)?\/?$/

/**
 * The dashboard's HTTP surface: the page (`/`, `/assets/*`), its JSON API under
 * `/api/`, live updates (`/api/events`), node status posts and `/metrics`. Returns false
 * for any other path. Everything but the status post is read-only, and needs the
 * dashboard token when the server has one; status posts are the nodes', which
 * authenticate as nodes (status-intake.ts).
 */
export function handleDashboardRequest(
  context: DashboardContext,
  req: IncomingMessage,
  res: ServerResponse,
): boolean {
  const url = new URL(req.url ?? '/', 'http://server')
  const path = url.pathname
  const isApi = path === WIRE.api || path.startsWith(`${WIRE.api}/`)
  if (!isApi && path !== METRICS_PATH && !context.assets.has(path)) return false

  if (path === NODE_STATUS_PATH) {
    handleStatusPost(context.status, req, res)
    return true
  }
  if (!context.auth.admit(req, url, res)) return true
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendApiError(
      res,
      {
        status: 405,
        code: 'E_METHOD_NOT_ALLOWED',
        message: `method ${req.method} not allowed on ${path}; use GET`,
      },
      { Allow: 'GET, HEAD' },
    )
    return true
  }
  if (context.assets.send(path, req.method === 'HEAD', res)) return true
  if (path === METRICS_PATH) {
    context.metrics.render().then(
      ({ body, contentType }) => {
        res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' })
        res.end(body)
      },
      () => {
        if (!res.headersSent) res.writeHead(500).end()
      },
    )
    return true
  }
  answerApi(context, url, res)
  return true
}

function answerApi(context: DashboardContext, url: URL, res: ServerResponse): void {
  const { monitor } = context
  const path = url.pathname
  if (path === `${WIRE.api}/images` || path === `${WIRE.api}/images/`) {
    sendJson(res, 200, { images: monitor.summaries() })
    return
  }
  if (path === `${WIRE.api}/servers`) {
    sendJson(res, 200, context.servers())
    return
  }
  if (path === `${WIRE.api}/events`) {
    context.live.subscribe(res, url.searchParams.get('image') ?? undefined)
    return
  }
  const match = IMAGE_ROUTE.exec(path)
  if (match === null) {
    sendApiError(res, {
      status: 404,
      code: 'E_NOT_FOUND',
      message: `no such endpoint: ${path}`,
      hint: `see ${WIRE.api}/images, ${WIRE.api}/servers, ${WIRE.api}/images/NAME, ${WIRE.api}/images/NAME/nodes, ${WIRE.api}/images/NAME/history, ${WIRE.api}/images/NAME/deployments[/ID[.csv|.json]], ${WIRE.api}/events`,
    })
    return
  }
  const image = safeDecode(match[1]!)
  const swarm = image === undefined ? undefined : monitor.swarm(image)
  if (swarm === undefined) {
    sendApiError(res, {
      status: 404,
      code: 'E_UNKNOWN_IMAGE',
      message: `image ${image ?? match[1]} is not published on this server`,
      hint: `see ${WIRE.api}/images for the published images`,
    })
    return
  }
  const now = monitor.now()
  if (match[3] !== undefined && match[2] !== 'deployments') {
    sendApiError(res, {
      status: 404,
      code: 'E_NOT_FOUND',
      message: `no such endpoint: ${path}`,
      hint: `only deployments have ids: ${WIRE.api}/images/NAME/deployments/ID`,
    })
    return
  }
  if (match[2] === 'deployments') {
    if (match[3] === undefined) {
      sendJson(res, 200, { image: swarm.image, deployments: swarm.deploymentSummaries(now) })
      return
    }
    const record = swarm.deploymentRecord(Number(match[3]), now)
    if (record === undefined) {
      sendApiError(res, {
        status: 404,
        code: 'E_NOT_FOUND',
        message: `image ${swarm.image} has no deployment ${match[3]} (any more)`,
        hint: `see ${WIRE.api}/images/${encodeURIComponent(swarm.image)}/deployments for those the server keeps (deploymentsKept)`,
      })
      return
    }
    if (match[4] === '.csv') {
      sendText(res, deploymentCsv(record), 'text/csv; charset=utf-8', {
        'Content-Disposition': `attachment; filename="${deploymentFileName(record, 'csv')}"`,
      })
    } else if (match[4] === '.json') {
      sendJson(res, 200, record, {
        'Content-Disposition': `attachment; filename="${deploymentFileName(record, 'json')}"`,
      })
    } else {
      sendJson(res, 200, record)
    }
    return
  }
  if (match[2] === 'nodes') {
    // `?state=failed` (repeatable) and `?stale=true` narrow the list, as the page's filter does.
    const states = url.searchParams
      .getAll('state')
      .filter((s) => (NODE_STATES as readonly string[]).includes(s))
    const staleOnly = url.searchParams.get('stale') === 'true'
    const nodes = swarm
      .nodes(now)
      .filter(
        (node) =>
          (states.length === 0 || states.includes(node.state)) && (!staleOnly || node.stale),
      )
    sendJson(res, 200, { image: swarm.image, nodes })
  } else if (match[2] === 'history') {
    const since = Number(url.searchParams.get('since') ?? Number.NaN)
    sendJson(res, 200, {
      image: swarm.image,
      history: swarm.series(Number.isFinite(since) ? since : undefined),
    })
  } else {
    sendJson(res, 200, monitor.summaryOf(swarm))
  }
}

function safeDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined
  }
}
