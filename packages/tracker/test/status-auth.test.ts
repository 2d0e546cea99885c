import { NODE_STATUS_PATH, NODE_TOKEN_PATTERN } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { addressBudgetKey, sameSecret } from '../src/credentials.js'
import { clientPeerId, nodeToken, statusReport } from './fixtures.js'
import { announce, type RunningTracker, startTracker, testInfoHash } from './tracker-server.js'

const running: RunningTracker[] = []

async function start(...args: Parameters<typeof startTracker>): Promise<RunningTracker> {
  const tracker = await startTracker(...args)
  tracker.tracker.publish(testInfoHash(1), 'rocky9', 1000)
  running.push(tracker)
  return tracker
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((tracker) => tracker.close()))
})

/** A status post as anyone can send it: the headers are exactly the ones given. */
function post(baseUrl: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${baseUrl}${NODE_STATUS_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function nodesOf(baseUrl: string) {
  const body = (await (await fetch(`${baseUrl}/api/images/rocky9/nodes`)).json()) as {
    nodes: { peerId: string; state: string; downloaded: number; error: { code: string } | null }[]
  }
  return body.nodes
}

describe('who may report for a node', () => {
  it('binds a peer id to the token of its first post; later posts without it get 403 E_NODE_FORBIDDEN', async () => {
    const { baseUrl } = await start()
    const peerId = clientPeerId(1)
    // Claimed without a token (as curl would): the reply carries one made for it.
    const first = await post(baseUrl, statusReport(1, { state: 'downloading', downloaded: 100 }))
    expect(first.status).toBe(200)
    const { nodeToken: token } = (await first.json()) as { nodeToken: string }
    expect(token).toMatch(NODE_TOKEN_PATTERN)

    const done = statusReport(1, { state: 'done', downloaded: 1000 })
    expect((await post(baseUrl, done, bearer(token))).status).toBe(200)
    const forged = statusReport(1, {
      state: 'failed',
      downloaded: 9e15,
      error: { code: 'E_FORGED', message: 'forged' },
    })
    for (const headers of [{}, bearer(nodeToken(peerId)), bearer('x'), { authorization: token }]) {
      const response = await post(baseUrl, forged, headers)
      expect(response.status, JSON.stringify(headers)).toBe(403)
      const { error } = (await response.json()) as { error: { code: string; hint: string } }
      expect(error.code).toBe('E_NODE_FORBIDDEN')
      expect(error.hint).toMatch(/Authorization: Bearer/)
    }
    expect(await nodesOf(baseUrl)).toMatchObject([
      { peerId, state: 'done', downloaded: 1000, error: null },
    ])
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text()
    expect(metrics).toContain('imageswarm_status_reports_total{outcome="forbidden"} 4')
  })

  it('lets a peer id seen in announces be claimed only from the address it announces from', async () => {
    const { baseUrl, announceUrl } = await start({ trustProxy: true })
    const peerId = clientPeerId(2)
    await announce(
      announceUrl,
      { infoHash: testInfoHash(1), peerId, port: 6881 },
      { 'x-forwarded-for': '10.0.0.7' },
    )
    const report = statusReport(2, { state: 'failed', error: { code: 'E_X', message: 'x' } })
    const elsewhere = await post(baseUrl, report, { 'x-forwarded-for': '10.0.0.66' })
    expect(elsewhere.status).toBe(403)
    expect(await elsewhere.json()).toMatchObject({
      error: { code: 'E_NODE_FORBIDDEN', message: /announces from another address/ },
    })
    expect(await nodesOf(baseUrl)).toMatchObject([{ peerId, state: 'waiting' }])
    const own = await post(baseUrl, statusReport(2, { state: 'downloading' }), {
      'x-forwarded-for': '10.0.0.7',
      ...bearer(nodeToken(peerId)),
    })
    expect(own.status).toBe(200)
    expect(await nodesOf(baseUrl)).toMatchObject([{ peerId, state: 'downloading' }])
  })

  it('budgets the new peer ids of one address (an IPv6 /64) with 429 and Retry-After, not the nodes it has', async () => {
    const { baseUrl } = await start({
      trustProxy: true,
      config: { newNodesPerAddressPerMinute: 3 },
    })
    const from = (address: string, n: number) =>
      post(baseUrl, statusReport(n), {
        'x-forwarded-for': address,
        ...bearer(nodeToken(clientPeerId(n))),
      })
    const statuses: number[] = []
    for (let n = 1; n <= 5; n++) statuses.push((await from('10.0.0.5', n)).status)
    expect(statuses).toEqual([200, 200, 200, 429, 429])
    const refused = await from('10.0.0.5', 6)
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(await refused.json()).toMatchObject({
      error: { code: 'E_RATE_LIMITED', message: /too many new nodes from 10\.0\.0\.5/ },
    })
    // The nodes it has go on posting; another address has a budget of its own.
    expect((await from('10.0.0.5', 1)).status).toBe(200)
    expect((await from('10.0.0.9', 7)).status).toBe(200)
    // Addresses of one IPv6 /64 share a budget.
    const v6: number[] = []
    for (let n = 10; n < 14; n++) v6.push((await from(`2001:db8:0:1::${n}`, n)).status)
    expect(v6).toEqual([200, 200, 200, 429])
    expect((await from('2001:db8:0:2::1', 14)).status).toBe(200)
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text()
    expect(metrics).toContain('imageswarm_status_reports_total{outcome="new_nodes_limited"} 4')
  })

  it('refuses a claim whose node token is malformed, and the image server’s peer id', async () => {
    const { baseUrl } = await start()
    const short = await post(baseUrl, statusReport(1), bearer('short'))
    expect(short.status).toBe(400)
    expect(await short.json()).toMatchObject({ error: { code: 'E_STATUS_INVALID' } })
    const server = await post(baseUrl, {
      ...statusReport(1),
      peerId: Buffer.from('-IS01S0-000000000001', 'latin1').toString('hex'),
    })
    expect(server.status).toBe(403)
    expect(await nodesOf(baseUrl)).toEqual([])
  })
})

describe('credentials', () => {
  it('compares secrets of any length without telling them apart early', () => {
    expect(sameSecret('a'.repeat(40), 'a'.repeat(40))).toBe(true)
    expect(sameSecret('a'.repeat(40), 'a'.repeat(39))).toBe(false)
    expect(sameSecret('', 'a')).toBe(false)
  })

  it('budgets IPv4 addresses one by one and IPv6 ones by their /64', () => {
    expect(addressBudgetKey('10.0.0.5')).toBe('10.0.0.5')
    expect(addressBudgetKey('2001:db8:0:1::5')).toBe('2001:db8:0:1::/64')
    expect(addressBudgetKey('2001:0DB8:0000:0001:aaaa::1')).toBe('2001:db8:0:1::/64')
    expect(addressBudgetKey('2001:db8::1')).toBe('2001:db8:0:0::/64')
    expect(addressBudgetKey('::1')).toBe('0:0:0:0::/64')
  })
})
