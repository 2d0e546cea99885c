import type { IncomingMessage, ServerResponse } from 'node:http'
import { type ImageSummary, ImageSwarmError, summarizeManifest, WIRE } from '@imageswarm/core'
import send from 'send'
import type { PublishedImage } from './publish.js'

/** The images this server publishes, by name. */
export type ImageCatalog = ReadonlyMap<string, PublishedImage>

const IMAGE_ROUTE = /^\/images\/([^/]+)\/([^/]+)$/

/**
 * Serves what clients fetch over HTTP: the image list, each image's manifest and
 * `.torrent`, and the archive itself with range requests (BEP 19 web seed).
 * Returns false for requests that are not for these routes.
 */
export function handleImageRequest(
  catalog: ImageCatalog,
  req: IncomingMessage,
  res: ServerResponse,
): boolean {
  const url = new URL(req.url ?? '/', 'http://server')
  if (url.pathname !== WIRE.images && !url.pathname.startsWith(`${WIRE.images}/`)) return false
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end()
    return true
  }
  if (url.pathname === WIRE.images || url.pathname === `${WIRE.images}/`) {
    const images: ImageSummary[] = [...catalog.values()].map((image) =>
      summarizeManifest(image.manifest),
    )
    sendJson(res, 200, { images })
    return true
  }
  const match = IMAGE_ROUTE.exec(url.pathname)
  const name = match ? safeDecode(match[1] ?? '') : undefined
  const file = match ? safeDecode(match[2] ?? '') : undefined
  const image = name === undefined ? undefined : catalog.get(name)
  if (!image) {
    sendError(res, 404, unknownImage(name ?? url.pathname, catalog))
    return true
  }
  if (file === 'manifest.json') {
    sendJson(res, 200, image.manifest)
  } else if (file === 'image.torrent') {
    res.writeHead(200, {
      'content-type': 'application/x-bittorrent',
      'content-length': image.torrent.byteLength,
      'cache-control': 'no-cache',
    })
    res.end(req.method === 'HEAD' ? undefined : image.torrent)
  } else if (file === image.manifest.archiveFile) {
    // `send` implements Range, If-Range, ETag and HEAD: what a BEP 19 web seed needs.
    send(req, image.archivePath, { acceptRanges: true, cacheControl: false })
      .on('error', (err: Error & { status?: number }) => {
        sendError(
          res,
          err.status ?? 500,
          new ImageSwarmError('E_IMAGE_NOT_FOUND', `archive of image ${name} is unavailable`, {
            path: url.pathname,
            hint: 'the archive file was removed or is unreadable on the server; republish it',
          }),
        )
      })
      .pipe(res)
  } else {
    sendError(
      res,
      404,
      new ImageSwarmError('E_IMAGE_NOT_FOUND', `image ${name} has no file ${file}`, {
        path: url.pathname,
        hint: `use manifest.json, image.torrent or ${image.manifest.archiveFile}`,
      }),
    )
  }
  return true
}

function unknownImage(name: string, catalog: ImageCatalog): ImageSwarmError {
  const known = [...catalog.keys()]
  return new ImageSwarmError('E_UNKNOWN_IMAGE', `this server does not publish image ${name}`, {
    path: name,
    hint: known.length
      ? `published images: ${known.join(', ')}`
      : 'this server publishes no images',
  })
}

function safeDecode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-cache',
  })
  res.end(text)
}

export function sendError(res: ServerResponse, status: number, error: ImageSwarmError): void {
  if (res.headersSent) {
    res.destroy(error)
    return
  }
  sendJson(res, status, { error: error.toJSON() })
}
