import type { IncomingMessage, ServerResponse } from 'node:http'
import { ImageSwarmError, type Logger, type MirrorRegistration, WIRE } from '@imageswarm/core'
import { z } from 'zod'
import { sendError, sendJson } from './image-routes.js'
import type { ServerRegistry } from './server-registry.js'

/** A registration lists a server's URL and infohashes: a few KiB even for many images. */
const REGISTRATION_MAX_BYTES = 256 * 1024

const RegistrationSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
  images: z.array(z.string().regex(/^[0-9a-fA-F]{40}$/)).max(4096),
  intervalSeconds: z.number().int().min(1).max(3600),
})

/**
 * `POST /mirrors`: a mirror's registration (`MirrorRegistration`), answered with every
 * server this one knows (`ServerList`). The mirror is then listed in the torrents of the
 * images it serves. Anyone on the install network can register: what a mirror hands out
 * is checked by the nodes (piece hashes, the manifest's sha256 and signature), so a bogus
 * one costs them time, not integrity. Returns false for other paths.
 */
export function handleMirrorRequest(
  registry: ServerRegistry,
  req: IncomingMessage,
  res: ServerResponse,
  logger: Logger,
): boolean {
  const path = new URL(req.url ?? '/', 'http://server').pathname
  if (path !== WIRE.mirrors) return false
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end()
    return true
  }
  const chunks: Buffer[] = []
  let size = 0
  req.on('data', (chunk: Buffer) => {
    size += chunk.length
    if (size > REGISTRATION_MAX_BYTES) req.destroy()
    else chunks.push(chunk)
  })
  req.on('end', () => {
    let registration: MirrorRegistration
    try {
      const parsed = RegistrationSchema.safeParse(
        JSON.parse(Buffer.concat(chunks).toString('utf8')),
      )
      if (!parsed.success) {
        const issue = parsed.error.issues[0]
        throw new Error(`${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`)
      }
      registration = { ...parsed.data, url: parsed.data.url.replace(/\/+$/, '') }
    } catch (err) {
      sendError(
        res,
        400,
        new ImageSwarmError(
          'E_USAGE',
          `bad mirror registration: ${err instanceof Error ? err.message : String(err)}`,
          {
            path: WIRE.mirrors,
            hint: 'a mirror posts { url, images, intervalSeconds } (imageswarm serve --mirror-of)',
          },
        ),
      )
      return
    }
    const known = registry.list().servers.some((entry) => entry.url === registration.url)
    registry.heard(registration)
    if (!known) {
      logger.info(
        { mirror: registration.url, images: registration.images.length },
        'mirror registered',
      )
    }
    sendJson(res, 200, registry.list())
  })
  return true
}
