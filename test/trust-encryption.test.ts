// Encrypted archives end to end (issue 17, phase 2b; docs/trust.md): a real `imageswarm
// serve --keys --encrypt --group-keys`, real `imageswarm install` processes with node
// secrets. Seeders, peers, caches and the server's published file hold ciphertext only;
// a node opens the image only with its group's key, fetched by proving its node secret.
// One server serves every test in turn (restarted only where publishing again is the
// point); the key commands run in this process (test/helpers/encrypted-image.ts). The
// packet capture of the swarm is test/trust-encryption-capture.test.ts.
import { createHash } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '@imageswarm/cli'
import { ENCRYPTED_HEADER_BYTES, ENCRYPTION_CHUNK_BYTES, encodeManifest } from '@imageswarm/core'
import { compareTrees, snapshotTree } from '@imageswarm/core/testing'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { startCorruptPeer } from './helpers/corrupt-peer.js'
import { imageswarmInProcess, MARKER, makeEncryptedImageLayout } from './helpers/encrypted-image.js'
import type { Server } from './helpers/server-fixture.js'
import { clientDirs, type ServerLayout } from './helpers/workspace.js'

type Install = Awaited<ReturnType<typeof runInstall>>

// biome-ignore lint/suspicious/noExplicitAny: a manifest as JSON, read field by field
async function fetchJson(url: string): Promise<any> {
  const answer = await fetch(url)
  if (!answer.ok) throw new Error(`GET ${url}: HTTP ${answer.status}`)
  return answer.json()
}

/** Every regular file under `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return []
  const found: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) found.push(join(entry.parentPath, entry.name))
  }
  return found
}

async function expectNoMarker(files: string[]) {
  for (const file of files) {
    expect((await readFile(file)).includes(MARKER), file).toBe(false)
  }
}

/** Where the bencoded value starting at `at` ends. */
function bencodeEnd(bytes: Buffer, at: number): number {
  const c = String.fromCharCode(bytes[at]!)
  if (c === 'i') return bytes.indexOf(0x65, at) + 1
  if (c === 'l' || c === 'd') {
    let next = at + 1
    while (bytes[next] !== 0x65) next = bencodeEnd(bytes, next)
    return next + 1
  }
  const colon = bytes.indexOf(0x3a, at)
  return colon + 1 + Number(bytes.subarray(at, colon).toString('latin1'))
}

/** A .torrent's infohash: SHA-1 of its bencoded info dictionary. */
function infoHashOf(torrent: Buffer): string {
  const start = torrent.indexOf('4:info') + 6
  return createHash('sha1')
    .update(torrent.subarray(start, bencodeEnd(torrent, start)))
    .digest('hex')
}

const sha1 = (bytes: Buffer) => createHash('sha1').update(bytes).digest()

function expectSuccess(result: Install) {
  expect(result.failed?.error, JSON.stringify(result.logs.slice(-8))).toBeUndefined()
  expect(result.code).toBe(0)
}

describe('a server encrypting its images for node groups', () => {
  let layout: ServerLayout
  let keys: string
  let groupKeys: string
  let serveArgs: string[]
  let server: Server | undefined
  let secrets: Record<string, string>

  const serve = async (extra: string[] = []) => {
    server = await startServer({ images: ['node'], ...layout, args: [...serveArgs, ...extra] })
    return server
  }

  const install = (node: string, dirs: { staging: string; target: string }, args: string[] = []) =>
    runInstall({
      server: server!.url,
      image: 'node',
      ...dirs,
      seedTime: 0,
      args: ['--trust-root', join(keys, 'root.pub'), '--node-secret-file', secrets[node]!, ...args],
    })

  /** A bare target, and what it looked like before the install. */
  const bareTarget = async (n: number, group: string) => {
    const dirs = clientDirs(layout, n, group)
    await mkdir(join(dirs.target, 'lost+found'), { recursive: true })
    return { ...dirs, before: await snapshotTree(dirs.target) }
  }

  const expectRefused = async (
    result: Install,
    code: string,
    exit: number,
    dirs: Awaited<ReturnType<typeof bareTarget>>,
  ) => {
    expect(result.failed?.error?.code, JSON.stringify(result.logs.slice(-6))).toBe(code)
    expect(result.code).toBe(exit)
    expect(result.failed.error.hint).toEqual(expect.any(String))
    expect(await snapshotTree(dirs.target)).toEqual(dirs.before)
  }

  beforeAll(async () => {
    ;({ layout, keys, groupKeys, secrets, serveArgs } = await makeEncryptedImageLayout(
      'imageswarm-encrypt-',
      ['compute', 'login'],
      [
        ['n1', 'compute'],
        ['n2', 'compute'],
        ['l1', 'login'],
      ],
    ))
    await serve()
  })
  afterAll(async () => {
    await server?.stop()
    await layout?.remove()
  })

  it('refuses --encrypt without --keys (E_USAGE)', async () => {
    const printed: string[] = []
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((text) => {
      printed.push(String(text))
      return true
    })
    let code: number
    try {
      code = await main([
        'publish',
        '--image',
        'node',
        '--images-dir',
        layout.imagesDir,
        '--tarballs-dir',
        join(layout.dir, 'other-tarballs'),
        '--torrents-dir',
        join(layout.dir, 'other-torrents'),
        '--encrypt',
        '--group-keys',
        groupKeys,
      ])
    } finally {
      stderr.mockRestore()
    }
    expect(code).toBe(2)
    expect(printed.join('')).toContain('E_USAGE')
  })

  it('installs an encrypted image identical to the image, with ciphertext only outside the target', async () => {
    const manifest = await fetchJson(`${server!.url}/images/node/manifest.json`)
    expect(manifest.archiveFile).toBe('image-node.tar.enc')
    expect(manifest.encryption.wrappedKeys.map((w: { group: string }) => w.group)).toEqual([
      'compute',
      'login',
    ])
    expect(manifest.size).toBeGreaterThan(manifest.encryption.plaintextSize)

    const cache = join(layout.dir, 'cache-n1')
    const dirs = clientDirs(layout, 1, 'enc')
    const result = await install('n1', dirs, ['--cache', cache])
    expectSuccess(result)
    expect(
      await compareTrees(join(layout.imagesDir, 'node'), dirs.target, {
        skipPaths: ['etc/imageswarm'],
      }),
    ).toEqual([])
    expect(result.logs.some((r: { msg?: string }) => r.msg === 'archive key unwrapped')).toBe(true)

    // The cache keeps the ciphertext, the server publishes nothing else.
    const cached = await filesUnder(cache)
    expect(cached.some((file) => file.endsWith('image-node.tar.enc'))).toBe(true)
    await expectNoMarker(cached)
    expect(readdirSync(layout.tarballsDir).filter((f) => !f.startsWith('.'))).toEqual([
      'image-node.tar.enc',
    ])
    await expectNoMarker(await filesUnder(layout.tarballsDir))

    // A second node of the group, from the swarm, and the first again from its cache.
    const second = clientDirs(layout, 2, 'enc')
    const again = clientDirs(layout, 3, 'enc')
    const [fromSwarm, fromCache] = await Promise.all([
      install('n2', second),
      install('n1', again, ['--cache', cache]),
    ])
    expectSuccess(fromSwarm)
    expectSuccess(fromCache)
    expect(fromCache.installed).toBeDefined()
    expect(
      await compareTrees(join(layout.imagesDir, 'node'), again.target, {
        skipPaths: ['etc/imageswarm'],
      }),
    ).toEqual([])
  })

  it('refuses a wrong node secret and a node claiming another group (E_ARCHIVE_KEY_UNAVAILABLE, 23)', async () => {
    const forged = join(layout.dir, 'forged.secret')
    const text = await readFile(secrets.n1!, 'utf8')
    await writeFile(
      forged,
      text.replace(/^secret: .*$/m, `secret: ${Buffer.alloc(32, 7).toString('base64')}`),
    )
    secrets.forged = forged
    const dirs = await bareTarget(1, 'wrong-secret')
    const other = await bareTarget(1, 'other-group')
    const [wrong, claimed] = await Promise.all([
      install('forged', dirs),
      install('n1', other, ['--group', 'login']),
    ])
    await expectRefused(wrong, 'E_ARCHIVE_KEY_UNAVAILABLE', 23, dirs)
    expect(wrong.failed.error.message).toMatch(/did not prove its node secret/)

    await expectRefused(claimed, 'E_ARCHIVE_KEY_UNAVAILABLE', 23, other)
    expect(claimed.failed.error.message).toMatch(/is not in group login/)
  })

  it('refuses a node of a group the image is not encrypted for, and one of a revoked group', async () => {
    // A group made after the image was encrypted: its node gets the group key, but the
    // manifest has no wrapping for it.
    await imageswarmInProcess(['key', 'group', 'add', 'lab', '--group-keys', groupKeys])
    secrets.b1 = join(layout.dir, 'b1.secret')
    await imageswarmInProcess([
      'key',
      'node',
      'add',
      'b1',
      '--group',
      'lab',
      '--group-keys',
      groupKeys,
      '--output',
      secrets.b1,
    ])
    const lab = await bareTarget(1, 'lab')
    const notFor = await install('b1', lab)
    await expectRefused(notFor, 'E_ARCHIVE_KEY_UNAVAILABLE', 23, lab)
    expect(notFor.failed.error.message).toMatch(/is not encrypted for group lab/)

    // Revoking login: the next version gets a new archive key, a new serial, no wrapping
    // for login; login's nodes get no key.
    const before = await fetchJson(`${server!.url}/images/node/manifest.json`)
    await imageswarmInProcess(['key', 'group', 'revoke', 'login', '--group-keys', groupKeys])
    await server!.stop()
    await serve()
    const after = await fetchJson(`${server!.url}/images/node/manifest.json`)
    expect(after.serial).toBe(before.serial + 1)
    expect(after.infoHash).not.toBe(before.infoHash)
    expect(after.encryption.wrappedKeys.map((w: { group: string }) => w.group).sort()).toEqual([
      'compute',
      'lab',
    ])
    const revoked = await bareTarget(1, 'revoked')
    const login = await install('l1', revoked)
    await expectRefused(login, 'E_ARCHIVE_KEY_UNAVAILABLE', 23, revoked)

    // A restart with nothing changed keeps the ciphertext, its infohash and serial.
    // Throttled (an upload limit changes nothing published): the next test needs a server
    // slow enough that the client asks its corrupting peer for pieces.
    await server!.stop()
    await serve(['--upload-limit', '1M'])
    const kept = await fetchJson(`${server!.url}/images/node/manifest.json`)
    expect(kept).toMatchObject({
      serial: after.serial,
      infoHash: after.infoHash,
      sha256: after.sha256,
    })
  })

  it('bans a peer sending tampered ciphertext pieces: the piece hashes refuse them before decryption, and the install finishes from the server', async () => {
    // A peer holds ciphertext and no key, so what it can alter is ciphertext. The torrent's
    // piece hashes are made from the ciphertext (docs/trust.md), so its junk fails the
    // SHA-1 check as for a plain archive: nothing of it reaches the decryption, which
    // therefore never fails (E_DECRYPT_FAILED is for a bad ciphertext the server signed;
    // see the next test).
    const manifest = await fetchJson(`${server!.url}/images/node/manifest.json`)
    const peer = await startCorruptPeer({
      announceUrl: `${server!.url}/announce`,
      infoHash: manifest.infoHash,
      pieces: Math.ceil(manifest.size / manifest.pieceLength),
    })
    try {
      const dirs = clientDirs(layout, 1, 'corrupt-peer')
      const result = await install('n1', dirs)
      expectSuccess(result)
      expect(peer.blocksSent).toBeGreaterThan(0)
      const rejected = result.events.filter((e: { type: string }) => e.type === 'piece-rejected')
      expect(rejected.length).toBeGreaterThan(0)
      expect(rejected.flatMap((e: { banned: string[] }) => e.banned)).toEqual([peer.peerId])
      expect(result.logs.some((r: { msg?: string }) => r.msg === 'archive key unwrapped')).toBe(
        true,
      )
      expect(
        await compareTrees(join(layout.imagesDir, 'node'), dirs.target, {
          skipPaths: ['etc/imageswarm'],
        }),
      ).toEqual([])
    } finally {
      await peer.stop()
    }
  })

  it('stops at a tampered ciphertext chunk before any of it reaches the target (E_DECRYPT_FAILED)', async () => {
    // A server that signed a bad ciphertext (a broken encryption, a stolen signing key): the
    // pieces and the sha256 match, so only the chunk's tag can refuse it.
    await server!.stop()
    const archive = join(layout.tarballsDir, 'image-node.tar.enc')
    const manifestPath = join(layout.torrentsDir, 'image-node.manifest.json')
    const torrentPath = join(layout.torrentsDir, 'image-node.tar.enc.torrent')
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'))
    const bytes = await readFile(archive)
    const at = ENCRYPTED_HEADER_BYTES + 40 * (ENCRYPTION_CHUNK_BYTES + 16) + 1000
    const piece = Math.floor(at / manifest.pieceLength)
    const pieceBytes = () =>
      bytes.subarray(piece * manifest.pieceLength, (piece + 1) * manifest.pieceLength)
    const oldHash = sha1(pieceBytes())
    bytes[at]! ^= 0x20
    await writeFile(archive, bytes)
    // The torrent's piece hash for that piece, and so its infohash, follow the ciphertext.
    const torrent = await readFile(torrentPath)
    sha1(pieceBytes()).copy(torrent, torrent.indexOf(oldHash))
    await writeFile(torrentPath, torrent)
    await writeFile(
      manifestPath,
      encodeManifest({
        ...manifest,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        infoHash: infoHashOf(torrent),
      }),
    )
    await serve()
    const dirs = await bareTarget(1, 'tampered')
    const result = await install('n1', dirs)
    expect(result.failed?.error?.code, JSON.stringify(result.logs.slice(-6))).toBe(
      'E_DECRYPT_FAILED',
    )
    expect(result.code).toBe(23)
    // Nothing of the image reached the target: only the client's own marker of an
    // unfinished install, which stays until an install completes (as for any refused archive).
    const after = await snapshotTree(dirs.target)
    expect([...after.keys()].sort()).toEqual(
      [...dirs.before.keys(), '.imageswarm-incomplete'].sort(),
    )
    expect(after.get('lost+found')).toEqual(dirs.before.get('lost+found'))
    expect(existsSync(dirs.staging) ? readdirSync(dirs.staging) : []).toEqual([
      'image-node.tar.enc',
    ])
  })
})
