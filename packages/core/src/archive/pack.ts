import { randomBytes } from 'node:crypto'
import { close, open as openCallback } from 'node:fs'
import { rename, stat, unlink } from 'node:fs/promises'
import { dirname, isAbsolute, relative, resolve } from 'node:path'
import { promisify } from 'node:util'
import type { Logger } from 'pino'
import { errnoOf, ImageSwarmError } from '../errors.js'
import { silentLogger } from '../logging.js'
import { compressArgs, compressionLevel } from './compression.js'
import { digestAsWritten } from './digest-as-written.js'
import { collectExcludes, excludeArgs } from './excludes.js'
import { TAR_RECORD_ARGS } from './records.js'
import {
  describeExit,
  type RunningTool,
  reportsNoSpace,
  runTool,
  startTool,
  stderrLines,
  type ToolExit,
} from './spawn-tool.js'
import { resolveArchiveTools, resolveTool } from './tools.js'
import type { PackOptions, PackResult, ToolOptions } from './types.js'

const openFd = promisify(openCallback)
const closeFd = promisify(close)

/**
 * tar's options for a deterministic, full-metadata archive:
 * - `--format=posix`: pax headers carry what ustar cannot (uids > 2097151, nanosecond and
 *   pre-1970 / post-2038 mtimes, long names, xattrs, ACLs, sparse maps).
 * - `--numeric-owner`: uids and gids as numbers; the image's /etc/passwd, not the server's,
 *   gives them names.
 * - `--xattrs --xattrs-include=*`: every namespace, including security.capability and
 *   trusted.*; by default GNU tar would store only user.*.
 * - `--sort=name`: the order of directory entries on disk does not leak into the archive.
 * - `--pax-option`: pax header names without tar's PID (`%d/PaxHeaders/%f` instead of
 *   `%d/PaxHeaders.%p/%f`), and no atime/ctime records, which change on every read.
 */
export const TAR_CREATE_ARGS: readonly string[] = [
  '--create',
  '--file=-',
  '--format=posix',
  '--numeric-owner',
  '--xattrs',
  '--xattrs-include=*',
  '--acls',
  '--sparse',
  '--sort=name',
  '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
]

/**
 * Packs an image root into one compressed archive, deterministically: the same tree gives
 * the same bytes, so an unchanged image keeps its infohash. The archive is written to
 * `output.partial-<random>` beside `output`, then renamed into place; its sha256 (and,
 * given `pieceLength`, its piece hashes) is computed from the file as it is written.
 *
 * Like tar and zstd, it does not fsync the archive: forcing it to the disk cost 3–22 % of
 * the pack (the README's archive section has the figures). A crash soon after can leave
 * the archive torn on disk; whoever keeps it must check it against its sha256 before
 * trusting it again, as publishing does at every start.
 *
 * @example
 *   const { sha256, size, pieces } = await packArchive({
 *     root: '/var/lib/systemimager/images/demo',
 *     output: '/var/lib/systemimager/tarballs/image-demo.tar.zst',
 *     compression: 'zstd',
 *     pieceLength: 1 << 20, // and the torrent's piece hashes, from the same read
 *   })
 */
export async function packArchive(
  options: PackOptions & { pieceLength: number },
): Promise<PackResult & { pieces: Buffer }>
export async function packArchive(options: PackOptions): Promise<PackResult>
export async function packArchive(options: PackOptions): Promise<PackResult> {
  const logger = options.logger ?? silentLogger()
  const root = resolve(options.root)
  const output = resolve(options.output)
  const compression = options.compression
  const level = compression === 'none' ? undefined : compressionLevel(compression, options.level)
  options.signal?.throwIfAborted()
  const { pieceLength } = options
  if (pieceLength !== undefined && !(Number.isInteger(pieceLength) && pieceLength >= 16384)) {
    throw new ImageSwarmError('E_USAGE', `piece length must be ≥ 16 KiB, got ${pieceLength}`, {
      operation: 'pack',
      hint: 'use a power of two, e.g. 1 MiB (1048576)',
    })
  }

  await assertImageRoot(root)
  const [tools, tarCommand] = await Promise.all([
    resolveArchiveTools(compression, options),
    imageTarCommand(root, output, options, logger),
  ])
  const temp = `${output}.partial-${randomBytes(6).toString('hex')}`
  // A numeric fd: it becomes the stdout of the tool that writes the archive.
  let fd: number
  try {
    // Read as well as write: the archive is hashed from the file as it grows.
    fd = await openFd(temp, 'wx+', 0o644)
  } catch (err) {
    throw packFailed(`cannot create ${temp}: ${errnoOf(err) ?? String(err)}`, output, err, {
      hint: `check that ${dirname(output)} exists and is writable`,
      code: errnoOf(err) === 'ENOSPC' ? 'E_NO_SPACE' : 'E_PACK_FAILED',
    })
  }

  const started = Date.now()
  let tar: RunningTool | undefined
  let compressor: RunningTool | undefined
  let completed = false
  let fdOpen = true
  try {
    // The last tool writes straight into the file and tar straight into the compressor:
    // no archive byte passes through Node on its way. Node reads the file behind the
    // writer to hash it, while the page cache still holds what was just written.
    if (tools.compressor !== undefined && level !== undefined && compression !== 'none') {
      compressor = startTool(tools.compressor, compressArgs(compression, level), [
        'pipe',
        fd,
        'pipe',
      ])
    }
    const tarStdout = compressor?.child.stdin ?? fd
    tar = startTool(tarCommand.command, tarCommand.args, ['ignore', tarStdout, 'pipe'])
    // Our copy of the pipe's write end must go, or the compressor never sees end-of-file.
    compressor?.child.stdin?.destroy()

    const running = [tar, compressor].filter((tool) => tool !== undefined)
    const onAbort = () => {
      // SIGKILL: `unshare --fork` does not pass SIGTERM on, and --kill-child then kills tar.
      for (const tool of running) tool.child.kill('SIGKILL')
    }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    const exits = Promise.all([tar.exited, compressor?.exited])
    // A failed read stops the tools; the error is reported after theirs.
    const digesting = digestAsWritten(fd, exits, { pieceLength }).catch((err: unknown) => {
      onAbort()
      return err instanceof Error ? err : new Error(String(err))
    })
    const [[tarExit, compressorExit], digest] = await Promise.all([exits, digesting])
    options.signal?.removeEventListener('abort', onAbort)
    if (options.signal?.aborted) {
      throw new ImageSwarmError('E_INTERRUPTED', `packing ${root} was interrupted`, {
        operation: 'pack',
        path: root,
        cause: options.signal.reason,
      })
    }
    // The compressor first: when it fails (a full disk), tar dies of the broken pipe.
    if (compressorExit !== undefined && compressor !== undefined) {
      checkCompressorExit(compression, compressorExit, compressor.stderr(), output)
    }
    checkTarExit(tarExit, tar.stderr(), root, output)
    if (digest instanceof Error) throw archiveIoFailed(digest, 'read back', temp, output)
    for (const line of stderrLines(tar.stderr())) logger.warn({ root, tar: line }, 'tar warning')

    fdOpen = false
    // Some filesystems (NFS) report a failed write only when the file is closed.
    await closeFd(fd).catch((err: unknown) => {
      throw archiveIoFailed(err, 'write', temp, output)
    })
    await rename(temp, output)
    completed = true
    const seconds = (Date.now() - started) / 1000
    const { sha256, size, pieces } = digest
    logger.info({ output, size, sha256, seconds, compression }, 'packed image')
    return { output, size, sha256, pieces, deterministic: tarCommand.deterministic }
  } finally {
    if (!completed) {
      tar?.child.kill('SIGKILL')
      compressor?.child.kill('SIGKILL')
      // Only while still ours: a closed fd number may already belong to someone else.
      if (fdOpen) await closeFd(fd).catch(() => undefined)
      await unlink(temp).catch(() => undefined)
    }
  }
}

/** The command that writes an image root's tar stream to its stdout (`tar --create`). */
export interface ImageTarCommand {
  command: string
  args: string[]
  /** False when tar cannot run as PID 1 of its own namespace (see `pidNamespaceWrapper`). */
  deterministic: boolean
}

/**
 * The deterministic, full-metadata `tar --create` of `root` (TAR_CREATE_ARGS, the excludes,
 * in its own PID namespace when it can be), leaving out `output` if it lies inside the root.
 * Both formats start from this stream: tar compresses it, SquashFS packs it (squashfs.ts).
 */
export async function imageTarCommand(
  root: string,
  output: string,
  options: PackOptions,
  logger: Logger,
): Promise<ImageTarCommand> {
  // Independent look-ups (each spawns or reads something), side by side.
  const [tar, excludes, namespace] = await Promise.all([
    resolveArchiveTools('none', options).then((tools) => tools.tar),
    collectExcludes(options),
    pidNamespaceWrapper(options, logger),
  ])
  const inside = relative(root, output)
  if (!inside.startsWith('..') && !isAbsolute(inside)) {
    // An archive written inside the tree it packs would be read while it grows.
    const escaped = `./${inside}`.replace(/[*?[\]\\]/g, '\\$&')
    excludes.anchored.push(escaped, `${escaped}.partial-*`)
  }
  logger.info(
    { root, anchored: excludes.anchored, floating: excludes.floating },
    'packing with these excludes (anchored patterns match from the image root)',
  )
  const tarArgs = [
    ...TAR_CREATE_ARGS,
    ...TAR_RECORD_ARGS,
    ...excludeArgs(excludes),
    '--directory',
    root,
    '.',
  ]
  return namespace === undefined
    ? { command: tar, args: tarArgs, deterministic: false }
    : {
        command: namespace.command,
        args: [...namespace.args, tar, ...tarArgs],
        deterministic: true,
      }
}

export async function assertImageRoot(root: string): Promise<void> {
  let isDirectory = false
  try {
    isDirectory = (await stat(root)).isDirectory()
  } catch (err) {
    throw new ImageSwarmError('E_IMAGE_NOT_FOUND', `image root ${root} does not exist`, {
      operation: 'pack',
      path: root,
      hint: 'check the images directory and the image name',
      cause: err,
    })
  }
  if (!isDirectory) {
    throw new ImageSwarmError('E_IMAGE_NOT_FOUND', `image root ${root} is not a directory`, {
      operation: 'pack',
      path: root,
      hint: 'an image root is a directory holding a whole system (a chroot-able tree)',
    })
  }
}

/**
 * The command prefix that runs tar as PID 1 of a fresh PID namespace, or undefined.
 * GNU tar names the members of sparse files `./GNUSparseFile.%p/NAME` with its own PID
 * and has no option to change that; as PID 1, `%p` is always 1. Needs root (CAP_SYS_ADMIN);
 * without it we pack anyway and say that sparse files make the bytes vary.
 */
async function pidNamespaceWrapper(
  options: ToolOptions,
  logger: Logger,
): Promise<{ command: string; args: string[] } | undefined> {
  const nonDeterministic =
    'sparse files will carry tar PID in their member names: packing the same tree twice may ' +
    'give different bytes (and a new infohash)'
  if (process.getuid?.() !== 0) {
    logger.warn(`not running as root; ${nonDeterministic}`)
    return undefined
  }
  let unshare: string
  try {
    unshare = await resolveTool('unshare', options)
  } catch {
    logger.warn(`unshare (Debian package util-linux) not found; ${nonDeterministic}`)
    return undefined
  }
  const args = ['--pid', '--fork', '--kill-child', '--']
  const probe = await runTool(unshare, [...args, 'true']).catch((err: unknown) => err)
  if (probe instanceof Error || (probe as { code: unknown }).code !== 0) {
    const reason =
      probe instanceof Error ? probe.message : (probe as { stderr: string }).stderr.trim()
    logger.warn({ reason }, `cannot create a PID namespace; ${nonDeterministic}`)
    return undefined
  }
  return { command: unshare, args }
}

/**
 * tar exits 1 when a file changed, grew or vanished while it was read, 2 on fatal errors.
 * Both fail the pack: an archive of a tree that changed underneath is inconsistent.
 */
export function checkTarExit(exit: ToolExit, stderr: string, root: string, output: string): void {
  if (exit.error === undefined && exit.code === 0) return
  const detail = stderr.trim() || '(no message)'
  // Uncompressed, tar writes the archive itself.
  if (reportsNoSpace(stderr)) throw noSpace(`tar failed writing the archive: ${detail}`, output)
  if (exit.code === 1) {
    throw packFailed(
      `files in ${root} changed while they were packed; the archive would be inconsistent: ` +
        detail,
      output,
      undefined,
      { hint: 'stop whatever writes to the image root (or pack a snapshot of it) and retry' },
    )
  }
  throw packFailed(`tar failed (${describeExit(exit)}): ${detail}`, output, exit.error, {
    hint: 'see the tar message; check that the image root is readable',
  })
}

function checkCompressorExit(
  compression: string,
  exit: ToolExit,
  stderr: string,
  output: string,
): void {
  if (exit.error === undefined && exit.code === 0) return
  if (reportsNoSpace(stderr)) {
    throw noSpace(`${compression} failed writing the archive: ${stderr.trim()}`, output)
  }
  throw packFailed(
    `${compression} failed (${describeExit(exit)}): ${stderr.trim() || '(no message)'}`,
    output,
    exit.error,
    { hint: `check the ${compression} installation and the compression level` },
  )
}

export function packFailed(
  message: string,
  output: string,
  cause: unknown,
  extra: { hint: string; code?: 'E_PACK_FAILED' | 'E_NO_SPACE' },
): ImageSwarmError {
  return new ImageSwarmError(extra.code ?? 'E_PACK_FAILED', message, {
    operation: 'pack',
    path: output,
    hint: extra.hint,
    cause,
  })
}

export function noSpace(message: string, output: string): ImageSwarmError {
  return packFailed(message, output, undefined, {
    code: 'E_NO_SPACE',
    hint: `free space in ${dirname(output)} or choose another output directory`,
  })
}

/** Reading the archive back (to hash it) or closing it failed: an I/O error, or no space. */
export function archiveIoFailed(
  err: unknown,
  action: 'read back' | 'write',
  temp: string,
  output: string,
): ImageSwarmError {
  const errno = errnoOf(err)
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return noSpace(`cannot write ${temp}: ${errno}`, output)
  }
  return packFailed(`cannot ${action} ${temp}: ${errno ?? String(err)}`, output, err, {
    hint: `check the disk holding ${dirname(output)} (dmesg may name an I/O error)`,
  })
}
