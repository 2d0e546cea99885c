import { setTimeout as sleep } from 'node:timers/promises'
import {
  archivePath,
  type ImageManifest,
  ImageSwarmError,
  isImageSwarmError,
  type Logger,
  serverUrl,
  silentLogger,
  WIRE,
} from '@imageswarm/core'
import type { ClientConfig } from './config.js'
import { fetchVerifiedManifest, loadImageTrust, type VerifiedImage } from './image-trust.js'
import {
  fetchInstallFile,
  fetchManifest,
  type ImageWait,
  PUBLISHING_WAIT_SECONDS,
  type ServerRequestOptions,
} from './server-api.js'
import { type FetchDispatcher, ServerConnection } from './server-connection.js'

/**
 * With several servers, each is given this long for its answer in the first round (and a
 * third of it, at least 1 s, without a byte: server-api's idle limit), twice as long in each
 * round after, up to MAX_ATTEMPT_SECONDS and the time left: a server that is down costs the
 * others a moment (a refused connection, at once; one that never answers, 1 s), and a slow
 * one, or a large .torrent, is given longer each round.
 */
const FIRST_ATTEMPT_SECONDS = 2
const MAX_ATTEMPT_SECONDS = 30

/** Between two rounds over the servers: 250 ms, doubling to 5 s (server-api's backoff). */
const FIRST_ROUND_DELAY_MS = 250
const MAX_ROUND_DELAY_MS = 5_000

/** A wait for the image is told when it starts, then every this long (as server-api's). */
const WAIT_NOTICE_INTERVAL_MS = 60_000

/** A request's settings, whichever server it goes to (the server and its connection aside). */
export type RequestSettings = Omit<ServerRequestOptions, 'server' | 'connection'>

/** What is asked of the servers, for the log and the errors. */
export interface Question {
  /** `manifest`, `.torrent`, `node config`, `override site`. */
  what: string
  /** The image it belongs to: a server that does not publish it yet is waited for. */
  image?: string
}

/** An answer, and the server that gave it. */
export interface Answered<T> {
  value: T
  server: string
}

/** The image's manifest from the first server that answered (see ImageServers.fetchImage). */
export interface ServedImage {
  manifest: ImageManifest
  /** With a trust root: what its signature was checked under. */
  verified?: VerifiedImage
  /** The server that gave it: the current server. */
  server: string
}

/** How one server answered a round (see outcomeOf). */
type OutcomeKind = 'unreachable' | 'unpublished' | 'publishing' | 'refused'

interface Outcome {
  kind: OutcomeKind
  error: ImageSwarmError
}

/**
 * The image servers a node was given (ClientConfig's `server`): a primary and its mirrors,
 * which serve the same signed image, each with its own tracker, seeder and web seed.
 *
 * Whatever the node asks of a server (the manifest, the .torrent, its node config, an
 * override) goes to the first that answers: the current server first, then the others in
 * the order given (`firstAnswer`). The current server is the one that answered last; the
 * manifest's server (`fetchImage`) starts it off. A server whose answer is refused (a
 * manifest that does not verify, a .torrent that does not match it) is left out from then
 * on: it is not asked again, nor trusted as a server in the swarm.
 *
 * One server is asked as before, with the retries and waits of server-api. Several are
 * asked in rounds, one attempt each (a refused connection moves on at once; a slow answer
 * is given 2 s in the first round, up to 30 s later), until one answers or the deadlines
 * of server-api run out for every one of them: `connectTimeoutSeconds` while none answers,
 * `imageTimeoutSeconds` while they answer that they do not publish the image, at least 2 h
 * while one is packing it.
 *
 * Each server has its own connections (ServerConnection), all pinned to the certificates
 * of the key list the manifest was verified under: the servers share one key list.
 *
 * @example
 *   const servers = new ImageServers(config.server, { logger })
 *   const { manifest, server } = await servers.fetchImage(config, { connectTimeoutSeconds: 30 })
 *   const torrent = await servers.firstAnswer({ what: '.torrent' }, settings, (request) =>
 *     fetchTorrent(manifest, request),
 *   )
 *   await servers.close()
 */
export class ImageServers {
  /** Every server given, in order, each once. */
  readonly urls: readonly string[]
  readonly #connections = new Map<string, ServerConnection>()
  /** Servers whose answer was refused, and why. */
  readonly #refused = new Map<string, ImageSwarmError>()
  readonly #logger: Logger
  #current: string

  constructor(urls: readonly string[], options: { logger?: Logger } = {}) {
    const unique = [...new Set(urls)]
    const [first] = unique
    if (first === undefined) throw new Error('ImageServers: no image server given')
    this.urls = unique
    this.#current = first
    this.#logger = options.logger ?? silentLogger()
    for (const url of unique) this.#connections.set(url, new ServerConnection(url))
  }

  /** The server that answered last (at first, the first given). */
  get current(): string {
    return this.#current
  }

  /** The servers not refused, the current one first, then the others in the order given. */
  get usable(): string[] {
    const rest = this.urls.filter((url) => url !== this.#current && !this.#refused.has(url))
    return this.#refused.has(this.#current) ? rest : [this.#current, ...rest]
  }

  /** The connections to `server` (one of `urls`). */
  connectionOf(server: string): ServerConnection {
    const connection = this.#connections.get(server)
    if (!connection)
      throw new Error(`ImageServers: ${server} is not one of ${this.urls.join(', ')}`)
    return connection
  }

  /** A request to `server` with `settings`, over its connections. */
  requestTo(server: string, settings: RequestSettings): ServerRequestOptions {
    return { ...settings, server, connection: this.connectionOf(server) }
  }

  /**
   * For the swarm's tracker and web seed requests over HTTPS: the current server's pinned
   * connections, else another's (they are pinned alike); undefined before a pin, or over HTTP.
   */
  get dispatcher(): FetchDispatcher | undefined {
    for (const server of [this.#current, ...this.urls]) {
      const dispatcher = this.#connections.get(server)?.dispatcher
      if (dispatcher) return dispatcher
    }
    return undefined
  }

  /** Pins every server's HTTPS certificate to `pins` (the verified key list's). */
  pin(pins: readonly string[]): void {
    for (const connection of this.#connections.values()) connection.pin(pins)
  }

  /**
   * The image's manifest from the first server that answers with one: with a trust root,
   * one whose key list and manifest verify (fetchVerifiedManifest), a server whose do not
   * being refused with a warning naming it and why, and the next asked. The server that
   * gave it becomes the current server; every server's connections are pinned to its key
   * list's certificates.
   */
  async fetchImage(config: ClientConfig, settings: RequestSettings): Promise<ServedImage> {
    const trust = await loadImageTrust(config, this.#logger)
    const { value, server } = await this.firstAnswer(
      { what: 'manifest', image: config.image },
      settings,
      async (request): Promise<Omit<ServedImage, 'server'>> => {
        if (!trust) return { manifest: await fetchManifest(config.image, request) }
        const verified = await fetchVerifiedManifest({
          image: config.image,
          root: trust.root,
          floor: trust.floor,
          request,
          logger: this.#logger,
        })
        return { manifest: verified.manifest, verified }
      },
    )
    const { verified } = value
    if (trust && verified) {
      this.pin(verified.pins)
      this.#logger.info(
        {
          image: verified.manifest.name,
          serial: verified.manifest.serial,
          expires: verified.manifest.expires,
          signingKey: verified.signingKeyId,
          rootKey: trust.root.publicKey.keyId,
          keyListVersion: verified.keyList.version,
          floor: trust.floor.reasons,
          seconds: Number(verified.seconds.toFixed(4)),
          ...(this.urls.length > 1 ? { server } : {}),
        },
        'image signature verified',
      )
    }
    return { ...value, server }
  }

  /**
   * `attempt` of the first server that answers, the current one first (see the class): the
   * server that answered becomes the current one. When every server has been refused, or
   * none answered in time, the error names each server and why, with the code of a refusal
   * if there was one (else the image unknown, still being published, the servers unreachable).
   */
  async firstAnswer<T>(
    question: Question,
    settings: RequestSettings,
    attempt: (request: ServerRequestOptions) => Promise<T>,
  ): Promise<Answered<T>> {
    const [only, ...others] = this.usable
    if (only === undefined) {
      const refusals = new Map<string, Outcome>()
      for (const [server, error] of this.#refused) refusals.set(server, { kind: 'refused', error })
      throw this.#noAnswer(question, refusals)
    }
    if (others.length === 0) {
      // One server: server-api's own retries and waits, and its errors as they are.
      const value = await attempt(this.requestTo(only, settings))
      this.#current = only
      return { value, server: only }
    }
    return this.#askInRounds(question, settings, attempt)
  }

  /**
   * A file the installer needs (see server-api's fetchInstallFile) from the first server
   * that answers; `body` undefined when that server does not have it (404).
   */
  async fetchInstallFile(
    path: string,
    what: string,
    limit: number,
    settings: RequestSettings,
  ): Promise<{ body: Buffer | undefined; url: string }> {
    const { value, server } = await this.firstAnswer({ what }, settings, (request) =>
      fetchInstallFile(path, what, limit, request),
    )
    return { body: value, url: serverUrl(server, path) }
  }

  /** Closes every server's connections. */
  async close(): Promise<void> {
    await Promise.all([...this.#connections.values()].map((connection) => connection.close()))
  }

  async #askInRounds<T>(
    question: Question,
    settings: RequestSettings,
    attempt: (request: ServerRequestOptions) => Promise<T>,
  ): Promise<Answered<T>> {
    const { signal } = settings
    const started = Date.now()
    const connectMs = settings.connectTimeoutSeconds * 1000
    const imageTimeoutMs = (settings.imageTimeoutSeconds ?? 0) * 1000
    const publishingMs = Math.max(
      imageTimeoutMs,
      (settings.publishingWaitSeconds ?? PUBLISHING_WAIT_SECONDS) * 1000,
    )
    // As server-api's: the connect budget runs from the start, or from the last answer that
    // was part of a bounded wait (a server is up and publishing).
    let budgetFrom = started
    let until = started + connectMs
    let noticeAt: number | undefined
    const outcomes = new Map<string, Outcome>()
    const warned = new Set<string>()
    for (let round = 1; ; round++) {
      const seconds = Math.max(
        1,
        Math.min(
          FIRST_ATTEMPT_SECONDS * 2 ** (round - 1),
          MAX_ATTEMPT_SECONDS,
          Math.ceil((until - Date.now()) / 1000),
        ),
      )
      // One attempt each: a wait for the image (404, 503 publishing) is this loop's to do,
      // across the servers, not one server's.
      const once: RequestSettings = {
        connectTimeoutSeconds: seconds,
        imageTimeoutSeconds: 0,
        publishingWaitSeconds: 0,
        retry: false,
        ...(signal ? { signal } : {}),
      }
      for (const server of this.usable) {
        try {
          const value = await attempt(this.requestTo(server, once))
          this.#current = server
          return { value, server }
        } catch (err) {
          if (signal?.aborted) throw signal.reason ?? err
          if (!isImageSwarmError(err)) throw err
          const outcome: Outcome = { kind: outcomeOf(err), error: err }
          outcomes.set(server, outcome)
          if (outcome.kind === 'publishing' || outcome.kind === 'unpublished') {
            budgetFrom = Date.now()
          }
          this.#report(question, server, outcome, warned)
        }
      }
      const waiting = this.#waitUntil(outcomes, {
        connect: budgetFrom + connectMs,
        unpublished: started + imageTimeoutMs,
        publishing: started + publishingMs,
      })
      if (waiting === undefined) throw this.#noAnswer(question, outcomes)
      until = waiting.until
      if (question.image !== undefined && waiting.reason !== undefined) {
        const now = Date.now()
        if (noticeAt === undefined || now - noticeAt >= WAIT_NOTICE_INTERVAL_MS) {
          noticeAt = now
          settings.onWait?.({
            reason: waiting.reason,
            image: question.image,
            waitedSeconds: Math.round((now - started) / 1000),
            limitSeconds: (waiting.reason === 'publishing' ? publishingMs : imageTimeoutMs) / 1000,
          } satisfies ImageWait)
        }
      }
      const delayMs = Math.min(
        FIRST_ROUND_DELAY_MS * 2 ** (round - 1),
        MAX_ROUND_DELAY_MS,
        Math.max(until - Date.now(), 0),
      )
      await sleep(delayMs, undefined, signal ? { signal } : {}).catch((err) => {
        throw signal?.reason ?? err
      })
    }
  }

  /** Says what a server's failed attempt means: a refusal always, the rest once. */
  #report(question: Question, server: string, outcome: Outcome, warned: Set<string>): void {
    const { error } = outcome
    if (outcome.kind === 'refused') {
      this.#refused.set(server, error)
      this.#logger.warn(
        { server, code: error.code, err: error.message, what: question.what },
        `image server ${server} refused: its ${question.what} (${error.code}: ${error.message}); asking the other servers`,
      )
      return
    }
    const level = warned.has(server) ? 'debug' : 'warn'
    warned.add(server)
    const why =
      outcome.kind === 'unreachable'
        ? 'does not answer'
        : outcome.kind === 'publishing'
          ? 'is still publishing the image'
          : 'does not publish the image (yet)'
    this.#logger[level](
      { server, code: error.code, err: error.message, what: question.what },
      `image server ${server} ${why}; asking the other servers`,
    )
  }

  /**
   * Until when another round is worth it, and whether it waits for the image, given how
   * each server answered last; undefined when no deadline is left for any of them.
   */
  #waitUntil(
    outcomes: ReadonlyMap<string, Outcome>,
    deadlines: { connect: number; unpublished: number; publishing: number },
  ): { until: number; reason?: ImageWait['reason'] } | undefined {
    const now = Date.now()
    const kinds = new Set(this.usable.map((server) => outcomes.get(server)?.kind))
    let until: number | undefined
    let reason: ImageWait['reason'] | undefined
    const keep = (kind: OutcomeKind, deadline: number, wait?: ImageWait['reason']) => {
      if (!kinds.has(kind) || deadline <= now) return
      until = Math.max(until ?? deadline, deadline)
      reason ??= wait
    }
    keep('publishing', deadlines.publishing, 'publishing')
    keep('unpublished', deadlines.unpublished, 'unpublished')
    keep('unreachable', deadlines.connect)
    if (until === undefined) return undefined
    return reason === undefined ? { until } : { until, reason }
  }

  /** Every server refused, or none answered in time: one error naming each and why. */
  #noAnswer(question: Question, outcomes: ReadonlyMap<string, Outcome>): ImageSwarmError {
    const all = [...outcomes.values()]
    const chosen =
      all.find((outcome) => outcome.kind === 'refused') ??
      all.find((outcome) => outcome.kind === 'unpublished') ??
      all.find((outcome) => outcome.kind === 'publishing') ??
      all[0]
    if (!chosen) throw new Error(`ImageServers: no server asked for the ${question.what}`)
    const each = [...outcomes.entries()]
      .map(([server, { error }]) => `${server}: ${error.code}: ${error.message}`)
      .join('; ')
    const summary =
      chosen.kind === 'refused'
        ? `no image server gave a ${question.what} this node accepts`
        : `no image server answered with the ${question.what}`
    const { operation, path, hint } = chosen.error
    return new ImageSwarmError(chosen.error.code, `${summary} (${each})`, {
      ...(operation === undefined ? {} : { operation }),
      ...(path === undefined ? {} : { path }),
      ...(hint === undefined ? {} : { hint }),
      cause: chosen.error,
    })
  }
}

/** What a failed attempt says about its server (server-api's codes). */
function outcomeOf(error: ImageSwarmError): OutcomeKind {
  switch (error.code) {
    case 'E_SERVER_UNREACHABLE':
      return 'unreachable'
    case 'E_UNKNOWN_IMAGE':
      return 'unpublished'
    case 'E_IMAGE_PUBLISHING':
      return 'publishing'
    default:
      return 'refused'
  }
}

/** What the swarm is told of the servers: every tracker, and every web seed. */
export interface SwarmSources {
  announce: string[]
  urlList: string[]
  /** The web seeds of `urlList` that are the image servers' own (trusted as the server). */
  serverWebSeeds: string[]
}

/**
 * Every server in the swarm: the trackers are the torrent's announce URLs and each server's
 * `/announce`; the web seeds each server's archive URL (`servers` in order: the current
 * server first), then the torrent's url-list entries not among them. Each once. Only the
 * servers' own web seeds are trusted as the server: the url-list is outside the infohash,
 * and a server lists there whatever registered with it as a mirror.
 *
 * @example
 *   swarmSourcesOf({ announce: ['http://a:6969/announce'], urlList: [] }, ['http://a:6969', 'http://b:6969'], manifest)
 *   // { announce: ['http://a:6969/announce', 'http://b:6969/announce'],
 *   //   urlList: ['http://a:6969/images/node/image-node.tar.zst', 'http://b:6969/images/node/…'] }
 */
export function swarmSourcesOf(
  torrent: { announce: readonly string[]; urlList: readonly string[] },
  servers: readonly string[],
  manifest: Pick<ImageManifest, 'name' | 'archiveFile'>,
): SwarmSources {
  const path = archivePath(manifest.name, manifest.archiveFile)
  const serverWebSeeds = [...new Set(servers.map((server) => serverUrl(server, path)))]
  return {
    announce: [
      ...new Set([
        ...torrent.announce,
        ...servers.map((server) => serverUrl(server, WIRE.announce)),
      ]),
    ],
    urlList: [...new Set([...serverWebSeeds, ...torrent.urlList])],
    serverWebSeeds,
  }
}
