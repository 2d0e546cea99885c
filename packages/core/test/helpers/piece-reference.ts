import { createHash } from 'node:crypto'

/** The SHA-1 of every `pieceLength` slice of `data`, each hashed on its own, concatenated. */
export function referencePieceHashes(data: Buffer, pieceLength: number): Buffer {
  const hashes: Buffer[] = []
  for (let at = 0; at < data.length; at += pieceLength) {
    hashes.push(
      createHash('sha1')
        .update(data.subarray(at, at + pieceLength))
        .digest(),
    )
  }
  return Buffer.concat(hashes)
}
