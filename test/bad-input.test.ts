import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { createServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CLI, runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { type Server, useServerFixture } from './helpers/server-fixture.js'
import {
  addSampleImage,
  clientDirs,
  makeServerLayout,
  type ServerLayout,
} from './helpers/workspace.js'

const env = useServerFixture()
let proxy: HttpServer | undefined

afterEach(async () => {
  if (proxy) await new Promise((resolve) => proxy!.close(resolve))
  proxy = undefined
})

/** Runs the CLI to completion; resolves with exit code, stderr and elapsed seconds. */
async function cli(args: string[], timeoutMs = 60_000) {
  const started = performance.now()
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  let stdout = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  child.stdout.on('data', (chunk) => (stdout += chunk))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [code] = await once(child, 'exit')
  clearTimeout(timer)
  return { code: code as number, stderr, stdout, seconds: (performance.now() - started) / 1000 }
}

/** `imageswarm install` with explicit staging and target, ignoring this machine's /proc/cmdline. */
function installCli(
  server: string,
  image: string,
  staging: string,
  target: string,
  extra: string[] = [],
) {
  return cli([
    'install',
    '--server',
    server,
    '--image',
    image,
    '--staging',
    staging,
    '--target',
    target,
    '--cmdline',
    '/dev/null',
    ...extra,
  ])
}

/** `imageswarm serve` of an image that is not there, in `layout`, on free ports. */
function serveMissingImage(layout: ServerLayout): string[] {
  return [
    'serve',
    '--image',
    'missing',
    '--images-dir',
    layout.imagesDir,
    '--tarballs-dir',
    layout.tarballsDir,
    '--torrents-dir',
    layout.torrentsDir,
    '--pid-file',
    layout.pidFile,
    '--address',
    '127.0.0.1',
    '--port',
    '0',
    '--torrent-port',
    '0',
  ]
}

async function startSampleServer(): Promise<Server> {
  env.layout = await makeServerLayout()
  await addSampleImage(env.layout, 'node')
  env.server = await startServer({ images: ['node'], ...env.layout })
  return env.server
}

/** A server in front of the real one that rewrites what `rewrite` says, like a stale mirror. */
async function startRewritingProxy(
  upstream: string,
  rewrite: (path: string, body: Buffer) => Buffer,
): Promise<string> {
  proxy = createServer(async (req, res) => {
    const response = await fetch(upstream + req.url)
    const body = rewrite(req.url ?? '', Buffer.from(await response.arrayBuffer()))
    res.writeHead(response.status, { 'content-type': response.headers.get('content-type') ?? '' })
    res.end(body)
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  return `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
}

describe('bad input gets a clear message, a distinct exit code, and nothing half-done', () => {
  it('refuses to serve an image whose directory is missing', async () => {
    env.layout = await makeServerLayout()
    const result = await cli(serveMissingImage(env.layout))
    expect(result.code).toBe(3)
    expect(result.stderr).toMatch(/E_IMAGE_NOT_FOUND: image missing: no image root at .*missing/)
    expect(result.stderr).toMatch(/hint: .*--images-dir/)
    // Nothing looks published.
    expect(await readdir(env.layout.torrentsDir).catch(() => [])).toEqual([])
  })

  it('refuses a rack map with a bad rule, naming the file and the line', async () => {
    env.layout = await makeServerLayout()
    const rackMap = join(env.layout.imagesDir, '..', 'racks')
    await writeFile(rackMap, '10.1.3.0/24 r3\n10.1.4.0/ r4\n')
    const result = await cli([...serveMissingImage(env.layout), '--rack-map', rackMap])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain(
      `E_CONFIG_INVALID: ${rackMap} line 2: "10.1.4.0/" is not a subnet`,
    )
    expect(result.stderr).toMatch(/hint: one rule per line: SUBNET RACK/)
  })

  it('names a missing archive tool and the Debian package that provides it', async () => {
    env.layout = await makeServerLayout()
    await addSampleImage(env.layout, 'node')
    const child = spawn(
      process.execPath,
      [
        CLI,
        'publish',
        '--image',
        'node',
        '--images-dir',
        env.layout.imagesDir,
        '--tarballs-dir',
        env.layout.tarballsDir,
        '--torrents-dir',
        env.layout.torrentsDir,
      ],
      {
        env: { ...process.env, IMAGESWARM_ZSTD: join(env.layout.dir, 'no-zstd-here') },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    )
    let stderr = ''
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const [code] = await once(child, 'exit')
    expect(code).toBe(11)
    expect(stderr).toMatch(/E_TOOL_MISSING: zstd not found/)
    expect(stderr).toMatch(/hint: install the Debian package 'zstd'/)
    expect(await readdir(env.layout.tarballsDir).catch(() => [])).toEqual([])
  })

  it('gives up on an unreachable image server within the connect timeout', async () => {
    env.layout = await makeServerLayout()
    const { staging, target } = clientDirs(env.layout, 1)
    // A port nobody listens on: take one from the kernel, then close it.
    const probe = createServer().listen(0, '127.0.0.1')
    await once(probe, 'listening')
    const port = (probe.address() as AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    const result = await installCli(`127.0.0.1:${port}`, 'node', staging, target, [
      '--connect-timeout',
      '3',
    ])
    expect(result.code).toBe(4)
    expect(result.stderr).toMatch(
      /E_SERVER_UNREACHABLE: image server http:\/\/127\.0\.0\.1:\d+ did not answer within 3 s/,
    )
    expect(result.seconds).toBeLessThan(20)
    expect(await readdir(target).catch(() => [])).toEqual([])
  })

  it('names the published images when asked for an unknown one', async () => {
    const { url } = await startSampleServer()
    const { staging, target } = clientDirs(env.layout!, 1)
    const result = await installCli(url, 'nosuch', staging, target)
    expect(result.code).toBe(3)
    expect(result.stderr).toMatch(/E_UNKNOWN_IMAGE: this server does not publish image nosuch/)
    expect(result.stderr).toMatch(/published images: node/)
  })

  it('fails before downloading when the staging directory is not writable', async () => {
    const { url } = await startSampleServer()
    const { target } = clientDirs(env.layout!, 1)
    // A regular file where the staging directory's parent should be: even root cannot
    // create a directory there.
    const blocker = join(env.layout!.dir, 'not-a-directory')
    await writeFile(blocker, '')
    const result = await installCli(url, 'node', join(blocker, 'staging'), target)
    expect(result.code).toBe(9)
    expect(result.stderr).toMatch(/E_STAGING_NOT_WRITABLE: staging directory .* is not writable/)
    expect(await readdir(target)).toEqual([])
  })

  it('refuses a .torrent that does not match the manifest', async () => {
    const real = await startSampleServer()
    // The proxy hands out the manifest of `node` with the infohash of some other torrent.
    const url = await startRewritingProxy(real.url, (path, body) => {
      if (!path.endsWith('/manifest.json')) return body
      const manifest = JSON.parse(body.toString())
      manifest.infoHash = 'f'.repeat(40)
      return Buffer.from(JSON.stringify(manifest))
    })
    const { staging, target } = clientDirs(env.layout!, 1)
    const result = await installCli(url, 'node', staging, target)
    expect(result.code).toBe(5)
    expect(result.stderr).toMatch(
      /E_TORRENT_MISMATCH: the \.torrent does not match the manifest of node: infohash/,
    )
    expect(await readdir(target).catch(() => [])).toEqual([])
  })

  it('refuses an archive whose sha256 differs from the manifest and leaves the target empty', async () => {
    const real = await startSampleServer()
    const url = await startRewritingProxy(real.url, (path, body) => {
      if (!path.endsWith('/manifest.json')) return body
      const manifest = JSON.parse(body.toString())
      manifest.sha256 = '0'.repeat(64)
      return Buffer.from(JSON.stringify(manifest))
    })
    const { staging, target } = clientDirs(env.layout!, 1)
    const result = await runInstall({ server: url, image: 'node', staging, target, seedTime: 0 })
    expect(result.code).toBe(5)
    expect(result.failed.error.code).toBe('E_ARCHIVE_DIGEST_MISMATCH')
    expect(await readdir(target)).toEqual([])
    // The unverified archive does not stay in staging.
    expect(await readdir(staging)).toEqual([])
  })

  it('refuses an announce for an infohash the server did not publish', async () => {
    const { url } = await startSampleServer()
    const infoHash = '%AA'.repeat(20)
    const peerId = '-XX0000-aaaaaaaaaaaa'
    const response = await fetch(
      `${url}/announce?info_hash=${infoHash}&peer_id=${peerId}&port=6881&uploaded=0&downloaded=0&left=100&compact=1`,
    )
    const body = Buffer.from(await response.arrayBuffer()).toString('latin1')
    expect(body).toMatch(/failure reason/)
    expect(body).toMatch(/not published|unpublished|not served/i)
  })

  it('refuses to install into a target root that already holds a system', async () => {
    const { url } = await startSampleServer()
    const { staging, target } = clientDirs(env.layout!, 1)
    await mkdir(join(target, 'etc'), { recursive: true })
    const result = await installCli(url, 'node', staging, target)
    expect(result.code).toBe(10)
    expect(result.stderr).toMatch(/E_TARGET_NOT_EMPTY: target root .* is not empty \(etc\)/)
  })
})
