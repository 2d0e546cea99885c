import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  decryptFile,
  type GroupKey,
  generateArchiveKey,
  generateGroupKey,
  PieceHasher,
  parseManifest,
  unwrapArchiveKey,
} from '@imageswarm/core'
import { type KeyDirectoryFixture, writeKeyDirectoryFixture } from '@imageswarm/core/testing'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { resolveSeederConfig, type SeederConfig } from '../src/config.js'
import {
  compareWrappings,
  encryptionOf,
  extendWrappings,
  sealArchive,
} from '../src/encrypted-archive.js'
import { ManifestSigner } from '../src/manifest-signer.js'
import { type PublishedImage, publishImage } from '../src/publish.js'

const serverUrl = 'http://10.0.0.1:6969'
const MARKER = 'SEEDER-ENCRYPTED-ARCHIVE-MARKER'

let dir: string
let config: SeederConfig
let keys: KeyDirectoryFixture
const opened: PublishedImage[] = []

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'seeder-encrypted-'))
  config = resolveSeederConfig({
    imagesDir: join(dir, 'images'),
    tarballsDir: join(dir, 'tarballs'),
    torrentsDir: join(dir, 'torrents'),
    pieceLength: 16 * 1024,
    compression: 'none',
  })
  const root = join(config.imagesDir, 'node')
  await mkdir(join(root, 'etc'), { recursive: true })
  await writeFile(join(root, 'etc/shadow-marker'), `${MARKER}\n`)
  await writeFile(join(root, 'data.bin'), Buffer.alloc(200_000, 7))
  keys = await writeKeyDirectoryFixture(join(dir, 'keys'), { now: new Date() })
})

afterEach(async () => {
  for (const image of opened.splice(0)) await image.archive.close()
  await rm(dir, { recursive: true, force: true })
})

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

async function publish(groupKeys: readonly GroupKey[], update = false): Promise<PublishedImage> {
  const signer = await ManifestSigner.open({ keys: keys.dir, manifestLifetime: 3600 })
  const image = await publishImage({
    image: 'node',
    config,
    serverUrl,
    update,
    signer,
    encryption: { groupKeys },
  })
  opened.push(image)
  return image
}

async function manifestOnDisk(image: PublishedImage) {
  return parseManifest(JSON.parse(await readFile(image.manifestPath, 'utf8')), image.manifestPath)
}

describe('sealArchive', () => {
  it('writes a ciphertext whose SHA-256 and pieces it reports, and that opens to the plaintext', async () => {
    const plaintext = join(dir, 'plain.tar')
    const bytes = Buffer.concat([Buffer.from(MARKER), Buffer.alloc(300_000, 3)])
    await writeFile(plaintext, bytes)
    const key = generateArchiveKey()
    const binding = { image: 'node', serial: 4 }
    const sealed = await sealArchive(plaintext, join(dir, 'plain.tar.enc'), key, binding, 65536)

    const ciphertext = await readFile(join(dir, 'plain.tar.enc'))
    expect(ciphertext.includes(MARKER)).toBe(false)
    expect(sealed.size).toBe(ciphertext.length)
    expect(sealed.sha256).toBe(sha256(ciphertext))
    const pieces = new PieceHasher(65536)
    pieces.update(ciphertext)
    expect(sealed.pieces.equals(pieces.digest())).toBe(true)

    await decryptFile(join(dir, 'plain.tar.enc'), join(dir, 'opened.tar'), key, binding)
    expect((await readFile(join(dir, 'opened.tar'))).equals(bytes)).toBe(true)
  })
})

describe('wrappings across versions', () => {
  const compute = generateGroupKey('compute')
  const login = generateGroupKey('login')
  const archiveKey = generateArchiveKey()
  const previous = encryptionOf(archiveKey, { size: 10, sha256: 'ab'.repeat(32) }, [compute, login])

  it('tells same groups, groups added, and a group revoked or rekeyed apart', () => {
    expect(compareWrappings(previous, [compute, login])).toBe('same')
    expect(compareWrappings(previous, [compute, login, generateGroupKey('lab')])).toBe('added')
    expect(compareWrappings(previous, [compute])).toBe('changed')
    expect(compareWrappings(previous, [compute, generateGroupKey('login')])).toBe('changed')
  })

  it('wraps the same archive key for a group added since, unwrapping it with a current group', () => {
    const lab = generateGroupKey('lab')
    const extended = extendWrappings(previous, [compute, login, lab], 'image node')
    expect(extended.archiveKeyId).toBe(previous.archiveKeyId)
    expect(extended.wrappedKeys.map((w) => w.group)).toEqual(['compute', 'login', 'lab'])
    const opened = unwrapArchiveKey(extended.wrappedKeys, extended.archiveKeyId, lab, 'image node')
    expect(opened.key.equals(archiveKey.key)).toBe(true)
  })
})

describe('publishImage with encryption', () => {
  it('keeps the ciphertext, its infohash and serial when the same plaintext is packed again', async () => {
    const groups = [generateGroupKey('compute'), generateGroupKey('login')]
    const first = await publish(groups)
    const before = await manifestOnDisk(first)
    expect(before.serial).toBe(1)
    const ciphertext = await readFile(first.archivePath)
    expect(ciphertext.includes(MARKER)).toBe(false)

    // --update-image: packed again, the plaintext is the same, so the ciphertext stays.
    const repacked = await publish(groups, true)
    expect(repacked.packed).toBe(true)
    const after = await manifestOnDisk(repacked)
    expect(after).toMatchObject({
      serial: before.serial,
      sha256: before.sha256,
      infoHash: before.infoHash,
      encryption: { archiveKeyId: before.encryption!.archiveKeyId },
    })
    expect((await readFile(repacked.archivePath)).equals(ciphertext)).toBe(true)
  })

  it('gives a new archive key, ciphertext and serial when a group is revoked', async () => {
    const compute = generateGroupKey('compute')
    const login = generateGroupKey('login')
    const before = await manifestOnDisk(await publish([compute, login]))

    const after = await manifestOnDisk(await publish([compute]))
    expect(after.serial).toBe(before.serial! + 1)
    expect(after.infoHash).not.toBe(before.infoHash)
    expect(after.sha256).not.toBe(before.sha256)
    expect(after.encryption!.archiveKeyId).not.toBe(before.encryption!.archiveKeyId)
    expect(after.encryption!.wrappedKeys.map((w) => w.group)).toEqual(['compute'])
    expect(() =>
      unwrapArchiveKey(after.encryption!.wrappedKeys, after.encryption!.archiveKeyId, login, 'x'),
    ).toThrow(expect.objectContaining({ code: 'E_ARCHIVE_KEY_UNAVAILABLE' }))
  })
})
