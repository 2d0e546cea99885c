import type { NodeStatusReport } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { DeploymentLog } from '../src/deployment.js'
import { type AnnounceSighting, MAX_DOWNLOAD_FACTOR } from '../src/node-record.js'
import { SwarmState } from '../src/swarm-state.js'
import { clientPeerId, nodeToken, serverPeerId, statusReport } from './fixtures.js'
import { testInfoHash } from './tracker-server.js'

const COUNTS = { seeders: 1, leechers: 2, completed: 0 }
const START = 1_700_000_000_000

function swarm(maxNodes = 100, archiveSize?: number) {
  return new SwarmState({
    image: 'rocky9',
    infoHash: testInfoHash(1),
    archiveSize,
    now: START,
    maxNodes,
    historyPoints: 100,
    deployments: new DeploymentLog('rocky9', 20),
    deploymentGapMs: 120_000,
  })
}

/** A status post by the node itself (its address, its token), as the intake lets it through. */
function post(state: SwarmState, report: NodeStatusReport, now: number): void {
  const sender = { address: '10.0.0.5', token: nodeToken(report.peerId) }
  expect(state.checkAccess(report.peerId, sender).kind).not.toBe('refused')
  state.recordStatus(report, now, sender)
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
    post(state, statusReport(1, { downloaded: 250, downloadRate: 50 }), START + 1000)
    post(
      state,
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
    post(state, statusReport(1, { state: 'extracting' }), START)
    post(state, statusReport(1, { state: 'downloading' }), START + 10)
    expect(state.node(clientPeerId(1), START)?.state).toBe('extracting')
    post(state, statusReport(1, { state: 'done' }), START + 20)
    post(state, statusReport(1, { state: 'failed' }), START + 30)
    expect(state.node(clientPeerId(1), START)?.state).toBe('done')
    // A piece that failed its check sends a verifying node back to downloading.
    post(state, statusReport(2, { state: 'verifying' }), START)
    post(state, statusReport(2, { state: 'downloading' }), START + 10)
    expect(state.node(clientPeerId(2), START)?.state).toBe('downloading')
  })

  it('counts the image server’s peer as the server, never as a node', () => {
    const state = swarm()
    state.recordAnnounce(sighting(serverPeerId(1), { left: 0, uploaded: 700 }), START)
    post(state, statusReport(1, { downloaded: 1000, downloadedFromServer: 300 }), START)
    post(state, statusReport(2, { downloaded: 1000, downloadedFromServer: 200 }), START)
    expect(state.nodeCount).toBe(2)
    // The seeder says it uploaded 700; the nodes say 500 came from it. The larger wins.
    expect(state.totals()).toMatchObject({ delivered: 2000, fromServer: 700, fromPeers: 1300 })
    const summary = state.summary(COUNTS)
    expect(summary.offload).toBeCloseTo(0.65)
    expect(summary.states.downloading).toBe(2)
  })

  it('ignores announces under the server’s peer id once the server counts its own upload', () => {
    const state = swarm()
    post(state, statusReport(1, { downloaded: 1000, downloadedFromServer: 300 }), START)
    state.recordServerUpload(400)
    // Anyone can announce under the server's prefix: a forged 900 must not raise "from server".
    state.recordAnnounce(sighting(serverPeerId(2), { left: 0, uploaded: 900 }), START)
    expect(state.totals()).toMatchObject({ delivered: 1000, fromServer: 400, fromPeers: 600 })
  })

  it('works out rates from the totals and samples nodes by state into the history', () => {
    const state = swarm()
    post(state, statusReport(1), START)
    state.sample(START, COUNTS, 60_000)
    post(
      state,
      statusReport(1, { downloaded: 3000, downloadedFromServer: 1000, size: 10_000 }),
      START + 1000,
    )
    post(state, statusReport(2, { state: 'seeding', size: 10_000 }), START + 1000)
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
    post(state, statusReport(1), START)
    post(state, statusReport(2, { state: 'done' }), START)
    const point = state.sample(START + 61_000, COUNTS, 60_000)
    expect(point.stale).toBe(1)
    expect(state.node(clientPeerId(1), START + 61_000)?.stale).toBe(true)
    expect(state.node(clientPeerId(2), START + 61_000)?.stale).toBe(false)
    post(state, statusReport(1), START + 62_000)
    expect(state.node(clientPeerId(1), START + 62_000)?.stale).toBe(false)
  })

  it('forgets the least recently heard node beyond its limit, keeping its bytes in the totals', () => {
    const state = swarm(2)
    post(state, statusReport(1, { downloaded: 100 }), START)
    post(state, statusReport(2, { downloaded: 100 }), START + 1)
    post(state, statusReport(1, { downloaded: 200 }), START + 2)
    post(state, statusReport(3, { downloaded: 100 }), START + 3)
    expect(state.nodes(START).map((n) => n.node)).toEqual(['node1', 'node3'])
    expect(state.totals().delivered).toBe(400)
    expect(state.forgottenAt).toBeGreaterThan(0)
  })

  it('lists only the nodes changed since a version, for live updates', () => {
    const state = swarm()
    post(state, statusReport(1), START)
    post(state, statusReport(2), START)
    const version = state.version
    post(state, statusReport(2, { downloaded: 10 }), START + 1)
    expect(state.nodes(START, version).map((n) => n.node)).toEqual(['node2'])
  })

  it('lets only the node that claimed a peer id post for it, and a peer seen in announces claim only from its address', () => {
    const state = swarm()
    const peerId = clientPeerId(1)
    const own = { address: '10.0.0.5', token: nodeToken(peerId) }
    expect(state.checkAccess(peerId, own).kind).toBe('claim')
    state.recordStatus(statusReport(1), START, own)
    expect(state.checkAccess(peerId, own).kind).toBe('node')
    // Someone else, from the node's own address or not, with no token or a made-up one.
    for (const sender of [
      { address: '10.0.0.5', token: undefined },
      { address: '10.0.0.66', token: nodeToken(clientPeerId(66)) },
    ]) {
      expect(state.checkAccess(peerId, sender)).toMatchObject({
        kind: 'refused',
        hint: /only the node itself/,
      })
    }
    // The node's token alone is enough: a node whose address changed still reports.
    expect(state.checkAccess(peerId, { address: '10.0.9.9', token: own.token }).kind).toBe('node')
    // Recording a post the check would refuse is a bug, never a silent overwrite.
    expect(() =>
      state.recordStatus(statusReport(1), START, { address: '10.0.0.5', token: undefined }),
    ).toThrow()

    // A foreign client's peer id, known from its announces from 10.0.0.7.
    state.recordAnnounce(sighting(clientPeerId(2), { address: '10.0.0.7' }), START)
    const elsewhere = { address: '10.0.0.66', token: nodeToken(clientPeerId(2)) }
    expect(state.checkAccess(clientPeerId(2), elsewhere)).toMatchObject({
      kind: 'refused',
      message: /announces from another address/,
    })
    expect(state.checkAccess(clientPeerId(2), { ...elsewhere, address: '10.0.0.7' }).kind).toBe(
      'claim',
    )
    // The image server's peer id is nobody's to report for.
    expect(state.checkAccess(serverPeerId(1), own).kind).toBe('refused')
  })

  it('keeps a done or failed node as it reported, whatever is posted or announced after', () => {
    const state = swarm(100, 1000)
    post(state, statusReport(1, { state: 'seeding', downloaded: 1000, uploaded: 300 }), START)
    post(state, statusReport(1, { state: 'done', downloaded: 1000, uploaded: 500 }), START + 10)
    post(
      state,
      statusReport(2, {
        state: 'failed',
        downloaded: 10,
        error: { code: 'E_NO_SPACE', message: 'disk full' },
      }),
      START,
    )
    const reported = () =>
      state
        .nodes(START + 20)
        .map((n) => [n.state, n.size, n.downloaded, n.downloadedFromServer, n.uploaded, n.error])
    const before = reported()
    // The nodes' own later posts (a retry, a bug) and announces under their peer ids.
    post(state, statusReport(1, { state: 'failed', downloaded: 4000, uploaded: 9e15 }), START + 30)
    post(
      state,
      statusReport(2, {
        state: 'failed',
        downloaded: 4000,
        error: { code: 'E_X', message: 'other' },
      }),
      START + 30,
    )
    state.recordAnnounce(
      sighting(clientPeerId(1), { left: 1000, downloaded: 9e15, uploaded: 9e15 }),
      START + 40,
    )
    state.recordAnnounce(sighting(clientPeerId(2), { left: 0, downloaded: 9e15 }), START + 40)
    expect(reported()).toEqual(before)
    const after = state.nodes(START + 20)
    expect(after.map((n) => [n.state, n.downloaded, n.uploaded, n.error?.code])).toEqual([
      ['done', 1000, 500, undefined],
      ['failed', 10, 0, 'E_NO_SPACE'],
    ])
  })

  it('holds reported and announced bytes to what an install of the published archive can reach', () => {
    const state = swarm(100, 1000)
    post(
      state,
      statusReport(1, { size: 9e15, downloaded: 9e15, downloadedFromServer: 9e15, uploaded: 9e15 }),
      START,
    )
    expect(state.node(clientPeerId(1), START)).toMatchObject({
      size: 1000,
      downloaded: 1000 * MAX_DOWNLOAD_FACTOR,
      downloadedFromServer: 1000 * MAX_DOWNLOAD_FACTOR,
    })
    state.recordAnnounce(
      sighting(clientPeerId(2), { left: 0, downloaded: 9e15, uploaded: 9e15 }),
      START,
    )
    expect(state.node(clientPeerId(2), START)).toMatchObject({ size: 1000, downloaded: 4000 })
    // Two nodes can add at most MAX_DOWNLOAD_FACTOR archives each, uploads no more than that.
    expect(state.totals()).toEqual({
      delivered: 8000,
      fromServer: 4000,
      fromPeers: 4000,
      uploaded: 8000,
    })
  })

  it('ignores announces under a claimed peer id from any other address than the node’s', () => {
    const state = swarm()
    post(state, statusReport(1, { state: 'downloading', downloaded: 100 }), START)
    state.recordAnnounce(sighting(clientPeerId(1), { address: '10.0.0.5', port: 7000 }), START + 10)
    const version = state.version
    state.recordAnnounce(
      sighting(clientPeerId(1), { address: '10.6.6.6', port: 6666, left: 0, event: 'stopped' }),
      START + 50_000,
    )
    expect(state.version).toBe(version)
    expect(state.node(clientPeerId(1), START + 50_000)).toMatchObject({
      address: '10.0.0.5',
      port: 7000,
      state: 'downloading',
      lastSeen: START + 10,
    })
  })

  it('forgets announce-only nodes first, then installing ones, then done ones, and failed ones last', () => {
    const state = swarm(4)
    post(
      state,
      statusReport(1, { state: 'failed', error: { code: 'E_NO_SPACE', message: 'disk full' } }),
      START,
    )
    post(state, statusReport(2, { state: 'done' }), START + 1)
    post(state, statusReport(3, { state: 'downloading' }), START + 2)
    const names = () => state.nodes(START).map((node) => node.peerId)
    // A flood of announces under fresh peer ids: they push out only each other.
    for (let n = 100; n < 200; n++) state.recordAnnounce(sighting(clientPeerId(n)), START + n)
    expect(names()).toEqual([clientPeerId(1), clientPeerId(2), clientPeerId(3), clientPeerId(199)])
    // Claimed, installing nodes push out the announce-only one, then each other.
    for (let n = 200; n < 210; n++) post(state, statusReport(n), START + n)
    expect(names()).toEqual([
      clientPeerId(1),
      clientPeerId(2),
      clientPeerId(208),
      clientPeerId(209),
    ])
    // Nodes that report done push out installing ones, then older done ones, never the failed one.
    for (let n = 300; n < 310; n++) post(state, statusReport(n, { state: 'done' }), START + n)
    expect(names()).toEqual([
      clientPeerId(1),
      clientPeerId(307),
      clientPeerId(308),
      clientPeerId(309),
    ])
    expect(state.node(clientPeerId(1), START)).toMatchObject({
      state: 'failed',
      error: { code: 'E_NO_SPACE' },
    })
  })
})
