// HTTPS with the certificate pinned through the signed key list (issue 17; docs/trust.md,
// "HTTPS"): a real `imageswarm serve --tls-cert --tls-key`, real `imageswarm install
// --trust-root` processes on loopback. The node fetches the key list over TLS without a
// certificate check, verifies it against its root key, then talks to the server (manifest,
// .torrent, tracker, web seed, group key, status posts) only over connections presenting a
// certificate the list pins. A server with another certificate is refused, as is a
// self-signed one the list does not pin, unless the node trusts it as a CA.
import { mkdir } from 'node:fs/promises'
import { get } from 'node:https'
import { join } from 'node:path'
import { compareTrees, snapshotTree } from '@imageswarm/core/testing'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { imageswarmInProcess, makeEncryptedImageLayout } from './helpers/encrypted-image.js'
import type { Server } from './helpers/server-fixture.js'
import { clientDirs, type ServerLayout } from './helpers/workspace.js'

type Install = Awaited<ReturnType<typeof runInstall>>
type LogRecord = { msg?: string; level?: number }

/** GET over HTTPS without a certificate check: the test looks at what the server serves. */
function getUnchecked(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    get(url, { rejectUnauthorized: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.once('end', () => resolve(Buffer.concat(chunks)))
      res.once('error', reject)
    }).once('error', reject)
  })
}

function expectSuccess(result: Install) {
  expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
  expect(result.code).toBe(0)
}

describe('a server serving HTTPS with a certificate the key list pins', () => {
  let layout: ServerLayout
  let keys: string
  let serveArgs: string[]
  let secret: string
  let server: Server | undefined
  /** tls.crt and tls.key from `imageswarm key tls-generate`, two of them. */
  const certificates: Record<'pinned' | 'other', { cert: string; key: string }> = {
    pinned: { cert: '', key: '' },
    other: { cert: '', key: '' },
  }

  const serve = async (certificate: 'pinned' | 'other', args = serveArgs) => {
    server = await startServer({
      images: ['node'],
      ...layout,
      args: [
        ...args,
        '--tls-cert',
        certificates[certificate].cert,
        '--tls-key',
        certificates[certificate].key,
      ],
    })
    return server
  }

  const install = (
    dirs: { staging: string; target: string },
    rootKeys = keys,
    env = {},
    args: string[] = [],
  ) =>
    runInstall({
      server: server!.url,
      image: 'node',
      ...dirs,
      seedTime: 0,
      env,
      args: ['--trust-root', join(rootKeys, 'root.pub'), '--node-secret-file', secret, ...args],
    })

  /** A bare target, and what it looked like before the install. */
  const bareTarget = async (n: number) => {
    const dirs = clientDirs(layout, n, 'https')
    await mkdir(join(dirs.target, 'lost+found'), { recursive: true })
    return { ...dirs, before: await snapshotTree(dirs.target) }
  }

  beforeAll(async () => {
    let secrets: Record<string, string>
    ;({ layout, keys, secrets, serveArgs } = await makeEncryptedImageLayout(
      'imageswarm-https-',
      ['compute'],
      [['n1', 'compute']],
    ))
    secret = secrets.n1!
    for (const name of ['pinned', 'other'] as const) {
      const dir = join(layout.dir, `tls-${name}`)
      await imageswarmInProcess(['key', 'tls-generate', '--output', dir, '--address', '127.0.0.1'])
      certificates[name] = { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }
    }
    await imageswarmInProcess([
      'key',
      'tls-pin',
      '--keys',
      keys,
      '--cert',
      certificates.pinned.cert,
    ])
  })
  afterEach(async () => {
    await server?.stop()
    server = undefined
  })
  afterAll(async () => {
    await layout?.remove()
  })

  it('installs an encrypted image over HTTPS: manifest, tracker, group key, status posts and the archive over the pinned connection', async () => {
    await serve('pinned')
    expect(server!.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    // The .torrent announces and web-seeds the server's https URLs.
    const torrent = await getUnchecked(`${server!.url}/images/node/image.torrent`)
    expect(torrent.includes(`${server!.url}/announce`)).toBe(true)
    expect(torrent.includes('http://127.0.0.1')).toBe(false)

    const dirs = clientDirs(layout, 1, 'https')
    const result = await install(dirs)
    expectSuccess(result)
    expect(
      await compareTrees(join(layout.imagesDir, 'node'), dirs.target, {
        skipPaths: ['etc/imageswarm'],
      }),
    ).toEqual([])
    const messages = result.logs.map((record: LogRecord) => record.msg)
    expect(messages).toContain('HTTPS: the server must present a certificate the key list pins')
    expect(messages).toContain('archive key unwrapped')
    // The tracker heard both the server's seeder (pinned to its own certificate) and the
    // node (pinned through the key list); the node's status posts arrived too.
    const metrics = (await getUnchecked(`${server!.url}/metrics`)).toString()
    const counted = (line: string) => Number(new RegExp(`^${line} (\\d+)$`, 'm').exec(metrics)?.[1])
    expect(counted('imageswarm_tracker_announces_total\\{event="started"\\}')).toBe(2)
    expect(counted('imageswarm_status_reports_total\\{outcome="accepted"\\}')).toBeGreaterThan(0)
    expect(
      server!.logs.some((record: LogRecord) => record.msg?.startsWith('the key list does not pin')),
    ).toBe(false)

    // The archive itself over HTTPS (the web seed's route, one GET), pinned as well.
    const overHttp = clientDirs(layout, 5, 'https')
    const viaHttp = await install(overHttp, keys, {}, ['--dl-protocol', 'http'])
    expectSuccess(viaHttp)
    expect(viaHttp.installed.totals.downloadedFromServer).toBeGreaterThan(0)
    expect(
      await compareTrees(join(layout.imagesDir, 'node'), overHttp.target, {
        skipPaths: ['etc/imageswarm'],
      }),
    ).toEqual([])
  })

  it('refuses a server presenting a certificate the key list does not pin, target untouched (E_TLS_PIN_MISMATCH, exit 18)', async () => {
    await serve('other')
    expect(
      server!.logs.some((record: LogRecord) => record.msg?.startsWith('the key list does not pin')),
    ).toBe(true)
    const dirs = await bareTarget(2)
    const result = await install(dirs)
    expect(result.failed?.error?.code, JSON.stringify(result.logs.slice(-6))).toBe(
      'E_TLS_PIN_MISMATCH',
    )
    expect(result.code).toBe(18)
    expect(result.failed.error.hint).toContain('key tls-pin')
    expect(await snapshotTree(dirs.target)).toEqual(dirs.before)
  })

  it('refuses a self-signed server when the key list pins none, unless the node trusts the certificate as a CA', async () => {
    const unpinned = join(layout.dir, 'keys-unpinned')
    await imageswarmInProcess(['key', 'generate', '--output', unpinned])
    await serve(
      'pinned',
      serveArgs.map((arg) => (arg === keys ? unpinned : arg)),
    )
    const dirs = await bareTarget(3)
    const refused = await install(dirs, unpinned)
    expect(refused.failed?.error?.code, JSON.stringify(refused.logs.slice(-6))).toBe(
      'E_TLS_UNTRUSTED',
    )
    expect(refused.code).toBe(18)
    expect(await snapshotTree(dirs.target)).toEqual(dirs.before)

    const trusted = clientDirs(layout, 4, 'https')
    const result = await install(trusted, unpinned, {
      NODE_EXTRA_CA_CERTS: certificates.pinned.cert,
    })
    expectSuccess(result)
    expect(
      await compareTrees(join(layout.imagesDir, 'node'), trusted.target, {
        skipPaths: ['etc/imageswarm'],
      }),
    ).toEqual([])
  })
})
