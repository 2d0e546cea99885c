import { NODE_STATUS_MAX_BYTES, NODE_STATUS_PATH } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { clientPeerId, nodeToken, statusReport } from './fixtures.js'
import { announce, type RunningTracker, startTracker, testInfoHash } from './tracker-server.js'

const running: RunningTracker[] = []

async function start(...args: Parameters<typeof startTracker>): Promise<RunningTracker> {
  const tracker = await startTracker(...args)
  tracker.tracker.publish(testInfoHash(1), 'rocky9')
  running.push(tracker)
  return tracker
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((tracker) => tracker.close()))
})

/**
 * A status post as the node itself makes it: with its node token (fixed per peer id in
 * these tests), unless `headers` say otherwise.
 */
function post(baseUrl: string, body: unknown, headers: Record<string, string> = {}) {
  const peerId = (body as { peerId?: unknown }).peerId
  return fetch(`${baseUrl}${NODE_STATUS_PATH}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(typeof peerId === 'string' ? { authorization: `Bearer ${nodeToken(peerId)}` } : {}),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

describe('the status API', () => {
  it('takes a valid report and shows the node in the JSON API', async () => {
    const { baseUrl } = await start()
    const response = await post(baseUrl, statusReport(1, { downloaded: 500 }))
    expect(response.status).toBe(200)
    // One node: post every second. The post claimed the peer id with the node's token.
    expect(await response.json()).toEqual({
      ok: true,
      reportIntervalMs: 1000,
      nodeToken: nodeToken(clientPeerId(1)),
    })
    const { nodes } = (await (await fetch(`${baseUrl}/api/images/rocky9/nodes`)).json()) as {
      nodes: { node: string; progress: number }[]
    }
    expect(nodes).toMatchObject([{ node: 'node1', progress: 0.5, state: 'downloading' }])
    const filtered = await (await fetch(`${baseUrl}/api/images/rocky9/nodes?state=failed`)).json()
    expect(filtered).toEqual({ image: 'rocky9', nodes: [] })
  })

  it('answers malformed, oversized, unknown-image and stale-image posts with a 4xx and a code', async () => {
    const { baseUrl } = await start()
    const cases: [unknown, number, string][] = [
      ['{not json', 400, 'E_STATUS_INVALID'],
      [{ ...statusReport(1), peers: -1 }, 400, 'E_STATUS_INVALID'],
      [{ ...statusReport(1), node: 'x'.repeat(NODE_STATUS_MAX_BYTES) }, 413, 'E_STATUS_TOO_LARGE'],
      [statusReport(1, { image: 'centos7' }), 404, 'E_UNKNOWN_IMAGE'],
      [statusReport(1, { infoHash: testInfoHash(2) }), 409, 'E_STALE_IMAGE'],
    ]
    for (const [body, status, code] of cases) {
      const response = await post(baseUrl, body)
      expect(response.status, code).toBe(status)
      const json = (await response.json()) as { error: { code: string; message: string } }
      expect(json.error.code).toBe(code)
      expect(json.error.message.length).toBeGreaterThan(10)
    }
    const get = await fetch(`${baseUrl}${NODE_STATUS_PATH}`)
    expect(get.status).toBe(405)
    expect(get.headers.get('allow')).toBe('POST')
    const { nodes } = (await (await fetch(`${baseUrl}/api/images/rocky9/nodes`)).json()) as {
      nodes: unknown[]
    }
    expect(nodes).toEqual([])
  })

  it('limits how often one node may post, with Retry-After', async () => {
    const { baseUrl } = await start({ config: { statusRatePerNode: 1 } })
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) statuses.push((await post(baseUrl, statusReport(1))).status)
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200])
    expect(statuses.slice(3)).toEqual([429, 429])
    const limited = await post(baseUrl, statusReport(1))
    expect(limited.headers.get('retry-after')).toBe('1')
    expect(await limited.json()).toMatchObject({ error: { code: 'E_RATE_LIMITED' } })
    // Another node is not held back by the first.
    expect((await post(baseUrl, statusReport(2))).status).toBe(200)
  })
})

describe('the dashboard API', () => {
  it('lists every published image with its swarm summary, nodes joined from announces', async () => {
    const { baseUrl, announceUrl } = await start()
    await announce(announceUrl, { infoHash: testInfoHash(1), peerId: clientPeerId(7), port: 6881 })
    await post(baseUrl, statusReport(7, { state: 'downloading', downloaded: 100 }))
    const { images } = (await (await fetch(`${baseUrl}/api/images`)).json()) as {
      images: { image: string; nodes: number; leechers: number; states: Record<string, number> }[]
    }
    expect(images).toMatchObject([{ image: 'rocky9', nodes: 1, leechers: 1 }])
    expect(images[0]?.states.downloading).toBe(1)
    const one = await (await fetch(`${baseUrl}/api/images/rocky9`)).json()
    expect(one).toMatchObject({ image: 'rocky9', nodes: 1 })
    const unknown = await fetch(`${baseUrl}/api/images/centos7`)
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toMatchObject({ error: { code: 'E_UNKNOWN_IMAGE' } })
  })

  it('streams a snapshot, then updates, as server-sent events', async () => {
    const { baseUrl } = await start()
    await post(baseUrl, statusReport(1))
    const controller = new AbortController()
    const response = await fetch(`${baseUrl}/api/events?image=rocky9`, {
      signal: controller.signal,
    })
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const reader = response.body!.getReader()
    let text = ''
    while (!text.includes('event: update')) {
      const { value, done } = await reader.read()
      if (done) break
      text += Buffer.from(value).toString('utf8')
    }
    controller.abort()
    const snapshot = JSON.parse(/event: snapshot\ndata: (.*)\n/.exec(text)![1]!)
    expect(snapshot.image).toBe('rocky9')
    expect(snapshot.nodes).toMatchObject([{ node: 'node1' }])
    expect(snapshot.summaries).toMatchObject([{ image: 'rocky9' }])
    const update = JSON.parse(/event: update\ndata: (.*)\n/.exec(text)![1]!)
    // Nothing changed since the snapshot: no nodes resent, one new history point.
    expect(update.nodes).toEqual([])
    expect(update.history.t.length).toBeGreaterThanOrEqual(1)
  })

  it('serves the page and its assets, uPlot included, and no other file', async () => {
    const { baseUrl } = await start()
    const page = await fetch(`${baseUrl}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'/)
    expect(await page.text()).toContain('/assets/app.js')
    for (const asset of ['/assets/app.js', '/assets/uplot.esm.js', '/assets/uplot.min.css']) {
      expect((await fetch(`${baseUrl}${asset}`)).status, asset).toBe(200)
    }
    expect((await fetch(`${baseUrl}/assets/../package.json`)).status).toBe(404)
    expect((await fetch(`${baseUrl}/assets/nothing.js`)).status).toBe(404)
  })
})

describe('metrics', () => {
  it('exposes swarm and status metrics in the Prometheus text format', async () => {
    const { baseUrl, announceUrl } = await start()
    await announce(announceUrl, { infoHash: testInfoHash(1), peerId: clientPeerId(1), port: 6881 })
    await post(baseUrl, statusReport(1, { state: 'downloading' }))
    await post(baseUrl, '{bad')
    const response = await fetch(`${baseUrl}/metrics`)
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/)
    const text = await response.text()
    expect(text).toContain('imageswarm_swarm_leechers{image="rocky9"} 1')
    expect(text).toContain('imageswarm_swarm_nodes{image="rocky9",state="downloading"} 1')
    expect(text).toContain('imageswarm_status_reports_total{outcome="accepted"} 1')
    expect(text).toContain('imageswarm_status_reports_total{outcome="invalid"} 1')
    expect(text).toContain('imageswarm_tracker_announces_total{event="update"} 1')
    expect(text).toMatch(/imageswarm_tracker_announce_duration_seconds_count 1/)
    expect(text).toContain('imageswarm_swarm_delivered_bytes{image="rocky9",source="server"} 0')
  })

  it('keeps each tracker’s metrics apart (no global registry)', async () => {
    const first = await start()
    const second = await start()
    await post(first.baseUrl, statusReport(1))
    const text = await (await fetch(`${second.baseUrl}/metrics`)).text()
    expect(text).not.toContain('outcome="accepted"')
  })
})
