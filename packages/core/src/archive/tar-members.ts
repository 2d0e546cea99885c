import { createHash } from 'node:crypto'
import { closeSync, openSync, writeSync } from 'node:fs'
import { errnoOf, ImageSwarmError } from '../errors.js'
import type { Compression } from '../manifest.js'
import type { MemberRange } from './file-index.js'
import type { ScannedMember, TarObserver } from './scan.js'
import { openTarSource } from './tar-source.js'
import { validateArchive } from './validate.js'

/** GNU tar ends an archive with two zero blocks. */
const END_OF_ARCHIVE = Buffer.alloc(1024)

/**
 * Writes a tar of some members of an archive, copied byte for byte from its tar stream
 * (their pax and long-name headers, data and padding) in the archive's order, then the two
 * zero blocks that end a tar: every attribute the archive holds is kept, and the same
 * members of the same archive always give the same bytes. `ranges` come from
 * `indexArchiveMembers` of this archive.
 *
 * @example await copyTarMembers({ archive, compression: 'zstd', ranges: [ranges.get('etc/motd')!], output })
 */
export async function copyTarMembers(options: {
  archive: string
  compression: Compression
  ranges: readonly MemberRange[]
  output: string
}): Promise<{ size: number; sha256: string }> {
  const ranges = [...options.ranges].sort((a, b) => a.offset - b.offset)
  const hash = createHash('sha256')
  const fd = openOutput(options.output)
  let size = 0
  const write = (bytes: Buffer) => {
    writeAll(fd, bytes, options.output)
    hash.update(bytes)
    size += bytes.length
  }
  try {
    const source = await openTarSource(options.archive, options.compression, {})
    let position = 0
    let next = 0
    for await (const chunk of source.stream as AsyncIterable<Buffer>) {
      const chunkEnd = position + chunk.length
      while (next < ranges.length && ranges[next]!.offset < chunkEnd) {
        const range = ranges[next]!
        const from = Math.max(range.offset, position)
        const to = Math.min(range.end, chunkEnd)
        if (to > from) write(chunk.subarray(from - position, to - position))
        if (range.end <= chunkEnd) next++
        else break
      }
      position = chunkEnd
      if (next === ranges.length) {
        source.stop()
        break
      }
    }
    const failure = await source.finished()
    if (failure !== undefined) throw new Error(failure)
    if (next < ranges.length)
      throw new Error(
        `the archive ends at byte ${position}, before its member at ${ranges[next]!.offset}`,
      )
    write(END_OF_ARCHIVE)
  } catch (err) {
    throw new ImageSwarmError(
      errnoOf(err) === 'ENOSPC' ? 'E_NO_SPACE' : 'E_PACK_FAILED',
      `cannot copy members of ${options.archive} into ${options.output}: ${err instanceof Error ? err.message : String(err)}`,
      {
        operation: 'make delta',
        path: options.output,
        hint: 'check the disk holding the archives',
        cause: err,
      },
    )
  } finally {
    closeSync(fd)
  }
  return { size, sha256: hash.digest('hex') }
}

/**
 * Writes the contents of some regular members of an archive, one after another in the
 * archive's order, with nothing between them: the reference a delta is compressed against,
 * which a node rebuilds from the same files of its own root. Returns the bytes written.
 */
export async function writeReferenceContents(options: {
  archive: string
  compression: Compression
  paths: ReadonlySet<string>
  output: string
}): Promise<number> {
  const fd = openOutput(options.output)
  const collector = new ContentCollector(options.paths, (bytes) =>
    writeAll(fd, bytes, options.output),
  )
  try {
    await validateArchive(options.archive, options.compression, { observer: collector })
  } finally {
    closeSync(fd)
  }
  return collector.written
}

/** Hands on the data of the members it is told to keep. */
class ContentCollector implements TarObserver {
  written = 0
  #keeping = false

  constructor(
    private readonly paths: ReadonlySet<string>,
    private readonly sink: (bytes: Buffer) => void,
  ) {}

  member(member: ScannedMember): void {
    const path = member.name.replace(/^\.\//, '').replace(/\/+$/, '')
    // A sparse member's stored bytes are not its contents: never a reference (see the index).
    const sparse = (member.pax as Record<string, string> | undefined)?.['GNU.sparse.name']
    this.#keeping = member.type === 'file' && sparse === undefined && this.paths.has(path)
  }

  data(bytes: Buffer): void {
    if (!this.#keeping) return
    this.sink(bytes)
    this.written += bytes.length
  }
}

function openOutput(path: string): number {
  try {
    return openSync(path, 'w', 0o644)
  } catch (err) {
    throw new ImageSwarmError(
      'E_PACK_FAILED',
      `cannot create ${path}: ${errnoOf(err) ?? String(err)}`,
      {
        operation: 'make delta',
        path,
        hint: 'check that the directory exists and is writable',
        cause: err,
      },
    )
  }
}

function writeAll(fd: number, bytes: Buffer, path: string): void {
  let at = 0
  while (at < bytes.length) {
    try {
      at += writeSync(fd, bytes, at, bytes.length - at)
    } catch (err) {
      throw new ImageSwarmError(
        errnoOf(err) === 'ENOSPC' ? 'E_NO_SPACE' : 'E_PACK_FAILED',
        `cannot write ${path}: ${errnoOf(err) ?? String(err)}`,
        { operation: 'make delta', path, hint: 'free space on that disk', cause: err },
      )
    }
  }
}
