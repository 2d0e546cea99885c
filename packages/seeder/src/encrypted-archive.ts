import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { rename, unlink } from 'node:fs/promises'
import { pipeline } from 'node:stream/promises'
import {
  type ArchiveBinding,
  type ArchiveKey,
  archiveKeyFromBytes,
  createEncryptStream,
  ENCRYPTION_SCHEME,
  type GroupKey,
  type ImageManifest,
  PieceHasher,
  unwrapArchiveKey,
  wrapArchiveKey,
} from '@imageswarm/core'

/** The published (encrypted) archive's file name: the plaintext's, with `.enc`. */
export function encryptedArchiveFileName(plaintextFile: string): string {
  return `${plaintextFile}.enc`
}

export type ManifestEncryption = NonNullable<ImageManifest['encryption']>

/** The ciphertext as written: what the manifest and the torrent describe. */
export interface SealedArchive {
  size: number
  sha256: string
  pieces: Buffer
}

/**
 * Encrypts a packed archive into `output` and hashes the ciphertext (SHA-256 and the
 * torrent's pieces) in the same pass: the torrent is made from what seeders and peers hold.
 * Written beside `output` and renamed into place when whole.
 */
export async function sealArchive(
  input: string,
  output: string,
  key: ArchiveKey,
  binding: ArchiveBinding,
  pieceLength: number,
): Promise<SealedArchive> {
  const temporary = `${output}.partial-${process.pid}-${randomBytes(4).toString('hex')}`
  const hash = createHash('sha256')
  const pieces = new PieceHasher(pieceLength)
  let size = 0
  try {
    await pipeline(
      createReadStream(input, { highWaterMark: 1 << 20 }),
      createEncryptStream(key, binding),
      async function* measure(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          hash.update(chunk)
          pieces.update(chunk)
          size += chunk.length
          yield chunk
        }
      },
      createWriteStream(temporary, { flags: 'wx', mode: 0o644 }),
    )
    await rename(temporary, output)
  } catch (err) {
    await unlink(temporary).catch(() => undefined)
    throw err
  }
  return { size, sha256: hash.digest('hex'), pieces: pieces.digest() }
}

/**
 * How a previous version's wrappings compare with the current group keys: `same` (every
 * group and key as before), `added` (only groups added: the old archive key can be wrapped
 * for them too), `changed` (a group revoked or its key replaced: its nodes may hold the old
 * archive key, so the next version needs a new one and a new ciphertext).
 */
export function compareWrappings(
  previous: ManifestEncryption,
  groupKeys: readonly GroupKey[],
): 'same' | 'added' | 'changed' {
  const current = new Map(groupKeys.map((key) => [key.group, key.keyId]))
  for (const wrapped of previous.wrappedKeys) {
    if (current.get(wrapped.group) !== wrapped.groupKeyId) return 'changed'
  }
  return current.size === previous.wrappedKeys.length ? 'same' : 'added'
}

/** The manifest's `encryption` for a new archive key, wrapped for every group. */
export function encryptionOf(
  archiveKey: ArchiveKey,
  plaintext: { size: number; sha256: string },
  groupKeys: readonly GroupKey[],
): ManifestEncryption {
  return {
    scheme: ENCRYPTION_SCHEME,
    archiveKeyId: archiveKey.keyId,
    plaintextSize: plaintext.size,
    plaintextSha256: plaintext.sha256,
    wrappedKeys: groupKeys.map((groupKey) => wrapArchiveKey(archiveKey, groupKey)),
  }
}

/**
 * The previous version's encryption with the groups added since wrapped too: the archive
 * key is unwrapped with a group key that already had it (the server keeps no archive keys).
 */
export function extendWrappings(
  previous: ManifestEncryption,
  groupKeys: readonly GroupKey[],
  source: string,
): ManifestEncryption {
  const known = groupKeys.find((key) =>
    previous.wrappedKeys.some((w) => w.group === key.group && w.groupKeyId === key.keyId),
  )
  if (!known) throw new Error(`no current group key opens the archive key of ${source}`)
  const archiveKey = unwrapArchiveKey(previous.wrappedKeys, previous.archiveKeyId, known, source)
  const have = new Set(previous.wrappedKeys.map((w) => w.group))
  return {
    ...previous,
    wrappedKeys: [
      ...previous.wrappedKeys,
      ...groupKeys
        .filter((key) => !have.has(key.group))
        .map((key) => wrapArchiveKey(archiveKeyFromBytes(archiveKey.key), key)),
    ],
  }
}
