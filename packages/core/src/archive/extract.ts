import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { Transform, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { errnoOf, ImageSwarmError } from '../errors.js'
import { silentLogger } from '../logging.js'
import { decompressArgs, detectCompression } from './compression.js'
import {
  describeExit,
  type RunningTool,
  startTool,
  stderrLines,
  type ToolExit,
} from './spawn-tool.js'
import { resolveArchiveTools } from './tools.js'
import type { ExtractOptions, ExtractResult } from './types.js'
import { validateArchive } from './validate.js'

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

/**
 * Extracts an archive into an existing target root with full metadata. First a validation
 * pass reads every header and refuses the archive if any member could land outside the
 * target (see `validateArchive`); only then does tar write anything. tar's warnings go to
 * the logger; a failure is E_EXTRACT_FAILED carrying tar's message.
 *
 * @example
 *   await extractArchive({
 *     archive: '/tmp/image-demo.tar.zst', target: '/a',
 *     onProgress: (bytes, size) => bar.update(bytes / size),
 *   })
 */
export async function extractArchive(options: ExtractOptions): Promise<ExtractResult> {
  const logger = options.logger ?? silentLogger()
  const archive = resolve(options.archive)
  const target = resolve(options.target)
  options.signal?.throwIfAborted()

  const size = await archiveSize(archive)
  await assertTarget(target)
  const compression = options.compression ?? (await detectCompression(archive))
  const tools = await resolveArchiveTools(compression, options)
  const validateStart = Date.now()
  const { entries } =
    options.alreadyValidated ??
    (await validateArchive(archive, compression, {
      tools: options.tools,
      env: options.env,
      logger,
      signal: options.signal,
    }))
  const extractStart = Date.now()

  const tar = startTool(
    tools.tar,
    [...TAR_EXTRACT_ARGS, '--directory', target],
    ['pipe', 'ignore', 'pipe'],
  )
  let decompressor: RunningTool | undefined
  if (compression !== 'none' && tools.compressor !== undefined) {
    // The decompressor writes straight into tar's stdin; Node feeds only the compressed
    // bytes, which is where progress is counted.
    decompressor = startTool(tools.compressor, decompressArgs(compression), [
      'pipe',
      tar.child.stdin ?? 'ignore',
      'pipe',
    ])
    tar.child.stdin?.destroy()
  }
  const sink = (decompressor ?? tar).child.stdin as Writable
  const running = [tar, decompressor].filter((tool) => tool !== undefined)
  const onAbort = () => {
    for (const tool of running) tool.child.kill('SIGTERM')
  }
  options.signal?.addEventListener('abort', onAbort, { once: true })

  let consumed = 0
  const progress = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      consumed += chunk.length
      options.onProgress?.(consumed, size)
      callback(null, chunk)
    },
  })
  const reader = createReadStream(archive, { highWaterMark: 1 << 20 })
  let readError: unknown
  reader.once('error', (err) => {
    readError = err
  })
  // tar stops reading at the end-of-archive blocks and exits, so writing what follows them
  // can fail with EPIPE; whether the extraction worked is for tar's exit status to say.
  const feeding = pipeline(reader, progress, sink).catch(() => {
    if (readError !== undefined) onAbort()
  })
  const [tarExit, decompressorExit] = await Promise.all([tar.exited, decompressor?.exited, feeding])
  options.signal?.removeEventListener('abort', onAbort)
  if (options.signal?.aborted) {
    throw new ImageSwarmError('E_INTERRUPTED', `extracting into ${target} was interrupted`, {
      operation: 'extract',
      path: target,
      cause: options.signal.reason,
    })
  }
  if (readError !== undefined) {
    throw new ImageSwarmError(
      'E_EXTRACT_FAILED',
      `cannot read ${archive}: ${errnoOf(readError) ?? String(readError)}`,
      {
        operation: 'extract',
        path: archive,
        hint: 'check the staging directory',
        cause: readError,
      },
    )
  }
  const tarStderr = tar.stderr()
  checkExit('tar', tarExit, tarStderr, target)
  if (decompressor !== undefined && decompressorExit !== undefined) {
    const stderr = decompressor.stderr()
    if (brokenPipe(decompressorExit, stderr)) {
      logger.warn({ archive }, 'tar ended before the end of the data; trailing bytes ignored')
    } else {
      checkExit(`${compression} -d`, decompressorExit, stderr, target)
    }
  }
  for (const line of stderrLines(tarStderr)) logger.warn({ target, tar: line }, 'tar warning')
  const done = Date.now()
  logger.info(
    {
      archive,
      target,
      entries,
      validateSeconds: (extractStart - validateStart) / 1000,
      extractSeconds: (done - extractStart) / 1000,
    },
    'extracted image',
  )
  return { entries }
}

async function archiveSize(archive: string): Promise<number> {
  try {
    return (await stat(archive)).size
  } catch (err) {
    throw new ImageSwarmError(
      'E_EXTRACT_FAILED',
      `cannot read archive ${archive}: ${errnoOf(err)}`,
      {
        operation: 'extract',
        path: archive,
        hint: 'check the staging directory; the archive may have been removed',
        cause: err,
      },
    )
  }
}

async function assertTarget(target: string): Promise<void> {
  let isDirectory = false
  try {
    isDirectory = (await stat(target)).isDirectory()
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err
  }
  if (!isDirectory) {
    throw new ImageSwarmError('E_TARGET_NOT_WRITABLE', `target root ${target} is not a directory`, {
      operation: 'extract',
      path: target,
      hint: 'create and mount the target root before extracting',
    })
  }
}

function checkExit(tool: string, exit: ToolExit, stderr: string, target: string): void {
  if (exit.error === undefined && exit.code === 0) return
  const detail = stderr.trim() || '(no message)'
  const noSpace = /No space left on device/.test(stderr)
  throw new ImageSwarmError(
    noSpace ? 'E_NO_SPACE' : 'E_EXTRACT_FAILED',
    `${tool} failed extracting into ${target} (${describeExit(exit)}): ${detail}`,
    {
      operation: 'extract',
      path: target,
      hint: noSpace
        ? 'the target file system is full; make the partitions larger'
        : 'see the tar message; the target root may now be partly written',
      cause: exit.error,
    },
  )
}

/** The decompressor failed only because tar, done, stopped reading (EPIPE / SIGPIPE). */
function brokenPipe(exit: ToolExit, stderr: string): boolean {
  return exit.signal === 'SIGPIPE' || /broken pipe/i.test(stderr)
}
