import { createLogger } from '@imageswarm/core'
import { Client } from 'bittorrent-tracker'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  announce,
  compactPeers,
  getBencoded,
  type RunningTracker,
  startTracker,
  testInfoHash,
  testPeerId,
  text,
} from './tracker-server.js'

const running: RunningTracker[] = []
const clients: Client[] = []

async function start(...args: Parameters<typeof startTracker>): Promise<RunningTracker> {
  const tracker = await startTracker(...args)
  running.push(tracker)
  return tracker
}

afterEach(async () => {
  vi.useRealTimers()
  // Clients first: destroying one sends a last `stopped` announce to the tracker.
  await Promise.all(
    clients
      .splice(0)
      .map((client) => new Promise<void>((resolve) => client.destroy(() => resolve()))),
  )
  await Promise.all(running.splice(0).map((tracker) => tracker.close()))
})

function waitForPeer(client: Client, addr: string): Promise<void> {
  return new Promise((resolve, reject) => {
    client.on('peer', (peer: string) => {
      if (peer === addr) resolve()
    })
    client.on('error', reject)
  })
}

describe('announce', () => {
  it('lets two clients of a published infohash find each other at their own ports', async () => {
    const { tracker, announceUrl } = await start()
    const infoHash = testInfoHash(1)
    tracker.publish(infoHash, 'rocky9')

    const first = new Client({ infoHash, peerId: testPeerId(1), announce: announceUrl, port: 6881 })
    const second = new Client({
      infoHash,
      peerId: testPeerId(2),
      announce: announceUrl,
      port: 6882,
    })
    clients.push(first, second)
    first.on('warning', (err: Error) => expect.fail(err.message))
    second.on('warning', (err: Error) => expect.fail(err.message))

    const firstStarted = new Promise((resolve) => first.once('update', resolve))
    first.start()
    await firstStarted
    const secondSeesFirst = waitForPeer(second, '127.0.0.1:6881')
    second.start()
    await secondSeesFirst
    const firstSeesSecond = waitForPeer(first, '127.0.0.1:6882')
    first.update()
    await firstSeesSecond
  })

  it('does not hand a client its own address', async () => {
    const { tracker, announceUrl } = await start()
    const infoHash = testInfoHash(2)
    tracker.publish(infoHash, 'rocky9')

    await announce(announceUrl, { infoHash, peerId: testPeerId(1), port: 7001, event: 'started' })
    const { body } = await announce(announceUrl, { infoHash, peerId: testPeerId(1), port: 7001 })

    expect(compactPeers(body.peers)).toEqual([])
  })

  it('refuses an announce for an unpublished infohash', async () => {
    const { tracker, announceUrl } = await start()
    tracker.publish(testInfoHash(3), 'rocky9')
    const stranger = testInfoHash(4)

    const { status, body } = await announce(announceUrl, {
      infoHash: stranger,
      peerId: testPeerId(1),
      port: 7001,
      event: 'started',
    })

    expect(status).toBe(200)
    expect(text(body['failure reason'])).toBe(
      `infohash ${stranger} is not published on this imageswarm server; publish the image there, or check that the client has the current torrent`,
    )
    expect(body.peers).toBeUndefined()
  })

  it('refuses announces once the image is unpublished, and forgets its swarm', async () => {
    const { tracker, announceUrl } = await start()
    const infoHash = testInfoHash(5)
    tracker.publish(infoHash, 'rocky9')
    await announce(announceUrl, { infoHash, peerId: testPeerId(1), port: 7001, event: 'started' })

    tracker.unpublish(infoHash)
    const { body } = await announce(announceUrl, { infoHash, peerId: testPeerId(1), port: 7001 })

    expect(text(body['failure reason'])).toContain('is not published')
    expect(tracker.stats().swarms).toEqual([])
  })

  it('tells clients to announce again after the configured interval', async () => {
    const { tracker, announceUrl } = await start({ config: { announceIntervalSeconds: 17 } })
    const infoHash = testInfoHash(6)
    tracker.publish(infoHash, 'rocky9')

    const { body } = await announce(announceUrl, {
      infoHash,
      peerId: testPeerId(1),
      port: 7001,
      event: 'started',
    })

    expect(body.interval).toBe(17)
  })

  it('hands out the configured number of peers, beyond bittorrent-tracker’s cap of 82', async () => {
    const { tracker, announceUrl } = await start({
      config: { defaultNumwant: 90, maxNumwant: 95, announceIntervalSeconds: 20 },
    })
    const infoHash = testInfoHash(7)
    tracker.publish(infoHash, 'rocky9')
    for (let n = 0; n < 100; n++) {
      await announce(announceUrl, {
        infoHash,
        peerId: testPeerId(n),
        port: 10_000 + n,
        event: 'started',
      })
    }
    const asker = { infoHash, peerId: testPeerId(999), port: 9999 }

    const unspecified = await announce(announceUrl, asker)
    const few = await announce(announceUrl, { ...asker, numwant: 3 })
    const tooMany = await announce(announceUrl, { ...asker, numwant: 5000 })

    expect(compactPeers(unspecified.body.peers)).toHaveLength(90)
    expect(compactPeers(few.body.peers)).toHaveLength(3)
    expect(compactPeers(tooMany.body.peers)).toHaveLength(95)
    expect(compactPeers(tooMany.body.peers)).not.toContain('127.0.0.1:9999')
  })

  it('answers bad client data with a failure reason and a warning, and keeps serving', async () => {
    const lines: string[] = []
    const logger = createLogger({
      name: 'test',
      level: 'debug',
      destination: { write: (line: string) => void lines.push(line) },
    })
    const { tracker, announceUrl } = await start({ logger })
    const infoHash = testInfoHash(8)
    tracker.publish(infoHash, 'rocky9')

    const badPort = await announce(announceUrl, { infoHash, peerId: testPeerId(1), port: 0 })
    const badHash = await getBencoded(`${announceUrl}?info_hash=short&peer_id=x&port=1`)
    const badCounters = await announce(announceUrl, {
      infoHash,
      peerId: testPeerId(2),
      port: 7002,
      event: 'started',
      uploaded: 'lots',
      downloaded: '-5',
      left: 'some',
    })

    expect(text(badPort.body['failure reason'])).toBe('invalid port')
    expect(text(badHash.body['failure reason'])).toBe('invalid info_hash')
    expect(badCounters.body['failure reason']).toBeUndefined()
    const [peer] = tracker.stats().swarms[0]?.peers ?? []
    expect(peer).toMatchObject({ port: 7002, uploaded: 0, downloaded: 0, left: null })
    const warnings = lines.map((line) => JSON.parse(line)).filter((entry) => entry.level === 40)
    expect(warnings.map((entry) => entry.reason)).toEqual(['invalid port', 'invalid info_hash'])
  })

  it('takes the address from X-Forwarded-For with trustProxy, and refuses one that is no address', async () => {
    const { tracker, announceUrl } = await start({ trustProxy: true })
    const infoHash = testInfoHash(13)
    tracker.publish(infoHash, 'rocky9')
    const peer = (n: number) => ({
      infoHash,
      peerId: testPeerId(n),
      port: 7000 + n,
      event: 'started' as const,
    })

    const bogus = await announce(announceUrl, peer(1), { 'x-forwarded-for': '999.1.1.1' })
    await announce(announceUrl, peer(2), { 'x-forwarded-for': '10.0.0.2, 192.168.1.1' })
    const { body } = await announce(announceUrl, peer(3), { 'x-forwarded-for': '::ffff:10.0.0.3' })

    expect(text(bogus.body['failure reason'])).toBe('invalid client address "999.1.1.1"')
    expect(compactPeers(body.peers)).toEqual(['10.0.0.2:7002'])
    expect(
      tracker
        .stats()
        .swarms[0]?.peers.map((p) => p.address)
        .sort(),
    ).toEqual(['10.0.0.2', '10.0.0.3'])
  })

  it('ignores X-Forwarded-For without trustProxy', async () => {
    const { tracker, announceUrl } = await start()
    const infoHash = testInfoHash(14)
    tracker.publish(infoHash, 'rocky9')

    await announce(
      announceUrl,
      { infoHash, peerId: testPeerId(1), port: 7001, event: 'started' },
      { 'x-forwarded-for': '10.0.0.9' },
    )

    expect(tracker.stats().swarms[0]?.peers[0]?.address).toBe('127.0.0.1')
  })

  it('answers only GET on its paths', async () => {
    const { baseUrl } = await start()

    const res = await fetch(`${baseUrl}/announce`, { method: 'POST' })

    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('GET')
  })

  it('leaves requests for other paths to the caller', async () => {
    const { baseUrl } = await start()

    const res = await fetch(`${baseUrl}/images/rocky9/manifest.json`)

    expect(res.status).toBe(404)
  })

  it('refuses requests with a failure reason once closed', async () => {
    const { tracker, announceUrl } = await start()
    const infoHash = testInfoHash(9)
    tracker.publish(infoHash, 'rocky9')

    await tracker.close()
    const { status, body } = await announce(announceUrl, {
      infoHash,
      peerId: testPeerId(1),
      port: 7001,
    })

    expect(status).toBe(503)
    expect(text(body['failure reason'])).toBe('the tracker is shutting down')
  })
})

describe('stats', () => {
  it('lists a published image before any peer has announced', async () => {
    const { tracker } = await start()
    tracker.publish(testInfoHash(10), 'rocky9')

    expect(tracker.stats()).toEqual({
      swarms: [
        {
          image: 'rocky9',
          infoHash: testInfoHash(10),
          seeders: 0,
          leechers: 0,
          completed: 0,
          uploaded: 0,
          downloaded: 0,
          peers: [],
        },
      ],
    })
  })

  it('reflects the uploaded, downloaded and left of each peer’s last announce', async () => {
    const { tracker, announceUrl } = await start()
    const infoHash = testInfoHash(11)
    tracker.publish(infoHash, 'rocky9')
    const server = { infoHash, peerId: testPeerId(1), port: 7001 }
    const node = { infoHash, peerId: testPeerId(2), port: 7002 }

    const before = Date.now()
    await announce(announceUrl, { ...server, event: 'started', left: 0, uploaded: 0 })
    await announce(announceUrl, { ...node, event: 'started', left: 4000, downloaded: 0 })
    await announce(announceUrl, { ...node, left: 1000, downloaded: 3000, uploaded: 500 })
    await announce(announceUrl, { ...server, left: 0, uploaded: 2500 })

    const [swarm] = tracker.stats().swarms
    expect(swarm).toMatchObject({
      image: 'rocky9',
      infoHash,
      seeders: 1,
      leechers: 1,
      completed: 0,
      uploaded: 3000,
      downloaded: 3000,
    })
    const byPort = new Map(swarm?.peers.map((peer) => [peer.port, peer]))
    expect(byPort.get(7002)).toMatchObject({
      peerId: testPeerId(2),
      address: '127.0.0.1',
      left: 1000,
      uploaded: 500,
      downloaded: 3000,
      complete: false,
    })
    expect(byPort.get(7001)).toMatchObject({ left: 0, uploaded: 2500, complete: true })
    expect(byPort.get(7002)?.lastAnnounce).toBeGreaterThanOrEqual(before)

    await announce(announceUrl, { ...node, event: 'completed', left: 0, downloaded: 4000 })
    expect(tracker.stats().swarms[0]).toMatchObject({ seeders: 2, leechers: 0, completed: 1 })

    await announce(announceUrl, { ...node, event: 'stopped', left: 0 })
    expect(tracker.stats().swarms[0]?.peers.map((peer) => peer.port)).toEqual([7001])
  })

  it('drops a peer that has not announced within peerTtlSeconds', async () => {
    const { tracker, announceUrl } = await start({
      config: { announceIntervalSeconds: 20, peerTtlSeconds: 60 },
    })
    const infoHash = testInfoHash(12)
    tracker.publish(infoHash, 'rocky9')
    await announce(announceUrl, { infoHash, peerId: testPeerId(1), port: 7001, event: 'started' })
    expect(tracker.stats().swarms[0]?.leechers).toBe(1)

    // Only Date is faked: the peer cache reads the clock, the sockets keep real timers.
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(Date.now() + 61_000)

    expect(tracker.stats().swarms[0]).toMatchObject({ leechers: 0, peers: [] })
  })
})
