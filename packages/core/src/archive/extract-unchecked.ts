import type { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { decompressArgs } from './compression.js'
import { progressCounter, readBytesProgress } from './extract-progress.js'
import {
  cannotRead,
  checkExit,
  type ExtractRun,
  interrupted,
  logTarWarnings,
  readArchive,
  startTarExtract,
} from './extract-run.js'
import { type RunningTool, startTool, type ToolExit } from './spawn-tool.js'
import { startSquashfsTarStream } from './squashfs.js'
import { encryptedSquashfs } from './tar-source.js'

/**
 * `zstd -dc | tar -x` (or gzip, or the bare file) with no validation of its own: for an
 * archive validated before (`validateArchive`, or the caller's `alreadyValidated`). The
 * file goes through Node only to count progress and, when encrypted, to be decrypted.
 */
export async function extractUnchecked(run: ExtractRun): Promise<void> {
  if (run.format === 'squashfs') return extractSquashfsUnchecked(run)
  const { options, logger, archive, target, compression, tools } = run
  const tar = startTarExtract(run)
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
  logTarWarnings(run, tarStderr)
}

/**
 * `sqfs2tar | tar -x` for a SquashFS image validated before: sqfs2tar reads the image by
 * path (with seeks) and writes its tar stream straight into tar's stdin.
 */
async function extractSquashfsUnchecked(run: ExtractRun): Promise<void> {
  const { options, archive, target } = run
  if (options.decrypt !== undefined) throw encryptedSquashfs(archive)
  const tar = startTarExtract(run)
  const reader = await startSquashfsTarStream(archive, tar.child.stdin as Writable, options)
  tar.child.stdin?.destroy()
  const progress = readBytesProgress(run, reader.child.pid)
  const onAbort = () => {
    for (const tool of [tar, reader]) tool.child.kill('SIGTERM')
  }
  options.signal?.addEventListener('abort', onAbort, { once: true })
  const [tarExit, readerExit] = await Promise.all([tar.exited, reader.exited])
  options.signal?.removeEventListener('abort', onAbort)
  progress.stop(false)
  if (options.signal?.aborted) throw interrupted(run)
  const tarStderr = tar.stderr()
  checkExit('tar', tarExit, tarStderr, target)
  const readerStderr = reader.stderr()
  if (brokenPipe(readerExit, readerStderr)) {
    run.logger.warn({ archive }, 'tar ended before the end of the image; the rest ignored')
  } else {
    checkExit('sqfs2tar', readerExit, readerStderr, target)
  }
  progress.stop(true)
  logTarWarnings(run, tarStderr)
}

/** The decompressor failed only because tar, done, stopped reading (EPIPE / SIGPIPE). */
export function brokenPipe(exit: ToolExit, stderr: string): boolean {
  return exit.signal === 'SIGPIPE' || /broken pipe/i.test(stderr)
}
