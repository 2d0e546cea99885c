import { existsSync } from 'node:fs'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import {
  createLogger,
  encodePublicKeyFile,
  generateSecretKey,
  type ImageManifest,
  type KeyList,
  nextKeyList,
  parseInfoHash,
  readKeyDirectory,
  signingKeyEntry,
  signKeyList,
  verifySignedManifest,
  writeKeyList,
  writeSecretKeyFile,
} from '@imageswarm/core'
import { type KeyDirectoryFixture, writeKeyDirectoryFixture } from '@imageswarm/core/testing'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ImageCatalog } from '../src/catalog.js'
import type { SeederConfig } from '../src/config.js'
import { handleImageRequest } from '../src/image-routes.js'
import { ManifestSigner, nextSerial } from '../src/manifest-signer.js'
import { type PublishedImage, publishImage, resignPublishedImage } from '../src/publish.js'
import { SignatureRenewal } from '../src/signature-renewal.js'
import { handleKeyListRequest } from '../src/trust-routes.js'
import { writeSeederTree } from './fixtures.js'

const DAY = 86_400_000
const serverUrl = 'http://10.0.0.1:6969'

let dir: string
let config: SeederConfig
let keys: KeyDirectoryFixture
let clock: Date
const opened: PublishedImage[] = []

beforeEach(async () => {
  const tree = await writeSeederTree('seeder-signing-')
  dir = tree.dir
  config = tree.config
  clock = new Date()
  keys = await writeKeyDirectoryFixture(join(dir, 'keys'), { now: clock })
})

afterEach(async () => {
  for (const image of opened.splice(0)) await image.archive.close()
  await rm(dir, { recursive: true, force: true })
})

function openSigner(lifetimeSeconds = 7 * 24 * 3600): Promise<ManifestSigner> {
  return ManifestSigner.open({
    keys: keys.dir,
    manifestLifetime: lifetimeSeconds,
    now: () => clock,
  })
}

async function publish(signer?: ManifestSigner, update = false): Promise<PublishedImage> {
  const image = await publishImage({
    image: 'node',
    config,
    serverUrl,
    update,
    ...(signer ? { signer } : {}),
  })
  opened.push(image)
  return image
}

/** What a node does with the files on disk: verify the bytes, then parse them. */
async function verifyOnDisk(image: PublishedImage, keyList: KeyList = keys.keyList) {
  const bytes = await readFile(image.manifestPath)
  const signature = await readFile(image.manifestSignaturePath, 'utf8')
  return verifySignedManifest(bytes, signature, { keyList, now: clock, image: 'node' }, 'disk')
}

describe('nextSerial', () => {
  const archive = { sha256: 'a'.repeat(64), infoHash: parseInfoHash('b'.repeat(40)) }
  it('starts every image at version 1, signed or not', () => {
    expect(nextSerial(undefined, archive)).toBe(1)
    expect(nextSerial({ ...archive, serial: undefined }, archive)).toBe(1)
  })
  it('keeps the serial for the same archive and adds one for another', () => {
    expect(nextSerial({ ...archive, serial: 7 }, archive)).toBe(7)
    expect(nextSerial({ ...archive, serial: 7 }, { ...archive, sha256: 'c'.repeat(64) })).toBe(8)
    expect(
      nextSerial(
        { ...archive, serial: 7 },
        { ...archive, infoHash: parseInfoHash('d'.repeat(40)) },
      ),
    ).toBe(8)
  })
})

describe('publishing with --keys', () => {
  it('writes the manifest, then its signature, which verifies under the key list', async () => {
    const image = await publish(await openSigner())
    const { manifest, keyId } = await verifyOnDisk(image)
    expect(manifest.serial).toBe(1)
    expect(Date.parse(manifest.expires)).toBe(clock.getTime() + 7 * DAY)
    expect(keyId).toBe(keys.signing.keyId)
    expect(image.manifestBytes).toEqual(await readFile(image.manifestPath))
    expect(image.signingKeyId).toBe(keys.signing.keyId)
  })

  it('keeps the serial when the archive is reused or packed again the same, adds one when it changes', async () => {
    const signer = await openSigner()
    await publish(signer)
    clock = new Date(clock.getTime() + DAY)
    const reused = await publish(signer)
    expect(reused.packed).toBe(false)
    expect((await verifyOnDisk(reused)).manifest).toMatchObject({
      serial: 1,
      expires: new Date(clock.getTime() + 7 * DAY).toISOString(),
    })
    // --update-image packs the same tree to the same bytes: the same version.
    const repacked = await publish(signer, true)
    expect(repacked.packed).toBe(true)
    expect(repacked.manifest.serial).toBe(1)
    await writeFile(join(config.imagesDir, 'node', 'etc/motd'), 'a change\n')
    const changed = await publish(signer)
    expect(changed.packed).toBe(true)
    expect((await verifyOnDisk(changed)).manifest.serial).toBe(2)
  })

  it('numbers unsigned publications too, dropping a stale signature', async () => {
    const unsigned = await publish()
    expect(unsigned.manifest.serial).toBe(1)
    expect(unsigned.manifestSignature).toBeUndefined()
    expect(existsSync(unsigned.manifestSignaturePath)).toBe(false)
    await publish(await openSigner())
    expect(existsSync(unsigned.manifestSignaturePath)).toBe(true)
    await writeFile(join(config.imagesDir, 'node', 'etc/motd'), 'a change\n')
    const again = await publish()
    expect(again.manifest.serial).toBe(2)
    expect(again.manifest.expires).toBeUndefined()
    expect(existsSync(again.manifestSignaturePath)).toBe(false)
  })
})

describe('ManifestSigner', () => {
  it('refuses a key directory whose key list accepts none of its signing keys', async () => {
    const list = nextKeyList(keys.keyList, {
      now: clock,
      expires: new Date(clock.getTime() + 30 * DAY),
      revoke: [keys.signing.keyId],
    })
    await writeKeyList(keys.dir, signKeyList(list, keys.root))
    await expect(openSigner()).rejects.toMatchObject({ code: 'E_KEY_FILE_INVALID' })
  })

  it('is due to sign again at half the lifetime, or when another key signs now', async () => {
    const signer = await openSigner(1000)
    const signed = signer.sign(
      {
        schemaVersion: 1,
        name: 'node',
        archiveFile: 'image-node.tar.zst',
        size: 1,
        sha256: 'a'.repeat(64),
        infoHash: parseInfoHash('b'.repeat(40)),
        pieceLength: 16384,
        compression: 'zstd',
        created: clock.toISOString(),
      } satisfies ImageManifest,
      3,
    )
    expect(signed.manifest.serial).toBe(3)
    expect(signer.isDue(signed.manifest, signed.signingKeyId)).toBe(false)
    clock = new Date(clock.getTime() + 499_000)
    expect(signer.isDue(signed.manifest, signed.signingKeyId)).toBe(false)
    clock = new Date(clock.getTime() + 1000)
    expect(signer.isDue(signed.manifest, signed.signingKeyId)).toBe(true)
    expect(signer.isDue({ ...signed.manifest }, 'FFFFFFFFFFFFFFFF')).toBe(true)
  })

  it('says once, as an error, that the key list in use has expired', async () => {
    const lines: { msg: string }[] = []
    const logger = createLogger({
      name: 'test',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    })
    const signer = await ManifestSigner.open({
      keys: keys.dir,
      manifestLifetime: 3600,
      now: () => clock,
      logger,
    })
    signer.checkKeyListExpiry()
    clock = new Date(Date.parse(keys.keyList.expires) + 1000)
    signer.checkKeyListExpiry()
    signer.checkKeyListExpiry()
    expect(lines.filter((line) => /the key list has expired/.test(line.msg))).toHaveLength(1)
  })

  it('takes a rotated key list from disk, signs with the new key, and ignores an older list', async () => {
    const signer = await openSigner()
    expect(await signer.reloadIfChanged()).toBe(false)
    const second = generateSecretKey()
    await writeSecretKeyFile(join(keys.dir, 'signing-2.key'), second, 'signing', clock)
    await writeFile(join(keys.dir, 'signing-2.pub'), encodePublicKeyFile(second.publicKey))
    const v2 = nextKeyList(keys.keyList, {
      now: clock,
      expires: new Date(clock.getTime() + 30 * DAY),
      add: [signingKeyEntry(second.publicKey, clock)],
    })
    const signedV2 = signKeyList(v2, keys.root)
    await writeKeyList(keys.dir, signedV2)
    expect(await signer.reloadIfChanged()).toBe(true)
    expect(signer.signingKeyId).toBe(second.keyId)
    expect(signer.keyListBytes).toEqual(signedV2.bytes)
    expect((await readKeyDirectory(keys.dir, { now: clock })).keyList.version).toBe(2)
    // An old keys.json copied back: nodes that saw version 2 would refuse version 1.
    await writeFile(
      join(keys.dir, 'keys.json.minisig'),
      await readFile(join(keys.dir, 'history/keys-1.json.minisig')),
    )
    await writeFile(
      join(keys.dir, 'keys.json'),
      await readFile(join(keys.dir, 'history/keys-1.json')),
    )
    expect(await signer.reloadIfChanged()).toBe(false)
    expect(signer.keyList.version).toBe(2)
  })
})

describe('serving signed images', () => {
  let server: Server
  let base: string
  let catalog: ImageCatalog
  let signer: ManifestSigner | undefined

  beforeEach(async () => {
    catalog = new ImageCatalog()
    signer = undefined
    server = createServer((req, res) => {
      if (handleImageRequest(catalog, req, res)) return
      if (handleKeyListRequest(signer, req, res)) return
      res.writeHead(418).end()
    })
    server.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve))
  })

  it('serves the manifest file, its signature and the key list byte for byte', async () => {
    signer = await openSigner()
    const image = await publish(signer)
    catalog.add(image)
    const get = async (path: string) => {
      const res = await fetch(`${base}${path}`)
      expect(res.status, path).toBe(200)
      return Buffer.from(await res.arrayBuffer())
    }
    expect(await get('/images/node/manifest.json')).toEqual(await readFile(image.manifestPath))
    expect(await get('/images/node/manifest.json.minisig')).toEqual(
      await readFile(image.manifestSignaturePath),
    )
    expect(await get('/keys.json')).toEqual(await readFile(join(keys.dir, 'keys.json')))
    expect(await get('/keys.json.minisig')).toEqual(
      await readFile(join(keys.dir, 'keys.json.minisig')),
    )
  })

  it('answers 404 E_SIGNATURE_MISSING for the signature and key list of an unsigned server', async () => {
    catalog.add(await publish())
    for (const path of ['/images/node/manifest.json.minisig', '/keys.json', '/keys.json.minisig']) {
      const res = await fetch(`${base}${path}`)
      expect(res.status, path).toBe(404)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
        'E_SIGNATURE_MISSING',
      )
    }
  })

  it('signs a served manifest again at half its lifetime, same serial and archive, and serves it', async () => {
    signer = await openSigner(3600)
    const first = await publish(signer)
    catalog.add(first)
    const renewal = new SignatureRenewal({ catalog, signer })
    await renewal.renew()
    expect(catalog.get('node')).toBe(first)
    clock = new Date(clock.getTime() + 1800_000)
    await renewal.renew()
    const renewed = catalog.get('node')!
    expect(renewed).not.toBe(first)
    expect(renewed.archive).toBe(first.archive)
    const { manifest } = await verifyOnDisk(renewed)
    expect(manifest).toMatchObject({ serial: 1, sha256: first.manifest.sha256 })
    expect(Date.parse(manifest.expires)).toBe(clock.getTime() + 3600_000)
    const served = Buffer.from(
      await (await fetch(`${base}/images/node/manifest.json`)).arrayBuffer(),
    )
    expect(served).toEqual(await readFile(renewed.manifestPath))
    // The signature written last matches what is served.
    expect(await readFile(renewed.manifestSignaturePath, 'utf8')).toBe(renewed.manifestSignature)
    expect(await resignPublishedImage(renewed, signer)).toMatchObject({ manifest: { serial: 1 } })
  })
})
