import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { PIECE_HASH_BYTES, PieceHasher } from '../src/index.js'
import { referencePieceHashes } from './helpers/piece-reference.js'

describe('PieceHasher', () => {
  const pieceLength = 16384
  const data = randomBytes(5 * pieceLength + 1234)

  it('hashes pieces across chunks of any size: smaller, larger and straddling a piece', () => {
    for (const chunkSize of [1000, pieceLength, 3 * pieceLength + 7, data.length]) {
      const pieces = new PieceHasher(pieceLength)
      for (let at = 0; at < data.length; at += chunkSize) {
        pieces.update(data.subarray(at, at + chunkSize))
      }
      const hashes = pieces.digest()
      expect(hashes.length).toBe(6 * PIECE_HASH_BYTES)
      expect(hashes.equals(referencePieceHashes(data, pieceLength))).toBe(true)
    }
  })

  it('ends on a piece boundary without an empty last piece, and hashes nothing to nothing', () => {
    const exact = data.subarray(0, 2 * pieceLength)
    const pieces = new PieceHasher(pieceLength)
    pieces.update(exact)
    expect(pieces.digest().equals(referencePieceHashes(exact, pieceLength))).toBe(true)
    expect(new PieceHasher(pieceLength).digest().length).toBe(0)
  })

  it('refuses a piece length that is not a positive integer', () => {
    expect(() => new PieceHasher(0)).toThrow(RangeError)
    expect(() => new PieceHasher(1.5)).toThrow(RangeError)
  })
})
