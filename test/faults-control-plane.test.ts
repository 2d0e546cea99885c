import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { makeSampleImage } from '../scripts/lib/sample-image.mjs'
import { useServerFixture } from './helpers/server-fixture.js'
import { clientDirs, makeServerLayout } from './helpers/workspace.js'

// The control plane as an attacker on the install network meets it: the server is a
// real `imageswarm serve` process, the nodes real `imageswarm install` processes, and
// the attacker has what anyone has who reaches the port: curl (plain HTTP requests
// here), the public JSON API, and addresses of its own (127.0.0.2 stands for another
// host: Linux routes all of 127/8 to the loopback, and the server sees it as the source).
// Core's NODE_STATUS_PATH: these tests speak HTTP as any client would.
const NODE_STATUS_PATH = '/api/nodes/status'
const ATTACKER = '127.0.0.2'

const env = useServerFixture()

interface Manifest {
  name: string
  infoHash: string
  size: number
  archiveFile: string
}

interface NodeView {
  peerId: string
  node: string | null
  state: string
  error: { code: string; message: string } | null
  size: number | null
  downloaded: number
  downloadedFromServer: number
  uploaded: number
  source: 'status' | 'announce'
}

interface Summary {
  nodes: number
  delivered: number
  fromServer: number
  fromPeers: number
  uploaded: number
}

/** A server with one small image, `compute`; `args` and `envVars` go to `imageswarm serve`. */
async function startImageServer(options: { args?: string[]; env?: Record<string, string> } = {}) {
  env.layout = await makeServerLayout('imageswarm-control-')
  await makeSampleImage(join(env.layout.imagesDir, 'compute'), {
    dirs: 2,
    filesPerDir: 5,
    bigFiles: 1,
    bigFileBytes: 256 * 1024,
    seed: 'control-plane',
  })
  env.server = await startServer({ images: ['compute'], ...env.layout, ...options })
  const manifest = (await (
    await fetch(`${env.server.url}/images/compute/manifest.json`)
  ).json()) as Manifest
  return { url: env.server.url, manifest }
}

async function getJson<T>(url: string, headers: Record<string, string> = {}): Promise<T> {
  const response = await fetch(url, { headers })
  expect(response.status, url).toBe(200)
  return (await response.json()) as T
}

const nodesOf = async (url: string, headers: Record<string, string> = {}) =>
  (await getJson<{ nodes: NodeView[] }>(`${url}/api/images/compute/nodes`, headers)).nodes
const summaryOf = (url: string) => getJson<Summary>(`${url}/api/images/compute`)

/** A status post as curl would send it: exactly the headers given. */
function postStatus(url: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${url}${NODE_STATUS_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

/** A status post from another source address than the test's own 127.0.0.1. */
function postStatusFrom(
  localAddress: string,
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: { error?: { code: string; message: string } } }> {
  const text = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${NODE_STATUS_PATH}`,
      {
        method: 'POST',
        localAddress,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => {
          try {
            resolve({
              status: res.statusCode ?? 0,
              json: JSON.parse(Buffer.concat(chunks).toString()),
            })
          } catch (err) {
            reject(err)
          }
        })
      },
    )
    req.on('error', reject)
    req.end(text)
  })
}

/** Percent-encodes every byte, as a BitTorrent client sends binary query values. */
const encodeBinary = (hex: string) => hex.replace(/../g, (byte) => `%${byte}`)

/** An announce as any BitTorrent client sends it, here from 127.0.0.1. */
async function announce(url: string, infoHash: string, peerId: string, port: number) {
  const query = [
    `info_hash=${encodeBinary(infoHash)}`,
    `peer_id=${encodeBinary(peerId)}`,
    `port=${port}`,
    'uploaded=0',
    'downloaded=0',
    'left=1000',
    'compact=1',
    'event=started',
  ].join('&')
  const response = await fetch(`${url}/announce?${query}`)
  const body = Buffer.from(await response.arrayBuffer()).toString('latin1')
  expect(response.status).toBe(200)
  expect(body).not.toContain('failure reason')
}

/** A report of a node of `manifest`'s image, as the install client posts it. */
function report(manifest: Manifest, peerId: string, fields: Record<string, unknown> = {}) {
  return {
    image: manifest.name,
    infoHash: manifest.infoHash,
    peerId,
    node: 'attacker',
    state: 'downloading',
    size: manifest.size,
    downloaded: 0,
    downloadedFromServer: 0,
    uploaded: 0,
    downloadRate: 0,
    uploadRate: 0,
    peers: 0,
    ...fields,
  }
}

const freshPeerId = () => randomBytes(20).toString('hex')
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** A real install into its own target root; resolves when the client has exited. */
function install(url: string, n: number, args: string[] = []) {
  return runInstall({
    server: url,
    image: 'compute',
    ...clientDirs(env.layout!, n),
    seedTime: 1,
    args: ['--node-name', `node${n}`, ...args],
  })
}

describe('the control plane, as an attacker meets it', () => {
  it('refuses posts for a real node without its token: 403 E_NODE_FORBIDDEN; the dashboard keeps done with the real totals', async () => {
    const { url, manifest } = await startImageServer()
    const result = await install(url, 1)
    expect(result.code, JSON.stringify(result.failed)).toBe(0)
    const [node] = await nodesOf(url)
    expect(node).toMatchObject({ node: 'node1', state: 'done', source: 'status' })
    expect(node!.downloaded).toBe(result.installed.totals.downloaded)
    const before = await summaryOf(url)

    // Its peer id is public: the attacker reads it from the API and speaks for it.
    const forgeries = [
      report(manifest, node!.peerId, {
        state: 'failed',
        error: { code: 'E_FORGED', message: 'forged' },
      }),
      report(manifest, node!.peerId, {
        state: 'done',
        downloaded: 9e15,
        downloadedFromServer: 9e15,
        uploaded: 9e15,
      }),
    ]
    const wrongToken = bearer(randomBytes(32).toString('base64url'))
    for (const forged of forgeries) {
      for (const headers of [{}, wrongToken]) {
        const response = await postStatus(url, forged, headers)
        expect(response.status).toBe(403)
        const { error } = (await response.json()) as { error: { code: string; hint: string } }
        expect(error.code).toBe('E_NODE_FORBIDDEN')
        expect(error.hint).toMatch(/only the node itself may report for itself/)
      }
    }
    const [after] = await nodesOf(url)
    expect(after).toMatchObject({
      peerId: node!.peerId,
      state: 'done',
      error: null,
      downloaded: node!.downloaded,
      downloadedFromServer: node!.downloadedFromServer,
      uploaded: node!.uploaded,
    })
    expect(await summaryOf(url)).toMatchObject({
      nodes: 1,
      delivered: before.delivered,
      uploaded: before.uploaded,
    })
  })

  it('holds a node reporting 9e15 bytes to a few archives in the swarm’s totals', async () => {
    const { url, manifest } = await startImageServer()
    const result = await install(url, 1)
    expect(result.code, JSON.stringify(result.failed)).toBe(0)
    const before = await summaryOf(url)
    expect(before.delivered).toBeGreaterThanOrEqual(result.installed.totals.downloaded)

    // A node of the attacker's own, which may say what it likes about itself.
    const peerId = freshPeerId()
    const inflated = report(manifest, peerId, {
      size: 9e15,
      downloaded: 9e15,
      downloadedFromServer: 9e15,
      uploaded: 9e15,
    })
    const claimed = await postStatus(url, inflated)
    expect(claimed.status).toBe(200)
    const { nodeToken } = (await claimed.json()) as { nodeToken: string }
    const done = await postStatus(url, { ...inflated, state: 'done' }, bearer(nodeToken))
    expect(done.status).toBe(200)

    const after = await summaryOf(url)
    // What one node adds is bounded by MAX_DOWNLOAD_FACTOR (4) archives.
    expect(after.delivered - before.delivered).toBeLessThanOrEqual(4 * manifest.size)
    expect(after.delivered).toBeLessThan(before.delivered + 5 * manifest.size)
    expect(after.uploaded).toBeLessThanOrEqual(after.delivered)
    const fake = (await nodesOf(url)).find((n) => n.peerId === peerId)
    expect(fake).toMatchObject({ state: 'done', size: manifest.size })
    expect(fake!.downloaded).toBeLessThanOrEqual(4 * manifest.size)
  })

  it('turns away 20,000 posts with fresh peer ids from one address and keeps a real failed node', async () => {
    const { url, manifest } = await startImageServer()
    // A real node that fails: a regular file where its target root should be.
    const dirs = clientDirs(env.layout!, 1)
    await mkdir(join(dirs.target, '..'), { recursive: true })
    await writeFile(dirs.target, 'not a directory')
    const result = await install(url, 1)
    expect(result.failed?.error.code).toBe('E_TARGET_NOT_WRITABLE')
    const [failed] = await nodesOf(url)
    expect(failed).toMatchObject({ node: 'node1', state: 'failed' })
    expect(failed!.error?.code).toBe('E_TARGET_NOT_WRITABLE')

    const total = 20_000
    const statuses = new Map<number, number>()
    const codes = new Set<string>()
    let sent = 0
    // 64 connections' worth of posts at a time, each with a peer id never seen before.
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (sent < total) {
          sent++
          const response = await postStatus(url, report(manifest, freshPeerId()))
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
          const body = (await response.json()) as { error?: { code: string } }
          if (body.error) codes.add(body.error.code)
          if (response.status === 429) expect(response.headers.get('retry-after')).toMatch(/^\d+$/)
        }
      }),
    )
    const accepted = statuses.get(200) ?? 0
    const refused = statuses.get(429) ?? 0
    console.info(`20,000 fresh peer ids from one address: ${accepted} accepted, ${refused} refused`)
    expect(accepted + refused).toBe(total)
    // newNodesPerAddressPerMinute (120 at once, then 2 a second) lets a few through.
    expect(refused).toBeGreaterThanOrEqual(19_000)
    expect([...codes]).toEqual(['E_RATE_LIMITED'])

    const nodes = await nodesOf(url)
    expect(nodes.length).toBe(accepted + 1)
    expect(nodes.find((n) => n.peerId === failed!.peerId)).toMatchObject({
      state: 'failed',
      error: { code: 'E_TARGET_NOT_WRITABLE' },
    })
    const metrics = await (await fetch(`${url}/metrics`)).text()
    expect(metrics).toContain(
      `imageswarm_status_reports_total{outcome="new_nodes_limited"} ${refused}`,
    )
  })

  it('lets a peer id seen in announces be claimed only from the address it announces from', async () => {
    const { url, manifest } = await startImageServer()
    // A foreign client (libtorrent's prefix) announces from 127.0.0.1 and never posts.
    const foreign = Buffer.concat([Buffer.from('-LT2000-'), randomBytes(12)]).toString('hex')
    await announce(url, manifest.infoHash, foreign, 51413)
    expect((await nodesOf(url)).find((n) => n.peerId === foreign)).toMatchObject({
      source: 'announce',
    })

    const forged = report(manifest, foreign, {
      state: 'failed',
      error: { code: 'E_X', message: 'x' },
    })
    const elsewhere = await postStatusFrom(ATTACKER, url, forged)
    expect(elsewhere.status).toBe(403)
    expect(elsewhere.json.error).toMatchObject({
      code: 'E_NODE_FORBIDDEN',
      message: expect.stringMatching(/announces from another address than 127\.0\.0\.2/),
    })
    expect((await nodesOf(url)).find((n) => n.peerId === foreign)).toMatchObject({
      state: 'waiting',
      source: 'announce',
    })

    // From its own address the peer id can be claimed; from then on only with its token.
    const own = await postStatus(url, report(manifest, foreign))
    expect(own.status).toBe(200)
    const { nodeToken } = (await own.json()) as { nodeToken: string }
    expect((await postStatusFrom(ATTACKER, url, forged)).status).toBe(403)
    expect((await postStatusFrom(ATTACKER, url, forged, bearer(nodeToken))).status).toBe(200)
  })

  it('keeps the dashboard, its API, live events and metrics behind the read-only token; the tracker, images and status posts stay open', async () => {
    const token = randomBytes(24).toString('hex')
    const layoutDir = await makeServerLayout('imageswarm-token-')
    const tokenFile = join(layoutDir.dir, 'dashboard.token')
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 })
    try {
      const missing = join(layoutDir.dir, 'missing.token')
      const start = startImageServer({ env: { IMAGESWARM_DASHBOARD_TOKEN_FILE: missing } })
      await expect(start).rejects.toThrow(/exited with 2 .*cannot read the dashboard token file/s)
      await env.layout?.remove()

      // Set through the environment, as a service unit would.
      const { url, manifest } = await startImageServer({
        env: { IMAGESWARM_DASHBOARD_TOKEN_FILE: tokenFile },
      })
      const reads = ['/', '/assets/app.js', '/api/images', '/api/images/compute/nodes', '/metrics']
      for (const path of [...reads, '/api/events']) {
        const response = await fetch(`${url}${path}`)
        expect(response.status, path).toBe(401)
        expect(await response.json()).toMatchObject({ error: { code: 'E_DASHBOARD_UNAUTHORIZED' } })
      }
      for (const path of reads) {
        const response = await fetch(`${url}${path}`, { headers: bearer(token) })
        expect(response.status, path).toBe(200)
        await response.arrayBuffer()
      }
      const events = new AbortController()
      const live = await fetch(`${url}/api/events`, {
        headers: bearer(token),
        signal: events.signal,
      })
      expect(live.status).toBe(200)
      events.abort()

      // What nodes need, without the token.
      for (const path of [
        '/images',
        '/images/compute/manifest.json',
        '/images/compute/image.torrent',
        '/scrape',
        '/healthz',
      ]) {
        const response = await fetch(`${url}${path}`)
        expect(response.status, path).toBe(200)
        await response.arrayBuffer()
      }
      const range = await fetch(`${url}/images/compute/${manifest.archiveFile}`, {
        headers: { range: 'bytes=0-99' },
      })
      expect(range.status).toBe(206)
      expect((await range.arrayBuffer()).byteLength).toBe(100)
      await announce(url, manifest.infoHash, freshPeerId(), 51413)

      // A real install reports to the dashboard as before.
      const result = await install(url, 1)
      expect(result.code, JSON.stringify(result.failed)).toBe(0)
      expect(
        (await nodesOf(url, bearer(token))).find((node) => node.node === 'node1'),
      ).toMatchObject({ state: 'done', source: 'status' })
    } finally {
      await layoutDir.remove()
    }
  })
})
