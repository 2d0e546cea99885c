/** What the engine needs of a single-file torrent (parse-torrent's result fits it). */
export interface SwarmTorrent {
  /** 40 hex digits. */
  infoHash: string
  name: string
  /** The archive's size in bytes. */
  length: number
  pieceLength: number
  lastPieceLength: number
  /** Each piece's SHA-1, as hex. */
  pieces: string[]
  announce: string[]
  /** BEP 19 web seeds: URLs of the whole archive. */
  urlList: string[]
}

/** The unit of a request on the wire: 16 KiB, what every client asks for and accepts. */
export const BLOCK_LENGTH = 16 * 1024

/** The block imageswarm nodes ask each other for: a request, a message, a callback and a
 * write per 128 KiB instead of per 16 KiB. Per-block work, not per-byte work, is what
 * limits a node on a fast link; foreign clients are still asked for 16 KiB. */
export const LARGE_BLOCK_LENGTH = 128 * 1024

/** Requests larger than this are refused, as other clients do (BEP 3 suggests 2^17). */
export const MAX_REQUEST_LENGTH = 128 * 1024

export function pieceLengthOf(torrent: SwarmTorrent, index: number): number {
  return index === torrent.pieces.length - 1 ? torrent.lastPieceLength : torrent.pieceLength
}

export function blocksIn(pieceLength: number, blockLength: number): number {
  return Math.ceil(pieceLength / blockLength)
}
