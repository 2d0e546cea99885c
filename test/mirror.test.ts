// Mirrors (issue 21): a real `imageswarm serve --mirror-of` beside a real primary on
// loopback. The mirror fills through the swarm, serves the primary's manifest, signature and
// key list byte for byte, both servers' torrents list both servers, a new version on the
// primary reaches the mirror without an operator, and a mirror whose trust root did not
// sign the primary's images serves none of them. The same with two servers and eight
// clients, one server killed, is test/multi-server.test.ts (network namespaces).
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { decode, encode } from '../scripts/bench-swarm/lib/bencode.mjs'
import { CLI, startServer } from '../scripts/lib/deployment.mjs'
import type { Server } from './helpers/server-fixture.js'
import {
  addSampleImage,
  freePort,
  makeServerLayout,
  type ServerLayout,
} from './helpers/workspace.js'

const execFileAsync = promisify(execFile)

const layouts: ServerLayout[] = []
const servers: Server[] = []

afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop()
  for (const layout of layouts.splice(0)) await layout.remove()
})

async function layoutFor(prefix: string): Promise<ServerLayout> {
  const layout = await makeServerLayout(prefix)
  layouts.push(layout)
  return layout
}

async function serve(options: Parameters<typeof startServer>[0]): Promise<Server> {
  const server = await startServer(options)
  servers.push(server)
  return server
}

async function generateKeys(dir: string): Promise<string> {
  const keys = join(dir, 'keys')
  await execFileAsync(process.execPath, [CLI, 'key', 'generate', '--output', keys])
  return keys
}

async function fetchBytes(url: string): Promise<Buffer> {
  const answer = await fetch(url)
  if (!answer.ok) throw new Error(`GET ${url}: HTTP ${answer.status}`)
  return Buffer.from(await answer.arrayBuffer())
}

/** The torrent's trackers (one tier) and web seeds, as text, and its infohash. */
async function torrentOf(server: string, image: string) {
  const decoded = decode(await fetchBytes(`${server}/images/${image}/image.torrent`)) as Map<
    string,
    unknown
  >
  const text = (bytes: unknown) => Buffer.from(bytes as Uint8Array).toString('utf8')
  return {
    infoHash: createHash('sha1')
      .update(encode(decoded.get('info')))
      .digest('hex'),
    announce: text(decoded.get('announce')),
    tiers: (decoded.get('announce-list') as unknown[][]).map((tier) => tier.map(text)),
    webSeeds: (decoded.get('url-list') as unknown[]).map(text),
  }
}

/** Polls `check` until it holds, at most `ms`: for what a running server does on its own. */
async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 60_000) {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

type LogRecord = Record<string, unknown> & { msg?: string }

function mirrored(server: Server, infoHash?: string): LogRecord | undefined {
  return (server.logs as LogRecord[]).find(
    (record) =>
      record.msg === 'image mirrored' && (infoHash === undefined || record.infoHash === infoHash),
  )
}

describe('a mirror (serve --mirror-of)', () => {
  it('fills from the primary through the swarm, serves its signed files byte for byte, and both torrents list both servers', async () => {
    const primaryLayout = await layoutFor('imageswarm-primary-')
    await addSampleImage(primaryLayout, 'node')
    const keys = await generateKeys(primaryLayout.dir)
    const primary = await serve({ images: ['node'], ...primaryLayout, args: ['--keys', keys] })
    const mirrorLayout = await layoutFor('imageswarm-mirror-')
    const mirror = await serve({
      images: [],
      ...mirrorLayout,
      args: [
        '--mirror-of',
        primary.url,
        '--mirror-interval',
        '1',
        '--trust-root',
        join(keys, 'root.pub'),
      ],
    })
    await waitFor('the mirror has the image', () => mirrored(mirror) !== undefined)
    const manifest = JSON.parse(
      (await fetchBytes(`${primary.url}/images/node/manifest.json`)).toString('utf8'),
    )
    // Through the swarm: every byte from the primary's seeder, none from its web seed.
    expect(mirrored(mirror)).toMatchObject({
      image: 'node',
      infoHash: manifest.infoHash,
      downloaded: manifest.size,
      downloadedFromWebSeed: 0,
    })
    for (const file of [
      'images/node/manifest.json',
      'images/node/manifest.json.minisig',
      'keys.json',
      'keys.json.minisig',
    ]) {
      expect(await fetchBytes(`${mirror.url}/${file}`), file).toEqual(
        await fetchBytes(`${primary.url}/${file}`),
      )
    }
    const archive = `images/node/${manifest.archiveFile}`
    const archiveBytes = await fetchBytes(`${mirror.url}/${archive}`)
    expect(createHash('sha256').update(archiveBytes).digest('hex')).toBe(manifest.sha256)

    // The mirror's torrent: itself first, then the primary, in one tier.
    const fromMirror = await torrentOf(mirror.url, 'node')
    expect(fromMirror.infoHash).toBe(manifest.infoHash)
    expect(fromMirror.announce).toBe(`${mirror.url}/announce`)
    expect(fromMirror.tiers).toEqual([[`${mirror.url}/announce`, `${primary.url}/announce`]])
    expect(fromMirror.webSeeds).toEqual([`${mirror.url}/${archive}`, `${primary.url}/${archive}`])
    // The primary lists the mirror once it says it serves the image (its next poll).
    await waitFor('the primary lists the mirror', async () => {
      const torrent = await torrentOf(primary.url, 'node')
      return torrent.tiers[0]?.length === 2
    })
    const fromPrimary = await torrentOf(primary.url, 'node')
    expect(fromPrimary.infoHash).toBe(manifest.infoHash)
    expect(fromPrimary.tiers).toEqual([[`${primary.url}/announce`, `${mirror.url}/announce`]])
    expect(fromPrimary.webSeeds).toEqual([`${primary.url}/${archive}`, `${mirror.url}/${archive}`])

    // Each dashboard lists both servers, as it sees them.
    const rolesAt = async (server: string) =>
      (
        (await (await fetch(`${server}/api/servers`)).json()) as {
          servers: { url: string; role: string }[]
        }
      ).servers.map((entry) => [entry.url, entry.role])
    expect(await rolesAt(primary.url)).toEqual([
      [primary.url, 'this server'],
      [mirror.url, 'mirror'],
    ])
    expect(await rolesAt(mirror.url)).toEqual([
      [mirror.url, 'this server'],
      [primary.url, 'primary'],
    ])

    // The mirror stops: the primary drops it after three of its intervals.
    await mirror.stop()
    servers.splice(servers.indexOf(mirror), 1)
    await waitFor('the primary forgets the mirror', async () => {
      const torrent = await torrentOf(primary.url, 'node')
      return torrent.tiers[0]?.length === 1
    })
  }, 120_000)

  it('takes a new version published on the primary, with no operator on the mirror', async () => {
    const primaryLayout = await layoutFor('imageswarm-primary-')
    await addSampleImage(primaryLayout, 'node')
    const port = await freePort()
    let primary = await serve({ images: ['node'], ...primaryLayout, port })
    const mirrorLayout = await layoutFor('imageswarm-mirror-')
    const mirror = await serve({
      images: [],
      ...mirrorLayout,
      args: ['--mirror-of', primary.url, '--mirror-interval', '1'],
    })
    await waitFor('the mirror has the first version', () => mirrored(mirror) !== undefined)
    const first = mirrored(mirror)?.infoHash

    // The primary is restarted over a changed image root, as an operator republishes.
    await primary.stop()
    servers.splice(servers.indexOf(primary), 1)
    await writeFile(join(primaryLayout.imagesDir, 'node', 'etc-motd'), 'version 2\n')
    primary = await serve({ images: ['node'], ...primaryLayout, port })
    const second = JSON.parse(
      (await fetchBytes(`${primary.url}/images/node/manifest.json`)).toString('utf8'),
    )
    expect(second.infoHash).not.toBe(first)
    await waitFor(
      'the mirror has the second version',
      () => mirrored(mirror, second.infoHash) !== undefined,
    )
    expect(await fetchBytes(`${mirror.url}/images/node/manifest.json`)).toEqual(
      await fetchBytes(`${primary.url}/images/node/manifest.json`),
    )
    const archive = await fetchBytes(`${mirror.url}/images/node/${second.archiveFile}`)
    expect(createHash('sha256').update(archive).digest('hex')).toBe(second.sha256)
  }, 120_000)

  it('serves nothing the primary signed with a key its trust root did not certify', async () => {
    const primaryLayout = await layoutFor('imageswarm-primary-')
    await addSampleImage(primaryLayout, 'node')
    const keys = await generateKeys(primaryLayout.dir)
    const primary = await serve({ images: ['node'], ...primaryLayout, args: ['--keys', keys] })
    const mirrorLayout = await layoutFor('imageswarm-mirror-')
    const otherKeys = await generateKeys(mirrorLayout.dir)
    const mirror = await serve({
      images: [],
      ...mirrorLayout,
      args: [
        '--mirror-of',
        primary.url,
        '--mirror-interval',
        '1',
        '--trust-root',
        join(otherKeys, 'root.pub'),
      ],
    })
    const refused = "the primary's key list is refused: nothing is mirrored until it verifies"
    await waitFor('the mirror says why it serves nothing', () =>
      (mirror.logs as LogRecord[]).some((record) => record.msg === refused),
    )
    const refusal = (mirror.logs as LogRecord[]).find((record) => record.msg === refused)
    expect(refusal?.code).toBe('E_KEYLIST_UNTRUSTED')
    const list = JSON.parse((await fetchBytes(`${mirror.url}/images`)).toString('utf8'))
    expect(list.images).toEqual([])
    expect(mirrored(mirror)).toBeUndefined()
    expect(await readFile(join(keys, 'root.pub'), 'utf8')).not.toBe(
      await readFile(join(otherKeys, 'root.pub'), 'utf8'),
    )
  }, 120_000)

  it('lets stock aria2 download with the torrent that lists both servers, the primary dead', async () => {
    const primaryLayout = await layoutFor('imageswarm-primary-')
    await addSampleImage(primaryLayout, 'node')
    const primary = await serve({ images: ['node'], ...primaryLayout })
    const mirrorLayout = await layoutFor('imageswarm-mirror-')
    const mirror = await serve({
      images: [],
      ...mirrorLayout,
      args: ['--mirror-of', primary.url, '--mirror-interval', '1'],
    })
    await waitFor('the primary lists the mirror', async () => {
      const torrent = await torrentOf(primary.url, 'node')
      return torrent.tiers[0]?.length === 2
    })
    const torrentFile = join(mirrorLayout.dir, 'from-primary.torrent')
    await writeFile(torrentFile, await fetchBytes(`${primary.url}/images/node/image.torrent`))
    const manifest = JSON.parse(
      (await fetchBytes(`${primary.url}/images/node/manifest.json`)).toString('utf8'),
    )
    await primary.stop()
    servers.splice(servers.indexOf(primary), 1)

    const downloads = join(mirrorLayout.dir, 'aria2')
    await execFileAsync(
      'aria2c',
      [
        '--dir',
        downloads,
        '--seed-time=0',
        '--enable-dht=false',
        '--bt-tracker-connect-timeout=3',
        '--bt-tracker-timeout=3',
        '--summary-interval=0',
        '--console-log-level=warn',
        torrentFile,
      ],
      { timeout: 120_000 },
    )
    const archive = await readFile(join(downloads, manifest.archiveFile))
    expect(createHash('sha256').update(archive).digest('hex')).toBe(manifest.sha256)
    expect(mirror.process.exitCode).toBeNull()
  }, 180_000)
})
