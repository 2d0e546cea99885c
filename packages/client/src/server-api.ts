import { setTimeout as sleep } from 'node:timers/promises'
import {
  type ImageManifest,
  ImageSwarmError,
  manifestPath,
  parseManifest,
  serverUrl,
  torrentPath,
} from '@imageswarm/core'
import parseTorrent, { type ParsedTorrent } from 'parse-torrent'
import { formatMiB } from './disk-space.js'
import { BodyTooLarge, parseRetryAfter, readBody } from './http-answer.js'
import { type FetchDispatcher, type ServerConnection, tlsRefusalOf } from './server-connection.js'

/**
 * The largest manifest the client reads. A manifest is a few hundred bytes of JSON; a body
 * beyond this is not one, and reading it whole is what let a 700 MB answer take the
 * client to 1.5–2.7 GB.
 */
export const MANIFEST_SIZE_LIMIT = 1024 * 1024

/** The largest error body (`{"error":{...}}`) read from a refusal; beyond it, ignored. */
const ERROR_BODY_LIMIT = 64 * 1024

/** Server-supplied text shown to the operator (an error's message or hint) is cut here. */
const SERVER_TEXT_LIMIT = 500

/** What a `.torrent` holds besides its piece hashes (name, announce, web seed, keys). */
const TORRENT_OVERHEAD = 64 * 1024

/**
 * The largest `.torrent` the client reads whatever the manifest says: 3.3 million
 * pieces, a 3.2 TiB archive in the server's default 1 MiB pieces (51 GiB in its
 * smallest, 16 KiB). It bounds what a hostile manifest can make the client buffer.
 */
const TORRENT_SIZE_CEILING = 64 * 1024 * 1024

/**
 * How long to keep asking while the server answers that it is still publishing the
 * image, at least (longer when `imageTimeoutSeconds` is): packing a multi-GB image
 * takes minutes; two hours covers a large one on a slow disk, and a server stuck longer
 * than that needs an operator.
 */
export const PUBLISHING_WAIT_SECONDS = 2 * 60 * 60

/** What a wait is for is said once, then every this long, so a console shows it is alive. */
const WAIT_NOTICE_INTERVAL_MS = 60_000

/** Bounds on the server's Retry-After while it publishes: not hammered, never asleep for long. */
const RETRY_AFTER_MIN_MS = 1000
const RETRY_AFTER_MAX_MS = 60_000

/** Polling for an image that is not published yet: 1 s, doubling to this. */
const UNPUBLISHED_POLL_MAX_MS = 10_000

export interface ServerRequestOptions {
  server: string
  /**
   * How long to keep trying while the server cannot be reached, stalls or answers 5xx:
   * counted from the start, or from the last answer of a wait below.
   */
  connectTimeoutSeconds: number
  /** How long to wait for an image the server does not publish (404); 0 fails at once. */
  imageTimeoutSeconds?: number
  /** How long to wait, at least, for an image the server is still publishing (503
   * E_IMAGE_PUBLISHING); default PUBLISHING_WAIT_SECONDS, longer if imageTimeoutSeconds is. */
  publishingWaitSeconds?: number
  signal?: AbortSignal
  /**
   * `false`: one attempt; what would be tried again (no connection, a stall, a 5xx) is
   * E_SERVER_UNREACHABLE at once, so that another image server can be asked meanwhile
   * (ImageServers). Default: tried again until `connectTimeoutSeconds`.
   */
  retry?: boolean
  onRetry?: (attempt: number, error: unknown) => void
  /** Called when a wait for the image starts, then about once a minute while it lasts. */
  onWait?: (wait: ImageWait) => void
  /**
   * The server's connections (HTTPS with the certificate the verified key list pins, once
   * it is pinned); without one, Node's fetch as is.
   */
  connection?: ServerConnection
  /**
   * The body is the key list or its signature, which the root signature vouches for: over
   * HTTPS it is fetched without a certificate check (it carries the pin; see
   * ServerConnection). Never set for anything else.
   */
  verifiedBySignature?: boolean
}

/** The client is waiting for the server to publish an image. */
export interface ImageWait {
  /** `publishing`: the server is packing it (503 E_IMAGE_PUBLISHING); `unpublished`: 404. */
  reason: 'publishing' | 'unpublished'
  image: string
  /** What the server said, if anything. */
  message?: string
  waitedSeconds: number
  /** The longest the wait may last in all. */
  limitSeconds: number
}

/** The server's JSON refusal: `{"error":{"code","message","hint"}}`. */
interface ServerRefusal {
  code?: string
  message?: string
  hint?: string
}

/** A failure worth another attempt: no connection, a stalled or cut body, a 5xx. */
class TransientFailure extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message)
  }
}

interface Answer {
  response: Response
  body: Buffer
}

/** A 404 for a file that may be absent (`fetchInstallFile`): not an error of its own. */
class Absent extends Error {}

/**
 * GETs a path from the image server and reads its body, bounded by `limit`.
 *
 * - No connection, no answer, a body that stalls or is cut short, a 5xx or 429: retried with
 *   backoff until `connectTimeoutSeconds` (a node may boot before the server is up);
 *   then E_SERVER_UNREACHABLE. An attempt that receives nothing for a third of that
 *   (1–10 s) is given up.
 * - 503 with E_IMAGE_PUBLISHING: asked again after its Retry-After, for at most
 *   max(imageTimeoutSeconds, 2 h); then E_IMAGE_PUBLISHING.
 * - 404: E_UNKNOWN_IMAGE, at once unless `imageTimeoutSeconds` says to wait for it.
 * - A body over `limit`: `tooLarge`'s error, at once.
 */
async function fetchFromServer(
  path: string,
  image: string,
  limit: number,
  tooLarge: (error: BodyTooLarge, url: string) => ImageSwarmError,
  options: ServerRequestOptions & { notFound?: 'unknown image' | 'absent' },
): Promise<Answer> {
  const url = serverUrl(options.server, path)
  const started = Date.now()
  const connectMs = options.connectTimeoutSeconds * 1000
  const imageTimeoutMs = (options.imageTimeoutSeconds ?? 0) * 1000
  const publishingLimitMs = Math.max(
    imageTimeoutMs,
    (options.publishingWaitSeconds ?? PUBLISHING_WAIT_SECONDS) * 1000,
  )
  const idleMs = Math.min(10_000, Math.max(1000, connectMs / 3))
  // The connect budget runs from the start, or from the last answer that was part of a
  // bounded wait (the server is up and publishing): a server restarted after a long wait
  // gets the whole budget again. A 5xx does not renew it, so a broken server ends it.
  let budgetFrom = started
  let attempt = 0
  let unpublishedPolls = 0
  let lastError: unknown
  let waitNoticeAt: number | undefined
  const notice = (wait: Omit<ImageWait, 'waitedSeconds' | 'image'>) => {
    const now = Date.now()
    if (waitNoticeAt !== undefined && now - waitNoticeAt < WAIT_NOTICE_INTERVAL_MS) return
    waitNoticeAt = now
    options.onWait?.({ ...wait, image, waitedSeconds: Math.round((now - started) / 1000) })
  }
  /** The server is packing the image: how long to wait before asking again. */
  const whilePublishing = (response: Response, refusal: ServerRefusal): number => {
    const waited = Date.now() - started
    if (waited >= publishingLimitMs) {
      throw new ImageSwarmError(
        'E_IMAGE_PUBLISHING',
        `the image server was still publishing image ${image} after ${Math.round(waited / 1000)} s`,
        {
          operation: `GET ${path}`,
          path: url,
          hint: 'see the server’s log: packing an image should not take this long; a longer --image-timeout waits longer',
        },
      )
    }
    notice({
      reason: 'publishing',
      ...(refusal.message ? { message: refusal.message } : {}),
      limitSeconds: publishingLimitMs / 1000,
    })
    budgetFrom = Date.now()
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after')) ?? 5000
    return Math.min(
      Math.max(retryAfterMs, RETRY_AFTER_MIN_MS),
      RETRY_AFTER_MAX_MS,
      Math.max(started + publishingLimitMs - Date.now(), 0),
    )
  }
  /** The server does not publish the image: fail, or how long to wait before asking again. */
  const whileUnpublished = (refusal: ServerRefusal | undefined): number => {
    const waited = Date.now() - started
    if (waited >= imageTimeoutMs) {
      throw new ImageSwarmError(
        'E_UNKNOWN_IMAGE',
        (refusal?.message ?? `the server does not publish image ${image}`) +
          (imageTimeoutMs > 0 ? ` (waited ${Math.round(waited / 1000)} s for it)` : ''),
        {
          operation: `GET ${path}`,
          path: url,
          hint:
            refusal?.hint ??
            'check the image name (IMAGENAME= / --image) and that the server publishes it',
        },
      )
    }
    notice({
      reason: 'unpublished',
      ...(refusal?.message ? { message: refusal.message } : {}),
      limitSeconds: imageTimeoutMs / 1000,
    })
    budgetFrom = Date.now()
    return Math.min(
      1000 * 2 ** unpublishedPolls++,
      UNPUBLISHED_POLL_MAX_MS,
      Math.max(started + imageTimeoutMs - Date.now(), 0),
    )
  }
  while (true) {
    attempt++
    let delayMs: number
    try {
      const deadline = Math.max(budgetFrom + connectMs, Date.now() + idleMs)
      const answer = await getOnce(
        url,
        limit,
        idleMs,
        deadline,
        options.signal,
        dispatcherFor(options),
      )
      const { response } = answer
      if (response.ok) return answer
      const refusal = parseRefusal(answer.body)
      if (response.status === 503 && refusal?.code === 'E_IMAGE_PUBLISHING') {
        delayMs = whilePublishing(response, refusal)
      } else if (response.status === 404) {
        if (options.notFound === 'absent') throw new Absent(url)
        delayMs = whileUnpublished(refusal)
      } else if (response.status >= 500 || response.status === 429) {
        throw new TransientFailure(
          `HTTP ${response.status}${refusal?.message ? `: ${refusal.message}` : ''}`,
          parseRetryAfter(response.headers.get('retry-after')),
        )
      } else {
        throw new ImageSwarmError(
          'E_SERVER_RESPONSE',
          `GET ${path}: HTTP ${response.status}${refusal?.message ? `: ${refusal.message}` : ''}`,
          { operation: `GET ${path}`, path: url, hint: refusal?.hint ?? 'see the server’s log' },
        )
      }
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err
      if (err instanceof BodyTooLarge) throw tooLarge(err, url)
      if (err instanceof ImageSwarmError || err instanceof Absent) throw err
      lastError = err
      const deadline = budgetFrom + connectMs
      if (options.retry === false || Date.now() + 250 >= deadline) break
      options.onRetry?.(attempt, err)
      const backoffMs = Math.min(250 * 2 ** (attempt - 1), 5000)
      const retryAfterMs = err instanceof TransientFailure ? err.retryAfterMs : undefined
      delayMs = Math.min(retryAfterMs ?? backoffMs, Math.max(deadline - Date.now(), 0))
    }
    await sleep(delayMs, undefined, options.signal ? { signal: options.signal } : {}).catch(
      (err) => {
        throw options.signal?.reason ?? err
      },
    )
  }
  throw new ImageSwarmError(
    'E_SERVER_UNREACHABLE',
    `image server ${options.server} did not answer within ${options.connectTimeoutSeconds} s (${describe(lastError)})`,
    {
      operation: `GET ${path}`,
      path: url,
      hint: 'check IMAGESERVER / --server, that `imageswarm serve` runs there, and the network',
      cause: lastError,
    },
  )
}

/** The connections a request goes over: see ServerRequestOptions.connection. */
function dispatcherFor(options: ServerRequestOptions): FetchDispatcher | undefined {
  const { connection } = options
  if (!connection) return undefined
  return options.verifiedBySignature ? connection.keyListDispatcher : connection.dispatcher
}

/**
 * One GET, with its body read up to `limit` bytes (an error status's up to
 * ERROR_BODY_LIMIT, else ignored). Given up as a TransientFailure when nothing arrives
 * for `idleMs` or the whole answer has not arrived by `deadline`.
 */
async function getOnce(
  url: string,
  limit: number,
  idleMs: number,
  deadline: number,
  signal: AbortSignal | undefined,
  dispatcher: FetchDispatcher | undefined,
): Promise<Answer> {
  const controller = new AbortController()
  let received = 0
  let expected: number | undefined
  const progress = () =>
    received === 0 && expected === undefined
      ? 'no answer'
      : `${received}${expected === undefined ? '' : ` of ${expected}`} bytes of the body received`
  let idle: NodeJS.Timeout | undefined
  const resetIdle = () => {
    clearTimeout(idle)
    idle = setTimeout(
      () => controller.abort(new TransientFailure(`stalled: ${progress()} in ${idleMs / 1000} s`)),
      idleMs,
    )
  }
  const overall = setTimeout(
    () => controller.abort(new TransientFailure(`unfinished at the deadline: ${progress()}`)),
    Math.max(deadline - Date.now(), 0),
  )
  const onAbort = () => controller.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, { once: true })
  resetIdle()
  try {
    const response = await fetch(url, {
      signal: controller.signal,
      ...(dispatcher ? { dispatcher } : {}),
    })
    const declared = Number(response.headers.get('content-length') ?? Number.NaN)
    if (Number.isSafeInteger(declared)) expected = declared
    resetIdle()
    try {
      const body = await readBody(response, response.ok ? limit : ERROR_BODY_LIMIT, (bytes) => {
        received += bytes
        resetIdle()
      })
      return { response, body }
    } catch (err) {
      // An error status's body over its limit is ignored, not an error of its own.
      if (err instanceof BodyTooLarge && !response.ok) return { response, body: Buffer.alloc(0) }
      throw err
    }
  } catch (err) {
    if (err instanceof BodyTooLarge) throw err
    // A certificate the pin or the CA store refuses: final, another try would not change it.
    const refusal = tlsRefusalOf(err, url)
    if (refusal) throw refusal
    const reason = controller.signal.aborted ? controller.signal.reason : undefined
    if (reason instanceof TransientFailure) throw reason
    if (signal?.aborted) throw signal.reason ?? err
    // A refused or reset connection, or a body cut short ("terminated"): worth another try.
    throw new TransientFailure(
      received > 0 || expected !== undefined
        ? `connection lost: ${progress()} (${describe(err)})`
        : describe(err),
    )
  } finally {
    clearTimeout(idle)
    clearTimeout(overall)
    signal?.removeEventListener('abort', onAbort)
  }
}

/** The server's `{"error":{...}}`, its text made safe to show; undefined if it is not one. */
function parseRefusal(body: Buffer): ServerRefusal | undefined {
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  const error = (value as { error?: unknown } | null)?.error
  if (typeof error !== 'object' || error === null) return undefined
  const field = (name: string) => {
    const text = (error as Record<string, unknown>)[name]
    return typeof text === 'string' ? sanitizeServerText(text) : undefined
  }
  const refusal: ServerRefusal = {}
  const code = field('code')
  const message = field('message')
  const hint = field('hint')
  if (code !== undefined) refusal.code = code
  if (message !== undefined) refusal.message = message
  if (hint !== undefined) refusal.hint = hint
  return refusal
}

/**
 * Text from the server goes to the operator's console: control characters (a terminal's
 * escape sequences) are dropped and it is cut to a few lines.
 */
function sanitizeServerText(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim()
  return clean.length > SERVER_TEXT_LIMIT ? `${clean.slice(0, SERVER_TEXT_LIMIT)}…` : clean
}

/**
 * GETs a file the installer needs besides the image (`/install/node.json`, an override's
 * tar, a post-install script: core's INSTALL_PATHS), with the same retries as the
 * manifest; undefined when the server answers 404 (an older server, an override that does
 * not exist). A body over `limit` bytes is E_SERVER_RESPONSE, naming `what`.
 *
 * @example
 *   const body = await fetchInstallFile(INSTALL_PATHS.node + query, 'node config', 1 << 20, request)
 */
export async function fetchInstallFile(
  path: string,
  what: string,
  limit: number,
  options: ServerRequestOptions,
): Promise<Buffer | undefined> {
  try {
    const { body } = await fetchFromServer(
      path,
      what,
      limit,
      (error, url) =>
        new ImageSwarmError(
          'E_SERVER_RESPONSE',
          `the server's ${what} is larger than ${formatMiB(error.limit)}${error.declared === undefined ? '' : ` (it announced ${error.declared} bytes)`}`,
          {
            operation: `GET ${path}`,
            path: url,
            hint: `the installer reads at most ${formatMiB(error.limit)} of it: make it smaller on the server`,
          },
        ),
      { ...options, notFound: 'absent' },
    )
    return body
  } catch (err) {
    if (err instanceof Absent) return undefined
    throw err
  }
}

/**
 * The manifest file's bytes as the server sent them, unparsed: what a signature covers
 * (`verifySignedManifest` checks them before they are parsed), and where they came from.
 */
export async function fetchManifestFile(
  image: string,
  options: ServerRequestOptions,
): Promise<{ bytes: Buffer; url: string }> {
  const { response, body } = await fetchFromServer(
    manifestPath(image),
    image,
    MANIFEST_SIZE_LIMIT,
    (error, url) =>
      new ImageSwarmError(
        'E_MANIFEST_INVALID',
        `the manifest of ${image} is larger than ${formatMiB(error.limit)} (the limit for a manifest${error.declared === undefined ? '' : `; the server announced ${error.declared} bytes`})`,
        {
          operation: 'read manifest',
          path: url,
          hint: 'a manifest is a few hundred bytes: check that --server / IMAGESERVER points at an imageswarm server',
        },
      ),
    options,
  )
  return { bytes: body, url: response.url }
}

export async function fetchManifest(
  image: string,
  options: ServerRequestOptions,
): Promise<ImageManifest> {
  const { bytes: body, url } = await fetchManifestFile(image, options)
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw new ImageSwarmError('E_MANIFEST_INVALID', `the manifest of ${image} is not JSON`, {
      operation: 'read manifest',
      path: url,
      hint: 'check that --server / IMAGESERVER points at an imageswarm server, or republish the image',
      cause: err,
    })
  }
  const manifest = parseManifest(value, url)
  if (manifest.name !== image) {
    throw new ImageSwarmError(
      'E_MANIFEST_INVALID',
      `asked for image ${image}, got the manifest of ${manifest.name}`,
      { path: url, hint: 'the server answered for another image; check its setup' },
    )
  }
  return manifest
}

/**
 * The largest `.torrent` that can describe the manifest's archive: 20 bytes of SHA-1 per
 * piece plus 64 KiB for everything else, never more than 64 MiB.
 *
 * @example torrentSizeLimit({ size: 80 * 2 ** 20, pieceLength: 2 ** 20 }) // 1600 + 65536
 */
export function torrentSizeLimit(manifest: Pick<ImageManifest, 'size' | 'pieceLength'>): number {
  const pieces = Math.ceil(manifest.size / manifest.pieceLength)
  return Math.min(pieces * 20 + TORRENT_OVERHEAD, TORRENT_SIZE_CEILING)
}

/**
 * Fetches the image's `.torrent` and checks it describes the archive in the manifest:
 * same infohash, name, size and piece length. Anything else is refused before a byte
 * of the archive is downloaded.
 */
export async function fetchTorrent(
  manifest: ImageManifest,
  options: ServerRequestOptions,
  /** Another torrent of the image than its own (a delta's, beside the archive). */
  path: string = torrentPath(manifest.name),
): Promise<ParsedTorrent> {
  const limit = torrentSizeLimit(manifest)
  const { response, body } = await fetchFromServer(
    path,
    manifest.name,
    limit,
    (error, url) =>
      new ImageSwarmError(
        'E_TORRENT_MISMATCH',
        `the .torrent of ${manifest.name} is larger than ${limit} bytes, the most a .torrent of its ${Math.ceil(manifest.size / manifest.pieceLength)} pieces can be${error.declared === undefined ? '' : ` (the server announced ${error.declared} bytes)`}`,
        {
          operation: 'read .torrent',
          path: url,
          hint: 'the server’s .torrent does not belong to its manifest; republish the image (--update-image)',
        },
      ),
    options,
  )
  let parsed: ParsedTorrent
  try {
    parsed = await parseTorrent(new Uint8Array(body.buffer, body.byteOffset, body.byteLength))
  } catch (err) {
    throw new ImageSwarmError('E_TORRENT_MISMATCH', `the .torrent of ${manifest.name} is invalid`, {
      path: response.url,
      hint: 'republish the image on the server (--update-image)',
      cause: err,
    })
  }
  const mismatches: string[] = []
  if (parsed.infoHash !== manifest.infoHash) {
    mismatches.push(`infohash ${parsed.infoHash} ≠ ${manifest.infoHash}`)
  }
  if (parsed.length !== manifest.size) mismatches.push(`size ${parsed.length} ≠ ${manifest.size}`)
  if (parsed.name !== manifest.archiveFile) {
    mismatches.push(`name ${parsed.name} ≠ ${manifest.archiveFile}`)
  }
  if (parsed.pieceLength !== manifest.pieceLength) {
    mismatches.push(`piece length ${parsed.pieceLength} ≠ ${manifest.pieceLength}`)
  }
  if (parsed.files.length !== 1) mismatches.push(`${parsed.files.length} files, expected 1`)
  if (mismatches.length > 0) {
    throw new ImageSwarmError(
      'E_TORRENT_MISMATCH',
      `the .torrent does not match the manifest of ${manifest.name}: ${mismatches.join('; ')}`,
      {
        operation: 'check .torrent',
        path: response.url,
        hint: 'the server has a stale .torrent or manifest; republish with --update-image',
      },
    )
  }
  return parsed
}

function describe(err: unknown): string {
  if (err instanceof TransientFailure) return err.message
  if (err instanceof Error) {
    // fetch's own errors say little ("fetch failed"); the socket's, in `cause`, say what.
    const cause = (err as { cause?: { code?: string; message?: string } }).cause
    if (cause?.code && cause.message && !cause.message.includes(cause.code)) {
      return `${cause.message} (${cause.code})`
    }
    return cause?.code ?? cause?.message ?? err.message
  }
  return String(err)
}
