import { open, stat } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  errnoOf,
  type ImageManifest,
  ImageSwarmError,
  type InstallEvent,
  type Logger,
  type TransferTotals,
} from '@imageswarm/core'
import { parseRetryAfter } from './http-answer.js'
import { type ServerConnection, tlsRefusalOf } from './server-connection.js'

/** Progress is emitted this often, as the swarm session does. */
const PROGRESS_INTERVAL_MS = 1000

/** An attempt that receives nothing for this long is given up and resumed (as server-api's). */
const ATTEMPT_IDLE_MS = 10_000

export interface HttpDownloadOptions {
  /** The archive's URL on the image server (the web seed's route). */
  url: string
  /** Where the archive goes (staging or the cache); what is there already is resumed. */
  path: string
  manifest: ImageManifest
  /** Give up when no byte arrives for this long, across attempts. */
  stallTimeoutSeconds: number
  logger: Logger
  emit: (event: InstallEvent) => void
  signal?: AbortSignal
  /** The image server's connections (pinned HTTPS); without one, Node's fetch as is. */
  connection?: ServerConnection
}

/** A failure worth resuming: no connection, a cut or stalled body, a 5xx or 429. */
class Interrupted extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message)
  }
}

/**
 * Downloads the archive with plain HTTP, the baseline the swarm is measured against
 * (`si.dl-protocol=http`): one sequential GET of the server's archive, written in order to
 * `path`. A connection that breaks, stalls for 10 s or gets a 5xx is followed by another
 * GET for the rest (`Range: bytes=N-`, `If-Range` with the manifest's sha256, the server's
 * ETag: an archive republished meanwhile is sent whole instead of spliced onto the old
 * one); bytes already in `path` from an earlier attempt are resumed the same way. Gives up
 * with E_DOWNLOAD_STALLED after `stallTimeoutSeconds` without a byte, E_SERVER_RESPONSE on a
 * 4xx. The caller verifies the whole file against the manifest's sha256, as after a swarm
 * download. Returns the totals: every byte from the server, none uploaded.
 */
export async function downloadArchiveOverHttp(
  options: HttpDownloadOptions,
): Promise<TransferTotals> {
  const { url, path, manifest, logger, emit, signal } = options
  const size = manifest.size
  const stallMs = options.stallTimeoutSeconds * 1000
  const started = performance.now()
  let offset = await existingBytes(path, size)
  if (offset > 0) logger.info({ path, offset, size }, 'resuming the HTTP download')
  const file = await open(path, offset > 0 ? 'r+' : 'w').catch((err) => {
    throw writeError(err, path, manifest, 'open archive')
  })
  let received = 0
  let lastByteAt = Date.now()
  let attempt = 0
  const totals = (): TransferTotals => ({
    downloaded: offset,
    downloadedFromServer: offset,
    uploaded: 0,
  })
  let rateFrom = { at: Date.now(), bytes: offset }
  let rate = 0
  const ticker = setInterval(() => {
    const now = Date.now()
    if (now - rateFrom.at >= PROGRESS_INTERVAL_MS) {
      rate = ((offset - rateFrom.bytes) * 1000) / (now - rateFrom.at)
      rateFrom = { at: now, bytes: offset }
    }
    emit({
      type: 'download-progress',
      size,
      totals: totals(),
      downloadRate: rate,
      uploadRate: 0,
      peers: 0,
    })
  }, PROGRESS_INTERVAL_MS)
  try {
    while (offset < size) {
      attempt++
      try {
        const dispatcher = options.connection?.dispatcher
        const fetched = await getRest(
          url,
          offset,
          manifest,
          signal,
          dispatcher,
          async (chunk, at) => {
            if (at !== offset) {
              // The server sent the whole archive (200) where the rest was asked for.
              offset = at
              await file.truncate(at)
            }
            await file.write(chunk, 0, chunk.byteLength, offset).catch((err) => {
              throw writeError(err, path, manifest, 'write archive')
            })
            offset += chunk.byteLength
            received += chunk.byteLength
            lastByteAt = Date.now()
          },
        )
        if (fetched === 'complete-already') break
        if (offset < size) throw new Interrupted(`the body ended at byte ${offset} of ${size}`)
      } catch (err) {
        if (signal?.aborted) throw signal.reason ?? err
        if (!(err instanceof Interrupted)) throw err
        const idle = Date.now() - lastByteAt
        if (idle >= stallMs) {
          throw new ImageSwarmError(
            'E_DOWNLOAD_STALLED',
            // The stall timeout, not the measured idle time: a late timer on a loaded machine
            // must not change what the node reports.
            `no data arrived over HTTP for ${stallMs / 1000} s (${offset} of ${size} bytes; ${err.message})`,
            {
              operation: 'download archive over HTTP',
              path: url,
              hint: 'check that the image server is reachable and serving the image; the next attempt resumes from the bytes already there',
            },
          )
        }
        const backoffMs = Math.min(250 * 2 ** Math.min(attempt - 1, 5), 5000)
        const waitMs = Math.min(err.retryAfterMs ?? backoffMs, Math.max(stallMs - idle, 0))
        logger.warn(
          { attempt, offset, size, err: err.message, waitMs },
          'HTTP download interrupted; resuming',
        )
        await sleep(waitMs, undefined, signal ? { signal } : {}).catch((sleepErr) => {
          throw signal?.reason ?? sleepErr
        })
      }
    }
  } finally {
    clearInterval(ticker)
    await file.close()
  }
  const result = totals()
  logger.info({ received, attempts: attempt, size }, 'archive downloaded over HTTP')
  emit({ type: 'download-complete', seconds: (performance.now() - started) / 1000, totals: result })
  return result
}

/** Bytes of an earlier attempt to resume from: 0 when there are none or more than the archive. */
async function existingBytes(path: string, size: number): Promise<number> {
  try {
    const existing = await stat(path)
    return existing.isFile() && existing.size <= size ? existing.size : 0
  } catch {
    return 0
  }
}

/**
 * One GET of the archive from `offset` on; `onChunk(chunk, at)` writes each chunk at byte
 * `at` (0 again when the server answered with the whole archive). Throws Interrupted for
 * what another attempt may fix.
 */
async function getRest(
  url: string,
  offset: number,
  manifest: ImageManifest,
  signal: AbortSignal | undefined,
  dispatcher: ServerConnection['dispatcher'],
  onChunk: (chunk: Uint8Array, at: number) => Promise<void>,
): Promise<'done' | 'complete-already'> {
  const controller = new AbortController()
  let idle: NodeJS.Timeout | undefined
  const resetIdle = () => {
    clearTimeout(idle)
    idle = setTimeout(
      () => controller.abort(new Interrupted(`nothing received for ${ATTEMPT_IDLE_MS / 1000} s`)),
      ATTEMPT_IDLE_MS,
    )
  }
  const onAbort = () => controller.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, { once: true })
  resetIdle()
  try {
    const headers: Record<string, string> =
      offset > 0 ? { range: `bytes=${offset}-`, 'if-range': `"${manifest.sha256}"` } : {}
    const response = await fetch(url, {
      headers,
      signal: controller.signal,
      ...(dispatcher ? { dispatcher } : {}),
    })
    let at: number
    if (response.status === 206) {
      at = rangeStart(response.headers.get('content-range'), manifest.size)
      if (at !== offset) {
        await response.body?.cancel().catch(() => {})
        throw badAnswer(
          url,
          `asked for bytes from ${offset}, got ${response.headers.get('content-range')}`,
        )
      }
    } else if (response.status === 200) {
      const declared = Number(response.headers.get('content-length') ?? Number.NaN)
      if (Number.isSafeInteger(declared) && declared !== manifest.size) {
        await response.body?.cancel().catch(() => {})
        throw badAnswer(url, `the archive is ${declared} bytes, the manifest says ${manifest.size}`)
      }
      at = 0
    } else if (response.status === 416 && offset === manifest.size) {
      await response.body?.cancel().catch(() => {})
      return 'complete-already'
    } else {
      await response.body?.cancel().catch(() => {})
      if (response.status >= 500 || response.status === 429) {
        throw new Interrupted(
          `HTTP ${response.status}`,
          parseRetryAfter(response.headers.get('retry-after')),
        )
      }
      throw badAnswer(url, `HTTP ${response.status}`)
    }
    const reader = response.body?.getReader()
    while (reader) {
      const { done, value } = await reader.read()
      if (done) break
      resetIdle()
      if (at + value.byteLength > manifest.size) {
        await reader.cancel().catch(() => {})
        throw badAnswer(url, `the server sent more than the archive's ${manifest.size} bytes`)
      }
      await onChunk(value, at)
      at += value.byteLength
    }
    return 'done'
  } catch (err) {
    if (err instanceof ImageSwarmError) throw err
    // A certificate the pin or the CA store refuses: final, not resumed.
    const refusal = tlsRefusalOf(err, url)
    if (refusal) throw refusal
    const reason = controller.signal.aborted ? controller.signal.reason : undefined
    if (reason instanceof Interrupted) throw reason
    if (signal?.aborted) throw signal.reason ?? err
    if (err instanceof Interrupted) throw err
    // A refused or reset connection, or a body cut short ("terminated"): resumed.
    const cause = (err as { cause?: { code?: string; message?: string } }).cause
    throw new Interrupted(cause?.code ?? cause?.message ?? (err as Error).message)
  } finally {
    clearTimeout(idle)
    signal?.removeEventListener('abort', onAbort)
  }
}

/** The first byte of `Content-Range: bytes FIRST-LAST/SIZE`; NaN when it is not that. */
function rangeStart(header: string | null, size: number): number {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header ?? '')
  if (!match || (match[3] !== '*' && Number(match[3]) !== size)) return Number.NaN
  return Number(match[1])
}

function badAnswer(url: string, what: string): ImageSwarmError {
  return new ImageSwarmError('E_SERVER_RESPONSE', `GET ${url}: ${what}`, {
    operation: 'download archive over HTTP',
    path: url,
    hint: 'see the server’s log; republish the image if its archive changed',
  })
}

function writeError(err: unknown, path: string, manifest: ImageManifest, operation: string) {
  const errno = errnoOf(err)
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return new ImageSwarmError(
      'E_NO_SPACE',
      `no space left for ${path} while downloading ${manifest.name} (${manifest.size} bytes): ${errno}`,
      {
        operation,
        path,
        hint: 'free space there or point BITTORRENT_STAGING= / --staging at a larger filesystem; the download resumes from the bytes already there',
        cause: err,
      },
    )
  }
  return new ImageSwarmError('E_STAGING_NOT_WRITABLE', `cannot write ${path}: ${String(err)}`, {
    operation,
    path,
    hint: 'check that staging is writable and has room (imageswarm.staging=)',
    cause: err,
  })
}
