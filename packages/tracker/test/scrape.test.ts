import { afterEach, describe, expect, it } from 'vitest'
import {
  announce,
  encodeBinary,
  getBencoded,
  type RunningTracker,
  startTracker,
  testInfoHash,
  testPeerId,
  text,
} from './tracker-server.js'

const running: RunningTracker[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map((tracker) => tracker.close()))
})

async function start(): Promise<RunningTracker> {
  const tracker = await startTracker({ config: { announceIntervalSeconds: 25 } })
  running.push(tracker)
  return tracker
}

describe('scrape', () => {
  it('counts seeders, leechers and finished downloads of a published infohash', async () => {
    const { tracker, announceUrl, baseUrl } = await start()
    const infoHash = testInfoHash(1)
    tracker.publish(infoHash, 'rocky9')
    const peer = (n: number) => ({ infoHash, peerId: testPeerId(n), port: 7000 + n })
    await announce(announceUrl, { ...peer(1), event: 'started', left: 0 })
    await announce(announceUrl, { ...peer(2), event: 'started', left: 500 })
    await announce(announceUrl, { ...peer(3), event: 'started', left: 500 })
    await announce(announceUrl, { ...peer(3), event: 'completed', left: 0 })

    const { body } = await getBencoded(`${baseUrl}/scrape?info_hash=${encodeBinary(infoHash)}`)

    // bencode decodes a key that is not UTF-8 (as this infohash is not) to hex.
    expect(body.files).toEqual({ [infoHash]: { complete: 2, incomplete: 1, downloaded: 1 } })
    expect(body.flags).toEqual({ min_request_interval: 25 })
  })

  it('reports every published image when no infohash is named, and only those', async () => {
    const { tracker, baseUrl } = await start()
    tracker.publish(testInfoHash(2), 'rocky9')
    tracker.publish(testInfoHash(3), 'debian12')

    const all = await getBencoded(`${baseUrl}/scrape`)
    const mixed = await getBencoded(
      `${baseUrl}/scrape?info_hash=${encodeBinary(testInfoHash(3))}&info_hash=${encodeBinary(testInfoHash(4))}`,
    )

    const empty = { complete: 0, incomplete: 0, downloaded: 0 }
    expect(all.body.files).toEqual({ [testInfoHash(2)]: empty, [testInfoHash(3)]: empty })
    expect(mixed.body.files).toEqual({ [testInfoHash(3)]: empty })
  })

  it('refuses a scrape of nothing but unpublished infohashes', async () => {
    const { baseUrl } = await start()

    const { body } = await getBencoded(
      `${baseUrl}/scrape?info_hash=${encodeBinary(testInfoHash(5))}`,
    )

    expect(text(body['failure reason'])).toContain(`infohash ${testInfoHash(5)} is not published`)
  })

  it('answers a malformed infohash with a failure reason', async () => {
    const { baseUrl } = await start()

    const { body } = await getBencoded(`${baseUrl}/scrape?info_hash=abc`)

    expect(text(body['failure reason'])).toBe('invalid info_hash')
  })
})
