import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  createLogger,
  type ImageManifest,
  type Logger,
  sha256Hex,
  verifySignedNodeConfig,
} from '@imageswarm/core'
import { writeKeyDirectoryFixture } from '@imageswarm/core/testing'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ImageCatalog } from '../src/catalog.js'
import { resolveInstallRoutesConfig } from '../src/install-config.js'
import { InstallRoutes, type InstallRoutesOptions } from '../src/install-routes.js'
import { ManifestSigner } from '../src/manifest-signer.js'
import type { PublishedImage } from '../src/publish.js'

interface LogRecord {
  level: number
  msg: string
  [key: string]: unknown
}

function recordingLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = []
  const logger = createLogger({
    name: 'test',
    destination: { write: (line: string) => records.push(JSON.parse(line) as LogRecord) },
  })
  return { logger, records }
}

const WARN = 40

let dir: string
let http: Server | undefined
let routes: InstallRoutes | undefined
let base: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'seeder-install-'))
})

afterEach(async () => {
  if (http) {
    http.closeAllConnections()
    await new Promise((resolve) => http?.close(resolve))
  }
  http = undefined
  await routes?.close()
  routes = undefined
  await rm(dir, { recursive: true, force: true })
})

/** InstallRoutes behind a real HTTP server on loopback, for an image being published. */
async function start(
  config: Parameters<typeof resolveInstallRoutesConfig>[0] = {},
  options: Partial<InstallRoutesOptions> = {},
  images = ['compute'],
) {
  const catalog = new ImageCatalog()
  for (const image of images) catalog.expect(image)
  const { logger, records } = recordingLogger()
  routes = await InstallRoutes.create({
    config: resolveInstallRoutesConfig({
      bootDir: join(dir, 'boot'),
      scriptsDir: join(dir, 'scripts'),
      overridesDir: join(dir, 'overrides'),
      ...config,
    }),
    catalog,
    archiveDir: join(dir, 'tarballs'),
    serverUrl: () => 'http://10.0.0.1:6969',
    logger,
    fingerprintIntervalMs: 0,
    ...options,
  })
  const server = createServer((req, res) => {
    if (!routes?.handle(req, res)) res.writeHead(418).end()
  })
  http = server
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { records }
}

/** What `imageswarm initrd --output DIR` leaves: the pair and its manifest, each renamed into place. */
async function writeBootFiles(kernel: Buffer, initrd: Buffer, manifest = { kernel, initrd }) {
  const boot = join(dir, 'boot')
  await mkdir(boot, { recursive: true })
  const digest = (bytes: Buffer) => ({
    bytes: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  })
  for (const [name, bytes] of [
    ['vmlinuz', kernel],
    ['initrd.img', initrd],
    [
      'initrd.manifest.json',
      Buffer.from(
        JSON.stringify({
          format: 1,
          vmlinuz: digest(manifest.kernel),
          initrd: digest(manifest.initrd),
        }),
      ),
    ],
  ] as const) {
    await writeFile(join(boot, `${name}.new`), bytes)
    await rename(join(boot, `${name}.new`), join(boot, name))
  }
}

async function body(path: string) {
  const res = await fetch(`${base}${path}`)
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) }
}

describe('boot files', () => {
  it('answers 404 saying to run imageswarm initrd when the boot directory is missing, and warns once at start', async () => {
    const { records } = await start()
    for (const path of ['/boot/vmlinuz', '/boot/initrd.img', '/boot/ipxe']) {
      const res = await fetch(`${base}${path}`)
      expect(res.status, path).toBe(404)
      expect(((await res.json()) as { error: unknown }).error).toMatchObject({
        code: 'E_IMAGE_NOT_FOUND',
        message: `no installer ramdisk in ${join(dir, 'boot')}: vmlinuz and initrd.img missing (or a symlink, which is not followed)`,
        hint: `build it: imageswarm initrd --output ${join(dir, 'boot')} (or start imageswarm serve with --boot-dir DIR where it is)`,
      })
    }
    const warnings = records.filter((record) => record.level === WARN)
    expect(warnings).toEqual([
      expect.objectContaining({
        msg: 'no installer ramdisk to hand out: /boot/* answer 404 until there is one',
        bootDir: join(dir, 'boot'),
      }),
    ])
  })

  it('hands out a ramdisk built after the server started, then the rebuilt one, without a restart', async () => {
    await start()
    expect((await body('/boot/initrd.img')).status).toBe(404)
    const first = { kernel: randomBytes(5000), initrd: randomBytes(70_000) }
    await writeBootFiles(first.kernel, first.initrd)
    expect((await body('/boot/initrd.img')).bytes).toEqual(first.initrd)
    expect((await body('/boot/vmlinuz')).bytes).toEqual(first.kernel)

    const second = { kernel: randomBytes(6000), initrd: randomBytes(80_000) }
    await writeBootFiles(second.kernel, second.initrd)
    const rebuilt = await body('/boot/initrd.img')
    expect(rebuilt.bytes).toEqual(second.initrd)
    expect(rebuilt.headers.get('etag')).toBe(
      `"${createHash('sha256').update(second.initrd).digest('hex')}"`,
    )
  })

  it('keeps handing out the previous pair while the files do not match their manifest', async () => {
    const first = { kernel: randomBytes(5000), initrd: randomBytes(70_000) }
    await writeBootFiles(first.kernel, first.initrd)
    const { records } = await start()
    // A build half done: a new ramdisk renamed into place, the old manifest still there.
    await writeFile(join(dir, 'boot', 'initrd.img.new'), randomBytes(90_000))
    await rename(join(dir, 'boot', 'initrd.img.new'), join(dir, 'boot', 'initrd.img'))
    expect((await body('/boot/initrd.img')).bytes).toEqual(first.initrd)
    expect(records.filter((record) => record.level === WARN).map((record) => record.msg)).toEqual([
      'the boot files changed and are not a complete pair yet: still handing out the previous ones',
    ])
  })

  it('answers 503 with Retry-After when the only pair there does not match its manifest', async () => {
    const kernel = randomBytes(5000)
    const initrd = randomBytes(7000)
    await writeBootFiles(kernel, initrd, { kernel, initrd: randomBytes(7000) })
    await start()
    const res = await fetch(`${base}/boot/vmlinuz`)
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(((await res.json()) as { error: { code: string; hint: string } }).error).toMatchObject({
      code: 'E_SERVER_ARCHIVE_CHANGED',
      hint: expect.stringContaining('wait for imageswarm initrd to finish'),
    })
  })

  it('serves a site’s own kernel and ramdisk without a manifest', async () => {
    await mkdir(join(dir, 'boot'))
    const initrd = randomBytes(40_000)
    await writeFile(join(dir, 'boot', 'vmlinuz'), randomBytes(100))
    await writeFile(join(dir, 'boot', 'initrd.img'), initrd)
    await start()
    expect((await body('/boot/initrd.img')).bytes).toEqual(initrd)
  })
})

describe('the iPXE script', () => {
  it('is served while the image is still being published, for the server’s only image', async () => {
    await writeBootFiles(randomBytes(100), randomBytes(100))
    await start({ bootAppend: 'si.disks-layout=compute' })
    const res = await fetch(`${base}/boot/ipxe?mac=52:54:00:aa:bb:cc&hostname=`)
    expect(await res.text()).toContain(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: iPXE's ${…} in the expected text, not JavaScript's
      'imageswarm.server=http://10.0.0.1:6969 imageswarm.image=compute BOOTIF=${netX/mac} console=tty0 console=ttyS0,115200n8 si.disks-layout=compute\n',
    )
  })

  it('takes --boot-image for nodes cluster.txt does not name, and refuses a --boot-image the server does not serve', async () => {
    await writeBootFiles(randomBytes(100), randomBytes(100))
    await start({ bootImage: 'login' }, {}, ['compute', 'login'])
    expect(await (await fetch(`${base}/boot/ipxe?mac=52:54:00:aa:bb:cc`)).text()).toContain(
      'imageswarm.image=login ',
    )
    await routes?.close()
    await expect(start({ bootImage: 'storage' }, {}, ['compute', 'login'])).rejects.toMatchObject({
      code: 'E_USAGE',
      message: '--boot-image storage is not one of the images this server serves (compute, login)',
    })
  })

  it('says on the console when cluster.txt gives the node an image the server does not serve', async () => {
    await writeBootFiles(randomBytes(100), randomBytes(100))
    await mkdir(join(dir, 'scripts'), { recursive: true })
    await writeFile(join(dir, 'scripts', 'cluster.txt'), 'node5:gpu:cuda12:\n')
    await start()
    const text = await (
      await fetch(`${base}/boot/ipxe?mac=52:54:00:aa:bb:cc&hostname=node5`)
    ).text()
    expect(text).toBe(
      [
        '#!ipxe',
        `echo imageswarm: error E_UNKNOWN_IMAGE: ${join(dir, 'scripts', 'cluster.txt')} gives node5 image cuda12: this server serves compute`,
        "echo imageswarm: hint: publish cuda12 (imageswarm serve --image cuda12), or change the node's group in cluster.xml and run si_clusterconfig -u",
        'sleep 60',
        'exit 1',
        '',
      ].join('\n'),
    )
  })
})

describe('node.json', () => {
  it('finds the node in scripts/hosts by the address the server’s rule gives (X-Forwarded-For behind a proxy)', async () => {
    await mkdir(join(dir, 'scripts'), { recursive: true })
    await writeFile(join(dir, 'scripts', 'hosts'), '10.9.0.7 node7.cluster node7\n')
    await writeFile(join(dir, 'scripts', 'cluster.txt'), 'node7:rack3:compute:\n')
    await start({}, { nodeAddress: (req) => String(req.headers['x-forwarded-for']) })
    const res = await fetch(`${base}/install/node.json?image=compute`, {
      headers: { 'x-forwarded-for': '10.9.0.7' },
    })
    expect(await res.json()).toEqual({
      image: 'compute',
      hostname: 'node7',
      groups: ['rack3'],
      layoutName: null,
      layout: null,
      overrides: [],
      postInstall: [],
    })
  })

  it('reads cluster.txt again when it changes', async () => {
    await mkdir(join(dir, 'scripts'), { recursive: true })
    await writeFile(join(dir, 'scripts', 'cluster.txt'), 'node7:rack3:compute:\n')
    await start()
    const groups = async () =>
      (
        (await (await fetch(`${base}/install/node.json?hostname=node7`)).json()) as {
          groups: string[]
        }
      ).groups
    expect(await groups()).toEqual(['rack3'])
    await writeFile(
      join(dir, 'scripts', 'cluster.txt'),
      'node7:rack4:compute:\nnode7:gpu:compute:\n',
    )
    expect(await groups()).toEqual(['rack4', 'gpu'])
  })
})

describe('override archives', () => {
  it('packs an override again when its directory changes, and only then', async () => {
    const override = join(dir, 'overrides', 'compute', 'etc')
    await mkdir(override, { recursive: true })
    await writeFile(join(override, 'motd'), 'one\n')
    const { records } = await start()
    const first = await body('/install/overrides/compute.tar')
    const again = await body('/install/overrides/compute.tar')
    expect(again.headers.get('etag')).toBe(first.headers.get('etag'))
    await writeFile(join(override, 'motd'), 'two, longer\n')
    const changed = await body('/install/overrides/compute.tar')
    expect(changed.headers.get('etag')).not.toBe(first.headers.get('etag'))
    expect(changed.bytes.includes('two, longer')).toBe(true)
    expect(
      records.filter((record) => record.override === 'compute').map((record) => record.msg),
    ).toEqual(['packed override', 'override changed: packed it again'])
  })

  it('packs once for many nodes asking at the same moment', async () => {
    await mkdir(join(dir, 'overrides', 'rack1'), { recursive: true })
    await writeFile(join(dir, 'overrides', 'rack1', 'file'), randomBytes(200_000))
    const { records } = await start()
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => body('/install/overrides/rack1.tar')),
    )
    expect(new Set(answers.map((answer) => answer.headers.get('etag'))).size).toBe(1)
    expect(answers.every((answer) => answer.status === 200)).toBe(true)
    expect(records.filter((record) => record.msg === 'packed override')).toHaveLength(1)
  })
})

describe('signed node configs (serve --keys)', () => {
  /** A catalog holding image compute as published with a signed manifest of `serial`. */
  function publishedCatalog(serial: number | undefined, expires: string | undefined) {
    const catalog = new ImageCatalog()
    const manifest = {
      name: 'compute',
      ...(serial === undefined ? {} : { serial }),
      ...(expires === undefined ? {} : { expires }),
    } as ImageManifest
    // Only the manifest is read by the install routes.
    catalog.add({ manifest, archive: { close: async () => {} } } as unknown as PublishedImage)
    return catalog
  }

  async function nodeFiles() {
    await mkdir(join(dir, 'overrides', 'compute', 'etc'), { recursive: true })
    await writeFile(join(dir, 'overrides', 'compute', 'etc', 'motd'), 'compute nodes\n')
    await mkdir(join(dir, 'scripts', 'post-install'), { recursive: true })
    await writeFile(join(dir, 'scripts', 'post-install', '10all.first'), '#!/bin/sh\necho hi\n')
  }

  it('signs each answer for the node’s MAC, the image’s serial and expiry, and the digest of every file it names', async () => {
    await nodeFiles()
    const now = new Date()
    const keys = await writeKeyDirectoryFixture(join(dir, 'keys'), { now })
    const signer = await ManifestSigner.open({ keys: keys.dir, manifestLifetime: 3600 })
    const expires = new Date(now.getTime() + 3_600_000).toISOString()
    await start({}, { catalog: publishedCatalog(7, expires), signer })
    const query = '?image=compute&mac=52-54-00-AA-BB-CC&hostname=node1'
    const config = await body(`/install/node.json${query}`)
    const signature = await body(`/install/node.json.minisig${query}`)
    expect(config.status).toBe(200)
    expect(signature.status).toBe(200)
    const tar = await body('/install/overrides/compute.tar')
    const verified = verifySignedNodeConfig(
      config.bytes,
      signature.bytes.toString('utf8'),
      { keyList: keys.keyList, now, image: 'compute', serial: 7, mac: '52:54:00:aa:bb:cc' },
      { config: 'node.json', signature: 'node.json.minisig' },
    )
    expect(verified.keyId).toBe(keys.signing.keyId)
    expect(verified.trustedComment).toBe(
      `imageswarm node-config image=compute serial=7 mac=52:54:00:aa:bb:cc hostname=node1 expires=${expires}`,
    )
    expect(verified.config.signed).toEqual({
      mac: '52:54:00:aa:bb:cc',
      serial: 7,
      expires,
      overrideSha256: { compute: sha256Hex(tar.bytes) },
      postInstallSha256: { '10all.first': sha256Hex(Buffer.from('#!/bin/sh\necho hi\n')) },
    })
    // The same question gets the same bytes: the signature, asked for separately, fits them.
    expect((await body(`/install/node.json${query}`)).bytes.equals(config.bytes)).toBe(true)
    // A changed script changes the answer (and so what a node checks the script against).
    await writeFile(join(dir, 'scripts', 'post-install', '10all.first'), '#!/bin/sh\nrm -rf /\n')
    const changed = await body(`/install/node.json${query}`)
    expect(changed.bytes.equals(config.bytes)).toBe(false)
  })

  it('answers as before, and 404 for the signature, without a signer or for an unsigned manifest', async () => {
    await nodeFiles()
    await start({}, { catalog: publishedCatalog(undefined, undefined) })
    const plain = await body('/install/node.json?image=compute&mac=52:54:00:aa:bb:cc')
    expect(JSON.parse(plain.bytes.toString('utf8'))).not.toHaveProperty('signed')
    const signature = await body('/install/node.json.minisig?image=compute&mac=52:54:00:aa:bb:cc')
    expect(signature.status).toBe(404)
    expect(JSON.parse(signature.bytes.toString('utf8')).error.code).toBe('E_SIGNATURE_MISSING')
  })
})
