import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createServer as createTcpServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type ImageManifest,
  type InstallEvent,
  isImageSwarmError,
  silentLogger,
} from '@imageswarm/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { downloadArchiveOverHttp } from '../src/http-download.js'
import { resolveInstallParameters } from '../src/parameters.js'

const ARCHIVE = randomBytes(3 * 1024 * 1024 + 12_345)
const sha256Hex = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

const MANIFEST: ImageManifest = {
  schemaVersion: 1,
  name: 'node',
  archiveFile: 'image-node.tar.zst',
  size: ARCHIVE.length,
  sha256: sha256Hex(ARCHIVE),
  infoHash: 'a'.repeat(40),
  pieceLength: 1024 * 1024,
  compression: 'zstd',
  created: '2024-05-01T12:00:00.000Z',
} as ImageManifest

let server: Server | undefined
let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imageswarm-http-download-'))
})

afterEach(async () => {
  server?.closeAllConnections()
  if (server) await new Promise((resolve) => server!.close(resolve))
  server = undefined
  await rm(dir, { recursive: true, force: true })
})

/** What the archive route of the image server answers, as the seeder's web seed does. */
function sendArchive(req: IncomingMessage, res: ServerResponse, body = ARCHIVE): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
  const ifRange = req.headers['if-range']
  const etag = `"${sha256Hex(body)}"`
  if (range && (ifRange === undefined || ifRange === etag)) {
    const start = Number(range[1])
    if (start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end()
      return
    }
    res.writeHead(206, {
      'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
      'content-length': body.length - start,
      etag,
    })
    res.end(body.subarray(start))
    return
  }
  res.writeHead(200, { 'content-length': body.length, etag }).end(body)
}

/** A server on loopback whose nth request (from 0) `answer` handles; records each request. */
async function serve(answer: (nth: number, req: IncomingMessage, res: ServerResponse) => void) {
  const requests: { range?: string; ifRange?: string }[] = []
  server = createServer((req, res) => {
    const nth = requests.length
    requests.push({
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers['if-range'] ? { ifRange: String(req.headers['if-range']) } : {}),
    })
    answer(nth, req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/images/node/image-node.tar.zst`, requests }
}

async function download(url: string, options: { stallTimeoutSeconds?: number } = {}) {
  const events: InstallEvent[] = []
  const path = join(dir, 'image-node.tar.zst')
  const totals = await downloadArchiveOverHttp({
    url,
    path,
    manifest: MANIFEST,
    stallTimeoutSeconds: options.stallTimeoutSeconds ?? 30,
    logger: silentLogger(),
    emit: (event) => events.push(event),
  })
  return { totals, events, bytes: await readFile(path), path }
}

async function failure(promise: Promise<unknown>) {
  try {
    await promise
  } catch (err) {
    if (isImageSwarmError(err)) return err
    throw err
  }
  throw new Error('expected the download to fail')
}

describe('downloading the archive over plain HTTP (si.dl-protocol=http)', () => {
  it('fetches the whole archive with one GET; every byte from the server, none uploaded', async () => {
    const { url, requests } = await serve((_, req, res) => sendArchive(req, res))
    const { totals, events, bytes } = await download(url)
    expect(bytes.equals(ARCHIVE)).toBe(true)
    expect(requests).toEqual([{}])
    expect(totals).toEqual({
      downloaded: ARCHIVE.length,
      downloadedFromServer: ARCHIVE.length,
      uploaded: 0,
    })
    expect(events.at(-1)).toMatchObject({ type: 'download-complete', totals })
  })

  it('resumes a cut connection with a Range request for the rest, tied to the archive by If-Range', async () => {
    const cutAt = 1024 * 1024 + 7
    const { url, requests } = await serve((nth, req, res) => {
      if (nth === 0) {
        // Declares the whole archive, sends part of it, and drops the connection.
        res.writeHead(200, { 'content-length': ARCHIVE.length })
        res.write(ARCHIVE.subarray(0, cutAt), () => res.destroy())
        return
      }
      sendArchive(req, res)
    })
    const { bytes, totals } = await download(url)
    expect(bytes.equals(ARCHIVE)).toBe(true)
    expect(totals.downloaded).toBe(ARCHIVE.length)
    expect(requests).toHaveLength(2)
    const resumedFrom = Number(/^bytes=(\d+)-$/.exec(requests[1]?.range ?? '')?.[1])
    // Whatever reached the file before the cut is kept: the second GET asks for the rest.
    expect(resumedFrom).toBeGreaterThan(0)
    expect(resumedFrom).toBeLessThanOrEqual(cutAt)
    expect(requests[1]?.ifRange).toBe(`"${MANIFEST.sha256}"`)
  })

  it('resumes what an earlier attempt left in staging, and finds a complete file complete', async () => {
    const { url, requests } = await serve((_, req, res) => sendArchive(req, res))
    const path = join(dir, 'image-node.tar.zst')
    await writeFile(path, ARCHIVE.subarray(0, 2_000_000))
    const { bytes } = await download(url)
    expect(bytes.equals(ARCHIVE)).toBe(true)
    expect(requests).toEqual([{ range: 'bytes=2000000-', ifRange: `"${MANIFEST.sha256}"` }])

    // Complete already: nothing is asked for (the sha256 check that follows decides).
    const again = await download(url)
    expect(again.bytes.equals(ARCHIVE)).toBe(true)
    expect(requests).toHaveLength(1)
  })

  it('starts over when the server sends the whole archive instead of the rest (If-Range failed)', async () => {
    const { url, requests } = await serve((_, __, res) =>
      res.writeHead(200, { 'content-length': ARCHIVE.length }).end(ARCHIVE),
    )
    const path = join(dir, 'image-node.tar.zst')
    // Not the archive's first bytes: must not survive into the result.
    await writeFile(path, Buffer.alloc(1_500_000, 0xaa))
    const { bytes } = await download(url)
    expect(bytes.equals(ARCHIVE)).toBe(true)
    expect(requests).toHaveLength(1)
  })

  it('waits out a server that answers 503 with Retry-After, then completes', async () => {
    const { url, requests } = await serve((nth, req, res) => {
      if (nth === 0) {
        res.writeHead(503, { 'retry-after': '1' }).end()
        return
      }
      sendArchive(req, res)
    })
    const { bytes } = await download(url)
    expect(bytes.equals(ARCHIVE)).toBe(true)
    expect(requests).toHaveLength(2)
  })

  it('refuses a 404 and an archive of another size, saying what the server answered', async () => {
    const missing = await serve((_, __, res) => res.writeHead(404).end())
    const notFound = await failure(download(missing.url))
    expect(notFound.code).toBe('E_SERVER_RESPONSE')
    expect(notFound.message).toBe(`GET ${missing.url}: HTTP 404`)
    await new Promise((resolve) => server!.close(resolve))

    const other = await serve((_, req, res) => sendArchive(req, res, ARCHIVE.subarray(0, 1000)))
    const wrongSize = await failure(download(other.url))
    expect(wrongSize.code).toBe('E_SERVER_RESPONSE')
    expect(wrongSize.message).toBe(
      `GET ${other.url}: the archive is 1000 bytes, the manifest says ${ARCHIVE.length}`,
    )
  })

  it('gives up with E_DOWNLOAD_STALLED when nothing arrives for the stall timeout', async () => {
    // A port nothing listens on: every attempt is refused until the stall timeout.
    const probe = createTcpServer().listen(0, '127.0.0.1')
    await once(probe, 'listening')
    const { port } = probe.address() as AddressInfo
    await new Promise((resolve) => probe.close(resolve))
    const url = `http://127.0.0.1:${port}/images/node/image-node.tar.zst`
    const stalled = await failure(download(url, { stallTimeoutSeconds: 1 }))
    expect(stalled.code).toBe('E_DOWNLOAD_STALLED')
    expect(stalled.message).toMatch(
      /^no data arrived over HTTP for 1 s \(0 of \d+ bytes; ECONNREFUSED\)$/,
    )
  })
})

describe('choosing the download protocol', () => {
  const kernel = (text: string) =>
    new Map(text.split(' ').map((pair) => pair.split('=') as [string, string]))

  it('is torrent unless si.dl-protocol, imageswarm.dl-protocol, $IMAGESWARM_DL_PROTOCOL or --dl-protocol says http', () => {
    const base = 'IMAGESERVER=10.0.0.1 IMAGENAME=compute'
    const of = (text: string, env: NodeJS.ProcessEnv = {}, flags = {}) =>
      resolveInstallParameters({ flags, env, kernel: kernel(text) })
    expect(of(base).config.downloadProtocol).toBe('torrent')
    expect(of(`${base} si.dl-protocol=http`).config.downloadProtocol).toBe('http')
    expect(of(`${base} si.dl-protocol=http`).sources.downloadProtocol).toEqual({
      source: 'kernel',
      name: 'si.dl-protocol',
    })
    expect(
      of(`${base} si.dl-protocol=http imageswarm.dl-protocol=torrent`).config.downloadProtocol,
    ).toBe('torrent')
    expect(of(base, { IMAGESWARM_DL_PROTOCOL: 'http' }).config.downloadProtocol).toBe('http')
    expect(of(base, {}, { downloadProtocol: 'HTTP' }).config.downloadProtocol).toBe('http')
  })

  it('refuses SystemImager’s other transports, naming the parameter and the values it takes', () => {
    expect(() =>
      resolveInstallParameters({
        flags: {},
        env: {},
        kernel: kernel('IMAGESERVER=10.0.0.1 IMAGENAME=compute si.dl-protocol=rsync'),
      }),
    ).toThrow(/^invalid si\.dl-protocol \(kernel\): "rsync"$/)
  })
})
