import { ImageSwarmError } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import { createTracker, resolveTrackerConfig } from '../src/index.js'

function errorOf(fn: () => unknown): ImageSwarmError {
  try {
    fn()
  } catch (err) {
    if (err instanceof ImageSwarmError) return err
    throw err
  }
  throw new Error('expected an error')
}

describe('resolveTrackerConfig', () => {
  it('fills LAN defaults, with the peer TTL three announce intervals long', () => {
    expect(resolveTrackerConfig()).toEqual({
      announceIntervalSeconds: 20,
      maxPeersPerSwarm: 20_000,
      peerTtlSeconds: 60,
      defaultNumwant: 100,
      maxNumwant: 200,
      trustProxy: false,
      nodeStaleSeconds: 60,
      maxNodesPerSwarm: 20_000,
      historySampleSeconds: 1,
      historyPoints: 3600,
      statusRatePerNode: 5,
      statusPostsPerSecond: 100,
      newNodesPerAddressPerMinute: 120,
      deploymentGapSeconds: 120,
      deploymentsKept: 20,
    })
    expect(resolveTrackerConfig({ announceIntervalSeconds: 15 }).peerTtlSeconds).toBe(45)
  })

  it('names the bad key, what it expected and what it received', () => {
    const err = errorOf(() => resolveTrackerConfig({ maxNumwant: -3 }))

    expect(err.code).toBe('E_CONFIG_INVALID')
    expect(err.path).toBe('maxNumwant')
    expect(err.message).toMatch(/^invalid tracker setting maxNumwant: .* \(received -3\)$/)
  })

  it('names the key that a cross-check between keys rejects', () => {
    expect(errorOf(() => resolveTrackerConfig({ defaultNumwant: 300 })).path).toBe('defaultNumwant')
    expect(
      errorOf(() => resolveTrackerConfig({ announceIntervalSeconds: 30, peerTtlSeconds: 30 })).path,
    ).toBe('peerTtlSeconds')
  })

  it('rejects a key it does not know, naming it', () => {
    const err = errorOf(() =>
      resolveTrackerConfig({ announceInterval: 15 } as unknown as Parameters<
        typeof resolveTrackerConfig
      >[0]),
    )

    expect(err.message).toContain('announceInterval')
  })

  it('is what createTracker applies', () => {
    expect(() => createTracker({ config: { announceIntervalSeconds: 0 } })).toThrow(
      /announceIntervalSeconds/,
    )
  })
})
