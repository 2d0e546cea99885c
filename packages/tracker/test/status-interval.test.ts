import { describe, expect, it } from 'vitest'
import { resolveTrackerConfig } from '../src/config.js'
import { SwarmMonitor } from '../src/swarm-monitor.js'
import { statusReport } from './fixtures.js'
import { testInfoHash } from './tracker-server.js'

const START = 1_700_000_000_000

function monitor(config: Parameters<typeof resolveTrackerConfig>[0]) {
  let now = START
  const swarms = new SwarmMonitor({
    config: resolveTrackerConfig(config),
    countsOf: () => ({ seeders: 0, leechers: 0, completed: 0 }),
    now: () => now,
  })
  swarms.publish(testInfoHash(1), 'rocky9')
  return { swarms, advance: (ms: number) => (now += ms) }
}

describe('the status report interval', () => {
  it('is a second while the nodes post fewer than statusPostsPerSecond between them', () => {
    const { swarms } = monitor({ statusPostsPerSecond: 100 })
    for (let n = 1; n <= 100; n++) swarms.recordStatus(statusReport(n))
    swarms.sample()
    expect(swarms.statusIntervalMs()).toBe(1000)
  })

  it('spreads the posts of many installing nodes out, counting neither finished nor stale ones', () => {
    const { swarms, advance } = monitor({ statusPostsPerSecond: 2, nodeStaleSeconds: 60 })
    for (let n = 1; n <= 6; n++) swarms.recordStatus(statusReport(n, { state: 'downloading' }))
    for (let n = 7; n <= 9; n++) swarms.recordStatus(statusReport(n, { state: 'done' }))
    // Counted at the sample, not at every post.
    expect(swarms.statusIntervalMs()).toBe(1000)
    swarms.sample()
    expect(swarms.statusIntervalMs()).toBe(3000)

    // Four of the six fall silent: once stale, they no longer count.
    advance(61_000)
    for (let n = 1; n <= 2; n++) swarms.recordStatus(statusReport(n, { state: 'extracting' }))
    swarms.sample()
    expect(swarms.statusIntervalMs()).toBe(1000)
  })

  it('never asks for posts so rare that a node would look stale', () => {
    const { swarms } = monitor({ statusPostsPerSecond: 1, nodeStaleSeconds: 20 })
    for (let n = 1; n <= 50; n++) swarms.recordStatus(statusReport(n, { state: 'downloading' }))
    swarms.sample()
    expect(swarms.statusIntervalMs()).toBe(5000)
  })
})
