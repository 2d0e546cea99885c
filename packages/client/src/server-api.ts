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

export interface ServerRequestOptions {
  server: string
  /** Total time to keep retrying while the server cannot be reached. */
  connectTimeoutSeconds: number
  signal?: AbortSignal
  onRetry?: (attempt: number, error: unknown) => void
}

/**
 * GETs a path from the image server. Connection failures and 5xx answers are retried
 * with backoff until the connect timeout (a node may boot before the server is up);
 * a 404 is final.
 */
async function fetchFromServer(path: string, options: ServerRequestOptions): Promise<Response> {
  const url = serverUrl(options.server, path)
  const deadline = Date.now() + options.connectTimeoutSeconds * 1000
  let attempt = 0
  let lastError: unknown
  while (true) {
    attempt++
    const remaining = deadline - Date.now()
    try {
      const signals = [AbortSignal.timeout(Math.max(1000, Math.min(remaining, 10_000)))]
      if (options.signal) signals.push(options.signal)
      const response = await fetch(url, { signal: AbortSignal.any(signals) })
      if (response.ok || response.status < 500) return response
      lastError = new Error(`HTTP ${response.status}`)
    } catch (err) {
      if (options.signal?.aborted) throw err
      lastError = err
    }
    if (Date.now() + 250 >= deadline) break
    options.onRetry?.(attempt, lastError)
    await sleep(Math.min(250 * 2 ** (attempt - 1), 5000, Math.max(deadline - Date.now(), 0)))
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

async function expectOk(response: Response, image: string, what: string): Promise<Response> {
  if (response.ok) return response
  const body = (await response.json().catch(() => undefined)) as
    | { error?: { code?: string; message?: string; hint?: string } }
    | undefined
  if (response.status === 404) {
    throw new ImageSwarmError(
      'E_UNKNOWN_IMAGE',
      body?.error?.message ?? `the server does not publish image ${image}`,
      { operation: `fetch ${what}`, path: response.url, hint: body?.error?.hint },
    )
  }
  throw new ImageSwarmError('E_SERVER_RESPONSE', `fetching the ${what}: HTTP ${response.status}`, {
    operation: `fetch ${what}`,
    path: response.url,
    hint: body?.error?.message ?? 'see the server log',
  })
}

export async function fetchManifest(
  image: string,
  options: ServerRequestOptions,
): Promise<ImageManifest> {
  const response = await expectOk(
    await fetchFromServer(manifestPath(image), options),
    image,
    'manifest',
  )
  let body: unknown
  try {
    body = await response.json()
  } catch (err) {
    throw new ImageSwarmError('E_MANIFEST_INVALID', 'the manifest is not JSON', {
      path: response.url,
      cause: err,
    })
  }
  const manifest = parseManifest(body, response.url)
  if (manifest.name !== image) {
    throw new ImageSwarmError(
      'E_MANIFEST_INVALID',
      `asked for image ${image}, got the manifest of ${manifest.name}`,
      { path: response.url, hint: 'the server answered for another image; check its setup' },
    )
  }
  return manifest
}

/**
 * Fetches the image's `.torrent` and checks it describes the archive in the manifest:
 * same infohash, name, size and piece length. Anything else is refused before a byte
 * of the archive is downloaded.
 */
export async function fetchTorrent(
  manifest: ImageManifest,
  options: ServerRequestOptions,
): Promise<ParsedTorrent> {
  const response = await expectOk(
    await fetchFromServer(torrentPath(manifest.name), options),
    manifest.name,
    '.torrent',
  )
  const bytes = new Uint8Array(await response.arrayBuffer())
  let parsed: ParsedTorrent
  try {
    parsed = await parseTorrent(bytes)
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
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause
    return cause?.code ?? cause?.message ?? err.message
  }
  return String(err)
}
