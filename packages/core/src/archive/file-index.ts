import { createHash, type Hash } from 'node:crypto'
import { open } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { ImageSwarmError } from '../errors.js'
import type { Compression } from '../manifest.js'
import { decompressArgs, detectCompression } from './compression.js'
import { type ScannedMember, type TarObserver, TarScanner } from './scan.js'
import { startTool } from './spawn-tool.js'
import { resolveArchiveTools } from './tools.js'

/**
 * One entry of an image version's file index (issue 16, docs/updates.md): what the update
 * path compares a node's root and the next version against. Read off the archive's own tar
 * stream, so it records exactly what an install writes.
 */
export interface FileIndexEntry {
  /** Relative to the image root, without `./`; the root itself is `.`. */
  path: string
  /** `file`, `directory`, `symlink`, `link` (a hard link), `character-device`, … */
  type: string
  mode: number
  uid: number
  gid: number
  /** Data bytes in the archive: a regular file's size, 0 for the rest. */
  size: number
  /** Seconds since the epoch, with pax's fraction where the archive has one. */
  mtime: number
  /** SHA-256 of a regular file's contents. */
  sha256?: string
  /** A symlink's target. */
  linkTarget?: string
  /** A hard link: the path of the member it links to (its hardlink group's first member). */
  hardlinkTo?: string
  /** SHA-256 over the member's xattrs and ACLs (pax SCHILY records), when it has any. */
  attributes?: string
}

const ATTRIBUTE_RECORD = /^(SCHILY\.(xattr|acl)\.|RHT\.security\.selinux)/

/** `./etc/passwd` → `etc/passwd`; `./` → `.`. */
function indexPath(name: string): string {
  const trimmed = name.replace(/^\.\//, '').replace(/\/+$/, '')
  return trimmed === '' || trimmed === '.' ? '.' : trimmed
}

function attributesDigest(pax: Record<string, string> | undefined): string | undefined {
  if (pax === undefined) return undefined
  const records = Object.keys(pax)
    .filter((key) => ATTRIBUTE_RECORD.test(key))
    .sort()
  if (records.length === 0) return undefined
  const hash = createHash('sha256')
  for (const key of records) hash.update(`${key}\0${pax[key]}\0`)
  return hash.digest('hex')
}

/** A TarObserver that builds the file index; feed the tar stream to `scanner`. */
export class FileIndexBuilder implements TarObserver {
  readonly entries: FileIndexEntry[] = []
  readonly scanner = new TarScanner(this)
  #hash: Hash | undefined
  #current: FileIndexEntry | undefined

  member(member: ScannedMember): void {
    this.#finishFile()
    const type = member.type ?? 'unknown'
    const entry: FileIndexEntry = {
      path: indexPath(member.name),
      type,
      mode: member.mode,
      uid: member.uid,
      gid: member.gid,
      size: type === 'file' || type === 'contiguous-file' ? member.size : 0,
      mtime: member.mtime,
    }
    if (type === 'symlink' && member.linkname) entry.linkTarget = member.linkname
    if (type === 'link' && member.linkname) entry.hardlinkTo = indexPath(member.linkname)
    const attributes = attributesDigest(member.pax as Record<string, string> | undefined)
    if (attributes !== undefined) entry.attributes = attributes
    this.entries.push(entry)
    if (type === 'file' || type === 'contiguous-file') {
      this.#current = entry
      this.#hash = createHash('sha256')
    }
  }

  data(bytes: Buffer): void {
    this.#hash?.update(bytes)
  }

  /** The stream has ended: checks its end like the scanner does; returns the entries. */
  end(): FileIndexEntry[] {
    this.scanner.end()
    this.#finishFile()
    return this.entries
  }

  #finishFile(): void {
    if (this.#current !== undefined && this.#hash !== undefined) {
      this.#current.sha256 = this.#hash.digest('hex')
    }
    this.#current = undefined
    this.#hash = undefined
  }
}

/**
 * The file index of an archive: decompressed once, every header checked by the same rules
 * as an extraction (an archive that would be refused gives no index), every regular
 * file's contents hashed.
 *
 * @example const entries = await indexArchive({ archive: '/var/lib/systemimager/tarballs/image-demo.tar.zst' })
 */
export async function indexArchive(options: {
  archive: string
  compression?: Compression
}): Promise<FileIndexEntry[]> {
  const { archive } = options
  const compression = options.compression ?? (await detectCompression(archive))
  const builder = new FileIndexBuilder()
  const file = await open(archive, 'r').catch((err: unknown) => {
    throw new ImageSwarmError('E_EXTRACT_FAILED', `cannot read ${archive}: ${String(err)}`, {
      operation: 'index archive',
      path: archive,
      hint: 'check that the archive exists and is readable',
      cause: err,
    })
  })
  const refused = (err: unknown) =>
    err instanceof ImageSwarmError
      ? err
      : new ImageSwarmError(
          'E_ARCHIVE_UNSAFE',
          `${archive}: ${err instanceof Error ? err.message : String(err)}`,
          {
            operation: 'index archive',
            path: archive,
            hint: 'republish the image',
            cause: err,
          },
        )
  try {
    if (compression === 'none') {
      for await (const chunk of file.createReadStream({ highWaterMark: 1 << 20, autoClose: false }))
        builder.scanner.write(chunk as Buffer)
      return builder.end()
    }
    const tools = await resolveArchiveTools(compression)
    if (tools.compressor === undefined) throw new Error(`no ${compression} tool`)
    const tool = startTool(tools.compressor, decompressArgs(compression), [file.fd, 'pipe', 'pipe'])
    try {
      for await (const chunk of tool.child.stdout as Readable)
        builder.scanner.write(chunk as Buffer)
    } catch (err) {
      tool.child.kill('SIGKILL')
      throw err
    }
    const exit = await tool.exited
    if (exit.code !== 0) {
      throw new ImageSwarmError(
        'E_ARCHIVE_UNSAFE',
        `${archive}: ${compression} -d exited with ${exit.code ?? exit.signal}: ${tool.stderr().trim()}`,
        { operation: 'index archive', path: archive, hint: 'republish the image' },
      )
    }
    return builder.end()
  } catch (err) {
    throw refused(err)
  } finally {
    await file.close()
  }
}
