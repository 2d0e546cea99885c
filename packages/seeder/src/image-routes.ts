import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { rm, stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import {
  type DeltaDescriptor,
  ImageSwarmError,
  isImageSwarmError,
  isIndexPath,
  type Logger,
  silentLogger,
  VERSION_FILES,
  WIRE,
} from '@imageswarm/core'
import type { ImageCatalog } from './catalog.js'
import type { PublishedImage } from './publish.js'
import { serveArchive } from './web-seed.js'

const IMAGE_ROUTE = /^\/images\/([^/]+)\/([^/]+)$/

/**
 * How long a node is asked to wait before asking again for an image being published.
 * Packing runs at tens of MB/s (a Debian root: 0.7 s; a 5 GB cluster image: a few
 * minutes), and 1,000 nodes asking every 5 s are 200 small requests a second.
 */
export const PUBLISHING_RETRY_AFTER_SECONDS = 5

/**
 * Serves what clients fetch over HTTP: the image list, each image's manifest (its file's
 * exact bytes) and, when signed, its `manifest.json.minisig` (404 `E_SIGNATURE_MISSING`
 * otherwise), the `.torrent`, and the archive itself with range requests (BEP 19 web
 * seed). An image
 * named to be published but not ready yet is answered 503 with `Retry-After` and
 * `E_IMAGE_PUBLISHING`. Returns false for requests that are not for these routes.
 */
export function handleImageRequest(
  catalog: ImageCatalog,
  req: IncomingMessage,
  res: ServerResponse,
  logger: Logger = silentLogger(),
): boolean {
  const url = new URL(req.url ?? '/', 'http://server')
  if (url.pathname !== WIRE.images && !url.pathname.startsWith(`${WIRE.images}/`)) return false
  const membersRequest = url.pathname.endsWith(`/${VERSION_FILES.members}`)
  if (membersRequest ? req.method !== 'POST' : req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: membersRequest ? 'POST' : 'GET, HEAD' }).end()
    return true
  }
  if (url.pathname === WIRE.images || url.pathname === `${WIRE.images}/`) {
    sendJson(res, 200, { images: catalog.summaries(), publishing: catalog.publishing })
    return true
  }
  const match = IMAGE_ROUTE.exec(url.pathname)
  const name = match ? safeDecode(match[1] ?? '') : undefined
  const file = match ? safeDecode(match[2] ?? '') : undefined
  const image = name === undefined ? undefined : catalog.get(name)
  const stage = name === undefined ? undefined : catalog.publishingStage(name)
  if (!image && stage !== undefined) {
    res.setHeader('retry-after', String(PUBLISHING_RETRY_AFTER_SECONDS))
    sendError(
      res,
      503,
      new ImageSwarmError('E_IMAGE_PUBLISHING', `image ${name} is being published (${stage})`, {
        path: url.pathname,
        hint: `the server is still publishing it: ask again in ${PUBLISHING_RETRY_AFTER_SECONDS} s`,
      }),
    )
    return true
  }
  if (!image) {
    sendError(res, 404, unknownImage(name ?? url.pathname, catalog))
    return true
  }
  const versions = image.versions
  const delta = versions?.deltas.find(
    ({ descriptor }) =>
      file === descriptor.file ||
      file === descriptorFile(descriptor) ||
      file === torrentFile(descriptor),
  )
  if (versions && file === VERSION_FILES.versions) {
    sendJson(res, 200, versions.list)
  } else if (versions && file === VERSION_FILES.fileIndex) {
    sendBytes(req, res, versions.fileIndexBytes, 'application/gzip')
  } else if (versions && file === VERSION_FILES.deltas) {
    sendBytes(req, res, versions.deltasBytes, 'application/json; charset=utf-8')
  } else if (versions && file === VERSION_FILES.members) {
    serveMembers(image, req, res, logger)
  } else if (delta && file === descriptorFile(delta.descriptor)) {
    sendBytes(req, res, delta.descriptorBytes, 'application/gzip')
  } else if (delta && file === torrentFile(delta.descriptor)) {
    sendBytes(req, res, delta.torrent, 'application/x-bittorrent')
  } else if (delta) {
    const { infoHash } = delta.descriptor
    serveArchive(delta.archive, req, res, {
      uploadBudget: catalog.uploadBudget,
      onSent: (bytes) => catalog.countWebSeedBytes(infoHash, bytes),
      onChanged: (error) => catalog.noticeArchiveChange(image, error),
      sendError,
    }).catch((err: unknown) => {
      logger.error({ err, image: name, file }, 'serving a delta failed')
      sendError(
        res,
        500,
        new ImageSwarmError('E_IMAGE_NOT_FOUND', `delta ${file} of image ${name} is unreadable`, {
          path: url.pathname,
          hint: 'see the server log (a disk error?); republish the image',
          cause: err,
        }),
      )
    })
  } else if (file === 'manifest.json') {
    // The file's exact bytes: a signature covers them, not a re-serialised object.
    sendBytes(req, res, image.manifestBytes, 'application/json; charset=utf-8')
  } else if (file === 'manifest.json.minisig') {
    if (image.manifestSignature === undefined) {
      sendError(res, 404, unsignedImage(name ?? url.pathname))
    } else {
      sendBytes(req, res, Buffer.from(image.manifestSignature), 'text/plain; charset=utf-8')
    }
  } else if (file === 'image.torrent') {
    sendBytes(req, res, catalog.servedTorrent(image), 'application/x-bittorrent')
  } else if (file === image.manifest.archiveFile) {
    const { infoHash } = image.manifest
    serveArchive(image.archive, req, res, {
      uploadBudget: catalog.uploadBudget,
      onSent: (bytes) => catalog.countWebSeedBytes(infoHash, bytes),
      onChanged: (error) => catalog.noticeArchiveChange(image, error),
      sendError,
    }).catch((err: unknown) => {
      logger.error({ err, image: name }, 'serving the archive failed')
      sendError(
        res,
        500,
        new ImageSwarmError('E_IMAGE_NOT_FOUND', `archive of image ${name} is unreadable`, {
          path: url.pathname,
          hint: 'see the server log (a disk error?); republish the image',
          cause: err,
        }),
      )
    })
  } else {
    sendError(
      res,
      404,
      new ImageSwarmError('E_IMAGE_NOT_FOUND', `image ${name} has no file ${file}`, {
        path: url.pathname,
        hint: `use manifest.json, manifest.json.minisig, image.torrent or ${image.manifest.archiveFile}`,
      }),
    )
  }
  return true
}

function descriptorFile(descriptor: DeltaDescriptor): string {
  return `delta-${descriptor.from}-${descriptor.to}.json.gz`
}

function torrentFile(descriptor: DeltaDescriptor): string {
  return `delta-${descriptor.from}-${descriptor.to}.torrent`
}

/** Largest `members` request body: a path list for a root that drifted a lot. */
const MEMBERS_BODY_LIMIT = 16 * 1024 * 1024

/**
 * `POST /images/NAME/members` with `{ version, paths }`: a tar of those members of the
 * newest version, copied out of its archive, for a node whose files differ from it in ways
 * its delta does not cover. The node checks every member against the file index too.
 */
function serveMembers(
  image: PublishedImage,
  req: IncomingMessage,
  res: ServerResponse,
  logger: Logger,
): void {
  const chunks: Buffer[] = []
  let size = 0
  req.on('data', (chunk: Buffer) => {
    size += chunk.length
    if (size > MEMBERS_BODY_LIMIT) {
      req.destroy()
      return
    }
    chunks.push(chunk)
  })
  req.on('end', () => {
    let paths: string[]
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        version?: unknown
        paths?: unknown
      }
      const newest = image.manifest.serial
      if (body.version !== newest) {
        throw new Error(`version ${String(body.version)} is not the newest, ${newest}`)
      }
      if (
        !Array.isArray(body.paths) ||
        !body.paths.every((path) => typeof path === 'string' && isIndexPath(path))
      ) {
        throw new Error('paths must be a list of relative paths inside the image root')
      }
      paths = body.paths as string[]
    } catch (err) {
      sendError(
        res,
        400,
        new ImageSwarmError(
          'E_USAGE',
          `bad members request: ${err instanceof Error ? err.message : String(err)}`,
          {
            path: req.url ?? '',
            hint: 'ask for paths of the newest version (see its file index)',
          },
        ),
      )
      return
    }
    void sendMembers(image, paths, res, logger)
  })
}

/** The members' tar, written beside the version's archive, sent, then removed. */
async function sendMembers(
  image: PublishedImage,
  paths: string[],
  res: ServerResponse,
  logger: Logger,
): Promise<void> {
  const versions = image.versions!
  const output = join(tmpdir(), `imageswarm-members-${randomBytes(6).toString('hex')}.tar`)
  try {
    await versions.writeMembers(paths, output)
    const size = (await stat(output)).size
    res.writeHead(200, {
      'content-type': 'application/x-tar',
      'content-length': size,
      'cache-control': 'no-store',
    })
    await pipeline(createReadStream(output), res)
  } catch (err) {
    if (isImageSwarmError(err) && err.code === 'E_USAGE') {
      sendError(res, 400, err)
    } else {
      logger.error({ err, image: image.manifest.name }, 'cannot send members of the newest version')
      sendError(
        res,
        500,
        new ImageSwarmError('E_PACK_FAILED', 'cannot copy members of the newest version', {
          path: image.manifest.name,
          hint: 'see the server log',
          cause: err,
        }),
      )
    }
  } finally {
    await rm(output, { force: true })
  }
}

function unsignedImage(name: string): ImageSwarmError {
  return new ImageSwarmError('E_SIGNATURE_MISSING', `image ${name} is not signed`, {
    path: name,
    hint: 'this server publishes unsigned manifests: run it with serve --keys DIR to sign them',
  })
}

/** A file's bytes as they are (manifest, signature, key list), never re-encoded. */
export function sendBytes(
  req: IncomingMessage,
  res: ServerResponse,
  bytes: Uint8Array,
  contentType: string,
): void {
  res.writeHead(200, {
    'content-type': contentType,
    'content-length': bytes.byteLength,
    'cache-control': 'no-cache',
  })
  res.end(req.method === 'HEAD' ? undefined : bytes)
}

function unknownImage(name: string, catalog: ImageCatalog): ImageSwarmError {
  const known = catalog.published.map((image) => image.manifest.name)
  const coming = catalog.publishing
  const hint = [
    ...(known.length ? [`published images: ${known.join(', ')}`] : []),
    ...(coming.length ? [`being published: ${coming.join(', ')}`] : []),
  ].join('; ')
  return new ImageSwarmError('E_UNKNOWN_IMAGE', `this server does not publish image ${name}`, {
    path: name,
    hint: hint || 'this server publishes no images',
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
    // A route's own setting stands (the group key answer is `no-store`): writeHead's
    // headers would otherwise replace it.
    'cache-control': String(res.getHeader('cache-control') ?? 'no-cache'),
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
