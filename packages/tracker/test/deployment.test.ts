import type { NodeStatusReport } from '@imageswarm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { type DeploymentEvent, DeploymentLog } from '../src/deployment.js'
import { deploymentCsv } from '../src/deployment-export.js'
import { SwarmState } from '../src/swarm-state.js'
import { clientPeerId, nodeAddress, nodeToken, statusReport } from './fixtures.js'
import { type RunningTracker, startTracker, testInfoHash } from './tracker-server.js'

const COUNTS = { seeders: 0, leechers: 0, completed: 0 }
const START = 1_700_000_000_000
const STALE_MS = 60_000
const GAP_MS = 120_000
const SIZE = 1000

function swarm(
  deployments = new DeploymentLog('rocky9', 20),
  onDeployment?: (event: DeploymentEvent) => void,
) {
  return new SwarmState({
    onDeployment,
    image: 'rocky9',
    infoHash: testInfoHash(1),
    archiveSize: SIZE,
    now: START,
    maxNodes: 100,
    historyPoints: 100,
    deployments,
    deploymentGapMs: GAP_MS,
  })
}

/** Node `n` posts, from its own address with its own token, at `START + seconds`. */
function post(state: SwarmState, n: number, seconds: number, fields: Partial<NodeStatusReport>) {
  const report = statusReport(n, { size: SIZE, ...fields })
  state.recordStatus(report, START + seconds * 1000, {
    address: nodeAddress(n),
    token: nodeToken(report.peerId),
  })
}

/** Node `n` installs: starts at `from`, done at `to`, with `fromServer` of its bytes from the server. */
function install(state: SwarmState, n: number, from: number, to: number, fromServer = 0) {
  post(state, n, from, { state: 'downloading' })
  post(state, n, to, { state: 'done', downloaded: SIZE, downloadedFromServer: fromServer })
}

function sample(state: SwarmState, seconds: number) {
  state.sample(START + seconds * 1000, COUNTS, STALE_MS)
}

describe('deployments', () => {
  it('begins with the first node, holds the nodes of the wave and ends when all finished and quiet', () => {
    const state = swarm()
    install(state, 1, 0, 40, 1000)
    install(state, 2, 5, 70, 200)
    post(state, 3, 10, { state: 'downloading' })
    post(state, 3, 74, {
      state: 'failed',
      downloaded: 500,
      downloadedFromServer: 0,
      error: { code: 'E_NO_SPACE', message: 'disk full' },
    })
    state.recordServerUpload(1200)
    sample(state, 80)
    expect(state.summary(COUNTS, START + 80_000).deployment).toMatchObject({
      id: 1,
      state: 'running',
      nodes: 3,
      installed: 2,
      failed: 1,
      installing: 0,
    })
    // Quiet for the gap after the last finish (74 s): the deployment ends.
    sample(state, 74 + GAP_MS / 1000 - 1)
    expect(state.deployments.latest?.running).toBe(true)
    sample(state, 74 + GAP_MS / 1000)
    const [summary] = state.deploymentSummaries(START + 300_000)
    expect(summary).toMatchObject({
      id: 1,
      state: 'finished',
      endedAt: START + 194_000,
      seconds: 74,
      nodes: 3,
      serverBytes: 1200,
      copies: 1.2,
      text: '3 nodes in 74 s, server sent 1.2 copies (1 failed)',
    })
    const record = state.deploymentRecord(1, START + 300_000)!
    expect(record.rows.map((row) => [row.node, row.state, row.seconds])).toEqual([
      ['node1', 'done', 40],
      ['node2', 'done', 65],
      ['node3', 'failed', 64],
    ])
    expect(record.rows[1]).toMatchObject({
      address: nodeAddress(2),
      bytesFromServer: 200,
      bytesFromPeers: 800,
    })
  })

  it('takes a node that starts within the gap into the running deployment, and begins a new one after it', () => {
    const state = swarm()
    install(state, 1, 0, 30)
    sample(state, 60)
    install(state, 2, 100, 130)
    expect(state.node(clientPeerId(2), START + 130_000)?.deployment).toBe(1)
    sample(state, 130 + GAP_MS / 1000)
    expect(state.deployments.latest?.running).toBe(false)
    install(state, 3, 400, 420)
    expect(state.deploymentSummaries(START + 420_000).map((d) => [d.id, d.nodes, d.state])).toEqual(
      [
        [2, 1, 'running'],
        [1, 2, 'finished'],
      ],
    )
  })

  it('tells what happens as it happens: the beginning, each node that finishes, the end', () => {
    const events: DeploymentEvent[] = []
    const state = swarm(undefined, (event) => events.push(event))
    install(state, 1, 0, 40, 1000)
    post(state, 2, 5, { state: 'downloading' })
    post(state, 2, 50, { state: 'failed', error: { code: 'E_NO_SPACE', message: 'disk full' } })
    // Reports after a node finished change nothing that is told again.
    post(state, 1, 60, { state: 'done', downloaded: SIZE, downloadedFromServer: 1000 })
    sample(state, 50 + GAP_MS / 1000)
    sample(state, 400)
    expect(
      events.map((event) => [
        event.kind,
        event.deployment.id,
        'node' in event
          ? [event.node.node, event.node.state, event.node.seconds]
          : event.deployment.text,
      ]),
    ).toEqual([
      ['began', 1, ['node1', 'downloading', null]],
      ['node-finished', 1, ['node1', 'done', 40]],
      ['node-finished', 1, ['node2', 'failed', 45]],
      ['ended', 1, '2 nodes in 50 s, server sent 1.0 copies (1 failed)'],
    ])
  })

  it('counts a silent node as lost while another still installs, whatever their order', () => {
    const state = swarm()
    // Node 1 joined first and keeps reporting; node 2, joined after it, went silent.
    post(state, 1, 0, { state: 'downloading', downloaded: 100 })
    post(state, 2, 1, { state: 'downloading', downloaded: 100 })
    post(state, 1, 90, { state: 'downloading', downloaded: 600 })
    sample(state, 90)
    expect(state.summary(COUNTS, START + 90_000).deployment).toMatchObject({
      state: 'running',
      nodes: 2,
      lost: 1,
      installing: 1,
    })
  })

  it('counts a node gone silent as lost, and ends the deployment without it', () => {
    const state = swarm()
    install(state, 1, 0, 30)
    post(state, 2, 1, { state: 'downloading', downloaded: 300 })
    // Node 2 is silent from 1 s on: stale after 61 s, the deployment over a gap later.
    sample(state, 100)
    expect(state.deployments.latest?.running).toBe(true)
    sample(state, 61 + GAP_MS / 1000)
    const record = state.deploymentRecord(1, START + 200_000)!
    expect(record).toMatchObject({ state: 'finished', installed: 1, lost: 1, seconds: 30 })
    expect(record.text).toBe('2 nodes in 30 s, server sent 0.0 copies (1 lost)')
    expect(deploymentCsv(record)).toContain('E_NODE_LOST')
  })

  it('drops the finished and silent nodes of earlier runs from the live view when a new one begins', () => {
    const state = swarm()
    install(state, 1, 0, 30)
    install(state, 2, 0, 30)
    post(state, 3, 0, { state: 'downloading' })
    sample(state, 61 + GAP_MS / 1000)
    expect(state.summary(COUNTS, START + 200_000)).toMatchObject({ nodes: 3, stale: 1 })
    install(state, 4, 300, 320)
    const summary = state.summary(COUNTS, START + 320_000)
    expect(summary).toMatchObject({ nodes: 1, stale: 0 })
    expect(summary.states.done).toBe(1)
    expect(state.nodes(START + 320_000).map((node) => node.node)).toEqual(['node4'])
    // The bytes of the forgotten nodes stay in the swarm's totals; their record stays too.
    expect(summary.delivered).toBe(3 * SIZE)
    expect(state.deploymentRecord(1, START + 320_000)?.rows).toHaveLength(3)
  })

  it('keeps the newest deployments only, and keeps them when the image is published again', () => {
    const log = new DeploymentLog('rocky9', 2)
    const first = swarm(log)
    for (const [i, at] of [0, 1000, 2000].entries()) {
      install(first, i + 1, at, at + 10)
      sample(first, at + 10 + GAP_MS / 1000)
    }
    expect(log.list().map((d) => d.id)).toEqual([3, 2])
    expect(first.deploymentRecord(1, START)).toBeUndefined()
    // The image published again: a new swarm, the same record, numbering goes on.
    const second = swarm(log)
    install(second, 9, 5000, 5010)
    expect(second.deploymentSummaries(START + 5_010_000).map((d) => d.id)).toEqual([4, 3])
  })

  it('takes no peer that never reports into a deployment, and counts other clients apart', () => {
    const state = swarm()
    const aria2 = Buffer.from('A2-1-37-0-abcdefghij', 'latin1').toString('hex')
    state.recordAnnounce(
      {
        peerId: aria2,
        address: '10.0.9.9',
        port: 51413,
        left: 0,
        uploaded: 4000,
        downloaded: SIZE,
        event: 'started',
      },
      START,
    )
    install(state, 1, 0, 10)
    const summary = state.summary(COUNTS, START + 10_000)
    expect(summary).toMatchObject({ nodes: 1, foreign: 1 })
    expect(summary.deployment).toMatchObject({ nodes: 1 })
    expect(state.node(aria2, START)).toMatchObject({
      kind: 'foreign',
      client: 'aria2 1.37.0',
      node: null,
      deployment: null,
      address: '10.0.9.9',
    })
  })
})

describe('deploymentCsv', () => {
  it('writes one row per node, quotes what needs it and defuses spreadsheet formulas', () => {
    const state = swarm()
    install(state, 1, 0, 10)
    post(state, 2, 0, { state: 'downloading' })
    post(state, 2, 0, {
      node: '=HYPERLINK("x")',
      mac: '52:54:00:ab:cd:02',
      state: 'failed',
      error: { code: 'E_X', message: 'a, "b"' },
    })
    const csv = deploymentCsv(state.deploymentRecord(1, START + 10_000)!)
    const lines = csv.trimEnd().split('\r\n')
    expect(lines[0]).toBe(
      'host,mac,address,peer_id,state,started,finished,seconds,bytes_from_server,bytes_from_peers,error',
    )
    expect(lines).toHaveLength(3)
    expect(lines[1]).toBe(
      `node1,,${nodeAddress(1)},${clientPeerId(1)},done,2023-11-14T22:13:20.000Z,2023-11-14T22:13:30.000Z,10,0,1000,`,
    )
    expect(lines[2]).toContain(`"'=HYPERLINK(""x"")",52:54:00:ab:cd:02,`)
    expect(lines[2]).toMatch(/,failed,.*,"E_X: a, ""b"""$/)
  })
})

describe('the deployments API', () => {
  const running: RunningTracker[] = []
  afterEach(async () => {
    await Promise.all(running.splice(0).map((tracker) => tracker.close()))
  })

  it('lists an image’s deployments and exports one as CSV and JSON', async () => {
    const tracker = await startTracker()
    running.push(tracker)
    tracker.tracker.publish(testInfoHash(1), 'rocky9', SIZE)
    const { baseUrl } = tracker
    for (const n of [1, 2]) {
      const report = statusReport(n, { state: 'done', downloaded: SIZE })
      // A node's first post is done: it started before; it joins no deployment. So post
      // downloading first, as a real node does.
      for (const state of ['downloading', 'done'] as const) {
        const response = await fetch(`${baseUrl}/api/nodes/status`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${nodeToken(report.peerId)}`,
          },
          body: JSON.stringify({ ...report, state }),
        })
        expect(response.status).toBe(200)
      }
    }
    const list = (await (await fetch(`${baseUrl}/api/images/rocky9/deployments`)).json()) as {
      deployments: { id: number; nodes: number; installed: number }[]
    }
    expect(list.deployments).toMatchObject([{ id: 1, nodes: 2, installed: 2 }])

    const csv = await fetch(`${baseUrl}/api/images/rocky9/deployments/1.csv`)
    expect(csv.status).toBe(200)
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8')
    expect(csv.headers.get('content-disposition')).toBe(
      'attachment; filename="rocky9-deployment-1.csv"',
    )
    const lines = (await csv.text()).trimEnd().split('\r\n')
    expect(lines.slice(1).map((line) => line.split(',')[0])).toEqual(['node1', 'node2'])

    const json = await fetch(`${baseUrl}/api/images/rocky9/deployments/1.json`)
    expect(json.headers.get('content-disposition')).toMatch(/rocky9-deployment-1\.json/)
    expect(((await json.json()) as { rows: unknown[] }).rows).toHaveLength(2)

    const missing = await fetch(`${baseUrl}/api/images/rocky9/deployments/7.csv`)
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('E_NOT_FOUND')
    expect((await fetch(`${baseUrl}/api/images/rocky9/nodes/1`)).status).toBe(404)
  })
})
