import { createHash, type Hash } from 'node:crypto'

/** The length of one piece hash: BitTorrent v1 pieces are hashed with SHA-1. */
export const PIECE_HASH_BYTES = 20

/**
 * BitTorrent v1 piece hashes (the info dictionary's `pieces`) of a byte stream fed in
 * chunks of any size: the SHA-1 of every `pieceLength` bytes, the last piece shorter.
 *
 * @example
 *   const pieces = new PieceHasher(1 << 20)
 *   pieces.update(chunk) // as often as needed
 *   const hashes = pieces.digest() // 20 bytes a piece
 */
export class PieceHasher {
  readonly #pieceLength: number
  readonly #hashes: Buffer[] = []
  #piece: Hash = createHash('sha1')
  #pieceFill = 0

  constructor(pieceLength: number) {
    if (!Number.isInteger(pieceLength) || pieceLength <= 0) {
      throw new RangeError(`piece length must be a positive integer, got ${pieceLength}`)
    }
    this.#pieceLength = pieceLength
  }

  update(chunk: Uint8Array): void {
    let at = 0
    while (at < chunk.length) {
      const take = Math.min(chunk.length - at, this.#pieceLength - this.#pieceFill)
      this.#piece.update(chunk.subarray(at, at + take))
      this.#pieceFill += take
      at += take
      if (this.#pieceFill === this.#pieceLength) {
        this.#hashes.push(this.#piece.digest())
        this.#piece = createHash('sha1')
        this.#pieceFill = 0
      }
    }
  }

  /** The concatenated piece hashes; the hasher is spent afterwards. */
  digest(): Buffer {
    if (this.#pieceFill > 0) this.#hashes.push(this.#piece.digest())
    this.#pieceFill = 0
    return Buffer.concat(this.#hashes)
  }
}
