import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'
import { bearerToken, cookieValue, sameSecret } from './credentials.js'
import { sendApiError } from './http-reply.js'

/** The cookie a browser keeps the token in after `/?token=…`, so the page's own requests work. */
export const DASHBOARD_COOKIE = 'imageswarm_dashboard'

/** RFC 6750 bearer token characters: what fits in a header, a cookie and a URL as is. */
const TOKEN_PATTERN = /^[A-Za-z0-9\-._~+/]{16,512}=*$/

/**
 * Reads the dashboard's read-only token from `file` (surrounding whitespace, such as
 * the newline `openssl rand -hex 32 > FILE` writes, is not part of it). Throws
 * `E_CONFIG_INVALID` naming `dashboardTokenFile` when the file cannot be read or holds
 * no usable token.
 *
 * @example
 *   readDashboardToken('/etc/imageswarm/dashboard.token') // '3f9c…'
 */
export function readDashboardToken(file: string): string {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ImageSwarmError(
      'E_CONFIG_INVALID',
      `cannot read the dashboard token file ${file}: ${errnoOf(err) ?? String(err)}`,
      {
        operation: 'read dashboardTokenFile',
        path: file,
        hint: 'check --dashboard-token-file (dashboardTokenFile); make one with: openssl rand -hex 32 > FILE',
        cause: err,
      },
    )
  }
  const token = text.trim()
  if (!TOKEN_PATTERN.test(token)) {
    throw new ImageSwarmError(
      'E_CONFIG_INVALID',
      `the dashboard token file ${file} holds no usable token: it must be one line of 16 to 512 letters, digits or -._~+/ (it holds ${token.length} characters)`,
      {
        operation: 'read dashboardTokenFile',
        path: file,
        hint: 'write a random token into it: openssl rand -hex 32 > FILE',
      },
    )
  }
  return token
}

/**
 * The dashboard's read-only token check. Without a token everything is open; with one,
 * a request is let through when it carries the token as `Authorization: Bearer`, in the
 * cookie, or as `?token=` (which also sets the cookie, HttpOnly, for the page's own
 * requests; the page itself is then reloaded without the token in its address). Every
 * comparison takes the same time whatever the guess.
 */
export class DashboardAuth {
  readonly #token: string | undefined

  constructor(token: string | undefined) {
    this.#token = token
  }

  get required(): boolean {
    return this.#token !== undefined
  }

  /** True when the request may go on; false when it was answered here (401, or a redirect). */
  admit(req: IncomingMessage, url: URL, res: ServerResponse): boolean {
    const expected = this.#token
    if (expected === undefined) return true
    const bearer = bearerToken(req)
    if (bearer !== undefined) return sameSecret(bearer, expected) || this.#refuse(res, 'wrong')
    const query = url.searchParams.get('token')
    if (query !== null) {
      if (!sameSecret(query, expected)) return this.#refuse(res, 'wrong')
      res.setHeader(
        'Set-Cookie',
        `${DASHBOARD_COOKIE}=${expected}; Path=/; HttpOnly; SameSite=Strict`,
      )
      if (url.pathname !== '/' || req.method !== 'GET') return true
      // The page: load it again without the token, so it stays out of the address bar,
      // the history and bookmarks. The browser keeps the #fragment across the redirect.
      url.searchParams.delete('token')
      res.writeHead(303, { Location: `${url.pathname}${url.search}`, 'Cache-Control': 'no-store' })
      res.end()
      return false
    }
    const cookie = cookieValue(req, DASHBOARD_COOKIE)
    if (cookie !== undefined) return sameSecret(cookie, expected) || this.#refuse(res, 'wrong')
    return this.#refuse(res, 'missing')
  }

  #refuse(res: ServerResponse, why: 'missing' | 'wrong'): false {
    sendApiError(
      res,
      {
        status: 401,
        code: 'E_DASHBOARD_UNAUTHORIZED',
        message:
          why === 'missing'
            ? "this server's dashboard and API need its read-only token"
            : "the dashboard token is not this server's",
        hint: "send Authorization: Bearer <token>, or open /?token=<token> once in a browser; the token is in the file given to the server's --dashboard-token-file",
      },
      { 'WWW-Authenticate': 'Bearer realm="imageswarm dashboard"' },
    )
    return false
  }
}
