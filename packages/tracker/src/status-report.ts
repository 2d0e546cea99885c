import {
  describeSchemaProblem,
  NODE_STATUS_MAX_BYTES,
  NODE_STATUS_PATH,
  type NodeStatusReport,
  NodeStatusReportSchema,
} from '@imageswarm/core'
import type { ApiError } from './http-reply.js'

export type ParsedReport = { ok: true; report: NodeStatusReport } | { ok: false; error: ApiError }

/**
 * Checks the body of a status post against core's schema. A bad one gets an error that
 * names the field, says what was expected and what was received, as the client's
 * developer (or a curl user) needs to fix it.
 */
export function parseStatusReport(body: Buffer): ParsedReport {
  if (body.length > NODE_STATUS_MAX_BYTES) return { ok: false, error: tooLarge(body.length) }
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch (err) {
    return {
      ok: false,
      error: invalid(`the body is not JSON (${(err as Error).message})`),
    }
  }
  const result = NodeStatusReportSchema.safeParse(json)
  if (result.success) return { ok: true, report: result.data }
  const { key, message, received } = describeSchemaProblem(result.error, json, '(body)')
  return { ok: false, error: invalid(`field ${key}: ${message} (received ${received})`) }
}

export function tooLarge(bytes: number | undefined): ApiError {
  return {
    status: 413,
    code: 'E_STATUS_TOO_LARGE',
    message: `status report too large: ${bytes === undefined ? 'more than the limit' : `${bytes} bytes`}; the limit is ${NODE_STATUS_MAX_BYTES} bytes`,
    hint: 'a report is a few hundred bytes; shorten the error message or node name',
  }
}

function invalid(message: string): ApiError {
  return {
    status: 400,
    code: 'E_STATUS_INVALID',
    message: `invalid status report: ${message}`,
    hint: `POST ${NODE_STATUS_PATH} takes a JSON NodeStatusReport, e.g. {"image":"compute","infoHash":"<40 hex>","peerId":"<40 hex>","node":"node17","state":"downloading","size":1048576,"downloaded":524288,"downloadedFromServer":0,"uploaded":0,"downloadRate":0,"uploadRate":0,"peers":3}`,
  }
}
