import { randomBytes } from 'node:crypto'
import { close, open as openCallback } from 'node:fs'
import { open, readFile, rename, unlink } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import type { Stream } from 'node:stream'
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
import {
  describeExit,
  type RunningTool,
  reportsNoSpace,
  startTool,
  stderrLines,
  type ToolExit,
  toolEnv,
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

/**
 * zstd level 2, not 3 as for tar: on the Debian root it packs in 0.95–1.04 s against 1.13–1.21
 * s (tar | zstd -3: 0.95 s) at 1.063 × the tar.zst's size against 1.042 ×.
 */
export const SQUASHFS_DEFAULT_LEVEL = 2

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
export function squashfsReadFailure(exit: ToolExit, stderr: string): string | undefined {
  if (exit.error === undefined && exit.code === 0) return undefined
  return `sqfs2tar failed (${describeExit(exit)}): ${stderr.trim() || '(no message)'}`
}

/** What packing a root as SquashFS changed of what the tree held (see `SquashfsAdmission`). */
export interface SquashfsLosses {
  /** Paths (below the root) whose mtime lies outside 1970 … 2106, clamped into that range. */
  clampedMtimes: string[]
}

/**
 * One line of GNU tar's verbose listing (`-vv --index-file`, TZ=UTC): the mode with tar's
 * marker after it (`+` POSIX ACLs, `*` other xattrs), owner, size, date, time, name.
 */
const INDEX_LINE = /^(\S{10})([+* ]) +\S+ +\S+ (-?\d+)-\d\d-\d\d \d\d:\d\d (.*)$/

/**
 * The rules for an image root packed as SquashFS, applied to tar's own listing of what it
 * packs (its `--index-file`, in the archive's order, after the excludes): what SquashFS
 * cannot store and would change how the system behaves is refused, naming the first file;
 * what it only rounds is logged.
 *
 * - POSIX ACLs (tar's `+`): SquashFS has only the user, trusted and security xattr
 *   namespaces. Restoring them beside the image would work for an extracted root but not
 *   for one mounted read-only, where the same image would then grant different access.
 *   Any other `system.*` xattr is refused too, from tar2sqfs's warning (`systemXattr`).
 * - mtimes: SquashFS keeps unsigned 32-bit seconds. Fractions are dropped (every file of
 *   today's file systems has one: not counted) and years before 1970 or after 2106
 *   clamped, as tar2sqfs does: listed.
 */
export class SquashfsAdmission {
  readonly losses: SquashfsLosses = { clampedMtimes: [] }

  constructor(private readonly root: string) {}

  /** Reads tar's listing; throws E_FORMAT_UNSUPPORTED at the first file with an ACL. */
  admitIndex(index: string): void {
    for (const line of index.split('\n')) {
      const match = INDEX_LINE.exec(line)
      if (match === null) continue
      const [, , marker, year, name] = match as unknown as [string, string, string, string, string]
      // A symlink's or hardlink's target is not part of its name.
      const path = name.replace(/ (->|link to) .*$/, '')
      if (marker === '+') throw this.refused(path, 'a POSIX ACL')
      const y = Number(year)
      if (y < 1970 || y > 2106) this.losses.clampedMtimes.push(relativeName(path))
    }
  }

  /** tar2sqfs's warning about an xattr namespace it cannot store: refused, by namespace. */
  admitPackerWarnings(stderr: string): void {
    const match = /does not support xattr prefix of (\S+)/.exec(stderr)
    if (match === null) return
    const xattr = match[1] as string
    throw new ImageSwarmError(
      'E_FORMAT_UNSUPPORTED',
      `a file in ${this.root} has xattr ${xattr}, which SquashFS cannot store (it has only the user, trusted and security namespaces); the image would lose it`,
      {
        operation: 'pack squashfs',
        path: this.root,
        hint: `find it with getfattr -R -m '^system\\.' ${this.root}; publish this image as tar (--format tar), or remove the xattr`,
      },
    )
  }

  private refused(name: string, what: string): ImageSwarmError {
    const path = `${this.root}/${relativeName(name)}`
    return new ImageSwarmError(
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
 * --create` as the tar format (excludes, sorting, PID namespace: `imageTarCommand`), which
 * writes straight into `tar2sqfs` (squashfs-tools-ng): no byte passes through Node, whose
 * copy cost 0.4 s of 1.4 s on the Debian root. tar also writes its verbose listing to a
 * file beside the output, which `SquashfsAdmission` reads. We measured tar2sqfs 1.2.0
 * giving identical bytes for the same stream whatever its number of jobs, and it stores no
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
  const level = compressionLevel('zstd', options.level ?? SQUASHFS_DEFAULT_LEVEL)
  options.signal?.throwIfAborted()
  await assertImageRoot(root)
  const [tarCommand, tar2sqfs] = await Promise.all([
    imageTarCommand(root, output, options, logger),
    resolveTool('tar2sqfs', options),
  ])
  const temp = `${output}.partial-${randomBytes(6).toString('hex')}`
  const index = `${temp}.index`
  const admission = new SquashfsAdmission(root)
  const started = Date.now()
  let tar: RunningTool | undefined
  let packer: RunningTool | undefined
  let completed = false
  try {
    packer = startTool(tar2sqfs, tar2sqfsArgs(temp, level), ['pipe', 'ignore', 'pipe'])
    // The listing's dates in UTC, whatever the server's zone (the archive does not change).
    tar = startTool(
      tarCommand.command,
      [...tarCommand.args, '-vv', `--index-file=${index}`],
      ['ignore', packer.child.stdin, 'pipe'],
      { ...toolEnv(), TZ: 'UTC0' },
    )
    // Our copy of the pipe's write end must go, or tar2sqfs never sees end-of-file.
    packer.child.stdin?.destroy()
    const running = [tar, packer]
    const stop = () => {
      for (const tool of running) tool.child.kill('SIGKILL')
    }
    options.signal?.addEventListener('abort', stop, { once: true })
    const [tarExit, packerExit] = await Promise.all([tar.exited, packer.exited])
    options.signal?.removeEventListener('abort', stop)
    if (options.signal?.aborted) {
      throw new ImageSwarmError('E_INTERRUPTED', `packing ${root} was interrupted`, {
        operation: 'pack',
        path: root,
        cause: options.signal.reason,
      })
    }
    const packerStderr = packer.stderr()
    // What SquashFS cannot hold first: tar2sqfs --no-skip stops at an xattr it cannot store.
    const listing = await readFile(index, 'utf8').catch(() => undefined)
    if (listing !== undefined) admission.admitIndex(listing)
    admission.admitPackerWarnings(packerStderr)
    // tar2sqfs that failed first (a full disk) makes tar die of the broken pipe.
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
    await unlink(index).catch(() => undefined)
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
