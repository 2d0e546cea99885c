import type { ClientRequestArgs } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { isIP } from 'node:net'
import type { Duplex } from 'node:stream'
import { connect as connectTls, type TLSSocket } from 'node:tls'
import { checkPinnedCertificate, ImageSwarmError, isImageSwarmError } from '@imageswarm/core'
import { Agent as UndiciAgent } from 'undici'

/** What `fetch` takes as its connection pool (undici's Dispatcher, as Node types its fetch). */
export type FetchDispatcher = NonNullable<RequestInit['dispatcher']>

/** A TLS handshake that has not finished in this long is given up (undici's own default). */
const TLS_CONNECT_TIMEOUT_MS = 10_000

/**
 * Node's certificate verification failures (`tls.connect` with the CA store): the server's
 * certificate is not one the node trusts. Final answers, not a network that may come back.
 */
const UNTRUSTED_CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/**
 * The image server's connections, for every request the client makes to it (manifest,
 * .torrent, web seed, status posts, group keys, node config): docs/trust.md, "HTTPS".
 *
 * - Plain HTTP, or HTTPS before a pin is known or without one: `dispatcher` and `agent` are
 *   undefined, so requests use Node's defaults, which accept only a certificate a CA in the
 *   node's store vouches for (`NODE_EXTRA_CA_CERTS` adds one).
 * - `keyListDispatcher`: for `keys.json` and its signature alone, TLS without a certificate
 *   check. The list is the trust anchor for the pin: its root signature, checked against the
 *   root key baked into the ramdisk, is what vouches for it, not the connection.
 * - After `pin(pins)` with the verified key list's `tlsCertificates`: `dispatcher` (for
 *   fetch) and `agent` (for `node:https`) accept only a certificate whose SHA-256 is pinned;
 *   any other is `E_TLS_PIN_MISMATCH` before a byte of the request is sent.
 *
 * Pinning is done in a connector of our own rather than with `checkServerIdentity` or `ca`:
 * Node calls `checkServerIdentity` only after the CA chain verified (never for a
 * self-signed certificate with `rejectUnauthorized: false`, nor on a resumed session), and
 * `ca` needs the certificate itself, while the key list carries only its fingerprint (a
 * certificate renewed for the same key would otherwise pass as the pinned one). So the
 * connector turns off the chain check, which a pin replaces, and compares the SHA-256 of
 * the DER certificate the server presented in this handshake with the pins.
 *
 * @example
 *   const connection = new ServerConnection('https://10.0.0.1:6969')
 *   // keys.json over connection.keyListDispatcher, verified, then:
 *   connection.pin(pinsOf(keyList))
 *   await fetch(url, { dispatcher: connection.dispatcher })
 *   await connection.close()
 */
export class ServerConnection {
  readonly server: string
  readonly #https: boolean
  #pins: readonly string[] = []
  #pinned: { dispatcher: UndiciAgent; agent: PinnedHttpsAgent } | undefined
  #unverified: UndiciAgent | undefined
  #closed = false

  constructor(server: string) {
    this.server = server
    // A server that is no URL fails on its first request, as it did before this object.
    this.#https = URL.canParse(server) && new URL(server).protocol === 'https:'
  }

  /** The server is reached over HTTPS. */
  get https(): boolean {
    return this.#https
  }

  /** The certificates pinned (SHA-256, hex); empty until `pin`, and for plain HTTP. */
  get pins(): readonly string[] {
    return this.#pins
  }

  /** For fetch: the pinned connections, or undefined for Node's defaults. */
  get dispatcher(): FetchDispatcher | undefined {
    return this.#pinned ? asFetchDispatcher(this.#pinned.dispatcher) : undefined
  }

  /** For `node:https` requests (group keys): the pinned agent, or undefined. */
  get agent(): HttpsAgent | undefined {
    return this.#pinned?.agent
  }

  /**
   * For the key list and its signature only: HTTPS without a certificate check (the root
   * signature is the check); undefined over plain HTTP.
   */
  get keyListDispatcher(): FetchDispatcher | undefined {
    if (!this.#https || this.#closed) return undefined
    this.#unverified ??= new UndiciAgent({ connect: { rejectUnauthorized: false } })
    return asFetchDispatcher(this.#unverified)
  }

  /**
   * From now on, accepts only a server certificate whose SHA-256 is in `pins` (the verified
   * key list's). No pins: Node's CA check as before. Over plain HTTP, nothing changes.
   */
  pin(pins: readonly string[]): void {
    if (!this.#https || this.#closed || pins.length === 0) return
    if (this.#pinned && samePins(this.#pins, pins)) return
    void this.#pinned?.dispatcher.close().catch(() => {})
    this.#pinned?.agent.destroy()
    this.#pins = [...pins]
    const connect = (target: PinnedTarget, done: ConnectDone) =>
      connectPinned(target, this.#pins, this.server, done)
    this.#pinned = {
      dispatcher: new UndiciAgent({
        connect: (options, callback) =>
          connect(
            {
              host: options.hostname,
              port: Number(options.port) || 443,
              servername: options.servername ?? undefined,
            },
            (err, socket) => (err ? callback(err, null) : callback(null, socket as TLSSocket)),
          ),
      }),
      agent: new PinnedHttpsAgent(connect),
    }
  }

  /** Closes every connection this object opened. */
  async close(): Promise<void> {
    this.#closed = true
    const pinned = this.#pinned
    const unverified = this.#unverified
    this.#pinned = undefined
    this.#unverified = undefined
    pinned?.agent.destroy()
    await Promise.all([
      pinned?.dispatcher.close().catch(() => {}),
      unverified?.close().catch(() => {}),
    ])
  }
}

function samePins(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((pin) => b.includes(pin))
}

/**
 * undici's Agent, as fetch's `dispatcher`: the package's types and Node's bundled copy of
 * them (`undici-types`) describe the same class in two declarations TypeScript does not
 * equate; the object is what Node's own fetch expects.
 */
function asFetchDispatcher(agent: UndiciAgent): FetchDispatcher {
  return agent as unknown as FetchDispatcher
}

interface PinnedTarget {
  host: string
  port: number
  servername?: string | undefined
}

type ConnectDone = (err: Error | null, socket?: TLSSocket) => void

/**
 * A TLS connection to `target` that is handed over only once the certificate the server
 * presented in this handshake is one of `pins`; otherwise `E_TLS_PIN_MISMATCH`.
 */
function connectPinned(
  target: PinnedTarget,
  pins: readonly string[],
  server: string,
  done: ConnectDone,
): void {
  let settled = false
  const settle = (err: Error | null, socket?: TLSSocket) => {
    if (settled) return
    settled = true
    if (err) done(err)
    else done(null, socket)
  }
  // An IP address is not a server name (RFC 6066): Node warns when it is sent as one.
  const servername =
    target.servername && isIP(target.servername) === 0 ? target.servername : undefined
  const socket = connectTls({
    host: target.host,
    port: target.port,
    ...(servername ? { servername } : {}),
    // The pin below replaces the CA chain and name checks (see ServerConnection).
    rejectUnauthorized: false,
    ALPNProtocols: ['http/1.1'],
  })
  socket.setTimeout(TLS_CONNECT_TIMEOUT_MS, () =>
    socket.destroy(new Error(`TLS handshake not finished in ${TLS_CONNECT_TIMEOUT_MS / 1000} s`)),
  )
  socket.once('secureConnect', () => {
    socket.setTimeout(0)
    try {
      checkPinnedCertificate(socket.getPeerCertificate().raw, pins, server)
    } catch (err) {
      socket.destroy()
      settle(err as Error)
      return
    }
    settle(null, socket)
  })
  socket.once('error', (err) => settle(err))
}

/**
 * `node:https`'s agent over `connectPinned`: Node's Agent takes the socket from
 * createConnection's callback when the method returns none, so the request is written only
 * after the certificate checked out.
 */
class PinnedHttpsAgent extends HttpsAgent {
  readonly #connect: (target: PinnedTarget, done: ConnectDone) => void

  constructor(connect: (target: PinnedTarget, done: ConnectDone) => void) {
    super({ keepAlive: false })
    this.#connect = connect
  }

  override createConnection(
    options: ClientRequestArgs & { servername?: string },
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    this.#connect(
      {
        host: options.host ?? options.hostname ?? 'localhost',
        port: Number(options.port) || 443,
        servername: options.servername ?? options.host ?? undefined,
      },
      (err, socket) => callback?.(err, socket as Duplex),
    )
    return undefined
  }
}

/**
 * A request's failure as the final refusal it is, if it is one: a pin mismatch from the
 * connector, or a certificate Node's CA check refused (`E_TLS_UNTRUSTED`); undefined for
 * everything else (a refused or cut connection, worth another try).
 *
 * @example
 *   } catch (err) {
 *     const refusal = tlsRefusalOf(err, url)
 *     if (refusal) throw refusal
 */
export function tlsRefusalOf(err: unknown, url: string): ImageSwarmError | undefined {
  if (isImageSwarmError(err)) return err
  const cause = err instanceof Error ? err.cause : undefined
  if (isImageSwarmError(cause)) return cause
  for (const candidate of [cause, err]) {
    const code = (candidate as { code?: unknown } | undefined)?.code
    if (typeof code !== 'string' || !UNTRUSTED_CERTIFICATE_CODES.has(code)) continue
    return new ImageSwarmError(
      'E_TLS_UNTRUSTED',
      `${url}: the server's certificate is not trusted (${(candidate as Error).message}, ${code}), and the key list pins none`,
      {
        operation: 'check server certificate',
        path: url,
        hint: 'pin the server’s certificate in the key list (imageswarm key tls-pin --keys DIR --cert FILE) for nodes with a root key, or give the server a certificate a CA the node trusts signed (NODE_EXTRA_CA_CERTS=FILE adds one); a certificate that changed unannounced may be someone else’s',
        cause: candidate,
      },
    )
  }
  return undefined
}
