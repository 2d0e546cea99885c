// Signed images end to end (issue 17, phase 2a; docs/trust.md): a real `imageswarm serve
// --keys` and `publish --keys`, real `imageswarm install --trust-root` processes, and an
// attacker in between: an HTTP proxy in front of the real server that rewrites its answers
// (a forged manifest, another image's .torrent, a removed signature, an old signed manifest
// replayed, a key list of another root). Every refusal has its own error code and exit
// status, and leaves the target root exactly as it was.
import { execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  CACHE_TRUST_STATE_FILE,
  encodeManifest,
  INSTALLED_RECORD_PATH,
  parseInstalledImageRecord,
  parseNodeTrustState,
  parsePublicKeyFile,
  parseSignature,
} from '@imageswarm/core'
import { compareTrees, snapshotTree } from '@imageswarm/core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { useHttpServers } from './helpers/http-servers.js'
import { type Server, useServerFixture } from './helpers/server-fixture.js'
import {
  addSampleImage,
  clientDirs,
  makeServerLayout,
  type ServerLayout,
} from './helpers/workspace.js'

type Install = Awaited<ReturnType<typeof runInstall>>

const execFileAsync = promisify(execFile)
const env = useServerFixture()
const { startInterceptingProxy } = useHttpServers()

/** Runs the imageswarm CLI (key commands, publish) and returns its output. */
async function imageswarm(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync(process.execPath, [CLI, ...args], { maxBuffer: 16 << 20 })
}

async function generateKeys(dir: string): Promise<string> {
  const keys = join(dir, 'keys')
  await imageswarm(['key', 'generate', '--output', keys])
  return keys
}

async function keyIdOf(publicKeyFile: string): Promise<string> {
  return parsePublicKeyFile(await readFile(publicKeyFile, 'utf8'), publicKeyFile).keyId
}

async function fetchBytes(url: string): Promise<Buffer> {
  const answer = await fetch(url)
  if (!answer.ok) throw new Error(`GET ${url}: HTTP ${answer.status}`)
  return Buffer.from(await answer.arrayBuffer())
}

/** What an attacker replays: a manifest's exact bytes and its signature, as once served. */
interface SignedFiles {
  manifest: Buffer
  signature: Buffer
}

async function captureSigned(server: string, image = 'node'): Promise<SignedFiles> {
  return {
    manifest: await fetchBytes(`${server}/images/${image}/manifest.json`),
    signature: await fetchBytes(`${server}/images/${image}/manifest.json.minisig`),
  }
}

function pathOf(req: IncomingMessage): string {
  return new URL(req.url ?? '/', 'http://proxy').pathname
}

function answer(res: ServerResponse, body: Buffer, contentType = 'application/octet-stream') {
  res.writeHead(200, { 'content-type': contentType, 'content-length': body.length })
  res.end(body)
}

/** A proxy that answers `replaced` paths itself and passes everything else to `upstream`. */
function startRewritingProxy(upstream: string, replaced: Record<string, Buffer | 404>) {
  return startInterceptingProxy(upstream, (req, res) => {
    const body = replaced[pathOf(req)]
    if (body === undefined) return false
    if (body === 404) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { code: 'E_SIGNATURE_MISSING', message: 'not signed' } }))
    } else {
      answer(res, body)
    }
    return true
  })
}

/** A target root as the installer leaves it before the image (lost+found), and its snapshot. */
async function bareTarget(layout: ServerLayout, n: number, group: string) {
  const dirs = clientDirs(layout, n, group)
  await mkdir(join(dirs.target, 'lost+found'), { recursive: true })
  return { ...dirs, before: await snapshotTree(dirs.target) }
}

/**
 * The install was refused with `code` and exit status `exit`, a hint for the operator, and
 * nothing was written: the target is as it was, and no archive was staged.
 */
async function expectRefused(
  result: Install,
  code: string,
  exit: number,
  dirs: { target: string; staging: string; before: Awaited<ReturnType<typeof snapshotTree>> },
) {
  expect(result.failed?.error?.code, JSON.stringify(result.logs.slice(-6))).toBe(code)
  expect(result.code).toBe(exit)
  expect(result.failed.error.hint).toEqual(expect.any(String))
  expect(await snapshotTree(dirs.target)).toEqual(dirs.before)
  expect(existsSync(dirs.staging) ? readdirSync(dirs.staging) : []).toEqual([])
}

function expectSuccess(result: Install) {
  expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
  expect(result.code).toBe(0)
}

function verifiedLog(result: Install) {
  return result.logs.find((record: { msg?: string }) => record.msg === 'image signature verified')
}

/** Polls `check` until it holds, at most `ms`: for what a running server does on its own. */
async function waitFor(what: string, check: () => Promise<boolean>, ms = 90_000) {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

async function keyListVersion(server: string): Promise<number> {
  return JSON.parse((await fetchBytes(`${server}/keys.json`)).toString('utf8')).version
}

async function manifestSigner(server: string): Promise<string> {
  const text = (await fetchBytes(`${server}/images/node/manifest.json.minisig`)).toString('utf8')
  return parseSignature(text, 'manifest.json.minisig').keyId
}

describe('a server signing with serve --keys, and nodes trusting its root key', () => {
  let layout: ServerLayout
  let keys: string
  let server: Server

  beforeAll(async () => {
    layout = await makeServerLayout('imageswarm-trust-')
    await addSampleImage(layout, 'node')
    await addSampleImage(layout, 'other')
    keys = await generateKeys(layout.dir)
    server = await startServer({
      images: ['node', 'other'],
      ...layout,
      args: ['--keys', keys],
    })
  })
  afterAll(async () => {
    await server?.stop()
    await layout?.remove()
  })

  const install = (url: string, dirs: { staging: string; target: string }, args: string[] = []) =>
    runInstall({
      server: url,
      image: 'node',
      ...dirs,
      seedTime: 0,
      args: ['--trust-root', join(keys, 'root.pub'), ...args],
    })

  it('installs a signed image and records its serial and key list in the root', async () => {
    const dirs = clientDirs(layout, 1, 'good')
    const result = await install(server.url, dirs)
    expectSuccess(result)
    const differences = await compareTrees(join(layout.imagesDir, 'node'), dirs.target, {
      skipPaths: ['etc/imageswarm'],
    })
    expect(differences).toEqual([])
    const recordPath = join(dirs.target, INSTALLED_RECORD_PATH)
    const record = parseInstalledImageRecord(await readFile(recordPath, 'utf8'), recordPath)
    const manifest = JSON.parse(
      (await fetchBytes(`${server.url}/images/node/manifest.json`)).toString(),
    )
    expect(record).toMatchObject({
      image: 'node',
      serial: 1,
      infoHash: manifest.infoHash,
      sha256: manifest.sha256,
      signingKeyId: await keyIdOf(join(keys, 'signing-1.pub')),
      keyList: { version: 1 },
    })
    expect(verifiedLog(result)).toMatchObject({ serial: 1, keyListVersion: 1 })
  })

  it('serves the manifest file and the key list byte for byte as signed on disk', async () => {
    const torrents = layout.torrentsDir
    expect(await fetchBytes(`${server.url}/images/node/manifest.json`)).toEqual(
      await readFile(join(torrents, 'image-node.manifest.json')),
    )
    expect(await fetchBytes(`${server.url}/images/node/manifest.json.minisig`)).toEqual(
      await readFile(join(torrents, 'image-node.manifest.json.minisig')),
    )
    expect(await fetchBytes(`${server.url}/keys.json`)).toEqual(
      await readFile(join(keys, 'keys.json')),
    )
    expect(await fetchBytes(`${server.url}/keys.json.minisig`)).toEqual(
      await readFile(join(keys, 'keys.json.minisig')),
    )
  })

  it('refuses a forged manifest (size, sha256 or infohash edited) as an invalid signature', async () => {
    const real = JSON.parse(
      (await fetchBytes(`${server.url}/images/node/manifest.json`)).toString(),
    )
    const forgeries = {
      size: { ...real, size: real.size + 1 },
      sha256: { ...real, sha256: 'f'.repeat(64) },
      infoHash: { ...real, infoHash: 'e'.repeat(40) },
    }
    let n = 0
    for (const [field, forged] of Object.entries(forgeries)) {
      const url = await startRewritingProxy(server.url, {
        '/images/node/manifest.json': encodeManifest(forged),
      })
      const dirs = await bareTarget(layout, ++n, 'forged')
      const result = await install(url, dirs)
      await expectRefused(result, 'E_SIGNATURE_INVALID', 18, dirs)
      expect(result.failed.error.message, field).toMatch(/does not match the signed file/)
    }
  })

  it('refuses a .torrent that is not the one the signed manifest names (another image’s)', async () => {
    const url = await startRewritingProxy(server.url, {
      '/images/node/image.torrent': await fetchBytes(`${server.url}/images/other/image.torrent`),
    })
    const dirs = await bareTarget(layout, 1, 'swapped')
    const result = await install(url, dirs)
    await expectRefused(result, 'E_TORRENT_MISMATCH', 5, dirs)
    expect(result.failed.error.message).toMatch(/infohash [0-9a-f]{40} ≠ [0-9a-f]{40}/)
  })

  it('refuses a manifest whose signature was removed, and a server without a key list', async () => {
    const unsigned = await startRewritingProxy(server.url, {
      '/images/node/manifest.json.minisig': 404,
    })
    const dirs = await bareTarget(layout, 1, 'unsigned')
    const result = await install(unsigned, dirs)
    await expectRefused(result, 'E_SIGNATURE_MISSING', 17, dirs)
    expect(result.failed.error.message).toMatch(/manifest .* is not signed/)

    const noKeys = await startRewritingProxy(server.url, { '/keys.json': 404 })
    const dirs2 = await bareTarget(layout, 2, 'unsigned')
    const result2 = await install(noKeys, dirs2)
    await expectRefused(result2, 'E_SIGNATURE_MISSING', 17, dirs2)
    expect(result2.failed.error.message).toMatch(/publishes no key list/)
  })

  it('refuses a key list signed by another root, with the manifests its keys sign', async () => {
    const attacker = await mkdtemp(join(tmpdir(), 'imageswarm-attacker-'))
    try {
      const theirs = await generateKeys(attacker)
      const url = await startRewritingProxy(server.url, {
        '/keys.json': await readFile(join(theirs, 'keys.json')),
        '/keys.json.minisig': await readFile(join(theirs, 'keys.json.minisig')),
      })
      const dirs = await bareTarget(layout, 1, 'wrong-root')
      const result = await install(url, dirs)
      await expectRefused(result, 'E_KEYLIST_UNTRUSTED', 22, dirs)
      expect(result.failed.error.message).toMatch(/is not signed by the trusted root key/)
    } finally {
      await rm(attacker, { recursive: true, force: true })
    }
  })

  it('refuses a serial below --min-serial as a rollback', async () => {
    const dirs = await bareTarget(layout, 1, 'min-serial')
    const result = await install(server.url, dirs, ['--min-serial', '2'])
    await expectRefused(result, 'E_ROLLBACK', 21, dirs)
    expect(result.failed.error.message).toMatch(/serial 1, older than serial 2/)
  })
})

describe('keys that change under a running server', () => {
  it('refuses a manifest signed by a revoked key, while the server signs with the new one', async () => {
    env.layout = await makeServerLayout('imageswarm-trust-revoke-')
    await addSampleImage(env.layout, 'node')
    const keys = await generateKeys(env.layout.dir)
    env.server = await startServer({ images: ['node'], ...env.layout, args: ['--keys', keys] })
    const url = env.server.url
    const first = await keyIdOf(join(keys, 'signing-1.pub'))
    // What someone who stole signing key 1 keeps serving after it was revoked.
    const stolen = await captureSigned(url)

    await imageswarm(['key', 'rotate', '--keys', keys])
    const second = await keyIdOf(join(keys, 'signing-2.pub'))
    await imageswarm(['key', 'revoke', '--keys', keys, first])
    // The server takes the new key list and signs again without a restart.
    await waitFor('the server serves key list 3, signed by key 2', async () => {
      return (await keyListVersion(url)) === 3 && (await manifestSigner(url)) === second
    })

    const proxy = await startRewritingProxy(url, {
      '/images/node/manifest.json': stolen.manifest,
      '/images/node/manifest.json.minisig': stolen.signature,
    })
    const dirs = await bareTarget(env.layout, 1, 'revoked')
    const result = await runInstall({
      server: proxy,
      image: 'node',
      ...dirs,
      seedTime: 0,
      args: ['--trust-root', join(keys, 'root.pub')],
    })
    await expectRefused(result, 'E_KEY_REVOKED', 19, dirs)
    expect(result.failed.error.message).toContain(
      `signed by key ${first}, which key list version 3 revokes`,
    )

    // The same ramdisk's root key still installs what the server signs now.
    const good = clientDirs(env.layout, 2, 'revoked')
    const installed = await runInstall({
      server: url,
      image: 'node',
      ...good,
      seedTime: 0,
      args: ['--trust-root', join(keys, 'root.pub')],
    })
    expectSuccess(installed)
    expect(verifiedLog(installed)).toMatchObject({ signingKey: second, keyListVersion: 3 })
  })
})

describe('manifests as publish --keys writes them', () => {
  it('minisign -V verifies them with the signing key, as the key list with the root key', async () => {
    env.layout = await makeServerLayout('imageswarm-trust-publish-')
    await addSampleImage(env.layout, 'node')
    const keys = await generateKeys(env.layout.dir)
    await imageswarm([
      'publish',
      '--image',
      'node',
      '--images-dir',
      env.layout.imagesDir,
      '--tarballs-dir',
      env.layout.tarballsDir,
      '--torrents-dir',
      env.layout.torrentsDir,
      '--keys',
      keys,
    ])
    const manifest = join(env.layout.torrentsDir, 'image-node.manifest.json')
    const { stdout } = await execFileAsync('minisign', [
      '-V',
      '-p',
      join(keys, 'signing-1.pub'),
      '-m',
      manifest,
    ])
    expect(stdout).toContain('Signature and comment signature verified')
    expect(stdout).toMatch(/Trusted comment: imageswarm manifest image=node serial=1 expires=/)
    const keyList = await execFileAsync('minisign', [
      '-V',
      '-p',
      join(keys, 'root.pub'),
      '-m',
      join(keys, 'keys.json'),
    ])
    expect(keyList.stdout).toContain('Signature and comment signature verified')
    // A byte changed in the manifest: minisign refuses it too.
    const text = await readFile(manifest, 'utf8')
    await writeFile(manifest, text.replace('"serial": 1', '"serial": 9'))
    await expect(
      execFileAsync('minisign', ['-V', '-p', join(keys, 'signing-1.pub'), '-m', manifest]),
    ).rejects.toMatchObject({ code: 1 })
  })

  it('refuses a manifest replayed after it expired', async () => {
    env.layout = await makeServerLayout('imageswarm-trust-expired-')
    await addSampleImage(env.layout, 'node')
    const keys = await generateKeys(env.layout.dir)
    const dirs = ['--images-dir', env.layout.imagesDir, '--tarballs-dir', env.layout.tarballsDir]
    await imageswarm([
      'publish',
      '--image',
      'node',
      ...dirs,
      '--torrents-dir',
      env.layout.torrentsDir,
      '--keys',
      keys,
      '--manifest-lifetime',
      '1',
    ])
    const old: SignedFiles = {
      manifest: await readFile(join(env.layout.torrentsDir, 'image-node.manifest.json')),
      signature: await readFile(join(env.layout.torrentsDir, 'image-node.manifest.json.minisig')),
    }
    const expires = Date.parse(JSON.parse(old.manifest.toString('utf8')).expires)
    // serve on the same directories reuses the archive and signs it again, for a week.
    env.server = await startServer({ images: ['node'], ...env.layout, args: ['--keys', keys] })
    const fresh = JSON.parse(
      (await fetchBytes(`${env.server.url}/images/node/manifest.json`)).toString(),
    )
    expect(fresh.serial).toBe(1)
    expect(Date.parse(fresh.expires)).toBeGreaterThan(expires)
    await waitFor('the published manifest has expired', async () => Date.now() > expires)

    const proxy = await startRewritingProxy(env.server.url, {
      '/images/node/manifest.json': old.manifest,
      '/images/node/manifest.json.minisig': old.signature,
    })
    const target = await bareTarget(env.layout, 1, 'expired')
    const result = await runInstall({
      server: proxy,
      image: 'node',
      ...target,
      seedTime: 0,
      args: ['--trust-root', join(keys, 'root.pub')],
    })
    await expectRefused(result, 'E_MANIFEST_EXPIRED', 20, target)
    expect(result.failed.error.message).toMatch(/serial 1\) expired at/)
  })
})

describe('rollback to an older signed manifest', () => {
  it('is refused by a node whose cache recorded the newer serial, and below --min-serial', async () => {
    env.layout = await makeServerLayout('imageswarm-trust-rollback-')
    await addSampleImage(env.layout, 'node')
    const keys = await generateKeys(env.layout.dir)
    const serve = () => startServer({ images: ['node'], ...env.layout!, args: ['--keys', keys] })
    env.server = await serve()
    const serial1 = await captureSigned(env.server.url)
    expect(JSON.parse(serial1.manifest.toString('utf8')).serial).toBe(1)
    await env.server.stop()

    // The image changes (a security fix); the server packs it again: serial 2.
    await writeFile(join(env.layout.imagesDir, 'node', 'etc', 'fixed'), 'the fix\n')
    env.server = await serve()
    const serial2 = JSON.parse(
      (await fetchBytes(`${env.server.url}/images/node/manifest.json`)).toString('utf8'),
    )
    expect(serial2.serial).toBe(2)

    const cache = join(env.layout.dir, 'cache')
    const trustArgs = ['--trust-root', join(keys, 'root.pub')]
    const installed = await runInstall({
      server: env.server.url,
      image: 'node',
      ...clientDirs(env.layout, 1, 'rollback'),
      seedTime: 0,
      args: [...trustArgs, '--cache', cache],
    })
    expectSuccess(installed)
    const statePath = join(cache, CACHE_TRUST_STATE_FILE)
    const state = parseNodeTrustState(await readFile(statePath, 'utf8'), statePath)
    expect(state.images.node).toMatchObject({ serial: 2, infoHash: serial2.infoHash })
    expect(state.keyList?.version).toBe(1)

    // Someone in the way replays serial 1 (signed, not expired) to the node's next install.
    const proxy = await startRewritingProxy(env.server.url, {
      '/images/node/manifest.json': serial1.manifest,
      '/images/node/manifest.json.minisig': serial1.signature,
    })
    const again = await bareTarget(env.layout, 2, 'rollback')
    const replayed = await runInstall({
      server: proxy,
      image: 'node',
      ...again,
      seedTime: 0,
      args: [...trustArgs, '--cache', cache],
    })
    await expectRefused(replayed, 'E_ROLLBACK', 21, again)
    expect(replayed.failed.error.message).toMatch(/serial 1, older than serial 2/)
    expect(verifiedLog(replayed)).toBeUndefined()

    // A bare node without a cache has only what it is told: --min-serial.
    const bare = await bareTarget(env.layout, 3, 'rollback')
    const told = await runInstall({
      server: proxy,
      image: 'node',
      ...bare,
      seedTime: 0,
      args: [...trustArgs, '--min-serial', '2'],
    })
    await expectRefused(told, 'E_ROLLBACK', 21, bare)
  })
})
