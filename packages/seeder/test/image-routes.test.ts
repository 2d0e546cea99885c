import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveSeederConfig } from '../src/config.js'
import { handleImageRequest } from '../src/image-routes.js'
import { type PublishedImage, publishImage } from '../src/publish.js'

let dir: string
let server: Server
let base: string
let image: PublishedImage

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'seeder-routes-'))
  const config = resolveSeederConfig({
    imagesDir: join(dir, 'images'),
    tarballsDir: join(dir, 'tarballs'),
    torrentsDir: join(dir, 'torrents'),
  })
  await mkdir(join(config.imagesDir, 'node'), { recursive: true })
  // Random bytes: the archive must stay large after compression.
  await writeFile(join(config.imagesDir, 'node', 'payload'), randomBytes(300_000))
  image = await publishImage({ image: 'node', config, serverUrl: 'http://127.0.0.1:1' })
  const catalog = new Map([['node', image]])
  server = createServer((req, res) => {
    if (!handleImageRequest(catalog, req, res)) res.writeHead(418).end()
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve))
  await rm(dir, { recursive: true, force: true })
})

describe('image routes', () => {
  it('lists the published images', async () => {
    const body = await (await fetch(`${base}/images`)).json()
    expect(body).toEqual({
      images: [
        {
          name: 'node',
          infoHash: image.manifest.infoHash,
          size: image.manifest.size,
          compression: 'zstd',
          created: image.manifest.created,
        },
      ],
    })
  })

  it('serves the manifest and the .torrent', async () => {
    expect(await (await fetch(`${base}/images/node/manifest.json`)).json()).toEqual(image.manifest)
    const torrent = await fetch(`${base}/images/node/image.torrent`)
    expect(torrent.headers.get('content-type')).toBe('application/x-bittorrent')
    expect(Buffer.from(await torrent.arrayBuffer())).toEqual(Buffer.from(image.torrent))
  })

  it('serves byte ranges of the archive, as a BEP 19 web seed needs', async () => {
    const archive = await readFile(image.archivePath)
    const response = await fetch(`${base}/images/node/${image.manifest.archiveFile}`, {
      headers: { range: 'bytes=100-1099' },
    })
    expect(response.status).toBe(206)
    expect(response.headers.get('content-range')).toBe(`bytes 100-1099/${archive.length}`)
    expect(Buffer.from(await response.arrayBuffer())).toEqual(archive.subarray(100, 1100))
    const whole = await fetch(`${base}/images/node/${image.manifest.archiveFile}`)
    // Buffer.equals, not toEqual: vitest compares a 300 KB buffer element by element, in
    // 0.7 s here, and past the test's timeout while the other packages' tests run.
    expect(Buffer.from(await whole.arrayBuffer()).equals(archive)).toBe(true)
  })

  it('answers an unknown image with a coded JSON error naming the published ones', async () => {
    const response = await fetch(`${base}/images/other/manifest.json`)
    expect(response.status).toBe(404)
    expect(await response.json()).toMatchObject({
      error: { code: 'E_UNKNOWN_IMAGE', hint: 'published images: node' },
    })
  })

  it('leaves other paths to the next handler', async () => {
    expect((await fetch(`${base}/announce`)).status).toBe(418)
  })

  it('refuses writes', async () => {
    expect((await fetch(`${base}/images/node/manifest.json`, { method: 'PUT' })).status).toBe(405)
  })
})
