import { createHash, type Hash } from 'node:crypto'
import type { Compression } from '../manifest.js'
import type { ScannedMember, TarObserver } from './scan.js'
import { validateArchive } from './validate.js'

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

/** A member's bytes in the uncompressed tar stream: `offset` up to (not including) `end`. */
export interface MemberRange {
  offset: number
  end: number
}

/** A TarObserver that builds the file index from the members a scan reports. */
export class FileIndexBuilder implements TarObserver {
  readonly #entries: FileIndexEntry[] = []
  readonly #ranges = new Map<string, MemberRange>()
  #hash: Hash | undefined
  #current: FileIndexEntry | undefined

  member(member: ScannedMember): void {
    this.#finishFile()
    const type = member.type ?? 'unknown'
    const regular = type === 'file' || type === 'contiguous-file'
    // A sparse file (pax sparse 1.0) is stored under a made-up name with its map before its
    // data: its real name and size are pax records, and the stored bytes are not its
    // contents, so it gets no SHA-256 (an update compares it by size and mtime).
    const pax = member.pax as Record<string, string> | undefined
    const sparseName = pax?.['GNU.sparse.name']
    const sparseSize = pax?.['GNU.sparse.realsize']
    const entry: FileIndexEntry = {
      path: indexPath(sparseName ?? member.name),
      type,
      mode: member.mode,
      uid: member.uid,
      gid: member.gid,
      size: regular ? (sparseSize === undefined ? member.size : Number(sparseSize)) : 0,
      mtime: member.mtime,
    }
    if (type === 'symlink' && member.linkname) entry.linkTarget = member.linkname
    if (type === 'link' && member.linkname) entry.hardlinkTo = indexPath(member.linkname)
    const attributes = attributesDigest(pax)
    if (attributes !== undefined) entry.attributes = attributes
    this.#entries.push(entry)
    this.#ranges.set(entry.path, { offset: member.offset, end: member.end })
    if (regular && sparseName === undefined) {
      this.#current = entry
      this.#hash = createHash('sha256')
    }
  }

  data(bytes: Buffer): void {
    this.#hash?.update(bytes)
  }

  /** The index, once the scan has ended. */
  entries(): FileIndexEntry[] {
    this.#finishFile()
    return this.#entries
  }

  /** Where each member lies in the tar stream (its headers, data and padding). */
  ranges(): Map<string, MemberRange> {
    return this.#ranges
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
 * The file index of an archive: `validateArchive` with a `FileIndexBuilder` watching, so
 * the archive is decompressed once, every header is checked by the rules of an extraction
 * (an archive they refuse gives no index: E_ARCHIVE_UNSAFE), and every regular file's
 * contents are hashed.
 *
 * @example const entries = await indexArchive({ archive: '/var/lib/systemimager/tarballs/image-demo.tar.zst' })
 */
export async function indexArchive(options: {
  archive: string
  compression?: Compression
}): Promise<FileIndexEntry[]> {
  return (await indexArchiveMembers(options)).entries
}

/** `indexArchive`, with where each member lies in the tar stream (what a delta copies). */
export async function indexArchiveMembers(options: {
  archive: string
  compression?: Compression
}): Promise<{ entries: FileIndexEntry[]; ranges: Map<string, MemberRange> }> {
  const builder = new FileIndexBuilder()
  await validateArchive(options.archive, options.compression, { observer: builder })
  return { entries: builder.entries(), ranges: builder.ranges() }
}
