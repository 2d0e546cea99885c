import { resolve } from 'node:path'
import * as tarStream from 'tar-stream'
import { errnoOf, ImageSwarmError } from '../errors.js'
import type { Compression } from '../manifest.js'
import { detectCompression } from './compression.js'
import { memberType, openTarSource, paxRecords } from './tar-source.js'
import type { ValidateOptions, ValidateResult } from './types.js'

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
const NAME_KEYWORDS = ['path', 'linkpath', 'GNU.sparse.name']

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

/**
 * The rules that keep an extraction inside its target, applied member by member in archive
 * order. A member is refused when its name is absolute or has a `..` component, when its
 * name passes through a symlink (one created earlier in this archive: tar would follow it
 * out of the target), or when it is a hardlink whose target is absolute, has `..`, or is not
 * an earlier member. Where GNU tar and tar-stream would read an archive differently, it is
 * refused too: unknown member types, data on members other than regular files, NUL bytes
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

  check(header: tarStream.Header): void {
    const name = header.name
    const type = memberType(header) ?? 'unknown'
    if (!SAFE_TYPES.has(type)) {
      throw new UnsafeEntry(name, `has an unsupported member type (${type})`)
    }
    // GNU tar skips the data of a hardlink with a size, tar-stream does not (and both differ
    // again for directories): a member that is not a regular file must have none, or the two
    // parsers would disagree on where the next header starts.
    if (type !== 'file' && type !== 'contiguous-file' && (header.size ?? 0) !== 0) {
      throw new UnsafeEntry(name, `is a ${type} with ${header.size} bytes of data`)
    }
    const sparseName = paxRecords(header)['GNU.sparse.name']
    // tar-stream reports a sparse member by its stand-in name (./GNUSparseFile.1/f); tar
    // extracts it under GNU.sparse.name. Both must be safe, and the real one is tracked.
    if (sparseName !== undefined) this.normalize(name, name)
    const path = this.normalize(sparseName ?? name, name)
    this.refuseThroughSymlink(path, name, 'its path')
    if (path === '' && type !== 'directory') {
      throw new UnsafeEntry(name, `is the target root itself but a ${type}, not a directory`)
    }

    if (type === 'link') {
      const linkname = (header.linkname as string | null) ?? ''
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

function describe(what: string): string {
  return what === 'its path' ? 'path' : what
}

/**
 * Reads every header of an archive, without extracting anything, and refuses it with
 * E_ARCHIVE_UNSAFE naming the first member that could write outside the target: an
 * absolute or `..` path, a path through a symlink, a hardlink to outside or to nothing
 * earlier. Run before extraction; a clean result says nothing about file contents.
 *
 * @example const { entries } = await validateArchive('/tmp/image-demo.tar.zst')
 */
export async function validateArchive(
  archivePath: string,
  compression?: Compression,
  options: ValidateOptions = {},
): Promise<ValidateResult> {
  const archive = resolve(archivePath)
  const kind = compression ?? (await detectCompression(archive))
  options.signal?.throwIfAborted()
  const source = await openTarSource(archive, kind, options)
  const guard = new EntryGuard()
  const extract = tarStream.extract()

  const parsed = new Promise<void>((resolveParse, rejectParse) => {
    extract.on('entry', (header, body, next) => {
      try {
        refuseGlobalRename(extract, header.name)
        guard.check(header)
      } catch (err) {
        rejectParse(err)
        return
      }
      body.on('end', next)
      body.resume()
    })
    extract.once('finish', () => resolveParse())
    extract.once('error', rejectParse)
    source.stream.once('error', rejectParse)
    options.signal?.addEventListener('abort', () => rejectParse(options.signal?.reason), {
      once: true,
    })
  })
  source.stream.pipe(extract)

  try {
    await parsed
  } catch (err) {
    source.stop()
    extract.destroy()
    await source.finished()
    if (options.signal?.aborted) {
      throw new ImageSwarmError('E_INTERRUPTED', `validating ${archive} was interrupted`, {
        operation: 'validate archive',
        path: archive,
        cause: err,
      })
    }
    throw unsafe(archive, err)
  }
  const failure = await source.finished()
  if (failure !== undefined) throw unsafe(archive, new Error(failure))
  options.logger?.debug({ archive, entries: guard.entries }, 'archive validated')
  return { entries: guard.entries }
}

/**
 * tar-stream applies a pax *global* header only to members that have their own pax header,
 * while GNU tar applies it to all; a global `path` could thus rename members behind our
 * back. No tar we support writes one with a name in it, so such an archive is refused.
 * tar-stream keeps the global header in a private field; we read it defensively.
 */
function refuseGlobalRename(extract: tarStream.Extract, entry: string): void {
  const global = (extract as unknown as { _paxGlobal?: Record<string, string> | null })._paxGlobal
  if (global == null) return
  const keyword = NAME_KEYWORDS.find((key) => key in global)
  if (keyword !== undefined) {
    throw new UnsafeEntry(entry, `follows a pax global header that sets '${keyword}'`)
  }
}

function unsafe(archive: string, err: unknown): ImageSwarmError {
  if (err instanceof ImageSwarmError) return err
  if (err instanceof UnsafeEntry) {
    return new ImageSwarmError('E_ARCHIVE_UNSAFE', `archive ${archive} is unsafe: ${err.message}`, {
      operation: 'validate archive',
      path: archive,
      hint:
        'refusing to extract it; this archive was not made by imageswarm pack or was altered. ' +
        'Republish the image from its root',
    })
  }
  const message = err instanceof Error ? err.message : String(err)
  return new ImageSwarmError(
    'E_ARCHIVE_UNSAFE',
    `archive ${archive} cannot be read: ${errnoOf(err) ?? message}`,
    {
      operation: 'validate archive',
      path: archive,
      hint: 'the archive is corrupt or truncated; download it again or republish the image',
      cause: err,
    },
  )
}
