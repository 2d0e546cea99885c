import { lookup } from 'node:dns/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Logger, type ServerDescription, serverUrl, WIRE } from '@imageswarm/core'
import { readBody } from './http-answer.js'
import type { ServerConnection } from './server-connection.js'

/** `/server.json` is a few dozen bytes; a body beyond this is not one. */
const DESCRIPTION_SIZE_LIMIT = 4096
/** Asking is worth a few tries (the manifest came from the same server a moment ago),
 * not a wait: without an answer the install goes on without a trusted server peer. */
const ATTEMPTS = 3
const ATTEMPT_TIMEOUT_MS = 5_000
const RETRY_MS = 1_000
/**
 * With several image servers, how long their seeders are looked for, together: each one's
 * first attempt and a retry. The swarm starts once every one answered or this is up; a
 * server that has not said by then (down, or its network lost) is left out of it.
 */
export const LOCATE_SEEDERS_MS = 7_000

/** The image server's seeder: an IP address and the port it publishes. */
export interface SeederEndpoint {
  host: string
  port: number
}

/**
 * Where the image server's seeder listens: the server's host, resolved to an IP address,
 * and the BitTorrent port it publishes at `GET /server.json`. The swarm dials that address
 * and treats the connection it opened there, and no other, as the image server (a peer
 * id's prefix proves nothing). Undefined, with a warning, when the server does not say (an
 * older server) or cannot be asked: the install goes on, with no BitTorrent peer trusted
 * as the server; its web seed still is.
 */
export async function locateServerSeeder(
  server: string,
  logger: Logger,
  connection?: ServerConnection,
  /** Stops looking: the server is then left out, as one that does not say. */
  signal?: AbortSignal,
): Promise<SeederEndpoint | undefined> {
  const url = serverUrl(server, WIRE.server)
  let lastError: unknown
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    try {
      const port = await fetchSeederPort(url, connection, signal)
      const hostname = new URL(server).hostname.replace(/^\[|\]$/g, '')
      const { address } = await lookup(hostname)
      if (signal?.aborted) throw signal.reason
      return { host: address, port }
    } catch (err) {
      lastError = err
      if (err instanceof FinalAnswer || signal?.aborted) break
      if (attempt < ATTEMPTS)
        await sleep(RETRY_MS, undefined, signal ? { signal } : {}).catch(() => {})
    }
  }
  logger.warn(
    { url, err: String(lastError) },
    `the image server ${server} does not say where its seeder listens; no BitTorrent peer is trusted as the server`,
  )
  return undefined
}

/**
 * The seeders of every image server (see locateServerSeeder), asked at once: one server is
 * asked as before; several are given LOCATE_SEEDERS_MS together, and one that has not said
 * by then is left out with a warning. Two servers at the same address give one endpoint.
 */
export async function locateServerSeeders(
  servers: readonly string[],
  logger: Logger,
  connectionOf: (server: string) => ServerConnection | undefined = () => undefined,
): Promise<SeederEndpoint[]> {
  const [only] = servers
  if (servers.length === 1 && only !== undefined) {
    const endpoint = await locateServerSeeder(only, logger, connectionOf(only))
    return endpoint ? [endpoint] : []
  }
  const signal = AbortSignal.timeout(LOCATE_SEEDERS_MS)
  const found = await Promise.all(
    servers.map((server) => locateServerSeeder(server, logger, connectionOf(server), signal)),
  )
  const endpoints = new Map<string, SeederEndpoint>()
  for (const endpoint of found) {
    if (endpoint) endpoints.set(`${endpoint.host}:${endpoint.port}`, endpoint)
  }
  return [...endpoints.values()]
}

async function fetchSeederPort(
  url: string,
  connection: ServerConnection | undefined,
  signal: AbortSignal | undefined,
): Promise<number> {
  const dispatcher = connection?.dispatcher
  const timeout = AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)
  const response = await fetch(url, {
    signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
    ...(dispatcher ? { dispatcher } : {}),
  })
  const text = (await readBody(response, DESCRIPTION_SIZE_LIMIT)).toString('utf8')
  // 4xx: the server does not publish it (one older than /server.json); 5xx: ask again.
  if (response.status >= 400 && response.status < 500) {
    throw new FinalAnswer(`HTTP ${response.status}`)
  }
  if (!response.ok) throw new Error(`HTTP ${response.status}`)
  let port: unknown
  try {
    port = (JSON.parse(text) as Partial<ServerDescription>).seeder?.port
  } catch {
    throw new FinalAnswer(`not JSON: ${text.slice(0, 100)}`)
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new FinalAnswer(`no seeder port in ${text.slice(0, 100)}`)
  }
  return port
}

/** An answer that asking again would not change. */
class FinalAnswer extends Error {}
