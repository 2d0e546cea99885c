import type { IncomingMessage, ServerResponse } from 'node:http'
import { ImageSwarmError } from '@imageswarm/core'
import { parseByteRange } from './byte-ranges.js'
import type { ServedFile } from './held-file.js'
import { paceBytes, type UploadBudget } from './upload-budget.js'

export interface WebSeedOptions {
  /** Paces the archive's bytes to the server's upload limit; undefined: no limit. */
  uploadBudget: UploadBudget | undefined
  /** Told of every run of archive bytes handed to a connection. */
  onSent: (bytes: number) => void
  /** Told, with what changed and where, of every request that finds the archive changed. */
  onChanged: (error: ImageSwarmError) => void
  sendError: (res: ServerResponse, status: number, error: ImageSwarmError) => void
  /**
   * What a client is told when the file changed since it was opened (the details go to
   * `onChanged`, for the log); default: the archive's `E_SERVER_ARCHIVE_CHANGED`, saying
   * the image must be republished.
   */
  changedAnswer?: (path: string | undefined) => ImageSwarmError
}

/**
 * Serves a published archive over HTTP as a BEP 19 web seed needs it: `Range` (one
 * range: 206, or 416 past the end), `If-Range`, `ETag` (the archive's sha256) and
 * `Last-Modified` with `If-None-Match`/`If-Modified-Since` (304), and `HEAD`. Every byte
 * comes from the descriptor held since publishing, paced by the upload budget. An
 * archive changed in place since publishing is refused with `E_SERVER_ARCHIVE_CHANGED`
 * (500); one that changes during a transfer has its connection cut, so the client does
 * not take a torn range for a whole one.
 *
 * Any other file held open the same way (`ServedFile`: boot files, override archives) is
 * served by the same code.
 */
export async function serveArchive(
  archive: ServedFile,
  req: IncomingMessage,
  res: ServerResponse,
  options: WebSeedOptions,
): Promise<void> {
  const changed = await archive.check()
  if (changed) {
    options.onChanged(changed)
    options.sendError(res, 500, (options.changedAnswer ?? archiveChanged)(req.url))
    return
  }
  const headers: Record<string, string | number> = {
    'accept-ranges': 'bytes',
    etag: archive.etag,
    'last-modified': archive.lastModified.toUTCString(),
  }
  if (notModified(req, archive)) {
    res.writeHead(304, headers).end()
    return
  }
  const range = rangeRequested(req, archive)
  if (range === 'unsatisfiable') {
    res.setHeader('content-range', `bytes */${archive.size}`)
    options.sendError(
      res,
      416,
      new ImageSwarmError(
        'E_USAGE',
        `range ${req.headers.range} is outside the archive (${archive.size} bytes)`,
        { path: req.url, hint: `ask for bytes from 0 to ${archive.size - 1}` },
      ),
    )
    return
  }
  const start = range?.start ?? 0
  const end = range ? range.end + 1 : archive.size
  res.writeHead(range ? 206 : 200, {
    ...headers,
    'content-type': 'application/octet-stream',
    'content-length': end - start,
    ...(range ? { 'content-range': `bytes ${range.start}-${range.end}/${archive.size}` } : {}),
  })
  if (req.method === 'HEAD') {
    res.end()
    return
  }
  const gone = new AbortController()
  const onClose = () => gone.abort()
  res.once('close', onClose)
  try {
    for await (const chunk of paceBytes(start, end, options.uploadBudget, gone.signal)) {
      const bytes = await archive.read(chunk.position, chunk.length)
      if (gone.signal.aborted) return
      // Checked before the last bytes go, not after: once the client has every byte the
      // length promised, it takes the answer as whole, and cutting the connection then
      // only breaks its next request on it. A body cut short is one it cannot take.
      if (chunk.position + chunk.length === end) {
        const changedSince = await archive.check()
        if (changedSince) {
          options.onChanged(changedSince)
          res.destroy(changedSince)
          return
        }
      }
      const flushed = res.write(bytes)
      options.onSent(bytes.length)
      if (!flushed && !(await drained(res, gone.signal))) return
    }
    if (gone.signal.aborted) return
    res.end()
  } catch (err) {
    res.destroy(err instanceof Error ? err : new Error(String(err)))
  } finally {
    res.off('close', onClose)
  }
}

function archiveChanged(path: string | undefined): ImageSwarmError {
  return new ImageSwarmError(
    'E_SERVER_ARCHIVE_CHANGED',
    "the server's archive of this image changed since it was published: it no longer matches the manifest",
    {
      operation: 'serve archive',
      ...(path === undefined ? {} : { path }),
      hint: "the server's administrator must republish the image; then install again",
    },
  )
}

/** The range to send: none (the whole archive) unless asked for and `If-Range` agrees. */
function rangeRequested(req: IncomingMessage, archive: ServedFile) {
  const range = parseByteRange(req.headers.range, archive.size)
  if (range === undefined) return undefined
  const ifRange = req.headers['if-range']
  if (typeof ifRange !== 'string') return range
  // A strong ETag or the exact Last-Modified date: anything else means the client's
  // copy is of another file, so it gets the whole of this one.
  if (ifRange.startsWith('"') || ifRange.startsWith('W/')) {
    return ifRange === archive.etag ? range : undefined
  }
  const date = Date.parse(ifRange)
  return date === Math.floor(archive.lastModified.getTime() / 1000) * 1000 ? range : undefined
}

function notModified(req: IncomingMessage, archive: ServedFile): boolean {
  const ifNoneMatch = req.headers['if-none-match']
  if (ifNoneMatch !== undefined) {
    return ifNoneMatch
      .split(',')
      .map((tag) => tag.trim().replace(/^W\//, ''))
      .some((tag) => tag === '*' || tag === archive.etag)
  }
  const ifModifiedSince = req.headers['if-modified-since']
  if (ifModifiedSince === undefined) return false
  const since = Date.parse(ifModifiedSince)
  return !Number.isNaN(since) && Math.floor(archive.lastModified.getTime() / 1000) * 1000 <= since
}

function drained(res: ServerResponse, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', onDrain)
      signal.removeEventListener('abort', onAbort)
      resolve(ok)
    }
    const onDrain = () => done(true)
    const onAbort = () => done(false)
    res.on('drain', onDrain)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
