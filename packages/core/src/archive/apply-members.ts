import { lstat, readlink, rename, rm, unlink, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { sha256File } from '../digest.js'
import { errnoOf, ImageSwarmError } from '../errors.js'
import type { Logger } from '../logging.js'
import type { Compression } from '../manifest.js'
import { TAR_EXTRACT_ARGS } from './extract-run.js'
import type { FileIndexEntry } from './file-index.js'
import { reportsNoSpace, startTool, stderrLines } from './spawn-tool.js'
import { resolveArchiveTools } from './tools.js'

/**
 * Applying members of a tar onto a live root (issue 16): each file, symlink or special
 * file is extracted by GNU tar beside its final name (`dir/.imageswarm-new.NAME`, on the
 * same filesystem, with every attribute tar restores), checked against the file index, and
 * only then renamed over the old one, so a running program keeps the file it has open and
 * no path is ever missing. Directories are extracted last, in place, so their modes and
 * mtimes come out as the index says after everything was written into them.
 */

/** The prefix of a member's name while it waits beside its final name. */
export const STAGED_PREFIX = '.imageswarm-new.'

/** A tar file of members to apply: a delta, members fetched by file, or a whole archive. */
export interface MemberSource {
  path: string
  compression: Compression
}

/** The staged name of an index path: `usr/bin/.imageswarm-new.ls` for `usr/bin/ls`. */
export function stagedPath(path: string): string {
  const dir = dirname(path)
  return dir === '.'
    ? `${STAGED_PREFIX}${basename(path)}`
    : `${dir}/${STAGED_PREFIX}${basename(path)}`
}

/** tar's member name for an index path (archives are packed from `.`). */
function memberName(entry: FileIndexEntry): string {
  if (entry.path === '.') return './'
  return entry.type === 'directory' ? `./${entry.path}/` : `./${entry.path}`
}

/**
 * Extracts `entries` (no directories) from `source` under their staged names and checks
 * each against its index entry; returns them, ready for `commitStaged`. Where an entry
 * changes type, `clearTypeChanges` has made way first.
 */
export async function stageMembers(options: {
  target: string
  source: MemberSource
  entries: readonly FileIndexEntry[]
  /** Hash every staged file against the index too (a source no digest vouches for). */
  contents: boolean
  logger?: Logger
  signal?: AbortSignal
}): Promise<FileIndexEntry[]> {
  const entries = options.entries.filter((entry) => entry.type !== 'directory')
  if (entries.length === 0) return []
  for (const entry of entries) {
    const st = await lstat(join(options.target, entry.path)).catch(() => undefined)
    if (st?.isDirectory())
      await rm(join(options.target, entry.path), { recursive: true, force: true })
  }
  await runTarExtract({
    ...options,
    names: entries.map(memberName),
    // Names and hard links' targets become the staged names; symlink targets stay (S).
    extraArgs: [`--transform=s|^\\(.*/\\)\\{0,1\\}\\([^/]*\\)$|\\1${STAGED_PREFIX}\\2|S`],
  })
  for (const entry of entries) {
    const problem = await checkAgainstIndex(
      options.target,
      stagedPath(entry.path),
      entry,
      options.contents,
    )
    if (problem !== undefined) {
      await Promise.all(
        entries.map((staged) => rm(join(options.target, stagedPath(staged.path)), { force: true })),
      )
      throw new ImageSwarmError(
        'E_ARCHIVE_DIGEST_MISMATCH',
        `${entry.path} from ${options.source.path} does not match the image's file index: ${problem}`,
        {
          operation: 'apply update',
          path: entry.path,
          hint: 'the server sent a member other than the version it published: republish the image on the server, then update again',
        },
      )
    }
  }
  return entries
}

/**
 * Makes way where an entry changes type: a directory where a file, symlink or special file
 * belongs is removed with what it holds, and such a non-directory where a directory belongs
 * is unlinked, so that staging can create what goes there. Run before `stageMembers`.
 */
export async function clearTypeChanges(
  target: string,
  entries: readonly FileIndexEntry[],
): Promise<void> {
  for (const entry of entries) {
    if (entry.path === '.') continue
    const path = join(target, entry.path)
    const st = await lstat(path).catch(() => undefined)
    if (st === undefined) continue
    if (entry.type === 'directory' && !st.isDirectory()) await unlink(path)
    if (entry.type !== 'directory' && st.isDirectory())
      await rm(path, { recursive: true, force: true })
  }
}

/** Renames staged members over their final names, in order; tells `onCommitted` of each. */
export async function commitStaged(
  target: string,
  entries: readonly FileIndexEntry[],
  onCommitted?: (entry: FileIndexEntry) => void,
): Promise<void> {
  for (const entry of entries) {
    const final = join(target, entry.path)
    try {
      await rename(join(target, stagedPath(entry.path)), final)
    } catch (err) {
      if (errnoOf(err) !== 'EISDIR' && errnoOf(err) !== 'ENOTEMPTY') throw renameFailed(final, err)
      // A directory appeared there since staging: the new version has a file.
      await rm(final, { recursive: true, force: true })
      await rename(join(target, stagedPath(entry.path)), final).catch((again: unknown) => {
        throw renameFailed(final, again)
      })
    }
    onCommitted?.(entry)
  }
}

/**
 * Extracts directory members in place: new ones are made, existing ones get the mode,
 * owner, mtime, xattrs and ACLs of the index. A non-directory where one belongs is removed
 * first. Run after every other change, so the mtimes stay.
 */
export async function restoreDirectories(options: {
  target: string
  source: MemberSource
  entries: readonly FileIndexEntry[]
  logger?: Logger
  signal?: AbortSignal
}): Promise<void> {
  const entries = options.entries.filter((entry) => entry.type === 'directory')
  if (entries.length === 0) return
  for (const entry of entries) {
    const st = await lstat(join(options.target, entry.path)).catch(() => undefined)
    if (st !== undefined && !st.isDirectory()) await unlink(join(options.target, entry.path))
  }
  await runTarExtract({ ...options, names: entries.map(memberName), extraArgs: [] })
}

/**
 * How a path on the node differs from its index entry, or undefined when it matches in
 * type, mode, owner, size, mtime (to the microsecond), symlink target and, with `contents`,
 * SHA-256. Hard links are checked by the caller (they share an inode with their group).
 */
export async function checkAgainstIndex(
  target: string,
  path: string,
  entry: FileIndexEntry,
  contents: boolean,
): Promise<string | undefined> {
  const full = join(target, path)
  const st = await lstat(full, { bigint: true }).catch(() => undefined)
  if (st === undefined) return 'missing'
  const type = typeOf(st)
  const expected = entry.type === 'link' || entry.type === 'contiguous-file' ? 'file' : entry.type
  if (type !== expected) return `a ${type}, not a ${expected}`
  if (type !== 'symlink' && Number(st.mode & 0o7777n) !== entry.mode) {
    return `mode ${(Number(st.mode) & 0o7777).toString(8)}, not ${entry.mode.toString(8)}`
  }
  if (Number(st.uid) !== entry.uid || Number(st.gid) !== entry.gid) {
    return `owner ${st.uid}:${st.gid}, not ${entry.uid}:${entry.gid}`
  }
  if (type === 'symlink') {
    const link = await readlink(full)
    if (link !== entry.linkTarget) return `symlink to ${link}, not ${entry.linkTarget}`
  }
  if (Math.abs(Number(st.mtimeNs) / 1e9 - entry.mtime) > 1e-6) return 'mtime differs'
  if (entry.type !== 'file' && entry.type !== 'contiguous-file') return undefined
  if (Number(st.size) !== entry.size) return `${st.size} bytes, not ${entry.size}`
  if (contents && entry.sha256 !== undefined && (await sha256File(full)) !== entry.sha256) {
    return 'contents differ (SHA-256)'
  }
  return undefined
}

/** An lstat's file type in the index's words. */
function typeOf(st: {
  isFile(): boolean
  isDirectory(): boolean
  isSymbolicLink(): boolean
  isCharacterDevice(): boolean
  isBlockDevice(): boolean
  isFIFO(): boolean
}): string {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'directory'
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isCharacterDevice()) return 'character-device'
  if (st.isBlockDevice()) return 'block-device'
  if (st.isFIFO()) return 'fifo'
  return 'socket'
}

async function runTarExtract(options: {
  target: string
  source: MemberSource
  names: readonly string[]
  extraArgs: readonly string[]
  logger?: Logger
  signal?: AbortSignal
}): Promise<void> {
  const { source, target } = options
  const tools = await resolveArchiveTools(source.compression)
  const list = join(dirname(source.path), `${basename(source.path)}.names-${process.pid}`)
  await writeFile(list, `${options.names.join('\0')}\0`)
  const args = [
    ...TAR_EXTRACT_ARGS.filter((arg) => arg !== '--file=-'),
    `--file=${source.path}`,
    ...(tools.compressor ? [`--use-compress-program=${tools.compressor}`] : []),
    '--directory',
    target,
    '--no-recursion',
    '--null',
    '--verbatim-files-from',
    `--files-from=${list}`,
    ...options.extraArgs,
  ]
  try {
    const tool = startTool(tools.tar, args, ['ignore', 'ignore', 'pipe'])
    const abort = () => tool.child.kill('SIGKILL')
    options.signal?.addEventListener('abort', abort, { once: true })
    const exit = await tool.exited
    options.signal?.removeEventListener('abort', abort)
    const stderr = tool.stderr()
    if (exit.code !== 0 || exit.error !== undefined) {
      options.signal?.throwIfAborted()
      throw new ImageSwarmError(
        reportsNoSpace(stderr) ? 'E_NO_SPACE' : 'E_EXTRACT_FAILED',
        `tar could not apply ${options.names.length} members of ${source.path} to ${target}: ${stderrLines(stderr).slice(0, 3).join('; ') || `exit ${exit.code}`}`,
        {
          operation: 'apply update',
          path: target,
          hint: reportsNoSpace(stderr)
            ? `free space on the filesystems under ${target}, then update again`
            : 'see tar’s message; run the update again once it is fixed (it resumes)',
        },
      )
    }
    for (const line of stderrLines(stderr)) options.logger?.warn({ tar: line }, 'tar warning')
  } finally {
    await rm(list, { force: true })
  }
}

function renameFailed(path: string, err: unknown): ImageSwarmError {
  return new ImageSwarmError(
    errnoOf(err) === 'ENOSPC' ? 'E_NO_SPACE' : 'E_EXTRACT_FAILED',
    `cannot rename the new ${path} into place: ${errnoOf(err) ?? String(err)}`,
    {
      operation: 'apply update',
      path,
      hint: 'check the filesystem (read-only? full?), then update again',
      cause: err,
    },
  )
}
