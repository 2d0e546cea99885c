import { createReadStream, type ReadStream, readFileSync } from 'node:fs'
import {
  chmod,
  chown,
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rm,
  stat,
  utimes,
  writeFile,
} from 'node:fs/promises'
import type { Socket } from 'node:net'
import { join, resolve } from 'node:path'
import { type Readable, Transform, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Logger } from 'pino'
import { errnoOf, ImageSwarmError } from '../errors.js'
import { silentLogger } from '../logging.js'
import type { Compression } from '../manifest.js'
import { decompressArgs, detectCompression } from './compression.js'
import { gateWritable, readingSocketPair, TarGate } from './gate.js'
import { TAR_RECORD_ARGS } from './records.js'
import { TarScanner } from './scan.js'
import {
  describeExit,
  type RunningTool,
  reportsNoSpace,
  startTool,
  stderrLines,
  type ToolExit,
} from './spawn-tool.js'
import { decompressFailure } from './tar-source.js'
import { type ResolvedTools, resolveArchiveTools } from './tools.js'
import type { ExtractOptions, ExtractResult } from './types.js'
import { unsafe, validateArchive } from './validate.js'

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
 * Written into the target root by the install client before extraction starts and
 * removed only once it has finished: a root that still holds it is half-installed,
 * whatever else it contains.
 */
export const INCOMPLETE_MARKER = '.imageswarm-incomplete'

/**
 * Names at the top of a target root that do not make it non-empty for `extractArchive`:
 * the install client's marker of an unfinished install (`.imageswarm-incomplete`, written
 * before extraction starts) and the `lost+found` of a freshly made filesystem. Such an
 * entry counts only while it is a regular file of at most 64 KiB or an empty directory;
 * a refused extraction puts it back as it was (content, mode, owner).
 */
export const IGNORED_TARGET_ENTRIES: readonly string[] = [INCOMPLETE_MARKER, 'lost+found']

/** Kept files are read into memory to be put back after a refusal: small ones only. */
const KEPT_FILE_LIMIT = 64 * 1024

/**
 * Extracts an archive into an existing target root with full metadata, refusing it with
 * E_ARCHIVE_UNSAFE, naming the member, if any member could land outside the target (the
 * rules of `validateArchive`). Nothing is ever written outside the target: tar is given
 * no header that has not passed the rules. How the archive is validated depends on the
 * target:
 *
 * - Empty target (nothing but `ignoreEntries`, default `IGNORED_TARGET_ENTRIES`): one
 *   pass. The archive is decompressed once; the tar stream passes through an in-process
 *   header scanner (`TarScanner`) on its way to `tar -x`, and a chunk is handed to tar
 *   only up to the end of the last header that has passed (a pax or long-name header is
 *   held back until the member it describes has passed). When a member is refused, or the
 *   archive turns out corrupt or truncated, tar (which was given nothing past the last
 *   member that passed) is killed, and everything it had written (those earlier, valid
 *   members, all inside the target) is removed: the target is left as it was, the
 *   ignored entries put back and its own mode, owner and times restored.
 * - Any other target: two passes, because what tar wrote there could not be told apart
 *   from what was there before. `validateArchive` reads every header first; only then
 *   does tar write anything.
 * - `alreadyValidated`: the caller has validated this very file; no validation here.
 *
 * tar's warnings go to the logger; a tar failure is E_EXTRACT_FAILED (or E_NO_SPACE)
 * carrying tar's message, and leaves what tar wrote in place.
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
  const run: Run = { options, logger, archive, target, size, compression, tools }
  const started = Date.now()
  let validation: ExtractResult['validation']
  let entries: number
  let extractStart = started
  const empty =
    options.alreadyValidated === undefined
      ? await snapshotEmptyTarget(target, options.ignoreEntries ?? IGNORED_TARGET_ENTRIES)
      : undefined
  if (options.alreadyValidated !== undefined) {
    validation = 'by-caller'
    entries = options.alreadyValidated.entries
    await extractUnchecked(run)
  } else if (empty !== undefined) {
    validation = 'while-extracting'
    entries = await extractGated(run, empty)
  } else {
    validation = 'before-extracting'
    entries = (
      await validateArchive(archive, compression, {
        tools: options.tools,
        env: options.env,
        decrypt: options.decrypt,
        logger,
        signal: options.signal,
      })
    ).entries
    extractStart = Date.now()
    await extractUnchecked(run)
  }
  const done = Date.now()
  logger.info(
    {
      archive,
      target,
      entries,
      validation,
      validateSeconds: (extractStart - started) / 1000,
      extractSeconds: (done - extractStart) / 1000,
    },
    'extracted image',
  )
  return { entries, validation }
}

interface Run {
  options: ExtractOptions
  logger: Logger
  archive: string
  target: string
  size: number
  compression: Compression
  tools: ResolvedTools
}

/** Counts the compressed bytes read, for `onProgress`. */
function progressCounter(run: Run): Transform {
  let consumed = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      consumed += chunk.length
      run.options.onProgress?.(consumed, run.size)
      callback(null, chunk)
    },
  })
}

function interrupted(run: Run): ImageSwarmError {
  return new ImageSwarmError('E_INTERRUPTED', `extracting into ${run.target} was interrupted`, {
    operation: 'extract',
    path: run.target,
    cause: run.options.signal?.reason,
  })
}

function cannotRead(run: Run, err: unknown): ImageSwarmError {
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

/**
 * Progress of a decompressor reading the archive on its stdin, `fd` here: the file offset
 * the two share, from /proc/self/fdinfo, every 100 ms. `stop(true)` reports the end.
 */
function offsetProgress(run: Run, fd: number): { stop(done: boolean): void } {
  const onProgress = run.options.onProgress
  if (onProgress === undefined) return { stop: () => undefined }
  const report = () => {
    const offset = fileOffset(fd)
    if (offset !== undefined) onProgress(offset, run.size)
  }
  const timer = setInterval(report, 100)
  timer.unref()
  return {
    stop: (done) => {
      clearInterval(timer)
      if (done) onProgress(run.size, run.size)
    },
  }
}

/** Where the kernel's file offset of `fd` is (Linux's /proc/self/fdinfo); undefined
 * without /proc. The decompressor reads the archive through this fd, so it is how far
 * extraction has got. */
export function fileOffset(fd: number): number | undefined {
  try {
    const pos = /^pos:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))
    return pos?.[1] === undefined ? undefined : Number(pos[1])
  } catch {
    return undefined
  }
}

/** `tar -x` into the target, reading the tar stream on its stdin. */
function startTar(run: Run): RunningTool {
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
function readArchive(run: Run): { stream: ReadStream; error(): unknown } {
  const stream = createReadStream(run.archive, { highWaterMark: 1 << 20 })
  let readError: unknown
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (readError === undefined && typeof err.syscall === 'string' && err.syscall !== 'write') {
      readError = err
    }
  })
  return { stream, error: () => readError }
}

/** `zstd -dc | tar -x` (or gzip, or the bare file) with no validation: already done. */
async function extractUnchecked(run: Run): Promise<void> {
  const { options, logger, archive, target, compression, tools } = run
  const tar = startTar(run)
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

  const reader = readArchive(run)
  const decrypt = options.decrypt?.()
  let decryptError: unknown
  decrypt?.on('error', (err) => {
    decryptError ??= err
  })
  // tar stops reading at the end-of-archive blocks and exits, so writing what follows them
  // can fail with EPIPE; whether the extraction worked is for tar's exit status to say.
  const feeding = (
    decrypt === undefined
      ? pipeline(reader.stream, progressCounter(run), sink)
      : pipeline(reader.stream, progressCounter(run), decrypt, sink)
  ).catch(() => {
    if (reader.error() !== undefined || decryptError !== undefined) onAbort()
  })
  const [tarExit, decompressorExit] = await Promise.all([tar.exited, decompressor?.exited, feeding])
  options.signal?.removeEventListener('abort', onAbort)
  if (options.signal?.aborted) throw interrupted(run)
  const readError = reader.error()
  if (readError !== undefined) throw cannotRead(run, readError)
  if (decryptError !== undefined) throw decryptError
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
}

/**
 * Decompression → `TarGate` (a `TarScanner`) → `tar -x`, in one pass; see
 * `extractArchive`. Returns the number of members.
 */
async function extractGated(run: Run, empty: TargetSnapshot): Promise<number> {
  const { options, logger, archive, target, compression, tools } = run
  let input: FileHandle | undefined
  // An encrypted archive reaches the decompressor through Node (file → decrypt → its
  // stdin); a plain one is read by the decompressor itself.
  const decrypt = options.decrypt?.()
  let decryptError: unknown
  decrypt?.on('error', (err) => {
    decryptError ??= err
  })
  if (compression !== 'none' && decrypt === undefined) {
    try {
      input = await open(archive, 'r')
    } catch (err) {
      throw cannotRead(run, err)
    }
  }
  const tar = startTar(run)
  const gate = new TarGate(new TarScanner(), tar.child.stdin as Writable)
  let failure: unknown
  let failScan: (err: unknown) => void = () => undefined
  const fail = (err: unknown) => {
    failure ??= err
    failScan(err)
  }

  // A decompressor reads the archive itself (its stdin is the open file: Node copies only
  // the tar stream) and writes into a socket that Node reads into a few reused buffers, so
  // tar always has the next ones queued; progress is read off the file offset the
  // decompressor and Node share.
  let decompressor: RunningTool | undefined
  let socket: Socket | undefined
  let reader: ReturnType<typeof readArchive> | undefined
  let feeding: Promise<void> | undefined
  if (
    compression !== 'none' &&
    (input !== undefined || decrypt !== undefined) &&
    tools.compressor !== undefined
  ) {
    const pair = await readingSocketPair(4, 512 * 1024, (chunk, release) => {
      try {
        gate.write(chunk, true, release)
      } catch (err) {
        fail(err)
      }
    }).catch(() => undefined)
    socket = pair?.ours
    decompressor = startTool(tools.compressor, decompressArgs(compression), [
      input?.fd ?? 'pipe',
      pair?.theirs ?? 'pipe',
      'pipe',
    ])
    pair?.theirs.destroy()
    if (decrypt !== undefined) {
      reader = readArchive(run)
      const stdin = decompressor.child.stdin as Writable
      feeding = pipeline(reader.stream, progressCounter(run), decrypt, stdin).catch(
        (err: unknown) => {
          // A chunk that failed its tag: nothing after the last good chunk reaches tar.
          if (decryptError !== undefined || reader?.error() !== undefined) {
            stopSources()
            fail(decryptError ?? err)
          }
        },
      )
    }
  } else {
    reader = readArchive(run)
  }
  const progress = input === undefined ? undefined : offsetProgress(run, input.fd)
  // The whole stream must be known good before tar sees its end: a decompressor that
  // failed (corrupt or truncated input) refuses the archive like a bad header would.
  const decompressed = async () => {
    if (decompressor === undefined) return
    const exit = await decompressor.exited
    const message = decompressFailure(compression, exit, decompressor.stderr())
    if (message !== undefined) throw new Error(message)
  }
  const stopSources = () => {
    reader?.stream.destroy()
    socket?.destroy()
    decompressor?.child.kill('SIGKILL')
  }
  const onAbort = () => {
    tar.child.kill('SIGTERM')
    stopSources()
    fail(new Error('interrupted'))
  }
  options.signal?.addEventListener('abort', onAbort, { once: true })
  // tar that fails before the end of its input stops the pass; tar that exits 0 has read
  // the end-of-archive blocks, and the scan goes on to the end (the rest is checked too).
  let scanning = true
  let tarFailed = false
  void tar.exited.then((exit) => {
    if (!scanning || (exit.error === undefined && exit.code === 0)) return
    tarFailed = true
    stopSources()
    fail(new Error('tar exited'))
  })

  try {
    if (socket !== undefined) {
      const ours = socket
      await new Promise<void>((resolve, reject) => {
        failScan = reject
        ours.once('end', resolve)
        ours.once('error', reject)
        ours.resume()
      })
      await decompressed()
      gate.finish()
    } else {
      const sink = gateWritable(gate, decompressed)
      failScan = (err) => sink.destroy(err as Error)
      const source = decompressor?.child.stdout ?? reader?.stream
      if (decompressor !== undefined) await pipeline(source as Readable, sink)
      else if (decrypt !== undefined)
        await pipeline(source as Readable, progressCounter(run), decrypt, sink)
      else await pipeline(source as Readable, progressCounter(run), sink)
    }
  } catch (err) {
    failure ??= err
  }
  scanning = false
  if (failure === undefined) {
    tar.child.stdin?.end()
  } else {
    // tar is killed before its stdin closes: it must not take a cut stream for the end.
    tar.child.kill('SIGKILL')
    tar.child.stdin?.destroy()
    stopSources()
  }
  const [tarExit] = await Promise.all([tar.exited, decompressor?.exited, feeding])
  progress?.stop(failure === undefined)
  // The decrypting stream's refusal is the cause; a cut stream's complaints follow from it.
  if (decryptError !== undefined) failure = decryptError
  await input?.close()
  options.signal?.removeEventListener('abort', onAbort)
  if (options.signal?.aborted) throw interrupted(run)
  const readError = reader?.error()
  if (
    readError !== undefined ||
    (failure !== undefined && (!tarFailed || decryptError !== undefined))
  ) {
    const removed = await restoreTarget(target, empty).catch((err: unknown) => {
      logger.error({ target, err }, 'could not remove what tar extracted before the refusal')
      return undefined
    })
    logger.warn({ archive, target, removed }, 'archive refused; removed what tar had extracted')
    throw readError !== undefined ? cannotRead(run, readError) : unsafe(archive, failure)
  }
  const tarStderr = tar.stderr()
  checkExit('tar', tarExit, tarStderr, target)
  for (const line of stderrLines(tarStderr)) logger.warn({ target, tar: line }, 'tar warning')
  return gate.scanner.entries
}

/** What an empty target held (the ignored entries), to put it back after a refusal. */
interface TargetSnapshot {
  kept: KeptEntry[]
  mode: number
  uid: number
  gid: number
  atimeMs: number
  mtimeMs: number
}

interface KeptEntry {
  name: string
  /** A regular file's bytes; `undefined` for an empty directory. */
  content: Buffer | undefined
  mode: number
  uid: number
  gid: number
}

/** The target's state when it holds nothing but `ignore` entries, else `undefined`. */
async function snapshotEmptyTarget(
  target: string,
  ignore: readonly string[],
): Promise<TargetSnapshot | undefined> {
  const kept: KeptEntry[] = []
  for (const name of await readdir(target)) {
    if (!ignore.includes(name)) return undefined
    const path = join(target, name)
    const st = await lstat(path)
    const owner = { mode: st.mode, uid: st.uid, gid: st.gid }
    if (st.isDirectory() && (await readdir(path)).length === 0) {
      kept.push({ name, content: undefined, ...owner })
    } else if (st.isFile() && st.size <= KEPT_FILE_LIMIT) {
      kept.push({ name, content: await readFile(path), ...owner })
    } else {
      return undefined
    }
  }
  const st = await stat(target)
  return {
    kept,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    atimeMs: st.atimeMs,
    mtimeMs: st.mtimeMs,
  }
}

/**
 * Puts an empty target back as `snapshotEmptyTarget` found it: removes every entry tar
 * made, restores the kept ones and the root's mode, owner and times. Returns the number
 * of entries removed at the top (and inside kept directories).
 */
async function restoreTarget(target: string, snapshot: TargetSnapshot): Promise<number> {
  const kept = new Map(snapshot.kept.map((entry) => [entry.name, entry]))
  const remove = (path: string) => rm(path, { recursive: true, force: true })
  let removed = 0
  for (const name of await readdir(target)) {
    if (kept.has(name)) continue
    await remove(join(target, name))
    removed++
  }
  for (const entry of snapshot.kept) {
    const path = join(target, entry.name)
    const st = await lstat(path).catch(() => undefined)
    if (entry.content === undefined) {
      if (st?.isDirectory()) {
        for (const child of await readdir(path)) {
          await remove(join(path, child))
          removed++
        }
      } else {
        await remove(path)
        await mkdir(path)
      }
    } else if (!st?.isFile() || !(await readFile(path)).equals(entry.content)) {
      await remove(path)
      await writeFile(path, entry.content)
    }
    await chown(path, entry.uid, entry.gid)
    await chmod(path, entry.mode & 0o7777)
  }
  await chown(target, snapshot.uid, snapshot.gid)
  await chmod(target, snapshot.mode & 0o7777)
  await utimes(target, snapshot.atimeMs / 1000, snapshot.mtimeMs / 1000)
  return removed
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

/** The decompressor failed only because tar, done, stopped reading (EPIPE / SIGPIPE). */
function brokenPipe(exit: ToolExit, stderr: string): boolean {
  return exit.signal === 'SIGPIPE' || /broken pipe/i.test(stderr)
}
