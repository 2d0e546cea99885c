import { execFileSync } from 'node:child_process'
import { appendFile, copyFile, lstat, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseManifest, sha256File } from '@imageswarm/core'
import parseTorrent from 'parse-torrent'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { resolveSeederConfig, type SeederConfig } from '../src/config.js'
import { type PublishedImage, type PublishOptions, publishImage } from '../src/publish.js'
import { writeSeederTree } from './fixtures.js'

let dir: string
let config: SeederConfig

beforeEach(async () => {
  const tree = await writeSeederTree('seeder-publish-')
  dir = tree.dir
  config = tree.config
  await writeFile(join(tree.root, 'data.bin'), Buffer.alloc(100_000, 7))
})

const opened: PublishedImage[] = []

/** publishImage, with the archive it holds open closed after the test. */
async function publish(options: PublishOptions): Promise<PublishedImage> {
  const image = await publishImage(options)
  opened.push(image)
  return image
}

afterEach(async () => {
  for (const image of opened.splice(0)) await image.archive.close()
  await rm(dir, { recursive: true, force: true })
})

const serverUrl = 'http://10.0.0.1:6969'

describe('publishImage', () => {
  it('writes an archive, a private .torrent with tracker and web seed, and a manifest that agree', async () => {
    const published = await publish({ image: 'node', config, serverUrl })
    expect(published.packed).toBe(true)
    const manifest = parseManifest(
      JSON.parse(await readFile(published.manifestPath, 'utf8')),
      published.manifestPath,
    )
    expect(manifest).toEqual(published.manifest)
    expect(manifest.archiveFile).toBe('image-node.tar.zst')
    expect(manifest.sha256).toBe(await sha256File(published.archivePath))
    const torrent = await parseTorrent(await readFile(published.torrentPath))
    expect(torrent.infoHash).toBe(manifest.infoHash)
    expect(torrent.private).toBe(true)
    expect(torrent.length).toBe(manifest.size)
    expect(torrent.announce).toEqual(['http://10.0.0.1:6969/announce'])
    expect(torrent.urlList).toEqual(['http://10.0.0.1:6969/images/node/image-node.tar.zst'])
  })

  it('reuses an unchanged image’s archive and repoints the .torrent at a new address', async () => {
    const first = await publish({ image: 'node', config, serverUrl })
    const second = await publish({ image: 'node', config, serverUrl: 'http://10.0.0.2:7000' })
    expect(second.packed).toBe(false)
    expect(second.manifest.infoHash).toBe(first.manifest.infoHash)
    const torrent = await parseTorrent(second.torrent)
    expect(torrent.announce).toEqual(['http://10.0.0.2:7000/announce'])
    expect(torrent.infoHash).toBe(first.manifest.infoHash)
  })

  it('packs again when the image root changed, and the infohash follows the content', async () => {
    const first = await publish({ image: 'node', config, serverUrl })
    await appendFile(join(config.imagesDir, 'node/etc/hostname'), 'changed\n')
    const second = await publish({ image: 'node', config, serverUrl })
    expect(second.packed).toBe(true)
    expect(second.manifest.infoHash).not.toBe(first.manifest.infoHash)
  })

  it('packs again on request and, the tree being the same, gives the same infohash', async () => {
    const first = await publish({ image: 'node', config, serverUrl })
    const again = await publish({ image: 'node', config, serverUrl, update: true })
    expect(again.packed).toBe(true)
    expect(again.manifest.sha256).toBe(first.manifest.sha256)
    expect(again.manifest.infoHash).toBe(first.manifest.infoHash)
  })

  // The archive is not fsynced (packArchive): after a crash it may be torn, and the next
  // start must notice before seeding it.
  it.each([
    ['a flipped byte', (bytes: Buffer) => flipByte(bytes, bytes.length - 10)],
    ['a zeroed tail', (bytes: Buffer) => bytes.fill(0, bytes.length >> 1)],
    ['a truncation', (bytes: Buffer) => bytes.subarray(0, bytes.length >> 1)],
  ])(
    'packs again when the archive on disk no longer matches its manifest (%s)',
    async (_, tear) => {
      const first = await publish({ image: 'node', config, serverUrl })
      await writeFile(first.archivePath, tear(await readFile(first.archivePath)))
      const second = await publish({ image: 'node', config, serverUrl })
      expect(second.packed).toBe(true)
      expect(second.manifest.sha256).toBe(first.manifest.sha256)
      expect(await readFile(second.archivePath)).toHaveLength(first.manifest.size)
    },
  )

  it('never follows a symlink planted at the archive’s path: it packs a real archive over it', async () => {
    const first = await publish({ image: 'node', config, serverUrl })
    // The link points at a byte-identical copy: hashing through it would pass.
    const copy = join(dir, 'elsewhere.tar.zst')
    await copyFile(first.archivePath, copy)
    await rm(first.archivePath)
    await symlink(copy, first.archivePath)
    const second = await publish({ image: 'node', config, serverUrl })
    expect(second.packed).toBe(true)
    expect((await lstat(second.archivePath)).isFile()).toBe(true)
    expect(second.manifest.sha256).toBe(first.manifest.sha256)
  })

  it('hands back the archive open: its bytes are the published ones whatever the path names later', async () => {
    const published = await publish({ image: 'node', config, serverUrl })
    const bytes = await readFile(published.archivePath)
    const secret = join(dir, 'secret')
    await writeFile(secret, 'root:$6$secret\n'.repeat(1000))
    await rm(published.archivePath)
    await symlink(secret, published.archivePath)
    expect((await published.archive.read(0, bytes.length)).equals(bytes)).toBe(true)
    expect(await published.archive.check()).toBeUndefined()
  })

  it('notices an archive rewritten in place, even with its mtime set back', async () => {
    const published = await publish({ image: 'node', config, serverUrl })
    // touch -r copies timestamps to the nanosecond; Node's utimes rounds them.
    const times = join(dir, 'times')
    await writeFile(times, '')
    execFileSync('touch', ['-r', published.archivePath, times])
    await writeFile(published.archivePath, flipByte(await readFile(published.archivePath), 100))
    expect(await published.archive.check()).toMatchObject({ code: 'E_SERVER_ARCHIVE_CHANGED' })
    execFileSync('touch', ['-r', times, published.archivePath])
    expect(await published.archive.check()).toMatchObject({
      code: 'E_SERVER_ARCHIVE_CHANGED',
      message: expect.stringMatching(/ctime/),
    })
  })

  it('refuses a missing image root with the path and a hint', async () => {
    await expect(publish({ image: 'absent', config, serverUrl })).rejects.toMatchObject({
      code: 'E_IMAGE_NOT_FOUND',
      path: join(config.imagesDir, 'absent'),
    })
  })

  it('refuses an image name that could escape the images directory', async () => {
    await expect(publish({ image: '../etc', config, serverUrl })).rejects.toMatchObject({
      code: 'E_IMAGE_NAME_INVALID',
    })
  })
})

describe('resolveSeederConfig', () => {
  it('names the bad key', () => {
    expect(() => resolveSeederConfig({ pieceLength: 1000 })).toThrow(/pieceLength/)
    expect(() => resolveSeederConfig({ compression: 'lz4' as 'zstd' })).toThrow(/compression/)
  })
})

function flipByte(bytes: Buffer, at: number): Buffer {
  bytes.writeUInt8(bytes.readUInt8(at) ^ 0xff, at)
  return bytes
}
