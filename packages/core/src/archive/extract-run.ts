import { createReadStream, type ReadStream } from 'node:fs'
import type { Logger } from 'pino'
import { errnoOf, ImageSwarmError } from '../errors.js'
import type { Compression, ImageFormat } from '../manifest.js'
import { TAR_RECORD_ARGS } from './records.js'
import {
  describeExit,
  type RunningTool,
  reportsNoSpace,
  startTool,
  stderrLines,
  type ToolExit,
} from './spawn-tool.js'
import type { ResolvedTools } from './tools.js'
import type { ExtractOptions } from './types.js'

/**
 * tar's options for restoring everything the archive holds:
 * - `--numeric-owner --same-owner`: the stored uids/gids as they are; the names in the
 *   installer's /etc/passwd mean nothing for the target system.
 * - `--same-permissions`: modes exactly, setuid/setgid/sticky included, no umask.
 * - `--xattrs --xattrs-include=*`: every namespace (security.capability, trusted.*), not
 *   only user.* as GNU tar would by default. `--acls` restores POSIX ACLs.
 * - `--delay-directory-restore`: directory modes and mtimes are set at the very end, so a
 *   0555 directory and the mtime of a directory that gets more members later (archives not
 *   made by us need not be in tree order) come out right.
 * Sparse members are recreated sparse without an option.
 */
export const TAR_EXTRACT_ARGS: readonly string[] = [
  '--extract',
  '--file=-',
  '--numeric-owner',
  '--same-owner',
  '--same-permissions',
  '--xattrs',
  '--xattrs-include=*',
  '--acls',
  '--delay-directory-restore',
]

/** One extraction, resolved once by `extractArchive` and handed to the pass it chose. */
export interface ExtractRun {
  options: ExtractOptions
  logger: Logger
  /** Absolute paths. */
  archive: string
  target: string
  /** The archive file's size in bytes, the total for `onProgress`. */
  size: number
  compression: Compression
  /** `squashfs`: the tar stream is sqfs2tar's, and the archive is validated first. */
  format: ImageFormat
  tools: ResolvedTools
}

/** `tar -x` into the target, reading the tar stream on its stdin. */
export function startTarExtract(run: ExtractRun): RunningTool {
  return startTool(
    run.tools.tar,
    [...TAR_EXTRACT_ARGS, ...TAR_RECORD_ARGS, '--directory', run.target],
    ['pipe', 'ignore', 'pipe'],
  )
}

/**
 * The archive file as a stream, and `error()`: the first error reading the file itself,
 * not one a pipeline passed back to it when a later stage failed (EPIPE from a tool that
 * stopped reading, a refusal).
 */
export function readArchive(run: ExtractRun): { stream: ReadStream; error(): unknown } {
  const stream = createReadStream(run.archive, { highWaterMark: 1 << 20 })
  let readError: unknown
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (readError === undefined && typeof err.syscall === 'string' && err.syscall !== 'write') {
      readError = err
    }
  })
  return { stream, error: () => readError }
}

/**
 * Throws E_NO_SPACE or E_EXTRACT_FAILED, with the tool's message, unless `exit` is a clean
 * exit 0. A full file system is told apart because the fix (larger partitions) differs.
 */
export function checkExit(tool: string, exit: ToolExit, stderr: string, target: string): void {
  if (exit.error === undefined && exit.code === 0) return
  const detail = stderr.trim() || '(no message)'
  const noSpace = reportsNoSpace(stderr)
  throw new ImageSwarmError(
    noSpace ? 'E_NO_SPACE' : 'E_EXTRACT_FAILED',
    `${tool} failed extracting into ${target} (${describeExit(exit)}): ${detail}`,
    {
      operation: 'extract',
      path: target,
      hint: noSpace
        ? 'the target file system is full (or over quota); make the partitions larger'
        : 'see the tar message; the target root may now be partly written',
      cause: exit.error,
    },
  )
}

/** A tar that succeeded may still have complained (odd timestamps): those go to the log. */
export function logTarWarnings(run: ExtractRun, stderr: string): void {
  for (const line of stderrLines(stderr)) {
    run.logger.warn({ target: run.target, tar: line }, 'tar warning')
  }
}

export function interrupted(run: ExtractRun): ImageSwarmError {
  return new ImageSwarmError('E_INTERRUPTED', `extracting into ${run.target} was interrupted`, {
    operation: 'extract',
    path: run.target,
    cause: run.options.signal?.reason,
  })
}

export function cannotRead(run: ExtractRun, err: unknown): ImageSwarmError {
  return new ImageSwarmError(
    'E_EXTRACT_FAILED',
    `cannot read ${run.archive}: ${errnoOf(err) ?? String(err)}`,
    {
      operation: 'extract',
      path: run.archive,
      hint: 'check the staging directory',
      cause: err,
    },
  )
}
