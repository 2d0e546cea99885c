import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type ImageManifest, isImageSwarmError } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import {
  fetchInstallFile,
  fetchManifest,
  fetchTorrent,
  type ImageWait,
  MANIFEST_SIZE_LIMIT,
  torrentSizeLimit,
} from '../src/server-api.js'

let server: Server | undefined

afterEach(async () => {
  server?.closeAllConnections()
  if (server) await new Promise((resolve) => server!.close(resolve))
  server = undefined
})

const MANIFEST = {
  schemaVersion: 1,
  name: 'node',
  archiveFile: 'image-node.tar.zst',
  size: 3 * 1024 * 1024,
  sha256: 'b'.repeat(64),
  infoHash: 'a'.repeat(40),
  pieceLength: 1024 * 1024,
  compression: 'zstd',
  created: '2024-05-01T12:00:00.000Z',
}
const MANIFEST_BODY = Buffer.from(JSON.stringify(MANIFEST))

/**
 * An image server on loopback whose nth request (from 0) `answer` handles; counts the
 * requests and the bytes of every body it sent.
 */
async function serve(answer: (nth: number, req: IncomingMessage, res: ServerResponse) => void) {
  const seen = { requests: 0, bytesSent: 0 }
  server = createServer((req, res) => {
    const write = res.write.bind(res)
    res.write = ((chunk: Buffer, ...rest: never[]) => {
      seen.bytesSent += chunk.length
      return write(chunk, ...rest)
    }) as typeof res.write
    answer(seen.requests++, req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

/** Writes 64 KiB chunks, as fast as the client takes them, until it goes away or `cap`. */
function sendEndlessly(res: ServerResponse, cap = 512 * 1024 * 1024) {
  const chunk = Buffer.alloc(64 * 1024, 0x7b) // '{', never a complete JSON text
  let sent = 0
  const pump = () => {
    while (sent < cap && !res.destroyed) {
      sent += chunk.length
      if (!res.write(chunk)) return void res.once('drain', pump)
    }
    if (!res.destroyed) res.end()
  }
  pump()
}

function json(res: ServerResponse, status: number, body: unknown, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

async function failure(promise: Promise<unknown>) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!isImageSwarmError(err)) throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
  return err
}

describe('reading the server’s answers with a limit', () => {
  it('stops reading an endless manifest at 1 MiB with E_MANIFEST_INVALID naming the limit', async () => {
    const { url, seen } = await serve((_n, _req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      sendEndlessly(res)
    })
    const err = await failure(fetchManifest('node', { server: url, connectTimeoutSeconds: 5 }))
    expect(err.code).toBe('E_MANIFEST_INVALID')
    expect(err.message).toMatch(/larger than 1\.0 MiB \(the limit for a manifest\)/)
    expect(seen.requests).toBe(1)
    // What the client read, plus what the sockets' buffers held when it hung up.
    expect(seen.bytesSent).toBeLessThan(MANIFEST_SIZE_LIMIT + 32 * 1024 * 1024)
  })

  it('refuses a manifest whose declared length is over the limit without reading it', async () => {
    const { url } = await serve((_n, _req, res) => {
      res.writeHead(200, { 'content-length': String(700 * 1024 * 1024) })
      res.write(Buffer.alloc(1024))
    })
    const err = await failure(fetchManifest('node', { server: url, connectTimeoutSeconds: 5 }))
    expect(err.code).toBe('E_MANIFEST_INVALID')
    expect(err.message).toMatch(/the server announced 734003200 bytes/)
  })

  it('stops reading an endless .torrent at what its pieces can need, with E_TORRENT_MISMATCH', async () => {
    const manifest = { ...MANIFEST, infoHash: MANIFEST.infoHash } as ImageManifest
    const limit = torrentSizeLimit(manifest)
    expect(limit).toBe(3 * 20 + 64 * 1024)
    const { url, seen } = await serve((_n, _req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-bittorrent' })
      sendEndlessly(res)
    })
    const err = await failure(fetchTorrent(manifest, { server: url, connectTimeoutSeconds: 5 }))
    expect(err.code).toBe('E_TORRENT_MISMATCH')
    expect(err.message).toMatch(
      /larger than 65596 bytes, the most a \.torrent of its 3 pieces can be/,
    )
    expect(seen.bytesSent).toBeLessThan(limit + 32 * 1024 * 1024)
  })

  it('bounds the .torrent whatever a manifest claims', () => {
    expect(torrentSizeLimit({ size: 2 ** 50, pieceLength: 16 * 1024 })).toBe(64 * 1024 * 1024)
  })

  it('ignores an endless error body and still says which image is missing', async () => {
    const { url } = await serve((_n, _req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' })
      sendEndlessly(res)
    })
    const err = await failure(fetchManifest('node', { server: url, connectTimeoutSeconds: 5 }))
    expect(err.code).toBe('E_UNKNOWN_IMAGE')
    expect(err.message).toBe('the server does not publish image node')
  })

  it('drops terminal control characters from what the server says and cuts it short', async () => {
    const { url } = await serve((_n, _req, res) =>
      json(res, 404, {
        error: {
          code: 'E_UNKNOWN_IMAGE',
          message: 'no \u001b[2J\u001b]0;owned\u0007image',
          hint: 'x'.repeat(5000),
        },
      }),
    )
    const err = await failure(fetchManifest('node', { server: url, connectTimeoutSeconds: 5 }))
    expect(err.message).not.toContain('\u001b')
    expect(err.message).not.toContain('\u0007')
    expect(err.message).toMatch(/^no +\[2J +\]0;owned +image$/)
    expect(err.hint).toHaveLength(501)
  })
})

describe('a body that stalls or is cut short', () => {
  it('asks again when the first manifest is cut off halfway, and takes the whole second one', async () => {
    const { url, seen } = await serve((n, _req, res) => {
      res.writeHead(200, { 'content-length': String(MANIFEST_BODY.length) })
      if (n === 0) {
        res.write(MANIFEST_BODY.subarray(0, MANIFEST_BODY.length / 2))
        res.destroy()
      } else res.end(MANIFEST_BODY)
    })
    const retries: unknown[] = []
    const manifest = await fetchManifest('node', {
      server: url,
      connectTimeoutSeconds: 5,
      onRetry: (_attempt, err) => retries.push(err),
    })
    expect(manifest.infoHash).toBe(MANIFEST.infoHash)
    expect(seen.requests).toBe(2)
    // Cut before or after fetch has handed over the headers, depending on the timing.
    expect(String(retries[0])).toMatch(/connection lost: \d+ of \d+ bytes|other side closed/)
  })

  it('gives up on a manifest that stalls halfway and takes the whole one asked for again', async () => {
    const { url, seen } = await serve((n, _req, res) => {
      res.writeHead(200, { 'content-length': String(MANIFEST_BODY.length) })
      if (n === 0) res.write(MANIFEST_BODY.subarray(0, MANIFEST_BODY.length / 2))
      else res.end(MANIFEST_BODY)
    })
    const retries: unknown[] = []
    // A 3 s budget: an attempt receiving nothing for 1 s (a third) is given up.
    const manifest = await fetchManifest('node', {
      server: url,
      connectTimeoutSeconds: 3,
      onRetry: (_attempt, err) => retries.push(err),
    })
    expect(manifest.name).toBe('node')
    expect(seen.requests).toBe(2)
    expect(String(retries[0])).toMatch(/stalled: \d+ of \d+ bytes of the body received in 1 s/)
  })

  it('is E_SERVER_UNREACHABLE when every answer stalls, after asking more than once', async () => {
    const { url, seen } = await serve((_n, _req, res) => {
      res.writeHead(200, { 'content-length': String(MANIFEST_BODY.length) })
      res.write(MANIFEST_BODY.subarray(0, 10))
    })
    const err = await failure(fetchManifest('node', { server: url, connectTimeoutSeconds: 3 }))
    expect(err.code).toBe('E_SERVER_UNREACHABLE')
    expect(err.message).toMatch(
      /did not answer within 3 s \((stalled|unfinished at the deadline): 10 of \d+ bytes of the body received/,
    )
    expect(seen.requests).toBeGreaterThanOrEqual(2)
  })

  it('does not ask again for a whole body that is not JSON: E_MANIFEST_INVALID', async () => {
    const { url, seen } = await serve((_n, _req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end('<html>captive portal</html>')
    })
    const err = await failure(fetchManifest('node', { server: url, connectTimeoutSeconds: 5 }))
    expect(err.code).toBe('E_MANIFEST_INVALID')
    expect(err.message).toBe('the manifest of node is not JSON')
    expect(seen.requests).toBe(1)
  })
})

describe('waiting for an image', () => {
  const publishing = (res: ServerResponse) =>
    json(
      res,
      503,
      {
        error: {
          code: 'E_IMAGE_PUBLISHING',
          message: 'image node is being published',
          hint: 'ask again after Retry-After',
        },
      },
      { 'retry-after': '1' },
    )

  it('asks again after Retry-After while the server publishes the image, saying so once', async () => {
    const { url, seen } = await serve((n, _req, res) =>
      n < 2 ? publishing(res) : json(res, 200, MANIFEST),
    )
    const waits: ImageWait[] = []
    const manifest = await fetchManifest('node', {
      server: url,
      connectTimeoutSeconds: 1,
      onWait: (wait) => waits.push(wait),
    })
    expect(manifest.name).toBe('node')
    expect(seen.requests).toBe(3)
    // Said when the wait starts; not again for a minute.
    expect(waits).toEqual([
      {
        reason: 'publishing',
        image: 'node',
        message: 'image node is being published',
        waitedSeconds: expect.any(Number),
        limitSeconds: 7200,
      },
    ])
  })

  it('gives up with E_IMAGE_PUBLISHING when the server publishes for longer than the wait', async () => {
    const { url, seen } = await serve((_n, _req, res) => publishing(res))
    const err = await failure(
      fetchManifest('node', { server: url, connectTimeoutSeconds: 1, publishingWaitSeconds: 2 }),
    )
    expect(err.code).toBe('E_IMAGE_PUBLISHING')
    expect(err.message).toMatch(/^the image server was still publishing image node after \d+ s$/)
    expect(err.hint).toMatch(/see the server’s log/)
    expect(seen.requests).toBeGreaterThanOrEqual(2)
  })

  it('fails at once for an image the server does not publish, by default', async () => {
    const { url, seen } = await serve((_n, _req, res) =>
      json(res, 404, {
        error: {
          code: 'E_UNKNOWN_IMAGE',
          message: 'this server does not publish image nosuch',
          hint: 'published images: node',
        },
      }),
    )
    const err = await failure(fetchManifest('nosuch', { server: url, connectTimeoutSeconds: 5 }))
    expect(err.code).toBe('E_UNKNOWN_IMAGE')
    expect(err.message).toBe('this server does not publish image nosuch')
    expect(err.hint).toBe('published images: node')
    expect(seen.requests).toBe(1)
  })

  it('waits up to imageTimeoutSeconds for an image that is not published yet', async () => {
    const { url, seen } = await serve((n, _req, res) =>
      n < 2 ? json(res, 404, { error: { code: 'E_UNKNOWN_IMAGE' } }) : json(res, 200, MANIFEST),
    )
    const waits: ImageWait[] = []
    const manifest = await fetchManifest('node', {
      server: url,
      connectTimeoutSeconds: 1,
      imageTimeoutSeconds: 60,
      onWait: (wait) => waits.push(wait),
    })
    expect(manifest.name).toBe('node')
    expect(seen.requests).toBe(3)
    expect(waits.map((w) => [w.reason, w.limitSeconds])).toEqual([['unpublished', 60]])
  })

  it('gives up on an image that does not appear within imageTimeoutSeconds', async () => {
    const { url, seen } = await serve((_n, _req, res) => json(res, 404, {}))
    const err = await failure(
      fetchManifest('node', { server: url, connectTimeoutSeconds: 1, imageTimeoutSeconds: 2 }),
    )
    expect(err.code).toBe('E_UNKNOWN_IMAGE')
    expect(err.message).toMatch(/^the server does not publish image node \(waited \d+ s for it\)$/)
    expect(seen.requests).toBeGreaterThanOrEqual(2)
  })

  it('stops waiting when interrupted', async () => {
    const { url } = await serve((_n, _req, res) => publishing(res))
    const interrupt = new AbortController()
    const reason = new Error('interrupted by the test')
    const waiting = fetchManifest('node', {
      server: url,
      connectTimeoutSeconds: 1,
      signal: interrupt.signal,
      onWait: () => interrupt.abort(reason),
    })
    await expect(waiting).rejects.toBe(reason)
  })
})

describe('the installer’s files beside the image', () => {
  it('reads one, is undefined on a 404 at once, and retries a 503 like the manifest', async () => {
    const { url, seen } = await serve((nth, req, res) => {
      if (req.url === '/install/overrides/missing.tar') return res.writeHead(404).end('{}')
      if (nth === 1) return res.writeHead(503).end()
      res.writeHead(200).end('#!/bin/sh\necho hi\n')
    })
    const options = { server: url, connectTimeoutSeconds: 10 }
    expect(
      await fetchInstallFile('/install/overrides/missing.tar', 'override missing', 1024, options),
    ).toBeUndefined()
    expect(seen.requests).toBe(1)
    const body = await fetchInstallFile(
      '/install/post-install/10all.hi',
      'post-install script 10all.hi',
      1024,
      options,
    )
    expect(body?.toString()).toBe('#!/bin/sh\necho hi\n')
    expect(seen.requests).toBe(3)
  })

  it('stops reading one over its limit with E_SERVER_RESPONSE naming what it is', async () => {
    const { url } = await serve((_nth, _req, res) => sendEndlessly(res))
    const err = await fetchInstallFile('/install/node.json?image=node', 'node config', 64 * 1024, {
      server: url,
      connectTimeoutSeconds: 10,
    }).catch((e: unknown) => e)
    if (!isImageSwarmError(err)) throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
    expect(err.code).toBe('E_SERVER_RESPONSE')
    expect(err.message).toBe("the server's node config is larger than 0.1 MiB")
  })
})
