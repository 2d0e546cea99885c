import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ImageCatalog } from '../src/catalog.js'
import { resolveSeederConfig, type SeederConfig } from '../src/config.js'
import { handleImageRequest, PUBLISHING_RETRY_AFTER_SECONDS } from '../src/image-routes.js'
import { type PublishedImage, publishImage } from '../src/publish.js'

let dir: string
let config: SeederConfig
let server: Server
let base: string
let catalog: ImageCatalog
let image: PublishedImage
let archive: Buffer

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'seeder-routes-'))
  config = resolveSeederConfig({
    imagesDir: join(dir, 'images'),
    tarballsDir: join(dir, 'tarballs'),
    torrentsDir: join(dir, 'torrents'),
  })
  await mkdir(join(config.imagesDir, 'node'), { recursive: true })
  // Random bytes: the archive must stay large after compression.
  await writeFile(join(config.imagesDir, 'node', 'payload'), randomBytes(300_000))
  server = createServer((req, res) => {
    if (!handleImageRequest(catalog, req, res)) res.writeHead(418).end()
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

beforeEach(async () => {
  // Each test publishes afresh: some of them damage the archive.
  image = await publishImage({
    image: 'node',
    config,
    serverUrl: 'http://127.0.0.1:1',
    update: true,
  })
  archive = await readFile(image.archivePath)
  catalog = new ImageCatalog()
  catalog.add(image)
})

afterEach(async () => {
  await catalog.close()
})

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve))
  await rm(dir, { recursive: true, force: true })
})

const archiveUrl = () => `${base}/images/node/${image.manifest.archiveFile}`

describe('image routes', () => {
  it('lists the published images and those still being published', async () => {
    catalog.expect('login')
    const body = await (await fetch(`${base}/images`)).json()
    expect(body).toEqual({
      images: [
        {
          name: 'node',
          infoHash: image.manifest.infoHash,
          size: image.manifest.size,
          compression: 'zstd',
          format: 'tar',
          created: image.manifest.created,
        },
      ],
      publishing: ['login'],
    })
  })

  it('serves the manifest and the .torrent', async () => {
    expect(await (await fetch(`${base}/images/node/manifest.json`)).json()).toEqual(image.manifest)
    const torrent = await fetch(`${base}/images/node/image.torrent`)
    expect(torrent.headers.get('content-type')).toBe('application/x-bittorrent')
    expect(Buffer.from(await torrent.arrayBuffer())).toEqual(Buffer.from(image.torrent))
  })

  it('answers an image being published with 503, Retry-After and E_IMAGE_PUBLISHING', async () => {
    catalog.expect('login')
    catalog.advance('login', 'packing the image root')
    for (const file of ['manifest.json', 'image.torrent', 'image-login.tar.zst']) {
      const response = await fetch(`${base}/images/login/${file}`)
      expect(response.status).toBe(503)
      expect(response.headers.get('retry-after')).toBe(String(PUBLISHING_RETRY_AFTER_SECONDS))
      expect(await response.json()).toMatchObject({
        error: {
          code: 'E_IMAGE_PUBLISHING',
          message: 'image login is being published (packing the image root)',
        },
      })
    }
  })

  it('serves byte ranges of the archive, as a BEP 19 web seed needs', async () => {
    const response = await fetch(archiveUrl(), { headers: { range: 'bytes=100-1099' } })
    expect(response.status).toBe(206)
    expect(response.headers.get('content-range')).toBe(`bytes 100-1099/${archive.length}`)
    expect(response.headers.get('etag')).toBe(`"${image.manifest.sha256}"`)
    expect(Buffer.from(await response.arrayBuffer())).toEqual(archive.subarray(100, 1100))
    const whole = await fetch(archiveUrl())
    expect(whole.status).toBe(200)
    // Buffer.equals, not toEqual: vitest compares a 300 KB buffer element by element, in
    // 0.7 s here, and past the test's timeout while the other packages' tests run.
    expect(Buffer.from(await whole.arrayBuffer()).equals(archive)).toBe(true)
  })

  it('answers HEAD with the length and no body, and a range past the end with 416', async () => {
    const head = await fetch(archiveUrl(), { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe(String(archive.length))
    expect(head.headers.get('accept-ranges')).toBe('bytes')
    const beyond = await fetch(archiveUrl(), { headers: { range: `bytes=${archive.length}-` } })
    expect(beyond.status).toBe(416)
    expect(beyond.headers.get('content-range')).toBe(`bytes */${archive.length}`)
  })

  it('honours If-Range and If-None-Match with the archive’s ETag', async () => {
    const etag = `"${image.manifest.sha256}"`
    const same = await fetch(archiveUrl(), { headers: { range: 'bytes=0-9', 'if-range': etag } })
    expect(same.status).toBe(206)
    await same.arrayBuffer()
    const other = await fetch(archiveUrl(), { headers: { range: 'bytes=0-9', 'if-range': '"x"' } })
    expect(other.status).toBe(200)
    expect(Buffer.from(await other.arrayBuffer()).equals(archive)).toBe(true)
    const cached = await fetch(archiveUrl(), { headers: { 'if-none-match': etag } })
    expect(cached.status).toBe(304)
  })

  it('counts the archive bytes it serves, per image', async () => {
    await (await fetch(archiveUrl(), { headers: { range: 'bytes=0-99999' } })).arrayBuffer()
    await (await fetch(archiveUrl(), { headers: { range: 'bytes=-1000' } })).arrayBuffer()
    expect(catalog.webSeedUploads()).toEqual([
      { infoHash: image.manifest.infoHash, uploaded: 101_000 },
    ])
  })

  it('serves the published bytes after the archive is replaced by a symlink, never its target', async () => {
    const secret = join(dir, 'shadow')
    await writeFile(secret, 'root:$6$not-for-nodes:19000:0:99999:7:::\n'.repeat(10_000))
    await rm(image.archivePath)
    await symlink(secret, image.archivePath)
    const response = await fetch(archiveUrl())
    expect(response.status).toBe(200)
    const body = Buffer.from(await response.arrayBuffer())
    expect(body.equals(archive)).toBe(true)
    expect(body.includes('not-for-nodes')).toBe(false)
  })

  it('refuses an archive rewritten in place, with E_SERVER_ARCHIVE_CHANGED', async () => {
    const times = join(dir, 'times')
    await writeFile(times, '')
    execFileSync('touch', ['-r', image.archivePath, times])
    const rewritten = Buffer.from(archive)
    rewritten[100] = (rewritten[100] ?? 0) ^ 0xff
    await writeFile(image.archivePath, rewritten)
    // With its times set back to the published ones: the ctime still tells.
    execFileSync('touch', ['-r', times, image.archivePath])
    const response = await fetch(archiveUrl(), { headers: { range: 'bytes=0-999' } })
    expect(response.status).toBe(500)
    expect(await response.json()).toMatchObject({ error: { code: 'E_SERVER_ARCHIVE_CHANGED' } })
    expect(catalog.webSeedUploads()[0]?.uploaded).toBe(0)
  })

  it('answers an unknown image with a coded JSON error naming the published ones', async () => {
    catalog.expect('login')
    const response = await fetch(`${base}/images/other/manifest.json`)
    expect(response.status).toBe(404)
    expect(await response.json()).toMatchObject({
      error: { code: 'E_UNKNOWN_IMAGE', hint: 'published images: node; being published: login' },
    })
  })

  it('leaves other paths to the next handler', async () => {
    expect((await fetch(`${base}/announce`)).status).toBe(418)
  })

  it('refuses writes', async () => {
    expect((await fetch(`${base}/images/node/manifest.json`, { method: 'PUT' })).status).toBe(405)
  })
})
