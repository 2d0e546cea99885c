import type { IncomingMessage, ServerResponse } from 'node:http'
import { NODE_STATUS_MAX_BYTES, NODE_STATUS_PATH, type NodeStatusReply } from '@imageswarm/core'
import { sendApiError, sendJson } from './http-reply.js'
import type { RateLimiter } from './rate-limit.js'
import { parseStatusReport, tooLarge } from './status-report.js'
import type { SwarmMonitor } from './swarm-monitor.js'

/** How a status post ended, for the `imageswarm_status_reports_total` counter. */
export type StatusOutcome =
  | 'accepted'
  | 'invalid'
  | 'too_large'
  | 'unknown_image'
  | 'rate_limited'
  | 'aborted'

export interface StatusEndpoint {
  monitor: SwarmMonitor
  limiter: RateLimiter
  onOutcome: (outcome: StatusOutcome) => void
}

/**
 * `POST /api/nodes/status` (core's NODE_STATUS_PATH): a node's status report. The body
 * is read up to NODE_STATUS_MAX_BYTES and no further, checked against core's schema,
 * counted against the node's rate, and taken only for a published image.
 */
export function handleStatusPost(
  endpoint: StatusEndpoint,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  if (req.method !== 'POST') {
    sendApiError(
      res,
      {
        status: 405,
        code: 'E_METHOD_NOT_ALLOWED',
        message: `method ${req.method} not allowed on ${NODE_STATUS_PATH}; use POST`,
      },
      { Allow: 'POST' },
    )
    return
  }
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > NODE_STATUS_MAX_BYTES) {
    refuseLarge(endpoint, req, res, declared)
    return
  }
  const chunks: Buffer[] = []
  let length = 0
  let refused = false
  req.on('data', (chunk: Buffer) => {
    if (refused) return
    length += chunk.length
    if (length > NODE_STATUS_MAX_BYTES) {
      refused = true
      refuseLarge(endpoint, req, res, undefined)
      return
    }
    chunks.push(chunk)
  })
  req.on('error', () => endpoint.onOutcome('aborted'))
  req.on('end', () => {
    if (refused) return
    const parsed = parseStatusReport(Buffer.concat(chunks, length))
    if (!parsed.ok) {
      endpoint.onOutcome('invalid')
      sendApiError(res, parsed.error)
      return
    }
    const { report } = parsed
    const wait = endpoint.limiter.take(report.peerId, endpoint.monitor.now())
    if (wait > 0) {
      endpoint.onOutcome('rate_limited')
      const retry = Math.max(1, Math.ceil(wait))
      sendApiError(
        res,
        {
          status: 429,
          code: 'E_RATE_LIMITED',
          message: `too many status reports from peer ${report.peerId}`,
          hint: `post as often as the server's replies say and on state changes; retry after ${retry} s`,
        },
        { 'Retry-After': String(retry) },
      )
      return
    }
    const error = endpoint.monitor.recordStatus(report)
    if (error !== undefined) {
      endpoint.onOutcome('unknown_image')
      sendApiError(res, error)
      return
    }
    endpoint.onOutcome('accepted')
    const reply: NodeStatusReply = {
      ok: true,
      reportIntervalMs: endpoint.monitor.statusIntervalMs(),
    }
    sendJson(res, 200, reply)
  })
}

function refuseLarge(
  endpoint: StatusEndpoint,
  req: IncomingMessage,
  res: ServerResponse,
  bytes: number | undefined,
): void {
  endpoint.onOutcome('too_large')
  // The rest of the body is read and thrown away rather than left unread: closing a
  // socket with unread data makes the kernel reset it, and the client would see a
  // broken connection instead of the 413.
  req.resume()
  sendApiError(res, tooLarge(bytes), { Connection: 'close' })
}
