import type { BigIntStats } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { errnoOf, ImageSwarmError, PieceHasher } from '@imageswarm/core'
import { describeChange, hashHandle, isAbsent, openNoFollow, type ServedFile } from './held-file.js'

/**
 * A published archive, held open from the moment it was checked against its manifest
 * until the server stops: every byte the server hands out, over HTTP or BitTorrent, is
 * read from this descriptor, never from the path again. A path replaced afterwards (by a
 * symlink to another file, by another archive renamed over it) changes nothing served;
 * a file rewritten in place is noticed by `check()` and refused.
 *
 * Opened with O_NOFOLLOW: a symlink at the archive's path is never followed, whatever it
 * points at.
 */
export class PublishedArchive implements ServedFile {
  readonly path: string
  readonly size: number
  readonly sha256: string
  readonly #handle: FileHandle
  /** The file as it was when it was hashed (or just packed). */
  readonly #identity: BigIntStats
  #closed = false

  private constructor(path: string, handle: FileHandle, identity: BigIntStats, sha256: string) {
    this.path = path
    this.#handle = handle
    this.#identity = identity
    this.size = Number(identity.size)
    this.sha256 = sha256
  }

  /**
   * Opens an existing archive and hashes it through the same descriptor; undefined when
   * there is none, it is not a regular file (a symlink included), or its size or sha256
   * differ from `expected`: the caller packs again.
   */
  static async openVerified(
    path: string,
    expected: { size: number; sha256: string },
  ): Promise<PublishedArchive | undefined> {
    // Absent, or a symlink at the path: packing again renames a real archive over it.
    const opened = await openRegularFile(path)
    if (opened === undefined) return undefined
    const { handle, identity: before } = opened
    try {
      if (before.size !== BigInt(expected.size)) {
        await handle.close()
        return undefined
      }
      const sha256 = await hashHandle(handle, expected.size)
      const after = await handle.stat({ bigint: true })
      if (sha256 !== expected.sha256 || describeChange(before, after) !== undefined) {
        await handle.close()
        return undefined
      }
      return new PublishedArchive(path, handle, before, sha256)
    } catch (err) {
      await handle.close()
      throw err
    }
  }

  /**
   * Opens the archive packArchive has just written, hashed and renamed into place, and
   * checks it is a regular file (not a link) of the packed size. The state directories are
   * locked, so no other imageswarm process writes there; anything else would have to swap
   * a file of exactly that size in between the rename and this open.
   */
  static async openPacked(
    path: string,
    packed: { size: number; sha256: string },
  ): Promise<PublishedArchive> {
    const handle = await openNoFollow(path).catch((err: unknown) => {
      throw replacedAfterPacking(path, `cannot open it: ${errnoOf(err) ?? String(err)}`, err)
    })
    const identity = await handle.stat({ bigint: true })
    if (!identity.isFile() || identity.size !== BigInt(packed.size)) {
      await handle.close()
      throw replacedAfterPacking(path, 'it is not the file just packed')
    }
    return new PublishedArchive(path, handle, identity, packed.sha256)
  }

  /**
   * Opens a tarball imageswarm did not pack (served as it is: `publishImage` without an image
   * root) and computes, in one read through the descriptor that is then served from, its
   * sha256 and the torrent's piece hashes. Undefined when there is no regular file at `path`
   * (a symlink is not followed).
   */
  static async openHashed(
    path: string,
    pieceLength: number,
  ): Promise<{ archive: PublishedArchive; pieces: Buffer } | undefined> {
    const opened = await openRegularFile(path)
    if (opened === undefined) return undefined
    const { handle, identity: before } = opened
    try {
      const pieces = new PieceHasher(pieceLength)
      const sha256 = await hashHandle(handle, Number(before.size), (chunk) => pieces.update(chunk))
      const after = await handle.stat({ bigint: true })
      // A file that became shorter changed its size: describeChange says so.
      const change = describeChange(before, after)
      if (change !== undefined) {
        throw new ImageSwarmError(
          'E_SERVER_ARCHIVE_CHANGED',
          `${path} changed while it was read: ${change}`,
          {
            operation: 'publish tarball',
            path,
            hint: 'stop whatever writes it, then publish again',
          },
        )
      }
      return {
        archive: new PublishedArchive(path, handle, before, sha256),
        pieces: pieces.digest(),
      }
    } catch (err) {
      await handle.close()
      throw err
    }
  }

  /** A strong validator: the archive's content hash. */
  get etag(): string {
    return `"${this.sha256}"`
  }

  get lastModified(): Date {
    return new Date(Number(this.#identity.mtimeMs))
  }

  /**
   * A path that opens this very file (Linux): how the BitTorrent seeder, which opens
   * archives by path, reads the same file as the web seed.
   */
  get descriptorPath(): string {
    return `/proc/self/fd/${this.#handle.fd}`
  }

  /**
   * Undefined while the held file is as it was hashed; else `E_SERVER_ARCHIVE_CHANGED`
   * saying what changed. A file rewritten in place changes its mtime or size, and its
   * ctime even when the mtime is set back. The ctime also moves when the file is unlinked
   * or renamed over (its link count changes): that leaves the held bytes intact, so a
   * ctime change that comes with a link count change is not counted.
   */
  async check(): Promise<ImageSwarmError | undefined> {
    if (this.#closed) return archiveGone(this.path, 'closed')
    const now = await this.#handle.stat({ bigint: true })
    const change = describeChange(this.#identity, now)
    if (change === undefined) return undefined
    return new ImageSwarmError(
      'E_SERVER_ARCHIVE_CHANGED',
      `archive ${this.path} changed since it was published: ${change}`,
      {
        operation: 'serve archive',
        path: this.path,
        hint: 'its bytes may no longer match the manifest and .torrent: republish the image (restart imageswarm serve: it packs the image again, the archive no longer matching its manifest)',
      },
    )
  }

  /** Reads `length` bytes at `position`; fails if the file is shorter than that now. */
  async read(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length)
    let filled = 0
    while (filled < length) {
      const { bytesRead } = await this.#handle.read(
        buffer,
        filled,
        length - filled,
        position + filled,
      )
      if (bytesRead === 0) throw archiveGone(this.path, `ends before byte ${position + length}`)
      filled += bytesRead
    }
    return buffer
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#handle.close()
  }
}

function archiveGone(path: string, why: string): ImageSwarmError {
  return new ImageSwarmError('E_SERVER_ARCHIVE_CHANGED', `archive ${path}: ${why}`, {
    operation: 'serve archive',
    path,
    hint: 'republish the image (restart imageswarm serve)',
  })
}

function replacedAfterPacking(path: string, why: string, cause?: unknown): ImageSwarmError {
  return new ImageSwarmError(
    'E_PACK_FAILED',
    `archive ${path} changed right after packing: ${why}`,
    {
      operation: 'publish image',
      path,
      hint: 'something other than imageswarm writes into --tarballs-dir: stop it and publish again',
      ...(cause === undefined ? {} : { cause }),
    },
  )
}

/**
 * The regular file at `path`, opened without following a symlink, and its identity;
 * undefined where there is none (absent, a symlink, not a regular file).
 */
async function openRegularFile(
  path: string,
): Promise<{ handle: FileHandle; identity: BigIntStats } | undefined> {
  const handle = await openNoFollow(path).catch((err: unknown) => {
    if (isAbsent(err)) return undefined
    throw err
  })
  if (handle === undefined) return undefined
  try {
    const identity = await handle.stat({ bigint: true })
    if (identity.isFile()) return { handle, identity }
  } catch (err) {
    await handle.close()
    throw err
  }
  await handle.close()
  return undefined
}
