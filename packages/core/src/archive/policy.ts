/**
 * The one rule set that keeps an extraction inside its target. `TarScanner` (scan.ts)
 * applies it to every member as the tar stream passes, for `validateArchive` and for the
 * gated `extractArchive` alike.
 */

/** The member types GNU tar extracts as we expect; anything else is refused. */
const SAFE_TYPES = new Set([
  'file',
  'contiguous-file',
  'link',
  'symlink',
  'directory',
  'character-device',
  'block-device',
  'fifo',
])

/** pax keywords that rename a member; in a global header they would rename every member. */
export const NAME_KEYWORDS = ['path', 'linkpath', 'GNU.sparse.name']

/**
 * What a pax *global* header may not set. GNU tar applies a global header to every later
 * member, other readers (tar-stream) only to members with a pax header of their own: a
 * global `path` could rename members behind a validator's back, and a global `size` moves
 * where GNU tar looks for the next header (hiding one inside another member's data). No
 * tar we support writes either; `git archive`'s `comment` and the like are harmless.
 */
const GLOBAL_REFUSED = [...NAME_KEYWORDS, 'size']

/** The fields of a member header the rules read; a tar-stream `Header` has them too. */
export interface MemberHeader {
  /** The member's name after pax `path` and GNU long names are applied. */
  name: string
  /** `file`, `link`, ...; `null` for a typeflag we do not know. */
  type?: string | null | undefined
  /** Bytes of data in the archive (pax `size` applied). */
  size?: number | null | undefined
  linkname?: string | null | undefined
  /** The member's own pax records. */
  pax?: unknown
  /** The raw typeflag, for the message about an unknown type. */
  typeflag?: string | undefined
}

/** Why a member is refused; turned into E_ARCHIVE_UNSAFE naming the member. */
export class UnsafeEntry extends Error {
  constructor(
    readonly entry: string,
    readonly reason: string,
  ) {
    super(`entry '${printable(entry)}' ${reason}`)
  }
}

/** A name for messages: control bytes (a NUL, an escape sequence) shown as `\xNN`. */
function printable(name: string): string {
  let out = ''
  for (const char of name) {
    const code = char.charCodeAt(0)
    out += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : char
  }
  return out
}

/** Refuses the member that follows a pax global header setting a name or a size. */
export function refuseGlobalHeader(global: Readonly<Record<string, string>>, entry: string): void {
  const keyword =
    GLOBAL_REFUSED.find((key) => key in global) ??
    Object.keys(global).find((key) => key.startsWith('GNU.sparse.'))
  if (keyword !== undefined) {
    throw new UnsafeEntry(entry, `follows a pax global header that sets '${keyword}'`)
  }
}

/**
 * The rules that keep an extraction inside its target, applied member by member in archive
 * order. A member is refused when its name is absolute or has a `..` component, when its
 * name passes through a symlink (one created earlier in this archive: tar would follow it
 * out of the target), or when it is a hardlink whose target is absolute, has `..`, or is not
 * an earlier member. Where GNU tar and other readers would read an archive differently, it
 * is refused too: unknown member types, data on members other than regular files, NUL bytes
 * in names, pax global headers that rename members. Names are compared after one decoding
 * (UTF-8, invalid bytes to U+FFFD); `/` and `.` survive it unchanged, and two names that
 * decode alike are treated as one, which can only refuse more, never less.
 */
export class EntryGuard {
  /** Members seen so far that are not directories: the valid hardlink targets. */
  private readonly members = new Set<string>()
  /** Members that are symlinks, or hardlinks to symlinks: nothing may pass through them. */
  private readonly symlinks = new Set<string>()
  entries = 0

  check(header: MemberHeader): void {
    const name = header.name
    const type = header.type ?? null
    if (type === null || !SAFE_TYPES.has(type)) {
      const shown = type ?? (header.typeflag === undefined ? 'unknown' : `'${header.typeflag}'`)
      throw new UnsafeEntry(name, `has an unsupported member type (${shown})`)
    }
    // GNU tar reads the "data" of a hardlink, symlink or directory as the next header, other
    // readers skip it: a member that is not a regular file must have none, or the two
    // parsers would disagree on where the next header starts.
    if (type !== 'file' && type !== 'contiguous-file' && (header.size ?? 0) !== 0) {
      throw new UnsafeEntry(name, `is a ${type} with ${header.size} bytes of data`)
    }
    const pax = (header.pax ?? {}) as Readonly<Record<string, string>>
    const sparseName = pax['GNU.sparse.name']
    // A sparse member's header carries a stand-in name (./GNUSparseFile.1/f); tar extracts
    // it under GNU.sparse.name. Both must be safe, and the real one is tracked.
    if (sparseName !== undefined) this.normalize(name, name)
    const path = this.normalize(sparseName ?? name, name)
    this.refuseThroughSymlink(path, name, 'its path')
    if (path === '' && type !== 'directory') {
      throw new UnsafeEntry(name, `is the target root itself but a ${type}, not a directory`)
    }

    if (type === 'link') {
      const linkname = header.linkname ?? ''
      const target = this.normalize(linkname, name, 'hardlink target')
      this.refuseThroughSymlink(target, name, `hardlink target '${printable(linkname)}'`)
      if (!this.members.has(target)) {
        throw new UnsafeEntry(
          name,
          `is a hardlink to '${printable(linkname)}', which is not an earlier member`,
        )
      }
      if (this.symlinks.has(target)) this.symlinks.add(path)
    } else if (type === 'symlink') {
      this.symlinks.add(path)
    }
    if (type !== 'directory') this.members.add(path)
    this.entries++
  }

  /** `./a//b/./c` → `a/b/c`; refuses absolute names and `..`. */
  private normalize(raw: string, entry: string, what = 'its path'): string {
    if (raw === '')
      throw new UnsafeEntry(entry, `has an empty ${what === 'its path' ? 'name' : what}`)
    // GNU tar cuts a pax name at a NUL byte, tar-stream keeps it: they would see two names.
    if (raw.includes('\u0000')) throw new UnsafeEntry(entry, `has a NUL byte in ${what}`)
    if (raw.startsWith('/')) throw new UnsafeEntry(entry, `has an absolute ${describe(what)}`)
    // Most names are `./a/b` or `a/b/`: nothing to remove but the ends.
    const plain = raw.startsWith('./') ? raw.slice(2) : raw
    if (isPlainPath(plain)) return plain.endsWith('/') ? plain.slice(0, -1) : plain
    const parts: string[] = []
    for (const part of raw.split('/')) {
      if (part === '' || part === '.') continue
      if (part === '..') throw new UnsafeEntry(entry, `has a '..' component in ${what}`)
      parts.push(part)
    }
    return parts.join('/')
  }

  private refuseThroughSymlink(path: string, entry: string, what: string): void {
    let end = path.indexOf('/')
    while (end !== -1) {
      const prefix = path.slice(0, end)
      if (this.symlinks.has(prefix)) {
        throw new UnsafeEntry(entry, `has ${what} through the symlink './${prefix}'`)
      }
      end = path.indexOf('/', end + 1)
    }
  }
}

/** No empty, `.` or `..` component, except that it may end in one `/`. */
export function isPlainPath(path: string): boolean {
  if (path === '' || path.startsWith('/')) return false
  const body = path.endsWith('/') ? path.slice(0, -1) : path
  return (
    body !== '' &&
    !body.endsWith('/') &&
    body !== '.' &&
    body !== '..' &&
    !body.includes('//') &&
    !body.startsWith('./') &&
    !body.startsWith('../') &&
    !body.endsWith('/.') &&
    !body.endsWith('/..') &&
    !body.includes('/./') &&
    !body.includes('/../')
  )
}

function describe(what: string): string {
  return what === 'its path' ? 'path' : what
}
