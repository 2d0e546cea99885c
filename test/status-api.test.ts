import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startServer } from '../scripts/lib/deployment.mjs'
import { addSampleImage, makeServerLayout, type ServerLayout } from './helpers/workspace.js'

type Server = Awaited<ReturnType<typeof startServer>>

// Core's NODE_STATUS_PATH and NODE_STATUS_MAX_BYTES: these tests talk to a server
// process over HTTP, as any client would, without importing the packages.
const NODE_STATUS_PATH = '/api/nodes/status'
const NODE_STATUS_MAX_BYTES = 8 * 1024

type NodeStatusReport = Record<string, unknown> & { size: number }

let layout: ServerLayout
let server: Server
let report: NodeStatusReport

beforeAll(async () => {
  layout = await makeServerLayout('imageswarm-status-')
  await addSampleImage(layout, 'compute')
  // One post a second for all nodes: three installing nodes must be asked for one each 3 s.
  server = await startServer({
    images: ['compute'],
    ...layout,
    args: ['--status-posts-per-second', '1'],
  })
  const manifest = (await (await fetch(`${server.url}/images/compute/manifest.json`)).json()) as {
    infoHash: string
    size: number
  }
  report = {
    image: 'compute',
    infoHash: manifest.infoHash,
    peerId: Buffer.from('-IS01C0-000000000001', 'latin1').toString('hex'),
    node: 'rack1-node01',
    state: 'downloading',
    size: manifest.size,
    downloaded: Math.floor(manifest.size / 4),
    downloadedFromServer: 0,
    uploaded: 0,
    downloadRate: 1e6,
    uploadRate: 0,
    peers: 3,
  }
})

afterAll(async () => {
  await server?.stop()
  await layout?.remove()
})

function post(body: string, headers: Record<string, string> = {}) {
  return fetch(`${server.url}${NODE_STATUS_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  })
}

async function errorOf(response: Response) {
  return ((await response.json()) as { error: { code: string; message: string; hint?: string } })
    .error
}

describe('the server’s status API', () => {
  it('takes a node’s report and shows it in the JSON API and metrics', async () => {
    const response = await post(JSON.stringify(report))
    expect(response.status).toBe(200)
    const { nodes } = (await (await fetch(`${server.url}/api/images/compute/nodes`)).json()) as {
      nodes: { node: string; state: string; progress: number }[]
    }
    expect(nodes).toMatchObject([{ node: 'rack1-node01', state: 'downloading' }])
    expect(nodes[0]!.progress).toBeCloseTo(0.25, 2)
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    expect(metrics).toContain('imageswarm_swarm_nodes{image="compute",state="downloading"} 1')
  })

  it('asks the nodes to post less often as --status-posts-per-second is reached', async () => {
    const nodes = [2, 3, 4].map((n) => ({
      ...report,
      node: `rack1-node0${n}`,
      peerId: Buffer.from(`-IS01C0-00000000000${n}`, 'latin1').toString('hex'),
    }))
    const tokens: string[] = []
    for (const node of nodes) {
      const response = await post(JSON.stringify(node))
      expect(response.status).toBe(200)
      // The first post for a peer id claims it: later ones carry the token it was given.
      tokens.push(((await response.json()) as { nodeToken: string }).nodeToken)
    }
    // The installing nodes are counted once a second, with the swarm's history: wait for
    // the sample that counts all four.
    const deadline = Date.now() + 30_000
    for (;;) {
      const { history } = (await (
        await fetch(`${server.url}/api/images/compute/history`)
      ).json()) as { history: { downloading: number[] } }
      if ((history.downloading.at(-1) ?? 0) >= 4) break
      expect(Date.now(), 'no history sample counted the four nodes').toBeLessThan(deadline)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const again = await post(JSON.stringify(nodes[0]), { authorization: `Bearer ${tokens[0]}` })
    expect(again.status).toBe(200)
    const reply = (await again.json()) as { reportIntervalMs: number }
    expect(reply.reportIntervalMs).toBeGreaterThanOrEqual(3000)
  })

  it('rejects a malformed report: 400 E_STATUS_INVALID naming the field', async () => {
    const notJson = await post('state=downloading')
    expect(notJson.status).toBe(400)
    expect((await errorOf(notJson)).code).toBe('E_STATUS_INVALID')

    const badField = await post(JSON.stringify({ ...report, downloaded: 'lots' }))
    expect(badField.status).toBe(400)
    const error = await errorOf(badField)
    expect(error.code).toBe('E_STATUS_INVALID')
    expect(error.message).toMatch(/field downloaded: .*received "lots"/)
  })

  it('rejects an oversized report: 413 E_STATUS_TOO_LARGE, declared or streamed', async () => {
    const big = JSON.stringify({ ...report, node: 'n'.repeat(NODE_STATUS_MAX_BYTES) })
    const declared = await post(big)
    expect(declared.status).toBe(413)
    expect((await errorOf(declared)).code).toBe('E_STATUS_TOO_LARGE')

    // No Content-Length: the server counts the bytes as they come and stops at the limit.
    const chunks = [Buffer.from(big)]
    const streamed = await fetch(`${server.url}${NODE_STATUS_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new ReadableStream({
        pull(controller) {
          const chunk = chunks.shift()
          if (chunk) controller.enqueue(chunk)
          else controller.close()
        },
      }),
      duplex: 'half',
    } as RequestInit)
    expect(streamed.status).toBe(413)
  })

  it('rejects a report for an image the server does not publish: 404 E_UNKNOWN_IMAGE', async () => {
    const response = await post(JSON.stringify({ ...report, image: 'login' }))
    expect(response.status).toBe(404)
    const error = await errorOf(response)
    expect(error.code).toBe('E_UNKNOWN_IMAGE')
    expect(error.hint).toMatch(/compute/)
    const stale = await post(JSON.stringify({ ...report, infoHash: 'ab'.repeat(20) }))
    expect(stale.status).toBe(409)
    expect((await errorOf(stale)).code).toBe('E_STALE_IMAGE')
  })

  it('answers the page and 404s unknown API paths with a JSON error', async () => {
    expect((await fetch(`${server.url}/`)).status).toBe(200)
    const missing = await fetch(`${server.url}/api/nothing`)
    expect(missing.status).toBe(404)
    expect((await errorOf(missing)).code).toBe('E_NOT_FOUND')
  })
})
