import { createHash } from 'node:crypto'
import { type BigIntStats, constants } from 'node:fs'
import { type FileHandle, lstat, open } from 'node:fs/promises'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'

/** Bytes read at a time when hashing: large sequential reads run at disk speed. */
const HASH_READ_BYTES = 1 << 20

/** What the web seed needs of a file it serves by range (see `serveFile`). */
export interface ServedFile {
  readonly size: number
  /** A strong validator, quoted: `"<sha256>"`. */
  readonly etag: string
  readonly lastModified: Date
  /** Undefined while the file is as it was opened; else what changed. */
  check(): Promise<ImageSwarmError | undefined>
  read(position: number, length: number): Promise<Buffer>
}

/** What a held file is, for its errors: `boot file`, `override archive`. */
export interface HeldFileKind {
  what: string
  /** What to do when the file was rewritten in place. */
  changedHint: string
}

/**
 * A file the server hands out (a boot file, a packed override), held open from the moment
 * it was hashed: every byte served is read from this descriptor, never from the path
 * again, as with a published archive (`PublishedArchive`, which the same helpers below
 * serve). Opened with O_NOFOLLOW: a symlink at the path is refused, whatever it points
 * at. A file rewritten in place is noticed by `check()`; a path that now names another
 * file, by `replacedAtPath()`, so the owner can open the new one.
 *
 * Transfers `acquire()` it; `retire()` closes it once the last one has released it.
 */
export class HeldFile implements ServedFile {
  readonly path: string
  readonly size: number
  readonly sha256: string
  readonly #handle: FileHandle
  readonly #identity: BigIntStats
  readonly #kind: HeldFileKind
  #users = 0
  #retired = false
  #closed = false

  private constructor(
    path: string,
    handle: FileHandle,
    identity: BigIntStats,
    sha256: string,
    kind: HeldFileKind,
  ) {
    this.path = path
    this.#handle = handle
    this.#identity = identity
    this.size = Number(identity.size)
    this.sha256 = sha256
    this.#kind = kind
  }

  /**
   * Opens a regular file and hashes it through the same descriptor; `sha256`, when the
   * caller has just written the file and hashed it as it wrote (the packer), is taken as
   * it is. Throws ENOENT, ELOOP (a symlink) or E_SERVER_ARCHIVE_CHANGED (not a regular
   * file, or it changed while it was hashed) for the caller to report.
   */
  static async open(path: string, kind: HeldFileKind, sha256?: string): Promise<HeldFile> {
    const handle = await openNoFollow(path)
    try {
      const before = await handle.stat({ bigint: true })
      if (!before.isFile()) {
        throw new ImageSwarmError(
          'E_SERVER_ARCHIVE_CHANGED',
          `${kind.what} ${path} is not a regular file`,
          {
            operation: `open ${kind.what}`,
            path,
            hint: kind.changedHint,
          },
        )
      }
      const digest = sha256 ?? (await hashHandle(handle, Number(before.size)))
      const after = await handle.stat({ bigint: true })
      const change = describeChange(before, after)
      if (change !== undefined) {
        throw new ImageSwarmError(
          'E_SERVER_ARCHIVE_CHANGED',
          `${kind.what} ${path} changed while it was read: ${change}`,
          {
            operation: `open ${kind.what}`,
            path,
            hint: kind.changedHint,
          },
        )
      }
      return new HeldFile(path, handle, before, digest, kind)
    } catch (err) {
      await handle.close()
      throw err
    }
  }

  get etag(): string {
    return `"${this.sha256}"`
  }

  get lastModified(): Date {
    return new Date(Number(this.#identity.mtimeMs))
  }

  async check(): Promise<ImageSwarmError | undefined> {
    const change = this.#closed
      ? 'it was closed'
      : describeChange(this.#identity, await this.#handle.stat({ bigint: true }))
    if (change === undefined) return undefined
    return new ImageSwarmError(
      'E_SERVER_ARCHIVE_CHANGED',
      `${this.#kind.what} ${this.path} changed since it was opened: ${change}`,
      {
        operation: `serve ${this.#kind.what}`,
        path: this.path,
        hint: this.#kind.changedHint,
      },
    )
  }

  /**
   * True when the path no longer names the file held (another file was renamed over it,
   * or it was removed): the owner may open the new one. A file rewritten in place is
   * still the one held: see `check()`.
   */
  async replacedAtPath(): Promise<boolean> {
    const now = await lstat(this.path, { bigint: true }).catch(() => undefined)
    return now === undefined || now.ino !== this.#identity.ino || now.dev !== this.#identity.dev
  }

  read(position: number, length: number): Promise<Buffer> {
    return readFully(this.#handle, position, length, this.path)
  }

  /** Marks a transfer as using the file; call the returned function when it is done. */
  acquire(): () => void {
    this.#users++
    let released = false
    return () => {
      if (released) return
      released = true
      this.#users--
      if (this.#retired && this.#users === 0) void this.close()
    }
  }

  /** No new transfer will use it: closed once the ones under way are done. */
  retire(): void {
    this.#retired = true
    if (this.#users === 0) void this.close()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#handle.close()
  }
}

export function openNoFollow(path: string): Promise<FileHandle> {
  return open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
}

export async function hashHandle(
  handle: FileHandle,
  size: number,
  /** Also handed each chunk as it is read (a torrent's piece hashes, in the same pass). */
  onChunk?: (chunk: Buffer) => void,
): Promise<string> {
  const hash = createHash('sha256')
  const buffer = Buffer.allocUnsafe(HASH_READ_BYTES)
  let position = 0
  while (position < size) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position)
    if (bytesRead === 0) break
    const chunk = buffer.subarray(0, bytesRead)
    hash.update(chunk)
    onChunk?.(chunk)
    position += bytesRead
  }
  return hash.digest('hex')
}

/**
 * What changed in a held file since `then`: its size, its mtime, or its ctime (which moves
 * even when the mtime is set back). The ctime also moves when the file is unlinked or
 * renamed over (its link count changes): that leaves the held bytes intact, so a ctime
 * change that comes with a link count change is not counted.
 */
export function describeChange(then: BigIntStats, now: BigIntStats): string | undefined {
  if (now.size !== then.size) return `its size is ${now.size} bytes, not ${then.size}`
  if (now.mtimeNs !== then.mtimeNs) return 'it was written to (its mtime changed)'
  if (now.ctimeNs !== then.ctimeNs && now.nlink === then.nlink) {
    return 'its inode changed (its ctime moved)'
  }
  return undefined
}

/** Reads `length` bytes at `position`; fails if the file is shorter than that now. */
async function readFully(
  handle: FileHandle,
  position: number,
  length: number,
  path: string,
): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length)
  let filled = 0
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled)
    if (bytesRead === 0) {
      throw new ImageSwarmError(
        'E_SERVER_ARCHIVE_CHANGED',
        `${path} ends before byte ${position + length}`,
        {
          operation: 'read',
          path,
          hint: 'the file was truncated while it was served',
        },
      )
    }
    filled += bytesRead
  }
  return buffer
}

/** ENOENT, ENOTDIR or ELOOP: nothing (or a symlink, never followed) at the path. */
export function isAbsent(err: unknown): boolean {
  return ['ENOENT', 'ENOTDIR', 'ELOOP'].includes(errnoOf(err) ?? '')
}
