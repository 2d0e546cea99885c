import { randomBytes } from 'node:crypto'
import { close, open as openCallback } from 'node:fs'
import { open, rename, unlink } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import { type Stream, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import { errnoOf, ImageSwarmError } from '../errors.js'
import { silentLogger } from '../logging.js'
import type { ImageFormat } from '../manifest.js'
import { compressionLevel } from './compression.js'
import { digestAsWritten } from './digest-as-written.js'
import {
  archiveIoFailed,
  assertImageRoot,
  checkTarExit,
  imageTarCommand,
  noSpace,
  packFailed,
} from './pack.js'
import { type ScannedMember, TarScanner } from './scan.js'
import {
  describeExit,
  type RunningTool,
  reportsNoSpace,
  startTool,
  stderrLines,
} from './spawn-tool.js'
import { resolveTool } from './tools.js'
import type { PackOptions, PackResult, ToolOptions } from './types.js'

const openFd = promisify(openCallback)
const closeFd = promisify(close)

/** A SquashFS superblock starts with `hsqs` (0x73717368, little-endian). */
const SQUASHFS_MAGIC = Buffer.from('hsqs', 'latin1')

/**
 * 1 MiB blocks: on a Debian root, zstd -3 in 1 MiB blocks is 1.04 × the size of the
 * tar.zst, in 128 KiB blocks (mksquashfs's default) 1.11 ×; a mounted root reads a whole
 * block for a small file's tail, which costs a node little next to the network it saves.
 */
export const SQUASHFS_BLOCK_SIZE = 1024 * 1024

/** The xattr namespaces SquashFS can store; anything else (system.*) it cannot. */
const SQUASHFS_XATTR_PREFIXES = ['user.', 'trusted.', 'security.']

/** SquashFS keeps mtimes as unsigned 32-bit seconds. */
const SQUASHFS_MAX_MTIME = 2 ** 32 - 1

/** The image's format, from its magic bytes: SquashFS (`hsqs`) or else tar. */
export async function detectFormat(path: string): Promise<ImageFormat> {
  const head = Buffer.alloc(SQUASHFS_MAGIC.length)
  try {
    const file = await open(path, 'r')
    try {
      await file.read(head, 0, head.length, 0)
    } finally {
      await file.close()
    }
  } catch (err) {
    throw new ImageSwarmError('E_ARCHIVE_UNSAFE', `cannot read archive ${path}: ${errnoOf(err)}`, {
      operation: 'detect format',
      path,
      hint: 'check that the archive exists and is readable',
      cause: err,
    })
  }
  return head.equals(SQUASHFS_MAGIC) ? 'squashfs' : 'tar'
}

/**
 * `sqfs2tar`'s arguments for the image's whole tree as a tar stream on stdout: `./`-prefixed
 * names and an entry for the root itself (its mode, owner and mtime), as `tar --create .`
 * writes them; `--no-skip` fails on an entry tar cannot hold instead of leaving it out.
 */
export function sqfs2tarArgs(file: string): string[] {
  return ['--root-becomes', '.', '--no-skip', file]
}

/** Starts `sqfs2tar` on `file`, its tar stream on `stdout`. */
export async function startSquashfsTarStream(
  file: string,
  stdout: 'pipe' | number | Stream,
  options: ToolOptions,
): Promise<RunningTool> {
  const sqfs2tar = await resolveTool('sqfs2tar', options)
  return startTool(sqfs2tar, sqfs2tarArgs(file), ['ignore', stdout, 'pipe'])
}

/** How `sqfs2tar` failed (`sqfs2tar failed (exit 1): …`); `undefined` if it exited 0. */
export function squashfsReadFailure(
  exit: { code: number | null; signal: NodeJS.Signals | null; error: Error | undefined },
  stderr: string,
): string | undefined {
  if (exit.error === undefined && exit.code === 0) return undefined
  return `sqfs2tar failed (${describeExit(exit)}): ${stderr.trim() || '(no message)'}`
}

/** What packing a root as SquashFS changed of what the tree held (see `SquashfsAdmission`). */
export interface SquashfsLosses {
  /** Members whose mtime had a fraction of a second (SquashFS keeps whole seconds). */
  subsecondMtimes: number
  /** Paths (below the root) whose mtime lies outside 1970 … 2106, clamped into that range. */
  clampedMtimes: string[]
}

/**
 * The rules for an image root packed as SquashFS, applied to its tar stream: what SquashFS
 * cannot store and would change how the system behaves is refused, naming the first file;
 * what it only rounds is counted (and logged).
 *
 * - POSIX ACLs (`system.posix_acl_access` / `_default`, tar's `SCHILY.acl.*`) and any other
 *   `system.*` xattr: SquashFS has only the user, trusted and security namespaces. Restoring
 *   them beside the image would work for an extracted root but not for one mounted
 *   read-only, where the same image would then grant different access: refused.
 * - mtimes: SquashFS keeps unsigned 32-bit seconds. Fractions are dropped and times before
 *   1970 or after 2106 clamped, as tar2sqfs does; counted, not refused (every file has a
 *   fraction on today's file systems).
 */
export class SquashfsAdmission {
  readonly losses: SquashfsLosses = { subsecondMtimes: 0, clampedMtimes: [] }

  constructor(private readonly root: string) {}

  member(member: ScannedMember): void {
    const pax = (member.pax ?? {}) as Record<string, string>
    for (const key of Object.keys(pax)) {
      const acl = key.startsWith('SCHILY.acl.')
      const xattr = key.startsWith('SCHILY.xattr.') ? key.slice('SCHILY.xattr.'.length) : undefined
      if (!acl && (xattr === undefined || SQUASHFS_XATTR_PREFIXES.some((p) => xattr.startsWith(p))))
        continue
      const what = acl || xattr?.startsWith('system.posix_acl_') ? 'a POSIX ACL' : `xattr ${xattr}`
      const path = `${this.root}/${relativeName(member.name)}`
      throw new ImageSwarmError(
        'E_FORMAT_UNSUPPORTED',
        `${path} has ${what}, which SquashFS cannot store (it has only the user, trusted and ` +
          'security xattr namespaces); the image would lose it',
        {
          operation: 'pack squashfs',
          path,
          hint:
            'publish this image as tar (--format tar), or remove the ACLs from the image root ' +
            `(setfacl -R -b ${this.root}) if it does not need them`,
        },
      )
    }
    const mtime = member.mtime
    if (!Number.isInteger(mtime)) this.losses.subsecondMtimes++
    if (mtime < 0 || mtime > SQUASHFS_MAX_MTIME)
      this.losses.clampedMtimes.push(relativeName(member.name))
  }
}

/** A member's name as a path below the root: `./srv/` → `srv`, `./` → `.`. */
function relativeName(name: string): string {
  return name.replace(/^\.\//, '').replace(/\/+$/, '') || '.'
}

/** `tar2sqfs`'s arguments: zstd blocks at `level`, all cores (the bytes do not depend on it). */
export function tar2sqfsArgs(output: string, level: number): string[] {
  return [
    '--quiet',
    // A tar record tar2sqfs cannot read fails the pack instead of leaving a file out.
    '--no-skip',
    '--compressor',
    'zstd',
    '--comp-extra',
    `level=${level}`,
    '--block-size',
    String(SQUASHFS_BLOCK_SIZE),
    '--num-jobs',
    String(availableParallelism()),
    '--force',
    output,
  ]
}

/**
 * Packs an image root into one SquashFS file (zstd blocks), deterministically: the same
 * tree gives the same bytes and infohash. The tree is read once, by the same `tar
 * --create` as the tar format (excludes, sorting, PID namespace: `imageTarCommand`); its
 * stream passes through a `TarScanner` that applies `SquashfsAdmission` on its way to
 * `tar2sqfs` (squashfs-tools-ng), which writes the file. We measured tar2sqfs 1.2.0 giving
 * identical bytes for the same stream whatever its number of jobs, and it stores no
 * creation time. SquashFS is written with seeks (its superblock last), so the SHA-256 and
 * piece hashes are read after it is complete, from the page cache.
 *
 * Returns the `PackResult` of `packArchive` and the losses; refuses with
 * E_FORMAT_UNSUPPORTED naming the first file that holds what SquashFS cannot.
 */
export async function packSquashfs(
  options: PackOptions,
): Promise<PackResult & { losses: SquashfsLosses }> {
  const logger = options.logger ?? silentLogger()
  const root = resolve(options.root)
  const output = resolve(options.output)
  const level = compressionLevel('zstd', options.level)
  options.signal?.throwIfAborted()
  await assertImageRoot(root)
  const [tarCommand, tar2sqfs] = await Promise.all([
    imageTarCommand(root, output, options, logger),
    resolveTool('tar2sqfs', options),
  ])
  const temp = `${output}.partial-${randomBytes(6).toString('hex')}`
  const admission = new SquashfsAdmission(root)
  const scanner = new TarScanner({ member: (member) => admission.member(member), data: () => {} })
  const started = Date.now()
  let tar: RunningTool | undefined
  let packer: RunningTool | undefined
  let completed = false
  try {
    packer = startTool(tar2sqfs, tar2sqfsArgs(temp, level), ['pipe', 'ignore', 'pipe'])
    tar = startTool(tarCommand.command, tarCommand.args, ['ignore', 'pipe', 'pipe'])
    const running = [tar, packer]
    const stop = () => {
      for (const tool of running) tool.child.kill('SIGKILL')
    }
    options.signal?.addEventListener('abort', stop, { once: true })
    const packerStdin = packer.child.stdin as Writable
    // Every chunk is scanned before tar2sqfs sees it: a refused member never reaches it.
    const scanning = new Writable({
      highWaterMark: 1 << 20,
      write(chunk: Buffer, _encoding, callback) {
        try {
          scanner.write(chunk)
        } catch (err) {
          callback(err as Error)
          return
        }
        if (packerStdin.write(chunk)) callback()
        else packerStdin.once('drain', () => callback())
      },
      final(callback) {
        try {
          scanner.end()
        } catch (err) {
          callback(err as Error)
          return
        }
        packerStdin.end(callback)
      },
    })
    // tar2sqfs that dies (a full disk) closes its stdin: tar's stream then fails with EPIPE,
    // and its own exit says why.
    packerStdin.on('error', () => undefined)
    const streamed = pipeline(tar.child.stdout!, scanning).then(
      () => undefined,
      (err: unknown) => {
        stop()
        return err
      },
    )
    const [streamError, tarExit, packerExit] = await Promise.all([
      streamed,
      tar.exited,
      packer.exited,
    ])
    options.signal?.removeEventListener('abort', stop)
    if (options.signal?.aborted) {
      throw new ImageSwarmError('E_INTERRUPTED', `packing ${root} was interrupted`, {
        operation: 'pack',
        path: root,
        cause: options.signal.reason,
      })
    }
    if (streamError instanceof ImageSwarmError) throw streamError
    if (streamError !== undefined) {
      throw packFailed(
        `the tar stream of ${root} could not be read: ${String(streamError)}`,
        output,
        streamError,
        { hint: 'see the message; check that the image root is readable' },
      )
    }
    const packerStderr = packer.stderr()
    if (packerExit.error !== undefined || packerExit.code !== 0) {
      if (reportsNoSpace(packerStderr)) throw noSpace(`tar2sqfs failed: ${packerStderr}`, output)
      throw packFailed(
        `tar2sqfs failed (${describeExit(packerExit)}): ${packerStderr.trim() || '(no message)'}`,
        output,
        packerExit.error,
        { hint: 'see the message; check the squashfs-tools-ng installation' },
      )
    }
    checkTarExit(tarExit, tar.stderr(), root, output)
    for (const line of stderrLines(tar.stderr())) logger.warn({ root, tar: line }, 'tar warning')
    for (const line of stderrLines(packerStderr)) logger.warn({ root, tar2sqfs: line }, 'warning')

    const digest = await digestFile(temp, output, options.pieceLength)
    await rename(temp, output)
    completed = true
    const { losses } = admission
    if (losses.clampedMtimes.length > 0) {
      logger.warn(
        { root, files: losses.clampedMtimes.length, first: losses.clampedMtimes[0] },
        'mtimes before 1970 or after 2106 clamped into the range SquashFS can hold',
      )
    }
    const seconds = (Date.now() - started) / 1000
    logger.info(
      { output, size: digest.size, sha256: digest.sha256, seconds, format: 'squashfs' },
      'packed image',
    )
    return {
      output,
      size: digest.size,
      sha256: digest.sha256,
      pieces: digest.pieces,
      deterministic: tarCommand.deterministic,
      losses,
    }
  } finally {
    if (!completed) {
      tar?.child.kill('SIGKILL')
      packer?.child.kill('SIGKILL')
      await Promise.all([tar?.exited, packer?.exited])
      await unlink(temp).catch(() => undefined)
    }
  }
}

async function digestFile(
  temp: string,
  output: string,
  pieceLength: number | undefined,
): Promise<{ sha256: string; size: number; pieces: Buffer | undefined }> {
  let fd: number
  try {
    fd = await openFd(temp, 'r')
  } catch (err) {
    throw archiveIoFailed(err, 'read back', temp, output)
  }
  try {
    return await digestAsWritten(fd, Promise.resolve(), { pieceLength })
  } catch (err) {
    throw archiveIoFailed(err, 'read back', temp, output)
  } finally {
    await closeFd(fd).catch(() => undefined)
  }
}
