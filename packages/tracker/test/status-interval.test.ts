import type { NodeStatusReport } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { resolveTrackerConfig } from '../src/config.js'
import { StatusIntake } from '../src/status-intake.js'
import { SwarmMonitor } from '../src/swarm-monitor.js'
import { nodeAddress, nodeToken, statusReport } from './fixtures.js'
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
  const intake = new StatusIntake({
    monitor: swarms,
    ratePerNode: 5,
    newNodesPerAddressPerMinute: 120,
    maxKeys: 1000,
  })
  /** Node `n`'s post, from its own address with its token. */
  const post = (n: number, fields: Partial<NodeStatusReport> = {}) => {
    const report = statusReport(n, fields)
    const result = intake.take(report, { address: nodeAddress(n), token: nodeToken(report.peerId) })
    expect(result.ok).toBe(true)
  }
  return { swarms, post, advance: (ms: number) => (now += ms) }
}

describe('the status report interval', () => {
  it('is a second while the nodes post fewer than statusPostsPerSecond between them', () => {
    const { swarms, post } = monitor({ statusPostsPerSecond: 100 })
    for (let n = 1; n <= 100; n++) post(n)
    swarms.sample()
    expect(swarms.statusIntervalMs()).toBe(1000)
  })

  it('spreads the posts of many installing nodes out, counting neither finished nor stale ones', () => {
    const { swarms, post, advance } = monitor({ statusPostsPerSecond: 2, nodeStaleSeconds: 60 })
    for (let n = 1; n <= 6; n++) post(n, { state: 'downloading' })
    for (let n = 7; n <= 9; n++) post(n, { state: 'done' })
    // Counted at the sample, not at every post.
    expect(swarms.statusIntervalMs()).toBe(1000)
    swarms.sample()
    expect(swarms.statusIntervalMs()).toBe(3000)

    // Four of the six fall silent: once stale, they no longer count.
    advance(61_000)
    for (let n = 1; n <= 2; n++) post(n, { state: 'extracting' })
    swarms.sample()
    expect(swarms.statusIntervalMs()).toBe(1000)
  })

  it('never asks for posts so rare that a node would look stale', () => {
    const { swarms, post } = monitor({ statusPostsPerSecond: 1, nodeStaleSeconds: 20 })
    for (let n = 1; n <= 50; n++) post(n, { state: 'downloading' })
    swarms.sample()
    expect(swarms.statusIntervalMs()).toBe(5000)
  })
})
