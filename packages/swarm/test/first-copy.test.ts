import { seededRandom } from '@imageswarm/core'
import { describe, expect, it } from 'vitest'
import {
  type FirstCopyPeer,
  FirstCopySeeding,
  MAX_SERVER_COPIES,
  type PieceShare,
} from '../src/first-copy.js'
import { PieceAvailability, type Random } from '../src/piece-picker.js'
import { PieceSet } from '../src/piece-set.js'

// The image server's side of first-copy seeding alone: clients are plain objects, an
// announcement is a call the test records, and ties are broken by a seeded generator.

const PIECE_LENGTH = 256 * 1024

interface FakeClient extends FirstCopyPeer {
  readonly name: string
}

/** An image server of `pieceCount` pieces and the clients connected to it. */
function imageServer(pieceCount: number, seed = 1, share?: PieceShare) {
  const availability = new PieceAvailability(pieceCount)
  const clients = new Set<FakeClient>()
  /** Each piece's announcements, by client name, in order. */
  const toldTo = new Map<number, string[]>()
  const told: string[] = []
  /** Rules broken at an announcement, noted as they happen; tests expect none. */
  const violations: string[] = []
  const seeding = new FirstCopySeeding<FakeClient>({
    pieceLength: PIECE_LENGTH,
    availability,
    random: seededRandom(seed),
    ...(share ? { share: () => share } : {}),
    announce: (client, index) => {
      told.push(`${client.name}:${index}`)
      toldTo.set(index, [...(toldTo.get(index) ?? []), client.name])
      if (client.pieces.has(index)) violations.push(`${client.name} told of ${index} it holds`)
      // The announcement is counted already: holders and announcements, this one included.
      const copies = availability.of(index) + seeding.announced(index)
      if (copies > MAX_SERVER_COPIES) violations.push(`${index} has ${copies} copies`)
    },
  })
  const server = {
    availability,
    seeding,
    clients,
    told,
    toldTo,
    violations,
    /** A client connects holding `pieces` (its bitfield): the server reveals pieces to it. */
    connect(name: string, pieces: number[] = [], uploadRate = 0): FakeClient {
      const client: FakeClient = { name, pieces: new PieceSet(pieceCount), revealed: new Set() }
      for (const index of pieces) {
        client.pieces.add(index)
        availability.add(index)
      }
      clients.add(client)
      seeding.reveal(client, uploadRate)
      return client
    },
    /** The client reports a piece (a have), from the server or another client. */
    gain(client: FakeClient, index: number, uploadRate = 0): boolean {
      if (!client.pieces.add(index)) return false
      availability.add(index)
      return seeding.confirmed(client, index, uploadRate)
    },
    leave(client: FakeClient): void {
      clients.delete(client)
      availability.removeAll(client.pieces)
      seeding.left(client)
    },
    /** One round: every client fetches what it was told of from the server and reports it. */
    serveRound(): void {
      for (const client of clients) {
        for (const index of [...client.revealed]) server.gain(client, index)
      }
    },
    /** One round of trading: every client copies one piece it lacks from another client. */
    tradeRound(random: Random): void {
      for (const client of clients) {
        const offered: number[] = []
        for (const other of clients) {
          if (other === client) continue
          for (let index = 0; index < pieceCount; index++) {
            if (other.pieces.has(index) && !client.pieces.has(index)) offered.push(index)
          }
        }
        const index = offered[Math.floor(random() * offered.length)]
        if (index !== undefined) server.gain(client, index)
      }
    },
  }
  return server
}

function range(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index)
}

describe('FirstCopySeeding', () => {
  it('tells each piece to two clients at most, and every piece to someone, when clients only fetch from the server', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const server = imageServer(24, seed)
      for (const name of ['c1', 'c2', 'c3', 'c4']) server.connect(name)
      for (let round = 0; round < 40; round++) server.serveRound()
      expect(server.violations).toEqual([])
      // With no trading, every piece leaves the server exactly twice, to two clients.
      for (const index of range(24)) {
        const clients = server.toldTo.get(index) ?? []
        expect(clients).toHaveLength(MAX_SERVER_COPIES)
        expect(new Set(clients).size).toBe(MAX_SERVER_COPIES)
      }
      // Nothing is left announced and unconfirmed: every client did its rounds.
      expect(range(24).map((index) => server.seeding.announced(index))).toEqual(range(24).fill(0))
    }
  })

  it('gets every piece to every client, sending each at most twice, when clients trade', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const server = imageServer(24, seed)
      const trade = seededRandom(seed + 1000)
      const clients = ['c1', 'c2', 'c3', 'c4'].map((name) => server.connect(name))
      let rounds = 0
      while (!clients.every((client) => client.pieces.complete)) {
        server.serveRound()
        server.tradeRound(trade)
        rounds++
        expect(rounds).toBeLessThan(100)
      }
      expect(server.violations).toEqual([])
      for (const index of range(24)) {
        const told = server.toldTo.get(index) ?? []
        expect(told.length).toBeGreaterThanOrEqual(1)
        expect(told.length).toBeLessThanOrEqual(MAX_SERVER_COPIES)
      }
      // The server sent between one and two copies of the archive.
      expect(server.told.length).toBeGreaterThanOrEqual(24)
      expect(server.told.length).toBeLessThanOrEqual(48)
    }
  })

  it('tells the first clients of pieces nobody has yet, each a different one', () => {
    const server = imageServer(24, 7)
    const clients = ['c1', 'c2', 'c3', 'c4'].map((name) => server.connect(name))
    for (const client of clients) expect(client.revealed.size).toBe(3)
    const pieces = clients.flatMap((client) => [...client.revealed])
    expect(new Set(pieces).size).toBe(12)
    for (const index of pieces) expect(server.seeding.announced(index)).toBe(1)
  })

  it('tells a client of the pieces fewest clients hold or were told of', () => {
    const server = imageServer(8)
    // Copies among other clients, as their bitfields counted them.
    const copies = [1, 1, 0, 1, 0, 2, 1, 0]
    for (const [index, count] of copies.entries()) {
      for (let n = 0; n < count; n++) server.availability.add(index)
    }
    const first = server.connect('first')
    expect([...first.revealed].sort()).toEqual([2, 4, 7])
    // Now every piece but 5 has one copy or announcement: the next client is told of three
    // of those, never of piece 5.
    const second = server.connect('second')
    expect(second.revealed.size).toBe(3)
    expect(second.revealed.has(5)).toBe(false)
    expect(server.violations).toEqual([])
  })

  it('never tells a client of a piece it already holds', () => {
    const server = imageServer(24)
    const client = server.connect('c1', range(21))
    expect([...client.revealed].sort()).toEqual([21, 22, 23])
    const full = server.connect('c2', range(24))
    expect(full.revealed.size).toBe(0)
    expect(server.violations).toEqual([])
  })

  it('never tells anyone of a piece two clients got from each other', () => {
    const server = imageServer(6)
    const a = server.connect('a', [0])
    const b = server.connect('b', [0])
    const newcomer = server.connect('newcomer')
    expect(newcomer.revealed.has(0)).toBe(false)
    expect(a.revealed.has(0) || b.revealed.has(0)).toBe(false)
    expect(server.violations).toEqual([])
  })

  it('tells the client of the next piece when it reports one it was told of', () => {
    const server = imageServer(24)
    const client = server.connect('c1')
    const [first] = [...client.revealed]
    const before = server.told.length
    expect(server.gain(client, first!)).toBe(true)
    expect(client.revealed.has(first!)).toBe(false)
    expect(client.revealed.size).toBe(3)
    expect(server.told.length).toBe(before + 1)
    expect(server.seeding.announced(first!)).toBe(0)
  })

  it('tells nothing new when the client reports a piece it got from another client', () => {
    const server = imageServer(24)
    const client = server.connect('c1')
    const traded = range(24).find((index) => !client.revealed.has(index))!
    const before = server.told.length
    expect(server.gain(client, traded)).toBe(false)
    expect(server.told.length).toBe(before)
    expect(client.revealed.size).toBe(3)
  })

  it('frees the announcements of a client that leaves', () => {
    const server = imageServer(3)
    const a = server.connect('a')
    const b = server.connect('b')
    expect([...a.revealed].sort()).toEqual([0, 1, 2])
    expect([...b.revealed].sort()).toEqual([0, 1, 2])
    // Each piece is told to two clients: a third hears of none.
    const c = server.connect('c')
    expect(c.revealed.size).toBe(0)
    server.leave(a)
    expect(a.revealed.size).toBe(0)
    expect(range(3).map((index) => server.seeding.announced(index))).toEqual([1, 1, 1])
    server.seeding.reveal(c, 0)
    expect([...c.revealed].sort()).toEqual([0, 1, 2])
    expect(server.violations).toEqual([])
  })

  it('tells others of a piece again once the clients holding it left', () => {
    const server = imageServer(3)
    const a = server.connect('a', [0])
    const b = server.connect('b', [0])
    const c = server.connect('c')
    expect(c.revealed.has(0)).toBe(false)
    server.leave(a)
    server.leave(b)
    server.seeding.reveal(c, 0)
    expect(c.revealed.has(0)).toBe(true)
  })

  describe('reveal-ahead', () => {
    function revealedAt(uploadRate: number): number {
      const server = imageServer(64)
      return server.connect('c1', [], uploadRate).revealed.size
    }

    it('is three pieces for a client it sends nothing to yet', () => {
      expect(revealedAt(0)).toBe(3)
    })

    it('grows by a piece for each piece a second the client takes', () => {
      expect(revealedAt(PIECE_LENGTH - 1)).toBe(3)
      expect(revealedAt(PIECE_LENGTH)).toBe(4)
      expect(revealedAt(1.99 * PIECE_LENGTH)).toBe(4)
      expect(revealedAt(10 * PIECE_LENGTH)).toBe(13)
      expect(revealedAt(29 * PIECE_LENGTH)).toBe(32)
    })

    it('stops at 32 pieces however fast the client takes them', () => {
      expect(revealedAt(30 * PIECE_LENGTH)).toBe(32)
      expect(revealedAt(1000 * PIECE_LENGTH)).toBe(32)
    })

    it('tops up to the rate the client takes pieces at when it reports one', () => {
      const server = imageServer(64)
      const client = server.connect('c1')
      expect(client.revealed.size).toBe(3)
      const [first] = [...client.revealed]
      server.gain(client, first!, 10 * PIECE_LENGTH)
      expect(client.revealed.size).toBe(13)
      // A client that slows down keeps what it was told of; it is not taken back.
      const [second] = [...client.revealed]
      server.gain(client, second!, 0)
      expect(client.revealed.size).toBe(12)
    })

    it('is limited by the pieces left to tell of', () => {
      const server = imageServer(24)
      const client = server.connect('c1', range(20), 32 * PIECE_LENGTH)
      expect([...client.revealed].sort()).toEqual([20, 21, 22, 23])
    })
  })

  it('with another server seeding, tells its own share of the pieces first', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const server = imageServer(16, seed, { position: 1, count: 2 })
      for (const name of ['c1', 'c2']) server.connect(name)
      // Three pieces ahead for each client: all of them this server's (odd) pieces.
      expect(server.told).toHaveLength(6)
      for (const told of server.told) expect(Number(told.split(':')[1]) % 2).toBe(1)
    }
  })

  it("sends each of its own pieces once and none of the other server's, until that one is gone", () => {
    for (let seed = 1; seed <= 10; seed++) {
      const share: PieceShare = { position: 0, count: 2 }
      const server = imageServer(16, seed, share)
      const clients = ['c1', 'c2', 'c3'].map((name) => server.connect(name))
      for (let round = 0; round < 40; round++) server.serveRound()
      expect(server.violations).toEqual([])
      for (const index of range(16)) {
        expect(server.toldTo.get(index)?.length ?? 0, `piece ${index}`).toBe(
          index % 2 === 0 ? 1 : 0,
        )
      }
      // The other server is found dead: this one is the only one left, and offers the rest.
      share.count = 1
      for (const client of clients) server.seeding.reveal(client, 0)
      for (let round = 0; round < 40; round++) server.serveRound()
      for (const index of range(16)) {
        expect(server.toldTo.get(index)?.length ?? 0, `piece ${index}`).toBeGreaterThan(0)
      }
    }
  })
})
