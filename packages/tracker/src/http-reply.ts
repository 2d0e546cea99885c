import type { ServerResponse } from 'node:http'

/**
 * The codes of the dashboard API's errors. They are the API's, not install failures,
 * so they live here rather than in core's ERROR_CODES (which map to exit codes).
 */
export type ApiErrorCode =
  | 'E_STATUS_INVALID'
  | 'E_STATUS_TOO_LARGE'
  | 'E_UNKNOWN_IMAGE'
  | 'E_STALE_IMAGE'
  | 'E_NODE_FORBIDDEN'
  | 'E_DASHBOARD_UNAUTHORIZED'
  | 'E_RATE_LIMITED'
  | 'E_METHOD_NOT_ALLOWED'
  | 'E_NOT_FOUND'

/** An API error as the client gets it: `{ "error": { code, message, hint } }`. */
export interface ApiError {
  status: number
  code: ApiErrorCode
  message: string
  hint?: string
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  sendText(res, JSON.stringify(body), 'application/json; charset=utf-8', headers, status)
}

/** A text answer of `contentType` (a CSV export, or JSON through sendJson). */
export function sendText(
  res: ServerResponse,
  text: string,
  contentType: string,
  headers: Record<string, string> = {},
  status = 200,
): void {
  res.writeHead(status, {
    ...headers,
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(text),
    // Every answer is a live snapshot: no cache may hand out an old one.
    'Cache-Control': 'no-store',
  })
  res.end(text)
}

export function sendApiError(
  res: ServerResponse,
  error: ApiError,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
  const { status, ...body } = error
  sendJson(res, status, { error: body })
}
