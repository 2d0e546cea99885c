import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  createLogger,
  type ImageManifest,
  ImageSwarmError,
  isImageSwarmError,
  parseInfoHash,
  signManifest,
} from '@imageswarm/core'
import { type KeyDirectoryFixture, writeKeyDirectoryFixture } from '@imageswarm/core/testing'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type ClientConfig, ClientConfigSchema } from '../src/config.js'
import { ImageServers, swarmSourcesOf } from '../src/image-servers.js'
import { fetchTorrent } from '../src/server-api.js'

const DAY = 86_400_000
let dir: string
let keys: KeyDirectoryFixture
const servers: Server[] = []
const imageServers: ImageServers[] = []

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'client-servers-'))
  keys = await writeKeyDirectoryFixture(join(dir, 'keys'), { now: new Date() })
})

afterEach(async () => {
  for (const made of imageServers.splice(0)) await made.close()
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
  await rm(dir, { recursive: true, force: true })
})

function manifest(serial = 5): ImageManifest {
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
    expires: new Date(Date.now() + 7 * DAY).toISOString(),
  }
}

/** An image server on loopback: `answer` gets each request, with the count of its path. */
async function serve(
  answer: (path: string, nth: number, res: ServerResponse, req: IncomingMessage) => void,
) {
  const asked = new Map<string, number>()
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const nth = asked.get(path) ?? 0
    asked.set(path, nth + 1)
    answer(path, nth, res, req)
  })
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked }
}

/** A server that answers each path with its file, and 404 for anything else. */
function serveFiles(files: Record<string, Buffer | string>) {
  return serve((path, _nth, res) => {
    const file = files[path]
    if (file === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{}')
      return
    }
    res.writeHead(200).end(file)
  })
}

/** The base URL of a port nothing listens on (it refuses connections). */
async function closedPort(): Promise<string> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return `http://127.0.0.1:${port}`
}

/** A server publishing the key list and the image's manifest signed as `signed` says. */
async function signedServer(signed: { bytes: Buffer; signature: string }) {
  return serveFiles({
    '/keys.json': await readFile(join(keys.dir, 'keys.json')),
    '/keys.json.minisig': await readFile(join(keys.dir, 'keys.json.minisig')),
    '/images/node/manifest.json': signed.bytes,
    '/images/node/manifest.json.minisig': signed.signature,
  })
}

function config(server: string[], overrides: Partial<ClientConfig> = {}): ClientConfig {
  return ClientConfigSchema.parse({ server, image: 'node', target: join(dir, 'a'), ...overrides })
}

function recordingLogger() {
  const lines: { level: number; msg: string; server?: string; code?: string }[] = []
  const logger = createLogger({
    name: 'test',
    level: 'debug',
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  })
  return { logger, warnings: () => lines.filter((line) => line.level === 40) }
}

function imageServersOf(urls: string[], logger = recordingLogger().logger): ImageServers {
  const made = new ImageServers(urls, { logger })
  imageServers.push(made)
  return made
}

async function failure(promise: Promise<unknown>) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!isImageSwarmError(err)) throw new Error(`expected an ImageSwarmError, got ${String(err)}`)
  return err
}

// Connect timeouts of 10 minutes: a server that is down must cost the others a moment, not
// the whole budget; had it, these tests would run into vitest's timeout.
const patient = { connectTimeoutSeconds: 600 }

describe('the manifest from whichever server answers', () => {
  it('asks the second server at once when the first refuses connections', async () => {
    const down = await closedPort()
    const up = await serveFiles({ '/images/node/manifest.json': JSON.stringify(manifest()) })
    const { logger, warnings } = recordingLogger()
    const servers = imageServersOf([down, up.url], logger)
    const served = await servers.fetchImage(config([down, up.url]), patient)
    expect(served.manifest.serial).toBe(5)
    expect(served.server).toBe(up.url)
    expect(servers.current).toBe(up.url)
    expect(up.asked.get('/images/node/manifest.json')).toBe(1)
    expect(warnings()).toEqual([
      expect.objectContaining({ server: down, code: 'E_SERVER_UNREACHABLE' }),
    ])
    // The server that answered is asked first from now on.
    expect(servers.usable).toEqual([up.url, down])
  }, 20_000)

  it('asks the second server when the first answers 500 or 503, asking the first only once', async () => {
    for (const status of [500, 503]) {
      const failing = await serve((_path, _nth, res) => res.writeHead(status).end())
      const up = await serveFiles({ '/images/node/manifest.json': JSON.stringify(manifest()) })
      const servers = imageServersOf([failing.url, up.url])
      const served = await servers.fetchImage(config([failing.url, up.url]), patient)
      expect(served.server).toBe(up.url)
      expect(failing.asked.get('/images/node/manifest.json')).toBe(1)
    }
  }, 20_000)

  it('goes round the servers while one publishes the image, and takes it when it is there', async () => {
    const down = await closedPort()
    const publishing = await serve((_path, nth, res) => {
      if (nth < 2) {
        res
          .writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' })
          .end(JSON.stringify({ error: { code: 'E_IMAGE_PUBLISHING', message: 'packing' } }))
      } else res.writeHead(200).end(JSON.stringify(manifest()))
    })
    const waits: string[] = []
    const servers = imageServersOf([down, publishing.url])
    const served = await servers.fetchImage(config([down, publishing.url]), {
      connectTimeoutSeconds: 1,
      onWait: (wait) => waits.push(wait.reason),
    })
    expect(served.server).toBe(publishing.url)
    expect(publishing.asked.get('/images/node/manifest.json')).toBe(3)
    // Said once when the wait starts (then once a minute).
    expect(waits).toEqual(['publishing'])
  }, 20_000)

  it('fails at once when no server publishes the image, naming each', async () => {
    const a = await serveFiles({})
    const b = await serveFiles({})
    const servers = imageServersOf([a.url, b.url])
    const err = await failure(servers.fetchImage(config([a.url, b.url]), patient))
    expect(err.code).toBe('E_UNKNOWN_IMAGE')
    expect(err.message).toContain(`${a.url}: E_UNKNOWN_IMAGE`)
    expect(err.message).toContain(`${b.url}: E_UNKNOWN_IMAGE`)
  })

  it('is E_SERVER_UNREACHABLE, naming each server, when none answers within the connect timeout', async () => {
    const a = await closedPort()
    const b = await closedPort()
    const servers = imageServersOf([a, b])
    const err = await failure(servers.fetchImage(config([a, b]), { connectTimeoutSeconds: 1 }))
    expect(err.code).toBe('E_SERVER_UNREACHABLE')
    expect(err.message).toMatch(/^no image server answered with the manifest/)
    expect(err.message).toContain(`image server ${a} did not answer`)
    expect(err.message).toContain(`image server ${b} did not answer`)
  })
})

describe('with a trust root, a server whose manifest does not verify', () => {
  const trusted = () => ({ trustRoot: join(keys.dir, 'root.pub') })

  it('is refused with a warning naming it and why, and the next server’s manifest is taken', async () => {
    const other = await writeKeyDirectoryFixture(join(dir, 'other-keys'), { now: new Date() })
    const foreign = await signedServer(signManifest(manifest(6), other.signing))
    const good = await signedServer(signManifest(manifest(5), keys.signing))
    const { logger, warnings } = recordingLogger()
    const servers = imageServersOf([foreign.url, good.url], logger)
    const served = await servers.fetchImage(config([foreign.url, good.url], trusted()), patient)
    expect(served.server).toBe(good.url)
    expect(served.verified?.signingKeyId).toBe(keys.signing.keyId)
    expect(served.manifest.serial).toBe(5)
    const refusals = warnings().filter((line) => /refused/.test(line.msg))
    expect(refusals).toEqual([
      expect.objectContaining({ server: foreign.url, code: 'E_KEY_UNKNOWN' }),
    ])
    expect(refusals[0]?.msg).toContain(`image server ${foreign.url} refused`)
    // Refused: not asked again, not in the swarm.
    expect(servers.usable).toEqual([good.url])
  }, 20_000)

  it('throws the first refusal’s code, naming each server and why, when every one is refused', async () => {
    const signed = signManifest(manifest(5), keys.signing)
    const tampered = await signedServer({
      bytes: Buffer.from(signed.bytes.toString().replace('"size": 1024', '"size": 1025')),
      signature: signed.signature,
    })
    const other = await writeKeyDirectoryFixture(join(dir, 'other-keys'), { now: new Date() })
    const foreign = await signedServer(signManifest(manifest(5), other.signing))
    const servers = imageServersOf([tampered.url, foreign.url])
    const err = await failure(
      servers.fetchImage(config([tampered.url, foreign.url], trusted()), patient),
    )
    expect([err.code, err.exitCode]).toEqual(['E_SIGNATURE_INVALID', 18])
    expect(err.message).toMatch(/^no image server gave a manifest this node accepts/)
    expect(err.message).toContain(`${tampered.url}: E_SIGNATURE_INVALID`)
    expect(err.message).toContain(`${foreign.url}: E_KEY_UNKNOWN`)
    expect(err.hint).toEqual(expect.any(String))
  }, 20_000)

  it('keeps one server’s refusal as it was, code and message', async () => {
    const other = await writeKeyDirectoryFixture(join(dir, 'other-keys'), { now: new Date() })
    const foreign = await signedServer(signManifest(manifest(5), other.signing))
    const servers = imageServersOf([foreign.url])
    const err = await failure(servers.fetchImage(config([foreign.url], trusted()), patient))
    expect(err.code).toBe('E_KEY_UNKNOWN')
    expect(err.message).not.toMatch(/no image server/)
  }, 20_000)
})

describe('what else is asked of the servers', () => {
  it('asks the current server first, then the others, and makes the one that answered current', async () => {
    const image = manifest()
    const a = await serveFiles({ '/images/node/manifest.json': JSON.stringify(image) })
    const b = await serveFiles({ '/install/node.json': '{"from":"b"}' })
    const servers = imageServersOf([a.url, b.url])
    await servers.fetchImage(config([a.url, b.url]), patient)
    expect(servers.current).toBe(a.url)
    // A 404 is an answer: the current server does not have it.
    expect(
      await servers.fetchInstallFile('/install/node.json', 'node config', 1024, patient),
    ).toEqual({ body: undefined, url: `${a.url}/install/node.json` })
    const other = await servers.firstAnswer({ what: 'file' }, patient, async (request) => {
      if (request.server === a.url) {
        throw new ImageSwarmError('E_SERVER_UNREACHABLE', `image server ${a.url} is down`)
      }
      return request.server
    })
    expect(other).toEqual({ value: b.url, server: b.url })
    expect(servers.current).toBe(b.url)
  })

  it('refuses a server whose .torrent does not match the manifest, and leaves it out after', async () => {
    const image = manifest()
    const a = await serveFiles({
      '/images/node/manifest.json': JSON.stringify(image),
      '/images/node/image.torrent': 'not a torrent',
    })
    const b = await serveFiles({})
    const servers = imageServersOf([a.url, b.url])
    await servers.fetchImage(config([a.url, b.url]), patient)
    const err = await failure(
      servers.firstAnswer({ what: '.torrent', image: 'node' }, patient, (request) =>
        fetchTorrent(image, request),
      ),
    )
    expect(err.code).toBe('E_TORRENT_MISMATCH')
    expect(err.message).toContain(`${a.url}: E_TORRENT_MISMATCH`)
    expect(err.message).toContain(`${b.url}: E_UNKNOWN_IMAGE`)
    expect(servers.usable).toEqual([b.url])
  })
})

describe('swarmSourcesOf', () => {
  const image = { name: 'node', archiveFile: 'image-node.tar.zst' }

  it('puts every server’s tracker beside the torrent’s, each once', () => {
    const sources = swarmSourcesOf(
      { announce: ['http://a:6969/announce', 'http://other:7000/announce'], urlList: [] },
      ['http://a:6969', 'http://b:6969'],
      image,
    )
    expect(sources.announce).toEqual([
      'http://a:6969/announce',
      'http://other:7000/announce',
      'http://b:6969/announce',
    ])
  })

  it('gives every server’s web seed, the current first, then the torrent’s others, each once', () => {
    const sources = swarmSourcesOf(
      {
        announce: [],
        urlList: [
          'http://a:6969/images/node/image-node.tar.zst',
          'http://mirror:6969/images/node/image-node.tar.zst',
        ],
      },
      ['http://b:6969', 'http://a:6969'],
      image,
    )
    expect(sources.urlList).toEqual([
      'http://b:6969/images/node/image-node.tar.zst',
      'http://a:6969/images/node/image-node.tar.zst',
      'http://mirror:6969/images/node/image-node.tar.zst',
    ])
    expect(sources.announce).toEqual(['http://b:6969/announce', 'http://a:6969/announce'])
    // Only the servers' own are trusted as the server: the url-list is not signed.
    expect(sources.serverWebSeeds).toEqual([
      'http://b:6969/images/node/image-node.tar.zst',
      'http://a:6969/images/node/image-node.tar.zst',
    ])
  })
})
