import { execFileSync } from 'node:child_process'
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isImageSwarmError, sha256File } from '@imageswarm/core'
import parseTorrent from 'parse-torrent'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { SeederConfig } from '../src/config.js'
import { type PublishedImage, type PublishOptions, publishImage } from '../src/publish.js'
import { writeSeederTree } from './fixtures.js'

let dir: string
let config: SeederConfig
let root: string

beforeEach(async () => {
  const tree = await writeSeederTree('seeder-tarball-')
  ;({ dir, config, root } = tree)
  await writeFile(join(root, 'data.bin'), Buffer.alloc(100_000, 7))
  await mkdir(config.tarballsDir, { recursive: true })
})

const opened: PublishedImage[] = []

async function publish(options: Omit<PublishOptions, 'serverUrl'>): Promise<PublishedImage> {
  const image = await publishImage({ serverUrl: 'http://10.0.0.1:6969', ...options })
  opened.push(image)
  return image
}

afterEach(async () => {
  for (const image of opened.splice(0)) await image.archive.close()
  await rm(dir, { recursive: true, force: true })
})

/** A tarball the way SystemImager's si_installbtimage made it: `cd ROOT && tar -c[z]Spf FILE .` */
function systemImagerTar(file: string, gzip: boolean): void {
  execFileSync('tar', [`-c${gzip ? 'z' : ''}Spf`, file, '.'], { cwd: root })
}

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  )
}

describe('publishing a tarball as it is', () => {
  it('serves a SystemImager image-NAME.tar.gz without an image root, its bytes untouched, the same infohash every run', async () => {
    const tarball = join(config.tarballsDir, 'image-node.tar.gz')
    systemImagerTar(tarball, true)
    const before = await sha256File(tarball)
    const { mtimeMs } = await stat(tarball)
    await rm(root, { recursive: true })

    const first = await publish({ image: 'node', config })
    expect(first.packed).toBe(false)
    expect(first.archivePath).toBe(tarball)
    expect(first.manifest).toMatchObject({
      archiveFile: 'image-node.tar.gz',
      compression: 'gzip',
      sha256: before,
      sourceFingerprint: 'as-is',
    })
    expect(first.torrentPath).toBe(join(config.torrentsDir, 'image-node.tar.gz.torrent'))
    const torrent = await parseTorrent(await readFile(first.torrentPath))
    expect(torrent.infoHash).toBe(first.manifest.infoHash)
    expect(torrent.length).toBe((await stat(tarball)).size)
    await first.archive.close()

    // Again, and again with the manifest and torrent gone: the same infohash.
    const second = await publish({ image: 'node', config })
    expect(second.manifest.infoHash).toBe(first.manifest.infoHash)
    await second.archive.close()
    await rm(config.torrentsDir, { recursive: true })
    const third = await publish({ image: 'node', config })
    expect(third.manifest.infoHash).toBe(first.manifest.infoHash)
    expect(await sha256File(tarball)).toBe(before)
    expect((await stat(tarball)).mtimeMs).toBe(mtimeMs)
  })

  it('serves an uncompressed image-NAME.tar, recording compression none', async () => {
    systemImagerTar(join(config.tarballsDir, 'image-node.tar'), false)
    await rm(root, { recursive: true })
    const published = await publish({ image: 'node', config })
    expect(published.manifest).toMatchObject({ archiveFile: 'image-node.tar', compression: 'none' })
  })

  it('says what is missing when there is neither an image root nor a tarball', async () => {
    await rm(root, { recursive: true })
    const err = await errorOf(publish({ image: 'node', config }))
    expect(isImageSwarmError(err) && err.code).toBe('E_IMAGE_NOT_FOUND')
    expect(String((err as Error).message)).toMatch(/no image root .* and no tarball image-node/)
  })
})

describe('files imageswarm did not write', () => {
  it('refuses to overwrite a SystemImager tarball at the archive path, naming it and what to do', async () => {
    const tarball = join(config.tarballsDir, 'image-node.tar.gz')
    systemImagerTar(tarball, true)
    const before = await sha256File(tarball)
    const err = await errorOf(
      publish({ image: 'node', config: { ...config, compression: 'gzip' } }),
    )
    expect(isImageSwarmError(err) && err.code).toBe('E_FOREIGN_FILE')
    expect(isImageSwarmError(err) && err.path).toBe(tarball)
    expect(isImageSwarmError(err) && err.hint).toMatch(/move the image root .* away/)
    expect(await sha256File(tarball)).toBe(before)
    // Asked to pack again, still not.
    const update = await errorOf(
      publish({ image: 'node', config: { ...config, compression: 'gzip' }, update: true }),
    )
    expect(isImageSwarmError(update) && update.code).toBe('E_FOREIGN_FILE')
    expect(await sha256File(tarball)).toBe(before)
  })

  it('refuses to overwrite a .torrent imageswarm did not make', async () => {
    await mkdir(config.torrentsDir, { recursive: true })
    const foreign = join(config.torrentsDir, 'image-node.tar.zst.torrent')
    await writeFile(foreign, 'd8:announce27:http://old-tracker/announcee')
    const err = await errorOf(publish({ image: 'node', config }))
    expect(isImageSwarmError(err) && err.code).toBe('E_FOREIGN_FILE')
    expect(await readFile(foreign, 'utf8')).toBe('d8:announce27:http://old-tracker/announcee')
  })

  it('packs over its own archive, and keeps a tarball it packed its own after the root left and came back', async () => {
    const first = await publish({ image: 'node', config, update: true })
    await first.archive.close()
    const again = await publish({ image: 'node', config, update: true })
    expect(again.packed).toBe(true)
    await again.archive.close()
    await rename(root, `${root}.away`)
    const asIs = await publish({ image: 'node', config })
    expect(asIs.manifest.infoHash).toBe(first.manifest.infoHash)
    await asIs.archive.close()
    await rename(`${root}.away`, root)
    const repacked = await publish({ image: 'node', config, update: true })
    expect(repacked.packed).toBe(true)
    expect(repacked.manifest.infoHash).toBe(first.manifest.infoHash)
  })

  it('takes an archive for its own when a publication stopped before writing the manifest', async () => {
    const first = await publish({ image: 'node', config: { ...config, compression: 'gzip' } })
    await first.archive.close()
    // Killed after packing and writing the .torrent, before the manifest.
    await rm(first.manifestPath)
    const again = await publish({ image: 'node', config: { ...config, compression: 'gzip' } })
    expect(again.packed).toBe(true)
    expect(again.manifest.infoHash).toBe(first.manifest.infoHash)
  })

  it('serves an archive published with gzip or none as it is when no compression is asked (no repack to zstd)', async () => {
    const tar = await publish({ image: 'node', config: { ...config, compression: 'none' } })
    await tar.archive.close()
    const served = await publish({ image: 'node', config })
    expect(served.packed).toBe(false)
    expect(served.archivePath).toBe(tar.archivePath)
    expect(served.manifest.infoHash).toBe(tar.manifest.infoHash)
  })
})
