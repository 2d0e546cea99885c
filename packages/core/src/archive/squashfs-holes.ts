import { open, stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { ScannedMember, TarObserver } from './scan.js'
import { runTool } from './spawn-tool.js'
import { resolveTool } from './tools.js'
import type { ToolOptions } from './types.js'

/** Where a SquashFS superblock keeps its block size (u32, little-endian). */
const BLOCK_SIZE_OFFSET = 12

/** A regular file of the image that holds at least one whole block of zeros. */
export interface SparseMember {
  /** The member's name (`./var/disk.img`). */
  name: string
  /** Seconds; SquashFS keeps whole ones. */
  mtime: number
  /**
   * Punching holes counts as a write, which clears set-id bits and file capabilities: such
   * a file is left as extracted (a sparse setuid binary is not worth restoring one).
   */
  privileged: boolean
}

/** The block size of a SquashFS image, from its superblock. */
export async function squashfsBlockSize(path: string): Promise<number> {
  const file = await open(path, 'r')
  try {
    const word = Buffer.alloc(4)
    await file.read(word, 0, 4, BLOCK_SIZE_OFFSET)
    return word.readUInt32LE(0)
  } finally {
    await file.close()
  }
}

/**
 * Finds, in a SquashFS image's tar stream (sqfs2tar's, which writes no sparse members),
 * the regular files with a whole, block-aligned block of zeros: SquashFS stores every
 * such block as a hole, so the image holds these files as sparse, and the extraction
 * that wrote their zeros should make them sparse again (`restoreHoles`).
 */
export class HoleFinder implements TarObserver {
  readonly files: SparseMember[] = []
  private current: SparseMember | undefined
  /** Offset in the current member's data; whether its current block is all zeros so far. */
  private offset = 0
  private blockZero = true
  private found = false
  private readonly zeros: Buffer

  constructor(private readonly blockSize: number) {
    this.zeros = Buffer.alloc(Math.min(blockSize, 1 << 20))
  }

  member(member: ScannedMember): void {
    this.current = undefined
    if (member.type !== 'file' || member.size < this.blockSize) return
    const pax = (member.pax ?? {}) as Record<string, string>
    this.current = {
      name: member.name,
      mtime: member.mtime,
      privileged: (member.mode & 0o6000) !== 0 || 'SCHILY.xattr.security.capability' in pax,
    }
    this.offset = 0
    this.blockZero = true
    this.found = false
  }

  data(bytes: Buffer): void {
    const current = this.current
    if (current === undefined || this.found) return
    let at = 0
    while (at < bytes.length) {
      const left = this.blockSize - (this.offset % this.blockSize)
      const end = Math.min(bytes.length, at + left)
      if (this.blockZero) this.blockZero = this.isZero(bytes, at, end)
      this.offset += end - at
      at = end
      if (this.offset % this.blockSize === 0) {
        if (this.blockZero) {
          this.found = true
          this.files.push(current)
          return
        }
        this.blockZero = true
      }
    }
  }

  private isZero(bytes: Buffer, from: number, to: number): boolean {
    for (let at = from; at < to; at += this.zeros.length) {
      const end = Math.min(to, at + this.zeros.length)
      if (!bytes.subarray(at, end).equals(this.zeros.subarray(0, end - at))) return false
    }
    return true
  }
}

/**
 * Makes the files `HoleFinder` found sparse again after extraction: `fallocate
 * --dig-holes` (util-linux) turns their runs of zeros into holes, then their mtime is set
 * back (punching holes is a write). A file system that cannot punch holes leaves them
 * written, with a warning: the contents are the same either way.
 */
export async function restoreHoles(
  target: string,
  files: readonly SparseMember[],
  options: ToolOptions & { logger: Logger },
): Promise<number> {
  const candidates = files.filter((file) => !file.privileged)
  if (candidates.length === 0) return 0
  let fallocate: string
  try {
    fallocate = await resolveTool('fallocate', options)
  } catch (err) {
    options.logger.warn(
      { err: String(err), files: candidates.length },
      'fallocate not found: sparse files of the SquashFS image stay written in full',
    )
    return 0
  }
  let restored = 0
  for (const file of candidates) {
    const path = join(target, file.name)
    const result = await runTool(fallocate, ['--dig-holes', path])
    if (result.code !== 0) {
      options.logger.warn(
        { path, fallocate: result.stderr.trim() },
        'could not make a sparse file of the image sparse again; it stays written in full',
      )
      continue
    }
    const { atime } = await stat(path)
    await utimes(path, atime, file.mtime)
    restored++
  }
  return restored
}
