import { once } from 'node:events'
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CACHE_TRUST_STATE_FILE,
  createLogger,
  encodeTrustRecord,
  type ImageManifest,
  INSTALLED_RECORD_PATH,
  parseInfoHash,
  parseInstalledImageRecord,
  parseNodeTrustState,
  raiseTrustState,
  signManifest,
  type TrustedInstall,
} from '@imageswarm/core'
import { type KeyDirectoryFixture, writeKeyDirectoryFixture } from '@imageswarm/core/testing'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type ClientConfig, ClientConfigSchema } from '../src/config.js'
import {
  fetchVerifiedManifest,
  loadTrustRoot,
  readTrustFloor,
  recordInstalledImage,
  recordTrustState,
} from '../src/image-trust.js'
import { resolveInstallParameters } from '../src/parameters.js'

const DAY = 86_400_000
let dir: string
let keys: KeyDirectoryFixture
let server: Server | undefined

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'client-trust-'))
  keys = await writeKeyDirectoryFixture(join(dir, 'keys'), { now: new Date() })
})
afterEach(async () => {
  server?.closeAllConnections()
  if (server) await new Promise((resolve) => server!.close(resolve))
  server = undefined
  await rm(dir, { recursive: true, force: true })
})

function manifest(serial: number, expiresIn = 7 * DAY): ImageManifest {
  return {
    schemaVersion: 1,
    name: 'node',
    archiveFile: 'image-node.tar.zst',
    size: 1024,
    sha256: 'ab'.repeat(32),
    infoHash: parseInfoHash('d2474e86c95b19b8bcfdb92bc12c9d44667cfa36'),
    pieceLength: 16384,
    compression: 'zstd',
    created: new Date().toISOString(),
    serial,
    expires: new Date(Date.now() + expiresIn).toISOString(),
  }
}

function config(overrides: Partial<ClientConfig> = {}): ClientConfig {
  return ClientConfigSchema.parse({
    server: 'http://127.0.0.1:1',
    image: 'node',
    target: join(dir, 'a'),
    trustRoot: join(keys.dir, 'root.pub'),
    ...overrides,
  })
}

/** Log lines, as JSON objects, for what the client says it did. */
function recordingLogger() {
  const lines: { msg: string; [key: string]: unknown }[] = []
  const logger = createLogger({
    name: 'test',
    level: 'debug',
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  })
  return { logger, lines }
}

/** A server that answers each path with `files[path]` (a function: called per request). */
async function serveFiles(files: Record<string, () => Buffer | string>): Promise<string> {
  server = createServer((req, res) => {
    const file = files[new URL(req.url ?? '/', 'http://x').pathname]
    if (!file) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{}')
    res.writeHead(200).end(file())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('trust settings', () => {
  const kernel = new Map([
    ['imageswarm.server', '10.0.0.1'],
    ['imageswarm.image', 'node'],
  ])
  const resolve = (env: NodeJS.ProcessEnv, extra: [string, string][] = []) =>
    resolveInstallParameters({ flags: {}, env, kernel: new Map([...kernel, ...extra]) })

  it('take a root key on the kernel command line only in the insecure test mode', () => {
    const line = ['imageswarm.trust-root-key', 'RWQ'] as [string, string]
    expect(() => resolve({}, [line])).toThrow(/accepted only in the insecure test mode/)
    const { config } = resolve({}, [line, ['imageswarm.insecure-test-mode', '1']])
    expect(config).toMatchObject({ trustRootKey: 'RWQ', insecureTestMode: true })
  })

  it('keep the ramdisk’s root key: the kernel command line can neither replace nor add one', () => {
    const baked = { IMAGESWARM_TRUST_ROOT: '/etc/imageswarm/root.pub' }
    const { config, sources } = resolve(baked, [['imageswarm.trust-root', '/tmp/other.pub']])
    expect(config.trustRoot).toBe('/etc/imageswarm/root.pub')
    expect(sources.trustRoot).toEqual({ source: 'environment', name: 'IMAGESWARM_TRUST_ROOT' })
    expect(() =>
      resolve(baked, [
        ['imageswarm.trust-root-key', 'RWQ'],
        ['imageswarm.insecure-test-mode', '1'],
      ]),
    ).toThrow(/a second root key/)
  })

  it('never fall back to unsigned installs for an inline key without the test mode', async () => {
    await expect(
      loadTrustRoot(config({ trustRoot: undefined, trustRootKey: 'RWQ' })),
    ).rejects.toMatchObject({ code: 'E_CONFIG_INVALID' })
    expect(await loadTrustRoot(config({ trustRoot: undefined }))).toBeUndefined()
  })

  it('refuse a rollback floor without a root to check it against', () => {
    expect(() => resolve({}, [['imageswarm.min-serial', '4']])).toThrow(
      /a rollback floor without a trust root/,
    )
    expect(
      resolve({ IMAGESWARM_TRUST_ROOT: '/r.pub' }, [['imageswarm.min-serial', '4']]).config
        .minSerial,
    ).toBe(4)
  })
})

describe('fetchVerifiedManifest', () => {
  it('checks the key list and the manifest, fetching once more when they were signed between two requests', async () => {
    const keyList = await readFile(join(keys.dir, 'keys.json'))
    const keyListSig = await readFile(join(keys.dir, 'keys.json.minisig'))
    // Signed again at half its lifetime: the same serial, a later expiry.
    const old = signManifest(manifest(5, 4 * DAY), keys.signing)
    const renewed = signManifest(manifest(5, 7 * DAY), keys.signing)
    let manifestRequests = 0
    const url = await serveFiles({
      '/keys.json': () => keyList,
      '/keys.json.minisig': () => keyListSig,
      // The first manifest is the old one, its signature already the renewed one's.
      '/images/node/manifest.json': () => (manifestRequests++ === 0 ? old.bytes : renewed.bytes),
      '/images/node/manifest.json.minisig': () => renewed.signature,
    })
    const { logger, lines } = recordingLogger()
    const root = await loadTrustRoot(config())
    const verified = await fetchVerifiedManifest({
      image: 'node',
      root: root!,
      floor: { reasons: [] },
      request: { server: url, connectTimeoutSeconds: 5 },
      logger,
    })
    expect(verified.manifest.serial).toBe(5)
    expect(verified.signingKeyId).toBe(keys.signing.keyId)
    expect(verified.keyList.version).toBe(1)
    expect(manifestRequests).toBe(2)
    expect(
      lines.some((line) => /fetching the key list and the manifest once more/.test(line.msg)),
    ).toBe(true)
  })

  it('refuses a forgery the second time too, and a key list below the floor', async () => {
    const keyList = await readFile(join(keys.dir, 'keys.json'))
    const keyListSig = await readFile(join(keys.dir, 'keys.json.minisig'))
    const signed = signManifest(manifest(5), keys.signing)
    const forged = Buffer.from(signed.bytes.toString().replace('"size": 1024', '"size": 1025'))
    const url = await serveFiles({
      '/keys.json': () => keyList,
      '/keys.json.minisig': () => keyListSig,
      '/images/node/manifest.json': () => forged,
      '/images/node/manifest.json.minisig': () => signed.signature,
    })
    const root = (await loadTrustRoot(config()))!
    const request = { server: url, connectTimeoutSeconds: 5 }
    const { logger } = recordingLogger()
    await expect(
      fetchVerifiedManifest({ image: 'node', root, floor: { reasons: [] }, request, logger }),
    ).rejects.toMatchObject({ code: 'E_SIGNATURE_INVALID', exitCode: 18 })
    await expect(
      fetchVerifiedManifest({
        image: 'node',
        root,
        floor: { minKeyListVersion: 2, reasons: [] },
        request,
        logger,
      }),
    ).rejects.toMatchObject({ code: 'E_ROLLBACK', exitCode: 21 })
  })
})

describe('what a node records, and reads back as its floor', () => {
  const install: TrustedInstall = {
    image: 'node',
    serial: 9,
    infoHash: 'd2474e86c95b19b8bcfdb92bc12c9d44667cfa36',
    sha256: 'ab'.repeat(32),
    signingKeyId: '0F1E2D3C4B5A6978',
    keyList: { version: 4, sha256: 'c'.repeat(64) },
    installed: new Date('2025-06-01T12:00:00.000Z'),
    server: 'http://10.0.0.1:6969',
  }

  it('writes installed.json into the root and leaves the image’s /etc its mtime', async () => {
    const target = join(dir, 'a')
    await mkdir(join(target, 'etc'), { recursive: true })
    const stamp = new Date('2024-05-01T12:00:00.000Z')
    await utimes(join(target, 'etc'), stamp, stamp)
    const { logger } = recordingLogger()
    await recordInstalledImage(target, install, logger)
    const path = join(target, INSTALLED_RECORD_PATH)
    expect(parseInstalledImageRecord(await readFile(path, 'utf8'), path)).toMatchObject({
      image: 'node',
      serial: 9,
      keyList: { version: 4 },
    })
    expect((await lstat(join(target, 'etc'))).mtime).toEqual(stamp)
    // A later install into a kept root starts from it.
    const floor = await readTrustFloor(config(), logger)
    expect(floor).toMatchObject({ minSerial: 9, minKeyListVersion: 4 })
  })

  it('writes nothing through an image whose etc is a symlink', async () => {
    const target = join(dir, 'a')
    const outside = join(dir, 'outside')
    await mkdir(target, { recursive: true })
    await mkdir(outside)
    await symlink(outside, join(target, 'etc'))
    const { logger, lines } = recordingLogger()
    await recordInstalledImage(target, install, logger)
    await expect(lstat(join(outside, 'imageswarm'))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(lines.some((line) => /not written into the target/.test(line.msg))).toBe(true)
  })

  it('raises the cache’s trust state, which the next install reads before any disk is touched', async () => {
    const cache = join(dir, 'cache')
    await mkdir(cache)
    const { logger } = recordingLogger()
    await recordTrustState(cache, install, logger)
    await recordTrustState(cache, { ...install, serial: 3 }, logger)
    const path = join(cache, CACHE_TRUST_STATE_FILE)
    expect(parseNodeTrustState(await readFile(path, 'utf8'), path).images.node?.serial).toBe(9)
    const floor = await readTrustFloor(config({ cache, minSerial: 2 }), logger)
    expect(floor.minSerial).toBe(9)
    expect(floor.reasons).toEqual([
      'serial 2 (imageswarm.min-serial=)',
      `serial 9 (${path})`,
      `key list version 4 (${path})`,
    ])
    // A damaged state is refused, not read as "no floor".
    await writeFile(path, encodeTrustRecord(raiseTrustState(undefined, install)).slice(0, 40))
    await expect(readTrustFloor(config({ cache }), logger)).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
    })
  })
})
