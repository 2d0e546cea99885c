import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  checkGroupKeyProof,
  GROUP_KEY_AUTH_SCHEME,
  type GroupKeyAnswer,
  type GroupKeyChallenge,
  ImageSwarmError,
  type Logger,
  parseGroupKeyAuthorization,
  readGroupKey,
  readNodeSecret,
  sealGroupKey,
  silentLogger,
} from '@imageswarm/core'
import { sendError, sendJson } from './image-routes.js'

/** A nonce is good for one request within a minute: long enough for a slow node, no more. */
const NONCE_SECONDS = 60
/** Outstanding nonces kept at most; beyond it the oldest go (a flood costs memory, not keys). */
const MAX_NONCES = 4096
const PATH = /^\/keys\/groups\/([^/]+)$/

export interface GroupKeyRoutesOptions {
  /** The group key directory (`serve --group-keys DIR`), with `nodes/NODE.secret`. */
  dir: string
  logger?: Logger
  now?: () => number
}

/**
 * `GET /keys/groups/NAME`: the group key, to a node of that group that proves its secret
 * (docs/trust.md). Without an `authorization` header the answer is 401 with a one-time
 * nonce; with one (`ImageswarmNode node="…", nonce="…", proof="…"`, the proof an
 * HMAC-SHA256 of the node secret, see `groupKeyProof`) it is 200 with the key, or 403/404.
 * Group keys and node secrets are read from disk per request: adding a node or revoking a
 * group takes effect without a restart. Without `serve --tls-cert` the key crosses the
 * network in the clear: serve it so on a trusted install network only; with it, nodes with
 * a root key fetch it only from the certificate the key list pins (docs/trust.md, "HTTPS").
 */
export class GroupKeyRoutes {
  readonly #dir: string
  readonly #logger: Logger
  readonly #now: () => number
  /** Outstanding nonces and when each expires (ms), oldest first. */
  readonly #nonces = new Map<string, number>()

  constructor(options: GroupKeyRoutesOptions) {
    this.#dir = options.dir
    this.#logger = options.logger ?? silentLogger()
    this.#now = options.now ?? Date.now
  }

  /** Answers a group key request; false for other paths. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const match = PATH.exec(new URL(req.url ?? '/', 'http://server').pathname)
    if (!match) return false
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end()
      return true
    }
    const group = decodeURIComponent(match[1]!)
    this.#answer(req, res, group).catch((err: unknown) => {
      this.#logger.error({ err, group }, 'group key request failed')
      if (!res.headersSent) res.writeHead(500).end()
    })
    return true
  }

  async #answer(req: IncomingMessage, res: ServerResponse, group: string): Promise<void> {
    res.setHeader('cache-control', 'no-store')
    const header = req.headers.authorization
    if (header === undefined) return this.#challenge(res)
    const request = parseGroupKeyAuthorization(header)
    const address = req.socket.remoteAddress
    const refuse = (status: number, message: string, hint: string) => {
      this.#logger.warn({ group, node: request?.node, address }, `group key refused: ${message}`)
      sendError(
        res,
        status,
        new ImageSwarmError('E_ARCHIVE_KEY_UNAVAILABLE', message, {
          operation: 'fetch group key',
          path: `group ${group}`,
          hint,
        }),
      )
    }
    if (!request || !this.#takeNonce(request.nonce)) {
      return refuse(
        401,
        'the group key request carries no valid nonce',
        'ask again without an authorization header for a fresh nonce',
      )
    }
    const secret = await readNodeSecret(this.#dir, request.node)
    // One answer for an unknown node and a wrong proof: nobody learns which nodes exist.
    if (!secret || !checkGroupKeyProof(secret.secret, { ...request, group }, request.proof)) {
      return refuse(
        403,
        `node ${request.node} did not prove its node secret`,
        "check the node's secret file (--node-secret-file, imageswarm.node-secret-file=) against the server's (imageswarm key node add)",
      )
    }
    if (secret.group !== group) {
      return refuse(
        403,
        `node ${request.node} is not in group ${group}`,
        `the node is in group ${secret.group}: boot it with imageswarm.group=${secret.group}`,
      )
    }
    const key = await readGroupKey(this.#dir, group)
    if (!key) {
      return refuse(
        404,
        `group ${group} has no key on this server (revoked, or never made)`,
        'make it with imageswarm key group add NAME, or move the node to a current group',
      )
    }
    this.#logger.info({ group, node: request.node, address }, 'group key handed out')
    const answer: GroupKeyAnswer = sealGroupKey(secret.secret, { ...request, group }, key)
    sendJson(res, 200, answer)
  }

  #challenge(res: ServerResponse): void {
    const now = this.#now()
    for (const [nonce, expires] of this.#nonces) {
      if (expires > now && this.#nonces.size < MAX_NONCES) break
      this.#nonces.delete(nonce)
    }
    const nonce = randomBytes(16).toString('hex')
    this.#nonces.set(nonce, now + NONCE_SECONDS * 1000)
    res.setHeader('www-authenticate', `${GROUP_KEY_AUTH_SCHEME} nonce="${nonce}"`)
    const challenge: GroupKeyChallenge = { nonce, expiresIn: NONCE_SECONDS }
    sendJson(res, 401, challenge)
  }

  /** A nonce is used once: a captured request cannot be replayed. */
  #takeNonce(nonce: string): boolean {
    const expires = this.#nonces.get(nonce)
    this.#nonces.delete(nonce)
    return expires !== undefined && expires > this.#now()
  }
}
