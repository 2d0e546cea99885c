import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { crossRackPeers } from '../src/peer-handout.js'
import {
  compactPeers,
  encodeBinary,
  getBencoded,
  type RunningTracker,
  startTracker,
  testInfoHash,
  testPeerId,
} from './tracker-server.js'

// The rack-aware handout through real HTTP announces, as imageswarm's client sends them:
// with `rack` and `node` query parameters the tracker reads from the raw URL.

const running: RunningTracker[] = []
const dirs: string[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map((tracker) => tracker.close()))
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

async function start(...args: Parameters<typeof startTracker>): Promise<RunningTracker> {
  const tracker = await startTracker(...args)
  running.push(tracker)
  return tracker
}

async function rackMapFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'imageswarm-rack-handout-'))
  dirs.push(dir)
  const file = join(dir, 'racks.conf')
  await writeFile(file, text)
  return file
}

const infoHash = testInfoHash(1)

interface Node {
  port: number
  rack?: string
  node?: string
}

/** Announces node `port` (its peer id derived from the port), with its rack and name when
 * given; returns the `ip:port` of each peer handed out. */
async function announceAs(
  announceUrl: string,
  node: Node,
  extra: { numwant?: number; event?: string } = {},
): Promise<string[]> {
  const query = [
    `info_hash=${encodeBinary(infoHash)}`,
    `peer_id=${encodeBinary(testPeerId(node.port))}`,
    `port=${node.port}`,
    'uploaded=0',
    'downloaded=0',
    'left=1000',
    'compact=1',
  ]
  if (extra.event) query.push(`event=${extra.event}`)
  if (extra.numwant !== undefined) query.push(`numwant=${extra.numwant}`)
  if (node.rack !== undefined) query.push(`rack=${encodeURIComponent(node.rack)}`)
  if (node.node !== undefined) query.push(`node=${encodeURIComponent(node.node)}`)
  const { status, body } = await getBencoded(`${announceUrl}?${query.join('&')}`)
  expect(status).toBe(200)
  expect(body['failure reason']).toBeUndefined()
  return compactPeers(body.peers)
}

const address = (node: Node) => `127.0.0.1:${node.port}`

/** Six nodes at ports `base + 1` … `base + 6`. */
function six(base: number, fields: (n: number) => Omit<Node, 'port'>): Node[] {
  return [1, 2, 3, 4, 5, 6].map((n) => ({ port: base + n, ...fields(n) }))
}

describe('rack-aware peer handout', () => {
  it('hands a node its own rack’s peers and at most crossRackPeers(numwant) of other racks', async () => {
    const { tracker, announceUrl } = await start()
    tracker.publish(infoHash, 'rocky9')
    const r1 = six(11_000, () => ({ rack: 'r1' }))
    const r2 = six(12_000, () => ({ rack: 'r2' }))
    for (const node of [...r1, ...r2]) await announceAs(announceUrl, node, { event: 'started' })

    await expectHandoutByRack(announceUrl, r1, r2)
  })

  it('hands out peers of every rack to a node that gives no rack', async () => {
    const { tracker, announceUrl } = await start()
    tracker.publish(infoHash, 'rocky9')
    const nodes = [...six(11_000, () => ({ rack: 'r1' })), ...six(12_000, () => ({ rack: 'r2' }))]
    for (const node of nodes) await announceAs(announceUrl, node, { event: 'started' })
    const peers = await announceAs(announceUrl, { port: 13_000 }, { numwant: 20 })
    expect(peers.sort()).toEqual(nodes.map(address).sort())
  })

  it('ignores a rack name that is not one, and hands out at random', async () => {
    const { tracker, announceUrl } = await start()
    tracker.publish(infoHash, 'rocky9')
    const nodes = [...six(11_000, () => ({ rack: 'r1' })), ...six(12_000, () => ({ rack: 'r2' }))]
    for (const node of nodes) await announceAs(announceUrl, node, { event: 'started' })
    const peers = await announceAs(announceUrl, { port: 13_000, rack: 'a b' }, { numwant: 20 })
    expect(peers).toHaveLength(12)
  })

  it('takes the rack from the server’s rack map, by node name and by address', async () => {
    const rackMap = await rackMapFile(
      [
        '# n0x nodes are in rack ra, everything else on loopback in rb',
        'n0?  ra',
        '127.0.0.0/8  rb',
      ].join('\n'),
    )
    const { tracker, announceUrl } = await start({ config: { rackMap } })
    tracker.publish(infoHash, 'rocky9')
    const ra = six(11_000, (n) => ({ node: `n0${n}` }))
    const rb = six(12_000, (n) => ({ node: `m0${n}` }))
    for (const node of [...ra, ...rb]) await announceAs(announceUrl, node, { event: 'started' })

    await expectHandoutByRack(announceUrl, ra, rb)
  })

  it('prefers the rack a node gives over the rack map’s', async () => {
    const rackMap = await rackMapFile('127.0.0.0/8 mapped\n')
    const { tracker, announceUrl } = await start({ config: { rackMap } })
    tracker.publish(infoHash, 'rocky9')
    // Every node maps to `mapped` by its address, but the r1 nodes say r1.
    const r1 = six(11_000, () => ({ rack: 'r1' }))
    const mapped = six(12_000, () => ({}))
    for (const node of [...r1, ...mapped]) await announceAs(announceUrl, node, { event: 'started' })
    const [asker, ...rackmates] = r1
    const peers = await announceAs(announceUrl, asker!, { numwant: 20 })
    const fromOwnRack = peers.filter((peer) => r1.some((node) => address(node) === peer))
    expect(fromOwnRack.sort()).toEqual(rackmates.map(address).sort())
    expect(peers.length - fromOwnRack.length).toBeLessThanOrEqual(crossRackPeers(20))
  })
})

/** The first node of each rack asks for 20 peers, ten times (the handout is random, the
 * limits hold for every draw): it gets all its rackmates, at most crossRackPeers(20) of
 * the other rack, and never itself. */
async function expectHandoutByRack(
  announceUrl: string,
  rackA: readonly Node[],
  rackB: readonly Node[],
): Promise<void> {
  for (const [own, other] of [
    [rackA, rackB],
    [rackB, rackA],
  ] as const) {
    const [asker, ...rackmates] = own
    for (let n = 0; n < 10; n++) {
      const peers = await announceAs(announceUrl, asker!, { numwant: 20 })
      const fromOwnRack = peers.filter((peer) => own.some((node) => address(node) === peer))
      const fromOther = peers.filter((peer) => other.some((node) => address(node) === peer))
      expect(fromOwnRack.sort()).toEqual(rackmates.map(address).sort())
      expect(fromOther.length).toBeLessThanOrEqual(crossRackPeers(20))
      expect(fromOther.length + fromOwnRack.length).toBe(peers.length)
      expect(peers).not.toContain(address(asker!))
    }
  }
}
