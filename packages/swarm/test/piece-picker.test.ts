import { seededRandom } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import type { BlockRequest, PieceDownload } from '../src/piece-download.js'
import { type PickerPeer, PieceAvailability, PiecePicker, rarest } from '../src/piece-picker.js'
import { PieceSet } from '../src/piece-set.js'
import { BLOCK_LENGTH, LARGE_BLOCK_LENGTH } from '../src/torrent.js'

// The picker alone: peers are plain objects, nothing goes over a socket, and randomness
// comes from a seeded generator so every run draws the same numbers.

/** Two large blocks (sixteen 16 KiB units) per piece. */
const PIECE_LENGTH = 2 * LARGE_BLOCK_LENGTH

interface FakePeer extends PickerPeer {
  readonly name: string
  inflight: number
}

function pieceSet(size: number, indexes: Iterable<number>): PieceSet {
  const set = new PieceSet(size)
  for (const index of indexes) set.add(index)
  return set
}

/** A buffer pool that records what it lends and gets back. */
class RecordingPool {
  readonly taken: Buffer[] = []
  readonly given: Buffer[] = []

  take(length: number): Buffer {
    const buffer = Buffer.alloc(length)
    this.taken.push(buffer)
    return buffer
  }

  give(buffer: Buffer): void {
    this.given.push(buffer)
  }
}

/**
 * A node that needs `pieceCount` pieces (holding `have`), and peers holding what
 * `holdings` says (name → pieces). Availability counts every peer's pieces, as the engine
 * counts bitfields and haves.
 */
function swarmOf(options: {
  pieceCount: number
  have?: number[]
  holdings: Record<string, number[]>
  /** Peers asked for 16 KiB blocks (foreign clients); the rest take large ones. */
  foreign?: string[]
  lastPieceLength?: number
  seed?: number
}) {
  const { pieceCount } = options
  const have = pieceSet(pieceCount, options.have ?? [])
  const availability = new PieceAvailability(pieceCount)
  const peers = new Map<string, FakePeer>()
  for (const [name, indexes] of Object.entries(options.holdings)) {
    const peer: FakePeer = {
      name,
      pieces: pieceSet(pieceCount, indexes),
      assigned: new Set(),
      blockLength: options.foreign?.includes(name) ? BLOCK_LENGTH : LARGE_BLOCK_LENGTH,
      inflight: 0,
    }
    for (const index of indexes) availability.add(index)
    peers.set(name, peer)
  }
  const pool = new RecordingPool()
  const picker = new PiecePicker<FakePeer>({
    have,
    availability,
    pieceLength: (index) =>
      index === pieceCount - 1 ? (options.lastPieceLength ?? PIECE_LENGTH) : PIECE_LENGTH,
    buffers: pool,
    random: seededRandom(options.seed ?? 1),
  })
  const peer = (name: string): FakePeer => {
    const found = peers.get(name)
    if (!found) throw new Error(`no peer ${name}`)
    return found
  }
  /** Asks the peer for its next block as the engine does: recorded, its bytes in flight. */
  const ask = (name: string) => {
    const next = picker.next(peer(name))
    if (!next) return undefined
    next.download.asked(next.request)
    next.request.peer.inflight += next.request.length
    return next
  }
  /** The peer's answer arrived. */
  const receive = (download: PieceDownload<FakePeer>, request: BlockRequest<FakePeer>) => {
    request.peer.inflight -= request.length
    return download.received(request, new Uint8Array(request.length))
  }
  return { have, availability, peers, peer, pool, picker, ask, receive }
}

describe('rarest', () => {
  it('returns the index with the lowest score, skipping those scored undefined', () => {
    const scores = [5, undefined, 2, 7, undefined, 3]
    expect(rarest(scores.length, (index) => scores[index])).toBe(2)
  })

  it('returns -1 when no index may be picked', () => {
    expect(rarest(4, () => undefined)).toBe(-1)
    expect(rarest(0, () => 0)).toBe(-1)
  })

  it('breaks ties evenly across every equally low index', () => {
    const scores = [1, 0, 4, 0, 0, 2, 0]
    const random = seededRandom(42)
    const picks = new Map<number, number>()
    const draws = 8000
    for (let draw = 0; draw < draws; draw++) {
      const index = rarest(scores.length, (i) => scores[i], random)
      picks.set(index, (picks.get(index) ?? 0) + 1)
    }
    expect([...picks.keys()].sort()).toEqual([1, 3, 4, 6])
    // Each of the four ties is picked about a quarter of the time (2,000 ± 10 %).
    for (const count of picks.values()) {
      expect(count).toBeGreaterThan(1800)
      expect(count).toBeLessThan(2200)
    }
  })
})

describe('PieceAvailability', () => {
  it('counts the copies of each piece among connected peers', () => {
    const availability = new PieceAvailability(4)
    availability.add(1)
    availability.add(1)
    availability.add(3)
    expect(availability.pieceCount).toBe(4)
    expect([0, 1, 2, 3].map((index) => availability.of(index))).toEqual([0, 2, 0, 1])
    expect(availability.of(99)).toBe(0)
  })

  it('takes away every piece of a peer that leaves', () => {
    const availability = new PieceAvailability(4)
    const leaving = pieceSet(4, [0, 1])
    const staying = pieceSet(4, [1, 2])
    for (const peer of [leaving, staying]) {
      for (let index = 0; index < 4; index++) if (peer.has(index)) availability.add(index)
    }
    availability.removeAll(leaving)
    expect([0, 1, 2, 3].map((index) => availability.of(index))).toEqual([0, 1, 1, 0])
  })
})

describe('PiecePicker', () => {
  it('starts the piece fewest peers hold, among those the peer holds and we lack', () => {
    const swarm = swarmOf({
      pieceCount: 4,
      holdings: {
        asker: [0, 1, 2],
        b: [0, 1, 2, 3],
        c: [0, 2, 3],
        d: [0, 3],
      },
    })
    // Copies: piece 0 ×4, 1 ×2, 2 ×3, 3 ×3 (the asker lacks 3).
    const first = swarm.ask('asker')
    expect(first?.download.index).toBe(1)
    expect(first?.request.offset).toBe(0)
  })

  it('spreads its picks evenly across equally rare pieces', () => {
    const picks = new Map<number, number>()
    const runs = 2000
    for (let seed = 1; seed <= runs; seed++) {
      const swarm = swarmOf({
        pieceCount: 6,
        holdings: { asker: [0, 1, 2, 3, 4, 5], other: [0, 2, 4, 5] },
        seed,
      })
      const index = swarm.ask('asker')?.download.index ?? -1
      picks.set(index, (picks.get(index) ?? 0) + 1)
    }
    // Pieces 1 and 3 have one copy each, the rest two: only 1 and 3 are ever started, each
    // about half the time.
    expect([...picks.keys()].sort()).toEqual([1, 3])
    for (const count of picks.values()) {
      expect(count).toBeGreaterThan(0.45 * runs)
      expect(count).toBeLessThan(0.55 * runs)
    }
  })

  it('never asks for a piece we hold, one the peer lacks, or one being fetched elsewhere', () => {
    for (let seed = 1; seed <= 50; seed++) {
      const swarm = swarmOf({
        pieceCount: 8,
        have: [0, 5],
        holdings: { asker: [0, 1, 2, 3, 5], other: [0, 1, 2, 3, 4, 5, 6, 7] },
        seed,
      })
      // The web seed fetches piece 2.
      swarm.picker.claim(2)
      // Two pieces of two blocks each, then nothing: a bound, not a hang, if that breaks.
      const pieces: number[] = []
      for (let asks = 0; asks < 10; asks++) {
        const next = swarm.ask('asker')
        if (!next) break
        pieces.push(next.download.index)
      }
      expect(pieces).toHaveLength(4)
      expect([...new Set(pieces)].sort()).toEqual([1, 3])
    }
  })

  it('asks a peer for every block of its own piece before starting another', () => {
    const swarm = swarmOf({ pieceCount: 3, holdings: { asker: [0, 1, 2] } })
    const first = swarm.ask('asker')!
    const second = swarm.ask('asker')!
    expect(second.download).toBe(first.download)
    expect(second.request.offset).toBe(LARGE_BLOCK_LENGTH)
    expect(swarm.peer('asker').assigned).toEqual(new Set([first.download.index]))
    const third = swarm.ask('asker')!
    expect(third.download.index).not.toBe(first.download.index)
    expect(swarm.peer('asker').assigned.size).toBe(2)
  })

  it('gives each peer a piece of its own while there are pieces to go round', () => {
    const names = ['a', 'b', 'c', 'd']
    const swarm = swarmOf({
      pieceCount: 4,
      holdings: Object.fromEntries(names.map((name) => [name, [0, 1, 2, 3]])),
    })
    const pieces = names.map((name) => swarm.ask(name)!.download.index)
    expect(new Set(pieces).size).toBe(4)
    for (const [at, name] of names.entries()) {
      expect(swarm.peer(name).assigned).toEqual(new Set([pieces[at]]))
    }
  })

  it('lets a peer help with the free blocks of another peer’s piece once every piece is under way', () => {
    const swarm = swarmOf({ pieceCount: 2, holdings: { a: [0, 1], b: [0, 1] } })
    const aFirst = swarm.ask('a')!
    swarm.ask('a')
    const bFirst = swarm.ask('b')!
    expect(bFirst.download.index).not.toBe(aFirst.download.index)
    // Every piece has a peer of its own and a's is fully asked for: a takes the block of
    // b's piece that b has not been asked for yet, without taking the piece over.
    const help = swarm.ask('a')!
    expect(help.download).toBe(bFirst.download)
    expect(help.request.offset).toBe(LARGE_BLOCK_LENGTH)
    expect(swarm.peer('a').assigned).toEqual(new Set([aFirst.download.index]))
    expect(swarm.peer('b').assigned).toEqual(new Set([bFirst.download.index]))
  })

  it('does not help with a piece the peer does not hold', () => {
    const swarm = swarmOf({ pieceCount: 2, holdings: { a: [0], b: [1] } })
    swarm.ask('a')
    swarm.ask('a')
    swarm.ask('b')
    // b's piece has a free block, but a lacks that piece; a is busy, so no endgame either.
    expect(swarm.ask('a')).toBeUndefined()
  })

  it('asks a foreign peer for a 16 KiB block of a piece begun in large blocks', () => {
    const swarm = swarmOf({
      pieceCount: 1,
      holdings: { fast: [0], foreign: [0] },
      foreign: ['foreign'],
    })
    swarm.ask('fast')
    const help = swarm.ask('foreign')!
    expect([help.request.offset, help.request.length]).toEqual([LARGE_BLOCK_LENGTH, BLOCK_LENGTH])
  })

  describe('in the endgame', () => {
    /** One piece, its two large blocks asked of a and b; c is idle. */
    function endgame() {
      const swarm = swarmOf({ pieceCount: 1, holdings: { a: [0], b: [0], c: [0] } })
      const fromA = swarm.ask('a')!
      const fromB = swarm.ask('b')!
      expect(fromB.download).toBe(fromA.download)
      return { swarm, download: fromA.download, fromA, fromB }
    }

    it('gives a busy peer nothing once every block is asked for', () => {
      const { swarm } = endgame()
      expect(swarm.peer('a').inflight).toBeGreaterThan(0)
      expect(swarm.ask('a')).toBeUndefined()
      expect(swarm.ask('b')).toBeUndefined()
    })

    it('gives an idle peer one block already asked of another, one at a time', () => {
      const { swarm, fromA } = endgame()
      const duplicate = swarm.ask('c')!
      expect(duplicate.request.peer).toBe(swarm.peer('c'))
      expect([duplicate.request.offset, duplicate.request.length]).toEqual([
        fromA.request.offset,
        fromA.request.length,
      ])
      // Now it is busy with that block: nothing more until it answers.
      expect(swarm.ask('c')).toBeUndefined()
    })

    it('never duplicates a block twice', () => {
      const swarm = swarmOf({ pieceCount: 1, holdings: { a: [0], c: [0], d: [0] } })
      const fromA = swarm.ask('a')!
      swarm.ask('a')
      const fromC = swarm.ask('c')!
      const fromD = swarm.ask('d')!
      expect(fromC.request.offset).toBe(fromA.request.offset)
      // The first block is asked of a and c already; d takes the second.
      expect(fromD.request.offset).toBe(LARGE_BLOCK_LENGTH)
      const e = {
        name: 'e',
        pieces: pieceSet(1, [0]),
        assigned: new Set<number>(),
        blockLength: LARGE_BLOCK_LENGTH,
        inflight: 0,
      }
      expect(swarm.picker.next(e)).toBeUndefined()
    })

    it('never gives an idle peer a duplicate of its own request', () => {
      const swarm = swarmOf({ pieceCount: 1, holdings: { a: [0] } })
      swarm.ask('a')
      swarm.ask('a')
      // Whatever its byte count says, the only blocks outstanding are its own.
      swarm.peer('a').inflight = 0
      expect(swarm.picker.next(swarm.peer('a'))).toBeUndefined()
    })

    it('finishes the piece from whichever copy comes first, and cancels the other', () => {
      const { swarm, download, fromA, fromB } = endgame()
      const duplicate = swarm.ask('c')!
      expect(swarm.receive(download, fromB.request)).toEqual([])
      expect(swarm.receive(download, duplicate.request)).toEqual([fromA.request])
      expect(download.complete).toBe(true)
    })
  })

  describe('when a piece is in', () => {
    function downloaded() {
      const swarm = swarmOf({ pieceCount: 2, holdings: { a: [0, 1], b: [0, 1] }, seed: 3 })
      const first = swarm.ask('a')!
      const second = swarm.ask('a')!
      const help = swarm.ask('b')!
      const index = first.download.index
      expect(second.download.index).toBe(index)
      // b started the other piece: it is b's, a keeps to its own.
      expect(help.download.index).toBe(1 - index)
      swarm.receive(first.download, first.request)
      swarm.receive(second.download, second.request)
      expect(first.download.complete).toBe(true)
      return { swarm, download: first.download, index }
    }

    it('takes the piece off the downloads and off its peer once completed', () => {
      const { swarm, download, index } = downloaded()
      swarm.picker.completed(download, swarm.peers.values())
      expect(swarm.picker.downloads.has(index)).toBe(false)
      expect(swarm.peer('a').assigned.has(index)).toBe(false)
      // Its buffer stays with the download while the piece is checked.
      expect(swarm.pool.given).toEqual([])
    })

    it('does not start the piece again while it is being checked', () => {
      const { swarm, download, index } = downloaded()
      swarm.picker.completed(download, swarm.peers.values())
      expect(swarm.picker.rarestFor(swarm.peer('a').pieces)).toBe(-1)
      expect(swarm.picker.rarestUnclaimed()).toBe(-1)
      // a is idle and holds the other piece: it may help with b's, never fetch the piece
      // being checked.
      const next = swarm.ask('a')
      expect(next?.download.index).toBe(1 - index)
    })

    it('returns the buffer to the pool once settled, and does not start a piece kept', () => {
      const { swarm, download, index } = downloaded()
      swarm.picker.completed(download, swarm.peers.values())
      swarm.have.add(index)
      swarm.picker.settled(download)
      expect(swarm.pool.given).toHaveLength(1)
      expect(swarm.pool.given[0]).toBe(download.data)
      expect(swarm.picker.rarestFor(swarm.peer('a').pieces)).toBe(-1)
    })

    it('starts a rejected piece again once settled', () => {
      const { swarm, download, index } = downloaded()
      swarm.picker.completed(download, swarm.peers.values())
      swarm.picker.settled(download)
      expect(swarm.pool.given).toHaveLength(1)
      expect(swarm.pool.given[0]).toBe(download.data)
      const again = swarm.ask('a')!
      expect(again.download.index).toBe(index)
      expect(again.download).not.toBe(download)
      expect(again.request.offset).toBe(0)
    })
  })

  it('takes each piece’s buffer from the pool at the piece’s own length', () => {
    const lastPieceLength = BLOCK_LENGTH + 100
    const swarm = swarmOf({ pieceCount: 2, lastPieceLength, holdings: { a: [1], b: [0] } })
    const last = swarm.ask('a')!
    expect(last.request.length).toBe(lastPieceLength)
    const first = swarm.ask('b')!
    expect(swarm.pool.taken.map((buffer) => buffer.length)).toEqual([lastPieceLength, PIECE_LENGTH])
    expect(last.download.data).toBe(swarm.pool.taken[0])
    expect(first.download.data).toBe(swarm.pool.taken[1])
  })

  it('prefers a piece that became rare when its other holders left', () => {
    const swarm = swarmOf({ pieceCount: 2, holdings: { asker: [0, 1], x: [0], y: [1], z: [0] } })
    // Piece 0 has three copies, piece 1 two: 1 is rarer.
    expect(swarm.picker.rarestFor(swarm.peer('asker').pieces)).toBe(1)
    for (const name of ['x', 'z']) {
      swarm.availability.removeAll(swarm.peer(name).pieces)
      swarm.peers.delete(name)
    }
    // Now piece 0 has one copy, the asker's.
    expect(swarm.picker.rarestFor(swarm.peer('asker').pieces)).toBe(0)
  })

  describe('for the web seed', () => {
    it('picks the rarest piece we lack, even one no peer holds', () => {
      const swarm = swarmOf({
        pieceCount: 4,
        have: [0],
        holdings: { a: [0, 1, 2], b: [1, 2], c: [2] },
      })
      // Copies: 1 ×2, 2 ×3, 3 ×0: piece 3 is in no peer's hands.
      expect(swarm.picker.rarestUnclaimed()).toBe(3)
    })

    it('hides a claimed piece from peers and from the web seed until released', () => {
      const swarm = swarmOf({ pieceCount: 2, have: [0], holdings: { a: [1] } })
      expect(swarm.picker.rarestUnclaimed()).toBe(1)
      swarm.picker.claim(1)
      expect(swarm.picker.rarestUnclaimed()).toBe(-1)
      expect(swarm.ask('a')).toBeUndefined()
      swarm.picker.release(1)
      expect(swarm.picker.rarestUnclaimed()).toBe(1)
      expect(swarm.ask('a')?.download.index).toBe(1)
    })

    it('does not pick a piece a peer is fetching', () => {
      const swarm = swarmOf({ pieceCount: 2, holdings: { a: [0, 1] } })
      const index = swarm.ask('a')!.download.index
      expect(swarm.picker.rarestUnclaimed()).toBe(1 - index)
    })

    it('has nothing to pick once every piece is held', () => {
      const swarm = swarmOf({ pieceCount: 3, have: [0, 1, 2], holdings: { a: [0, 1, 2] } })
      expect(swarm.picker.rarestUnclaimed()).toBe(-1)
      expect(swarm.ask('a')).toBeUndefined()
    })
  })
})
