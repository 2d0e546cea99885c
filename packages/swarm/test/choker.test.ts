import { describe, expect, it } from 'vitest'
import { Choker, type ChokerPeer, ROTATE_MS } from '../src/choker.js'
import { PieceSet } from '../src/piece-set.js'

// The choker alone: peers are plain objects, time is a number the test moves on.

interface FakePeer extends ChokerPeer {
  readonly name: string
}

const PIECE_COUNT = 20

function peerHolding(name: string, count: number): FakePeer {
  const pieces = new PieceSet(PIECE_COUNT)
  for (let index = 0; index < count; index++) pieces.add(index)
  return { name, pieces, unchokedAt: 0, waitingSince: 0 }
}

/** A node with `slots` upload slots; `connect` adds a peer holding `count` pieces. */
function uploader(slots: number) {
  const peers = new Set<FakePeer>()
  /** What the choker told peers, in order: `unchoke a`, `choke b`. */
  const told: string[] = []
  // Starts above 0: 0 means "never" in the peer's fields.
  let now = 1_000
  const choker = new Choker<FakePeer>({
    slots,
    peers: () => peers,
    choke: (peer) => told.push(`choke ${peer.name}`),
    unchoke: (peer) => told.push(`unchoke ${peer.name}`),
    clock: () => now,
  })
  return {
    choker,
    told,
    connect(name: string, count: number): FakePeer {
      const peer = peerHolding(name, count)
      peers.add(peer)
      return peer
    },
    leave(peer: FakePeer): void {
      peers.delete(peer)
      choker.left(peer)
    },
    advance(ms: number): void {
      now += ms
    },
    get now() {
      return now
    },
    unchoked(): string[] {
      return [...peers].filter((peer) => peer.unchokedAt).map((peer) => peer.name)
    },
    waiting(): string[] {
      return [...peers].filter((peer) => peer.waitingSince).map((peer) => peer.name)
    },
  }
}

describe('Choker', () => {
  it('unchokes interested peers first come while slots are free, then makes the rest wait', () => {
    const node = uploader(2)
    const a = node.connect('a', 5)
    const b = node.connect('b', 9)
    const c = node.connect('c', 0)
    node.choker.interested(a)
    node.advance(1)
    node.choker.interested(b)
    node.advance(1)
    node.choker.interested(c)
    expect(node.told).toEqual(['unchoke a', 'unchoke b'])
    expect(node.unchoked()).toEqual(['a', 'b'])
    expect(node.waiting()).toEqual(['c'])
    expect(c.waitingSince).toBe(node.now)
    expect(a.unchokedAt).toBe(node.now - 2)
    expect(node.choker.slots).toBe(2)
  })

  it('does nothing for an unchoked peer that says it is interested again', () => {
    const node = uploader(1)
    const a = node.connect('a', 3)
    node.choker.interested(a)
    const unchokedAt = a.unchokedAt
    node.advance(500)
    node.choker.interested(a)
    expect(node.told).toEqual(['unchoke a'])
    expect(a.unchokedAt).toBe(unchokedAt)
    expect(a.waitingSince).toBe(0)
  })

  it('keeps a waiting peer’s place in line when it says it is interested again', () => {
    const node = uploader(1)
    const holder = node.connect('holder', 0)
    node.choker.interested(holder)
    const early = node.connect('early', 4)
    const late = node.connect('late', 4)
    node.choker.interested(early)
    node.advance(100)
    node.choker.interested(late)
    node.advance(100)
    node.choker.interested(early)
    expect(early.waitingSince).toBe(node.now - 200)
    node.choker.uninterested(holder)
    expect(node.told.at(-1)).toBe('unchoke early')
  })

  describe('when a slot comes free', () => {
    /** One slot, held by `holder`; `ahead` (ten pieces) waits first, `behind` (one) later. */
    function queue() {
      const node = uploader(1)
      const holder = node.connect('holder', 0)
      node.choker.interested(holder)
      const ahead = node.connect('ahead', 10)
      node.choker.interested(ahead)
      node.advance(50)
      const behind = node.connect('behind', 1)
      node.choker.interested(behind)
      expect(node.told).toEqual(['unchoke holder'])
      return { node, holder, ahead, behind }
    }

    it('gives it to the waiting peer furthest behind, not the first in line', () => {
      const { node, holder, ahead } = queue()
      node.choker.uninterested(holder)
      expect(node.told).toEqual(['unchoke holder', 'choke holder', 'unchoke behind'])
      expect(node.unchoked()).toEqual(['behind'])
      // The peer ahead keeps waiting, from when it first asked.
      expect(node.waiting()).toEqual(['ahead'])
      expect(ahead.waitingSince).toBe(node.now - 50)
    })

    it('gives the slot of a peer that left to the waiting peer furthest behind', () => {
      const { node, holder } = queue()
      node.leave(holder)
      // The peer that left is not told anything: its connection is gone.
      expect(node.told).toEqual(['unchoke holder', 'unchoke behind'])
      expect(holder.unchokedAt).toBe(0)
      expect(node.unchoked()).toEqual(['behind'])
    })

    it('gives it to the longest waiting among peers equally far behind', () => {
      const node = uploader(1)
      const holder = node.connect('holder', 0)
      node.choker.interested(holder)
      for (const name of ['first', 'second', 'third']) {
        node.choker.interested(node.connect(name, 3))
        node.advance(10)
      }
      node.choker.uninterested(holder)
      expect(node.told.at(-1)).toBe('unchoke first')
      expect(node.waiting()).toEqual(['second', 'third'])
    })

    it('gives nothing to a peer that stopped waiting', () => {
      const { node, holder, behind } = queue()
      node.choker.uninterested(behind)
      expect(behind.waitingSince).toBe(0)
      expect(node.told).toEqual(['unchoke holder'])
      node.choker.uninterested(holder)
      expect(node.told).toEqual(['unchoke holder', 'choke holder', 'unchoke ahead'])
    })

    it('forgets a waiting peer that left', () => {
      const { node, holder, behind } = queue()
      node.leave(behind)
      expect(behind.waitingSince).toBe(0)
      node.choker.uninterested(holder)
      expect(node.told.at(-1)).toBe('unchoke ahead')
    })

    it('stays free when nobody waits', () => {
      const node = uploader(2)
      const a = node.connect('a', 1)
      node.choker.interested(a)
      node.choker.uninterested(a)
      expect(node.told).toEqual(['unchoke a', 'choke a'])
      expect(node.unchoked()).toEqual([])
      // The next peer to ask gets it at once.
      node.choker.interested(node.connect('b', 7))
      expect(node.told.at(-1)).toBe('unchoke b')
    })

    it('tells a peer that was never unchoked nothing when it loses interest', () => {
      const { node, ahead } = queue()
      node.choker.uninterested(ahead)
      node.leave(ahead)
      expect(node.told).toEqual(['unchoke holder'])
    })
  })

  describe('every ROTATE_MS', () => {
    it('moves the slot of the peer furthest ahead to the neediest waiting peer after a full round', () => {
      const node = uploader(1)
      const a = node.connect('a', 5)
      node.choker.interested(a)
      const b = node.connect('b', 2)
      node.choker.interested(b)
      node.advance(ROTATE_MS - 1)
      node.choker.rotate()
      expect(node.told).toEqual(['unchoke a'])
      node.advance(1)
      node.choker.rotate()
      expect(node.told).toEqual(['unchoke a', 'choke a', 'unchoke b'])
      expect(b.unchokedAt).toBe(node.now)
      // The peer that gave way waits from now on, as if it had just asked.
      expect(a.waitingSince).toBe(node.now)
      expect(node.waiting()).toEqual(['a'])
    })

    it('takes the slot of the unchoked peer furthest ahead, not the longest unchoked', () => {
      const node = uploader(3)
      const peers = [node.connect('x', 3), node.connect('y', 8), node.connect('z', 6)]
      for (const peer of peers) {
        node.choker.interested(peer)
        node.advance(1)
      }
      node.choker.interested(node.connect('needy', 1))
      node.advance(ROTATE_MS)
      node.choker.rotate()
      expect(node.told.slice(3)).toEqual(['choke y', 'unchoke needy'])
      expect(node.unchoked().sort()).toEqual(['needy', 'x', 'z'])
    })

    it('between peers equally far ahead, takes the slot of the one unchoked longest', () => {
      const node = uploader(2)
      node.choker.interested(node.connect('earlier', 6))
      node.advance(1)
      node.choker.interested(node.connect('later', 6))
      node.choker.interested(node.connect('needy', 0))
      node.advance(ROTATE_MS)
      node.choker.rotate()
      expect(node.told.slice(2)).toEqual(['choke earlier', 'unchoke needy'])
    })

    it('leaves a peer its slot until it has held it a full round, however far ahead', () => {
      const node = uploader(2)
      node.choker.interested(node.connect('old', 3))
      node.advance(ROTATE_MS / 2)
      node.choker.interested(node.connect('recent', 15))
      node.choker.interested(node.connect('needy', 1))
      node.advance(ROTATE_MS / 2)
      node.choker.rotate()
      // Only `old` has held its slot for ROTATE_MS: it gives way, though `recent` is ahead.
      expect(node.told.slice(2)).toEqual(['choke old', 'unchoke needy'])
    })

    it('rotates nothing while every unchoked peer is behind the neediest waiting one', () => {
      const node = uploader(2)
      node.choker.interested(node.connect('a', 3))
      node.choker.interested(node.connect('b', 4))
      const c = node.connect('c', 9)
      node.choker.interested(c)
      node.advance(3 * ROTATE_MS)
      node.choker.rotate()
      expect(node.told).toEqual(['unchoke a', 'unchoke b'])
      expect(node.waiting()).toEqual(['c'])
      expect(c.waitingSince).toBe(node.now - 3 * ROTATE_MS)
    })

    it('gives way to a waiting peer exactly as far along', () => {
      const node = uploader(1)
      node.choker.interested(node.connect('a', 4))
      node.choker.interested(node.connect('b', 4))
      node.advance(ROTATE_MS)
      node.choker.rotate()
      expect(node.told).toEqual(['unchoke a', 'choke a', 'unchoke b'])
    })

    it('rotates nothing when nobody waits', () => {
      const node = uploader(2)
      node.choker.interested(node.connect('a', 3))
      node.advance(ROTATE_MS)
      node.choker.rotate()
      expect(node.told).toEqual(['unchoke a'])
    })

    it('moves one slot per round, and the peer that gave way gets one back in its turn', () => {
      const node = uploader(2)
      const a = node.connect('a', 10)
      const b = node.connect('b', 8)
      const c = node.connect('c', 1)
      const d = node.connect('d', 2)
      for (const peer of [a, b, c, d]) node.choker.interested(peer)
      node.advance(ROTATE_MS)
      node.choker.rotate()
      expect(node.told.slice(2)).toEqual(['choke a', 'unchoke c'])
      node.advance(ROTATE_MS)
      node.choker.rotate()
      // b has held its slot two rounds, c one: b is the furthest ahead that may give way.
      expect(node.told.slice(4)).toEqual(['choke b', 'unchoke d'])
      node.advance(ROTATE_MS)
      node.choker.rotate()
      // a and b wait now; a (ten pieces) and b (eight) are both further ahead than c and
      // d, so nothing moves.
      expect(node.told).toHaveLength(6)
      expect(node.waiting().sort()).toEqual(['a', 'b'])
      // When d wants nothing more, b (further behind than a) gets its slot.
      node.choker.uninterested(d)
      expect(node.told.slice(6)).toEqual(['choke d', 'unchoke b'])
      expect(node.waiting()).toEqual(['a'])
    })
  })
})
