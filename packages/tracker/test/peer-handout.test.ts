import { seededRandom } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import {
  CROSS_RACK_SHARE,
  crossRackPeers,
  handOutPeers,
  MIN_CROSS_RACK_PEERS,
  RackPeerIndex,
} from '../src/peer-handout.js'

/** A swarm's index: `racks` maps a rack (or `unknown`, for peers that gave none) to how
 * many peers it has, keyed `r1-0`, `r1-1`, …, `unknown-0`. */
function swarmOf(racks: Record<string, number>): RackPeerIndex {
  const index = new RackPeerIndex()
  for (const [rack, count] of Object.entries(racks)) {
    for (let n = 0; n < count; n++) index.add(`${rack}-${n}`, rack === 'unknown' ? undefined : rack)
  }
  return index
}

function rackOfKey(key: string): string {
  return key.slice(0, key.indexOf('-'))
}

function countByRack(keys: string[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const key of keys) counts[rackOfKey(key)] = (counts[rackOfKey(key)] ?? 0) + 1
  return counts
}

describe('crossRackPeers', () => {
  it('gives other racks a tenth of the places, at least two', () => {
    expect(CROSS_RACK_SHARE).toBe(0.1)
    expect(MIN_CROSS_RACK_PEERS).toBe(2)
    expect(crossRackPeers(5)).toBe(2)
    expect(crossRackPeers(20)).toBe(2)
    expect(crossRackPeers(21)).toBe(3)
    expect(crossRackPeers(50)).toBe(5)
    expect(crossRackPeers(100)).toBe(10)
  })

  it('never gives more places than were asked for', () => {
    expect(crossRackPeers(0)).toBe(0)
    expect(crossRackPeers(1)).toBe(1)
    expect(crossRackPeers(2)).toBe(2)
  })
})

describe('RackPeerIndex', () => {
  it('knows each peer’s rack, and whether any peer has one', () => {
    const index = new RackPeerIndex()
    index.add('a', undefined)
    index.add('b', undefined)
    expect(index.size).toBe(2)
    expect(index.racked).toBe(false)
    expect(index.rackOf('a')).toBeUndefined()
    index.add('c', 'r1')
    expect(index.racked).toBe(true)
    expect(index.rackOf('c')).toBe('r1')
    expect([...index.inRack('r1')]).toEqual(['c'])
    expect([...index.inRack('r9')]).toEqual([])
  })

  it('counts a peer announcing again once', () => {
    const index = new RackPeerIndex()
    index.add('a', 'r1')
    index.add('a', 'r1')
    expect(index.size).toBe(1)
    expect([...index.inRack('r1')]).toEqual(['a'])
  })

  it('moves a peer to the rack it now gives', () => {
    const index = new RackPeerIndex()
    index.add('a', 'r1')
    index.add('b', 'r1')
    index.add('a', 'r2')
    expect(index.size).toBe(2)
    expect(index.rackOf('a')).toBe('r2')
    expect([...index.inRack('r1')]).toEqual(['b'])
    expect([...index.inRack('r2')]).toEqual(['a'])
  })

  it('forgets the rack of a peer that no longer gives one', () => {
    const index = new RackPeerIndex()
    index.add('a', 'r1')
    index.add('a', undefined)
    expect(index.size).toBe(1)
    expect(index.rackOf('a')).toBeUndefined()
    expect([...index.inRack('r1')]).toEqual([])
    expect(index.racked).toBe(false)
  })

  it('drops a peer that leaves from the swarm and its rack, and an empty rack', () => {
    const index = swarmOf({ r1: 2, unknown: 1 })
    index.delete('r1-0')
    index.delete('unknown-0')
    index.delete('never-there')
    expect(index.size).toBe(1)
    expect([...index.all()]).toEqual(['r1-1'])
    expect(index.rackOf('r1-0')).toBeUndefined()
    index.delete('r1-1')
    expect(index.size).toBe(0)
    expect(index.racked).toBe(false)
  })
})

describe('handOutPeers', () => {
  it('hands out nothing when no peers are wanted', () => {
    const index = swarmOf({ r1: 5 })
    expect(handOutPeers(index, { numwant: 0, rack: 'r1' })).toEqual([])
    expect(handOutPeers(index, { numwant: -3 })).toEqual([])
  })

  describe('when nobody’s rack is known', () => {
    it('hands out distinct peers, as many as asked for', () => {
      const index = swarmOf({ unknown: 30 })
      const peers = handOutPeers(index, { numwant: 12, random: seededRandom(1) })
      expect(peers).toHaveLength(12)
      expect(new Set(peers).size).toBe(12)
      expect(handOutPeers(index, { numwant: 50 })).toHaveLength(30)
    })

    it('picks every peer about equally often, whatever rack the asker gives', () => {
      const index = swarmOf({ unknown: 20 })
      const random = seededRandom(2)
      const seen = new Map<string, number>()
      const handouts = 2000
      for (let n = 0; n < handouts; n++) {
        for (const key of handOutPeers(index, { numwant: 5, rack: 'r1', random })) {
          seen.set(key, (seen.get(key) ?? 0) + 1)
        }
      }
      // Each of the 20 peers is in a quarter of the handouts: 500 ± 15 %.
      expect(seen.size).toBe(20)
      for (const count of seen.values()) {
        expect(count).toBeGreaterThan(425)
        expect(count).toBeLessThan(575)
      }
    })
  })

  it('hands an asker of no known rack peers of every rack at random', () => {
    const index = swarmOf({ r1: 10, r2: 10, unknown: 10 })
    const counts = countByRack(
      Array.from({ length: 200 }, (_, seed) =>
        handOutPeers(index, { numwant: 6, random: seededRandom(seed) }),
      ).flat(),
    )
    // 1,200 places over three equal groups: about 400 each.
    for (const rack of ['r1', 'r2', 'unknown']) {
      expect(counts[rack]).toBeGreaterThan(330)
      expect(counts[rack]).toBeLessThan(470)
    }
  })

  describe('when the asker’s rack is known', () => {
    it('fills all but crossRackPeers(numwant) places from its own rack, the two mixed', () => {
      let crossInFirstHalf = 0
      for (let seed = 1; seed <= 50; seed++) {
        const index = swarmOf({ r1: 30, r2: 30, r3: 30 })
        const peers = handOutPeers(index, { numwant: 30, rack: 'r1', random: seededRandom(seed) })
        const cross = crossRackPeers(30)
        expect(peers).toHaveLength(30)
        expect(new Set(peers).size).toBe(30)
        expect(peers.filter((key) => rackOfKey(key) === 'r1')).toHaveLength(30 - cross)
        crossInFirstHalf += peers.slice(0, 15).filter((key) => rackOfKey(key) !== 'r1').length
      }
      // A node dials only the first part of its handout: other racks are not all at the end
      // (half of the 50 × 3 cross-rack places, give or take).
      expect(crossInFirstHalf).toBeGreaterThan(40)
    })

    it('takes its other-rack peers from every other rack', () => {
      const index = swarmOf({ r1: 10, r2: 10, r3: 10 })
      const random = seededRandom(3)
      const counts = countByRack(
        Array.from({ length: 400 }, () => handOutPeers(index, { numwant: 5, rack: 'r1', random }))
          .flat()
          .filter((key) => rackOfKey(key) !== 'r1'),
      )
      // 800 cross-rack places, about half each.
      expect(counts.r2).toBeGreaterThan(340)
      expect(counts.r3).toBeGreaterThan(340)
    })

    it('counts peers of no known rack as other racks', () => {
      const index = swarmOf({ r1: 10, unknown: 10 })
      for (let seed = 1; seed <= 20; seed++) {
        const peers = handOutPeers(index, { numwant: 8, rack: 'r1', random: seededRandom(seed) })
        expect(countByRack(peers)).toEqual({ r1: 6, unknown: 2 })
      }
    })

    it('does not make up a small rack’s shortfall from other racks', () => {
      const index = swarmOf({ r1: 4, r2: 40, unknown: 40 })
      for (let seed = 1; seed <= 20; seed++) {
        const peers = handOutPeers(index, {
          numwant: 20,
          rack: 'r1',
          exclude: 'r1-0',
          random: seededRandom(seed),
        })
        const counts = countByRack(peers)
        expect(counts.r1).toBe(3)
        expect(peers.length - 3).toBe(crossRackPeers(20))
      }
    })

    it('hands out only other racks’ share to a node alone in a new rack', () => {
      const index = swarmOf({ r2: 40 })
      index.add('newcomer', 'r9')
      const peers = handOutPeers(index, { numwant: 50, rack: 'r9', exclude: 'newcomer' })
      expect(peers).toHaveLength(crossRackPeers(50))
      expect(peers.every((key) => rackOfKey(key) === 'r2')).toBe(true)
    })

    it('hands out a peer that moved by its new rack', () => {
      const index = swarmOf({ r1: 5, r2: 5 })
      index.add('r2-0', 'r1')
      for (let seed = 1; seed <= 20; seed++) {
        const peers = handOutPeers(index, { numwant: 8, rack: 'r1', random: seededRandom(seed) })
        // Six of r1 (its five and the one that moved) fill the six own-rack places.
        expect(peers.filter((key) => index.rackOf(key) === 'r1').sort()).toEqual([
          'r1-0',
          'r1-1',
          'r1-2',
          'r1-3',
          'r1-4',
          'r2-0',
        ])
        expect(peers.filter((key) => index.rackOf(key) === 'r2')).toHaveLength(2)
      }
    })
  })

  it('never hands the asker itself, by rack or at random', () => {
    const index = swarmOf({ r1: 3, r2: 3 })
    for (let seed = 1; seed <= 50; seed++) {
      const random = seededRandom(seed)
      expect(
        handOutPeers(index, { numwant: 10, rack: 'r1', exclude: 'r1-0', random }),
      ).not.toContain('r1-0')
      expect(handOutPeers(index, { numwant: 10, exclude: 'r2-1', random })).not.toContain('r2-1')
      expect(
        handOutPeers(index, { numwant: 10, rack: 'r2', exclude: 'r2-1', random }),
      ).not.toContain('r2-1')
    }
  })

  it('skips the peers the caller does not accept, and fills their places with others', () => {
    const index = swarmOf({ r1: 10, r2: 10 })
    const odd = (key: string) => Number(key.slice(key.indexOf('-') + 1)) % 2 === 1
    for (let seed = 1; seed <= 20; seed++) {
      const random = seededRandom(seed)
      const racked = handOutPeers(index, { numwant: 8, rack: 'r1', accept: odd, random })
      expect(racked.every(odd)).toBe(true)
      // r1 has five odd peers, for six own-rack places; two go to r2.
      expect(countByRack(racked)).toEqual({ r1: 5, r2: 2 })
      const uniform = handOutPeers(index, { numwant: 8, accept: odd, random })
      expect(uniform).toHaveLength(8)
      expect(uniform.every(odd)).toBe(true)
    }
  })
})
