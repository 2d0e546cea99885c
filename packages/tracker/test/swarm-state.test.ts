import { describe, expect, it } from 'vitest'
import type { AnnounceSighting } from '../src/node-record.js'
import { SwarmState } from '../src/swarm-state.js'
import { clientPeerId, serverPeerId, statusReport } from './fixtures.js'
import { testInfoHash } from './tracker-server.js'

const COUNTS = { seeders: 1, leechers: 2, completed: 0 }
const START = 1_700_000_000_000

function swarm(maxNodes = 100) {
  return new SwarmState({
    image: 'rocky9',
    infoHash: testInfoHash(1),
    now: START,
    maxNodes,
    historyPoints: 100,
  })
}

function sighting(peerId: string, fields: Partial<AnnounceSighting> = {}): AnnounceSighting {
  return {
    peerId,
    address: '10.0.0.5',
    port: 6881,
    left: 1000,
    uploaded: 0,
    downloaded: 0,
    event: undefined,
    ...fields,
  }
}

describe('SwarmState', () => {
  it('shows a node from its announces alone: address, progress, state and rate', () => {
    const state = swarm()
    state.recordAnnounce(sighting(clientPeerId(1), { event: 'started' }), START)
    state.recordAnnounce(sighting(clientPeerId(1), { left: 600, downloaded: 400 }), START + 2000)
    const [node] = state.nodes(START + 2000)
    expect(node).toMatchObject({
      address: '10.0.0.5',
      state: 'downloading',
      progress: 0.4,
      size: 1000,
      downloadRate: 200,
      etaSeconds: 3,
      source: 'announce',
    })
    state.recordAnnounce(sighting(clientPeerId(1), { left: 0, downloaded: 1000 }), START + 4000)
    expect(state.node(clientPeerId(1), START + 4000)?.state).toBe('seeding')
  })

  it('takes state, rates and errors from status posts, joined to the announce by peer id', () => {
    const state = swarm()
    state.recordAnnounce(sighting(clientPeerId(1)), START)
    state.recordStatus(statusReport(1, { downloaded: 250, downloadRate: 50 }), START + 1000)
    state.recordStatus(
      statusReport(1, { state: 'failed', error: { code: 'E_NO_SPACE', message: 'disk full' } }),
      START + 2000,
    )
    const [node] = state.nodes(START + 2000)
    expect(node).toMatchObject({
      node: 'node1',
      address: '10.0.0.5',
      state: 'failed',
      error: { code: 'E_NO_SPACE', message: 'disk full' },
      source: 'status',
    })
    expect(node?.phaseSeconds).toEqual({ downloading: 1, waiting: 1 })
  })

  it('ignores reports that would move a node backwards, and anything after done', () => {
    const state = swarm()
    state.recordStatus(statusReport(1, { state: 'extracting' }), START)
    state.recordStatus(statusReport(1, { state: 'downloading' }), START + 10)
    expect(state.node(clientPeerId(1), START)?.state).toBe('extracting')
    state.recordStatus(statusReport(1, { state: 'done' }), START + 20)
    state.recordStatus(statusReport(1, { state: 'failed' }), START + 30)
    expect(state.node(clientPeerId(1), START)?.state).toBe('done')
    // A piece that failed its check sends a verifying node back to downloading.
    state.recordStatus(statusReport(2, { state: 'verifying' }), START)
    state.recordStatus(statusReport(2, { state: 'downloading' }), START + 10)
    expect(state.node(clientPeerId(2), START)?.state).toBe('downloading')
  })

  it('counts the image server’s peer as the server, never as a node', () => {
    const state = swarm()
    state.recordAnnounce(sighting(serverPeerId(1), { left: 0, uploaded: 700 }), START)
    state.recordStatus(statusReport(1, { downloaded: 1000, downloadedFromServer: 300 }), START)
    state.recordStatus(statusReport(2, { downloaded: 1000, downloadedFromServer: 200 }), START)
    expect(state.nodeCount).toBe(2)
    // The seeder says it uploaded 700; the nodes say 500 came from it. The larger wins.
    expect(state.totals()).toMatchObject({ delivered: 2000, fromServer: 700, fromPeers: 1300 })
    const summary = state.summary(COUNTS)
    expect(summary.offload).toBeCloseTo(0.65)
    expect(summary.states.downloading).toBe(2)
  })

  it('works out rates from the totals and samples nodes by state into the history', () => {
    const state = swarm()
    state.recordStatus(statusReport(1), START)
    state.sample(START, COUNTS, 60_000)
    state.recordStatus(
      statusReport(1, { downloaded: 3000, downloadedFromServer: 1000, size: 10_000 }),
      START + 1000,
    )
    state.recordStatus(statusReport(2, { state: 'seeding', size: 10_000 }), START + 1000)
    const point = state.sample(START + 1000, COUNTS, 60_000)
    expect(point).toMatchObject({
      serverRate: 1000,
      peerRate: 2000,
      downloadRate: 3000,
      downloading: 1,
      seeding: 1,
      installed: 1,
      seeders: 1,
      leechers: 2,
    })
    expect(state.series().t).toHaveLength(2)
    expect(state.summary(COUNTS)).toMatchObject({ downloadRate: 3000, size: 10_000 })
  })

  it('marks a silent node stale, but never a finished one', () => {
    const state = swarm()
    state.recordStatus(statusReport(1), START)
    state.recordStatus(statusReport(2, { state: 'done' }), START)
    const point = state.sample(START + 61_000, COUNTS, 60_000)
    expect(point.stale).toBe(1)
    expect(state.node(clientPeerId(1), START + 61_000)?.stale).toBe(true)
    expect(state.node(clientPeerId(2), START + 61_000)?.stale).toBe(false)
    state.recordStatus(statusReport(1), START + 62_000)
    expect(state.node(clientPeerId(1), START + 62_000)?.stale).toBe(false)
  })

  it('forgets the least recently heard node beyond its limit, keeping its bytes in the totals', () => {
    const state = swarm(2)
    state.recordStatus(statusReport(1, { downloaded: 100 }), START)
    state.recordStatus(statusReport(2, { downloaded: 100 }), START + 1)
    state.recordStatus(statusReport(1, { downloaded: 200 }), START + 2)
    state.recordStatus(statusReport(3, { downloaded: 100 }), START + 3)
    expect(state.nodes(START).map((n) => n.node)).toEqual(['node1', 'node3'])
    expect(state.totals().delivered).toBe(400)
    expect(state.forgottenAt).toBeGreaterThan(0)
  })

  it('lists only the nodes changed since a version, for live updates', () => {
    const state = swarm()
    state.recordStatus(statusReport(1), START)
    state.recordStatus(statusReport(2), START)
    const version = state.version
    state.recordStatus(statusReport(2, { downloaded: 10 }), START + 1)
    expect(state.nodes(START, version).map((n) => n.node)).toEqual(['node2'])
  })
})
