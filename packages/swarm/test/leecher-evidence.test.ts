import { describe, expect, it } from 'vitest'
import { ACTIVITY_WINDOW_MS, LeecherEvidence } from '../src/leecher-evidence.js'

// The linger decision alone, with a clock the test moves.
const GRACE_MS = 60_000

describe('LeecherEvidence', () => {
  it('counts connected peers still downloading while they show life, not after', () => {
    const evidence = new LeecherEvidence()
    const leecher = { downloading: true, lastActiveAt: 0 }
    const seeder = { downloading: false, lastActiveAt: 0 }
    expect(evidence.count(1000, [leecher, seeder], 1, GRACE_MS).count).toBe(1)
    const later = ACTIVITY_WINDOW_MS + 1
    expect(evidence.count(later, [leecher, seeder], 1, GRACE_MS)).toMatchObject({
      active: 0,
      unreached: 0,
      count: 0,
    })
    leecher.lastActiveAt = later
    expect(evidence.count(later, [leecher, seeder], 1, GRACE_MS).count).toBe(1)
  })

  it('counts downloaders the tracker reports and no connection reaches only for the grace', () => {
    const evidence = new LeecherEvidence()
    // A fake announcer: the tracker says one node downloads; nobody is connected.
    expect(evidence.count(0, [], 1, GRACE_MS)).toMatchObject({
      unreached: 1,
      graceOver: false,
      count: 1,
    })
    expect(evidence.count(GRACE_MS - 1, [], 1, GRACE_MS).count).toBe(1)
    expect(evidence.count(GRACE_MS, [], 1, GRACE_MS)).toMatchObject({
      unreached: 1,
      graceOver: true,
      count: 0,
    })
    // A real leecher that connects and asks is counted whatever the tracker says.
    const real = { downloading: true, lastActiveAt: GRACE_MS + 5 }
    expect(evidence.count(GRACE_MS + 10, [real], 2, GRACE_MS)).toMatchObject({
      active: 1,
      unreached: 1,
      count: 1,
    })
  })

  it('gives a new grace only once the tracker stopped reporting unreached downloaders', () => {
    const evidence = new LeecherEvidence()
    evidence.count(0, [], 1, GRACE_MS)
    expect(evidence.count(GRACE_MS, [], 1, GRACE_MS).count).toBe(0)
    expect(evidence.count(GRACE_MS + 1, [], 0, GRACE_MS).count).toBe(0)
    // A node that announces later is waited for again, for a grace of its own.
    expect(evidence.count(GRACE_MS + 2, [], 1, GRACE_MS).count).toBe(1)
    expect(evidence.count(2 * GRACE_MS + 2, [], 1, GRACE_MS).count).toBe(0)
  })

  it('trusts connected peers alone when the tracker cannot be asked', () => {
    const evidence = new LeecherEvidence()
    const leecher = { downloading: true, lastActiveAt: 0 }
    expect(evidence.count(0, [leecher], undefined, GRACE_MS)).toMatchObject({
      active: 1,
      unreached: 0,
      count: 1,
    })
  })
})
