import type { IncomingMessage, ServerResponse } from 'node:http'
import { NODE_STATUS_MAX_BYTES, NODE_STATUS_PATH } from '@imageswarm/core'
import { bearerToken, clientAddress } from './credentials.js'
import { sendApiError, sendJson } from './http-reply.js'
import type { StatusIntake, StatusOutcome } from './status-intake.js'
import { parseStatusReport, tooLarge } from './status-report.js'

export interface StatusEndpoint {
  intake: StatusIntake
  /** Take the sender's address from X-Forwarded-For, as announces do. */
  trustProxy: boolean
  onOutcome: (outcome: StatusOutcome) => void
}

/**
 * `POST /api/nodes/status` (core's NODE_STATUS_PATH): a node's status report. The body
 * is read up to NODE_STATUS_MAX_BYTES and no further and checked against core's schema;
 * the intake then decides, from the sender's address and node token
 * (`Authorization: Bearer`), whether it may speak for the peer id (see status-intake.ts).
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
    const result = endpoint.intake.take(parsed.report, {
      address: clientAddress(req, endpoint.trustProxy),
      token: bearerToken(req),
    })
    if (!result.ok) {
      endpoint.onOutcome(result.outcome)
      sendApiError(res, result.error, result.headers)
      return
    }
    endpoint.onOutcome('accepted')
    sendJson(res, 200, result.reply)
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
