import { type FileHandle, open } from 'node:fs/promises'
import type { Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { decompressArgs } from './compression.js'
import { offsetProgress, progressCounter } from './extract-progress.js'
import {
  cannotRead,
  checkExit,
  type ExtractRun,
  interrupted,
  logTarWarnings,
  readArchive,
  startTarExtract,
} from './extract-run.js'
import { gateWritable, readingSocketPair, TarGate } from './gate.js'
import { TarScanner } from './scan.js'
import { type RunningTool, startTool } from './spawn-tool.js'
import { decompressFailure } from './tar-source.js'
import { restoreTarget, type TargetSnapshot } from './target-snapshot.js'
import { unsafe } from './validate.js'

/**
 * Decompression → `TarGate` (a `TarScanner`) → `tar -x`, in one pass, into a target that
 * `snapshot` found empty; see `extractArchive`. A refusal undoes what tar wrote by
 * restoring `snapshot`. Returns the number of members.
 */
export async function extractGated(run: ExtractRun, snapshot: TargetSnapshot): Promise<number> {
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
  const tar = startTarExtract(run)
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
  await input?.close()
  options.signal?.removeEventListener('abort', onAbort)
  if (options.signal?.aborted) throw interrupted(run)
  const outcome = judgeGatedPass({ readError: reader?.error(), failure, tarFailed, decryptError })
  if (outcome.kind !== 'tar-exit') {
    const removed = await restoreTarget(target, snapshot).catch((err: unknown) => {
      logger.error({ target, err }, 'could not remove what tar extracted before the refusal')
      return undefined
    })
    logger.warn({ archive, target, removed }, 'archive refused; removed what tar had extracted')
    throw outcome.kind === 'unreadable'
      ? cannotRead(run, outcome.cause)
      : unsafe(archive, outcome.cause)
  }
  const tarStderr = tar.stderr()
  checkExit('tar', tarExit, tarStderr, target)
  logTarWarnings(run, tarStderr)
  return gate.scanner.entries
}

/**
 * How a gated pass ended, once tar and the sources have stopped:
 * - `unreadable`: the archive file could not be read;
 * - `refused`: the scanner, the decompressor or the decryption refused the archive;
 * - `tar-exit`: nothing was refused, so tar's own exit status says whether it worked.
 * The first two undo the extraction; a tar failure leaves what tar wrote in place.
 */
export type GatedOutcome =
  | { kind: 'unreadable'; cause: unknown }
  | { kind: 'refused'; cause: unknown }
  | { kind: 'tar-exit' }

/** What stopped a gated pass, as `extractGated` recorded it. */
export interface GatedPassEnd {
  /** The first error reading the archive file itself. */
  readError: unknown
  /** The first error that stopped the pass (a refusal, or `tar exited`). */
  failure: unknown
  /** tar exited non-zero while the scan was still going: the pass stopped for tar. */
  tarFailed: boolean
  /** The decrypting stream's error. */
  decryptError: unknown
}

/** Decides, from how a gated pass stopped, whether to undo it and what to report. */
export function judgeGatedPass(end: GatedPassEnd): GatedOutcome {
  if (end.readError !== undefined) return { kind: 'unreadable', cause: end.readError }
  // The decrypting stream's refusal is the cause; a cut stream's complaints (and tar's,
  // on the cut stream) follow from it.
  if (end.decryptError !== undefined) return { kind: 'refused', cause: end.decryptError }
  // When tar failed first, `failure` only records that tar stopped the pass: tar's own
  // error (a full disk, a file where a directory should be) is reported instead.
  if (end.failure !== undefined && !end.tarFailed) return { kind: 'refused', cause: end.failure }
  return { kind: 'tar-exit' }
}
